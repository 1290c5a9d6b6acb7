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
