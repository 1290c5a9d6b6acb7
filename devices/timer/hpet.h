// devices/timer/hpet.h — the high precision event timer (IA-PC HPET 1.0a),
// 1 KiB of MMIO at 0xfed00000: a 64-bit main counter at 10 MHz from a Clock
// and three comparators.
//
// Supported: capabilities (vendor 8086, 3 timers, 64-bit counter, legacy
// replacement capable, 100 ns period), general configuration (enable, legacy
// replacement), interrupt status (write 1 to clear), the main counter
// (writable while halted), per timer: one-shot or periodic (every timer is
// periodic-capable), VAL_SET, 32-bit mode, edge or level, interrupt enable,
// route to one of 32 IOAPIC inputs among those its route capability allows
// (an unsupported route reads back unchanged, as the spec asks). Legacy
// replacement routes timer 0 to IRQ0 and timer 1 to IRQ8 and raises
// `legacy_active()` so the machine can take IRQ0 from the PIT and IRQ8 from
// the RTC. 32-bit and 64-bit accesses; narrower ones are widened by the bus.
// Not supported: FSB (MSI) delivery — FSB_INT_DEL_CAP reads 0, FSB_EN_CNF
// cannot be set, the FSB route registers read 0 and ignore writes.
// Semantics worth knowing: a comparator written equal to the counter has
// already matched (it fires after a wrap: 2^32 ticks in 32-bit mode, never
// in 64-bit mode); a periodic timer that falls behind (host delays) skips the
// missed periods instead of firing them all, and interrupts closer than
// 10 µs are coalesced. In periodic mode a comparator write sets the period
// (the last value written) and, with VAL_SET, the comparator too.
#pragma once

#include "devices/state.h"
#include "engine/clock.h"
#include "engine/irq.h"
#include "engine/memory/region.h"

#include <array>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

namespace emu::devices {

struct HpetConfig {
    // IOAPIC inputs each timer may be routed to (Tn_INT_ROUTE_CAP): 2, 8 and
    // 16-23 unless the machine says otherwise.
    uint32_t route_cap = 0x00ff0104;
};

struct HpetTimerState {
    uint64_t config = 0; // the writable bits of Tn_CONF_CAP
    uint64_t comparator = ~0ull;
    uint64_t period = 0;
    static std::span<const FieldDesc> fields();
};

struct HpetState {
    uint64_t config = 0;      // GEN_CONF
    uint64_t status = 0;      // GINTR_STA
    uint64_t counter = 0;     // main counter at counter_ns (enabled) or frozen
    int64_t counter_ns = 0;
    std::array<HpetTimerState, 3> timer{};
    static std::span<const FieldDesc> fields();
};

class Hpet {
public:
    static constexpr uint64_t kBase = 0xfed00000;
    static constexpr uint64_t kSize = 0x400;
    static constexpr int kTimers = 3;
    static constexpr int64_t kTickNs = 100; // 10 MHz
    static constexpr int kRoutes = 32;

    explicit Hpet(Clock& clock, HpetConfig config = {});
    ~Hpet();

    mem::MemoryRegion& region() { return *m_region; }
    mem::Result<void> attach(mem::MemoryRegion& mmio_root, uint64_t base = kBase);

    IrqLine& route(int gsi) { return m_routes[size_t(gsi) % kRoutes]; }
    IrqLine& legacy_irq0() { return m_legacy[0]; }
    IrqLine& legacy_irq8() { return m_legacy[1]; }
    IrqLine& legacy_active() { return m_legacy_active; } // high while LEG_RT_CNF is set

    uint64_t counter() const; // the main counter now

    void reset();
    const HpetState& state() const { return m_state; }
    std::string dump() const;

private:
    uint64_t read(uint64_t offset, unsigned size);
    void write(uint64_t offset, uint64_t value, unsigned size);
    uint64_t read_register(uint64_t reg) const;
    void write_register(uint64_t reg, uint64_t value, uint64_t mask);
    void write_timer(int n, uint64_t reg, uint64_t value, uint64_t mask);
    bool enabled() const { return m_state.config & 1; }
    bool legacy() const { return m_state.config & 2; }
    IrqLine* line_of(int n);
    void schedule(int n);
    void schedule_all();
    void fire(int n);
    void update_levels();

    Clock& m_clock;
    HpetConfig m_config;
    HpetState m_state;
    std::array<IrqLine, kRoutes> m_routes;
    std::array<IrqLine, 2> m_legacy;
    IrqLine m_legacy_active;
    std::array<std::unique_ptr<Timer>, kTimers> m_timers;
    std::array<uint64_t, kTimers> m_armed_for{}; // comparator each timer was armed for
    mem::MemoryRegion::Ptr m_region;
};

} // namespace emu::devices
