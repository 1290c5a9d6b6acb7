// storage/nbd/server.h — NbdServer: an NBD server over BlockBackends, for
// emu-nbd and for the daemon's nbd-server-* commands.
//
//   NbdServer server({.max_connections = 16, .tls = creds, .on_event = log});
//   server.listen("127.0.0.1:10809");          // or "unix:/run/x.sock", "[::]:0"
//   server.add_export("disk0", "boot disk", backend, /*writable=*/true);
//   ...
//   server.remove_export("disk0", RemoveMode::Hard);
//   server.stop();
//
// Threads: one accept thread per listen() call, one thread per client (plus a
// reply writer in transmission on plain sockets). Every method may be called
// from any thread; `on_event` runs on the server's threads, never under its
// locks (it may call back into the server). No global state: several servers
// may run in one process.
#pragma once

#include "storage/nbd/export.h"
#include "storage/nbd/tls.h"

#include <atomic>
#include <chrono>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace emu::storage::nbd {

class ServerSession;

struct ServerEvent {
    enum class Kind {
        Connected,    // a client was accepted
        Refused,      // a client was closed at once (too many waiting, server stopping)
        Transmission, // a client entered transmission on an export
        Disconnected, // a client is gone; `reason` is empty when it left cleanly
    };
    Kind kind = Kind::Connected;
    uint64_t id = 0; // connection id, unique per server
    std::string peer;
    std::string export_name;
    std::string reason;
    int error = 0;          // errno of `reason` (k_peer_closed: the client just went away)
    size_t connections = 0; // clients being served after the event (not counting waiting ones)
};

struct ServerOptions {
    size_t max_connections = 100; // 0: no limit
    // Clients over the limit wait, unserved, for a free slot (as in a listen
    // backlog); beyond this many waiting, they are closed at once (Refused).
    size_t max_waiting = 16;
    // Set: TLS is required; every option but STARTTLS (and ABORT) is refused
    // with NBD_REP_ERR_TLS_REQD until the client has upgraded.
    std::shared_ptr<TlsCredentials> tls;
    std::chrono::milliseconds handshake_timeout{10000}; // 0: none
    size_t max_queued_bytes = 2u << 20;                 // buffered replies per client
    std::function<void(const ServerEvent&)> on_event;
};

enum class RemoveMode {
    Safe, // refuse while clients use the export
    Hard, // disconnect its clients first
};

struct ExportInfo {
    std::string name;
    std::string description;
    uint64_t size = 0;
    bool writable = false;
    size_t clients = 0;
};

struct ConnectionInfo {
    uint64_t id = 0;
    std::string peer;
    std::string export_name; // empty while in the handshake
};

class NbdServer {
public:
    explicit NbdServer(ServerOptions options = {});
    ~NbdServer(); // stop()
    NbdServer(const NbdServer&) = delete;
    NbdServer& operator=(const NbdServer&) = delete;

    // Starts accepting clients on an address ("HOST:PORT", "[IPV6]:PORT",
    // ":PORT", "unix:PATH"). Returns what was bound, with the actual port
    // (several addresses, comma-separated, for a name with IPv4 and IPv6).
    Result<std::string> listen(const std::string& address);
    // Serves one already connected socket (the server end of a socketpair).
    Result<void> adopt(int fd, std::string peer);

    Result<void> add_export(std::string name, std::string description, std::shared_ptr<BlockBackend> backend,
                            bool writable, const ExportOptions& options = {});
    // Returns once no client uses the export any more.
    Result<void> remove_export(std::string_view name, RemoveMode mode = RemoveMode::Safe);

    // Closes the listeners and every client; waits for their threads. Idempotent.
    void stop();

    std::vector<std::string> addresses() const;
    std::vector<ExportInfo> exports() const;
    std::vector<ConnectionInfo> connections() const;
    size_t connection_count() const;
    const ServerOptions& options() const { return m_options; }

private:
    struct Connection;
    struct Listener;

    void accept_loop(Listener* listener);
    Result<void> start_connection(int fd, std::string peer);
    std::shared_ptr<Connection> make_connection(int fd, std::string peer, uint64_t id); // m_mutex held
    void launch(const std::shared_ptr<Connection>& conn);
    void run_connection(std::shared_ptr<Connection> conn);
    void reap();
    void emit(ServerEvent event);

    ServerOptions m_options;
    ExportTable m_exports;
    int m_wake_fd = -1; // eventfd that wakes the accept threads

    mutable std::mutex m_mutex;
    std::vector<std::unique_ptr<Listener>> m_listeners;
    std::map<uint64_t, std::shared_ptr<Connection>> m_connections;
    std::vector<std::thread> m_finished; // threads of ended connections, to join
    struct Waiting {
        int fd;
        std::string peer;
        uint64_t id;
    };
    std::deque<Waiting> m_waiting; // accepted over the limit, not served yet
    uint64_t m_next_id = 1;
    size_t m_live = 0;
    bool m_stopping = false;
};

} // namespace emu::storage::nbd
