// engine/x86/frontend_system.cpp — system instructions: halt, CPUID, TSC,
// port I/O, interrupt flag, MSRs, TLB and descriptor-table registers.
#include "engine/x86/frontend_internal.h"

namespace emu::x86 {

bool emit_hlt(Emitter& e)
{
    e.call(Helper::Hlt);
    e.exit_loop();
    return true;
}

bool emit_cpuid(Emitter& e)
{
    e.call(Helper::Cpuid);
    return true;
}

bool emit_rdtsc(Emitter& e)
{
    e.call(Helper::Rdtsc);
    return true;
}

bool emit_inout(Emitter& e)
{
    if (e.insn.mnemonic == ZYDIS_MNEMONIC_IN) {
        unsigned n = e.bytes(0);
        V v = e.call(Helper::In, e.zext(e.read(1), 2), e.k(n));
        e.write(0, v);
    } else {
        unsigned n = e.bytes(1);
        e.call(Helper::Out, e.zext(e.read(0), 2), e.k(n), e.read(1));
    }
    return true;
}

bool emit_clisti(Emitter& e)
{
    e.call(e.insn.mnemonic == ZYDIS_MNEMONIC_CLI ? Helper::Cli : Helper::Sti);
    return true;
}

bool emit_msr(Emitter& e)
{
    e.call(e.insn.mnemonic == ZYDIS_MNEMONIC_RDMSR ? Helper::Rdmsr : Helper::Wrmsr);
    return true;
}

bool emit_invlpg(Emitter& e)
{
    e.call(Helper::Invlpg, e.address(0));
    return true;
}

bool emit_dtable(Emitter& e)
{
    bool idt = e.insn.mnemonic == ZYDIS_MNEMONIC_LIDT || e.insn.mnemonic == ZYDIS_MNEMONIC_SIDT;
    bool load = e.insn.mnemonic == ZYDIS_MNEMONIC_LGDT || e.insn.mnemonic == ZYDIS_MNEMONIC_LIDT;
    e.call(load ? Helper::Lgdt : Helper::Sgdt, e.address(0), e.k(idt ? 1 : 0), e.k(e.opsize()));
    return true;
}

} // namespace emu::x86

namespace emu::x86 {

bool emit_xsave(Emitter& e)
{
    switch (e.insn.mnemonic) {
    case ZYDIS_MNEMONIC_XGETBV:
        e.call(Helper::Xgetbv);
        return true;
    case ZYDIS_MNEMONIC_XSETBV:
        e.call(Helper::Xsetbv);
        e.exit_loop();
        return true;
    case ZYDIS_MNEMONIC_XSAVE:
    case ZYDIS_MNEMONIC_XSAVE64:
        e.call(Helper::Xsave, e.address(0), e.k(0));
        return true;
    default:
        e.call(Helper::Xsave, e.address(0), e.k(1));
        return true;
    }
}

bool emit_mov_dr(Emitter& e)
{
    bool to_dr = e.op[0].type == ZYDIS_OPERAND_TYPE_REGISTER && e.op[0].reg.value >= ZYDIS_REGISTER_DR0 &&
                 e.op[0].reg.value <= ZYDIS_REGISTER_DR15;
    if (to_dr) {
        e.call(Helper::MovDr, e.k((e.op[0].reg.value - ZYDIS_REGISTER_DR0) | 0x100), e.read(1));
        e.exit_loop();
    } else {
        V v = e.call(Helper::MovDr, e.k(e.op[1].reg.value - ZYDIS_REGISTER_DR0));
        e.write(0, v);
    }
    return true;
}

} // namespace emu::x86
