// engine/x86/hostexec.h — x87, MMX and SSE instructions executed on the
// host's own unit with the guest's state loaded: exact 80-bit and SSE
// semantics without a software float library.
//
// Each instruction form is re-encoded once (Zydis) into a thunk (xbyak): it
// saves the host FPU state, loads the guest's FXSAVE image with all
// exceptions masked, loads the general registers the instruction names, runs
// the instruction with its memory operand redirected to a buffer, and saves
// everything back. The helper fills the buffer through the soft MMU before
// and writes it back after, so faults stay precise; an exception the guest
// has unmasked is raised as #MF or #XM and the instruction has no effect.
#pragma once

#include <Zydis/Zydis.h>
#include <cstdint>

namespace emu::x86 {

struct CpuEnv;

// What the helper needs about one instruction form; lives as long as the process.
struct HostInsn {
    void (*thunk)(void* ctx) = nullptr;
    bool x87 = false;               // raises #MF (else #XM) for unmasked exceptions
    bool sse = false;               // needs CR4.OSFXSR
    // Moves control/status state (fxsave, fldcw, ldmxcsr …): runs with the
    // guest's own masks and cannot raise an FP exception.
    bool state_op = false;
    int mxcsr_offset = -1;          // where a loaded MXCSR sits in the memory operand
    int mem_bytes = 0;              // memory operand size, 0 if none
    bool mem_read = false, mem_write = false;
    unsigned mem_align = 0;         // required alignment, 0 if none
    uint32_t gpr_mask = 0;          // general registers the thunk loads
    uint32_t gpr_written = 0;       // … and stores back
    uint32_t flags_modified = 0;    // EFLAGS bits the instruction writes
    const char* name = "";
};

// True if the instruction belongs to the families run this way.
bool host_executable(const ZydisDecodedInstruction& insn);
// The thunk for this form, built on first use; nullptr if it cannot be
// re-encoded (the caller raises #UD).
const HostInsn* host_insn(const ZydisDecodedInstruction& insn, const ZydisDecodedOperand* ops);

// The helper body (helpers.inc: HostExec): a = HostInsn*, b = linear address
// of the memory operand.
uint64_t host_execute(CpuEnv& env, const HostInsn& hi, uint64_t address);

} // namespace emu::x86
