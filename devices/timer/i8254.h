// devices/timer/i8254.h — the 8254 programmable interval timer (ports
// 0x40-0x43) and the PC's system control port B (0x61: counter 2's gate, the
// speaker enable, counter 2's output, the refresh toggle).
//
// Three counters clocked at 1.193182 MHz from a Clock. Counter 0's OUT drives
// IRQ0 through an IrqLine (a rising edge per period in modes 2 and 3, one at
// terminal count in modes 0/1/4/5); counters 0 and 1 have their gate tied
// high, counter 2's gate is port 0x61 bit 0 and its OUT reads on bit 5.
//
// Supported: modes 0-5 (6 and 7 alias 2 and 3), binary and BCD counting,
// LSB/MSB/LSB-then-MSB access, counter latch and read-back (count and status,
// null count), gate effects per mode (suspend in 0/4, stop and reload in 2/3,
// trigger in 1/5).
// Simplifications: counts are computed from the elapsed time, not ticked, so
// a counter costs nothing while idle; a new count written in mode 2 or 3
// while counting restarts the period at once (the chip waits for the end of
// the current period); the one-clock load delay after a count write is not
// modelled. IRQ0 edges closer than 10 µs are coalesced (a guest programming
// count 1 gets 100 kHz, not 1.19 MHz, of host timer work).
#pragma once

#include "devices/state.h"
#include "engine/clock.h"
#include "engine/irq.h"
#include "engine/memory/region.h"

#include <array>
#include <cstdint>
#include <span>
#include <string>

namespace emu::devices {

struct PitChannelState {
    uint32_t count = 0x10000;  // the count register: 1..65536 (binary) or 1..10000 (BCD)
    uint32_t active = 0x10000; // the count the counting element runs with
    uint8_t mode = 0;
    uint8_t rw_mode = 3; // 1 LSB, 2 MSB, 3 LSB then MSB
    bool bcd = false;
    bool gate = true;
    bool counting = false; // a count is loaded (modes 1/5: and triggered)
    bool null_count = true;
    bool count_written = false; // since the control word (modes 1/5 need it to trigger)
    bool read_msb = false;  // rw_mode 3: the next read returns the MSB
    bool write_msb = false; // rw_mode 3: the next write is the MSB
    uint8_t write_lsb = 0;
    bool count_latched = false;
    uint16_t latched_count = 0;
    bool status_latched = false;
    uint8_t status = 0;
    int64_t load_ns = 0;      // clock time of the count load (tick 0)
    int64_t gate_low_ns = -1; // counting suspended since (modes 0/2/3/4), or -1
    static std::span<const FieldDesc> fields();
};

struct PitState {
    std::array<PitChannelState, 3> channel{};
    bool speaker_data = false; // port 0x61 bit 1
    uint8_t port61_rw = 0;     // port 0x61 bits 2-3 (parity/IOCHK enables): stored
    static std::span<const FieldDesc> fields();
};

class I8254 {
public:
    static constexpr uint16_t kPort = 0x40;
    static constexpr uint16_t kPort61 = 0x61;
    static constexpr int64_t kFrequencyHz = 1193182;

    explicit I8254(Clock& clock);
    ~I8254();

    mem::Result<void> attach(mem::MemoryRegion& port_root); // 0x40-0x43 and 0x61
    mem::MemoryRegion& region() { return *m_region; }
    mem::MemoryRegion& port61_region() { return *m_port61; }

    IrqLine& irq0() { return m_irq0; }
    // HPET legacy replacement takes IRQ0 away from the PIT (the machine wires
    // the HPET's legacy output here).
    void set_irq_enabled(bool enabled);

    void set_gate(int channel, bool level); // the machine may drive gates 0/1
    bool out(int channel) const;            // OUT pin now
    uint32_t current_count(int channel) const; // the counting element, binary
    bool speaker_on() const; // port 0x61 bits 0 and 1 set
    // Frequency the speaker hears (counter 2 in mode 3), 0 when silent.
    double speaker_frequency() const;

    void reset();
    const PitState& state() const { return m_state; }
    std::string dump() const;

private:
    uint64_t read_port(uint64_t offset);
    void write_port(uint64_t offset, uint8_t value);
    void write_control(uint8_t value);
    void latch_count(int c);
    void latch_status(int c);
    void load_count(int c, uint32_t raw);
    int64_t elapsed_ticks(const PitChannelState& ch, int64_t now) const;
    bool out_at(const PitChannelState& ch, int64_t now) const;
    uint32_t value_at(const PitChannelState& ch, int64_t now) const;
    int64_t next_rising_edge(const PitChannelState& ch, int64_t now) const;
    void update_irq0();
    void on_timer();

    Clock& m_clock;
    PitState m_state;
    IrqLine m_irq0;
    bool m_irq_enabled = true;
    Timer m_timer;
    mem::MemoryRegion::Ptr m_region;
    mem::MemoryRegion::Ptr m_port61;
};

} // namespace emu::devices
