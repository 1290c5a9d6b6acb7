// Device tests of the 8254 PIT and port 0x61, driven through a real port
// address space with a stepped clock.
#include "devices/timer/i8254.h"
#include "engine/memory/address_space.h"

#include <doctest/doctest.h>

using namespace emu;
using namespace emu::devices;

namespace {

constexpr int64_t kHz = I8254::kFrequencyHz;

// Clock time of tick `k` after a load at 0.
int64_t tick_ns(int64_t k)
{
    return (k * kNsPerSec + kHz - 1) / kHz;
}

struct Bench {
    SteppedClock clock;
    mem::MemoryRegion::Ptr root = std::move(*mem::MemoryRegion::container("io", mem::kPortSpaceSize));
    mem::AddressSpace io{"io", *root};
    I8254 pit{clock};
    int irq_edges = 0;
    std::vector<int64_t> edge_times;

    Bench()
    {
        REQUIRE(pit.attach(*root));
        pit.irq0().connect([this](bool level) {
            if (level) {
                ++irq_edges;
                edge_times.push_back(clock.now_ns());
            }
        });
    }
    uint8_t in(uint16_t port) { return uint8_t(io.read(port, 1)); }
    // Programming counter 0 raises OUT0 (and IRQ0) in every mode but 0, as
    // on the chip; tests of periodic edges start counting afterwards.
    void forget_edges()
    {
        irq_edges = 0;
        edge_times.clear();
    }
    void out(uint16_t port, uint8_t v) { io.write(port, v, 1); }
    void program(int channel, uint8_t control, uint16_t count)
    {
        out(0x43, control);
        out(uint16_t(0x40 + channel), uint8_t(count));
        out(uint16_t(0x40 + channel), uint8_t(count >> 8));
    }
    uint16_t read16(int channel)
    {
        uint8_t lo = in(uint16_t(0x40 + channel));
        return uint16_t(lo | in(uint16_t(0x40 + channel)) << 8);
    }
    uint16_t latch_read(int channel)
    {
        out(0x43, uint8_t(channel << 6));
        return read16(channel);
    }
    uint8_t status(int channel)
    {
        out(0x43, uint8_t(0xe0 | 2 << channel)); // read-back: status only
        return in(uint16_t(0x40 + channel));
    }
};

} // namespace

TEST_CASE("pit: Linux's TSC calibration loop on counter 2 (mode 0, gate and OUT on port 0x61)")
{
    Bench b;
    const uint16_t latch = kHz / 20; // 50 ms
    b.out(0x61, uint8_t((b.in(0x61) & ~0x02) | 0x01)); // gate high, speaker off
    CHECK((b.in(0x61) & 0x03) == 0x01);
    b.program(2, 0xb0, latch);
    CHECK((b.in(0x61) & 0x20) == 0); // OUT low while counting
    b.clock.advance_to(tick_ns(latch) - 1000);
    CHECK((b.in(0x61) & 0x20) == 0);
    b.clock.advance_to(tick_ns(latch));
    CHECK((b.in(0x61) & 0x20) == 0x20);
    CHECK(b.clock.now_ns() > 49'999'000);
    CHECK(b.clock.now_ns() < 50'001'000);
    CHECK(b.irq_edges == 0); // counter 2 has no interrupt
}

TEST_CASE("pit: quick calibration reads the count down at 1.193182 MHz")
{
    Bench b;
    b.out(0x61, 0x01);
    b.program(2, 0xb0, 0xffff);
    CHECK(b.read16(2) == 0xffff);
    b.clock.advance(1'000'000); // 1 ms = 1193.182 ticks
    CHECK(b.read16(2) == 0xffff - 1193);
    b.clock.advance(9'000'000);
    CHECK(b.read16(2) == 0xffff - 11931);
    // Past zero the count wraps on through 0xffff.
    b.clock.advance_to(tick_ns(0xffff + 5));
    CHECK(b.read16(2) == 0x10000 - 5);
    CHECK((b.in(0x61) & 0x20) == 0x20); // and OUT stays high
}

TEST_CASE("pit: gate low suspends counter 2 in mode 0")
{
    Bench b;
    b.program(2, 0xb0, 1000); // gate is low after reset
    b.clock.advance(1'000'000);
    CHECK(b.read16(2) == 1000);
    b.out(0x61, 0x01);
    b.clock.advance(tick_ns(100) + 1);
    CHECK(b.read16(2) == 900);
    b.out(0x61, 0x00);
    b.clock.advance(5'000'000);
    CHECK(b.read16(2) == 900); // suspended
    b.out(0x61, 0x01);
    b.clock.advance(tick_ns(100));
    CHECK(b.read16(2) == 800); // resumed where it stopped
}

TEST_CASE("pit: mode 2 on counter 0 ticks IRQ0 at Linux's HZ")
{
    Bench b;
    const uint16_t latch = (kHz + 500) / 1000; // 1193
    b.program(0, 0x34, latch);
    b.forget_edges();
    b.clock.advance(kNsPerSec);
    CHECK(b.irq_edges == 1000); // 1193182 / 1193 = 1000.15
    // Edges fall on whole periods of the load.
    REQUIRE(b.edge_times.size() >= 2);
    CHECK(b.edge_times[0] == tick_ns(latch));
    CHECK(b.edge_times[1] == tick_ns(2 * latch));
    // The count runs latch..1 and reloads.
    b.clock.advance_to(tick_ns(1000 * latch + 193) + 1);
    CHECK(b.latch_read(0) == latch - 193);

    SUBCASE("stepping in small increments gives the same count")
    {
        Bench c;
        c.program(0, 0x34, latch);
        c.forget_edges();
        for (int i = 0; i < 1000; ++i)
            c.clock.advance(1'000'000);
        CHECK(c.irq_edges == 1000);
    }
    SUBCASE("the HPET's legacy mode takes IRQ0 away")
    {
        b.pit.set_irq_enabled(false);
        int before = b.irq_edges;
        b.clock.advance(10'000'000);
        CHECK(b.irq_edges == before);
        b.pit.set_irq_enabled(true);
        b.clock.advance(10'000'000);
        CHECK(b.irq_edges >= before + 9);
    }
}

TEST_CASE("pit: mode 0 on counter 0 is a one-shot interrupt")
{
    Bench b;
    b.program(0, 0x30, 5000);
    CHECK_FALSE(b.pit.out(0));
    b.clock.advance(tick_ns(4999));
    CHECK(b.irq_edges == 0);
    b.clock.advance(tick_ns(5000) - tick_ns(4999));
    CHECK(b.irq_edges == 1);
    CHECK(b.pit.out(0));
    b.clock.advance(kNsPerSec);
    CHECK(b.irq_edges == 1); // no more until reprogrammed
    b.program(0, 0x30, 100); // a new count drops OUT and starts again
    CHECK_FALSE(b.pit.out(0));
    b.clock.advance(tick_ns(100) + 1);
    CHECK(b.irq_edges == 2);
}

TEST_CASE("pit: mode 3 square wave and the speaker")
{
    Bench b;
    b.out(0x61, 0x03);
    b.program(2, 0xb6, 1000); // mode 3
    CHECK(b.pit.speaker_on());
    CHECK(b.pit.speaker_frequency() == doctest::Approx(1193.182));
    CHECK(b.pit.out(2));
    b.clock.advance_to(tick_ns(499));
    CHECK(b.pit.out(2));
    b.clock.advance_to(tick_ns(500));
    CHECK_FALSE(b.pit.out(2));
    CHECK(b.read16(2) % 2 == 0); // counts by two
    b.clock.advance_to(tick_ns(1000));
    CHECK(b.pit.out(2));
    b.out(0x61, 0x01);
    CHECK_FALSE(b.pit.speaker_on());
    CHECK(b.pit.speaker_frequency() == 0.0);

    // Counter 0 in mode 3: an IRQ0 edge per period.
    b.program(0, 0x36, 0); // 65536: the BIOS's 18.2 Hz
    b.forget_edges();
    b.clock.advance(kNsPerSec);
    CHECK(b.irq_edges == 18);
}

TEST_CASE("pit: counter latch freezes the value until read")
{
    Bench b;
    b.program(0, 0x34, 10000);
    b.clock.advance_to(tick_ns(1234));
    b.out(0x43, 0x00); // latch counter 0
    b.clock.advance(1'000'000);
    b.out(0x43, 0x00); // a second latch before the read is ignored
    CHECK(b.read16(0) == 10000 - 1234);
    CHECK(b.read16(0) != 10000 - 1234); // live again
}

TEST_CASE("pit: read-back of status and count, null count")
{
    Bench b;
    b.out(0x43, 0x34);
    CHECK(b.status(0) == (0x40 | 0x34 | 0x80)); // null count; mode 2 OUT high
    b.out(0x40, 0x10);
    b.out(0x40, 0x27); // 10000
    CHECK(b.status(0) == (0x34 | 0x80));
    b.clock.advance_to(tick_ns(100));
    b.out(0x43, 0xc2); // read-back: count and status of counter 0
    CHECK(b.in(0x40) == (0x34 | 0x80)); // status first
    CHECK(b.read16(0) == 9900);

    b.program(1, 0x70, 50); // counter 1, mode 0: OUT low
    CHECK((b.status(1) & 0x80) == 0);
    b.out(0x43, 0xdc); // read-back of count for counters 1 and 2 (2 not programmed)
    CHECK(b.read16(1) == 50);
}

TEST_CASE("pit: BCD counting")
{
    Bench b;
    b.program(0, 0x35, 0x0100); // mode 2, BCD 100
    b.clock.advance_to(tick_ns(25));
    CHECK(b.latch_read(0) == 0x0075);
    b.program(2, 0xb1, 0x0000); // BCD 0 = 10000
    b.out(0x61, 0x01);
    b.clock.advance_to(b.clock.now_ns() + tick_ns(1));
    CHECK(b.read16(2) == 0x9999);
}

TEST_CASE("pit: LSB-only and MSB-only access")
{
    Bench b;
    b.out(0x43, 0x10); // counter 0 LSB only, mode 0
    b.out(0x40, 200);
    b.clock.advance_to(tick_ns(50));
    CHECK(b.in(0x40) == 150);
    CHECK(b.in(0x40) == 150);
    b.out(0x43, 0x24); // counter 0 MSB only, mode 2
    b.out(0x40, 0x02); // 0x200
    b.clock.advance_to(b.clock.now_ns() + tick_ns(0x100) + 1);
    CHECK(b.in(0x40) == 0x01);
}

TEST_CASE("pit: modes 4 and 5 strobe, mode 1 one-shot on the gate")
{
    Bench b;
    SUBCASE("mode 4: OUT low for the one clock at zero, IRQ0 after it")
    {
        b.program(0, 0x38, 100);
        b.forget_edges();
        CHECK(b.pit.out(0));
        b.clock.advance_to(tick_ns(100));
        CHECK_FALSE(b.pit.out(0));
        CHECK(b.irq_edges == 0);
        b.clock.advance_to(tick_ns(101));
        CHECK(b.pit.out(0));
        CHECK(b.irq_edges == 1);
    }
    SUBCASE("mode 1: the gate's rising edge starts the one-shot")
    {
        b.program(2, 0xb2, 100);
        CHECK(b.pit.out(2));
        b.clock.advance(1'000'000);
        CHECK(b.pit.out(2)); // waits for the trigger
        b.out(0x61, 0x01);
        int64_t t0 = b.clock.now_ns();
        CHECK_FALSE(b.pit.out(2));
        b.clock.advance_to(t0 + tick_ns(99));
        CHECK_FALSE(b.pit.out(2));
        b.clock.advance_to(t0 + tick_ns(100));
        CHECK(b.pit.out(2));
        b.out(0x61, 0x00);
        b.out(0x61, 0x01); // retrigger
        CHECK_FALSE(b.pit.out(2));
    }
    SUBCASE("mode 5: strobe after the trigger")
    {
        b.program(2, 0xba, 10);
        b.clock.advance(1'000'000);
        CHECK(b.pit.out(2));
        b.out(0x61, 0x01);
        int64_t t0 = b.clock.now_ns();
        b.clock.advance_to(t0 + tick_ns(10));
        CHECK_FALSE(b.pit.out(2));
        b.clock.advance_to(t0 + tick_ns(11));
        CHECK(b.pit.out(2));
    }
    SUBCASE("mode 2 gate low stops counting and holds OUT high; high reloads")
    {
        b.out(0x61, 0x01);
        b.program(2, 0xb4, 100);
        b.clock.advance_to(tick_ns(40));
        b.out(0x61, 0x00);
        b.clock.advance(1'000'000);
        CHECK(b.read16(2) == 60);
        CHECK(b.pit.out(2));
        b.out(0x61, 0x01);
        CHECK(b.read16(2) == 100);
    }
}

TEST_CASE("pit: port 0x61 bits, odd accesses, reset, dump")
{
    Bench b;
    b.out(0x61, 0xff);
    uint8_t v = b.in(0x61);
    CHECK((v & 0x0f) == 0x0f); // gate, speaker, bits 2-3 stored
    CHECK((v & 0xc0) == 0);
    uint8_t refresh = v & 0x10;
    b.clock.advance(15'085);
    CHECK((b.in(0x61) & 0x10) != refresh); // the refresh bit toggles
    CHECK(b.in(0x43) == 0xff);

    b.out(0x43, 0x10); // counters 0 and 1: LSB only, mode 0
    b.out(0x43, 0x50);
    b.io.write(0x40, 0x2010, 2); // a 16-bit write is a byte to each counter
    CHECK(b.io.read(0x40, 2) == 0x2010);
    b.io.write(0x40, 0x12345678, 4); // reaches 0x43: control word 0x12 (counter 0, mode 1)
    CHECK(b.pit.dump().find("channel[0].mode=0x1\n") != std::string::npos);

    b.pit.reset();
    int edges = b.irq_edges;
    b.clock.advance(kNsPerSec);
    CHECK(b.irq_edges == edges); // counters stop until programmed
    CHECK_FALSE(b.pit.out(0));
}

TEST_CASE("pit: random guest accesses are harmless")
{
    Bench b;
    uint64_t seed = 0x8254;
    auto next = [&seed] {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        return seed >> 33;
    };
    for (int i = 0; i < 20'000; ++i) {
        uint16_t port = next() % 5 == 0 ? 0x61 : uint16_t(0x40 + next() % 4);
        unsigned size = 1u << (next() % 4);
        if (next() & 1)
            b.io.write(port, next() << 16 | next(), size);
        else
            (void)b.io.read(port, size);
        b.clock.advance(int64_t(next() % 20'000));
    }
    CHECK(b.clock.now_ns() > 0);
}
