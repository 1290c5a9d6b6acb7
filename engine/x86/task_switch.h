// engine/x86/task_switch.h — hardware task switching (legacy protected mode).
#pragma once

#include "engine/x86/env.h"

namespace emu::x86 {

enum class TaskReason { Jmp, Call, Int, Iret };

// Switches to the task whose TSS 'selector' names. 'next_eip' is what the
// outgoing task resumes at. False with an exception pending on failure.
bool task_switch(CpuEnv& env, uint16_t selector, TaskReason reason, uint64_t next_eip, bool has_error = false,
                 uint32_t error = 0);

} // namespace emu::x86
