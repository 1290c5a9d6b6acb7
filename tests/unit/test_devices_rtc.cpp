// Device tests of the MC146818 RTC/CMOS, driven through ports 0x70/0x71 of a
// real port address space, with a stepped clock and an injected host time.
#include "devices/rtc/mc146818.h"
#include "engine/memory/address_space.h"

#include <doctest/doctest.h>

using namespace emu;
using namespace emu::devices;

namespace {

// Saturday 2024-03-09 13:45:56 UTC.
const int64_t kStart = unix_from_civil({2024, 3, 9, 13, 45, 56});

struct Bench {
    SteppedClock clock;
    FixedHostTime host{kStart * kNsPerSec};
    mem::MemoryRegion::Ptr root = std::move(*mem::MemoryRegion::container("io", mem::kPortSpaceSize));
    mem::AddressSpace io{"io", *root};
    Mc146818 rtc;
    int irq_edges = 0;

    explicit Bench(RtcConfig config = vm_clock()) : rtc(clock, host, config)
    {
        REQUIRE(rtc.attach(*root));
        rtc.irq().connect([this](bool level) { irq_edges += level; });
    }
    static RtcConfig vm_clock()
    {
        RtcConfig c;
        c.clock = RtcClockSource::Vm;
        return c;
    }
    uint8_t read(uint8_t index)
    {
        io.write(0x70, index, 1);
        return uint8_t(io.read(0x71, 1));
    }
    void write(uint8_t index, uint8_t value)
    {
        io.write(0x70, index, 1);
        io.write(0x71, value, 1);
    }
};

} // namespace

TEST_CASE("rtc: the time in BCD, binary, 24- and 12-hour modes")
{
    Bench b;
    CHECK(b.read(0x0a) == 0x26);
    CHECK(b.read(0x0b) == 0x02);
    CHECK(b.read(0x0d) == 0x80);
    CHECK(b.read(0x00) == 0x56);
    CHECK(b.read(0x02) == 0x45);
    CHECK(b.read(0x04) == 0x13);
    CHECK(b.read(0x06) == 7); // Saturday (Sunday = 1)
    CHECK(b.read(0x07) == 0x09);
    CHECK(b.read(0x08) == 0x03);
    CHECK(b.read(0x09) == 0x24);
    CHECK(b.read(0x32) == 0x20); // century

    b.write(0x0b, 0x06); // binary, 24-hour
    CHECK(b.read(0x00) == 56);
    CHECK(b.read(0x04) == 13);
    CHECK(b.read(0x09) == 24);
    CHECK(b.read(0x32) == 20);

    b.write(0x0b, 0x00); // BCD, 12-hour
    CHECK(b.read(0x04) == 0x81); // 1 PM
    b.write(0x0b, 0x04); // binary, 12-hour
    CHECK(b.read(0x04) == 0x81);

    b.clock.advance((10 * 3600 + 14 * 60 + 4) * kNsPerSec); // 00:00:00 next day
    b.write(0x0b, 0x00);
    CHECK(b.read(0x04) == 0x12); // midnight is 12 AM
    CHECK(b.read(0x07) == 0x10);
    CHECK(b.read(0x06) == 1); // Sunday
    b.clock.advance(12 * 3600 * kNsPerSec);
    CHECK(b.read(0x04) == 0x92); // noon is 12 PM
}

TEST_CASE("rtc: clock=vm follows the VM clock, clock=host follows host time")
{
    SUBCASE("vm")
    {
        Bench b;
        b.host.advance(3600 * kNsPerSec); // host time is irrelevant now
        CHECK(b.read(0x00) == 0x56);
        b.clock.advance(5 * kNsPerSec);
        CHECK(b.read(0x00) == 0x01);
        CHECK(b.read(0x02) == 0x46);
    }
    SUBCASE("host")
    {
        Bench b(RtcConfig{});
        b.clock.advance(5 * kNsPerSec); // the VM clock is irrelevant
        CHECK(b.read(0x00) == 0x56);
        b.host.advance(5 * kNsPerSec);
        CHECK(b.read(0x00) == 0x01);
    }
}

TEST_CASE("rtc: base=localtime and base=DATE")
{
    auto local = RtcConfig::parse("localtime", "vm");
    REQUIRE(local);
    SteppedClock clock;
    FixedHostTime host(kStart * kNsPerSec, -5 * 3600);
    Mc146818 rtc(clock, host, *local);
    CHECK(civil_from_unix(rtc.guest_time_ns() / kNsPerSec).hour == 8);

    auto date = RtcConfig::parse("2006-06-17T16:01:21", "host");
    REQUIRE(date);
    CHECK(date->base == RtcBase::Date);
    Mc146818 dated(clock, host, *date);
    CivilTime t = civil_from_unix(dated.guest_time_ns() / kNsPerSec);
    CHECK(t.year == 2006);
    CHECK(t.hour == 16);
    host.advance(2 * kNsPerSec); // clock=host: runs on from the date with host time
    CHECK(civil_from_unix(dated.guest_time_ns() / kNsPerSec).second == 23);

    CHECK_FALSE(RtcConfig::parse("2006-13-01", "host"));
    CHECK_FALSE(RtcConfig::parse("utc", "sundial"));
    CHECK(RtcConfig::parse("utc", "rt")->clock == RtcClockSource::Host);
}

TEST_CASE("rtc: UIP is set for the 244 us before each update")
{
    Bench b;
    CHECK((b.read(0x0a) & 0x80) == 0);
    b.clock.advance_to(kNsPerSec - 300'000);
    CHECK((b.read(0x0a) & 0x80) == 0);
    CHECK(b.read(0x00) == 0x56);
    b.clock.advance_to(kNsPerSec - 100'000);
    CHECK((b.read(0x0a) & 0x80) == 0x80);
    CHECK(b.read(0x00) == 0x56); // not updated yet
    b.clock.advance_to(kNsPerSec + 1000);
    CHECK((b.read(0x0a) & 0x80) == 0);
    CHECK(b.read(0x00) == 0x57);
    b.write(0x0b, 0x82); // SET: no updates, no UIP
    b.clock.advance_to(2 * kNsPerSec - 100'000);
    CHECK((b.read(0x0a) & 0x80) == 0);
}

TEST_CASE("rtc: update-ended interrupts once a second; reading C clears it")
{
    Bench b;
    b.write(0x0b, 0x12); // UIE, 24-hour BCD
    b.clock.advance(kNsPerSec - 1);
    CHECK(b.irq_edges == 0);
    b.clock.advance(1);
    CHECK(b.irq_edges == 1);
    CHECK(b.rtc.irq().level());
    // IRQF | UF (and PF: the 1024 Hz flag runs with PIE off too).
    CHECK(b.read(0x0c) == 0xd0);
    CHECK_FALSE(b.rtc.irq().level());
    CHECK(b.read(0x0c) == 0x00);
    for (int i = 0; i < 5; ++i) {
        b.clock.advance(kNsPerSec);
        CHECK((b.read(0x0c) & 0xb0) == 0x90);
    }
    CHECK(b.irq_edges == 6);
    // Without UIE the flag is still set, but no interrupt.
    b.write(0x0b, 0x02);
    b.clock.advance(kNsPerSec);
    CHECK(b.irq_edges == 6);
    CHECK((b.read(0x0c) & 0xb0) == 0x10);
}

TEST_CASE("rtc: periodic interrupts at the rate register A selects")
{
    Bench b;
    b.write(0x0b, 0x42); // PIE; A = 0x26: 1024 Hz
    int pf = 0;
    for (int i = 0; i < 10'000; ++i) { // one second in 100 us steps
        b.clock.advance(100'000);
        uint8_t c = b.read(0x0c);
        if (c & 0x40) {
            ++pf;
            CHECK((c & 0x80) == 0x80);
        }
    }
    CHECK(pf == 1024);
    CHECK(b.irq_edges == 1024);

    SUBCASE("2 Hz (rate 15) and 8192 Hz (rate 3)")
    {
        b.write(0x0a, 0x2f);
        b.read(0x0c);
        int edges = b.irq_edges;
        for (int i = 0; i < 100; ++i) {
            b.clock.advance(10'000'000);
            b.read(0x0c);
        }
        CHECK(b.irq_edges - edges == 2);
        b.write(0x0a, 0x23);
        edges = b.irq_edges;
        for (int i = 0; i < 1000; ++i) {
            b.clock.advance(100'000);
            b.read(0x0c);
        }
        CHECK(b.irq_edges - edges == 819); // 8192 Hz for 0.1 s, one flag per read at most
    }
    SUBCASE("rate 1 is 256 Hz, rate 0 is off")
    {
        b.write(0x0a, 0x21);
        b.read(0x0c);
        int edges = b.irq_edges;
        for (int i = 0; i < 1000; ++i) {
            b.clock.advance(1'000'000);
            b.read(0x0c);
        }
        CHECK(b.irq_edges - edges == 256);
        b.write(0x0a, 0x20);
        b.clock.advance(kNsPerSec);
        CHECK((b.read(0x0c) & 0x40) == 0);
    }
    SUBCASE("with PIE off the flag is still kept, without interrupts")
    {
        b.write(0x0b, 0x02);
        b.read(0x0c);
        int edges = b.irq_edges;
        b.clock.advance(10'000'000);
        CHECK(b.read(0x0c) == 0x40); // PF, no IRQF
        CHECK(b.read(0x0c) == 0x00);
        CHECK(b.irq_edges == edges);
    }
}

TEST_CASE("rtc: alarm interrupts, with don't-care values")
{
    Bench b;
    b.write(0x01, 0x59); // 13:45:59
    b.write(0x03, 0x45);
    b.write(0x05, 0x13);
    b.write(0x0b, 0x22); // AIE
    b.clock.advance(2 * kNsPerSec);
    CHECK(b.irq_edges == 0);
    b.clock.advance(kNsPerSec);
    CHECK(b.irq_edges == 1);
    CHECK((b.read(0x0c) & 0xb0) == 0xb0); // IRQF | AF | UF (UF without UIE: flag only)
    b.clock.advance(kNsPerSec);
    CHECK((b.read(0x0c) & 0x20) == 0);

    // Hours and minutes "don't care": every minute at :10.
    b.write(0x01, 0x10);
    b.write(0x03, 0xc0);
    b.write(0x05, 0xff);
    int edges = b.irq_edges;
    for (int i = 0; i < 180; ++i) {
        b.clock.advance(kNsPerSec);
        b.read(0x0c);
    }
    CHECK(b.irq_edges - edges == 3);
}

TEST_CASE("rtc: setting the time with SET")
{
    Bench b;
    b.write(0x0b, 0x92); // SET | UIE: SET clears UIE
    CHECK(b.read(0x0b) == 0x82);
    b.write(0x00, 0x05);
    b.write(0x02, 0x04);
    b.write(0x04, 0x03);
    b.write(0x07, 0x02);
    b.write(0x08, 0x01);
    b.write(0x09, 0x30);
    b.clock.advance(3 * kNsPerSec); // no updates while SET
    CHECK(b.read(0x00) == 0x05);
    b.write(0x0b, 0x02);
    CHECK(b.read(0x00) == 0x05);
    CivilTime t = civil_from_unix(b.rtc.guest_time_ns() / kNsPerSec);
    CHECK(t.year == 2030);
    CHECK(t.month == 1);
    CHECK(t.day == 2);
    CHECK(t.hour == 3);
    CHECK(b.read(0x06) == 4); // Wednesday, computed
    b.clock.advance(kNsPerSec);
    CHECK(b.read(0x00) == 0x06);

    SUBCASE("a write without SET takes effect at once")
    {
        b.write(0x02, 0x30);
        CHECK(b.read(0x02) == 0x30);
        b.clock.advance(60 * kNsPerSec);
        CHECK(b.read(0x02) == 0x31);
    }
    SUBCASE("garbage is defined")
    {
        b.write(0x0b, 0x82);
        for (uint8_t i : {0x00, 0x02, 0x04, 0x07, 0x08, 0x09, 0x32})
            b.write(i, 0xff);
        b.write(0x0b, 0x02);
        (void)b.read(0x00);
        b.write(0x0b, 0x86);
        for (uint8_t i : {0x00, 0x02, 0x04, 0x07, 0x08, 0x09, 0x32})
            b.write(i, 0xff);
        b.write(0x0b, 0x06);
        b.clock.advance(2 * kNsPerSec);
        (void)b.read(0x09);
    }
}

TEST_CASE("rtc: divider reset holds the time; the first update comes 500 ms after")
{
    Bench b;
    b.write(0x0b, 0x12); // UIE
    b.clock.advance(300'000'000);
    b.write(0x0a, 0x76); // DV = 111: chain in reset
    b.clock.advance(5 * kNsPerSec);
    CHECK(b.read(0x00) == 0x56);
    CHECK(b.irq_edges == 0);
    int64_t release = b.clock.now_ns();
    b.write(0x0a, 0x26);
    b.clock.advance_to(release + 499'000'000);
    CHECK(b.read(0x00) == 0x56);
    b.clock.advance_to(release + 500'000'000);
    CHECK(b.read(0x00) == 0x57);
    CHECK(b.irq_edges == 1);
}

TEST_CASE("rtc: registers C and D are read-only; index, NMI bit and CMOS RAM")
{
    Bench b;
    b.write(0x0d, 0x00);
    CHECK(b.read(0x0d) == 0x80);
    b.write(0x0c, 0xff);
    CHECK(b.read(0x0c) == 0x00);
    b.write(0x0a, 0xa6); // UIP is read-only
    CHECK((b.read(0x0a) & 0x7f) == 0x26);

    b.io.write(0x70, 0x8f, 1); // NMI off, index 0x0f
    CHECK(b.rtc.nmi_disabled());
    b.io.write(0x71, 0x5a, 1);
    CHECK(b.rtc.cmos(0x0f) == 0x5a);
    b.io.write(0x70, 0x0f, 1);
    CHECK_FALSE(b.rtc.nmi_disabled());
    CHECK(b.io.read(0x70, 1) == 0xff); // the index port is write-only

    for (int i = 0x0e; i < 0x80; ++i)
        b.write(uint8_t(i), uint8_t(i ^ 0xa5));
    for (int i = 0x0e; i < 0x80; ++i)
        if (i != 0x32)
            CHECK(b.read(uint8_t(i)) == uint8_t(i ^ 0xa5));
    b.write(0xff, 0x11); // index 0x7f with NMI off
    CHECK(b.rtc.cmos(0x7f) == 0x11);

    b.io.write(0x70, 0x2240, 2); // index 0x40, then data 0x22
    CHECK(b.rtc.cmos(0x40) == 0x22);
    CHECK(b.io.read(0x70, 2) == 0x22ff);
}

TEST_CASE("rtc: the CMOS layout SeaBIOS and Linux read")
{
    Bench b;
    CmosLayout small;
    small.ram_below_4g = 128ull << 20;
    small.boot_order = "cdn";
    small.cpus = 2;
    small.floppies = 1;
    small.floppy_types = 0x40;
    REQUIRE(b.rtc.fill_layout(small));
    CHECK((b.read(0x15) | b.read(0x16) << 8) == 640);
    CHECK((b.read(0x17) | b.read(0x18) << 8) == 0xffff); // 127 MiB in KiB, capped
    CHECK((b.read(0x30) | b.read(0x31) << 8) == 0xffff);
    CHECK((b.read(0x34) | b.read(0x35) << 8) == (128 - 16) * 16);
    CHECK(b.read(0x5b) == 0);
    CHECK(b.read(0x3d) == 0x32); // disk, then cdrom
    CHECK(b.read(0x38) == 0x40); // then network; floppy signature checked
    CHECK(b.read(0x5f) == 1);
    CHECK(b.read(0x14) == 0x07); // floppy, FPU, PS/2 mouse, VGA
    CHECK(b.read(0x10) == 0x40);
    unsigned sum = 0;
    for (int i = 0x10; i <= 0x2d; ++i)
        sum += b.read(uint8_t(i));
    CHECK((b.read(0x2e) << 8 | b.read(0x2f)) == sum);

    CmosLayout big;
    big.ram_below_4g = 3ull << 30;
    big.ram_above_4g = 3ull << 30;
    big.boot_order = "n";
    big.floppy_signature_check = false;
    REQUIRE(b.rtc.fill_layout(big));
    CHECK((b.read(0x34) | b.read(0x35) << 8) == ((3ull << 30) - (16 << 20)) / 65536);
    CHECK((b.read(0x5b) | b.read(0x5c) << 8 | b.read(0x5d) << 16) == (3ull << 30) / 65536);
    CHECK(b.read(0x3d) == 0x04);
    CHECK(b.read(0x38) == 0x01);
    CHECK(b.read(0x14) == 0x06);

    CmosLayout tiny;
    tiny.ram_below_4g = 512 << 10;
    REQUIRE(b.rtc.fill_layout(tiny));
    CHECK(b.read(0x17) == 0);
    CHECK(b.read(0x34) == 0);

    CmosLayout bad;
    bad.boot_order = "cx";
    CHECK(b.rtc.fill_layout(bad).error() == "Invalid boot device for PC: 'x'");
    bad.boot_order = "cdna";
    CHECK_FALSE(b.rtc.fill_layout(bad));
}

TEST_CASE("rtc: system reset disables interrupts and drops IRQ8")
{
    Bench b;
    b.write(0x0b, 0x72); // PIE | AIE | UIE
    b.clock.advance(kNsPerSec);
    CHECK(b.rtc.irq().level());
    b.rtc.reset();
    CHECK_FALSE(b.rtc.irq().level());
    CHECK(b.read(0x0b) == 0x02);
    CHECK(b.read(0x00) == 0x57); // the clock keeps its time
    CHECK(b.rtc.dump().find("nmi_disabled=0\n") != std::string::npos);
}

TEST_CASE("rtc: random guest accesses are harmless")
{
    Bench b;
    uint64_t seed = 0x146818;
    auto next = [&seed] {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        return seed >> 33;
    };
    for (int i = 0; i < 20'000; ++i) {
        unsigned size = 1u << (next() % 4);
        uint16_t port = uint16_t(0x70 + next() % 2);
        if (next() % 3 == 0)
            b.io.write(0x70, next() % 16, 1); // favour the clock registers
        if (next() & 1)
            b.io.write(port, next() << 16 | next(), size);
        else
            (void)b.io.read(port, size);
        b.clock.advance(int64_t(next() % 5'000'000));
    }
    CHECK(b.read(0x0d) == 0x80);
}
