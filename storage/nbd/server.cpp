// storage/nbd/server.cpp — listeners, clients, exports.
#include "storage/nbd/server.h"

#include "storage/nbd/address.h"
#include "storage/nbd/session.h"

#include <cerrno>
#include <cstring>
#include <fmt/format.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

namespace emu::storage::nbd {

struct NbdServer::Listener {
    std::vector<ListenSocket> sockets;
    std::thread thread;
};

struct NbdServer::Connection {
    uint64_t id = 0;
    std::string peer;
    std::unique_ptr<ServerSession> session;
    std::thread thread;
};

NbdServer::NbdServer(ServerOptions options) : m_options(std::move(options))
{
    m_wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
}

NbdServer::~NbdServer()
{
    stop();
    if (m_wake_fd >= 0)
        close(m_wake_fd);
}

void NbdServer::emit(ServerEvent event)
{
    if (m_options.on_event)
        m_options.on_event(event);
}

Result<std::string> NbdServer::listen(const std::string& text)
{
    if (m_wake_fd < 0)
        return fail("NBD server: cannot create an eventfd", EMFILE);
    auto address = parse_socket_address(text);
    if (!address)
        return chain("NBD server", address.error());
    auto sockets = listen_on(*address);
    if (!sockets)
        return chain("NBD server", sockets.error());
    std::string names;
    for (const auto& s : *sockets)
        names += (names.empty() ? "" : ",") + s.name;
    std::lock_guard lock(m_mutex);
    if (m_stopping) {
        for (const auto& s : *sockets) {
            close(s.fd);
            if (!s.unix_path.empty())
                unlink(s.unix_path.c_str());
        }
        return fail("NBD server: stopped", ESHUTDOWN);
    }
    auto listener = std::make_unique<Listener>();
    listener->sockets = std::move(*sockets);
    Listener* raw = listener.get();
    listener->thread = std::thread([this, raw] { accept_loop(raw); });
    m_listeners.push_back(std::move(listener));
    return names;
}

void NbdServer::accept_loop(Listener* listener)
{
    std::vector<pollfd> fds;
    for (const auto& s : listener->sockets)
        fds.push_back({s.fd, POLLIN, 0});
    fds.push_back({m_wake_fd, POLLIN, 0});
    while (true) {
        {
            std::lock_guard lock(m_mutex);
            if (m_stopping)
                return;
        }
        int n = poll(fds.data(), fds.size(), -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return;
        }
        if (fds.back().revents)
            continue; // woken: check m_stopping
        for (size_t i = 0; i + 1 < fds.size(); i++) {
            if (!(fds[i].revents & POLLIN))
                continue;
            int fd = accept4(fds[i].fd, nullptr, nullptr, SOCK_CLOEXEC);
            if (fd < 0) {
                if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
                    usleep(100000); // out of descriptors: back off rather than spin
                continue;
            }
            int one = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one); // fails harmlessly on unix sockets
            (void)start_connection(fd, peer_name(fd, listener->sockets[i].unix_path));
        }
        reap();
    }
}

Result<void> NbdServer::adopt(int fd, std::string peer)
{
    return start_connection(fd, std::move(peer));
}

std::shared_ptr<NbdServer::Connection> NbdServer::make_connection(int fd, std::string peer, uint64_t id)
{
    SessionConfig config;
    config.exports = &m_exports;
    config.tls = m_options.tls;
    config.multi_conn = m_options.max_connections != 1;
    config.handshake_timeout = m_options.handshake_timeout;
    config.max_queued_bytes = m_options.max_queued_bytes;
    auto conn = std::make_shared<Connection>();
    conn->id = id;
    conn->peer = peer;
    conn->session = std::make_unique<ServerSession>(config, std::make_unique<SocketChannel>(fd), std::move(peer));
    m_connections[conn->id] = conn;
    m_live++;
    return conn;
}

void NbdServer::launch(const std::shared_ptr<Connection>& conn)
{
    ServerEvent event;
    event.kind = ServerEvent::Kind::Connected;
    event.id = conn->id;
    event.peer = conn->peer;
    event.connections = connection_count();
    emit(event); // before the session can report anything
    std::lock_guard lock(m_mutex);
    conn->thread = std::thread([this, conn] { run_connection(conn); });
}

Result<void> NbdServer::start_connection(int fd, std::string peer)
{
    ServerEvent event;
    event.kind = ServerEvent::Kind::Refused;
    event.peer = peer;
    std::shared_ptr<Connection> conn;
    {
        std::lock_guard lock(m_mutex);
        event.id = m_next_id++;
        const bool full = m_options.max_connections && m_live >= m_options.max_connections;
        if (m_stopping) {
            event.reason = "the server is stopping";
        } else if (full && m_waiting.size() < m_options.max_waiting) {
            m_waiting.push_back({fd, peer, event.id});
            return {};
        } else if (full) {
            event.reason = fmt::format("{} clients are served and {} wait", m_live, m_waiting.size());
        } else {
            conn = make_connection(fd, peer, event.id);
        }
        event.connections = m_live;
    }
    if (!conn) {
        close(fd);
        emit(event);
        return fail(fmt::format("NBD server: client {} refused: {}", peer, event.reason), EBUSY);
    }
    launch(conn);
    return {};
}

void NbdServer::run_connection(std::shared_ptr<Connection> conn)
{
    conn->session->on_transmission = [this, conn](const ServerSession& s) {
        ServerEvent e;
        e.kind = ServerEvent::Kind::Transmission;
        e.id = conn->id;
        e.peer = conn->peer;
        auto ex = s.current_export();
        e.export_name = ex ? ex->name() : "";
        e.connections = connection_count();
        emit(e);
    };
    auto result = conn->session->run();
    ServerEvent e;
    e.kind = ServerEvent::Kind::Disconnected;
    e.id = conn->id;
    e.peer = conn->peer;
    if (auto ex = conn->session->current_export())
        e.export_name = ex->name();
    if (!result) {
        e.reason = result.error().message;
        e.error = result.error().err;
    }
    // The session (and its socket, and its hold on the export) goes now.
    std::unique_ptr<ServerSession> session;
    {
        std::lock_guard lock(m_mutex);
        session = std::move(conn->session);
    }
    session.reset();
    std::shared_ptr<Connection> next;
    {
        std::lock_guard lock(m_mutex);
        m_connections.erase(conn->id);
        m_live--;
        e.connections = m_live;
        m_finished.push_back(std::move(conn->thread));
        // The client waiting longest takes the free slot.
        if (!m_stopping && !m_waiting.empty()) {
            Waiting w = std::move(m_waiting.front());
            m_waiting.pop_front();
            next = make_connection(w.fd, std::move(w.peer), w.id);
        }
    }
    emit(e);
    if (next)
        launch(next);
}

void NbdServer::reap()
{
    std::vector<std::thread> done;
    {
        std::lock_guard lock(m_mutex);
        done.swap(m_finished);
    }
    for (auto& t : done) {
        if (t.get_id() == std::this_thread::get_id())
            t.detach(); // cannot happen from the accept thread; defensive
        else if (t.joinable())
            t.join();
    }
}

Result<void> NbdServer::add_export(std::string name, std::string description, std::shared_ptr<BlockBackend> backend,
                                   bool writable, const ExportOptions& options)
{
    auto ex = Export::create(std::move(name), std::move(description), std::move(backend), writable, options);
    if (!ex)
        return chain("NBD server", ex.error());
    if (auto r = m_exports.add(*ex); !r)
        return chain("NBD server", r.error());
    return {};
}

Result<void> NbdServer::remove_export(std::string_view name, RemoveMode mode)
{
    auto ex = m_exports.find(name);
    if (!ex)
        return fail(fmt::format("NBD server: export '{}' does not exist", name), ENOENT);
    ex->retire(); // no new clients from here on
    if (mode == RemoveMode::Safe && ex->sessions() > 0) {
        size_t n = ex->sessions();
        ex->unretire();
        return fail(fmt::format("NBD server: export '{}' is in use by {} client{}", name, n, n == 1 ? "" : "s"), EBUSY);
    }
    m_exports.remove(name);
    if (mode == RemoveMode::Hard) {
        std::lock_guard lock(m_mutex);
        for (auto& [id, conn] : m_connections) {
            if (conn->session && conn->session->current_export() == ex)
                conn->session->shutdown();
        }
    }
    ex->wait_idle();
    return {};
}

void NbdServer::stop()
{
    std::vector<std::unique_ptr<Listener>> listeners;
    {
        std::lock_guard lock(m_mutex);
        m_stopping = true;
        listeners.swap(m_listeners);
        for (const auto& w : m_waiting)
            close(w.fd);
        m_waiting.clear();
        for (auto& [id, conn] : m_connections) {
            if (conn->session)
                conn->session->shutdown();
        }
    }
    if (m_wake_fd >= 0) {
        uint64_t one = 1;
        (void)!write(m_wake_fd, &one, sizeof one);
    }
    for (auto& l : listeners) {
        if (l->thread.joinable())
            l->thread.join();
        for (const auto& s : l->sockets) {
            close(s.fd);
            if (!s.unix_path.empty())
                unlink(s.unix_path.c_str());
        }
    }
    // Connection threads end once their sessions see the shutdown.
    while (true) {
        std::vector<std::thread> threads;
        {
            std::lock_guard lock(m_mutex);
            threads.swap(m_finished);
            if (threads.empty() && m_connections.empty())
                break;
        }
        for (auto& t : threads)
            t.join();
        if (threads.empty())
            usleep(1000);
    }
}

std::vector<std::string> NbdServer::addresses() const
{
    std::lock_guard lock(m_mutex);
    std::vector<std::string> out;
    for (const auto& l : m_listeners)
        for (const auto& s : l->sockets)
            out.push_back(s.name);
    return out;
}

std::vector<ExportInfo> NbdServer::exports() const
{
    std::vector<ExportInfo> out;
    for (const auto& ex : m_exports.list())
        out.push_back({ex->name(), ex->description(), ex->size(), ex->writable(), ex->sessions()});
    return out;
}

std::vector<ConnectionInfo> NbdServer::connections() const
{
    std::lock_guard lock(m_mutex);
    std::vector<ConnectionInfo> out;
    for (const auto& [id, conn] : m_connections) {
        ConnectionInfo info{id, conn->peer, {}};
        if (conn->session)
            if (auto ex = conn->session->current_export())
                info.export_name = ex->name();
        out.push_back(std::move(info));
    }
    return out;
}

size_t NbdServer::connection_count() const
{
    std::lock_guard lock(m_mutex);
    return m_live;
}

} // namespace emu::storage::nbd
