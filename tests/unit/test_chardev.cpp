// Unit tests: the device side of the daemon's chardevs (daemon/chardev) —
// the output cap, input paced by can_receive(), the mux keys and the monitor
// line editor — on a ringbuf backend, a fake device and a fake machine.
#include "daemon/chardev.h"

#include <doctest/doctest.h>

using namespace emu;

namespace {

class FakeMachine final : public devices::Machine {
public:
    void resume() override {}
    void pause() override {}
    void reset() override {}
    void powerdown() override {}
    std::vector<devices::CpuInfo> cpus() const override { return {}; }
    void with_devices(const std::function<void()>& fn) override
    {
        locked++;
        fn();
    }
    int locked = 0;
};

// A UART-like receiver with a FIFO of 'room' bytes.
class FakeDevice final : public devices::CharFrontend {
public:
    size_t can_receive() override { return room - got.size() + taken; }
    void receive(std::span<const uint8_t> bytes) override
    {
        CHECK(bytes.size() <= can_receive());
        got.append(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    }
    void receive_break() override { breaks++; }
    // The guest reads n bytes from the FIFO.
    void drain(size_t n) { taken += n; }
    size_t room = 16;
    size_t taken = 0;
    std::string got;
    int breaks = 0;
};

void run(daemon::Loop& loop) { uv_run(loop.uv(), UV_RUN_NOWAIT); }

daemon::ChardevSpec ring_spec(uint64_t size, bool mux = false)
{
    daemon::ChardevSpec spec;
    spec.id = "r";
    spec.backend = "ringbuf";
    spec.size = size;
    spec.mux = mux;
    return spec;
}

} // namespace

TEST_CASE("chardev output: capped, dropped and counted, never blocking the writer")
{
    daemon::Loop loop;
    daemon::RingbufBackend ring(loop, ring_spec(4u << 20));
    std::vector<uint8_t> chunk(512 * 1024, 'x');
    for (int i = 0; i < 6; i++) // 3 MiB before the loop runs once
        ring.write(chunk);
    CHECK(ring.dropped() == (3u << 20) - daemon::k_chardev_out_cap);
    run(loop);
    CHECK(ring.read(8u << 20).size() == daemon::k_chardev_out_cap);
    // Once drained, output flows again.
    ring.write(chunk);
    run(loop);
    CHECK(ring.read(8u << 20).size() == chunk.size());
    loop.close();
}

TEST_CASE("chardev input: never more than can_receive(), the rest after accept_input()")
{
    daemon::Loop loop;
    FakeMachine machine;
    FakeDevice device;
    daemon::RingbufBackend ring(loop, ring_spec(4096));
    ring.set_machine(&machine);
    ring.set_frontend(&device);
    CHECK(ring.frontend_open());
    ring.input(std::string(40, 'a'));
    CHECK(device.got.size() == 16);
    device.drain(16);
    ring.accept_input(); // posted: the loop delivers
    CHECK(device.got.size() == 16);
    run(loop);
    CHECK(device.got.size() == 32);
    device.drain(16);
    ring.accept_input();
    run(loop);
    CHECK(device.got == std::string(40, 'a'));
    // Without a device, input is lost (a wire with no receiver).
    ring.set_frontend(nullptr);
    ring.input("zz");
    CHECK(device.got.size() == 40);
    loop.close();
}

TEST_CASE("mux: Ctrl-a keys and the monitor's line editor")
{
    daemon::Loop loop;
    FakeMachine machine;
    FakeDevice device;
    device.room = 1 << 20;
    daemon::RingbufBackend ring(loop, ring_spec(1 << 16, true));
    ring.set_machine(&machine);
    ring.set_frontend(&device);
    std::vector<std::string> lines;
    bool quit = false;
    ring.on_quit = [&] { quit = true; };
    ring.attach_monitor({"QEMU 2.10.1 monitor - type 'help' for more information\n",
                         [&](const std::string& line) {
                             lines.push_back(line);
                             return "ran " + line + "\n";
                         }});
    auto output = [&] {
        run(loop);
        return ring.read(1 << 16);
    };

    // The serial port has the line first.
    ring.input("ls\r");
    CHECK(device.got == "ls\r");
    // Ctrl-a c: the monitor greets, echoes, edits, runs whole lines.
    ring.input("\x01" "c");
    CHECK(output() == "QEMU 2.10.1 monitor - type 'help' for more information\r\n(qemu) ");
    ring.input("info statuz\x7f" "s\r\n");
    CHECK(lines == std::vector<std::string>{"info status"});
    CHECK(output() == "info statuz\b \bs\r\nran info status\r\n(qemu) ");
    CHECK(device.got == "ls\r"); // nothing typed in the monitor reached the device
    // Both frontends' output reaches the peer whoever has the line.
    ring.write(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>("log\n"), 4));
    CHECK(output() == "log\n");
    // Back to the serial port; Ctrl-a Ctrl-a is a literal Ctrl-a; b is a break.
    ring.input("\x01" "c" "x\x01\x01y\x01" "b");
    CHECK(device.got == "ls\rx\x01y");
    CHECK(device.breaks == 1);
    output();
    // Ctrl-a t: timestamps at each line start of the serial output.
    ring.input("\x01t");
    ring.write(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>("a\nb"), 3));
    std::string stamped = output();
    CHECK(stamped.size() == 2 * 15 + 3);
    CHECK(stamped.substr(0, 4) == "[00:");
    CHECK(stamped.find("] a\n[00:") != std::string::npos);
    ring.input("\x01t");
    // Ctrl-a h lists the keys, Ctrl-a s says there is nothing to flush, Ctrl-a x quits.
    ring.input("\x01h");
    CHECK(output().find("Ctrl-a c") != std::string::npos);
    ring.input("\x01s");
    CHECK(output().find("no block devices") != std::string::npos);
    ring.input("\x01x");
    CHECK(quit);
    ring.set_frontend(nullptr);
    loop.close();
}
