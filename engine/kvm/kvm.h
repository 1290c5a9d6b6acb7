// engine/kvm/kvm.h — the KVM accelerator (accel=kvm): a VM with its memory
// slots, and vCPUs that implement VcpuBackend like our engine's x86::Vcpu.
//
// The interrupt controllers stay in userspace (QEMU's kernel-irqchip=off): KVM
// runs guest code only; port I/O, MMIO (the local APIC page at 0xfee00000
// included) and unknown MSRs exit to the machine's x86::PhysBus; interrupts
// come from the vCPU's InterruptSource (the PIC or local APIC) and are
// injected with KVM_INTERRUPT when the guest can take them. KVM keeps
// IA32_APIC_BASE itself: a change the guest makes is passed on to
// bus.msr_write(MSR_APIC_BASE) after the exit that reports it. CR8 stays in
// KVM (the userspace APIC's TPR is not synchronised with it).
//
// How a machine uses it:
//   1. KvmVm::create() opens /dev/kvm and makes the VM (checking the
//      capabilities listed in KvmCaps; what is missing is named in the error).
//   2. attach_memory(space): every RAM/ROM range of the address space becomes
//      a memory slot, now and after each topology change (the listener runs on
//      the thread that changes the topology). ROM is a read-only slot when KVM
//      has KVM_CAP_READONLY_MEM; without it ROM is left unmapped and every
//      access exits as MMIO to the PhysBus.
//   3. KvmVcpu::create(vm, bus, model, index, count) per vCPU: the vCPU's
//      CPUID is the model's intersected with what KVM supports; it starts in
//      the power-on state (reset()).
//   4. Boot: set_state() with the same x86::CpuState the engine would be
//      loaded with (devices/boot's entry state); get_state() for `info
//      registers` and the like.
//   5. Teardown: the vCPUs (after their threads ended), then the VM (it
//      detaches from the address space, which must still exist), then the
//      address space. The CPU model must outlive its vCPUs.
//   6. Each vCPU runs on a thread of its own: run() returns Halted (wait for
//      an interrupt, then call run() again), Kicked, TripleFault or
//      InternalError (error() says why). Budget is never returned: KVM cannot
//      count instructions, so the budget is ignored.
//
// Threads: run(), reset(), get_state() and set_state() belong to the vCPU's
// thread, or to any thread while run() is not executing (the machine paused
// it). kick() and raise_nmi() may be called from any thread at any time: they
// set a flag, set kvm_run's immediate_exit and, while run() executes, send a
// real-time signal (kick_signal()) to the thread in run(); the signal is
// blocked on that thread except inside KVM_RUN (KVM_SET_SIGNAL_MASK), so it
// only ever interrupts guest code. No signal is sent once run() returned, so
// the thread may end at any time.
#pragma once

#include "engine/vcpu.h"
#include "engine/x86/cpu_state.h"
#include "engine/x86/cpuid.h"
#include "engine/x86/phys_bus.h"

#include <atomic>
#include <cstdint>
#include <expected>
#include <memory>
#include <mutex>
#include <optional>
#include <pthread.h>
#include <span>
#include <string>
#include <vector>

struct kvm_run;

namespace emu::mem {
class AddressSpace;
struct RamRange;
} // namespace emu::mem

namespace emu::kvm {

struct Error {
    std::string message; // "kvm: KVM_RUN on vcpu 0: Invalid argument"
};

template <class T>
using Result = std::expected<T, Error>;

// What the KVM in this host offers, from KVM_CHECK_EXTENSION.
struct KvmCaps {
    bool readonly_mem = false;   // KVM_CAP_READONLY_MEM: ROM as read-only slots
    bool immediate_exit = false; // KVM_CAP_IMMEDIATE_EXIT (required)
    bool user_memory = false;    // KVM_CAP_USER_MEMORY (required)
    bool set_tss_addr = false;   // KVM_CAP_SET_TSS_ADDR (real mode on VMX)
    bool identity_map = false;   // KVM_CAP_SET_IDENTITY_MAP_ADDR
    bool ext_cpuid = false;      // KVM_CAP_EXT_CPUID (required)
    bool vcpu_events = false;    // KVM_CAP_VCPU_EVENTS: exceptions, NMI masking
    bool intr_shadow = false;    // KVM_CAP_INTR_SHADOW: the STI/MOV SS shadow in the events
    bool debugregs = false;      // KVM_CAP_DEBUGREGS
    bool xcrs = false;           // KVM_CAP_XCRS
    bool xsave = false;          // KVM_CAP_XSAVE: x87/SSE state as an XSAVE area
    int xsave_size = 4096;       // its size (KVM_CAP_XSAVE2, at least 4096)
    bool user_nmi = false;       // KVM_CAP_USER_NMI: KVM_NMI without an in-kernel APIC
    bool user_space_msr = false; // KVM_CAP_X86_USER_SPACE_MSR: unknown MSRs exit to the PhysBus
    int nr_memslots = 0;         // KVM_CAP_NR_MEMSLOTS
    int max_vcpus = 0;           // KVM_CAP_MAX_VCPUS (or NR_VCPUS)

    // "readonly-mem immediate-exit ... memslots=32764 max-vcpus=1024"
    std::string describe() const;
};

// One CPUID leaf as the vCPU reports it.
struct CpuidLeaf {
    uint32_t function = 0, index = 0;
    bool indexed = false; // the subleaf (ECX) selects the entry
    x86::CpuidResult value;
};

class KvmVm {
public:
    // Opens `device` and creates the VM. Fails with the cause when KVM is
    // absent, speaks another API version or lacks a required capability.
    static Result<std::unique_ptr<KvmVm>> create(const char* device = "/dev/kvm");
    ~KvmVm();
    KvmVm(const KvmVm&) = delete;
    KvmVm& operator=(const KvmVm&) = delete;

    const KvmCaps& caps() const { return m_caps; }

    // Mirrors the RAM/ROM ranges of `space` into memory slots (one address
    // space per VM; a second call replaces the first). Fails if the initial
    // slots cannot be made. Later failures (from the listener) are logged and
    // kept in memory_error(): the vCPUs stop with InternalError.
    Result<void> attach_memory(mem::AddressSpace& space);
    // Removes the listener and every slot (call before the address space goes).
    void detach_memory();
    std::string memory_error() const;
    bool memory_failed() const { return m_memory_failed.load(std::memory_order_acquire); }
    size_t slot_count() const;

    // The CPUID table of vCPU `index` of `count`: the model's leaves with the
    // feature bits KVM supports (KVM_GET_SUPPORTED_CPUID).
    std::vector<CpuidLeaf> cpuid(const x86::CpuModel& model, unsigned index, unsigned count) const;
    // KVM_GET_SUPPORTED_CPUID as returned by the host.
    const std::vector<CpuidLeaf>& supported_cpuid() const { return m_supported; }

    int fd() const { return m_vm; }
    int kvm_fd() const { return m_kvm; }
    int run_size() const { return m_run_size; }

private:
    struct Slot {
        uint32_t id;
        uint64_t gpa, size;
        uint8_t* host;
        bool readonly;
    };
    KvmVm() = default;
    void sync_slots(std::span<const mem::RamRange> ranges); // the listener
    Result<void> update_slots(const std::vector<Slot>& wanted);
    Result<void> set_slot(const Slot& slot, bool remove);

    int m_kvm = -1, m_vm = -1;
    int m_run_size = 0;
    KvmCaps m_caps;
    std::vector<CpuidLeaf> m_supported;
    mem::AddressSpace* m_space = nullptr;
    uint64_t m_listener = 0;
    mutable std::mutex m_slot_lock; // m_slots, m_free_ids, m_memory_error
    std::vector<Slot> m_slots;
    std::vector<uint32_t> m_free_ids;
    uint32_t m_next_id = 0;
    std::string m_memory_error;
    std::atomic<bool> m_memory_failed{false};
    bool m_attaching = false; // in attach_memory's first listener call
    std::optional<Error> m_attach_error;
};

class KvmVcpu final : public VcpuBackend {
public:
    // KVM_CREATE_VCPU `index` with the CPUID of vCPU `index` of `count`;
    // starts in the power-on state.
    static Result<std::unique_ptr<KvmVcpu>> create(KvmVm& vm, x86::PhysBus& bus, const x86::CpuModel& model,
                                                   unsigned index = 0, unsigned count = 1);
    ~KvmVcpu() override;
    KvmVcpu(const KvmVcpu&) = delete;
    KvmVcpu& operator=(const KvmVcpu&) = delete;

    VcpuExit run(uint64_t max_instructions = ~0ull) override;
    void kick() override;
    void set_interrupt_source(InterruptSource* source) override { m_irq = source; }
    void raise_nmi() override;
    // Power-on state: real mode at F000:FFF0 with CS base 0xffff0000.
    void reset() override;
    std::string error() const override { return m_error; }

    // The architectural state KVM holds: general registers, RIP/RFLAGS,
    // segments, descriptor tables, control registers, EFER, the APIC base,
    // the MSRs CpuState keeps (SYSENTER, STAR/LSTAR/CSTAR/SFMASK, kernel GS
    // base, PAT, TSC as an offset from the host's), x87/SSE (FXSAVE layout),
    // XCR0, debug registers, an exception being delivered, NMI masking and
    // the interrupt shadow (where KVM reports them). `halted` is ours: a vCPU
    // that executed HLT and waits for an interrupt.
    Result<void> get_state(x86::CpuState& state);
    // Loads all of the above. An interrupt KVM had accepted but not yet
    // delivered is dropped (set_state is for boot, reset and INIT).
    Result<void> set_state(const x86::CpuState& state);

    unsigned index() const { return m_index; }
    // The real-time signal that interrupts KVM_RUN (SIGRTMIN + 4).
    static int kick_signal();

private:
    KvmVcpu(KvmVm& vm, x86::PhysBus& bus, const x86::CpuModel& model, unsigned index);
    Result<void> setup_signals();
    Result<void> get_fpu(x86::CpuState& state);
    Result<void> set_fpu(const x86::CpuState& state);
    Result<void> inject();
    Result<bool> handle_exit(VcpuExit& result); // true: leave run() with result
    void handle_io();
    void handle_mmio();
    void handle_msr(bool write);
    Result<void> finish_pending_io();
    void poke();
    VcpuExit stop(std::string message); // InternalError with the (first) reason
    std::string rip_text();
    std::string ioctl_error(const char* what);

    KvmVm& m_vm;
    x86::PhysBus& m_bus;
    const x86::CpuModel& m_model;
    unsigned m_index;
    int m_fd = -1;
    kvm_run* m_run = nullptr;
    InterruptSource* m_irq = nullptr;
    bool m_halted = false;      // HLT exited and no interrupt has been taken since
    bool m_if = false;          // RFLAGS.IF as of the last exit or set_state
    bool m_io_pending = false;  // an I/O or MMIO exit's completion waits for the next KVM_RUN
    uint64_t m_apic_base = 0;   // as last reported to the bus
    std::string m_error;        // why run() returned InternalError (sticky)
    std::atomic<bool> m_kick{false};
    std::atomic<bool> m_nmi{false};
    std::mutex m_thread_lock;   // m_thread, m_in_run
    pthread_t m_thread{};
    bool m_has_thread = false;  // m_thread set up: signal blocked, KVM_SET_SIGNAL_MASK done
    bool m_in_run = false;      // run() executes on m_thread: kick() may signal it
};

} // namespace emu::kvm
