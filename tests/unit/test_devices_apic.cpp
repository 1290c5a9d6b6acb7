// Device tests of the local APIC and the IOAPIC, driven through real memory
// address spaces (one view per vCPU, as the machine builds them) and a
// stepped clock.
#include "common/log.h"
#include "devices/apic/ioapic.h"
#include "devices/apic/lapic.h"
#include "engine/memory/address_space.h"

#include <doctest/doctest.h>

#include <utility>
#include <vector>

using namespace emu;
using namespace emu::devices;

namespace {

const bool g_quiet = (set_log_level(LogLevel::Error), true);

constexpr uint64_t kLapic = LocalApic::kBase, kIoapic = IoApic::kBase;
constexpr uint64_t kId = 0x20, kVer = 0x30, kTpr = 0x80, kApr = 0x90, kPpr = 0xa0, kEoi = 0xb0, kLdr = 0xd0,
                   kDfr = 0xe0, kSvr = 0xf0, kIsr = 0x100, kTmr = 0x180, kIrr = 0x200, kEsr = 0x280,
                   kIcrLo = 0x300, kIcrHi = 0x310, kLvtTimer = 0x320, kLvtLint0 = 0x350, kLvtLint1 = 0x360,
                   kLvtError = 0x370, kInitial = 0x380, kCurrent = 0x390, kDcr = 0x3e0;

struct FakePic final : InterruptSource {
    bool level = false;
    int vector = 0x20;
    int acks = 0;
    bool pending() override { return level; }
    int acknowledge() override
    {
        acks++;
        level = false;
        return vector;
    }
};

LapicConfig config(int cpu, bool bsp)
{
    LapicConfig c;
    c.cpu = cpu;
    c.apic_id = uint8_t(cpu);
    c.bsp = bsp;
    return c;
}

struct Cpu {
    mem::MemoryRegion::Ptr root = std::move(*mem::MemoryRegion::container("mem", 1ull << 32));
    mem::AddressSpace bus{"mem", *root};
};

struct Bench {
    SteppedClock clock;
    LapicBus apic_bus;
    std::vector<int> kicks, nmis, inits;
    std::vector<std::pair<int, int>> sipis;
    Cpu cpu0, cpu1;
    LocalApic lapic0{clock, apic_bus, config(0, true)};
    LocalApic lapic1{clock, apic_bus, config(1, false)};
    IoApic ioapic{apic_bus};
    FakePic pic;

    Bench()
    {
        apic_bus.set_hooks({
            .kick = [this](int cpu) { kicks.push_back(cpu); },
            .nmi = [this](int cpu) { nmis.push_back(cpu); },
            .init = [this](int cpu) { inits.push_back(cpu); },
            .sipi = [this](int cpu, uint8_t v) { sipis.emplace_back(cpu, v); },
        });
        apic_bus.add_eoi_listener([this](uint8_t v) { ioapic.eoi(v); });
        REQUIRE(lapic0.attach(*cpu0.root));
        REQUIRE(lapic1.attach(*cpu1.root));
        REQUIRE(ioapic.attach(*cpu0.root));
        lapic0.set_extint_source(&pic);
    }
    mem::AddressSpace& space(int cpu) { return cpu == 0 ? cpu0.bus : cpu1.bus; }
    LocalApic& lapic(int cpu) { return cpu == 0 ? lapic0 : lapic1; }
    uint32_t rd(int cpu, uint64_t reg) { return uint32_t(space(cpu).read(kLapic + reg, 4)); }
    void wr(int cpu, uint64_t reg, uint32_t v) { space(cpu).write(kLapic + reg, v, 4); }
    void enable(int cpu, uint8_t spurious = 0xff) { wr(cpu, kSvr, 0x100u | spurious); }
    bool bit(int cpu, uint64_t base, int v) { return rd(cpu, base + uint64_t(v / 32) * 0x10) & (1u << (v % 32)); }
    void ipi(int cpu, uint32_t lo, uint8_t dest = 0)
    {
        wr(cpu, kIcrHi, uint32_t(dest) << 24);
        wr(cpu, kIcrLo, lo);
    }
    // Takes the interrupt the vCPU would take and ends it; -1 if none.
    int take(int cpu, bool end = true)
    {
        if (!lapic(cpu).pending())
            return -1;
        int v = lapic(cpu).acknowledge();
        if (end)
            wr(cpu, kEoi, 0);
        return v;
    }
    uint32_t io_rd(uint32_t index)
    {
        cpu0.bus.write(kIoapic, index, 4);
        return uint32_t(cpu0.bus.read(kIoapic + 0x10, 4));
    }
    void io_wr(uint32_t index, uint32_t v)
    {
        cpu0.bus.write(kIoapic, index, 4);
        cpu0.bus.write(kIoapic + 0x10, v, 4);
    }
    void redirect(int pin, uint32_t low, uint8_t dest = 0)
    {
        io_wr(0x11 + 2 * uint32_t(pin), uint32_t(dest) << 24);
        io_wr(0x10 + 2 * uint32_t(pin), low);
    }
    uint32_t esr(int cpu)
    {
        wr(cpu, kEsr, 0);
        return rd(cpu, kEsr);
    }
};

constexpr uint32_t kFixed = 0, kLowest = 1u << 8, kNmi = 4u << 8, kInit = 5u << 8, kStartUp = 6u << 8,
                   kExtInt = 7u << 8, kLogical = 1u << 11, kAssert = 1u << 14, kLevelTrig = 1u << 15,
                   kMask = 1u << 16, kSelf = 1u << 18, kAll = 2u << 18, kAllButSelf = 3u << 18;

} // namespace

TEST_CASE("lapic: reset state")
{
    Bench b;
    CHECK(b.rd(0, kVer) == 0x00050014);
    CHECK(b.rd(0, kId) == 0);
    CHECK(b.rd(1, kId) == 0x01000000);
    CHECK(b.rd(0, kSvr) == 0xff);
    CHECK(b.rd(0, kDfr) == 0xffffffff);
    CHECK(b.rd(0, kTpr) == 0);
    for (uint64_t lvt = kLvtTimer; lvt <= kLvtError; lvt += 0x10)
        CHECK(b.rd(0, lvt) == 0x10000);
    CHECK(b.lapic0.apic_base() == 0xfee00900); // enabled, BSP
    CHECK(b.lapic1.apic_base() == 0xfee00800);
    CHECK(b.space(0).read(kLapic + kVer + 2, 2) == 0x0005); // narrower reads are widened
    CHECK(b.rd(0, kVer + 4) == 0);                          // the rest of a 16-byte slot
    b.wr(0, kId, 0x05abcdef);
    CHECK(b.rd(0, kId) == 0x05000000);
    CHECK(b.lapic0.apic_id() == 5);
    // x2APIC is not advertised: enabling it is refused (#GP in the MSR code).
    CHECK_FALSE(b.lapic0.set_apic_base(0xfee00c00));
    CHECK_FALSE(b.lapic0.set_apic_base(0xfee00801)); // reserved bit
    CHECK(b.lapic0.apic_base() == 0xfee00900);
}

TEST_CASE("lapic: software enable through SVR")
{
    Bench b;
    b.ipi(0, kSelf | 0x40);
    CHECK(b.bit(0, kIrr, 0x40));
    CHECK_FALSE(b.lapic0.pending()); // software-disabled: held in IRR
    b.enable(0);
    CHECK(b.lapic0.pending());
    CHECK(b.take(0) == 0x40);
    // Software disable masks every LVT entry, and they stay masked.
    b.wr(0, kLvtTimer, 0x30);
    CHECK(b.rd(0, kLvtTimer) == 0x30);
    b.wr(0, kSvr, 0xff);
    CHECK(b.rd(0, kLvtTimer) == 0x10030);
    b.wr(0, kLvtTimer, 0x30);
    CHECK(b.rd(0, kLvtTimer) == 0x10030);
}

TEST_CASE("lapic: TPR and PPR mask by priority class")
{
    Bench b;
    b.enable(0);
    b.wr(0, kTpr, 0x50);
    b.ipi(0, kSelf | 0x45);
    CHECK_FALSE(b.lapic0.pending());
    CHECK(b.rd(0, kPpr) == 0x50);
    b.wr(0, kTpr, 0x4f); // same class: still held
    CHECK_FALSE(b.lapic0.pending());
    CHECK(b.rd(0, kApr) == 0x4f);
    b.wr(0, kTpr, 0x3f);
    CHECK(b.lapic0.pending());
    CHECK(b.lapic0.acknowledge() == 0x45);
    CHECK(b.rd(0, kPpr) == 0x40); // ISRV class beats the TPR
    b.wr(0, kEoi, 0);
    CHECK(b.rd(0, kPpr) == 0x3f);
}

TEST_CASE("lapic: IRR to ISR to EOI, highest first, nesting")
{
    Bench b;
    b.enable(0);
    b.ipi(0, kSelf | 0x31);
    b.ipi(0, kSelf | 0x62);
    b.ipi(0, kSelf | 0x51);
    CHECK(b.lapic0.acknowledge() == 0x62);
    CHECK(b.bit(0, kIsr, 0x62));
    CHECK_FALSE(b.bit(0, kIrr, 0x62));
    CHECK_FALSE(b.lapic0.pending()); // 0x51 is below the in-service class
    b.ipi(0, kSelf | 0x70);
    CHECK(b.lapic0.pending());
    CHECK(b.lapic0.acknowledge() == 0x70); // nests
    b.wr(0, kEoi, 0);                     // ends 0x70, the highest in service
    CHECK_FALSE(b.bit(0, kIsr, 0x70));
    CHECK(b.bit(0, kIsr, 0x62));
    CHECK_FALSE(b.lapic0.pending());
    b.wr(0, kEoi, 0);
    CHECK(b.take(0) == 0x51);
    CHECK(b.take(0) == 0x31);
    CHECK(b.take(0) == -1);
    CHECK(b.lapic0.acknowledge() == -1);
}

TEST_CASE("lapic: IPIs between two local APICs")
{
    Bench b;
    b.enable(0);
    b.enable(1);
    SUBCASE("fixed, physical")
    {
        b.kicks.clear();
        b.ipi(0, kAssert | 0x41, 1);
        CHECK(b.kicks == std::vector<int>{1});
        CHECK(b.take(1) == 0x41);
        CHECK(b.take(0) == -1);
        b.ipi(1, kAssert | 0x42, 0);
        CHECK(b.take(0) == 0x42);
        b.ipi(0, kAssert | 0x43, 7); // nobody has ID 7
        CHECK(b.take(0) == -1);
        CHECK(b.take(1) == -1);
        b.ipi(0, kAssert | 0x44, 0xff); // physical broadcast
        CHECK(b.take(0) == 0x44);
        CHECK(b.take(1) == 0x44);
    }
    SUBCASE("logical, flat")
    {
        b.wr(0, kLdr, 0x01000000);
        b.wr(1, kLdr, 0x02000000);
        b.ipi(0, kLogical | kAssert | 0x50, 0x02);
        CHECK(b.take(1) == 0x50);
        CHECK(b.take(0) == -1);
        b.ipi(1, kLogical | kAssert | 0x51, 0x03);
        CHECK(b.take(0) == 0x51);
        CHECK(b.take(1) == 0x51);
    }
    SUBCASE("logical, cluster")
    {
        b.wr(0, kDfr, 0x0fffffff);
        b.wr(1, kDfr, 0x0fffffff);
        CHECK(b.rd(1, kDfr) == 0x0fffffff);
        b.wr(0, kLdr, 0x11000000); // cluster 1, member 1
        b.wr(1, kLdr, 0x22000000); // cluster 2, member 2
        b.ipi(0, kLogical | kAssert | 0x52, 0x12); // cluster 1, member 2: nobody
        CHECK(b.take(0) == -1);
        CHECK(b.take(1) == -1);
        b.ipi(0, kLogical | kAssert | 0x53, 0x23);
        CHECK(b.take(1) == 0x53);
        CHECK(b.take(0) == -1);
    }
    SUBCASE("shorthands")
    {
        b.ipi(0, kAllButSelf | kAssert | 0x60, 0);
        CHECK(b.take(0) == -1);
        CHECK(b.take(1) == 0x60);
        b.ipi(1, kAll | kAssert | 0x61);
        CHECK(b.take(0) == 0x61);
        CHECK(b.take(1) == 0x61);
        b.ipi(1, kSelf | 0x62, 0);
        CHECK(b.take(0) == -1);
        CHECK(b.take(1) == 0x62);
    }
    SUBCASE("lowest priority: the lowest-numbered enabled target")
    {
        b.wr(0, kLdr, 0x01000000);
        b.wr(1, kLdr, 0x02000000);
        b.ipi(1, kLowest | kLogical | kAssert | 0x70, 0x03);
        CHECK(b.take(0) == 0x70);
        CHECK(b.take(1) == -1);
        b.wr(0, kSvr, 0xff); // cpu 0 software-disabled
        b.ipi(1, kLowest | kLogical | kAssert | 0x71, 0x03);
        CHECK(b.take(1) == 0x71);
    }
    SUBCASE("NMI")
    {
        b.ipi(0, kNmi | kAssert, 1);
        CHECK(b.nmis == std::vector<int>{1});
        CHECK(b.take(1) == -1);
    }
    CHECK(b.esr(0) == 0);
    CHECK((b.rd(0, kIcrLo) & (1u << 12)) == 0); // delivery status: idle
}

TEST_CASE("lapic: INIT, INIT de-assert and SIPI")
{
    Bench b;
    b.enable(1);
    b.wr(1, kTpr, 0x20);
    b.wr(1, kId, 0x01000000);
    b.ipi(0, kInit | kAssert | kLevelTrig, 1);
    CHECK(b.inits == std::vector<int>{1});
    CHECK(b.rd(1, kSvr) == 0xff); // the APIC reset itself
    CHECK(b.rd(1, kTpr) == 0);
    CHECK(b.rd(1, kId) == 0x01000000); // but kept its ID
    b.ipi(0, kInit | kLevelTrig | kAll, 0); // de-assert: no effect
    CHECK(b.inits.size() == 1);
    b.ipi(0, kStartUp | kAssert | 0x9a, 1);
    REQUIRE(b.sipis.size() == 1);
    CHECK(b.sipis[0] == std::pair<int, int>{1, 0x9a});
    b.ipi(0, kStartUp | kAssert | kAllButSelf | 0x10);
    CHECK(b.sipis.size() == 2);
    CHECK(b.sipis[1] == std::pair<int, int>{1, 0x10});
}

TEST_CASE("lapic: one-shot timer")
{
    Bench b;
    b.enable(0);
    b.wr(0, kDcr, 0x1); // divide by 4: a count every 4 ns at 1 GHz
    b.wr(0, kLvtTimer, 0x40);
    b.clock.advance(100);
    b.wr(0, kInitial, 1000);
    CHECK(b.rd(0, kCurrent) == 1000);
    b.clock.advance(1000);
    CHECK(b.rd(0, kCurrent) == 750);
    b.clock.advance(2999);
    CHECK(b.rd(0, kCurrent) == 1);
    CHECK_FALSE(b.lapic0.pending());
    b.clock.advance(1); // 100 + 4000
    CHECK(b.lapic0.pending());
    CHECK(b.rd(0, kCurrent) == 0);
    CHECK(b.take(0) == 0x40);
    b.clock.advance(100'000);
    CHECK(b.take(0) == -1); // once
    CHECK(b.rd(0, kInitial) == 1000);

    // Changing the divider mid-count keeps the count.
    b.wr(0, kInitial, 100); // t = 104100, divide by 4
    b.clock.advance(200);   // 50 counts
    b.wr(0, kDcr, 0xb);     // divide by 1
    CHECK(b.rd(0, kCurrent) == 50);
    b.clock.advance(49);
    CHECK_FALSE(b.lapic0.pending());
    b.clock.advance(1);
    CHECK(b.take(0) == 0x40);
    // Writing 0 stops it.
    b.wr(0, kInitial, 10);
    b.wr(0, kInitial, 0);
    b.clock.advance(1000);
    CHECK(b.take(0) == -1);
}

TEST_CASE("lapic: periodic timer and LVT masking")
{
    Bench b;
    b.enable(0);
    b.wr(0, kDcr, 0x0);             // divide by 2
    b.wr(0, kLvtTimer, 0x20000 | 0x41); // periodic
    b.wr(0, kInitial, 1000);        // 2 µs period
    std::vector<int64_t> fired;
    for (int i = 0; i < 5000; ++i) {
        b.clock.advance(5);
        if (b.take(0) == 0x41)
            fired.push_back(b.clock.now_ns());
    }
    CHECK(fired == std::vector<int64_t>{2000, 4000, 6000, 8000, 10000, 12000, 14000, 16000, 18000, 20000,
                                        22000, 24000});
    b.clock.advance_to(25'500); // 1500 ns into a period: 750 counts gone
    CHECK(b.rd(0, kCurrent) == 250);
    // Masked: the count goes on, no interrupt.
    b.wr(0, kLvtTimer, 0x20000 | 0x10000 | 0x41);
    b.clock.advance(10'000);
    CHECK(b.take(0) == -1);
    CHECK(b.rd(0, kCurrent) == 250);
    b.wr(0, kLvtTimer, 0x20000 | 0x41);
    b.clock.advance(499);
    CHECK(b.take(0) == -1);
    b.clock.advance(1); // 36000
    CHECK(b.take(0) == 0x41);
    // Switching to one-shot: the current period runs out, then stops.
    b.clock.advance(500); // 36500: 250 counts gone
    b.wr(0, kLvtTimer, 0x41);
    CHECK(b.rd(0, kCurrent) == 750);
    b.clock.advance(1499);
    CHECK(b.take(0) == -1);
    b.clock.advance(1);
    CHECK(b.take(0) == 0x41);
    b.clock.advance(10'000);
    CHECK(b.take(0) == -1);
    CHECK(b.rd(0, kCurrent) == 0);
}

TEST_CASE("lapic: TSC-deadline timer")
{
    Bench b;
    b.enable(0);
    b.lapic0.set_tsc_deadline(5000); // not in deadline mode: ignored
    CHECK(b.lapic0.tsc_deadline() == 0);
    b.wr(0, kInitial, 100);
    b.wr(0, kLvtTimer, 0x40000 | 0x42); // TSC-deadline: disarms the count
    CHECK(b.rd(0, kInitial) == 0);
    b.wr(0, kInitial, 100); // ignored in this mode
    CHECK(b.rd(0, kInitial) == 0);
    CHECK(b.rd(0, kCurrent) == 0);
    b.clock.advance(1000);
    b.lapic0.set_tsc_deadline(6000); // the TSC is the clock in ns by default
    CHECK(b.lapic0.tsc_deadline() == 6000);
    b.clock.advance(4999);
    CHECK(b.take(0) == -1);
    b.clock.advance(1);
    CHECK(b.take(0) == 0x42);
    CHECK(b.lapic0.tsc_deadline() == 0);
    b.lapic0.set_tsc_deadline(10); // in the past: at once
    b.clock.advance(0);
    CHECK(b.take(0) == 0x42);
    b.lapic0.set_tsc_deadline(b.clock.now_ns() + 50);
    b.lapic0.set_tsc_deadline(0); // disarm
    b.clock.advance(100);
    CHECK(b.take(0) == -1);
}

TEST_CASE("lapic: TSC-deadline with a TSC of its own rate")
{
    SteppedClock clock;
    LapicBus bus;
    uint64_t tsc_base = 1'000'000;
    LapicConfig config = ::config(0, true);
    config.read_tsc = [&] { return tsc_base + uint64_t(clock.now_ns()) * 3; }; // 3 GHz
    config.tsc_hz = 3'000'000'000;
    LocalApic apic(clock, bus, config);
    apic.region().io_write(kSvr, 0x1ff, 4);
    apic.region().io_write(kLvtTimer, 0x40000 | 0x43, 4);
    apic.set_tsc_deadline(tsc_base + 3000); // 1 µs
    clock.advance(999);
    CHECK_FALSE(apic.pending());
    clock.advance(1);
    CHECK(apic.pending());
}

TEST_CASE("lapic: ExtINT passthrough of the 8259")
{
    Bench b;
    b.pic.level = true;
    CHECK_FALSE(b.lapic0.pending()); // LINT0 masked after reset
    b.enable(0);
    b.wr(0, kLvtLint0, kExtInt);
    CHECK(b.lapic0.pending());
    CHECK(b.lapic0.acknowledge() == 0x20);
    CHECK(b.pic.acks == 1);
    CHECK_FALSE(b.lapic0.pending());
    // The APIC's own interrupts come first.
    b.pic.level = true;
    b.ipi(0, kSelf | 0x80);
    CHECK(b.lapic0.acknowledge() == 0x80);
    CHECK(b.lapic0.acknowledge() == 0x20);
    // Masked LINT0: no passthrough.
    b.pic.level = true;
    b.wr(0, kLvtLint0, kExtInt | kMask);
    CHECK_FALSE(b.lapic0.pending());
    // Globally disabled APIC: INTR goes straight through.
    b.wr(0, kLvtLint0, kMask);
    CHECK(b.lapic0.set_apic_base(0xfee00000));
    CHECK(b.lapic0.pending());
    CHECK(b.lapic0.acknowledge() == 0x20);
    b.ipi(1, kAll | kAssert | 0x90); // a disabled APIC takes no messages
    CHECK(b.bit(1, kIrr, 0x90));
    CHECK((b.lapic0.state().irr[0x90 / 32] & (1u << (0x90 % 32))) == 0);
    CHECK(b.lapic0.set_apic_base(0xfee00800));
    CHECK(b.rd(0, kSvr) == 0xff); // re-enabled in its reset state
}

TEST_CASE("lapic: LINT1 as NMI, level-triggered LINT0 with remote IRR")
{
    Bench b;
    b.enable(0);
    b.wr(0, kLvtLint1, kNmi);
    b.lapic0.set_lint(1, true);
    b.lapic0.set_lint(1, false);
    CHECK(b.nmis == std::vector<int>{0});
    b.wr(0, kLvtLint0, kLevelTrig | 0x55);
    b.lapic0.set_lint(0, true);
    CHECK((b.rd(0, kLvtLint0) & (1u << 14)) != 0); // remote IRR
    CHECK(b.lapic0.acknowledge() == 0x55);
    CHECK(b.bit(0, kTmr, 0x55));
    b.wr(0, kEoi, 0); // still high: again
    CHECK(b.lapic0.acknowledge() == 0x55);
    b.lapic0.set_lint(0, false);
    b.wr(0, kEoi, 0);
    CHECK((b.rd(0, kLvtLint0) & (1u << 14)) == 0);
    CHECK(b.take(0) == -1);
}

TEST_CASE("lapic: error status register")
{
    Bench b;
    b.enable(0);
    b.ipi(0, kSelf | 0x05); // illegal vector
    CHECK(b.rd(0, kEsr) == 0); // not visible until ESR is written
    CHECK(b.esr(0) == 0x20);   // send illegal vector
    CHECK(b.esr(0) == 0);      // the write cleared the collected errors
    CHECK(b.take(0) == -1);
    b.wr(0, kLvtTimer, 0x03); // a timer with an illegal vector
    b.wr(0, kInitial, 10);
    b.clock.advance(100);
    CHECK(b.esr(0) == 0x40); // received illegal vector
    b.rd(0, 0x40);           // reserved register
    CHECK(b.esr(0) == 0x80);
    // With the error LVT unmasked, an error interrupts.
    b.wr(0, kLvtError, 0xfe);
    b.ipi(0, kSelf | 0x01);
    CHECK(b.take(0) == 0xfe);
    CHECK(b.esr(0) == 0x20);
    // The IOAPIC sending an illegal vector is a receive error.
    b.redirect(3, 0x07);
    b.ioapic.set_irq(3, true);
    CHECK(b.esr(0) == 0x40);
}

TEST_CASE("ioapic: registers")
{
    Bench b;
    CHECK(b.io_rd(0x01) == 0x00170011);
    CHECK(b.io_rd(0x00) == 0);
    b.io_wr(0x00, 0xff000000);
    CHECK(b.io_rd(0x00) == 0x0f000000);
    CHECK(b.io_rd(0x02) == 0x0f000000); // arbitration ID
    b.io_wr(0x01, 0);                   // read-only
    CHECK(b.io_rd(0x01) == 0x00170011);
    for (uint32_t pin = 0; pin < 24; ++pin) {
        CHECK(b.io_rd(0x10 + 2 * pin) == 0x10000); // masked after reset
        CHECK(b.io_rd(0x11 + 2 * pin) == 0);
    }
    b.io_wr(0x10 + 2 * 5, 0xffffffff);
    CHECK(b.io_rd(0x10 + 2 * 5) == 0x1afff); // delivery status, remote IRR read-only
    b.io_wr(0x11 + 2 * 5, 0xffffffff);
    CHECK(b.io_rd(0x11 + 2 * 5) == 0xff000000);
    CHECK(b.ioapic.redirection(5) == 0xff0000000001afffull);
    CHECK(b.io_rd(0x40) == 0); // past the table
    CHECK(b.cpu0.bus.read(kIoapic, 4) == 0x40); // IOREGSEL reads back
}

TEST_CASE("ioapic: edge-triggered delivery and masking")
{
    Bench b;
    b.enable(0);
    b.enable(1);
    b.redirect(1, 0x31, 1); // fixed, physical, to APIC 1
    b.ioapic.set_irq(1, true);
    CHECK(b.take(1) == 0x31);
    b.ioapic.set_irq(1, true); // no new edge
    CHECK(b.take(1) == -1);
    b.ioapic.set_irq(1, false);
    b.ioapic.set_irq(1, true);
    CHECK(b.take(1) == 0x31);
    CHECK_FALSE(b.bit(1, kTmr, 0x31));
    b.ioapic.set_irq(1, false);
    b.redirect(1, 0x31 | kMask, 1);
    b.ioapic.set_irq(1, true); // an edge on a masked pin is lost
    b.redirect(1, 0x31, 1);
    CHECK(b.take(1) == -1);
    // Logical flat destination, through an IrqLine as the machine wires it.
    b.wr(0, kLdr, 0x01000000);
    b.wr(1, kLdr, 0x02000000);
    IrqLine line;
    line.connect(b.ioapic.input(4));
    b.redirect(4, kLogical | 0x34, 0x03);
    line.pulse();
    CHECK(b.take(0) == 0x34);
    CHECK(b.take(1) == 0x34);
}

TEST_CASE("ioapic: level-triggered delivery, remote IRR and EOI")
{
    Bench b;
    b.enable(0);
    b.redirect(10, kLevelTrig | 0x3a, 0);
    b.ioapic.set_irq(10, true);
    CHECK((b.io_rd(0x10 + 2 * 10) & (1u << 14)) != 0); // remote IRR
    CHECK(b.lapic0.acknowledge() == 0x3a);
    CHECK(b.bit(0, kTmr, 0x3a));
    b.ioapic.set_irq(10, true); // busy: nothing more
    CHECK_FALSE(b.bit(0, kIrr, 0x3a));
    b.wr(0, kEoi, 0); // level EOI broadcast; the line is still high
    CHECK((b.io_rd(0x10 + 2 * 10) & (1u << 14)) != 0);
    CHECK(b.lapic0.acknowledge() == 0x3a);
    b.ioapic.set_irq(10, false); // the device is serviced
    b.wr(0, kEoi, 0);
    CHECK((b.io_rd(0x10 + 2 * 10) & (1u << 14)) == 0);
    CHECK(b.take(0) == -1);

    // Masked while high: sent when unmasked.
    b.redirect(11, kLevelTrig | kMask | 0x3b, 0);
    b.ioapic.set_irq(11, true);
    CHECK(b.take(0) == -1);
    b.redirect(11, kLevelTrig | 0x3b, 0);
    CHECK(b.lapic0.acknowledge() == 0x3b);
    // Rewriting the entry as edge clears a stuck remote IRR (Linux's trick).
    b.redirect(11, kMask | 0x3b, 0);
    CHECK((b.io_rd(0x10 + 2 * 11) & (1u << 14)) == 0);
    b.ioapic.set_irq(11, false);
    b.wr(0, kEoi, 0);

    // Nobody accepted it: remote IRR stays clear, no EOI will come.
    b.redirect(12, kLevelTrig | 0x3c, 9);
    b.ioapic.set_irq(12, true);
    CHECK((b.io_rd(0x10 + 2 * 12) & (1u << 14)) == 0);
}

TEST_CASE("ioapic: lowest priority, NMI, ExtINT; MSI")
{
    Bench b;
    b.enable(0);
    b.enable(1);
    b.wr(0, kLdr, 0x01000000);
    b.wr(1, kLdr, 0x02000000);
    b.redirect(5, kLowest | kLogical | 0x45, 0x03);
    b.ioapic.set_irq(5, true);
    CHECK(b.take(0) == 0x45);
    CHECK(b.take(1) == -1);
    b.wr(0, kSvr, 0xff);
    b.ioapic.set_irq(5, false);
    b.ioapic.set_irq(5, true);
    CHECK(b.take(1) == 0x45);
    b.enable(0);

    b.redirect(6, kNmi, 1);
    b.ioapic.set_irq(6, true);
    CHECK(b.nmis == std::vector<int>{1});

    // ExtINT: the 8259 behind pin 0 (virtual wire through the IOAPIC).
    b.redirect(0, kExtInt, 0);
    b.pic.level = true;
    CHECK_FALSE(b.lapic0.pending());
    b.ioapic.set_irq(0, true);
    CHECK(b.lapic0.pending());
    CHECK(b.lapic0.acknowledge() == 0x20);
    CHECK_FALSE(b.lapic0.pending());

    // An MSI: address 0xfee01000 (APIC 1), fixed vector 0x66.
    CHECK(b.apic_bus.deliver_msi(0xfee01000, 0x66) == 1);
    CHECK(b.take(1) == 0x66);
    CHECK(b.apic_bus.deliver_msi(0xfed00000, 0x66) == 0);
}

TEST_CASE("lapic: state dump")
{
    Bench b;
    b.enable(0);
    std::string d = b.lapic0.dump();
    CHECK(d.find("svr=0x1ff") != std::string::npos);
    CHECK(d.find("apic_base=0xfee00900") != std::string::npos);
    CHECK(b.ioapic.dump().find("redirection[23]=0x10000") != std::string::npos);
}

TEST_CASE("lapic: a tiny periodic period is paced, and the timer kicks its vCPU")
{
    Bench b;
    b.enable(0);
    b.wr(0, kDcr, 0xb); // divide by 1
    b.wr(0, kLvtTimer, 0x20000 | 0x48);
    b.kicks.clear();
    b.wr(0, kInitial, 1); // 1 ns period: at most one interrupt per kMinPeriodNs
    CHECK(b.clock.advance(10 * LocalApic::kMinPeriodNs) <= 11);
    CHECK(b.kicks == std::vector<int>{0});
    CHECK(b.take(0) == 0x48);
    b.clock.advance(LocalApic::kMinPeriodNs);
    CHECK(b.take(0) == 0x48);
    CHECK(b.kicks == std::vector<int>{0, 0});
}
