// daemon/stream.h — connected stream sockets and the listeners that accept
// them, over libuv. A Peer is one client connection (QMP, HMP or console);
// a Listener owns the peers it accepted and closes them when it closes.
#pragma once

#include "daemon/loop.h"

#include <cstdint>
#include <expected>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <uv.h>

namespace emu::daemon {

class Listener;

class Peer {
public:
    virtual ~Peer() = default;
    Peer(const Peer&) = delete;
    Peer& operator=(const Peer&) = delete;

    // Queues bytes for the client. A client that lets more than the backlog
    // cap pile up is disconnected rather than allowed to grow our memory.
    void send(std::string_view bytes);
    // Closes after the queued bytes are written (or at once if none are).
    void close();
    bool closing() const { return m_closing; }
    const std::string& name() const { return m_name; }

protected:
    Peer() = default;
    virtual void on_open() {}
    virtual void on_data(std::string_view bytes) = 0;
    // Called once, when the peer starts closing; the object is deleted later.
    virtual void on_close() {}

private:
    friend class Listener;
    bool attach(uv_stream_t* server, bool is_tcp);
    void start();
    static void on_alloc(uv_handle_t*, size_t, uv_buf_t* buf);
    static void on_read(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf);
    static void on_closed(uv_handle_t* handle);
    uv_stream_t* stream() { return reinterpret_cast<uv_stream_t*>(&m_handle); }
    void close_now();

    union {
        uv_pipe_t pipe;
        uv_tcp_t tcp;
    } m_handle;
    uv_shutdown_t m_shutdown;
    Listener* m_listener = nullptr;
    std::string m_name;
    bool m_closing = false;
    bool m_handle_closed = false;
};

// Accepts stream connections on one address: "unix:PATH" or "tcp:HOST:PORT".
class Listener {
public:
    using Factory = std::function<Peer*()>;

    // Binds and listens; on failure returns a message naming the address.
    static std::expected<Listener*, std::string> open(Loop& loop, const std::string& address, Factory factory,
                                                      std::string name);
    // Adopts an already-listening socket (systemd socket activation).
    static std::expected<Listener*, std::string> adopt(Loop& loop, int fd, Factory factory, std::string name);

    // Stops listening, closes every peer it accepted, removes a unix socket
    // file it created; the object deletes itself once libuv is done with it.
    void close();
    const std::string& address() const { return m_address; }
    size_t peer_count() const { return m_peers.size(); }
    // Called for each accepted connection, after the peer opened.
    std::function<void(Peer&)> on_accept;

private:
    Listener() = default;
    ~Listener() = default;
    static void on_connection(uv_stream_t* server, int status);
    static void on_closed(uv_handle_t* handle);
    void forget(Peer* peer) { m_peers.erase(peer); }
    friend class Peer;

    union {
        uv_pipe_t pipe;
        uv_tcp_t tcp;
    } m_handle;
    bool m_is_tcp = false;
    std::string m_address;
    std::string m_unix_path; // unlinked on close
    std::string m_name;
    Factory m_factory;
    std::set<Peer*> m_peers;
};

} // namespace emu::daemon
