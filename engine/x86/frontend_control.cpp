// engine/x86/frontend_control.cpp — jumps, calls, returns, loops, software interrupts.
#include "engine/x86/frontend_internal.h"

namespace emu::x86 {

unsigned condition_of(ZydisMnemonic m); // frontend_alu.cpp

namespace {

bool relative_target(Emitter& e, uint64_t& target)
{
    const auto& o = e.op[0];
    if (o.type != ZYDIS_OPERAND_TYPE_IMMEDIATE || !o.imm.is_relative)
        return false;
    target = e.next_rip + uint64_t(o.imm.value.s);
    return true;
}

bool is_far(const Emitter& e)
{
    return e.op[0].type == ZYDIS_OPERAND_TYPE_POINTER || e.insn.meta.branch_type == ZYDIS_BRANCH_TYPE_FAR;
}

} // namespace

bool emit_jmp(Emitter& e)
{
    if (is_far(e))
        return emit_far(e, false);
    uint64_t target;
    if (relative_target(e, target)) {
        e.exit_jump(target);
        return true;
    }
    e.exit_indirect(e.read(0));
    return true;
}

bool emit_jcc(Emitter& e)
{
    uint64_t target;
    if (!relative_target(e, target))
        return false;
    e.exit_cond(e.cond(condition_of(e.insn.mnemonic)), target, e.next_rip);
    return true;
}

bool emit_jcxz(Emitter& e)
{
    uint64_t target;
    if (!relative_target(e, target))
        return false;
    V count = e.get_sized(RCX, e.addrsize());
    e.exit_cond(e.op2(Opcode::CmpEq, count, e.k(0)), target, e.next_rip);
    return true;
}

bool emit_loop(Emitter& e)
{
    uint64_t target;
    if (!relative_target(e, target))
        return false;
    unsigned n = e.addrsize();
    V count = e.zext(e.op2(Opcode::Sub, e.get_sized(RCX, n), e.k(1)), n);
    e.set_sized(RCX, count, n);
    V nonzero = e.op1(Opcode::BoolToInt, e.op2(Opcode::CmpNe, count, e.k(0)));
    if (e.insn.mnemonic != ZYDIS_MNEMONIC_LOOP) {
        V zf = e.op1(Opcode::BoolToInt, e.cond(4)); // ZF
        if (e.insn.mnemonic == ZYDIS_MNEMONIC_LOOPNE)
            zf = e.op2(Opcode::Xor, zf, e.k(1));
        nonzero = e.op2(Opcode::And, nonzero, zf);
    }
    e.exit_cond(e.op2(Opcode::CmpNe, nonzero, e.k(0)), target, e.next_rip);
    return true;
}

bool emit_call(Emitter& e)
{
    if (is_far(e))
        return emit_far(e, true);
    unsigned n = e.opsize();
    uint64_t target;
    if (relative_target(e, target)) {
        e.push(e.k(e.next_rip & e.ip_mask()), n);
        e.exit_jump(target);
        return true;
    }
    V dest = e.read(0); // before the push: the operand may use RSP
    e.push(e.k(e.next_rip & e.ip_mask()), n);
    e.exit_indirect(dest);
    return true;
}

bool emit_ret(Emitter& e)
{
    if (e.insn.meta.branch_type == ZYDIS_BRANCH_TYPE_FAR)
        return emit_far_return(e);
    unsigned n = e.opsize();
    V target = e.pop(n);
    if (e.insn.operand_count_visible > 0 && e.op[0].type == ZYDIS_OPERAND_TYPE_IMMEDIATE) {
        unsigned ss = e.stacksize();
        V sp = e.zext(e.op2(Opcode::Add, e.get_sized(RSP, ss), e.k(e.op[0].imm.value.u)), ss);
        e.set_sized(RSP, sp, ss);
    }
    e.exit_indirect(target);
    return true;
}

bool emit_int(Emitter& e)
{
    switch (e.insn.mnemonic) {
    case ZYDIS_MNEMONIC_INT3:
        e.call(Helper::RaiseTrap, e.k(3), e.k(1));
        break;
    case ZYDIS_MNEMONIC_INT1:
        e.call(Helper::RaiseTrap, e.k(1), e.k(0));
        break;
    case ZYDIS_MNEMONIC_INTO: {
        // Traps only when OF is set: the helper looks.
        e.call(Helper::RaiseTrap, e.k(4), e.k(2));
        break;
    }
    default:
        e.call(Helper::RaiseTrap, e.k(e.op[0].imm.value.u & 0xff), e.k(1));
        break;
    }
    e.exit_jump(e.next_rip);
    return true;
}

bool emit_ud(Emitter& e)
{
    e.call(Helper::RaiseFault, e.k(6), e.k(~0ull));
    e.exit_jump(e.rip);
    return true;
}

} // namespace emu::x86
