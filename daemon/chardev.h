// daemon/chardev.h — the character backends the daemon gives a machine's
// serial ports (devices/chardev.h is the interface).
//
// ConsoleBackend is the VM's console: output goes to the console clients
// (emuctl's terminal) on the loop thread; input typed there reaches the
// device under the machine's device lock, as much as the device can take,
// the rest when it says accept_input().
//
// Threads: the device calls write()/accept_input() on a vCPU or timer thread
// with the device lock held; they only queue and post to the loop. Posted
// work holds a weak reference, so a backend destroyed with its VM is simply
// not called.
#pragma once

#include "daemon/loop.h"
#include "devices/chardev.h"
#include "devices/machine.h"

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

// -chardev null: output vanishes, no input.
class NullBackend final : public devices::CharBackend {
public:
    void set_frontend(devices::CharFrontend*) override {}
    void write(std::span<const uint8_t>) override {}
};

} // namespace emu::daemon
