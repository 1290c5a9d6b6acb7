// devices/timer/i8254.cpp — the 8254 PIT (behaviour from the Intel 8254
// datasheet) and port 0x61.
#include "devices/timer/i8254.h"

#include <algorithm>
#include <cassert>

namespace emu::devices {

namespace {

constexpr int64_t kMinIrqIntervalNs = 10'000;
constexpr int64_t kRefreshToggleNs = 15'085; // port 0x61 bit 4

uint32_t modulus(const PitChannelState& ch)
{
    return ch.bcd ? 10000 : 0x10000;
}

uint16_t to_bcd(uint32_t v)
{
    return uint16_t((v % 10) | (v / 10 % 10) << 4 | (v / 100 % 10) << 8 | (v / 1000 % 10) << 12);
}

// Non-decimal nibbles (A-F) count as 10-15: defined, if odd.
uint32_t from_bcd(uint16_t v)
{
    return (v & 15) + (v >> 4 & 15) * 10 + (v >> 8 & 15) * 100 + (v >> 12 & 15) * 1000;
}

// a mod m for m > 0, never negative.
int64_t mod(int64_t a, int64_t m)
{
    int64_t r = a % m;
    return r < 0 ? r + m : r;
}

// Modes 0/4 suspend counting while the gate is low, 2/3 stop.
bool gate_stops(uint8_t mode)
{
    return mode != 1 && mode != 5;
}

} // namespace

std::span<const FieldDesc> PitChannelState::fields()
{
    static const FieldDesc table[] = {
        field<&PitChannelState::count>("count"),
        field<&PitChannelState::active>("active"),
        field<&PitChannelState::mode>("mode"),
        field<&PitChannelState::rw_mode>("rw_mode"),
        field<&PitChannelState::bcd>("bcd"),
        field<&PitChannelState::gate>("gate"),
        field<&PitChannelState::counting>("counting"),
        field<&PitChannelState::null_count>("null_count"),
        field<&PitChannelState::count_written>("count_written"),
        field<&PitChannelState::read_msb>("read_msb"),
        field<&PitChannelState::write_msb>("write_msb"),
        field<&PitChannelState::write_lsb>("write_lsb"),
        field<&PitChannelState::count_latched>("count_latched"),
        field<&PitChannelState::latched_count>("latched_count"),
        field<&PitChannelState::status_latched>("status_latched"),
        field<&PitChannelState::status>("status"),
        field<&PitChannelState::load_ns>("load_ns"),
        field<&PitChannelState::gate_low_ns>("gate_low_ns"),
    };
    return table;
}

std::span<const FieldDesc> PitState::fields()
{
    static const FieldDesc table[] = {
        field<&PitState::channel>("channel", PitChannelState::fields()),
        field<&PitState::speaker_data>("speaker_data"),
        field<&PitState::port61_rw>("port61_rw"),
    };
    return table;
}

I8254::I8254(Clock& clock) : m_clock(clock), m_timer(clock, [this] { on_timer(); })
{
    mem::IoOps ops;
    ops.read = [this](uint64_t off, unsigned) { return read_port(off); };
    ops.write = [this](uint64_t off, uint64_t v, unsigned) { write_port(off, uint8_t(v)); };
    ops.min_access = ops.max_access = 1;
    auto r = mem::MemoryRegion::io("pit", 4, std::move(ops));
    assert(r.has_value());
    m_region = std::move(*r);

    mem::IoOps p61;
    p61.read = [this](uint64_t, unsigned) -> uint64_t {
        int64_t now = m_clock.now_ns();
        const PitChannelState& ch2 = m_state.channel[2];
        return uint64_t(ch2.gate) | uint64_t(m_state.speaker_data) << 1 | m_state.port61_rw |
               uint64_t((now / kRefreshToggleNs) & 1) << 4 | uint64_t(out_at(ch2, now)) << 5;
    };
    p61.write = [this](uint64_t, uint64_t v, unsigned) {
        m_state.speaker_data = v & 2;
        m_state.port61_rw = uint8_t(v & 0x0c);
        set_gate(2, v & 1);
    };
    p61.min_access = p61.max_access = 1;
    auto r61 = mem::MemoryRegion::io("pit-port61", 1, std::move(p61));
    assert(r61.has_value());
    m_port61 = std::move(*r61);
    reset();
}

I8254::~I8254() = default;

mem::Result<void> I8254::attach(mem::MemoryRegion& port_root)
{
    if (auto r = port_root.add_subregion(*m_region, kPort); !r)
        return r;
    return port_root.add_subregion(*m_port61, kPort61);
}

void I8254::reset()
{
    m_state = PitState{};
    for (int c = 0; c < 3; ++c)
        m_state.channel[c].gate = c != 2; // gate 2 is port 0x61 bit 0, reset 0
    update_irq0();
}

// ---- counting, from elapsed time ------------------------------------------

int64_t I8254::elapsed_ticks(const PitChannelState& ch, int64_t now) const
{
    if (ch.gate_low_ns >= 0 && gate_stops(ch.mode))
        now = std::min(now, ch.gate_low_ns);
    if (now <= ch.load_ns)
        return 0;
    return int64_t(__int128(now - ch.load_ns) * kFrequencyHz / kNsPerSec);
}

bool I8254::out_at(const PitChannelState& ch, int64_t now) const
{
    if (!ch.counting)
        return ch.mode != 0; // mode 0 sets OUT low on the control word
    int64_t n = ch.active;
    bool stopped = ch.gate_low_ns >= 0;
    switch (ch.mode) {
    case 0:
    case 1:
        return elapsed_ticks(ch, now) >= n;
    case 2:
        if (stopped || n == 1)
            return true;
        return mod(elapsed_ticks(ch, now), n) != n - 1;
    case 3:
        if (stopped)
            return true;
        return mod(elapsed_ticks(ch, now), n) < (n + 1) / 2;
    case 4:
    case 5:
        return elapsed_ticks(ch, now) != n;
    }
    return true;
}

uint32_t I8254::value_at(const PitChannelState& ch, int64_t now) const
{
    int64_t m = modulus(ch);
    if (!ch.counting)
        return uint32_t(ch.active % m);
    int64_t n = ch.active;
    int64_t d = elapsed_ticks(ch, now);
    switch (ch.mode) {
    case 2:
        return uint32_t((n - mod(d, n)) % m);
    case 3: {
        // Counts down by two through each half period.
        int64_t r = mod(d, n), high = (n + 1) / 2;
        int64_t v = r < high ? n - 2 * r : n - 2 * (r - high);
        return uint32_t(std::max<int64_t>(v, 0) % m) & ~1u;
    }
    default: // 0, 1, 4, 5: down to 0, then on through the whole range
        return uint32_t(mod(n - d, m));
    }
}

// The clock time of OUT's next rising edge after `now`, or kNoDeadline.
int64_t I8254::next_rising_edge(const PitChannelState& ch, int64_t now) const
{
    if (!ch.counting || (ch.gate_low_ns >= 0 && gate_stops(ch.mode)))
        return kNoDeadline;
    int64_t n = ch.active;
    int64_t d = elapsed_ticks(ch, now);
    int64_t edge;
    switch (ch.mode) {
    case 0:
    case 1:
        edge = n;
        break;
    case 2:
    case 3:
        edge = (d / n + 1) * n;
        break;
    default: // 4, 5: OUT is low for the one clock at count 0
        edge = n + 1;
        break;
    }
    if (edge <= d)
        return kNoDeadline;
    int64_t ns = int64_t((__int128(edge) * kNsPerSec + kFrequencyHz - 1) / kFrequencyHz);
    return std::max(ch.load_ns + ns, now + 1);
}

bool I8254::out(int channel) const
{
    return out_at(m_state.channel[size_t(channel) % 3], m_clock.now_ns());
}

uint32_t I8254::current_count(int channel) const
{
    return value_at(m_state.channel[size_t(channel) % 3], m_clock.now_ns());
}

bool I8254::speaker_on() const
{
    return m_state.speaker_data && m_state.channel[2].gate;
}

double I8254::speaker_frequency() const
{
    const PitChannelState& ch = m_state.channel[2];
    if (!speaker_on() || !ch.counting || ch.mode != 3)
        return 0.0;
    return double(kFrequencyHz) / double(ch.active);
}

// ---- IRQ0 ------------------------------------------------------------------

void I8254::set_irq_enabled(bool enabled)
{
    m_irq_enabled = enabled;
    update_irq0();
}

void I8254::update_irq0()
{
    if (!m_irq_enabled) {
        m_timer.cancel();
        m_irq0.lower();
        return;
    }
    int64_t now = m_clock.now_ns();
    const PitChannelState& ch = m_state.channel[0];
    m_irq0.set(out_at(ch, now));
    int64_t next = next_rising_edge(ch, now);
    if (next == kNoDeadline)
        m_timer.cancel();
    else
        m_timer.arm(next);
}

void I8254::on_timer()
{
    if (!m_irq_enabled)
        return;
    int64_t now = m_clock.now_ns();
    const PitChannelState& ch = m_state.channel[0];
    bool level = out_at(ch, now);
    m_irq0.lower(); // the rising edge the PIC latches
    m_irq0.set(level);
    int64_t next = next_rising_edge(ch, now);
    if (next != kNoDeadline)
        m_timer.arm(std::max(next, now + kMinIrqIntervalNs));
}

// ---- ports -----------------------------------------------------------------

void I8254::set_gate(int c, bool level)
{
    if (c < 0 || c > 2)
        return;
    PitChannelState& ch = m_state.channel[size_t(c)];
    int64_t now = m_clock.now_ns();
    bool rising = level && !ch.gate;
    bool falling = !level && ch.gate;
    ch.gate = level;
    if (falling && gate_stops(ch.mode) && ch.counting) {
        ch.gate_low_ns = now;
    } else if (rising) {
        if (ch.mode == 1 || ch.mode == 5) {
            // Trigger: load the count register and start the one-shot.
            if (ch.count_written) {
                ch.active = ch.count;
                ch.counting = true;
                ch.null_count = false;
                ch.load_ns = now;
            }
        } else if (ch.gate_low_ns >= 0) {
            if (ch.mode == 2 || ch.mode == 3)
                ch.load_ns = now; // reload and restart
            else
                ch.load_ns += now - ch.gate_low_ns; // resume where suspended
            ch.gate_low_ns = -1;
        }
    }
    if (c == 0)
        update_irq0();
}

void I8254::load_count(int c, uint32_t raw)
{
    PitChannelState& ch = m_state.channel[size_t(c)];
    uint32_t n = ch.bcd ? from_bcd(uint16_t(raw)) : raw & 0xffff;
    if (n == 0)
        n = modulus(ch);
    ch.count = n;
    ch.count_written = true;
    if (ch.mode == 1 || ch.mode == 5) {
        if (!ch.counting)
            ch.null_count = true; // loaded on the next gate trigger
        return;
    }
    int64_t now = m_clock.now_ns();
    ch.active = n;
    ch.counting = true;
    ch.null_count = false;
    ch.load_ns = now;
    ch.gate_low_ns = ch.gate ? -1 : now;
}

void I8254::latch_count(int c)
{
    PitChannelState& ch = m_state.channel[size_t(c)];
    if (ch.count_latched)
        return; // a second latch before the first is read is ignored
    uint32_t v = value_at(ch, m_clock.now_ns());
    ch.latched_count = ch.bcd ? to_bcd(v) : uint16_t(v);
    ch.count_latched = true;
    ch.read_msb = false;
}

void I8254::latch_status(int c)
{
    PitChannelState& ch = m_state.channel[size_t(c)];
    if (ch.status_latched)
        return;
    ch.status = uint8_t(uint8_t(out_at(ch, m_clock.now_ns())) << 7 | uint8_t(ch.null_count) << 6 |
                        ch.rw_mode << 4 | ch.mode << 1 | uint8_t(ch.bcd));
    ch.status_latched = true;
}

void I8254::write_control(uint8_t value)
{
    int sc = value >> 6;
    int rw = value >> 4 & 3;
    if (sc == 3) { // read-back: bit 5 = !COUNT, bit 4 = !STATUS, bits 1-3 = counters
        for (int c = 0; c < 3; ++c) {
            if (!(value & (2 << c)))
                continue;
            if (!(value & 0x10))
                latch_status(c);
            if (!(value & 0x20))
                latch_count(c);
        }
        return;
    }
    if (rw == 0) {
        latch_count(sc);
        return;
    }
    PitChannelState& ch = m_state.channel[size_t(sc)];
    uint8_t mode = value >> 1 & 7;
    ch.mode = mode >= 6 ? uint8_t(mode - 4) : mode;
    ch.rw_mode = uint8_t(rw);
    ch.bcd = value & 1;
    ch.counting = false;
    ch.null_count = true;
    ch.count_written = false;
    ch.read_msb = false;
    ch.write_msb = false;
    ch.gate_low_ns = -1;
    if (sc == 0)
        update_irq0();
}

uint64_t I8254::read_port(uint64_t offset)
{
    if (offset == 3)
        return 0xff; // the control word register is write-only
    PitChannelState& ch = m_state.channel[offset];
    if (ch.status_latched) {
        ch.status_latched = false;
        return ch.status;
    }
    uint16_t v;
    if (ch.count_latched) {
        v = ch.latched_count;
    } else {
        uint32_t live = value_at(ch, m_clock.now_ns());
        v = ch.bcd ? to_bcd(live) : uint16_t(live);
    }
    uint8_t byte;
    switch (ch.rw_mode) {
    case 1:
        byte = uint8_t(v);
        ch.count_latched = false;
        break;
    case 2:
        byte = uint8_t(v >> 8);
        ch.count_latched = false;
        break;
    default:
        byte = ch.read_msb ? uint8_t(v >> 8) : uint8_t(v);
        if (ch.read_msb)
            ch.count_latched = false;
        ch.read_msb = !ch.read_msb;
        break;
    }
    return byte;
}

void I8254::write_port(uint64_t offset, uint8_t value)
{
    if (offset == 3) {
        write_control(value);
        return;
    }
    int c = int(offset);
    PitChannelState& ch = m_state.channel[offset];
    switch (ch.rw_mode) {
    case 1:
        load_count(c, value);
        break;
    case 2:
        load_count(c, uint32_t(value) << 8);
        break;
    default:
        if (!ch.write_msb) {
            ch.write_lsb = value;
            ch.write_msb = true;
            if (ch.mode == 0 && ch.counting) // the first byte stops counting, OUT low
                ch.counting = false;
            if (c == 0)
                update_irq0();
            return;
        }
        ch.write_msb = false;
        load_count(c, uint32_t(value) << 8 | ch.write_lsb);
        break;
    }
    if (c == 0)
        update_irq0();
}

std::string I8254::dump() const
{
    return dump_state(PitState::fields(), &m_state);
}

} // namespace emu::devices
