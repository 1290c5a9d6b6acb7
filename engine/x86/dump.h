// engine/x86/dump.h — a vCPU's registers as text, in the layout of QEMU's
// `info registers` (general registers, RIP/RFL with the flag letters, the
// segment caches, descriptor tables, control and debug registers, EFER, the
// x87/SSE control words), so that people and scripts used to it can read it.
#pragma once

#include "engine/x86/cpu_state.h"

#include <string>

namespace emu::x86 {

std::string format_registers(const CpuState& s);

} // namespace emu::x86
