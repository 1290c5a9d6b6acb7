// Unit tests: the i8042 keyboard controller, PS/2 keyboard and mouse,
// driven through a real port space as Linux's i8042 driver does.
#include "devices/input/i8042.h"
#include "engine/memory/address_space.h"

#include <doctest/doctest.h>
#include <vector>

using namespace emu;
using namespace emu::devices;

namespace {

struct Rig {
    mem::MemoryRegion::Ptr root = std::move(*mem::MemoryRegion::container("io", mem::kPortSpaceSize));
    int resets = 0;
    bool a20 = true;
    bool irq1 = false, irq12 = false;
    int irq1_edges = 0, irq12_edges = 0;
    I8042 kbc{[this] { resets++; }, [this](bool on) { a20 = on; }};
    mem::AddressSpace io{"io", *root};
    Rig()
    {
        REQUIRE(kbc.attach(*root).has_value());
        kbc.irq1().connect([this](bool l) {
            irq1_edges += l && !irq1;
            irq1 = l;
        });
        kbc.irq12().connect([this](bool l) {
            irq12_edges += l && !irq12;
            irq12 = l;
        });
    }
    uint8_t status() { return uint8_t(io.read(0x64, 1)); }
    void command(uint8_t c) { io.write(0x64, c, 1); }
    void data(uint8_t d) { io.write(0x60, d, 1); }
    // Everything waiting in the output buffer.
    std::vector<uint8_t> drain(int limit = 64)
    {
        std::vector<uint8_t> out;
        for (int i = 0; i < limit && (status() & 1); i++)
            out.push_back(uint8_t(io.read(0x60, 1)));
        return out;
    }
};

} // namespace

TEST_CASE("controller commands as Linux probes them")
{
    Rig r;
    r.command(0x20);
    CHECK(r.drain() == std::vector<uint8_t>{0x45});
    r.command(0xaa);
    CHECK(r.drain() == std::vector<uint8_t>{0x55});
    r.command(0xab);
    CHECK(r.drain() == std::vector<uint8_t>{0x00});
    r.command(0xa9);
    CHECK(r.drain() == std::vector<uint8_t>{0x00});
    r.command(0x60);
    r.data(0x47); // IRQ1 + IRQ12 + translation
    r.command(0x20);
    CHECK(r.drain() == std::vector<uint8_t>{0x47});
    CHECK((r.status() & 0x08) != 0); // the last write went to the command port
}

TEST_CASE("A20 through the output port and reset through 0xfe")
{
    Rig r;
    r.command(0xd1);
    r.data(0x01); // A20 off, reset line released
    CHECK_FALSE(r.a20);
    r.command(0xd0);
    CHECK((r.drain()[0] & 0x02) == 0);
    r.command(0xd1);
    r.data(0x03);
    CHECK(r.a20);
    CHECK(r.resets == 0);
    r.command(0xfe);
    CHECK(r.resets == 1);
    r.command(0xff); // pulses nothing
    CHECK(r.resets == 1);
}

TEST_CASE("keyboard: reset, identify, scan sets, typed keys with IRQ1")
{
    Rig r;
    r.data(0xff);
    CHECK(r.drain() == std::vector<uint8_t>{0xfa, 0xaa});
    r.data(0xf2);
    CHECK(r.drain() == std::vector<uint8_t>{0xfa, 0xab, 0x41});
    r.data(0xf0);
    r.data(0x00);
    CHECK(r.drain() == std::vector<uint8_t>{0xfa, 0xfa, 0x02});
    r.data(0xed);
    r.data(0x07);
    CHECK(r.drain() == std::vector<uint8_t>{0xfa, 0xfa});
    r.data(0x42); // unknown command
    CHECK(r.drain() == std::vector<uint8_t>{0xfe});
    // 'a' pressed: set 1 (translated) reaches the guest, with IRQ1.
    const uint8_t s1[] = {0x1e}, s2[] = {0x1c};
    r.kbc.key(s1, s2);
    CHECK(r.irq1);
    CHECK(r.drain() == std::vector<uint8_t>{0x1e});
    CHECK_FALSE(r.irq1);
    // Without translation the keyboard's own set 2 bytes arrive.
    r.command(0x60);
    r.data(0x05);
    r.kbc.key(s1, s2);
    CHECK(r.drain() == std::vector<uint8_t>{0x1c});
    // A disabled keyboard port holds keys back until enabled.
    r.command(0xad);
    r.kbc.key(s1, s2);
    CHECK((r.status() & 1) == 0);
    r.command(0xae);
    CHECK(r.drain() == std::vector<uint8_t>{0x1c});
}

TEST_CASE("mouse: reset, IntelliMouse knock, packets on IRQ12")
{
    Rig r;
    r.command(0x60);
    r.data(0x47);
    auto aux = [&](uint8_t b) {
        r.command(0xd4);
        r.data(b);
    };
    aux(0xff);
    CHECK(r.drain() == std::vector<uint8_t>{0xfa, 0xaa, 0x00});
    for (uint8_t rate : {200, 100, 80}) {
        aux(0xf3);
        aux(rate);
    }
    r.drain();
    aux(0xf2);
    CHECK(r.drain() == std::vector<uint8_t>{0xfa, 0x03});
    aux(0xf4);
    CHECK(r.drain() == std::vector<uint8_t>{0xfa});
    r.kbc.mouse_event(5, 3, -1, 1);
    CHECK(r.irq12);
    CHECK((r.status() & 0x20) != 0); // the byte comes from the mouse
    CHECK(r.drain() == std::vector<uint8_t>{0x29, 0x05, 0xfd, 0xff});
    // Status request.
    aux(0xe9);
    auto st = r.drain();
    REQUIRE(st.size() == 4);
    CHECK((st[1] & 0x20) != 0); // enabled
    CHECK(st[3] == 80);         // the last sample rate
}

TEST_CASE("a guest that never reads cannot grow the queue")
{
    Rig r;
    const uint8_t s1[] = {0x1e}, s2[] = {0x1c};
    for (int i = 0; i < 10000; i++)
        r.kbc.key(s1, s2);
    size_t held = r.drain(100000).size();
    CHECK(held >= 200);  // keys were kept…
    CHECK(held <= 257);  // …but only up to the queue's bound (and the output buffer)
}

TEST_CASE("each byte of a multi-byte reply interrupts anew (edge-triggered IRQ1/IRQ12)")
{
    // Linux's i8042 interrupt handler reads one byte per interrupt, so the
    // keyboard's identify reply (ACK, 0xab, 0x41) needs three rising edges.
    Rig r;
    r.command(0x60);
    r.data(0x47); // IRQ1 + IRQ12 + translation
    int before = r.irq1_edges;
    r.data(0xf2);
    CHECK(r.irq1);
    CHECK(r.drain() == std::vector<uint8_t>{0xfa, 0xab, 0x41});
    CHECK(r.irq1_edges - before == 3);
    CHECK_FALSE(r.irq1);

    before = r.irq12_edges;
    r.command(0xd4);
    r.data(0xf2); // the mouse's identify: ACK, 0x00
    CHECK(r.drain() == std::vector<uint8_t>{0xfa, 0x00});
    CHECK(r.irq12_edges - before == 2);
    CHECK_FALSE(r.irq12);
}
