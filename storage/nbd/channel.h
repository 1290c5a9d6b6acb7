// storage/nbd/channel.h — the byte stream an NBD session runs over: a socket,
// optionally upgraded to TLS in the middle of the handshake (STARTTLS), or a
// pair of byte buffers (unit tests, the fuzz target). Reads are exact; a
// deadline bounds the handshake; shutdown() wakes a thread blocked in a read
// or write from another thread.
#pragma once

#include "storage/error.h"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace emu::storage::nbd {

class TlsCredentials;

// A read that found the peer gone fails with this errno.
constexpr int k_peer_closed = ECONNRESET;

class Channel {
public:
    using Clock = std::chrono::steady_clock;

    virtual ~Channel() = default;
    // Reads exactly buf.size() bytes.
    virtual Result<void> read(std::span<uint8_t> buf) = 0;
    // Writes the buffers back to back (one message, as far as the transport allows).
    virtual Result<void> write(std::span<const std::span<const uint8_t>> bufs) = 0;
    Result<void> write(std::span<const uint8_t> buf);
    // Reads and drops `bytes` bytes (an oversize option) without allocating them.
    Result<void> discard(uint64_t bytes);
    // Wakes blocked calls; every later call fails. Callable from any thread.
    virtual void shutdown() = 0;
    // Upgrades to TLS: the server side (after NBD_REP_ACK to STARTTLS) or the
    // client side. `hostname`, when not empty, must match the peer's certificate.
    virtual Result<void> start_tls(const TlsCredentials& creds, const std::string& hostname = {});
    virtual bool tls_active() const { return false; }
    // Can one thread read while another writes? (Not over TLS: one OpenSSL
    // session is used by one thread at a time.)
    virtual bool duplex() const { return false; }
    // Reads and writes fail with ETIMEDOUT once the deadline has passed.
    void set_deadline(std::optional<Clock::time_point> deadline) { m_deadline = deadline; }

protected:
    std::optional<Clock::time_point> m_deadline;
};

// A connected socket (TCP or unix), owned.
class SocketChannel final : public Channel {
public:
    explicit SocketChannel(int fd);
    ~SocketChannel() override;
    SocketChannel(const SocketChannel&) = delete;
    SocketChannel& operator=(const SocketChannel&) = delete;

    using Channel::write;
    Result<void> read(std::span<uint8_t> buf) override;
    Result<void> write(std::span<const std::span<const uint8_t>> bufs) override;
    void shutdown() override;
    Result<void> start_tls(const TlsCredentials& creds, const std::string& hostname = {}) override;
    bool tls_active() const override { return m_ssl != nullptr; }
    bool duplex() const override { return m_ssl == nullptr; }
    int fd() const { return m_fd; }

private:
    Result<void> apply_deadline();
    Result<void> plain_read(std::span<uint8_t> buf);
    Result<void> plain_write(std::span<const std::span<const uint8_t>> bufs);
    Result<void> tls_read(std::span<uint8_t> buf);
    Result<void> tls_write(std::span<const uint8_t> buf);

    int m_fd;
    void* m_ssl = nullptr; // SSL*, kept opaque so that users need no OpenSSL headers
    std::atomic<bool> m_timeouts_set{false};
};

// Reads from a fixed input, collects what is written (up to a cap; the rest is
// counted and dropped). Unit tests and the fuzz target drive a server session
// through it without sockets.
class BufferChannel final : public Channel {
public:
    explicit BufferChannel(std::vector<uint8_t> input, size_t output_cap = 1 << 20)
        : m_input(std::move(input)), m_output_cap(output_cap)
    {}

    using Channel::write;
    Result<void> read(std::span<uint8_t> buf) override;
    Result<void> write(std::span<const std::span<const uint8_t>> bufs) override;
    void shutdown() override { m_shut = true; }
    bool duplex() const override { return false; }

    const std::vector<uint8_t>& output() const { return m_output; }
    uint64_t bytes_written() const { return m_written; }
    size_t input_left() const { return m_input.size() - m_pos; }

private:
    std::vector<uint8_t> m_input;
    size_t m_pos = 0;
    std::vector<uint8_t> m_output;
    size_t m_output_cap;
    uint64_t m_written = 0;
    bool m_shut = false;
};

} // namespace emu::storage::nbd
