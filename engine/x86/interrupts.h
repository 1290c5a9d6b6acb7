// engine/x86/interrupts.h — delivering exceptions and interrupts: real-mode
// IVT, protected-mode and long-mode IDT gates with privilege changes, TSS
// stacks and IST, error codes, and the double/triple fault rules.
#pragma once

#include "engine/x86/env.h"

namespace emu::x86 {

enum class Delivery { Ok, TripleFault };

// Delivers 'vector'. 'software' is int n/int3/into (the gate's DPL is checked);
// 'external' is a hardware interrupt (no error code, EXT bit in nested errors).
Delivery deliver_interrupt(CpuEnv& env, int vector, bool has_error, uint32_t error, bool software, bool external);

// Reads the 8-byte descriptor for a selector from the GDT or LDT; false if
// the selector is beyond the table's limit.
bool read_descriptor(CpuEnv& env, uint16_t selector, uint64_t& descriptor);
// Loads a segment register's hidden part from a descriptor.
void load_segment_cache(Segment& seg, uint16_t selector, uint64_t descriptor);

} // namespace emu::x86
