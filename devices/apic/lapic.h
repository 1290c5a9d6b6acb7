// devices/apic/lapic.h — the local APIC (one per vCPU, xAPIC mode) and the
// APIC bus that carries interrupt messages between the local APICs, the
// IOAPIC and (later) MSIs. Behaviour from the Intel SDM vol. 3, "Advanced
// Programmable Interrupt Controller (APIC)".
//
// Supported: the xAPIC register page (4 KiB of MMIO, 4-byte accesses; the bus
// widens narrower ones): ID (writable, 8 bits), version 0x00050014 (6 LVT
// entries, no EOI-broadcast suppression), TPR, APR, PPR, EOI, LDR, DFR (flat
// and cluster models), SVR (software enable, spurious vector, focus bit kept
// and ignored), ISR/TMR/IRR, ESR (errors collect internally; a write to ESR
// publishes and clears them), ICR (fixed, lowest priority, SMI, NMI, INIT,
// INIT level de-assert, start-up; no shorthand/self/all/all-but-self;
// physical and logical destinations), the LVT (timer, thermal, performance,
// LINT0, LINT1, error: masks, delivery modes, remote IRR for level LINTs),
// the timer (divide configuration, initial/current count, one-shot, periodic,
// TSC-deadline through set_tsc_deadline()), IA32_APIC_BASE through
// apic_base()/set_apic_base() (the global enable; BSP bit).
//
// Choices and simplifications, each visible to a guest:
//  - the timer counts at a 1 GHz bus clock (QEMU's default), so with divide
//    by 1 one count is 1 ns; a periodic timer never interrupts more often
//    than every kMinPeriodNs (counts keep their programmed pace);
//  - lowest-priority delivery goes to the lowest-numbered matching local
//    APIC that is enabled (no arbitration by APR; Linux and Windows accept
//    any target);
//  - SMI messages are logged and ignored (no SMM);
//  - fixed interrupts arriving at a software-disabled APIC are kept in IRR
//    (delivered once the guest enables it), as QEMU does;
//  - ExtINT: with LINT0 programmed unmasked as ExtINT, or after an ExtINT
//    message (IOAPIC virtual wire), `pending()` passes the 8259's INTR
//    through and `acknowledge()` runs the 8259's INTA. With the APIC
//    globally disabled (IA32_APIC_BASE bit 11 clear) the 8259 is passed
//    through unconditionally, as the INTR pin is;
//  - the IOAPIC-side and ICR delivery status bits always read idle: messages
//    are delivered synchronously;
//  - relocating the page through IA32_APIC_BASE is stored but the region
//    is not moved (the machine owns placement; logged once).
// Omitted: x2APIC (our CPU models do not advertise it: CPUID.1:ECX[21] is
// clear, so IA32_APIC_BASE bit 10 cannot be set), CMCI (no LVT entry at
// 0x2f0), the remote read register (reads 0), SMI/SMM, thermal and
// performance-counter events (their LVT entries exist but nothing fires
// them), MSI delivery (deliver_msi is the hook, see LapicBus).
//
// Per-vCPU MMIO: every local APIC has its own region(); the machine maps it
// in that vCPU's view of memory at 0xfee00000 (a per-vCPU container over the
// system root), so each vCPU sees its own APIC at the same address.
//
// Threads: register accesses, bus deliveries, timers and acknowledge() run
// under the VM's device lock; pending() is read by the owning vCPU without
// the lock (an atomic summary, as in the 8259).
#pragma once

#include "devices/state.h"
#include "engine/clock.h"
#include "engine/memory/region.h"
#include "engine/vcpu.h"

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace emu::devices {

class LocalApic;

enum class ApicDelivery : uint8_t { Fixed = 0, LowestPriority = 1, Smi = 2, Nmi = 4, Init = 5, StartUp = 6, ExtInt = 7 };
enum class ApicShorthand : uint8_t { None = 0, Self = 1, AllIncludingSelf = 2, AllExcludingSelf = 3 };

// One interrupt message on the APIC bus (an ICR write, an IOAPIC
// redirection, an LVT entry sent to self).
struct ApicMessage {
    uint8_t dest = 0;         // APIC ID (physical) or message destination address (logical)
    bool logical = false;     // destination mode
    ApicDelivery mode = ApicDelivery::Fixed;
    uint8_t vector = 0;
    bool assert_level = true; // ICR bit 14: false only for INIT level de-assert
    bool level_trigger = false;
    ApicShorthand shorthand = ApicShorthand::None;
    int source = -1;          // sending local APIC's cpu index; -1 for the IOAPIC/MSI
};

// What the machine does for the bus: each gets the target's cpu index.
struct LapicBusHooks {
    std::function<void(int cpu)> kick;                  // an interrupt became pending: wake/kick the vCPU
    std::function<void(int cpu)> nmi;                   // raise NMI on the vCPU
    std::function<void(int cpu)> init;                  // INIT: reset the vCPU, wait for SIPI (the APIC reset itself)
    std::function<void(int cpu, uint8_t vector)> sipi;  // start-up: begin at vector << 12 (if waiting for SIPI)
};

// The machine owns one bus per VM and registers every local APIC on it.
class LapicBus {
public:
    explicit LapicBus(LapicBusHooks hooks = {}) : m_hooks(std::move(hooks)) {}
    void set_hooks(LapicBusHooks hooks) { m_hooks = std::move(hooks); }
    const LapicBusHooks& hooks() const { return m_hooks; }

    void attach(LocalApic& apic);  // asserts that its cpu index is free
    void detach(LocalApic& apic);
    LocalApic* apic(int cpu) const;
    size_t size() const { return m_apics.size(); }

    // Delivers a message; returns how many local APICs accepted it.
    int deliver(const ApicMessage& msg);
    // An MSI write (address 0xfeeXXXXX, data): decoded and delivered.
    int deliver_msi(uint64_t address, uint32_t data);

    // Level-triggered EOIs are broadcast here (the IOAPIC's eoi()).
    void add_eoi_listener(std::function<void(uint8_t vector)> listener);
    void broadcast_eoi(uint8_t vector);

private:
    bool matches(const LocalApic& apic, const ApicMessage& msg) const;

    LapicBusHooks m_hooks;
    std::vector<LocalApic*> m_apics; // by cpu index; null where none
    std::vector<std::function<void(uint8_t)>> m_eoi_listeners;
};

struct LapicState {
    uint64_t apic_base = 0;
    uint32_t id = 0;  // register value: ID in bits 24-31
    uint32_t tpr = 0;
    uint32_t ldr = 0;
    uint32_t dfr = 0xffffffff;
    uint32_t svr = 0xff;
    std::array<uint32_t, 8> isr{};
    std::array<uint32_t, 8> tmr{};
    std::array<uint32_t, 8> irr{};
    uint32_t esr = 0;         // visible ESR (as of the last ESR write)
    uint32_t esr_pending = 0; // errors since then
    uint32_t icr_lo = 0;
    uint32_t icr_hi = 0;
    std::array<uint32_t, 6> lvt{}; // timer, thermal, perf, LINT0, LINT1, error
    uint32_t timer_initial = 0;
    uint32_t timer_dcr = 0;
    int64_t timer_start_ns = 0;    // when the count was timer_initial
    uint64_t tsc_deadline = 0;
    uint8_t lint_levels = 0;       // LINT0/1 input levels
    bool extint_latched = false;   // an ExtINT message awaits INTA
    static std::span<const FieldDesc> fields();
};

struct LapicConfig {
    int cpu = 0;            // index on the bus
    uint8_t apic_id = 0;    // initial APIC ID
    bool bsp = false;       // IA32_APIC_BASE bit 8
    // The vCPU's TSC for TSC-deadline mode: read now, and its rate. Unset:
    // the TSC is the clock in ns (1 GHz).
    std::function<uint64_t()> read_tsc;
    uint64_t tsc_hz = 1'000'000'000;
};

class LocalApic final : public InterruptSource {
public:
    static constexpr uint64_t kBase = 0xfee00000;
    static constexpr uint64_t kSize = 0x1000;
    static constexpr uint32_t kVersion = 0x00050014;
    static constexpr int64_t kBusTickNs = 1; // 1 GHz
    static constexpr int64_t kMinPeriodNs = 1'000;
    enum Lvt { LvtTimer, LvtThermal, LvtPerf, LvtLint0, LvtLint1, LvtError };

    LocalApic(Clock& clock, LapicBus& bus, LapicConfig config);
    ~LocalApic() override;

    mem::MemoryRegion& region() { return *m_region; }
    mem::Result<void> attach(mem::MemoryRegion& root, uint64_t base = kBase);

    int cpu() const { return m_config.cpu; }
    uint8_t apic_id() const { return uint8_t(m_state.id >> 24); }

    // The machine gives the 8259 for ExtINT passthrough.
    void set_extint_source(InterruptSource* pic) { m_pic = pic; update(); }

    // InterruptSource for the owning vCPU.
    bool pending() override;
    int acknowledge() override;

    // IA32_APIC_BASE (the vCPU's MSR code calls these). Returns false for a
    // value the guest may not write (reserved bits, x2APIC enable): #GP.
    uint64_t apic_base() const { return m_state.apic_base; }
    bool set_apic_base(uint64_t value);
    // IA32_TSC_DEADLINE. Writes are ignored unless the timer is in
    // TSC-deadline mode; 0 disarms.
    uint64_t tsc_deadline() const;
    void set_tsc_deadline(uint64_t tsc);

    // LINT0/LINT1 pins (e.g. the chipset's NMI on LINT1).
    void set_lint(int pin, bool level);

    // From the bus: a message this APIC accepted. Returns false if not
    // accepted (hardware-disabled APIC).
    bool receive(const ApicMessage& msg);
    bool enabled() const;         // globally and software enabled
    bool hw_enabled() const { return m_state.apic_base & (1u << 11); }
    bool logical_match(uint8_t mda) const;

    uint32_t current_count() const;
    void reset();      // power-on/system reset
    void init_reset(); // an INIT message: as reset, but ID and APIC base kept

    const LapicState& state() const { return m_state; }
    std::string dump() const;
    // dump() plus what is live: the timer's deadline, the pending flag, the
    // current count (`info lapic`).
    std::string describe() const;

private:
    uint64_t read(uint64_t offset);
    void write(uint64_t offset, uint32_t value);
    void write_lvt(int n, uint32_t value);
    void write_icr(uint32_t value);
    void accept_fixed(uint8_t vector, bool level_trigger);
    void local_deliver(int lvt);
    void error(uint32_t bit);
    void eoi();
    int ppr() const;
    uint32_t apr() const;
    int highest_deliverable() const;
    int64_t tick_ns() const;
    int timer_mode() const;
    void schedule_timer();
    void timer_fired();
    void update();

    Clock& m_clock;
    LapicBus& m_bus;
    LapicConfig m_config;
    LapicState m_state;
    InterruptSource* m_pic = nullptr;
    std::atomic<bool> m_pending{false};
    std::atomic<bool> m_extint{false};
    std::unique_ptr<Timer> m_timer;
    mem::MemoryRegion::Ptr m_region;
    bool m_in_error = false;
    bool m_warned_relocate = false;
};

} // namespace emu::devices
