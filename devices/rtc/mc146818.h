// devices/rtc/mc146818.h — the MC146818 real-time clock and its 128 bytes of
// CMOS RAM, at ports 0x70 (index; bit 7 disables NMI) and 0x71 (data), with
// its interrupt on IRQ8.
//
// Supported: time and date registers in BCD or binary, 12- or 24-hour mode;
// register A (UIP, divider: 32.768 kHz time bases run, 11x holds the chain in
// reset and the first update comes 500 ms after release, rate select);
// register B (SET, PIE, AIE, UIE, DM, 24/12; SET clears UIE and inhibits
// updates, clearing it loads the time written); register C (IRQF, PF, AF, UF;
// cleared by reading, which also drops IRQ8); register D (VRT). UIP is high
// for the 244 µs before each update. Update-ended, alarm (with don't-care
// values 0xc0-0xff) and periodic interrupts (rates 1-15, from 256 Hz/128 Hz and
// 8192 Hz down to 2 Hz). The century byte (0x32) is kept with the year.
// Time: `-rtc base=utc|localtime|DATE,clock=host|vm` — the clock starts at
// the host's UTC or local time or a given date and then follows either host
// wall-clock time (host: it keeps running while the VM is paused and follows
// host time steps) or the VM's Clock (vm: it stops with the VM).
// Omitted: daylight-saving (DSE is stored, no effect), the square-wave
// output, the extended 128-byte bank at 0x72/0x73. Guest dates are clamped
// to years ~1875-2160 (so nanoseconds stay within 64 bits).
//
// The periodic flag is computed lazily while PIE is off, so a guest leaving
// the rate at 1024 Hz with interrupts disabled costs no host wakeups; the
// 1 Hz update timer always runs while the clock does.
#pragma once

#include "devices/state.h"
#include "engine/clock.h"
#include "engine/irq.h"
#include "engine/memory/region.h"

#include <array>
#include <cstdint>
#include <expected>
#include <span>
#include <string>

namespace emu::devices {

enum class RtcBase { Utc, LocalTime, Date };
enum class RtcClockSource { Host, Vm };

struct RtcConfig {
    RtcBase base = RtcBase::Utc;
    int64_t date_unix_s = 0; // base == Date
    RtcClockSource clock = RtcClockSource::Host;
    // QEMU's option values: base "utc", "localtime" or a date
    // ("2006-06-17T16:01:21", "2006-06-17"); clock "host" or "vm" ("rt" is
    // accepted as host: both follow host time).
    static std::expected<RtcConfig, std::string> parse(const std::string& base, const std::string& clock);
};

struct RtcState {
    std::array<uint8_t, 128> cmos{};
    uint8_t index = 0;
    bool nmi_disabled = false;
    int64_t offset_ns = 0;      // guest time = reference time + offset (running)
    bool divider_reset = false; // register A holds the divider chain in reset
    int64_t frozen_ns = 0;      // guest time while it is held
    int64_t pf_checked_ns = 0;  // guest time PF was last accounted up to
    int64_t last_update_s = 0;  // guest second of the last update cycle
    static std::span<const FieldDesc> fields();
};

// What SeaBIOS and Linux read from CMOS (QEMU's PC layout).
struct CmosLayout {
    uint64_t ram_below_4g = 0; // bytes of RAM under 4 GiB (includes the first MiB)
    uint64_t ram_above_4g = 0;
    int cpus = 1;
    std::string boot_order = "cad"; // QEMU -boot order: a/b floppy, c disk, d cdrom, n net
    bool floppy_signature_check = true;
    int floppies = 0;          // 0..4 (equipment byte)
    uint8_t floppy_types = 0;  // 0x10: drive 0 type in the high nibble (4 = 1.44M)
    bool ps2_mouse = true;
};

class Mc146818 {
public:
    static constexpr uint16_t kPort = 0x70;

    Mc146818(Clock& clock, HostTime& host_time, RtcConfig config = {});
    ~Mc146818();

    mem::MemoryRegion& region() { return *m_region; }
    mem::Result<void> attach(mem::MemoryRegion& port_root);

    IrqLine& irq() { return m_irq; } // IRQ8
    bool nmi_disabled() const { return m_state.nmi_disabled; }

    // The machine's view of CMOS RAM (setup, monitors). Bytes 0x00-0x0d are
    // the clock's registers: set them through the ports.
    uint8_t cmos(uint8_t index) const { return m_state.cmos[index & 0x7f]; }
    void set_cmos(uint8_t index, uint8_t value);
    // Fills sizes, boot order, CPU count, equipment and the checksum.
    std::expected<void, std::string> fill_layout(const CmosLayout& layout);

    // Guest time (seconds since 1970 in the guest's frame: local time with
    // base=localtime) as the RTC counts it now.
    int64_t guest_time_ns() const;

    // Construction is power-on: the time from the configured base, register
    // A = 0x26 (32.768 kHz, 1024 Hz), B = 0x02 (24-hour BCD), D = 0x80.
    // A system reset leaves the battery-backed clock and RAM alone: it clears
    // PIE/AIE/UIE/SQWE and the flags in C, and drops IRQ8.
    void reset();
    const RtcState& state() const { return m_state; }
    std::string dump() const;

private:
    uint64_t read_port(uint64_t offset);
    void write_port(uint64_t offset, uint8_t value);
    uint8_t read_register(uint8_t index);
    void write_register(uint8_t index, uint8_t value);
    void write_reg_a(uint8_t value);
    void write_reg_b(uint8_t value);

    int64_t reference_ns() const;
    bool running() const;
    bool binary() const;
    void set_guest_ns(int64_t ns);
    void refresh_time_registers();
    void load_time_registers();
    bool update_in_progress() const;
    int periodic_rate() const;
    int64_t periodic_ticks() const; // 32.768 kHz ticks per period, or 0
    bool periodic_passed(int64_t from_ns, int64_t to_ns) const;
    void set_flags(uint8_t flags);
    void update_irq();
    void schedule();
    void schedule_update();
    void schedule_periodic();
    int64_t to_clock_deadline(int64_t guest_deadline_ns) const;
    void on_update();
    void on_periodic();
    void check_alarm();

    Clock& m_clock;
    HostTime& m_host_time;
    RtcConfig m_config;
    RtcState m_state;
    IrqLine m_irq;
    Timer m_update_timer;
    Timer m_periodic_timer;
    mem::MemoryRegion::Ptr m_region;
};

} // namespace emu::devices
