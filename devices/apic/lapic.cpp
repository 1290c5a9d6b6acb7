// devices/apic/lapic.cpp — the local APIC and the APIC bus (behaviour from
// the Intel SDM vol. 3, chapter "Advanced Programmable Interrupt Controller").
#include "devices/apic/lapic.h"

#include "common/log.h"

#include <algorithm>
#include <cassert>

namespace emu::devices {

namespace {

// Registers (offsets in the 4 KiB page).
constexpr uint64_t kRegId = 0x020, kRegVersion = 0x030, kRegTpr = 0x080, kRegApr = 0x090, kRegPpr = 0x0a0,
                   kRegEoi = 0x0b0, kRegRrd = 0x0c0, kRegLdr = 0x0d0, kRegDfr = 0x0e0, kRegSvr = 0x0f0,
                   kRegIsr = 0x100, kRegTmr = 0x180, kRegIrr = 0x200, kRegEsr = 0x280, kRegIcrLo = 0x300,
                   kRegIcrHi = 0x310, kRegLvt = 0x320, kRegInitial = 0x380, kRegCurrent = 0x390, kRegDcr = 0x3e0;
constexpr int kLvtCount = 6;

constexpr uint32_t kSvrEnable = 1u << 8;
constexpr uint32_t kSvrWritable = 0x3ff; // vector, enable, focus check
constexpr uint32_t kLvtMasked = 1u << 16, kLvtLevel = 1u << 15, kLvtRemoteIrr = 1u << 14;
// Writable bits of each LVT entry: timer, thermal, perf, LINT0, LINT1, error.
constexpr uint32_t kLvtWritable[kLvtCount] = {0x700ff, 0x107ff, 0x107ff, 0x1a7ff, 0x1a7ff, 0x100ff};
constexpr uint32_t kIcrWritable = 0x000ccfff;

// ESR bits.
constexpr uint32_t kEsrSendIllegal = 1u << 5, kEsrReceiveIllegal = 1u << 6, kEsrIllegalRegister = 1u << 7;

constexpr uint64_t kBaseEnable = 1u << 11, kBaseX2apic = 1u << 10, kBaseBsp = 1u << 8;
constexpr uint64_t kBaseAddressMask = 0x000000fffffff000ull;

constexpr int kModeOneShot = 0, kModePeriodic = 1, kModeDeadline = 2;

using Bits = std::array<uint32_t, 8>;
bool test_bit(const Bits& b, int v) { return b[size_t(v) >> 5] & (1u << (v & 31)); }
void set_bit(Bits& b, int v) { b[size_t(v) >> 5] |= 1u << (v & 31); }
void clear_bit(Bits& b, int v) { b[size_t(v) >> 5] &= ~(1u << (v & 31)); }
int highest(const Bits& b)
{
    for (int i = 7; i >= 0; --i)
        if (b[size_t(i)])
            return i * 32 + 31 - __builtin_clz(b[size_t(i)]);
    return -1;
}

} // namespace

// ---- the bus -----------------------------------------------------------

void LapicBus::attach(LocalApic& apic)
{
    size_t cpu = size_t(apic.cpu());
    if (m_apics.size() <= cpu)
        m_apics.resize(cpu + 1, nullptr);
    assert(!m_apics[cpu] && "two local APICs with one cpu index: a wiring bug");
    m_apics[cpu] = &apic;
}

void LapicBus::detach(LocalApic& apic)
{
    size_t cpu = size_t(apic.cpu());
    if (cpu < m_apics.size() && m_apics[cpu] == &apic)
        m_apics[cpu] = nullptr;
}

LocalApic* LapicBus::apic(int cpu) const
{
    return cpu >= 0 && size_t(cpu) < m_apics.size() ? m_apics[size_t(cpu)] : nullptr;
}

bool LapicBus::matches(const LocalApic& apic, const ApicMessage& msg) const
{
    switch (msg.shorthand) {
    case ApicShorthand::Self:
        return apic.cpu() == msg.source;
    case ApicShorthand::AllIncludingSelf:
        return true;
    case ApicShorthand::AllExcludingSelf:
        return apic.cpu() != msg.source;
    case ApicShorthand::None:
        break;
    }
    if (msg.logical)
        return apic.logical_match(msg.dest);
    return msg.dest == 0xff || msg.dest == apic.apic_id();
}

int LapicBus::deliver(const ApicMessage& msg)
{
    if (msg.mode == ApicDelivery::Init && !msg.assert_level) {
        // INIT level de-assert: resynchronises arbitration IDs; nothing to do.
        log_debug("apic: INIT level de-assert (no effect)");
        return 0;
    }
    std::vector<LocalApic*> targets;
    for (LocalApic* apic : m_apics)
        if (apic && apic->hw_enabled() && matches(*apic, msg))
            targets.push_back(apic);
    if (msg.mode == ApicDelivery::LowestPriority && targets.size() > 1) {
        // The lowest-numbered target that can take interrupts (no APR
        // arbitration), or the lowest-numbered one.
        auto it = std::find_if(targets.begin(), targets.end(), [](LocalApic* a) { return a->enabled(); });
        LocalApic* chosen = it != targets.end() ? *it : targets.front();
        targets.assign(1, chosen);
    }
    int accepted = 0;
    for (LocalApic* apic : targets)
        accepted += apic->receive(msg) ? 1 : 0;
    return accepted;
}

int LapicBus::deliver_msi(uint64_t address, uint32_t data)
{
    if ((address & 0xfff00000u) != LocalApic::kBase) {
        log_debug("apic: MSI to {:#x} is outside the interrupt window: dropped", address);
        return 0;
    }
    ApicMessage msg;
    msg.dest = uint8_t(address >> 12);
    msg.logical = address & (1u << 2);
    msg.mode = ApicDelivery((data >> 8) & 7);
    msg.vector = uint8_t(data);
    msg.level_trigger = data & (1u << 15);
    msg.assert_level = true;
    return deliver(msg);
}

void LapicBus::add_eoi_listener(std::function<void(uint8_t vector)> listener)
{
    m_eoi_listeners.push_back(std::move(listener));
}

void LapicBus::broadcast_eoi(uint8_t vector)
{
    for (auto& listener : m_eoi_listeners)
        listener(vector);
}

// ---- the local APIC ----------------------------------------------------

std::span<const FieldDesc> LapicState::fields()
{
    static const FieldDesc table[] = {
        field<&LapicState::apic_base>("apic_base"),
        field<&LapicState::id>("id"),
        field<&LapicState::tpr>("tpr"),
        field<&LapicState::ldr>("ldr"),
        field<&LapicState::dfr>("dfr"),
        field<&LapicState::svr>("svr"),
        field<&LapicState::isr>("isr"),
        field<&LapicState::tmr>("tmr"),
        field<&LapicState::irr>("irr"),
        field<&LapicState::esr>("esr"),
        field<&LapicState::esr_pending>("esr_pending"),
        field<&LapicState::icr_lo>("icr_lo"),
        field<&LapicState::icr_hi>("icr_hi"),
        field<&LapicState::lvt>("lvt"),
        field<&LapicState::timer_initial>("timer_initial"),
        field<&LapicState::timer_dcr>("timer_dcr"),
        field<&LapicState::timer_start_ns>("timer_start_ns"),
        field<&LapicState::tsc_deadline>("tsc_deadline"),
        field<&LapicState::lint_levels>("lint_levels"),
        field<&LapicState::extint_latched>("extint_latched"),
    };
    return table;
}

LocalApic::LocalApic(Clock& clock, LapicBus& bus, LapicConfig config)
    : m_clock(clock), m_bus(bus), m_config(std::move(config))
{
    m_timer = std::make_unique<Timer>(clock, [this] { timer_fired(); });
    mem::IoOps ops;
    ops.read = [this](uint64_t off, unsigned) { return read(off); };
    ops.write = [this](uint64_t off, uint64_t v, unsigned) { write(off, uint32_t(v)); };
    ops.min_access = ops.max_access = 4;
    auto r = mem::MemoryRegion::io("lapic", kSize, std::move(ops));
    assert(r.has_value());
    m_region = std::move(*r);
    reset();
    m_bus.attach(*this);
}

LocalApic::~LocalApic()
{
    m_bus.detach(*this);
}

mem::Result<void> LocalApic::attach(mem::MemoryRegion& root, uint64_t base)
{
    return root.add_subregion(*m_region, base);
}

void LocalApic::reset()
{
    m_state.apic_base = kBase | kBaseEnable | (m_config.bsp ? kBaseBsp : 0);
    m_state.id = uint32_t(m_config.apic_id) << 24;
    init_reset();
}

void LocalApic::init_reset()
{
    LapicState fresh;
    fresh.apic_base = m_state.apic_base;
    fresh.id = m_state.id;
    fresh.lint_levels = m_state.lint_levels; // the pins are outside the APIC
    fresh.lvt.fill(kLvtMasked);
    m_state = fresh;
    m_timer->cancel();
    update();
}

bool LocalApic::enabled() const
{
    return hw_enabled() && (m_state.svr & kSvrEnable);
}

bool LocalApic::logical_match(uint8_t mda) const
{
    if (mda == 0xff)
        return true; // broadcast in both models
    uint8_t ldr = uint8_t(m_state.ldr >> 24);
    switch (m_state.dfr >> 28) {
    case 0xf: // flat: a bit per APIC
        return (mda & ldr) != 0;
    case 0x0: // cluster: cluster number in the high nibble, members in the low
        return (mda >> 4) == (ldr >> 4) && (mda & ldr & 0x0f) != 0;
    default:
        return false;
    }
}

// ---- priorities and the INTR interface ---------------------------------

int LocalApic::ppr() const
{
    int isrv = std::max(highest(m_state.isr), 0);
    int tpr = int(m_state.tpr & 0xff);
    return (tpr >> 4) >= (isrv >> 4) ? tpr : (isrv & 0xf0);
}

uint32_t LocalApic::apr() const
{
    int isrv = std::max(highest(m_state.isr), 0);
    int irrv = std::max(highest(m_state.irr), 0);
    int tpr = int(m_state.tpr & 0xff);
    if ((tpr >> 4) >= (irrv >> 4) && (tpr >> 4) > (isrv >> 4))
        return uint32_t(tpr);
    return uint32_t(std::max({tpr, isrv, irrv}) & 0xf0);
}

int LocalApic::highest_deliverable() const
{
    if (!enabled())
        return -1;
    int v = highest(m_state.irr);
    if (v < 0 || (v & 0xf0) <= (ppr() & 0xf0))
        return -1;
    return v;
}

void LocalApic::update()
{
    bool now = highest_deliverable() >= 0;
    bool was = m_pending.exchange(now, std::memory_order_acq_rel);
    uint32_t lint0 = m_state.lvt[LvtLint0];
    bool extint = !hw_enabled() || m_state.extint_latched ||
                  (enabled() && !(lint0 & kLvtMasked) && ApicDelivery((lint0 >> 8) & 7) == ApicDelivery::ExtInt);
    m_extint.store(extint, std::memory_order_release);
    if (now && !was && m_bus.hooks().kick)
        m_bus.hooks().kick(cpu());
}

bool LocalApic::pending()
{
    if (m_pending.load(std::memory_order_acquire))
        return true;
    return m_extint.load(std::memory_order_acquire) && m_pic && m_pic->pending();
}

int LocalApic::acknowledge()
{
    int v = highest_deliverable();
    if (v >= 0) {
        clear_bit(m_state.irr, v);
        set_bit(m_state.isr, v);
        update();
        return v;
    }
    if (m_extint.load(std::memory_order_relaxed) && m_pic && m_pic->pending()) {
        m_state.extint_latched = false;
        int vector = m_pic->acknowledge(); // the 8259's INTA cycle
        update();
        return vector;
    }
    return -1;
}

void LocalApic::accept_fixed(uint8_t vector, bool level_trigger)
{
    if (vector < 16) {
        error(kEsrReceiveIllegal);
        return;
    }
    set_bit(m_state.irr, vector);
    if (level_trigger)
        set_bit(m_state.tmr, vector);
    else
        clear_bit(m_state.tmr, vector);
    update();
}

void LocalApic::eoi()
{
    int v = highest(m_state.isr);
    if (v < 0)
        return;
    clear_bit(m_state.isr, v);
    if (test_bit(m_state.tmr, v)) {
        // A level-triggered LINT: clear its remote IRR, resend if still high.
        for (int pin = 0; pin < 2; ++pin) {
            uint32_t& lvt = m_state.lvt[size_t(LvtLint0 + pin)];
            if ((lvt & kLvtRemoteIrr) && (lvt & 0xff) == uint32_t(v)) {
                lvt &= ~kLvtRemoteIrr;
                if (m_state.lint_levels & (1u << pin))
                    set_lint(pin, true);
            }
        }
        m_bus.broadcast_eoi(uint8_t(v));
    }
    update();
}

void LocalApic::error(uint32_t bit)
{
    m_state.esr_pending |= bit;
    if (m_in_error)
        return; // the error vector itself is illegal: recorded, not looped
    m_in_error = true;
    local_deliver(LvtError);
    m_in_error = false;
}

// Sends an LVT entry to this APIC.
void LocalApic::local_deliver(int n)
{
    uint32_t lvt = m_state.lvt[size_t(n)];
    if (lvt & kLvtMasked)
        return;
    auto mode = (n == LvtTimer || n == LvtError) ? ApicDelivery::Fixed : ApicDelivery((lvt >> 8) & 7);
    if (mode == ApicDelivery::ExtInt) {
        // LINT0 passthrough: pending() and acknowledge() reach the 8259; a
        // halted vCPU must wake up to look.
        if (m_bus.hooks().kick)
            m_bus.hooks().kick(cpu());
        return;
    }
    ApicMessage msg;
    msg.mode = mode;
    msg.vector = uint8_t(lvt);
    msg.level_trigger = (n == LvtLint0 || n == LvtLint1) && (lvt & kLvtLevel) && mode == ApicDelivery::Fixed;
    msg.source = cpu();
    msg.shorthand = ApicShorthand::Self;
    receive(msg);
}

void LocalApic::set_lint(int pin, bool level)
{
    assert(pin == 0 || pin == 1);
    bool old = m_state.lint_levels & (1u << pin);
    m_state.lint_levels = uint8_t(level ? (m_state.lint_levels | (1u << pin)) : (m_state.lint_levels & ~(1u << pin)));
    if (!hw_enabled()) {
        // The APIC is out of the way: LINT1 is the NMI pin (LINT0, INTR,
        // reaches the vCPU through pending()).
        if (pin == 1 && level && !old) {
            if (m_bus.hooks().nmi)
                m_bus.hooks().nmi(cpu());
            if (m_bus.hooks().kick)
                m_bus.hooks().kick(cpu());
        }
        if (pin == 0 && level && !old && m_bus.hooks().kick)
            m_bus.hooks().kick(cpu()); // INTR: the vCPU looks at the 8259
        return;
    }
    uint32_t& lvt = m_state.lvt[size_t(LvtLint0 + pin)];
    bool fixed = ApicDelivery((lvt >> 8) & 7) == ApicDelivery::Fixed;
    if (fixed && (lvt & kLvtLevel)) {
        if (level && !(lvt & kLvtRemoteIrr) && !(lvt & kLvtMasked)) {
            lvt |= kLvtRemoteIrr; // until the EOI
            local_deliver(LvtLint0 + pin);
        }
        return;
    }
    if (level && !old)
        local_deliver(LvtLint0 + pin);
}

bool LocalApic::receive(const ApicMessage& msg)
{
    if (!hw_enabled())
        return false;
    const LapicBusHooks& hooks = m_bus.hooks();
    switch (msg.mode) {
    case ApicDelivery::Fixed:
    case ApicDelivery::LowestPriority:
        accept_fixed(msg.vector, msg.level_trigger);
        break;
    case ApicDelivery::Smi:
        log_warn("apic{}: SMI ignored (no SMM)", cpu());
        break;
    case ApicDelivery::Nmi:
        if (hooks.nmi)
            hooks.nmi(cpu());
        if (hooks.kick)
            hooks.kick(cpu());
        break;
    case ApicDelivery::Init:
        init_reset();
        if (hooks.init)
            hooks.init(cpu());
        break;
    case ApicDelivery::StartUp:
        if (hooks.sipi)
            hooks.sipi(cpu(), msg.vector);
        break;
    case ApicDelivery::ExtInt:
        m_state.extint_latched = true;
        update();
        if (hooks.kick)
            hooks.kick(cpu());
        break;
    }
    return true;
}

// ---- the ICR -----------------------------------------------------------

void LocalApic::write_icr(uint32_t value)
{
    m_state.icr_lo = value & kIcrWritable;
    ApicMessage msg;
    msg.dest = uint8_t(m_state.icr_hi >> 24);
    msg.logical = value & (1u << 11);
    unsigned mode = (value >> 8) & 7;
    msg.vector = uint8_t(value);
    msg.assert_level = value & (1u << 14);
    msg.level_trigger = value & (1u << 15);
    msg.shorthand = ApicShorthand((value >> 18) & 3);
    msg.source = cpu();
    if (mode == 3 || mode == 7) {
        log_debug("apic{}: IPI with reserved delivery mode {}: ignored", cpu(), mode);
        return;
    }
    msg.mode = ApicDelivery(mode);
    if ((msg.mode == ApicDelivery::Fixed || msg.mode == ApicDelivery::LowestPriority) && msg.vector < 16) {
        error(kEsrSendIllegal);
        return;
    }
    m_bus.deliver(msg);
}

// ---- the timer ---------------------------------------------------------

int64_t LocalApic::tick_ns() const
{
    uint32_t d = (m_state.timer_dcr & 3) | ((m_state.timer_dcr >> 1) & 4);
    return (d == 7 ? 1 : int64_t(2) << d) * kBusTickNs;
}

int LocalApic::timer_mode() const
{
    int mode = int((m_state.lvt[LvtTimer] >> 17) & 3);
    return mode == 3 ? kModeOneShot : mode; // 11b is reserved
}

uint32_t LocalApic::current_count() const
{
    if (timer_mode() == kModeDeadline || m_state.timer_initial == 0)
        return 0;
    int64_t elapsed = std::max<int64_t>(m_clock.now_ns() - m_state.timer_start_ns, 0);
    uint64_t k = uint64_t(elapsed / tick_ns());
    uint64_t initial = m_state.timer_initial;
    if (timer_mode() == kModePeriodic)
        return uint32_t(initial - k % initial);
    return k >= initial ? 0 : uint32_t(initial - k);
}

void LocalApic::schedule_timer()
{
    int64_t now = m_clock.now_ns();
    if (timer_mode() == kModeDeadline) {
        if (m_state.tsc_deadline == 0) {
            m_timer->cancel();
            return;
        }
        uint64_t tsc_now = m_config.read_tsc ? m_config.read_tsc() : uint64_t(now);
        if (m_state.tsc_deadline <= tsc_now) {
            m_timer->arm(now);
            return;
        }
        unsigned __int128 delta = (unsigned __int128)(m_state.tsc_deadline - tsc_now) * kNsPerSec;
        delta = (delta + m_config.tsc_hz - 1) / m_config.tsc_hz;
        m_timer->arm(delta > (uint64_t(1) << 62) ? kNoDeadline - 1 : now + int64_t(delta));
        return;
    }
    if (m_state.timer_initial == 0) {
        m_timer->cancel();
        return;
    }
    int64_t period = int64_t(m_state.timer_initial) * tick_ns();
    int64_t elapsed = std::max<int64_t>(now - m_state.timer_start_ns, 0);
    if (timer_mode() == kModeOneShot) {
        if (elapsed >= period)
            m_timer->cancel(); // expired already
        else
            m_timer->arm(m_state.timer_start_ns + period);
        return;
    }
    // Periodic: the next reload after now (missed periods are skipped), not
    // sooner than kMinPeriodNs.
    int64_t target = now + (period < kMinPeriodNs ? kMinPeriodNs : 1);
    int64_t n = (target - m_state.timer_start_ns + period - 1) / period;
    m_timer->arm(m_state.timer_start_ns + n * period);
}

void LocalApic::timer_fired()
{
    if (timer_mode() == kModeDeadline)
        m_state.tsc_deadline = 0; // one shot: the MSR reads 0 afterwards
    local_deliver(LvtTimer);
    if (timer_mode() == kModePeriodic)
        schedule_timer();
}

uint64_t LocalApic::tsc_deadline() const
{
    return timer_mode() == kModeDeadline ? m_state.tsc_deadline : 0;
}

void LocalApic::set_tsc_deadline(uint64_t tsc)
{
    if (timer_mode() != kModeDeadline)
        return;
    m_state.tsc_deadline = tsc;
    schedule_timer();
}

// ---- IA32_APIC_BASE ----------------------------------------------------

bool LocalApic::set_apic_base(uint64_t value)
{
    if (value & kBaseX2apic)
        return false; // x2APIC is not advertised
    if (value & ~(kBaseAddressMask | kBaseEnable | kBaseBsp))
        return false;
    bool was_enabled = hw_enabled();
    uint64_t bsp = m_state.apic_base & kBaseBsp; // set by hardware
    if ((value & kBaseAddressMask) != kBase && !m_warned_relocate) {
        m_warned_relocate = true;
        log_warn("apic{}: relocation to {:#x} is not supported; the page stays at {:#x}", cpu(),
                 value & kBaseAddressMask, kBase);
    }
    m_state.apic_base = (value & (kBaseAddressMask | kBaseEnable)) | bsp;
    if (was_enabled && !hw_enabled())
        init_reset(); // a disabled APIC loses its state
    update();
    return true;
}

// ---- registers ---------------------------------------------------------

uint64_t LocalApic::read(uint64_t offset)
{
    if (offset & 0xf)
        return 0; // the upper 12 bytes of each 16-byte slot
    if (offset >= kRegIsr && offset < kRegIsr + 0x80)
        return m_state.isr[(offset - kRegIsr) >> 4];
    if (offset >= kRegTmr && offset < kRegTmr + 0x80)
        return m_state.tmr[(offset - kRegTmr) >> 4];
    if (offset >= kRegIrr && offset < kRegIrr + 0x80)
        return m_state.irr[(offset - kRegIrr) >> 4];
    if (offset >= kRegLvt && offset < kRegLvt + 0x10 * kLvtCount)
        return m_state.lvt[(offset - kRegLvt) >> 4];
    switch (offset) {
    case kRegId: return m_state.id;
    case kRegVersion: return kVersion;
    case kRegTpr: return m_state.tpr;
    case kRegApr: return apr();
    case kRegPpr: return uint32_t(ppr());
    case kRegEoi: return 0;
    case kRegRrd: return 0;
    case kRegLdr: return m_state.ldr;
    case kRegDfr: return m_state.dfr;
    case kRegSvr: return m_state.svr;
    case kRegEsr: return m_state.esr;
    case kRegIcrLo: return m_state.icr_lo;
    case kRegIcrHi: return m_state.icr_hi;
    case kRegInitial: return m_state.timer_initial;
    case kRegCurrent: return current_count();
    case kRegDcr: return m_state.timer_dcr;
    default:
        error(kEsrIllegalRegister);
        return 0;
    }
}

void LocalApic::write(uint64_t offset, uint32_t value)
{
    if (offset & 0xf)
        return;
    if (offset >= kRegIsr && offset < kRegIrr + 0x80)
        return; // ISR, TMR, IRR are read-only
    if (offset >= kRegLvt && offset < kRegLvt + 0x10 * kLvtCount) {
        write_lvt(int((offset - kRegLvt) >> 4), value);
        return;
    }
    switch (offset) {
    case kRegId:
        m_state.id = value & 0xff000000;
        return;
    case kRegTpr:
        m_state.tpr = value & 0xff;
        update();
        return;
    case kRegEoi:
        eoi();
        return;
    case kRegLdr:
        m_state.ldr = value & 0xff000000;
        return;
    case kRegDfr:
        m_state.dfr = value | 0x0fffffff;
        return;
    case kRegSvr:
        m_state.svr = value & kSvrWritable;
        if (!(m_state.svr & kSvrEnable))
            for (uint32_t& lvt : m_state.lvt)
                lvt |= kLvtMasked;
        update();
        return;
    case kRegEsr:
        m_state.esr = m_state.esr_pending;
        m_state.esr_pending = 0;
        return;
    case kRegIcrLo:
        write_icr(value);
        return;
    case kRegIcrHi:
        m_state.icr_hi = value & 0xff000000;
        return;
    case kRegInitial:
        if (timer_mode() == kModeDeadline)
            return; // ignored in TSC-deadline mode
        m_state.timer_initial = value;
        m_state.timer_start_ns = m_clock.now_ns();
        schedule_timer();
        return;
    case kRegDcr: {
        uint32_t current = current_count();
        m_state.timer_dcr = value & 0xb;
        if (current != 0) // keep the count, run on at the new rate
            m_state.timer_start_ns =
                m_clock.now_ns() - int64_t(m_state.timer_initial - current) * tick_ns();
        schedule_timer();
        return;
    }
    case kRegVersion:
    case kRegApr:
    case kRegPpr:
    case kRegRrd:
    case kRegCurrent:
        return; // read-only
    default:
        error(kEsrIllegalRegister);
        return;
    }
}

void LocalApic::write_lvt(int n, uint32_t value)
{
    uint32_t& lvt = m_state.lvt[size_t(n)];
    uint32_t old = lvt;
    uint32_t current = n == LvtTimer ? current_count() : 0; // in the old mode
    lvt = (value & kLvtWritable[n]) | (old & kLvtRemoteIrr);
    if (!(m_state.svr & kSvrEnable))
        lvt |= kLvtMasked; // a software-disabled APIC keeps the LVT masked
    if (n == LvtTimer) {
        int old_mode = int((old >> 17) & 3), new_mode = int((lvt >> 17) & 3);
        if (old_mode != new_mode && (old_mode == kModeDeadline || new_mode == kModeDeadline)) {
            // Switching into or out of TSC-deadline mode disarms the timer.
            m_state.timer_initial = 0;
            m_state.tsc_deadline = 0;
            m_timer->cancel();
        } else if (old_mode != new_mode) {
            // One-shot <-> periodic: the count goes on from where it is (an
            // expired one-shot count switched to periodic restarts it).
            if (current != 0)
                m_state.timer_start_ns =
                    m_clock.now_ns() - int64_t(m_state.timer_initial - current) * tick_ns();
            schedule_timer();
        }
    }
    update();
}

std::string LocalApic::describe() const
{
    std::string out = dump();
    int64_t deadline = m_timer->deadline();
    out += "timer: ";
    if (deadline == kNoDeadline)
        out += "not armed";
    else
        out += "fires in " + std::to_string((deadline - m_clock.now_ns()) / 1000) + " us";
    out += ", current count " + std::to_string(current_count());
    out += "\ninterrupt pending (deliverable): " + std::string(m_pending.load() ? "yes" : "no");
    out += ", highest IRR " + std::to_string(highest(m_state.irr)) + ", highest ISR " +
           std::to_string(highest(m_state.isr)) + ", PPR " + std::to_string(ppr()) + "\n";
    return out;
}

std::string LocalApic::dump() const
{
    return dump_state(LapicState::fields(), &m_state);
}

} // namespace emu::devices
