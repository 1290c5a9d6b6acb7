// protocol/qmp/client.h — a small blocking QMP client (emuctl, benchmarks).
#pragma once

#include "protocol/qmp/wire.h"

#include <deque>
#include <expected>
#include <string>

namespace emu::qmp {

// Connects a stream socket to "unix:PATH", "tcp:HOST:PORT", "HOST:PORT" or a
// plain path. Returns the fd, or a message naming the address and the cause.
std::expected<int, std::string> connect_socket(const std::string& address);

class Client {
public:
    Client() = default;
    Client(Client&& other) noexcept;
    Client& operator=(Client&& other) noexcept;
    Client(const Client&) = delete;
    ~Client();

    // Connects and reads the greeting; with negotiate, also runs qmp_capabilities.
    static std::expected<Client, std::string> open(const std::string& address, bool negotiate = true);

    // Sends one command and waits for its reply (a {"return"} or {"error"}
    // message); events that arrive meanwhile are queued.
    std::expected<json, std::string> call(const std::string& command, const json& arguments = json::object());
    // Sends raw text as is (for tests of bad input and for `emuctl qmp`).
    std::expected<void, std::string> send_raw(const std::string& text);
    // Waits up to timeout_ms for the next message (queued events first).
    std::expected<json, std::string> next_message(int timeout_ms);

    const json& greeting() const { return m_greeting; }
    int fd() const { return m_fd; }

private:
    std::expected<json, std::string> read_one(int timeout_ms);

    int m_fd = -1;
    json m_greeting;
    Framer m_framer{64u << 20};
    std::deque<json> m_pending;
    std::deque<json> m_events;
    uint64_t m_next_id = 1;
};

} // namespace emu::qmp
