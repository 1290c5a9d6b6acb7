// engine/x86/env.h — what translated code runs against: the CPU state, its
// soft MMU and the bus, plus the CPU model (CPUID) and statistics.
#pragma once

#include "engine/x86/cpu_state.h"
#include "engine/x86/cpuid.h"
#include "engine/x86/mmu.h"

#include <atomic>

namespace emu::x86 {

struct CpuEnv {
    CpuEnv(CpuState& state, PhysBus& bus, const CpuModel& model) : s(state), mmu(state, bus), bus(bus), model(model)
    {
    }
    CpuState& s;
    Mmu mmu;
    PhysBus& bus;
    const CpuModel& model;
    uint32_t apic_id = 0, cpu_count = 1;
    uint64_t instructions = 0; // guest instructions retired (approximate: per block)
    // Raises an exception from a helper: a fault (rip stays at the instruction)
    // or a trap (rip moves past it).
    void raise(int vector, bool has_error = false, uint32_t error = 0, bool trap = false)
    {
        s.pending_vector = vector;
        s.pending_has_error = has_error;
        s.pending_error = error;
        pending_trap = trap;
        software_interrupt = false;
    }
    bool pending_trap = false;
    bool software_interrupt = false;
    // A store hit a page holding translated code: the executor finishes the
    // current instruction and leaves the block (self-modifying code).
    bool smc = false; // int n / int3 / into: the gate's DPL is checked
    // Set by helpers that change the mode, CR3 or the flags translation
    // depends on: the executor returns to the run loop after the instruction.
    bool mode_changed = false;
};

} // namespace emu::x86
