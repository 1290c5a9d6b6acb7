// devices/timer/hpet.cpp — the HPET (behaviour from the IA-PC HPET
// specification 1.0a).
#include "devices/timer/hpet.h"

#include "common/log.h"

#include <cassert>

namespace emu::devices {

namespace {

constexpr uint64_t kRegCaps = 0x000, kRegConfig = 0x010, kRegStatus = 0x020, kRegCounter = 0x0f0;
constexpr uint64_t kRegTimer0 = 0x100, kTimerStride = 0x20;

// GCAP_ID: rev 1, 3 timers (NUM_TIM_CAP = 2), 64-bit, legacy capable,
// vendor 8086, 100 000 000 fs per tick.
constexpr uint64_t kCapabilities = 0x01 | uint64_t(Hpet::kTimers - 1) << 8 | 1u << 13 | 1u << 15 |
                                   uint64_t(0x8086) << 16 | uint64_t(Hpet::kTickNs * 1'000'000) << 32;

// Tn_CONF_CAP
constexpr uint64_t kLevel = 1u << 1, kIntEnable = 1u << 2, kPeriodic = 1u << 3, kPeriodicCap = 1u << 4,
                   kSizeCap = 1u << 5, kValSet = 1u << 6, kMode32 = 1u << 8;
constexpr int kRouteShift = 9;
constexpr uint64_t kRouteMask = 0x1fu << kRouteShift;
constexpr uint64_t kTimerWritable = kLevel | kIntEnable | kPeriodic | kValSet | kMode32 | kRouteMask;

constexpr int64_t kMinIrqIntervalNs = 10'000;
constexpr uint64_t kMaxDeltaTicks = uint64_t(1) << 52; // ~14 years: beyond that, never

} // namespace

std::span<const FieldDesc> HpetTimerState::fields()
{
    static const FieldDesc table[] = {
        field<&HpetTimerState::config>("config"),
        field<&HpetTimerState::comparator>("comparator"),
        field<&HpetTimerState::period>("period"),
    };
    return table;
}

std::span<const FieldDesc> HpetState::fields()
{
    static const FieldDesc table[] = {
        field<&HpetState::config>("config"),
        field<&HpetState::status>("status"),
        field<&HpetState::counter>("counter"),
        field<&HpetState::counter_ns>("counter_ns"),
        field<&HpetState::timer>("timer", HpetTimerState::fields()),
    };
    return table;
}

Hpet::Hpet(Clock& clock, HpetConfig config) : m_clock(clock), m_config(config)
{
    for (int n = 0; n < kTimers; ++n)
        m_timers[size_t(n)] = std::make_unique<Timer>(clock, [this, n] { fire(n); });
    mem::IoOps ops;
    ops.read = [this](uint64_t off, unsigned size) { return read(off, size); };
    ops.write = [this](uint64_t off, uint64_t v, unsigned size) { write(off, v, size); };
    ops.min_access = 4;
    ops.max_access = 8;
    auto r = mem::MemoryRegion::io("hpet", kSize, std::move(ops));
    assert(r.has_value());
    m_region = std::move(*r);
    reset();
}

Hpet::~Hpet() = default;

mem::Result<void> Hpet::attach(mem::MemoryRegion& mmio_root, uint64_t base)
{
    return mmio_root.add_subregion(*m_region, base);
}

void Hpet::reset()
{
    m_state = HpetState{};
    for (auto& t : m_timers)
        t->cancel();
    m_legacy_active.lower();
    update_levels();
}

uint64_t Hpet::counter() const
{
    if (!enabled())
        return m_state.counter;
    int64_t elapsed = m_clock.now_ns() - m_state.counter_ns;
    return m_state.counter + uint64_t(elapsed > 0 ? elapsed / kTickNs : 0);
}

// ---- timers ------------------------------------------------------------

IrqLine* Hpet::line_of(int n)
{
    if (legacy() && n < 2)
        return &m_legacy[size_t(n)];
    int route = int((m_state.timer[size_t(n)].config & kRouteMask) >> kRouteShift);
    return &m_routes[size_t(route)];
}

void Hpet::update_levels()
{
    std::array<bool, kRoutes> route_level{};
    std::array<bool, 2> legacy_level{};
    for (int n = 0; n < kTimers; ++n) {
        const HpetTimerState& t = m_state.timer[size_t(n)];
        if (!(t.config & kLevel) || !(t.config & kIntEnable) || !(m_state.status & (1u << n)))
            continue;
        IrqLine* line = line_of(n);
        if (line == &m_legacy[0] || line == &m_legacy[1])
            legacy_level[size_t(line - &m_legacy[0])] = true;
        else
            route_level[size_t(line - &m_routes[0])] = true;
    }
    for (int i = 0; i < kRoutes; ++i)
        m_routes[size_t(i)].set(route_level[size_t(i)]);
    m_legacy[0].set(legacy_level[0]);
    m_legacy[1].set(legacy_level[1]);
}

void Hpet::schedule(int n)
{
    Timer& timer = *m_timers[size_t(n)];
    if (!enabled()) {
        timer.cancel();
        return;
    }
    const HpetTimerState& t = m_state.timer[size_t(n)];
    // Armed for this very comparator and due now (its callback not yet run
    // at this instant): leave it, or a write at that instant would find the
    // comparator "already matched" and swallow the interrupt.
    if (timer.pending() && timer.deadline() <= m_clock.now_ns() && m_armed_for[size_t(n)] == t.comparator)
        return;
    m_armed_for[size_t(n)] = t.comparator;
    uint64_t now_count = counter();
    uint64_t delta;
    if (t.config & kMode32) {
        delta = (uint32_t(t.comparator) - uint32_t(now_count)) & 0xffffffffu;
        if (delta == 0)
            delta = uint64_t(1) << 32; // matched already: again after the wrap
    } else {
        if (t.comparator <= now_count) {
            timer.cancel(); // matched already; the next match is 2^64 ticks away
            return;
        }
        delta = t.comparator - now_count;
    }
    if (delta > kMaxDeltaTicks) {
        timer.cancel();
        return;
    }
    // The instant the counter steps to now_count + delta.
    uint64_t ticks_from_base = now_count + delta - m_state.counter;
    timer.arm(m_state.counter_ns + int64_t(ticks_from_base) * kTickNs);
}

void Hpet::fire(int n)
{
    HpetTimerState& t = m_state.timer[size_t(n)];
    uint64_t now_count = counter();
    bool mode32 = t.config & kMode32;
    uint64_t width_mask = mode32 ? 0xffffffffu : ~uint64_t(0);
    uint64_t period = t.period & width_mask;
    if ((t.config & kPeriodic) && period != 0) {
        // Next comparator: past the counter (periods missed by host delays
        // are skipped), and not sooner than the coalescing interval.
        uint64_t behind = (now_count - t.comparator) & width_mask;
        if (behind > width_mask / 2)
            behind = 0; // the comparator is ahead: a spurious early call
        uint64_t cmp = t.comparator + (behind / period + 1) * period;
        uint64_t min_ticks = kMinIrqIntervalNs / kTickNs;
        uint64_t ahead = (cmp - now_count) & width_mask;
        if (ahead < min_ticks)
            cmp += ((min_ticks - ahead + period - 1) / period) * period;
        t.comparator = cmp & width_mask;
    }
    if (t.config & kLevel) {
        m_state.status |= 1u << n; // status is set even with interrupts disabled
        update_levels();
    } else if (t.config & kIntEnable) {
        IrqLine* line = line_of(n);
        if (!line->level()) // a line held high by a level timer already asserts
            line->pulse();
    }
    schedule(n);
}

void Hpet::schedule_all()
{
    for (int n = 0; n < kTimers; ++n)
        schedule(n);
}

// ---- registers ---------------------------------------------------------

uint64_t Hpet::read(uint64_t offset, unsigned size)
{
    uint64_t v = read_register(offset & ~uint64_t(7));
    if (size == 8)
        return v;
    return (offset & 4) ? v >> 32 : v & 0xffffffffu;
}

void Hpet::write(uint64_t offset, uint64_t value, unsigned size)
{
    uint64_t mask = ~uint64_t(0);
    if (size != 8) {
        unsigned shift = (offset & 4) ? 32 : 0;
        mask = uint64_t(0xffffffffu) << shift;
        value = (value & 0xffffffffu) << shift;
    }
    write_register(offset & ~uint64_t(7), value, mask);
}

uint64_t Hpet::read_register(uint64_t reg) const
{
    switch (reg) {
    case kRegCaps:
        return kCapabilities;
    case kRegConfig:
        return m_state.config;
    case kRegStatus:
        return m_state.status;
    case kRegCounter:
        return counter();
    default:
        break;
    }
    if (reg >= kRegTimer0 && reg < kRegTimer0 + kTimerStride * kTimers) {
        const HpetTimerState& t = m_state.timer[(reg - kRegTimer0) / kTimerStride];
        switch ((reg - kRegTimer0) % kTimerStride) {
        case 0x00:
            return t.config | kPeriodicCap | kSizeCap | uint64_t(m_config.route_cap) << 32;
        case 0x08:
            return t.comparator;
        default:
            return 0; // FSB route: FSB delivery is not supported
        }
    }
    return 0; // reserved
}

void Hpet::write_register(uint64_t reg, uint64_t value, uint64_t mask)
{
    auto deposit = [mask, value](uint64_t old) { return (old & ~mask) | (value & mask); };
    switch (reg) {
    case kRegConfig: {
        uint64_t old = m_state.config;
        uint64_t now_count = counter();
        m_state.config = deposit(old) & 3;
        if (!(old & 1) && enabled()) {
            m_state.counter_ns = m_clock.now_ns(); // resume from the halted value
        } else if ((old & 1) && !enabled()) {
            m_state.counter = now_count; // halt
        }
        m_legacy_active.set(legacy());
        update_levels();
        schedule_all();
        return;
    }
    case kRegStatus:
        m_state.status &= ~(value & mask);
        update_levels();
        return;
    case kRegCounter:
        if (enabled()) {
            log_debug("hpet: main counter written while running: ignored");
            return;
        }
        m_state.counter = deposit(m_state.counter);
        return;
    default:
        break;
    }
    if (reg >= kRegTimer0 && reg < kRegTimer0 + kTimerStride * kTimers)
        write_timer(int((reg - kRegTimer0) / kTimerStride), (reg - kRegTimer0) % kTimerStride, value, mask);
}

void Hpet::write_timer(int n, uint64_t reg, uint64_t value, uint64_t mask)
{
    HpetTimerState& t = m_state.timer[size_t(n)];
    auto deposit = [](uint64_t old, uint64_t v, uint64_t m) { return (old & ~m) | (v & m); };
    if (reg == 0x00) {
        uint64_t cfg = deposit(t.config, value, mask) & kTimerWritable;
        int route = int((cfg & kRouteMask) >> kRouteShift);
        if (!(m_config.route_cap & (1u << route)))
            cfg = (cfg & ~kRouteMask) | (t.config & kRouteMask); // unsupported: unchanged
        if (!(cfg & kLevel))
            m_state.status &= ~(uint64_t(1) << n);
        t.config = cfg;
        if (cfg & kMode32) {
            t.comparator &= 0xffffffffu;
            t.period &= 0xffffffffu;
        }
        update_levels();
        schedule(n);
    } else if (reg == 0x08) {
        if (t.config & kMode32)
            mask &= 0xffffffffu; // the upper half does not exist
        bool periodic = t.config & kPeriodic;
        if (!periodic || (t.config & kValSet))
            t.comparator = deposit(t.comparator, value, mask);
        if (periodic)
            t.period = deposit(t.period, value, mask);
        t.config &= ~kValSet;
        schedule(n);
    }
    // 0x10: FSB route, not supported: ignored.
}

std::string Hpet::dump() const
{
    return dump_state(HpetState::fields(), &m_state);
}

} // namespace emu::devices
