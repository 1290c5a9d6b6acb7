// Device tests of the HPET, driven through a real memory address space with a
// stepped clock.
#include "devices/timer/hpet.h"
#include "engine/memory/address_space.h"

#include <doctest/doctest.h>

using namespace emu;
using namespace emu::devices;

namespace {

constexpr uint64_t kBase = Hpet::kBase;
constexpr uint64_t kConfig = 0x10, kStatus = 0x20, kCounter = 0xf0;
constexpr uint64_t timer_conf(int n) { return 0x100 + 0x20 * uint64_t(n); }
constexpr uint64_t timer_cmp(int n) { return 0x108 + 0x20 * uint64_t(n); }

// Tn_CONF bits
constexpr uint64_t kLevel = 1 << 1, kEnable = 1 << 2, kPeriodic = 1 << 3, kValSet = 1 << 6, kMode32 = 1 << 8;
constexpr uint64_t route_bits(int gsi) { return uint64_t(gsi) << 9; }

struct Edges {
    int count = 0;
    std::vector<int64_t> at;
};

struct Bench {
    SteppedClock clock;
    mem::MemoryRegion::Ptr root = std::move(*mem::MemoryRegion::container("mem", 1ull << 32));
    mem::AddressSpace bus{"mem", *root};
    Hpet hpet{clock};
    std::array<Edges, 32> routes;
    Edges irq0, irq8;

    Bench()
    {
        REQUIRE(hpet.attach(*root));
        for (int i = 0; i < 32; ++i)
            watch(hpet.route(i), routes[size_t(i)]);
        watch(hpet.legacy_irq0(), irq0);
        watch(hpet.legacy_irq8(), irq8);
    }
    void watch(IrqLine& line, Edges& e)
    {
        line.connect([this, &e](bool level) {
            if (level) {
                e.count++;
                e.at.push_back(clock.now_ns());
            }
        });
    }
    uint64_t rd32(uint64_t off) { return bus.read(kBase + off, 4); }
    uint64_t rd64(uint64_t off) { return bus.read(kBase + off, 8); }
    void wr32(uint64_t off, uint64_t v) { bus.write(kBase + off, v, 4); }
    void wr64(uint64_t off, uint64_t v) { bus.write(kBase + off, v, 8); }
};

} // namespace

TEST_CASE("hpet: capabilities")
{
    Bench b;
    CHECK(b.rd32(0x000) == 0x8086a201); // rev 1, 3 timers, 64-bit, legacy capable
    CHECK(b.rd32(0x004) == 100'000'000); // femtoseconds per tick: 10 MHz
    CHECK(b.rd64(0x000) == 0x05f5e1008086a201ull);
    CHECK(b.bus.read(kBase, 1) == 0x01); // a byte read is widened by the bus
    CHECK(b.rd64(timer_conf(0)) == (0x00ff0104ull << 32 | 0x30)); // periodic and 64-bit capable
    CHECK(b.rd64(timer_cmp(1)) == ~0ull);
    CHECK(b.rd64(0x200) == 0); // reserved
    CHECK(b.rd64(0x3f8) == 0);
}

TEST_CASE("hpet: the main counter runs at 10 MHz while enabled")
{
    Bench b;
    b.clock.advance(1'000'000);
    CHECK(b.rd64(kCounter) == 0); // halted after reset
    b.wr32(kConfig, 1);
    b.clock.advance(1'000'000);
    CHECK(b.rd64(kCounter) == 10'000);
    b.clock.advance(1'234'567);
    CHECK(b.rd64(kCounter) == 22'345);
    CHECK(b.rd32(kCounter) == 22'345);
    CHECK(b.rd32(kCounter + 4) == 0);
    b.wr64(kCounter, 5); // ignored while running
    CHECK(b.rd64(kCounter) == 22'345);

    b.wr32(kConfig, 0);
    b.clock.advance(5'000'000);
    CHECK(b.rd64(kCounter) == 22'345); // halted
    b.wr32(kCounter + 4, 0x1); // writable while halted, in halves
    b.wr32(kCounter, 0xfffffff0);
    CHECK(b.rd64(kCounter) == 0x1fffffff0ull);
    b.wr32(kConfig, 1);
    b.clock.advance(2'000);
    CHECK(b.rd64(kCounter) == 0x200000004ull);
}

TEST_CASE("hpet: one-shot comparators fire at the right stepped times")
{
    Bench b;
    b.wr32(kConfig, 1);
    b.clock.advance(100'000); // counter 1000
    SUBCASE("64-bit")
    {
        b.wr64(timer_conf(0), kEnable | route_bits(2));
        b.wr64(timer_cmp(0), 1000 + 5000);
        b.clock.advance(499'999);
        CHECK(b.routes[2].count == 0);
        b.clock.advance(1);
        CHECK(b.routes[2].count == 1);
        CHECK(b.routes[2].at[0] == 600'000);
        b.clock.advance(10 * kNsPerSec);
        CHECK(b.routes[2].count == 1); // once
        // A comparator already passed never fires in 64-bit mode.
        b.wr64(timer_cmp(0), 10);
        b.clock.advance(kNsPerSec);
        CHECK(b.routes[2].count == 1);
    }
    SUBCASE("32-bit, the way Linux programs its clockevent")
    {
        b.wr32(timer_conf(1), kEnable | kMode32 | route_bits(8));
        uint32_t cnt = uint32_t(b.rd32(kCounter)) + 12'345;
        b.wr32(timer_cmp(1), cnt);
        CHECK(b.rd64(timer_cmp(1)) == cnt); // the upper half reads 0 in 32-bit mode
        b.clock.advance(1'234'500);
        CHECK(b.routes[8].count == 1);
        CHECK(b.routes[8].at[0] == 100'000 + 1'234'500);
        b.clock.advance(kNsPerSec);
        CHECK(b.routes[8].count == 1);
    }
    SUBCASE("disabled timers and a halted HPET are silent")
    {
        b.wr64(timer_conf(2), route_bits(20)); // INT_ENB clear
        b.wr64(timer_cmp(2), 2000);
        b.clock.advance(kNsPerSec);
        CHECK(b.routes[20].count == 0);
        b.wr64(timer_conf(2), kEnable | route_bits(20));
        b.wr64(timer_cmp(2), b.rd64(kCounter) + 100);
        b.wr32(kConfig, 0);
        b.clock.advance(kNsPerSec);
        CHECK(b.routes[20].count == 0);
        b.wr32(kConfig, 1); // the counter resumes and reaches the comparator
        b.clock.advance(10'000);
        CHECK(b.routes[20].count == 1);
    }
}

TEST_CASE("hpet: periodic mode as Linux sets it up")
{
    Bench b;
    b.wr32(kConfig, 1);
    b.clock.advance(50'000);
    const uint32_t delta = 10'000; // 1 ms
    b.wr32(timer_conf(0), kEnable | kPeriodic | kValSet | kMode32 | route_bits(2));
    uint32_t cmp = uint32_t(b.rd32(kCounter)) + delta;
    b.wr32(timer_cmp(0), cmp);   // VAL_SET: the comparator
    b.wr32(timer_cmp(0), delta); // then the period
    CHECK((b.rd32(timer_conf(0)) & kValSet) == 0); // self-clearing
    b.clock.advance(kNsPerSec);
    CHECK(b.routes[2].count == 1000);
    CHECK(b.routes[2].at[0] == 50'000 + 1'000'000);
    CHECK(b.routes[2].at[999] == 50'000 + 1'000'000'000);
    CHECK(b.rd32(timer_cmp(0)) == cmp + 1000 * delta); // the comparator moves on

    SUBCASE("64-bit periodic")
    {
        b.wr64(timer_conf(1), kEnable | kPeriodic | kValSet | route_bits(16));
        b.wr64(timer_cmp(1), b.rd64(kCounter) + 2500);
        b.wr64(timer_cmp(1), 2500);
        int before = b.routes[2].count;
        b.clock.advance(10'000'000);
        CHECK(b.routes[16].count == 40);
        CHECK(b.routes[2].count - before == 10);
    }
    SUBCASE("a tiny period is coalesced, not a storm")
    {
        b.wr64(timer_conf(1), kEnable | kPeriodic | kValSet | route_bits(17));
        b.wr64(timer_cmp(1), b.rd64(kCounter) + 1);
        b.wr64(timer_cmp(1), 1); // 100 ns
        b.clock.advance(1'000'000);
        CHECK(b.routes[17].count <= 101);
        CHECK(b.routes[17].count >= 99);
    }
}

TEST_CASE("hpet: level-triggered timers hold the line until the status is cleared")
{
    Bench b;
    b.wr32(kConfig, 1);
    b.wr64(timer_conf(2), kLevel | kEnable | route_bits(21));
    b.wr64(timer_cmp(2), 1000);
    b.clock.advance(100'000);
    CHECK(b.hpet.route(21).level());
    CHECK(b.rd32(kStatus) == 0x4);
    b.wr32(kStatus, 0x3); // other bits: no effect
    CHECK(b.hpet.route(21).level());
    b.wr32(kStatus, 0x4);
    CHECK_FALSE(b.hpet.route(21).level());
    CHECK(b.rd32(kStatus) == 0);

    // With INT_ENB clear the status is still set, the line stays low.
    b.wr64(timer_conf(2), kLevel | route_bits(21));
    b.wr64(timer_cmp(2), b.rd64(kCounter) + 10);
    b.clock.advance(1000);
    CHECK(b.rd32(kStatus) == 0x4);
    CHECK_FALSE(b.hpet.route(21).level());
    b.wr64(timer_conf(2), kLevel | kEnable | route_bits(21)); // enabling asserts
    CHECK(b.hpet.route(21).level());
    b.wr64(timer_conf(2), kEnable | route_bits(21)); // edge: status cleared
    CHECK(b.rd32(kStatus) == 0);
    CHECK_FALSE(b.hpet.route(21).level());
}

TEST_CASE("hpet: legacy replacement routes timers 0 and 1 to IRQ0 and IRQ8")
{
    Bench b;
    std::vector<bool> legacy;
    b.hpet.legacy_active().connect([&](bool l) { legacy.push_back(l); });
    b.wr32(kConfig, 3);
    CHECK(legacy == std::vector<bool>{true});
    b.wr64(timer_conf(0), kEnable | kPeriodic | kValSet | route_bits(2));
    b.wr64(timer_cmp(0), 10'000);
    b.wr64(timer_cmp(0), 10'000);
    b.wr64(timer_conf(1), kEnable | route_bits(8));
    b.wr64(timer_cmp(1), 5'000);
    b.wr64(timer_conf(2), kEnable | route_bits(16));
    b.wr64(timer_cmp(2), 7'000);
    b.clock.advance(10'000'000);
    CHECK(b.irq0.count == 10);
    CHECK(b.irq8.count == 1);
    CHECK(b.irq8.at[0] == 500'000);
    CHECK(b.routes[2].count == 0); // timers 0/1 ignore their routes
    CHECK(b.routes[8].count == 0);
    CHECK(b.routes[16].count == 1); // timer 2 keeps its own

    b.wr32(kConfig, 1);
    CHECK(legacy == std::vector<bool>{true, false});
    b.clock.advance(1'000'000);
    CHECK(b.routes[2].count == 1);
    CHECK(b.irq0.count == 10);
}

TEST_CASE("hpet: routes outside the capability, FSB, odd accesses, reset")
{
    Bench b;
    b.wr64(timer_conf(0), route_bits(3)); // IRQ3 is not in 0x00ff0104
    CHECK((b.rd32(timer_conf(0)) >> 9 & 0x1f) == 0);
    b.wr64(timer_conf(0), route_bits(23));
    CHECK((b.rd32(timer_conf(0)) >> 9 & 0x1f) == 23);
    b.wr64(timer_conf(0), (1 << 14) | route_bits(23)); // FSB_EN_CNF cannot be set
    CHECK((b.rd32(timer_conf(0)) & (3 << 14)) == 0);
    b.wr64(0x110, 0x1234567812345678ull); // FSB route
    CHECK(b.rd64(0x110) == 0);
    b.wr64(0x000, 0); // capabilities are read-only
    CHECK(b.rd32(0x000) == 0x8086a201);

    b.bus.write(kBase + kConfig, 1, 1); // byte write: read-modify-write of the dword
    CHECK(b.rd32(kConfig) == 1);
    b.bus.write(kBase + 0x3fe, 0xffff, 2); // reserved: ignored
    b.wr32(kConfig, 3);
    b.hpet.reset();
    CHECK(b.rd64(kConfig) == 0);
    CHECK_FALSE(b.hpet.legacy_active().level());
    CHECK(b.rd64(timer_cmp(0)) == ~0ull);
    CHECK(b.hpet.dump().find("timer[2].comparator=0xffffffffffffffff\n") != std::string::npos);
}

TEST_CASE("hpet: random guest accesses are harmless")
{
    Bench b;
    uint64_t seed = 0x4e7;
    auto next = [&seed] {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        return seed >> 33;
    };
    for (int i = 0; i < 20'000; ++i) {
        uint64_t offset = next() % 4 == 0 ? next() % Hpet::kSize : 0x100 + next() % 0x60;
        unsigned size = 1u << (next() % 4);
        offset = std::min<uint64_t>(offset, Hpet::kSize - size);
        uint64_t value = next() % 3 == 0 ? next() % 64 : (next() << 32 | next());
        if (next() & 1)
            b.bus.write(kBase + offset, value, size);
        else
            (void)b.bus.read(kBase + offset, size);
        if (next() % 50 == 0)
            b.wr32(kConfig, next() % 4);
        b.clock.advance(int64_t(next() % 100'000));
    }
    CHECK(b.rd32(0x000) == 0x8086a201);
}
