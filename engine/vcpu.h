// engine/vcpu.h — what the machine sees of a virtual CPU, whatever runs it:
// our x86 engine (accel=tcg, engine/x86/vcpu.h) or KVM (engine/kvm/kvm.h).
#pragma once

#include <cstdint>
#include <string>

namespace emu {

enum class VcpuExit {
    Halted,        // HLT with no interrupt to take: wait for one, then run again
    Kicked,        // kick() was called
    Budget,        // the instruction budget given to run() is used up
    TripleFault,   // the machine resets (or powers off with -no-reboot)
    InternalError, // the backend cannot go on (KVM: an exit it does not handle); error() says why
};

// The INTR line and its acknowledge cycle (the PIC or the local APIC).
class InterruptSource {
public:
    virtual ~InterruptSource() = default;
    virtual bool pending() = 0;
    virtual int acknowledge() = 0; // the vector, or -1 if the request went away
};

class VcpuBackend {
public:
    virtual ~VcpuBackend() = default;
    // Runs guest code on the calling thread until there is a reason to stop.
    virtual VcpuExit run(uint64_t max_instructions = ~0ull) = 0;
    // From any thread: makes run() return soon with Kicked.
    virtual void kick() = 0;
    virtual void set_interrupt_source(InterruptSource* source) = 0;
    virtual void raise_nmi() = 0;
    virtual void reset() = 0;
    // After run() returned InternalError: what went wrong, naming the vCPU
    // ("kvm: vcpu 0: unhandled exit reason 17 (KVM_EXIT_INTERNAL_ERROR) at rip 0x1000").
    virtual std::string error() const { return {}; }
};

} // namespace emu
