// engine/x86/frontend_segment.cpp — segment registers, far transfers, IRET,
// fast system calls, and the remaining integer instructions (BCD, ENTER,
// XLAT, PUSHA/POPA, CMPXCHG8B/16B).
#include "engine/x86/frontend_internal.h"

namespace emu::x86 {

namespace {

int sreg_of(ZydisRegister r)
{
    switch (r) {
    case ZYDIS_REGISTER_ES:
        return ES;
    case ZYDIS_REGISTER_CS:
        return CS;
    case ZYDIS_REGISTER_SS:
        return SS;
    case ZYDIS_REGISTER_DS:
        return DS;
    case ZYDIS_REGISTER_FS:
        return FS;
    case ZYDIS_REGISTER_GS:
        return GS;
    default:
        return -1;
    }
}

} // namespace

int segment_operand(const ZydisDecodedOperand& o)
{
    return o.type == ZYDIS_OPERAND_TYPE_REGISTER ? sreg_of(o.reg.value) : -1;
}

// mov to a segment register; the block ends (the mode or SS may change).
bool emit_mov_sreg(Emitter& e)
{
    int dst = segment_operand(e.op[0]);
    if (dst >= 0) {
        if (dst == CS)
            return false; // mov cs, … is #UD
        // (LoadSeg of SS also opens the one-instruction interrupt shadow.)
        e.call(Helper::LoadSeg, e.k(dst), e.zext(e.read(1), 2));
        e.exit_loop();
        return true;
    }
    int src = segment_operand(e.op[1]);
    V sel = e.selector(src);
    if (e.op[0].type == ZYDIS_OPERAND_TYPE_MEMORY)
        e.store(e.address(0), sel, 2);
    else
        e.write(0, sel);
    return true;
}

bool emit_push_sreg(Emitter& e)
{
    e.push(e.selector(segment_operand(e.op[0])), e.opsize());
    return true;
}

bool emit_pop_sreg(Emitter& e)
{
    // Load first, then the segment (which may fault), then move RSP.
    unsigned n = e.opsize(), ss = e.stacksize();
    V sp = e.get_sized(RSP, ss);
    V v = e.load(e.seg_linear(sp, SS), n);
    int seg = segment_operand(e.op[0]);
    e.call(Helper::LoadSeg, e.k(seg), e.zext(v, 2));
    e.set_sized(RSP, e.zext(e.op2(Opcode::Add, e.get_sized(RSP, ss), e.k(n)), ss), ss);
    e.exit_loop();
    return true;
}

bool emit_lxs(Emitter& e)
{
    int seg = e.insn.mnemonic == ZYDIS_MNEMONIC_LDS   ? DS
              : e.insn.mnemonic == ZYDIS_MNEMONIC_LES ? ES
              : e.insn.mnemonic == ZYDIS_MNEMONIC_LFS ? FS
              : e.insn.mnemonic == ZYDIS_MNEMONIC_LGS ? GS
                                                      : SS;
    unsigned n = e.bytes(0);
    V addr = e.address(1);
    V offset = e.load(addr, n);
    V sel = e.load(e.op2(Opcode::Add, addr, e.k(n)), 2);
    e.call(Helper::LoadSeg, e.k(seg), sel);
    e.write(0, offset);
    e.exit_loop();
    return true;
}

bool emit_far(Emitter& e, bool call)
{
    unsigned n = e.opsize();
    V sel, off;
    if (e.op[0].type == ZYDIS_OPERAND_TYPE_POINTER) {
        sel = e.k(e.op[0].ptr.segment);
        off = e.k(e.op[0].ptr.offset);
    } else if (e.op[0].type == ZYDIS_OPERAND_TYPE_MEMORY) {
        V addr = e.address(0);
        off = e.load(addr, n);
        sel = e.load(e.op2(Opcode::Add, addr, e.k(n)), 2);
    } else {
        return false;
    }
    uint64_t desc = n | (call ? 0x100 : 0) | ((e.next_rip & e.ip_mask()) << 16);
    e.call(Helper::FarJump, sel, off, e.k(desc));
    e.exit_to_state();
    return true;
}

bool emit_far_return(Emitter& e)
{
    uint64_t release = e.insn.operand_count_visible > 0 && e.op[0].type == ZYDIS_OPERAND_TYPE_IMMEDIATE
                           ? e.op[0].imm.value.u
                           : 0;
    e.call(Helper::FarReturn, e.k(e.opsize()), e.k(release));
    e.exit_to_state();
    return true;
}

bool emit_iret(Emitter& e)
{
    e.call(Helper::Iret, e.k(e.opsize()), e.k(e.next_rip & e.ip_mask()));
    e.exit_to_state();
    return true;
}

bool emit_syscall(Emitter& e)
{
    switch (e.insn.mnemonic) {
    case ZYDIS_MNEMONIC_SYSCALL:
        e.call(Helper::Syscall, e.k(e.next_rip));
        break;
    case ZYDIS_MNEMONIC_SYSRET:
        e.call(Helper::Sysret, e.k(e.opsize()));
        break;
    case ZYDIS_MNEMONIC_SYSENTER:
        e.call(Helper::Sysenter);
        break;
    default:
        e.call(Helper::Sysexit, e.k(e.opsize()));
        break;
    }
    e.exit_to_state();
    return true;
}

bool emit_swapgs(Emitter& e)
{
    e.call(Helper::Swapgs);
    return true;
}

bool emit_ltr(Emitter& e)
{
    bool tr = e.insn.mnemonic == ZYDIS_MNEMONIC_LTR;
    e.call(Helper::LoadSystemSegment, e.zext(e.read(0), 2), e.k(tr ? 1 : 0));
    return true;
}

bool emit_str(Emitter& e)
{
    size_t offset = e.insn.mnemonic == ZYDIS_MNEMONIC_STR ? offsetof(CpuState, tr) : offsetof(CpuState, ldtr);
    V sel = e.zext(e.b.emit(Opcode::LoadField, Arg::imm(offset)), 2);
    if (e.op[0].type == ZYDIS_OPERAND_TYPE_MEMORY)
        e.store(e.address(0), sel, 2);
    else
        e.write(0, sel);
    return true;
}

bool emit_cmpxchg8b(Emitter& e)
{
    e.call(Helper::Cmpxchg8b, e.address(0), e.k(e.insn.mnemonic == ZYDIS_MNEMONIC_CMPXCHG16B ? 16 : 8));
    return true;
}

bool emit_rdtscp(Emitter& e)
{
    e.call(Helper::Rdtscp);
    return true;
}

bool emit_cr0bits(Emitter& e)
{
    switch (e.insn.mnemonic) {
    case ZYDIS_MNEMONIC_CLTS:
        e.call(Helper::Cr0Bits, e.k(0));
        return true;
    case ZYDIS_MNEMONIC_LMSW:
        e.call(Helper::Cr0Bits, e.k(1), e.zext(e.read(0), 2));
        e.exit_loop();
        return true;
    default: {
        V v = e.call(Helper::Cr0Bits, e.k(2));
        if (e.op[0].type == ZYDIS_OPERAND_TYPE_MEMORY)
            e.store(e.address(0), v, 2);
        else
            e.write(0, v);
        return true;
    }
    }
}

bool emit_bcd(Emitter& e)
{
    unsigned op = 0;
    switch (e.insn.mnemonic) {
    case ZYDIS_MNEMONIC_DAA:
        op = 0;
        break;
    case ZYDIS_MNEMONIC_DAS:
        op = 1;
        break;
    case ZYDIS_MNEMONIC_AAA:
        op = 2;
        break;
    case ZYDIS_MNEMONIC_AAS:
        op = 3;
        break;
    case ZYDIS_MNEMONIC_AAM:
        op = 4;
        break;
    default:
        op = 5;
        break;
    }
    uint64_t base = 10;
    for (unsigned i = 0; i < e.insn.operand_count_visible; i++)
        if (e.op[i].type == ZYDIS_OPERAND_TYPE_IMMEDIATE)
            base = e.op[i].imm.value.u & 0xff;
    e.call(Helper::Bcd, e.k(op), e.k(base));
    return true;
}

bool emit_enter(Emitter& e)
{
    uint64_t size = e.op[0].imm.value.u & 0xffff, level = e.op[1].imm.value.u & 31;
    unsigned n = e.opsize(), ss = e.stacksize();
    e.push(e.get_sized(RBP, n), n);
    V frame = e.get_sized(RSP, ss);
    if (level > 0) {
        // Nested frames: copy level-1 frame pointers from the enclosing
        // frame, then push the new frame pointer.
        V bp = e.get_sized(RBP, ss);
        for (uint64_t i = 1; i < level; i++) {
            bp = e.zext(e.op2(Opcode::Sub, bp, e.k(n)), ss);
            e.push(e.load(e.seg_linear(bp, SS), n), n);
        }
        e.push(frame, n);
    }
    e.set_sized(RBP, frame, n);
    e.set_sized(RSP, e.zext(e.op2(Opcode::Sub, e.get_sized(RSP, ss), e.k(size)), ss), ss);
    return true;
}

bool emit_xlat(Emitter& e)
{
    V base = e.get_sized(RBX, e.addrsize());
    V off = e.zext(e.op2(Opcode::Add, base, e.zext(e.get(RAX), 1)), e.addrsize());
    int seg = DS;
    for (unsigned i = 0; i < e.insn.operand_count; i++)
        if (e.op[i].type == ZYDIS_OPERAND_TYPE_MEMORY && sreg_of(e.op[i].mem.segment) >= 0)
            seg = sreg_of(e.op[i].mem.segment);
    e.set_sized(RAX, e.load(e.seg_linear(off, seg), 1), 1);
    return true;
}

bool emit_pusha(Emitter& e)
{
    unsigned n = e.opsize();
    V sp = e.get_sized(RSP, n);
    for (unsigned r : {RAX, RCX, RDX, RBX})
        e.push(e.get_sized(r, n), n);
    e.push(sp, n);
    for (unsigned r : {RBP, RSI, RDI})
        e.push(e.get_sized(r, n), n);
    return true;
}

bool emit_popa(Emitter& e)
{
    unsigned n = e.opsize();
    for (unsigned r : {RDI, RSI, RBP}) {
        V v = e.pop(n);
        e.set_sized(r, v, n);
    }
    e.pop(n); // the saved stack pointer is skipped
    for (unsigned r : {RBX, RDX, RCX, RAX}) {
        V v = e.pop(n);
        e.set_sized(r, v, n);
    }
    return true;
}

} // namespace emu::x86

namespace emu::x86 {

bool emit_descquery(Emitter& e)
{
    unsigned which = e.insn.mnemonic == ZYDIS_MNEMONIC_LAR   ? 0
                     : e.insn.mnemonic == ZYDIS_MNEMONIC_LSL ? 1
                     : e.insn.mnemonic == ZYDIS_MNEMONIC_VERR ? 2
                                                               : 3;
    int src = which >= 2 ? 0 : 1;
    V result = e.call(Helper::DescriptorQuery, e.zext(e.read(src), 2), e.k(which));
    if (which < 2) {
        // The destination changes only when ZF is set (the helper returns all ones otherwise).
        V ok = e.op2(Opcode::CmpNe, result, e.k(~0ull));
        GprRef r = gpr_ref(e.op[0].reg.value);
        V old = e.get(r.index);
        e.set(r.index, e.b.emit(Opcode::Select, Arg::value(ok), Arg::value(e.merged(r.index, result, e.bytes(0))),
                                Arg::value(old)));
    }
    return true;
}

bool emit_arpl(Emitter& e)
{
    // arpl r/m16, r16: raise the destination selector's RPL to the source's.
    V dst = e.read(0), src = e.read(1);
    V dst_rpl = e.op2(Opcode::And, dst, e.k(3)), src_rpl = e.op2(Opcode::And, src, e.k(3));
    V raise = e.op2(Opcode::CmpLtU, dst_rpl, src_rpl);
    V adjusted = e.op2(Opcode::Or, e.op2(Opcode::And, dst, e.k(~3ull)), src_rpl);
    e.write(0, e.b.emit(Opcode::Select, Arg::value(raise), Arg::value(adjusted), Arg::value(dst)));
    e.b.emit(Opcode::SetEflags, Arg::value(e.op2(Opcode::Shl, e.op1(Opcode::BoolToInt, raise), e.k(6))),
             Arg::imm(ZF));
    return true;
}

bool emit_bound(Emitter& e)
{
    e.call(Helper::Bound, e.read(0), e.address(1), e.k(e.bytes(0)));
    return true;
}

} // namespace emu::x86
