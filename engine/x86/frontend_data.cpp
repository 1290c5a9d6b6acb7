// engine/x86/frontend_data.cpp — moves, exchanges, stack and string instructions.
#include "engine/x86/frontend_internal.h"

#include <algorithm>

namespace emu::x86 {

namespace {

bool is_gpr(const ZydisDecodedOperand& o)
{
    return o.type == ZYDIS_OPERAND_TYPE_REGISTER && gpr_ref(o.reg.value).index >= 0;
}

bool is_control_register(const ZydisDecodedOperand& o)
{
    return o.type == ZYDIS_OPERAND_TYPE_REGISTER && o.reg.value >= ZYDIS_REGISTER_CR0 &&
           o.reg.value <= ZYDIS_REGISTER_CR15;
}

} // namespace

bool emit_mov(Emitter& e)
{
    if (segment_operand(e.op[0]) >= 0 || segment_operand(e.op[1]) >= 0)
        return emit_mov_sreg(e);
    if (is_control_register(e.op[0])) {
        e.call(Helper::MovToCr, e.k(e.op[0].reg.value - ZYDIS_REGISTER_CR0), e.read(1));
        e.exit_loop(); // paging or the mode may have changed
        return true;
    }
    if (is_control_register(e.op[1])) {
        V v = e.call(Helper::MovFromCr, e.k(e.op[1].reg.value - ZYDIS_REGISTER_CR0));
        e.write(0, v);
        return true;
    }
    auto is_dr = [](const ZydisDecodedOperand& o) {
        return o.type == ZYDIS_OPERAND_TYPE_REGISTER && o.reg.value >= ZYDIS_REGISTER_DR0 &&
               o.reg.value <= ZYDIS_REGISTER_DR15;
    };
    if (is_dr(e.op[0]) || is_dr(e.op[1]))
        return emit_mov_dr(e);
    if (e.op[0].type == ZYDIS_OPERAND_TYPE_REGISTER && !is_gpr(e.op[0]))
        return false;
    V v = e.read(1);
    if (v == UINT32_MAX)
        return false;
    e.write(0, v);
    return true;
}

bool emit_movx(Emitter& e)
{
    V v = e.read(1);
    if (e.insn.mnemonic != ZYDIS_MNEMONIC_MOVZX)
        v = e.sext(v, e.bytes(1));
    e.write(0, v);
    return true;
}

bool emit_lea(Emitter& e)
{
    e.write(0, e.address(1));
    return true;
}

bool emit_xchg(Emitter& e)
{
    // With a memory operand, xchg is always locked: one host atomic exchange.
    for (int m = 0; m < 2; m++) {
        if (e.op[m].type != ZYDIS_OPERAND_TYPE_MEMORY)
            continue;
        int r = 1 - m;
        V old = e.atomic(4, e.address(m), e.read(r), e.bytes(m));
        e.write(r, old);
        return true;
    }
    V a = e.read(0), c = e.read(1);
    // Memory first: if the store faults, no register has changed.
    if (e.op[1].type == ZYDIS_OPERAND_TYPE_MEMORY) {
        e.write(1, a);
        e.write(0, c);
    } else {
        e.write(0, c);
        e.write(1, a);
    }
    return true;
}

bool emit_xadd(Emitter& e)
{
    unsigned n = e.bytes(0);
    if (e.locked()) {
        V c = e.read(1);
        V old = e.atomic(0, e.address(0), c, n);
        e.write(1, old);
        e.set_flags(FlagOp::Add, n, e.op2(Opcode::Add, old, c), old, c);
        return true;
    }
    V a = e.read(0), c = e.read(1);
    V sum = e.op2(Opcode::Add, a, c);
    // The destination is written last (xadd r, r with one register keeps the
    // sum); a memory destination can alias nothing and goes first, for faults.
    if (e.op[0].type == ZYDIS_OPERAND_TYPE_MEMORY) {
        e.write(0, sum);
        e.write(1, a);
    } else {
        e.write(1, a);
        e.write(0, sum);
    }
    e.set_flags(FlagOp::Add, n, sum, a, c);
    return true;
}

bool emit_cmpxchg(Emitter& e)
{
    unsigned n = e.bytes(0);
    if (e.locked()) {
        V src = e.read(1);
        V acc = e.get_sized(RAX, n);
        V old = e.b.emit(Opcode::AtomicCmpxchg, Arg::imm(n), Arg::value(e.address(0)), Arg::value(acc),
                         Arg::value(src));
        V equal = e.op2(Opcode::CmpEq, acc, old);
        V rax = e.get(RAX);
        e.set(RAX, e.b.emit(Opcode::Select, Arg::value(equal), Arg::value(rax), Arg::value(e.merged(RAX, old, n))));
        e.set_flags(FlagOp::Sub, n, e.op2(Opcode::Sub, acc, old), acc, old);
        return true;
    }
    V dst = e.read(0), src = e.read(1);
    V acc = e.get_sized(RAX, n);
    V equal = e.op2(Opcode::CmpEq, acc, dst);
    auto select = [&](V yes, V no) {
        return e.b.emit(Opcode::Select, Arg::value(equal), Arg::value(yes), Arg::value(no));
    };
    if (e.op[0].type == ZYDIS_OPERAND_TYPE_MEMORY) {
        // Memory is always written (with its old value when unequal).
        e.write(0, select(src, dst));
    } else {
        // A register is written only when equal: no zero-extension otherwise.
        GprRef r = gpr_ref(e.op[0].reg.value);
        V old = e.get(r.index);
        e.set(r.index, select(e.merged(r.index, src, n, r.high8), old));
    }
    // The accumulator takes the destination only when unequal.
    V rax = e.get(RAX);
    e.set(RAX, select(rax, e.merged(RAX, dst, n)));
    e.set_flags(FlagOp::Sub, n, e.op2(Opcode::Sub, acc, dst), acc, dst);
    return true;
}

bool emit_bswap(Emitter& e)
{
    unsigned n = e.bytes(0);
    V v = e.read(0);
    if (n == 8)
        v = e.op1(Opcode::Bswap64, v);
    else if (n == 4)
        v = e.op1(Opcode::Bswap32, v);
    else
        v = e.k(0); // 16-bit bswap: the result is undefined; CPUs give zero
    e.write(0, v);
    return true;
}

bool emit_movbe(Emitter& e)
{
    unsigned n = e.bytes(0);
    V v = e.read(1);
    if (n == 8)
        v = e.op1(Opcode::Bswap64, v);
    else if (n == 4)
        v = e.op1(Opcode::Bswap32, v);
    else
        v = e.op2(Opcode::Or, e.op2(Opcode::Shr, v, e.k(8)), e.zext(e.op2(Opcode::Shl, v, e.k(8)), 2));
    e.write(0, v);
    return true;
}

bool emit_push(Emitter& e)
{
    if (segment_operand(e.op[0]) >= 0)
        return emit_push_sreg(e);
    V v = e.read(0);
    if (v == UINT32_MAX)
        return false;
    e.push(v, e.opsize());
    return true;
}

bool emit_pop(Emitter& e)
{
    if (segment_operand(e.op[0]) >= 0)
        return emit_pop_sreg(e);
    if (!is_gpr(e.op[0]) && e.op[0].type != ZYDIS_OPERAND_TYPE_MEMORY)
        return false;
    V v = e.pop(e.opsize());
    e.write(0, v);
    return true;
}

bool emit_leave(Emitter& e)
{
    unsigned ss = e.stacksize();
    e.set_sized(RSP, e.get_sized(RBP, ss), ss);
    V v = e.pop(e.opsize());
    e.set_sized(RBP, v, e.opsize());
    return true;
}

bool emit_pushf(Emitter& e)
{
    if (e.hflags & HF_VM)
        e.call(Helper::V86Iopl);
    // VM and RF read as zero in the pushed image.
    V f = e.op2(Opcode::And, e.b.emit(Opcode::GetEflags), e.k(~(VM | RF)));
    e.push(f, e.opsize());
    return true;
}

bool emit_popf(Emitter& e)
{
    unsigned n = e.opsize();
    V v = e.pop(n);
    e.call(Helper::Popf, v, e.k(n));
    return true;
}

bool emit_string(Emitter& e)
{
    unsigned op;
    switch (e.insn.mnemonic) {
    case ZYDIS_MNEMONIC_MOVSB:
    case ZYDIS_MNEMONIC_MOVSW:
    case ZYDIS_MNEMONIC_MOVSD:
    case ZYDIS_MNEMONIC_MOVSQ:
        op = 0;
        break;
    case ZYDIS_MNEMONIC_STOSB:
    case ZYDIS_MNEMONIC_STOSW:
    case ZYDIS_MNEMONIC_STOSD:
    case ZYDIS_MNEMONIC_STOSQ:
        op = 1;
        break;
    case ZYDIS_MNEMONIC_LODSB:
    case ZYDIS_MNEMONIC_LODSW:
    case ZYDIS_MNEMONIC_LODSD:
    case ZYDIS_MNEMONIC_LODSQ:
        op = 2;
        break;
    case ZYDIS_MNEMONIC_CMPSB:
    case ZYDIS_MNEMONIC_CMPSW:
    case ZYDIS_MNEMONIC_CMPSD:
    case ZYDIS_MNEMONIC_CMPSQ:
        op = 3;
        break;
    case ZYDIS_MNEMONIC_SCASB:
    case ZYDIS_MNEMONIC_SCASW:
    case ZYDIS_MNEMONIC_SCASD:
    case ZYDIS_MNEMONIC_SCASQ:
        op = 4;
        break;
    case ZYDIS_MNEMONIC_INSB:
    case ZYDIS_MNEMONIC_INSW:
    case ZYDIS_MNEMONIC_INSD:
        op = 5;
        break;
    default:
        op = 6; // outs
        break;
    }
    // SSE's movsd/cmpsd share the mnemonic: those have XMM operands.
    for (unsigned i = 0; i < e.insn.operand_count; i++)
        if (e.op[i].type == ZYDIS_OPERAND_TYPE_REGISTER && e.op[i].reg.value >= ZYDIS_REGISTER_XMM0 &&
            e.op[i].reg.value <= ZYDIS_REGISTER_XMM31)
            return false;
    unsigned n = 1;
    for (unsigned i = 0; i < e.insn.operand_count; i++)
        if (e.op[i].type == ZYDIS_OPERAND_TYPE_MEMORY) {
            n = e.op[i].size / 8;
            break;
        }
    if (op == 5 || op == 6) // the element size is the operand size (OUTS's first operand is DX)
        n = std::clamp(unsigned(e.insn.operand_width / 8), 1u, 4u);
    unsigned rep = 0;
    if (e.insn.attributes & ZYDIS_ATTRIB_HAS_REPNE)
        rep = 2;
    else if (e.insn.attributes & (ZYDIS_ATTRIB_HAS_REP | ZYDIS_ATTRIB_HAS_REPE))
        rep = 1;
    // Source segment (DS unless overridden); the destination is always ES.
    int seg = DS;
    for (unsigned i = 0; i < e.insn.operand_count; i++)
        if (e.op[i].type == ZYDIS_OPERAND_TYPE_MEMORY && e.op[i].mem.segment != ZYDIS_REGISTER_ES) {
            ZydisRegister sr = e.op[i].mem.segment;
            seg = sr == ZYDIS_REGISTER_CS ? CS : sr == ZYDIS_REGISTER_SS ? SS : sr == ZYDIS_REGISTER_FS ? FS
                  : sr == ZYDIS_REGISTER_GS ? GS : DS;
        }
    uint64_t desc = op | uint64_t(n) << 8 | uint64_t(rep) << 16 | uint64_t(e.addrsize()) << 24 |
                    uint64_t(seg) << 32 | uint64_t(e.next_rip - e.rip) << 40;
    V next = e.call(Helper::StringOp, e.k(desc), e.k(e.rip));
    e.exit_indirect(next);
    return true;
}

bool emit_nop(Emitter& e) { return true; }

} // namespace emu::x86
