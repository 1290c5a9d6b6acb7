// devices/chardev.h — how a character device (a UART, a virtio console)
// talks to a character backend (a socket, a pty, a file, the VM console),
// which the daemon implements.
//
//   device --write(bytes), set_break(on)-->  backend
//   device <--receive(bytes), receive_break()-- backend, at most can_receive()
//   device --accept_input()-->  backend     "I have room again: push more"
//
// Flow control is the device's: a backend never pushes more than
// can_receive() says and keeps the rest until accept_input(). Output is not
// flow-controlled (a UART on real wires cannot be stopped either): the
// backend buffers or drops by its own policy.
//
// Threads: the device side runs under the VM's device lock. write(),
// set_break() and accept_input() are called with that lock held and must not
// block (a daemon backend posts to its loop). A backend calls into the
// CharFrontend only while holding the VM's device lock (the daemon runs
// backend input through the VM for that).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <span>
#include <vector>

namespace emu::devices {

// Implemented by the device.
class CharFrontend {
public:
    virtual ~CharFrontend() = default;
    // How many bytes receive() may be given now (0: none, wait for
    // accept_input()).
    virtual size_t can_receive() = 0;
    virtual void receive(std::span<const uint8_t> bytes) = 0;
    // The line was held in the spacing state for longer than a character.
    virtual void receive_break() = 0;
};

// Implemented by the daemon's backends (and BufferBackend below).
class CharBackend {
public:
    virtual ~CharBackend() = default;
    // The device attaches itself (nullptr detaches). One frontend at a time.
    virtual void set_frontend(CharFrontend* frontend) = 0;
    virtual void write(std::span<const uint8_t> bytes) = 0;
    // The device can take input again (its FIFO drained).
    virtual void accept_input() {}
    // The device holds the line in break (LCR bit 6) or releases it.
    virtual void set_break(bool on) {}
};

// A backend for tests: collects output, queues input and pushes it as the
// device makes room.
class BufferBackend final : public CharBackend {
public:
    void set_frontend(CharFrontend* frontend) override
    {
        m_frontend = frontend;
        deliver();
    }
    void write(std::span<const uint8_t> bytes) override { m_output.insert(m_output.end(), bytes.begin(), bytes.end()); }
    void accept_input() override { deliver(); }
    void set_break(bool on) override
    {
        m_break = on;
        m_break_changes++;
    }

    // Queues input and delivers what the device can take now.
    void push_input(std::span<const uint8_t> bytes)
    {
        m_input.insert(m_input.end(), bytes.begin(), bytes.end());
        deliver();
    }
    void push_break()
    {
        if (m_frontend)
            m_frontend->receive_break();
    }

    std::vector<uint8_t>& output() { return m_output; }
    size_t queued_input() const { return m_input.size(); }
    bool break_on() const { return m_break; }
    int break_changes() const { return m_break_changes; }

private:
    void deliver()
    {
        while (m_frontend && !m_input.empty()) {
            size_t n = std::min(m_frontend->can_receive(), m_input.size());
            if (n == 0)
                return;
            std::vector<uint8_t> chunk(m_input.begin(), m_input.begin() + ptrdiff_t(n));
            m_input.erase(m_input.begin(), m_input.begin() + ptrdiff_t(n));
            m_frontend->receive(chunk);
        }
    }

    CharFrontend* m_frontend = nullptr;
    std::vector<uint8_t> m_output;
    std::deque<uint8_t> m_input;
    bool m_break = false;
    int m_break_changes = 0;
};

} // namespace emu::devices
