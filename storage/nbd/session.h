// storage/nbd/session.h — one client of an NBD server, from the greeting to
// the disconnect, over any Channel: the fixed newstyle handshake (options,
// STARTTLS, structured replies, meta contexts, INFO/GO, EXPORT_NAME) in
// session.cpp, the transmission phase in transmission.cpp.
//
// In transmission, the session's thread reads requests and runs them against
// the export; when the channel allows it (plain sockets), a second thread
// sends the replies, so the next request is read and served while earlier
// replies are still on the wire. Buffered reply bytes are capped per session.
// Everything the client sends is validated: a malformed handshake, an
// oversize option or write, a bad magic end the session (a hard disconnect,
// as the protocol allows); a bad request gets an error reply.
#pragma once

#include "storage/nbd/channel.h"
#include "storage/nbd/codec.h"
#include "storage/nbd/export.h"
#include "storage/nbd/tls.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

namespace emu::storage::nbd {

struct SessionConfig {
    const ExportTable* exports = nullptr;
    std::shared_ptr<TlsCredentials> tls;                // set: TLS is required (the server refuses plaintext)
    bool multi_conn = true;                             // the server takes more than one client
    std::chrono::milliseconds handshake_timeout{10000}; // 0: none
    size_t max_queued_bytes = 2u << 20;                 // reply bytes buffered before the reader waits
    bool shutting_down = false;                         // refuse options with NBD_REP_ERR_SHUTDOWN
};

// A reply on its way out: headers and small payloads in `meta`, read data in
// `data`; `pieces` list what to send, in order.
struct OutMessage {
    struct Piece {
        bool from_data = false;
        size_t offset = 0;
        size_t length = 0;
    };
    std::vector<uint8_t> meta;
    std::unique_ptr<uint8_t[]> data;
    size_t data_size = 0;     // bytes of `data` in use
    size_t data_capacity = 0; // bytes allocated (buffers are recycled)
    std::vector<Piece> pieces;

    void add_meta(std::span<const uint8_t> bytes);
    void add_data(size_t offset, size_t length) { pieces.push_back({true, offset, length}); }
    size_t bytes() const { return meta.size() + data_size; }
};

class ServerSession {
public:
    ServerSession(const SessionConfig& config, std::unique_ptr<Channel> channel, std::string peer);
    ~ServerSession();
    ServerSession(const ServerSession&) = delete;
    ServerSession& operator=(const ServerSession&) = delete;

    // Runs the session to its end on the calling thread. Success: the client
    // left cleanly (NBD_OPT_ABORT, NBD_CMD_DISC); an error names the cause.
    Result<void> run();
    // Ends the session from another thread (server stop, hard export removal).
    void shutdown();

    const std::string& peer() const { return m_peer; }
    // The export in transmission, if any (any thread).
    std::shared_ptr<Export> current_export() const;
    // Called once the session has entered transmission on an export.
    std::function<void(const ServerSession&)> on_transmission;

private:
    // --- handshake (session.cpp)
    Result<std::shared_ptr<Export>> negotiate();
    Result<void> send_rep(uint32_t option, Rep type, std::span<const uint8_t> payload = {});
    Result<void> send_error(uint32_t option, Rep type, const std::string& message);
    Result<std::shared_ptr<Export>> handle_option(uint32_t option, std::vector<uint8_t>& data, bool& done);
    Result<std::shared_ptr<Export>> handle_export_name(const std::vector<uint8_t>& data);
    Result<std::shared_ptr<Export>> handle_info(uint32_t option, const std::vector<uint8_t>& data);
    Result<void> handle_list(uint32_t option, const std::vector<uint8_t>& data);
    Result<void> handle_starttls(uint32_t option, const std::vector<uint8_t>& data);
    Result<void> handle_meta_context(uint32_t option, const std::vector<uint8_t>& data);
    uint16_t flags_for(const Export& ex) const;
    bool bind(const std::shared_ptr<Export>& ex); // attach: transmission on it follows

    // --- transmission (transmission.cpp)
    Result<void> transmit();
    Result<bool> serve_one();
    Result<void> serve(const Request& req, const uint8_t* payload);
    uint32_t check(const Request& req, std::string& why) const;
    Result<void> serve_read(const Request& req);
    Result<void> serve_write_zeroes(const Request& req);
    Result<void> serve_block_status(const Request& req);
    Result<void> serve_cache(const Request& req);
    Result<void> reply_ok(const Request& req);
    Result<void> reply_error(const Request& req, uint32_t error, const std::string& message);
    Result<void> reply_result(const Request& req, const Result<void>& r);
    Result<void> send(OutMessage msg);
    Result<void> write_now(const OutMessage& msg);
    void writer_loop();
    // Data buffers are recycled: a fresh allocation per request costs page
    // faults that show in the throughput.
    std::unique_ptr<uint8_t[]> take_buffer(size_t size, size_t& capacity);
    void give_buffer(std::unique_ptr<uint8_t[]> buffer, size_t capacity);
    // Ends the writer: after sending what is queued (bounded in time) or at once.
    void stop_writer(bool graceful = false);

    SessionConfig m_config;
    std::unique_ptr<Channel> m_channel;
    std::string m_peer;

    // Negotiated state.
    bool m_fixed = false;
    bool m_no_zeroes = false;
    bool m_structured = false;
    bool m_meta_selected = false; // base:allocation selected...
    std::string m_meta_export;    // ...for this export name
    static constexpr uint32_t k_meta_id = 1;

    mutable std::mutex m_export_mutex;
    std::shared_ptr<Export> m_export;
    bool m_attached = false;
    uint16_t m_flags = 0;

    // The reply writer (duplex channels).
    std::thread m_writer;
    std::mutex m_queue_mutex;
    std::condition_variable m_queue_cv;
    std::deque<OutMessage> m_queue;
    size_t m_queued_bytes = 0;
    bool m_queue_closed = false;
    bool m_write_failed = false;
    bool m_writer_done = false;
    Error m_write_error;
    std::atomic<bool> m_shutdown{false};

    std::mutex m_pool_mutex;
    std::vector<std::pair<std::unique_ptr<uint8_t[]>, size_t>> m_pool;
    size_t m_pool_bytes = 0;
};

} // namespace emu::storage::nbd
