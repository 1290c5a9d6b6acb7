#include "engine/x86/frontend.h"

#include "common/log.h"
#include "engine/x86/frontend_internal.h"
#include "engine/x86/hostexec.h"

#include <array>
#include <atomic>
#include <mutex>
#include <set>

namespace emu::x86 {

namespace {

std::atomic<uint64_t> g_unimplemented{0};

const std::array<EmitFn, ZYDIS_MNEMONIC_MAX_VALUE + 1>& emit_table()
{
    static const auto table = [] {
        std::array<EmitFn, ZYDIS_MNEMONIC_MAX_VALUE + 1> t{};
#define INSN(mnemonic, fn) t[ZYDIS_MNEMONIC_##mnemonic] = fn;
#include "engine/x86/insn_table.inc"
#undef INSN
        return t;
    }();
    return table;
}

void init_decoder(ZydisDecoder& d, uint32_t hflags)
{
    if (hflags & HF_CS64)
        ZydisDecoderInit(&d, ZYDIS_MACHINE_MODE_LONG_64, ZYDIS_STACK_WIDTH_64);
    else if (hflags & HF_CS32)
        ZydisDecoderInit(&d, (hflags & HF_LMA) ? ZYDIS_MACHINE_MODE_LONG_COMPAT_32 : ZYDIS_MACHINE_MODE_LEGACY_32,
                         (hflags & HF_SS32) ? ZYDIS_STACK_WIDTH_32 : ZYDIS_STACK_WIDTH_16);
    else
        ZydisDecoderInit(&d, (hflags & HF_PE) ? ZYDIS_MACHINE_MODE_LEGACY_16 : ZYDIS_MACHINE_MODE_REAL_16,
                         (hflags & HF_SS32) ? ZYDIS_STACK_WIDTH_32 : ZYDIS_STACK_WIDTH_16);
}

// Mnemonics that stop the block after them: their effect on the mode, the
// interrupt flag or the code itself must be seen before translating on.
bool ends_block(ZydisMnemonic m)
{
    switch (m) {
    case ZYDIS_MNEMONIC_CLI:
    case ZYDIS_MNEMONIC_STI:
    case ZYDIS_MNEMONIC_POPF:
    case ZYDIS_MNEMONIC_POPFD:
    case ZYDIS_MNEMONIC_POPFQ:
    case ZYDIS_MNEMONIC_WRMSR:
    case ZYDIS_MNEMONIC_INVLPG:
    case ZYDIS_MNEMONIC_LGDT:
    case ZYDIS_MNEMONIC_LIDT:
    case ZYDIS_MNEMONIC_OUT:
    case ZYDIS_MNEMONIC_OUTSB:
    case ZYDIS_MNEMONIC_OUTSW:
    case ZYDIS_MNEMONIC_OUTSD:
        return true;
    default:
        return false;
    }
}

} // namespace

uint64_t unimplemented_count() { return g_unimplemented.load(); }

GprRef gpr_ref(ZydisRegister r)
{
    GprRef ref;
    ZydisRegister big = ZydisRegisterGetLargestEnclosing(ZYDIS_MACHINE_MODE_LONG_64, r);
    if (big < ZYDIS_REGISTER_RAX || big > ZYDIS_REGISTER_R15)
        return ref;
    ref.index = big - ZYDIS_REGISTER_RAX;
    ref.bytes = ZydisRegisterGetWidth(ZYDIS_MACHINE_MODE_LONG_64, r) / 8;
    ref.high8 = r == ZYDIS_REGISTER_AH || r == ZYDIS_REGISTER_CH || r == ZYDIS_REGISTER_DH || r == ZYDIS_REGISTER_BH;
    return ref;
}

// --- Emitter ------------------------------------------------------------------

V Emitter::zext(V v, unsigned n)
{
    switch (n) {
    case 1:
        return op1(Opcode::ZExt8, v);
    case 2:
        return op1(Opcode::ZExt16, v);
    case 4:
        return op1(Opcode::ZExt32, v);
    default:
        return v;
    }
}

V Emitter::sext(V v, unsigned n)
{
    switch (n) {
    case 1:
        return op1(Opcode::SExt8, v);
    case 2:
        return op1(Opcode::SExt16, v);
    case 4:
        return op1(Opcode::SExt32, v);
    default:
        return v;
    }
}

V Emitter::merged(unsigned gpr, V v, unsigned n, bool high8)
{
    if (n == 8)
        return v;
    if (n == 4)
        return op1(Opcode::ZExt32, v);
    return b.emit(Opcode::Insert, Arg::value(get(gpr)), Arg::value(v), Arg::imm(high8 ? 108 : n * 8));
}

V Emitter::seg_linear(V offset, int seg)
{
    if (hflags & HF_CS64) {
        if (seg == FS || seg == GS)
            return op2(Opcode::Add, offset, b.emit(Opcode::GetSegBase, Arg::imm(seg)));
        return offset;
    }
    bool needs_base = seg == CS || seg == FS || seg == GS || (hflags & HF_ADDSEG) || !(hflags & HF_PE) ||
                      (hflags & HF_VM);
    V lin = needs_base ? op2(Opcode::Add, offset, b.emit(Opcode::GetSegBase, Arg::imm(seg))) : offset;
    return op1(Opcode::ZExt32, lin);
}

static int seg_index(ZydisRegister r)
{
    switch (r) {
    case ZYDIS_REGISTER_ES:
        return ES;
    case ZYDIS_REGISTER_CS:
        return CS;
    case ZYDIS_REGISTER_SS:
        return SS;
    case ZYDIS_REGISTER_FS:
        return FS;
    case ZYDIS_REGISTER_GS:
        return GS;
    default:
        return DS;
    }
}

V Emitter::address(int i)
{
    if (m_addr_valid[i])
        return m_addr_cache[i];
    const auto& m = op[i].mem;
    V a;
    if (m.base == ZYDIS_REGISTER_RIP || m.base == ZYDIS_REGISTER_EIP) {
        uint64_t target = next_rip + uint64_t(m.disp.value);
        a = k(m.base == ZYDIS_REGISTER_EIP ? target & 0xffffffff : target);
    } else {
        a = UINT32_MAX;
        if (m.base != ZYDIS_REGISTER_NONE) {
            GprRef r = gpr_ref(m.base);
            a = get_sized(r.index, r.bytes);
        }
        if (m.index != ZYDIS_REGISTER_NONE) {
            GprRef r = gpr_ref(m.index);
            V idx = get_sized(r.index, r.bytes);
            if (m.scale > 1)
                idx = op2(Opcode::Shl, idx, k(__builtin_ctz(m.scale)));
            a = a == UINT32_MAX ? idx : op2(Opcode::Add, a, idx);
        }
        if (m.disp.value != 0 || a == UINT32_MAX) {
            V d = k(uint64_t(m.disp.value));
            a = a == UINT32_MAX ? d : op2(Opcode::Add, a, d);
        }
        a = zext(a, addrsize());
    }
    // LEA wants the offset; everything else the linear address, after the
    // segment allows the access (the whole operand, written if it is).
    if (insn.mnemonic != ZYDIS_MNEMONIC_LEA) {
        bool writes = op[i].actions & ZYDIS_OPERAND_ACTION_MASK_WRITE;
        unsigned size = op[i].size / 8;
        if (insn.meta.isa_set == ZYDIS_ISA_SET_FXSAVE || insn.meta.isa_set == ZYDIS_ISA_SET_FXSAVE64)
            size = 512;
        check_segment(a, seg_index(m.segment), std::min(size, 512u), writes);
        a = seg_linear(a, seg_index(m.segment));
    }
    m_addr_cache[i] = a;
    m_addr_valid[i] = true;
    return a;
}

V Emitter::load(V addr, unsigned n)
{
    static constexpr Opcode ops[] = {Opcode::Load8, Opcode::Load16, Opcode::Load32, Opcode::Load64};
    return op1(ops[__builtin_ctz(n)], addr);
}

void Emitter::store(V addr, V v, unsigned n)
{
    static constexpr Opcode ops[] = {Opcode::Store8, Opcode::Store16, Opcode::Store32, Opcode::Store64};
    b.emit(ops[__builtin_ctz(n)], Arg::value(addr), Arg::value(v));
}

V Emitter::read(int i)
{
    const auto& o = op[i];
    switch (o.type) {
    case ZYDIS_OPERAND_TYPE_REGISTER: {
        GprRef r = gpr_ref(o.reg.value);
        if (r.index < 0)
            return UINT32_MAX;
        V v = get(r.index);
        if (r.high8)
            return op1(Opcode::ZExt8, op2(Opcode::Shr, v, k(8)));
        return zext(v, r.bytes);
    }
    case ZYDIS_OPERAND_TYPE_MEMORY:
        return load(address(i), o.size / 8);
    case ZYDIS_OPERAND_TYPE_IMMEDIATE:
        // A signed immediate is extended to the operation's width (mov rax, imm32).
        if (o.imm.is_signed)
            return k(uint64_t(o.imm.value.s) & mask(std::max<unsigned>(o.size, insn.operand_width) / 8));
        return k(o.imm.value.u & mask(o.size / 8));
    default:
        return UINT32_MAX;
    }
}

void Emitter::write(int i, V v)
{
    const auto& o = op[i];
    if (o.type == ZYDIS_OPERAND_TYPE_REGISTER) {
        GprRef r = gpr_ref(o.reg.value);
        set_sized(r.index, v, r.bytes, r.high8);
    } else if (o.type == ZYDIS_OPERAND_TYPE_MEMORY) {
        store(address(i), v, o.size / 8);
    }
}

void Emitter::push(V v, unsigned n)
{
    unsigned ss = stacksize();
    V sp = op2(Opcode::Sub, get_sized(RSP, ss), k(n));
    sp = zext(sp, ss);
    check_segment(sp, SS, n, true);
    store(seg_linear(sp, SS), v, n); // the store may fault: RSP is written after it
    set_sized(RSP, sp, ss);
}

V Emitter::pop(unsigned n)
{
    unsigned ss = stacksize();
    V sp = get_sized(RSP, ss);
    check_segment(sp, SS, n, false);
    V v = load(seg_linear(sp, SS), n);
    set_sized(RSP, zext(op2(Opcode::Add, sp, k(n)), ss), ss);
    return v;
}

void Emitter::exit_jump(uint64_t target)
{
    b.emit(Opcode::ExitJump, Arg::imm(target & ip_mask()));
    end_block = true;
}

void Emitter::exit_cond(V taken, uint64_t target, uint64_t fallthrough)
{
    b.emit(Opcode::ExitCond, Arg::value(taken), Arg::imm(target & ip_mask()), Arg::imm(fallthrough & ip_mask()));
    end_block = true;
}

void Emitter::exit_indirect(V target)
{
    b.emit(Opcode::ExitIndirect, Arg::value(zext(target, (hflags & HF_CS64) ? 8 : (hflags & HF_CS32) ? 4 : 2)));
    end_block = true;
}

void Emitter::exit_loop()
{
    b.emit(Opcode::StoreField, Arg::imm(offsetof(CpuState, rip)), Arg::value(k(next_rip & ip_mask())));
    b.emit(Opcode::ExitLoop);
    end_block = true;
}

V Emitter::call(Helper h, V a, V c, V d)
{
    V zero = UINT32_MAX;
    if (a == UINT32_MAX || c == UINT32_MAX || d == UINT32_MAX)
        zero = k(0);
    return b.emit(Opcode::Call, Arg::imm(uint64_t(h)), Arg::value(a == UINT32_MAX ? zero : a),
                  Arg::value(c == UINT32_MAX ? zero : c), Arg::value(d == UINT32_MAX ? zero : d));
}

// --- translation ------------------------------------------------------------

bool translate_block(CpuEnv& env, TranslatedBlock& out, unsigned max_insns)
{
    CpuState& s = env.s;
    ZydisDecoder decoder;
    init_decoder(decoder, s.hflags);
    ir::Builder b(out.ir);
    out.ir.start_rip = s.rip;
    const auto& table = emit_table();
    uint64_t rip = s.rip;
    uint64_t cs_base = s.seg[CS].base;
    uint64_t first_page = ~0ull;

    for (unsigned n = 0; n < max_insns; n++) {
        uint8_t bytes[16] = {};
        uint64_t lin = (s.hflags & HF_CS64) ? rip : ((cs_base + rip) & 0xffffffff);
        uint64_t gpa = 0;
        size_t got = env.mmu.fetch(lin, bytes, 15, gpa);
        if (got == 0) {
            if (n == 0)
                return false; // the fetch fault is pending
            s.pending_vector = -1; // let the block end before it; it faults when run
            b.emit(Opcode::ExitJump, Arg::imm(rip));
            break;
        }
        uint64_t page = gpa & ~0xfffull;
        if (n == 0) {
            out.phys_pc = gpa;
            first_page = page;
            out.code_pages.push_back(page);
        } else if (page != first_page) {
            b.emit(Opcode::ExitJump, Arg::imm(rip)); // a new page starts a new block
            break;
        }
        bool truncated = false; // the next page could not be fetched
        if (got < 15) {
            // The instruction may continue on the next page.
            uint64_t gpa2 = 0;
            size_t more = env.mmu.fetch(lin + got, bytes + got, 15 - got, gpa2);
            if (more)
                out.code_pages.push_back(gpa2 & ~0xfffull);
            else
                s.pending_vector = -1; // only matters if the instruction really needs those bytes
            truncated = more == 0;
            got += more;
        }
        ZydisDecodedInstruction insn;
        ZydisDecodedOperand ops[ZYDIS_MAX_OPERAND_COUNT];
        bool decoded = ZYAN_SUCCESS(ZydisDecoderDecodeFull(&decoder, bytes, got, &insn, ops));
        uint8_t length = decoded ? insn.length : 1;
        b.begin_guest(rip, length);
        if (!decoded && truncated) {
            // The instruction runs into a page that cannot be fetched: that
            // page's fault (#PF with CR2 on it) is what the CPU raises. As its
            // own block, first; then the fetch is done again to raise it.
            out.ir.guest.pop_back();
            if (n > 0) {
                b.emit(Opcode::ExitJump, Arg::imm(rip));
                break;
            }
            uint64_t gpa2 = 0;
            uint64_t next = (lin | 0xfff) + 1;
            env.mmu.fetch((s.hflags & HF_CS64) ? next : next & 0xffffffff, bytes, 1, gpa2);
            return false;
        }
        if (!decoded) {
            V zero = b.konst(6);
            b.emit(Opcode::Call, Arg::imm(uint64_t(Helper::RaiseFault)), Arg::value(zero),
                   Arg::value(b.konst(~0ull)), Arg::value(b.konst(0)));
            b.emit(Opcode::ExitJump, Arg::imm(rip));
            break;
        }
        Emitter e{env, b, insn, ops, rip, rip + length, s.hflags};
        EmitFn fn = table[insn.mnemonic];
        size_t mark = out.ir.insts.size();
        bool ok = fn && fn(e);
        if (!ok && host_executable(insn)) {
            out.ir.insts.resize(mark);
            std::fill(std::begin(e.m_addr_valid), std::end(e.m_addr_valid), false);
            ok = emit_hostexec(e);
        }
        if (!ok) {
            // Not implemented: roll back what the emitter began, raise #UD.
            out.ir.insts.resize(mark);
            g_unimplemented++;
            e.call(Helper::Undefined, e.k(rip), e.k(insn.mnemonic));
            b.emit(Opcode::ExitJump, Arg::imm(rip));
            break;
        }
        if (e.end_block)
            break;
        rip = (rip + length) & e.ip_mask();
        if (ends_block(insn.mnemonic) || n + 1 == max_insns) {
            b.emit(Opcode::StoreField, Arg::imm(offsetof(CpuState, rip)), Arg::value(b.konst(rip)));
            b.emit(Opcode::ExitLoop);
            break;
        }
    }
    if (!out.ir.is_terminated())
        b.emit(Opcode::ExitJump, Arg::imm(rip));
    return true;
}

} // namespace emu::x86
