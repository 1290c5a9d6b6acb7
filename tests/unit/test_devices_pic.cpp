// Device tests of the 8259A pair, driven through a real port address space.
#include "common/log.h"
#include "devices/pic/i8259.h"
#include "engine/memory/address_space.h"

#include <doctest/doctest.h>

using namespace emu;
using namespace emu::devices;

namespace {

const bool g_quiet = (set_log_level(LogLevel::Error), true);

struct Bench {
    mem::MemoryRegion::Ptr root = std::move(*mem::MemoryRegion::container("io", mem::kPortSpaceSize));
    mem::AddressSpace io{"io", *root};
    I8259Pair pic;

    Bench() { REQUIRE(pic.attach(*root)); }
    uint8_t in(uint16_t port) { return uint8_t(io.read(port, 1)); }
    void out(uint16_t port, uint8_t v) { io.write(port, v, 1); }

    // Linux's init_8259A with the vector bases the brief asks for.
    void init_linux(uint8_t master_icw4 = 0x01)
    {
        out(0x21, 0xff);
        out(0xa1, 0xff);
        out(0x20, 0x11); // ICW1: edge, cascade, ICW4 follows
        out(0x21, 0x20); // ICW2: IRQ0-7 -> 0x20-0x27
        out(0x21, 0x04); // ICW3: slave on IR2
        out(0x21, master_icw4);
        out(0xa0, 0x11);
        out(0xa1, 0x28); // IRQ8-15 -> 0x28-0x2f
        out(0xa1, 0x02); // ICW3: slave id 2
        out(0xa1, 0x01);
        out(0x21, 0x00); // unmask all
        out(0xa1, 0x00);
    }
    void eoi_master() { out(0x20, 0x20); }
    void eoi_slave() { out(0xa0, 0x20); }
    uint8_t isr(uint16_t cmd)
    {
        out(cmd, 0x0b);
        return in(cmd);
    }
    uint8_t irr(uint16_t cmd)
    {
        out(cmd, 0x0a);
        return in(cmd);
    }
};

} // namespace

TEST_CASE("pic: SeaBIOS-style init, vector bases and IMR read back")
{
    Bench b;
    b.out(0x20, 0x11);
    b.out(0x21, 0x08);
    b.out(0x21, 0x04);
    b.out(0x21, 0x01);
    b.out(0xa0, 0x11);
    b.out(0xa1, 0x70);
    b.out(0xa1, 0x02);
    b.out(0xa1, 0x01);
    b.out(0x21, 0xfb);
    b.out(0xa1, 0xff);
    CHECK(b.in(0x21) == 0xfb);
    CHECK(b.in(0xa1) == 0xff);
    b.pic.set_irq(8, true); // masked on the slave
    CHECK_FALSE(b.pic.pending());
    b.out(0xa1, 0xfe);
    CHECK(b.pic.pending());
    CHECK(b.pic.acknowledge() == 0x70);
    b.pic.set_irq(0, true);
    b.out(0x21, 0xfa);
    CHECK(b.pic.pending()); // IRQ0 beats the IRQ8 in service (via IR2)
    CHECK(b.pic.acknowledge() == 0x08);
}

TEST_CASE("pic: Linux init, edge interrupts, priority and EOI")
{
    Bench b;
    b.init_linux();
    CHECK_FALSE(b.pic.pending());
    std::vector<bool> intr;
    b.pic.int_output().connect([&](bool l) { intr.push_back(l); });

    b.pic.set_irq(1, true);
    CHECK(b.pic.pending());
    CHECK(intr == std::vector<bool>{true});
    CHECK(b.irr(0x20) == 0x02);
    CHECK(b.pic.acknowledge() == 0x21);
    CHECK_FALSE(b.pic.pending());
    CHECK(intr == std::vector<bool>{true, false});
    CHECK(b.isr(0x20) == 0x02);
    CHECK(b.irr(0x20) == 0x00); // edge: IRR cleared by INTA

    SUBCASE("a lower priority request waits for EOI")
    {
        b.pic.set_irq(3, true);
        CHECK_FALSE(b.pic.pending());
        b.eoi_master();
        CHECK(b.isr(0x20) == 0);
        CHECK(b.pic.pending());
        CHECK(b.pic.acknowledge() == 0x23);
    }
    SUBCASE("a higher priority request nests")
    {
        b.pic.set_irq(0, true);
        CHECK(b.pic.pending());
        CHECK(b.pic.acknowledge() == 0x20);
        CHECK(b.isr(0x20) == 0x03);
        b.eoi_master(); // non-specific: the highest in service (IRQ0)
        CHECK(b.isr(0x20) == 0x02);
    }
    SUBCASE("the same line held high needs a new edge")
    {
        b.eoi_master();
        CHECK_FALSE(b.pic.pending());
        b.pic.set_irq(1, false);
        b.pic.set_irq(1, true);
        CHECK(b.pic.pending());
    }
    SUBCASE("specific EOI")
    {
        b.pic.set_irq(0, true);
        b.pic.acknowledge();
        b.out(0x20, 0x61); // specific EOI for IRQ1
        CHECK(b.isr(0x20) == 0x01);
    }
}

TEST_CASE("pic: a pulse is latched until INTA")
{
    Bench b;
    b.init_linux();
    b.pic.set_irq(4, true);
    b.pic.set_irq(4, false);
    CHECK(b.pic.pending());
    CHECK(b.pic.acknowledge() == 0x24);
}

TEST_CASE("pic: cascade through IR2")
{
    Bench b;
    b.init_linux();
    b.pic.set_irq(12, true);
    CHECK(b.pic.pending());
    CHECK(b.irr(0x20) == 0x04);
    CHECK(b.irr(0xa0) == 0x10);
    CHECK(b.pic.acknowledge() == 0x2c);
    CHECK(b.isr(0x20) == 0x04);
    CHECK(b.isr(0xa0) == 0x10);
    CHECK_FALSE(b.pic.pending());

    // A higher slave request waits for the master's IR2 to be ended.
    b.pic.set_irq(9, true);
    CHECK_FALSE(b.pic.pending());
    b.eoi_slave();
    CHECK_FALSE(b.pic.pending());
    b.eoi_master();
    CHECK(b.pic.pending());
    CHECK(b.pic.acknowledge() == 0x29);

    SUBCASE("masking IR2 on the master masks the whole slave")
    {
        b.eoi_slave();
        b.eoi_master();
        b.out(0x21, 0x04);
        b.pic.set_irq(14, true);
        CHECK_FALSE(b.pic.pending());
        b.out(0x21, 0x00);
        CHECK(b.pic.acknowledge() == 0x2e);
    }
}

TEST_CASE("pic: special fully nested mode lets a higher slave request through")
{
    Bench b;
    b.init_linux(0x11); // ICW4: SFNM, 8086
    b.pic.set_irq(12, true);
    CHECK(b.pic.acknowledge() == 0x2c);
    b.pic.set_irq(9, true); // higher than 12 on the slave
    CHECK(b.pic.pending());
    CHECK(b.pic.acknowledge() == 0x29);
    b.pic.set_irq(14, true); // lower: still held back by the slave's ISR
    b.eoi_slave();           // ends 9
    CHECK_FALSE(b.pic.pending());
}

TEST_CASE("pic: level-triggered inputs through the ELCR")
{
    Bench b;
    b.init_linux();
    b.out(0x4d0, 0xff);
    b.out(0x4d1, 0xff);
    CHECK(b.in(0x4d0) == 0xf8); // IRQ0-2 are always edge
    CHECK(b.in(0x4d1) == 0xde); // so are IRQ8 and IRQ13
    b.out(0x4d0, 0x20);         // IRQ5 level
    b.out(0x4d1, 0x04);         // IRQ10 level
    CHECK(b.io.read(0x4d0, 2) == 0x0420);

    b.pic.set_irq(10, true);
    CHECK(b.pic.acknowledge() == 0x2a);
    b.eoi_slave();
    b.eoi_master();
    CHECK(b.pic.pending()); // still high: requests again
    CHECK(b.pic.acknowledge() == 0x2a);
    b.pic.set_irq(10, false);
    b.eoi_slave();
    b.eoi_master();
    CHECK_FALSE(b.pic.pending());
    CHECK(b.irr(0xa0) == 0);

    SUBCASE("a level request withdrawn before INTA is spurious IRQ7")
    {
        b.pic.set_irq(5, true);
        CHECK(b.pic.pending());
        b.pic.set_irq(5, false);
        CHECK_FALSE(b.pic.pending());
        CHECK(b.pic.acknowledge() == 0x27);
        CHECK(b.isr(0x20) == 0); // a spurious vector sets no ISR bit
    }
    SUBCASE("LTIM makes every input level-triggered")
    {
        b.out(0x20, 0x19); // ICW1 with LTIM
        b.out(0x21, 0x20);
        b.out(0x21, 0x04);
        b.out(0x21, 0x01);
        b.pic.set_irq(3, true);
        b.pic.set_irq(3, false);
        CHECK_FALSE(b.pic.pending());
    }
}

TEST_CASE("pic: an edge request gone at INTA time is spurious too")
{
    Bench b;
    b.init_linux();
    CHECK(b.pic.acknowledge() == 0x27); // nothing pending at all
    b.pic.set_irq(3, true);
    b.out(0x21, 0x08); // masked between INTR and INTA
    CHECK(b.pic.acknowledge() == 0x27);
}

TEST_CASE("pic: automatic EOI and rotation")
{
    Bench b;
    SUBCASE("AEOI leaves ISR clear")
    {
        b.init_linux(0x03);
        b.pic.set_irq(1, true);
        CHECK(b.pic.acknowledge() == 0x21);
        CHECK(b.isr(0x20) == 0);
        b.pic.set_irq(6, true); // not held back by anything in service
        CHECK(b.pic.acknowledge() == 0x26);
    }
    SUBCASE("rotate on non-specific EOI makes the serviced IRQ the lowest")
    {
        b.init_linux();
        b.pic.set_irq(0, true);
        CHECK(b.pic.acknowledge() == 0x20);
        b.out(0x20, 0xa0);
        b.pic.set_irq(0, false);
        b.pic.set_irq(0, true);
        b.pic.set_irq(1, true);
        CHECK(b.pic.acknowledge() == 0x21); // IRQ1 is now the highest
    }
    SUBCASE("set priority")
    {
        b.init_linux();
        b.out(0x20, 0xc3); // IRQ3 lowest, IRQ4 highest
        b.pic.set_irq(1, true);
        b.pic.set_irq(5, true);
        CHECK(b.pic.acknowledge() == 0x25);
        b.out(0x20, 0xe5); // rotate on specific EOI: 5 lowest
        CHECK(b.isr(0x20) == 0);
        CHECK(b.pic.acknowledge() == 0x21);
    }
    SUBCASE("rotate in AEOI mode")
    {
        b.init_linux(0x03);
        b.out(0x20, 0x80);
        b.pic.set_irq(0, true);
        CHECK(b.pic.acknowledge() == 0x20);
        b.pic.set_irq(0, false);
        b.pic.set_irq(0, true);
        b.pic.set_irq(7, true);
        CHECK(b.pic.acknowledge() == 0x27); // IRQ0 became the lowest
    }
}

TEST_CASE("pic: special mask mode")
{
    Bench b;
    b.init_linux();
    b.pic.set_irq(1, true);
    CHECK(b.pic.acknowledge() == 0x21);
    b.pic.set_irq(3, true);
    CHECK_FALSE(b.pic.pending());
    b.out(0x21, 0x02);  // the handler masks its own level...
    b.out(0x20, 0x68);  // ...and enters special mask mode
    CHECK(b.pic.pending());
    CHECK(b.pic.acknowledge() == 0x23);
    b.out(0x20, 0x63); // specific EOI 3
    b.out(0x20, 0x48); // leave special mask mode
    b.out(0x21, 0x00);
    b.pic.set_irq(4, true);
    CHECK_FALSE(b.pic.pending()); // IRQ1 still in service
}

TEST_CASE("pic: poll mode")
{
    Bench b;
    b.init_linux();
    b.out(0x20, 0x0c);
    CHECK(b.in(0x20) == 0x00); // nothing requested
    b.pic.set_irq(5, true);
    b.out(0x20, 0x0c);
    CHECK(b.in(0x20) == 0x85);
    CHECK(b.isr(0x20) == 0x20); // the poll read was the acknowledge
    CHECK(b.in(0x20) == 0x20);  // one-shot: back to register reads (ISR)
}

TEST_CASE("pic: odd accesses, reinitialisation, reset and the state dump")
{
    Bench b;
    b.init_linux();
    b.out(0x21, 0x5a);
    b.out(0xa1, 0xa5);
    // A 16-bit read at 0x20 is two byte reads: IRR then IMR.
    CHECK(b.io.read(0x20, 2) == 0x5a00);
    CHECK(b.io.read(0x22, 1) == 0xff); // nothing there
    b.io.write(0x20, 0x0000, 4);       // OCW2 no-op (0x00: AEOI rotate off) and IMR=0
    CHECK(b.in(0x21) == 0x00);

    b.pic.set_irq(6, true);
    b.out(0x20, 0x11); // re-init: IMR and pending edges cleared
    b.out(0x21, 0x30);
    b.out(0x21, 0x04);
    b.out(0x21, 0x01);
    CHECK_FALSE(b.pic.pending()); // IRQ6 is still high, but needs a new edge
    b.pic.set_irq(6, false);
    b.pic.set_irq(6, true);
    CHECK(b.pic.acknowledge() == 0x36);

    std::string dump = b.pic.dump();
    CHECK(dump.find("chip[0].irq_base=0x30\n") != std::string::npos);
    CHECK(dump.find("chip[1].imr=0xa5\n") != std::string::npos);

    b.pic.reset();
    CHECK_FALSE(b.pic.pending());
    CHECK(b.in(0x21) == 0x00);
}

TEST_CASE("pic: random guest accesses are harmless")
{
    Bench b;
    b.init_linux();
    uint64_t seed = 0x8259;
    auto next = [&seed] {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        return seed >> 33;
    };
    static const uint16_t ports[] = {0x20, 0x21, 0xa0, 0xa1, 0x4d0, 0x4d1};
    for (int i = 0; i < 20'000; ++i) {
        uint16_t port = ports[next() % 6];
        unsigned size = 1u << (next() % 4);
        if (next() & 1)
            b.io.write(port, next() << 16 | next(), size);
        else
            (void)b.io.read(port, size);
        int irq = int(next() % 16);
        if (irq != 2)
            b.pic.set_irq(irq, next() & 1);
        if (b.pic.pending()) {
            int vector = b.pic.acknowledge();
            CHECK(vector >= 0);
            CHECK(vector < 256);
        }
    }
}
