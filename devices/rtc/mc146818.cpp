// devices/rtc/mc146818.cpp — the MC146818 RTC/CMOS (behaviour from the
// Motorola MC146818A datasheet; the CMOS layout is the one PC firmware and
// Linux expect).
#include "devices/rtc/mc146818.h"

#include <algorithm>
#include <cassert>

namespace emu::devices {

namespace {

enum : uint8_t {
    kSeconds = 0x00,
    kSecondsAlarm = 0x01,
    kMinutes = 0x02,
    kMinutesAlarm = 0x03,
    kHours = 0x04,
    kHoursAlarm = 0x05,
    kWeekday = 0x06,
    kDay = 0x07,
    kMonth = 0x08,
    kYear = 0x09,
    kRegA = 0x0a,
    kRegB = 0x0b,
    kRegC = 0x0c,
    kRegD = 0x0d,
    kCentury = 0x32,
};

// Register A
constexpr uint8_t kUip = 0x80;
// Register B
constexpr uint8_t kSet = 0x80, kPie = 0x40, kAie = 0x20, kUie = 0x10, kSqwe = 0x08, kDm = 0x04, k24h = 0x02;
// Register C
constexpr uint8_t kIrqf = 0x80, kPf = 0x40, kAf = 0x20, kUf = 0x10;

constexpr int64_t kUipWindowNs = 244'000;
// Guest dates are kept within ~1875-2160 so that nanoseconds and the offset
// from any reference clock fit in 64 bits.
constexpr int64_t kMinGuestSeconds = -3'000'000'000;
constexpr int64_t kMaxGuestSeconds = 6'000'000'000;

int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

int64_t floor_mod(int64_t a, int64_t b)
{
    return a - floor_div(a, b) * b;
}

// 32.768 kHz ticks of the divider chain at guest time `ns`.
__int128 chain_ticks(int64_t ns)
{
    __int128 scaled = __int128(ns) * 32768;
    __int128 q = scaled / kNsPerSec;
    return (scaled % kNsPerSec != 0 && scaled < 0) ? q - 1 : q;
}

// A timer already due (its callback not yet run at this instant) is left
// alone, so a register write at a boundary does not swallow the event.
bool due(const Timer& timer, const Clock& clock)
{
    return timer.pending() && timer.deadline() <= clock.now_ns();
}

bool is_time_register(uint8_t index)
{
    return index == kSeconds || index == kMinutes || index == kHours || index == kWeekday || index == kDay ||
           index == kMonth || index == kYear || index == kCentury;
}

} // namespace

std::expected<RtcConfig, std::string> RtcConfig::parse(const std::string& base, const std::string& clock)
{
    RtcConfig config;
    if (base.empty() || base == "utc") {
        config.base = RtcBase::Utc;
    } else if (base == "localtime") {
        config.base = RtcBase::LocalTime;
    } else if (parse_iso_date(base, config.date_unix_s)) {
        config.base = RtcBase::Date;
    } else {
        return std::unexpected("rtc: invalid base '" + base +
                               "': expected utc, localtime, '2006-06-17T16:01:21' or '2006-06-17'");
    }
    if (clock.empty() || clock == "host" || clock == "rt")
        config.clock = RtcClockSource::Host;
    else if (clock == "vm")
        config.clock = RtcClockSource::Vm;
    else
        return std::unexpected("rtc: invalid clock '" + clock + "': expected host, rt or vm");
    return config;
}

std::span<const FieldDesc> RtcState::fields()
{
    static const FieldDesc table[] = {
        field<&RtcState::cmos>("cmos"),
        field<&RtcState::index>("index"),
        field<&RtcState::nmi_disabled>("nmi_disabled"),
        field<&RtcState::offset_ns>("offset_ns"),
        field<&RtcState::divider_reset>("divider_reset"),
        field<&RtcState::frozen_ns>("frozen_ns"),
        field<&RtcState::pf_checked_ns>("pf_checked_ns"),
        field<&RtcState::last_update_s>("last_update_s"),
    };
    return table;
}

Mc146818::Mc146818(Clock& clock, HostTime& host_time, RtcConfig config)
    : m_clock(clock), m_host_time(host_time), m_config(config), m_update_timer(clock, [this] { on_update(); }),
      m_periodic_timer(clock, [this] { on_periodic(); })
{
    mem::IoOps ops;
    ops.read = [this](uint64_t off, unsigned) { return read_port(off); };
    ops.write = [this](uint64_t off, uint64_t v, unsigned) { write_port(off, uint8_t(v)); };
    ops.min_access = ops.max_access = 1;
    auto r = mem::MemoryRegion::io("rtc", 2, std::move(ops));
    assert(r.has_value());
    m_region = std::move(*r);

    // Power-on: the clock starts at the configured base.
    int64_t host_ns = m_host_time.realtime_ns();
    int64_t start_ns = host_ns;
    if (m_config.base == RtcBase::LocalTime)
        start_ns += m_host_time.utc_offset_s(host_ns / kNsPerSec) * kNsPerSec;
    else if (m_config.base == RtcBase::Date)
        start_ns = m_config.date_unix_s * kNsPerSec;
    m_state.cmos[kRegA] = 0x26;
    m_state.cmos[kRegB] = k24h;
    m_state.cmos[kRegD] = 0x80;
    set_guest_ns(start_ns);
    int64_t now = guest_time_ns();
    m_state.last_update_s = floor_div(now, kNsPerSec);
    m_state.pf_checked_ns = now;
    refresh_time_registers();
    schedule();
}

Mc146818::~Mc146818() = default;

mem::Result<void> Mc146818::attach(mem::MemoryRegion& port_root)
{
    return port_root.add_subregion(*m_region, kPort);
}

void Mc146818::reset()
{
    // A system reset leaves the battery-backed clock alone; it disables the
    // interrupts and clears the flags.
    m_state.cmos[kRegB] &= uint8_t(~(kPie | kAie | kUie | kSqwe));
    m_state.cmos[kRegC] = 0;
    m_state.pf_checked_ns = guest_time_ns();
    update_irq();
    schedule();
}

// ---- time ------------------------------------------------------------------

int64_t Mc146818::reference_ns() const
{
    return m_config.clock == RtcClockSource::Vm ? m_clock.now_ns() : m_host_time.realtime_ns();
}

int64_t Mc146818::guest_time_ns() const
{
    return m_state.divider_reset ? m_state.frozen_ns : reference_ns() + m_state.offset_ns;
}

bool Mc146818::running() const
{
    return !m_state.divider_reset;
}

bool Mc146818::binary() const
{
    return m_state.cmos[kRegB] & kDm;
}

void Mc146818::set_guest_ns(int64_t ns)
{
    ns = std::clamp(ns, kMinGuestSeconds * kNsPerSec, kMaxGuestSeconds * kNsPerSec);
    if (!running())
        m_state.frozen_ns = ns;
    else
        m_state.offset_ns = ns - reference_ns();
}

void Mc146818::refresh_time_registers()
{
    CivilTime t = civil_from_unix(floor_div(guest_time_ns(), kNsPerSec));
    bool bin = binary();
    auto enc = [bin](int v) { return uint8_t(bin ? v : (v / 10) << 4 | v % 10); };
    auto& c = m_state.cmos;
    c[kSeconds] = enc(t.second);
    c[kMinutes] = enc(t.minute);
    if (c[kRegB] & k24h) {
        c[kHours] = enc(t.hour);
    } else {
        int h12 = t.hour % 12 == 0 ? 12 : t.hour % 12;
        c[kHours] = uint8_t(enc(h12) | (t.hour >= 12 ? 0x80 : 0));
    }
    c[kWeekday] = enc(t.weekday + 1);
    c[kDay] = enc(t.day);
    c[kMonth] = enc(t.month);
    c[kYear] = enc(floor_mod(t.year, 100));
    c[kCentury] = enc(int(floor_div(t.year, 100)) & 0xff);
}

void Mc146818::load_time_registers()
{
    bool bin = binary();
    auto dec = [bin](uint8_t v) { return bin ? int(v) : (v >> 4) * 10 + (v & 15); };
    const auto& c = m_state.cmos;
    CivilTime t;
    t.second = dec(c[kSeconds]);
    t.minute = dec(c[kMinutes]);
    if (c[kRegB] & k24h) {
        t.hour = dec(c[kHours]);
    } else {
        t.hour = dec(uint8_t(c[kHours] & 0x7f)) % 12 + (c[kHours] & 0x80 ? 12 : 0);
    }
    t.day = dec(c[kDay]);
    t.month = dec(c[kMonth]);
    t.year = dec(c[kCentury]) * 100 + dec(c[kYear]);
    int64_t seconds = std::clamp(unix_from_civil(t), kMinGuestSeconds, kMaxGuestSeconds);
    int64_t phase = floor_mod(guest_time_ns(), kNsPerSec); // the divider chain runs on
    set_guest_ns(seconds * kNsPerSec + phase);
    m_state.last_update_s = seconds;
}

bool Mc146818::update_in_progress() const
{
    if (!running() || (m_state.cmos[kRegB] & kSet))
        return false;
    return floor_mod(guest_time_ns(), kNsPerSec) >= kNsPerSec - kUipWindowNs;
}

int Mc146818::periodic_rate() const
{
    return m_state.cmos[kRegA] & 0x0f;
}

int64_t Mc146818::periodic_ticks() const
{
    int rate = periodic_rate();
    if (rate == 0)
        return 0;
    return rate <= 2 ? int64_t(1) << (rate + 6) : int64_t(1) << (rate - 1);
}

bool Mc146818::periodic_passed(int64_t from_ns, int64_t to_ns) const
{
    int64_t period = periodic_ticks();
    if (!period || !running() || to_ns <= from_ns)
        return false;
    __int128 a = chain_ticks(from_ns), b = chain_ticks(to_ns);
    auto index = [period](__int128 t) { return t >= 0 ? t / period : (t - period + 1) / period; };
    return index(b) > index(a);
}

// ---- interrupts and timers ---------------------------------------------

void Mc146818::set_flags(uint8_t flags)
{
    m_state.cmos[kRegC] |= flags;
}

void Mc146818::update_irq()
{
    uint8_t& c = m_state.cmos[kRegC];
    bool irqf = (c & m_state.cmos[kRegB] & (kPf | kAf | kUf)) != 0;
    c = irqf ? uint8_t(c | kIrqf) : uint8_t(c & ~kIrqf);
    m_irq.set(irqf);
}

int64_t Mc146818::to_clock_deadline(int64_t guest_deadline_ns) const
{
    int64_t now = m_clock.now_ns();
    return now + std::max<int64_t>(guest_deadline_ns - guest_time_ns(), 1);
}

void Mc146818::schedule()
{
    schedule_update();
    schedule_periodic();
}

void Mc146818::schedule_update()
{
    if (!running() || (m_state.cmos[kRegB] & kSet)) {
        m_update_timer.cancel();
        return;
    }
    if (due(m_update_timer, m_clock))
        return;
    int64_t guest = guest_time_ns();
    m_update_timer.arm(to_clock_deadline((floor_div(guest, kNsPerSec) + 1) * kNsPerSec));
}

void Mc146818::schedule_periodic()
{
    int64_t period = periodic_ticks();
    if (!running() || !period || !(m_state.cmos[kRegB] & kPie)) {
        m_periodic_timer.cancel();
        return;
    }
    if (due(m_periodic_timer, m_clock))
        return;
    __int128 ticks = chain_ticks(guest_time_ns());
    __int128 k = ticks >= 0 ? ticks / period : (ticks - period + 1) / period;
    __int128 next_ticks = (k + 1) * period;
    // Round the boundary up to a whole nanosecond (toward +inf).
    __int128 scaled = next_ticks * kNsPerSec;
    int64_t next_ns = int64_t(scaled >= 0 ? (scaled + 32767) / 32768 : scaled / 32768);
    m_periodic_timer.arm(to_clock_deadline(next_ns));
}

void Mc146818::on_update()
{
    if (!running() || (m_state.cmos[kRegB] & kSet))
        return;
    int64_t second = floor_div(guest_time_ns(), kNsPerSec);
    if (second > m_state.last_update_s) { // host time may lag the Clock a little
        m_state.last_update_s = second;
        set_flags(kUf);
        check_alarm();
        update_irq();
    }
    schedule_update();
}

void Mc146818::check_alarm()
{
    refresh_time_registers();
    const auto& c = m_state.cmos;
    auto match = [](uint8_t alarm, uint8_t value) { return (alarm & 0xc0) == 0xc0 || alarm == value; };
    if (match(c[kSecondsAlarm], c[kSeconds]) && match(c[kMinutesAlarm], c[kMinutes]) &&
        match(c[kHoursAlarm], c[kHours]))
        set_flags(kAf);
}

void Mc146818::on_periodic()
{
    set_flags(kPf);
    m_state.pf_checked_ns = guest_time_ns();
    update_irq();
    schedule_periodic();
}

// ---- registers -------------------------------------------------------------

uint64_t Mc146818::read_port(uint64_t offset)
{
    if (offset == 0)
        return 0xff; // the index register is write-only
    return read_register(m_state.index);
}

void Mc146818::write_port(uint64_t offset, uint8_t value)
{
    if (offset == 0) {
        m_state.index = value & 0x7f;
        m_state.nmi_disabled = value & 0x80;
        return;
    }
    write_register(m_state.index, value);
}

uint8_t Mc146818::read_register(uint8_t index)
{
    index &= 0x7f;
    auto& c = m_state.cmos;
    if (is_time_register(index)) {
        if (!(c[kRegB] & kSet))
            refresh_time_registers();
        return c[index];
    }
    switch (index) {
    case kRegA:
        return uint8_t(c[kRegA] | (update_in_progress() ? kUip : 0));
    case kRegC: {
        int64_t now = guest_time_ns();
        if (periodic_passed(m_state.pf_checked_ns, now))
            set_flags(kPf); // PIE off: the flag is accounted lazily
        m_state.pf_checked_ns = now;
        uint8_t value = c[kRegC];
        if (value & c[kRegB] & (kPf | kAf | kUf))
            value |= kIrqf;
        c[kRegC] = 0;
        update_irq();
        return value;
    }
    default:
        return c[index];
    }
}

void Mc146818::write_register(uint8_t index, uint8_t value)
{
    index &= 0x7f;
    auto& c = m_state.cmos;
    if (is_time_register(index)) {
        if (c[kRegB] & kSet) {
            c[index] = value; // loaded when SET clears
            return;
        }
        refresh_time_registers();
        c[index] = value;
        load_time_registers();
        schedule();
        return;
    }
    switch (index) {
    case kRegA:
        write_reg_a(value);
        break;
    case kRegB:
        write_reg_b(value);
        break;
    case kRegC:
    case kRegD:
        break; // read-only
    default:
        c[index] = value;
        break;
    }
}

void Mc146818::write_reg_a(uint8_t value)
{
    auto& c = m_state.cmos;
    int64_t now = guest_time_ns();
    if (periodic_passed(m_state.pf_checked_ns, now))
        set_flags(kPf); // account the old rate up to now
    bool was_running = running();
    bool will_run = ((value >> 4) & 7) <= 2; // 4.19 MHz, 1.05 MHz, 32.768 kHz
    if (was_running && !will_run) {
        m_state.frozen_ns = now;
        m_state.divider_reset = true;
    } else if (!was_running && will_run) {
        // Leaving divider reset: the first update is 500 ms later.
        int64_t second = floor_div(m_state.frozen_ns, kNsPerSec);
        m_state.divider_reset = false;
        set_guest_ns(second * kNsPerSec + kNsPerSec / 2);
        m_state.last_update_s = second;
    }
    c[kRegA] = value & 0x7f; // UIP is read-only
    m_state.pf_checked_ns = guest_time_ns();
    update_irq();
    schedule();
}

void Mc146818::write_reg_b(uint8_t value)
{
    auto& c = m_state.cmos;
    uint8_t old = c[kRegB];
    if (value & kSet)
        value &= uint8_t(~kUie); // setting SET clears UIE
    int64_t now = guest_time_ns();
    if (periodic_passed(m_state.pf_checked_ns, now))
        set_flags(kPf);
    m_state.pf_checked_ns = now;
    if (!(old & kSet) && (value & kSet))
        refresh_time_registers(); // the guest edits a snapshot
    c[kRegB] = value;
    if ((old & kSet) && !(value & kSet))
        load_time_registers();
    update_irq();
    schedule();
}

void Mc146818::set_cmos(uint8_t index, uint8_t value)
{
    write_register(index, value);
}

std::expected<void, std::string> Mc146818::fill_layout(const CmosLayout& layout)
{
    uint8_t boot[3] = {0, 0, 0};
    if (layout.boot_order.size() > 3)
        return std::unexpected("Too many boot devices for PC: '" + layout.boot_order + "'");
    for (size_t i = 0; i < layout.boot_order.size(); ++i) {
        char d = layout.boot_order[i];
        if (d == 'a' || d == 'b')
            boot[i] = 1;
        else if (d == 'c')
            boot[i] = 2;
        else if (d == 'd')
            boot[i] = 3;
        else if (d >= 'n' && d <= 'p')
            boot[i] = 4;
        else
            return std::unexpected(std::string("Invalid boot device for PC: '") + d + "'");
    }
    if (layout.floppies < 0 || layout.floppies > 4)
        return std::unexpected("cmos: " + std::to_string(layout.floppies) + " floppy drives (0 to 4)");
    if (layout.cpus < 1 || layout.cpus > 256)
        return std::unexpected("cmos: " + std::to_string(layout.cpus) + " CPUs (1 to 256)");

    auto& c = m_state.cmos;
    auto put16 = [&c](uint8_t at, uint64_t v) {
        v = std::min<uint64_t>(v, 0xffff);
        c[at] = uint8_t(v);
        c[at + 1] = uint8_t(v >> 8);
    };
    uint64_t below = layout.ram_below_4g;
    put16(0x15, 640); // base memory, KiB
    uint64_t extended_kib = below > (1u << 20) ? (below >> 10) - 1024 : 0;
    put16(0x17, extended_kib);
    put16(0x30, extended_kib);
    put16(0x34, below > (16u << 20) ? (below - (16u << 20)) >> 16 : 0);
    uint64_t high = std::min<uint64_t>(layout.ram_above_4g >> 16, 0xffffff);
    c[0x5b] = uint8_t(high);
    c[0x5c] = uint8_t(high >> 8);
    c[0x5d] = uint8_t(high >> 16);
    c[0x5f] = uint8_t(layout.cpus - 1);

    c[0x3d] = uint8_t(boot[1] << 4 | boot[0]);
    c[0x38] = uint8_t(boot[2] << 4 | (layout.floppy_signature_check ? 0 : 1));

    c[0x10] = layout.floppy_types;
    uint8_t equipment = 0x02; // x87 present; display bits 4-5 = 00: EGA/VGA
    if (layout.floppies > 0)
        equipment |= uint8_t(0x01 | (layout.floppies - 1) << 6);
    if (layout.ps2_mouse)
        equipment |= 0x04;
    c[0x14] = equipment;

    unsigned sum = 0; // the standard checksum over 0x10-0x2d, big-endian
    for (int i = 0x10; i <= 0x2d; ++i)
        sum += c[size_t(i)];
    c[0x2e] = uint8_t(sum >> 8);
    c[0x2f] = uint8_t(sum);
    return {};
}

std::string Mc146818::dump() const
{
    return dump_state(RtcState::fields(), &m_state);
}

} // namespace emu::devices
