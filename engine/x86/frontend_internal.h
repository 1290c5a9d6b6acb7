// engine/x86/frontend_internal.h — the emitter context shared by the
// frontend's files (frontend_*.cpp). Not for use outside engine/x86.
#pragma once

#include "engine/ir/ir.h"
#include "engine/x86/env.h"
#include "engine/x86/flags.h"
#include "engine/x86/helpers.h"

#include <Zydis/Zydis.h>

namespace emu::x86 {

using ir::Arg;
using ir::Opcode;
using V = uint32_t; // an IR value

struct Emitter {
    CpuEnv& env;
    ir::Builder& b;
    const ZydisDecodedInstruction& insn;
    const ZydisDecodedOperand* op;
    uint64_t rip;      // this instruction (offset in CS)
    uint64_t next_rip; // the next one
    uint32_t hflags;
    bool end_block = false; // the emitter ended the block (terminator emitted)

    // --- values ---
    V k(uint64_t v) { return b.konst(v); }
    V op1(Opcode o, V a) { return b.op1(o, a); }
    V op2(Opcode o, V a, V c) { return b.op2(o, a, c); }
    V zext(V v, unsigned bytes);
    V sext(V v, unsigned bytes);
    static uint64_t mask(unsigned bytes) { return bytes >= 8 ? ~0ull : (1ull << (8 * bytes)) - 1; }

    // --- registers ---
    V get(unsigned gpr) { return b.emit(Opcode::GetReg, Arg::imm(gpr)); }
    void set(unsigned gpr, V v) { b.emit(Opcode::SetReg, Arg::imm(gpr), Arg::value(v)); }
    // Writes the low 'bytes' of a GPR as x86 does (32-bit writes zero-extend).
    void set_sized(unsigned gpr, V v, unsigned bytes, bool high8 = false) { set(gpr, merged(gpr, v, bytes, high8)); }
    // The whole register after writing its low 'bytes' as x86 does.
    V merged(unsigned gpr, V v, unsigned bytes, bool high8 = false);
    V get_sized(unsigned gpr, unsigned bytes) { return zext(get(gpr), bytes); }

    // --- operands (by index into the decoded operands) ---
    unsigned bytes(int i) const { return op[i].size / 8; }
    unsigned opsize() const { return insn.operand_width / 8; }
    unsigned addrsize() const { return insn.address_width / 8; }
    unsigned stacksize() const { return insn.stack_width / 8; }
    V read(int i);
    void write(int i, V v);
    V address(int i); // effective linear address of a memory operand (computed once)

    // --- memory ---
    V load(V addr, unsigned bytes);
    void store(V addr, V v, unsigned bytes);
    V seg_linear(V offset, int seg); // adds the segment base where the mode needs it
    // Emits the limit/type check of an access where the mode needs one.
    void check_segment(V offset, int seg, unsigned bytes, bool write)
    {
        if ((hflags & HF_CS64) || bytes == 0)
            return;
        if (!(hflags & HF_SEGCHECK) && seg != FS && seg != GS)
            return;
        b.emit(Opcode::CheckSeg, Arg::imm(uint64_t(seg) | uint64_t(bytes) << 8 | uint64_t(write) << 16),
               Arg::value(offset));
    }
    void push(V v, unsigned bytes);
    V pop(unsigned bytes); // returns the value; RSP is updated

    // --- flags ---
    void set_flags(FlagOp o, unsigned bytes, V res, V a, V c)
    {
        b.emit(Opcode::SetFlags, Arg::imm(flag_kind(o, bytes)), Arg::value(res), Arg::value(a), Arg::value(c));
    }
    V cond(unsigned cc) { return b.emit(Opcode::GetCond, Arg::imm(cc)); }

    // --- control ---
    void exit_jump(uint64_t target);
    void exit_cond(V taken, uint64_t target, uint64_t fallthrough);
    void exit_indirect(V target);
    void exit_loop(); // continue at next_rip through the run loop
    void exit_to_state() // a helper set RIP: back to the run loop
    {
        b.emit(Opcode::ExitLoop);
        end_block = true;
    }
    V selector(int seg)
    {
        return zext(b.emit(Opcode::LoadField, Arg::imm(offsetof(CpuState, seg) + seg * sizeof(Segment))), 2);
    }
    V call(Helper h, V a = UINT32_MAX, V c = UINT32_MAX, V d = UINT32_MAX);

    // LOCK with a memory destination: the read-modify-write is one host atomic.
    bool locked() const { return (insn.attributes & ZYDIS_ATTRIB_HAS_LOCK) && op[0].type == ZYDIS_OPERAND_TYPE_MEMORY; }
    V atomic(unsigned op_kind, V addr, V value, unsigned bytes)
    {
        return b.emit(Opcode::AtomicRmw, Arg::imm(op_kind | bytes << 8), Arg::value(addr), Arg::value(value));
    }
    uint64_t ip_mask() const { return (hflags & HF_CS64) ? ~0ull : (hflags & HF_CS32) ? 0xffffffffull : 0xffffull; }

    // Memory operand addresses, cached so read-modify-write computes them once.
    V m_addr_cache[ZYDIS_MAX_OPERAND_COUNT] = {};
    bool m_addr_valid[ZYDIS_MAX_OPERAND_COUNT] = {};
    V m_none = UINT32_MAX;
};

struct GprRef {
    int index = -1; // 0..15, or -1 if not a general register
    unsigned bytes = 0;
    bool high8 = false;
};
GprRef gpr_ref(ZydisRegister r);

// An emitter returns false when it does not handle this form: the
// instruction then raises #UD (logged once per mnemonic).
using EmitFn = bool (*)(Emitter& e);

// Forms reached from other emitters (frontend_segment.cpp).
int segment_operand(const ZydisDecodedOperand& o);
bool emit_mov_sreg(Emitter& e);
bool emit_push_sreg(Emitter& e);
bool emit_pop_sreg(Emitter& e);
bool emit_far(Emitter& e, bool call);
bool emit_far_return(Emitter& e);
bool emit_hostexec(Emitter& e); // hostexec.cpp: x87, MMX, SSE
bool emit_mov_dr(Emitter& e);   // frontend_system.cpp

// Emitters, by domain (frontend_alu.cpp, frontend_data.cpp, frontend_control.cpp, frontend_system.cpp).
#define INSN(mnemonic, fn) bool fn(Emitter& e);
#include "engine/x86/insn_table.inc"
#undef INSN

} // namespace emu::x86
