// daemon/chardev.h — the character backends the daemon gives a machine's
// serial ports and human monitors (devices/chardev.h is the interface).
//
// ConsoleBackend is the VM's console: output goes to the console clients
// (emuctl's terminal) on the loop thread; input typed there reaches the
// device under the machine's device lock, as much as the device can take,
// the rest when it says accept_input().
//
// Chardev is every other backend (-chardev null|file|pipe|pty|socket|ringbuf).
// The device side is the same for all of them:
//   - write() (a vCPU or timer thread, device lock held) appends to a buffer
//     capped at k_chardev_out_cap and posts one flush per burst to the loop;
//     beyond the cap bytes are dropped, counted and logged once. A vCPU never
//     waits for a slow reader.
//   - input from outside (the backend's transport, ringbuf-write) runs on the
//     loop: through the mux (Ctrl-a keys) when mux=on, then into a queue the
//     device is fed from under the device lock, never more than can_receive()
//     says. While the queue is long the transport stops reading
//     (pause_input), so a fast sender is paced by the guest.
// Each backend implements only its transport: emit() bytes out, connected()
// when a peer arrives, pause_input(). Transports live in chardev_file.cpp
// (null, file, pipe, pty, ringbuf) and chardev_socket.cpp; the mux and the
// monitor line editor in chardev_mux.cpp.
//
// Threads: posted work holds a weak reference, so a backend destroyed with
// its VM is simply not called.
#pragma once

#include "daemon/loop.h"
#include "daemon/vm_config.h"
#include "devices/chardev.h"
#include "devices/machine.h"
#include "protocol/qmp/error.h"

#include <atomic>
#include <chrono>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

namespace emu::daemon {

class ConsoleBackend final : public devices::CharBackend {
public:
    using Output = std::function<void(std::string_view)>;
    ConsoleBackend(Loop& loop, Output output);
    ~ConsoleBackend() override;

    // The machine the frontend lives in (for its device lock); set once the
    // machine exists, before any input.
    void set_machine(devices::Machine* machine) { m_shared->machine = machine; }

    void set_frontend(devices::CharFrontend* frontend) override;
    void write(std::span<const uint8_t> bytes) override;
    void accept_input() override;

    // Loop thread: bytes typed on the console.
    void input(std::string_view bytes);

private:
    struct Shared {
        Shared(Loop& l, Output o) : loop(l), output(std::move(o)) {}
        Loop& loop;
        Output output;
        devices::Machine* machine = nullptr;
        devices::CharFrontend* frontend = nullptr; // guarded by the device lock
        std::mutex out_lock;
        std::string out;     // guarded by out_lock
        std::deque<uint8_t> in; // loop thread only
        void flush();
        void deliver();
    };
    std::shared_ptr<Shared> m_shared;
};

// Output a backend holds for a slow reader before it drops (and counts).
inline constexpr size_t k_chardev_out_cap = 1u << 20;

// What a human monitor on a chardev needs from its VM.
struct MonitorHooks {
    std::string banner;                                        // "QEMU 2.10.1 monitor - type 'help' ...\n"
    std::function<std::string(const std::string& line)> run;  // one command line -> its output
};

class Chardev : public devices::CharBackend {
public:
    ~Chardev() override;
    const ChardevSpec& spec() const { return m_spec; }
    const std::string& id() const { return m_spec.id; }
    // "vm0: chardev 'serial0'", for log messages.
    std::string log_name() const;
    // query-chardev's filename, in QEMU's notation ("pty:/dev/pts/3").
    virtual std::string filename() const = 0;
    // A serial port or a monitor uses it.
    bool frontend_open() const { return m_serial_attached || m_has_monitor; }
    // Bytes dropped because a reader was too slow.
    uint64_t dropped() const;

    // The machine whose device lock guards the frontend; set once it exists.
    void set_machine(devices::Machine* machine);
    // Puts a human monitor on this chardev (alone, or beside the serial port
    // with mux=on).
    void attach_monitor(MonitorHooks hooks);
    // Called once, on the loop, when a server with wait=on gets its first client.
    std::function<void()> on_first_client;
    // Ctrl-a x on a mux=on chardev: end the VM.
    std::function<void()> on_quit;

    // devices::CharBackend
    void set_frontend(devices::CharFrontend* frontend) override;
    void write(std::span<const uint8_t> bytes) override;
    void accept_input() override;

    // Loop thread: bytes from outside for the frontends (a peer typed them,
    // or ringbuf-write).
    void input(std::string_view bytes);

protected:
    Chardev(Loop& loop, ChardevSpec spec);
    // Loop thread: bytes to the outside. Not connected: drop them.
    virtual void emit(std::string_view bytes) = 0;
    // Stop (true) or resume (false) reading from the outside.
    virtual void pause_input(bool) {}
    // Someone is there to read the output now (a connected peer; a pipe or a
    // ring always). A monitor attached then greets at once.
    virtual bool has_peer() const { return false; }
    // Loop thread, by the transport: a peer arrived (greets it when the
    // monitor has the line).
    void connected();
    // Loop thread: counts bytes the transport could not hold; logs once.
    void count_dropped(size_t n);
    Loop& m_loop;
    ChardevSpec m_spec;

private:
    struct Shared {
        explicit Shared(Loop& l) : loop(l) {}
        Loop& loop;
        Chardev* owner = nullptr;                  // loop thread; null once destroyed
        devices::Machine* machine = nullptr;       // loop thread
        devices::CharFrontend* frontend = nullptr; // guarded by the device lock
        std::mutex out_lock;
        std::string out;       // guarded by out_lock
        uint64_t dropped = 0;  // guarded by out_lock
        bool warned = false;   // guarded by out_lock
    };
    void flush();
    void deliver();
    void to_serial(std::string_view bytes);
    // chardev_mux.cpp
    void mux_input(std::string_view bytes);
    void escape(char c);
    void monitor_key(char c);
    void monitor_print(std::string_view text);
    void monitor_enter();
    bool monitor_has_line() const;
    std::string stamp(std::string_view bytes);

    std::shared_ptr<Shared> m_shared;
    std::atomic<bool> m_serial_attached{false};
    std::deque<uint8_t> m_in; // loop thread: input for the serial port
    bool m_paused = false;
    // The monitor and the mux (loop thread).
    bool m_has_monitor = false;
    MonitorHooks m_monitor;
    bool m_monitor_focus = false;
    bool m_banner_shown = false;
    bool m_escape = false;
    bool m_timestamps = false;
    bool m_line_start = true;
    bool m_skip_lf = false;
    std::chrono::steady_clock::time_point m_stamp_start;
    std::string m_line;
};

// -chardev null: output vanishes, no input.
class NullBackend final : public Chardev {
public:
    NullBackend(Loop& loop, ChardevSpec spec) : Chardev(loop, std::move(spec)) {}
    std::string filename() const override { return "null"; }

private:
    void emit(std::string_view) override {}
};

// -chardev ringbuf: output kept in a ring of 'size' bytes (the newest win);
// ringbuf-read takes from it, ringbuf-write types into the frontend.
class RingbufBackend final : public Chardev {
public:
    RingbufBackend(Loop& loop, ChardevSpec spec);
    std::string filename() const override { return "ringbuf"; }
    bool has_peer() const override { return true; }
    // Loop thread: up to 'max' of the oldest bytes, removed from the ring.
    std::string read(size_t max);

private:
    void emit(std::string_view bytes) override;
    std::vector<uint8_t> m_ring;
    uint64_t m_head = 0; // bytes ever written
    uint64_t m_tail = 0; // bytes ever read or overwritten
};

// Opens the backend a spec names (not 'console'): creates the file, opens the
// pty, binds or connects the socket. Errors name the chardev and the cause:
// "chardev 'x': Could not open '/nonexistent/f': No such file or directory".
qmp::Result<std::unique_ptr<Chardev>> open_chardev(Loop& loop, const ChardevSpec& spec);

// Implemented by the transports.
qmp::Result<std::unique_ptr<Chardev>> open_file_chardev(Loop& loop, const ChardevSpec& spec);
qmp::Result<std::unique_ptr<Chardev>> open_pipe_chardev(Loop& loop, const ChardevSpec& spec);
qmp::Result<std::unique_ptr<Chardev>> open_pty_chardev(Loop& loop, const ChardevSpec& spec);
qmp::Result<std::unique_ptr<Chardev>> open_socket_chardev(Loop& loop, const ChardevSpec& spec);

} // namespace emu::daemon
