// Device tests of the 16550A UART, driven through a real port address space
// with a stepped clock and a buffer backend.
#include "devices/serial/uart16550.h"
#include "engine/memory/address_space.h"

#include <doctest/doctest.h>
#include <string>

using namespace emu;
using namespace emu::devices;

namespace {

constexpr uint16_t kCom1 = 0x3f8;
enum : uint16_t { RBR = 0, IER = 1, IIR = 2, FCR = 2, LCR = 3, MCR = 4, LSR = 5, MSR = 6, SCR = 7 };

std::vector<uint8_t> bytes(const std::string& s)
{
    return {s.begin(), s.end()};
}

struct Bench {
    SteppedClock clock;
    mem::MemoryRegion::Ptr root = std::move(*mem::MemoryRegion::container("io", mem::kPortSpaceSize));
    mem::AddressSpace io{"io", *root};
    BufferBackend backend;
    Uart16550 uart;
    int irq_edges = 0;

    explicit Bench(UartConfig config = {}) : uart(clock, config)
    {
        REQUIRE(uart.attach(*root, kCom1));
        uart.set_backend(&backend);
        uart.irq().connect([this](bool level) { irq_edges += level; });
    }
    uint8_t in(uint16_t reg) { return uint8_t(io.read(kCom1 + reg, 1)); }
    void out(uint16_t reg, uint8_t v) { io.write(kCom1 + reg, v, 1); }
    // 115200 8N1, FIFOs on with the given trigger bits.
    void setup(uint8_t fcr = 0xc7)
    {
        out(LCR, 0x80);
        out(RBR, 1);
        out(IER, 0);
        out(LCR, 0x03);
        out(FCR, fcr);
    }
    std::string drain()
    {
        std::string s;
        while (in(LSR) & 0x01)
            s += char(in(RBR));
        return s;
    }
};

} // namespace

TEST_CASE("uart: Linux's probe: IER, scratch, loopback and FIFO detection")
{
    Bench b;
    b.out(IER, 0);
    CHECK(b.in(IER) == 0);
    b.out(IER, 0xff);
    CHECK(b.in(IER) == 0x0f); // the upper bits do not exist
    b.out(IER, 0);

    b.out(SCR, 0xa5);
    CHECK(b.in(SCR) == 0xa5);
    b.out(SCR, 0x5a);
    CHECK(b.in(SCR) == 0x5a);

    b.out(MCR, 0x10 | 0x0a); // loopback, RTS, OUT2
    CHECK((b.in(MSR) & 0xf0) == 0x90); // CTS and DCD
    b.out(MCR, 0x00);

    CHECK((b.in(IIR) & 0xc0) == 0x00); // FIFOs off: 16450-like
    b.out(FCR, 0x01);
    CHECK((b.in(IIR) >> 6) == 3); // 16550A
    b.out(LCR, 0x80);
    b.out(FCR, 0x21); // a 16750 would grow its FIFO (IIR bit 5)
    CHECK((b.in(IIR) & 0x20) == 0);
    b.out(LCR, 0x03);
    CHECK(b.in(IIR) == 0xc1); // no interrupt pending
    CHECK(b.in(LSR) == 0x60);
}

TEST_CASE("uart: transmit reaches the backend; THRE and its interrupt")
{
    Bench b;
    b.setup();
    for (char c : std::string("hello\n"))
        b.out(RBR, uint8_t(c));
    CHECK(std::string(b.backend.output().begin(), b.backend.output().end()) == "hello\n");
    CHECK((b.in(LSR) & 0x60) == 0x60); // THRE and TEMT: sent at once

    CHECK_FALSE(b.uart.irq().level());
    b.out(IER, 0x02); // enabling ETBEI while empty interrupts at once
    CHECK(b.uart.irq().level());
    CHECK(b.in(IIR) == 0xc2);
    CHECK_FALSE(b.uart.irq().level()); // reading IIR acknowledged it
    CHECK(b.in(IIR) == 0xc1);
    b.out(RBR, 'x');
    CHECK(b.in(IIR) == 0xc2); // empty again after the write
    b.out(IER, 0x00);
    CHECK_FALSE(b.uart.irq().level());
    b.out(IER, 0x02); // re-enabling fires again
    CHECK(b.uart.irq().level());
}

TEST_CASE("uart: receive FIFO, trigger level, character timeout")
{
    Bench b;
    b.setup(0x41); // FIFO on, trigger 4
    b.out(IER, 0x01);
    b.backend.push_input(bytes("abc"));
    CHECK((b.in(LSR) & 0x01) == 1);
    CHECK(b.in(IIR) == 0xc1); // below the trigger
    // 115200 8N1: 10 bits per character, timeout after 4 characters.
    const int64_t timeout = 4 * (10 * 16 * kNsPerSec / Uart16550::kInputClockHz);
    b.clock.advance(timeout - 1);
    CHECK(b.in(IIR) == 0xc1);
    b.clock.advance(1);
    CHECK(b.in(IIR) == 0xcc); // character timeout
    CHECK(b.uart.irq().level());
    CHECK(b.in(RBR) == 'a');
    CHECK(b.in(IIR) == 0xc1); // a read clears the timeout and restarts it
    b.clock.advance(timeout);
    CHECK(b.in(IIR) == 0xcc);
    CHECK(b.drain() == "bc");
    CHECK(b.in(IIR) == 0xc1);
    CHECK_FALSE(b.uart.irq().level());

    b.backend.push_input(bytes("1234"));
    CHECK(b.in(IIR) == 0xc4); // trigger level reached
    b.in(RBR);
    CHECK(b.in(IIR) == 0xc1); // below it again (timeout pending later)
    CHECK(b.drain() == "234");

    SUBCASE("the four trigger levels")
    {
        for (auto [fcr, level] : {std::pair{0x01, 1}, {0x41, 4}, {0x81, 8}, {0xc1, 14}}) {
            b.out(FCR, uint8_t(fcr | 0x02));
            std::vector<uint8_t> data(size_t(level - 1), 'z');
            b.backend.push_input(data);
            if (level > 1)
                CHECK(b.in(IIR) == 0xc1);
            b.backend.push_input(bytes("!"));
            CHECK(b.in(IIR) == 0xc4);
            b.out(FCR, 0x03); // clear the receive FIFO
            CHECK((b.in(LSR) & 1) == 0);
        }
    }
}

TEST_CASE("uart: the device paces the backend with can_receive")
{
    Bench b;
    b.setup(0xc1);
    std::string text = "0123456789abcdefghijklmnopqrstuvwxyz";
    b.backend.push_input(bytes(text));
    CHECK(b.backend.queued_input() == text.size() - 16);
    CHECK(b.drain() == text); // each read made room; the backend refilled
    CHECK(b.backend.queued_input() == 0);
    CHECK((b.in(LSR) & 0x02) == 0); // no overrun

    b.out(FCR, 0x00); // 16450 mode: one byte at a time
    CHECK(b.uart.can_receive() == 1);
    b.backend.push_input(bytes("xy"));
    CHECK(b.backend.queued_input() == 1);
    CHECK(b.drain() == "xy");
}

TEST_CASE("uart: loopback, modem lines, overrun")
{
    Bench b;
    b.setup(0x00); // no FIFO
    b.out(MCR, 0x10);
    CHECK(b.in(MSR) == 0x0b); // leaving the external lines: CTS, DSR, DCD changed
    b.out(RBR, 'L');
    CHECK(b.backend.output().empty()); // not sent outside
    CHECK(b.in(RBR) == 'L');
    CHECK(b.uart.can_receive() == 0); // external input refused in loopback

    b.out(MCR, 0x1f);
    CHECK(b.in(MSR) == 0xfb); // all four lines; CTS, DSR, DCD changed (RI rose)
    b.out(MCR, 0x1b);        // OUT1 (-> RI) falls: trailing edge
    CHECK(b.in(MSR) == 0xb4);

    b.out(IER, 0x04); // line status interrupts
    b.out(RBR, '1');
    b.out(RBR, '2'); // overruns the holding register
    CHECK(b.in(IIR) == 0x06);
    CHECK(b.in(LSR) == 0x63); // OE | DR | THRE | TEMT
    CHECK(b.in(IIR) == 0x01); // reading LSR cleared it
    CHECK(b.in(RBR) == '2'); // 16450: the newer byte won

    b.out(FCR, 0x01); // FIFO: overrun keeps the FIFO, loses the new byte
    for (int i = 0; i < 17; ++i)
        b.out(RBR, uint8_t('a' + i));
    CHECK((b.in(LSR) & 0x02) == 0x02);
    CHECK(b.drain() == "abcdefghijklmnop");
}

TEST_CASE("uart: break in and out")
{
    Bench b;
    b.setup();
    b.out(IER, 0x05);
    b.backend.push_break();
    CHECK(b.in(IIR) == 0xc6); // line status first
    CHECK(b.in(LSR) == (0x80 | 0x60 | 0x10 | 0x08 | 0x01)); // FIFO error, BI, FE, DR
    CHECK(b.in(IIR) == 0xc1); // one byte: below the trigger (14)
    CHECK(b.in(RBR) == 0x00);
    CHECK(b.in(LSR) == 0x60);

    b.out(LCR, 0x43);
    CHECK(b.backend.break_on());
    b.out(LCR, 0x03);
    CHECK_FALSE(b.backend.break_on());
    CHECK(b.backend.break_changes() == 2);

    b.out(MCR, 0x10); // in loopback, a break is received
    b.out(LCR, 0x43);
    CHECK(b.backend.break_changes() == 2);
    CHECK((b.in(LSR) & 0x11) == 0x11);
}

TEST_CASE("uart: modem status interrupt and priorities")
{
    Bench b;
    b.setup(0x01);
    b.out(IER, 0x08);
    b.uart.set_modem_inputs(true, true, true, true); // RI rises: no delta
    CHECK(b.in(IIR) == 0xc1);
    b.uart.set_modem_inputs(false, true, false, true); // CTS changes, RI falls
    CHECK(b.in(IIR) == 0xc0);
    CHECK(b.in(MSR) == (0xa0 | 0x01 | 0x04));
    CHECK(b.in(IIR) == 0xc1);

    // All four sources at once: reported in priority order.
    b.out(IER, 0x0f);
    b.uart.set_modem_inputs(true, true, false, true);
    b.backend.push_break();
    b.backend.push_input(bytes("a"));
    CHECK(b.in(IIR) == 0xc6); // line status
    b.in(LSR);
    CHECK(b.in(IIR) == 0xc4); // received data (trigger 1)
    b.drain();
    CHECK(b.in(IIR) == 0xc2); // THR empty
    CHECK(b.in(IIR) == 0xc0); // modem status
    b.in(MSR);
    CHECK(b.in(IIR) == 0xc1);
}

TEST_CASE("uart: divisor latch, OUT2 gating, odd accesses, COM ports, reset")
{
    Bench b;
    b.out(IER, 0x05);
    b.out(LCR, 0x83);
    b.out(RBR, 0x0c);
    b.out(IER, 0x00);
    CHECK(b.in(RBR) == 0x0c);
    CHECK(b.in(IER) == 0x00);
    b.out(LCR, 0x03);
    CHECK(b.in(IER) == 0x05); // untouched by the divisor writes
    CHECK(b.uart.state().divisor == 12);
    CHECK(b.io.read(kCom1 + 3, 2) == 0x0003); // LCR and MCR in one access

    Bench gated(UartConfig{true});
    gated.out(IER, 0x02);
    CHECK_FALSE(gated.uart.irq().level()); // OUT2 clear: the PC's IRQ driver is off
    gated.out(MCR, 0x08);
    CHECK(gated.uart.irq().level());

    // Four UARTs at the COM addresses.
    mem::MemoryRegion::Ptr root = std::move(*mem::MemoryRegion::container("io", mem::kPortSpaceSize));
    mem::AddressSpace io("io", *root);
    std::vector<std::unique_ptr<Uart16550>> com;
    for (int i = 0; i < 4; ++i) {
        com.push_back(std::make_unique<Uart16550>(b.clock));
        REQUIRE(com.back()->attach(*root, Uart16550::kComPorts[i]));
        io.write(Uart16550::kComPorts[i] + SCR, uint8_t(0x10 + i), 1);
    }
    for (int i = 0; i < 4; ++i)
        CHECK(io.read(Uart16550::kComPorts[i] + SCR, 1) == uint64_t(0x10 + i));

    b.out(MCR, 0x1f);
    b.out(SCR, 0x77);
    b.uart.reset();
    CHECK(b.in(IER) == 0);
    CHECK(b.in(MCR) == 0);
    CHECK(b.in(SCR) == 0x77);
    CHECK(b.in(IIR) == 0x01);
    CHECK(b.uart.dump().find("divisor=0xc\n") != std::string::npos);
}

TEST_CASE("uart: random guest accesses and input are harmless")
{
    Bench b;
    uint64_t seed = 0x16550;
    auto next = [&seed] {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        return seed >> 33;
    };
    for (int i = 0; i < 20'000; ++i) {
        uint16_t port = uint16_t(kCom1 + next() % 8);
        unsigned size = 1u << (next() % 4);
        if (next() & 1)
            b.io.write(port, next() << 16 | next(), size);
        else
            (void)b.io.read(port, size);
        switch (next() % 8) {
        case 0: b.backend.push_input(std::vector<uint8_t>(next() % 40, uint8_t(next()))); break;
        case 1: b.backend.push_break(); break;
        case 2: b.uart.set_modem_inputs(next() & 1, next() & 1, next() & 1, next() & 1); break;
        default: break;
        }
        b.clock.advance(int64_t(next() % 2'000'000));
    }
    CHECK(b.uart.state().rx_count <= 16);
}
