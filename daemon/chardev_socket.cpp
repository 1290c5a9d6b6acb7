// daemon/chardev_socket.cpp — -chardev socket: a unix or TCP stream, as a
// server (one peer at a time; the next one is accepted when it leaves) or as
// a client (with reconnect=N, a lost or refused connection is retried every
// N seconds; without it, a lost connection stays lost, as QEMU's).
//
// While there is no peer, output is dropped, as QEMU does. A server with
// wait=on holds the VM's start until its first peer arrives (on_first_client).
#include "common/log.h"
#include "daemon/chardev.h"
#include "daemon/chardev_fd.h"

#include <arpa/inet.h>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

namespace emu::daemon {

namespace {

// Peers that may wait for their turn while another one is served.
constexpr int k_backlog = 8;

// How long the first connection attempt of a client may hold VM creation.
constexpr int k_connect_timeout_ms = 3000;

// A uv poll handle on a descriptor this file owns (a listening socket, a
// connection in progress); the handle frees itself once libuv closed it.
class PollWatch {
public:
    using Callback = std::function<void(int events)>;
    PollWatch(Loop& loop, int fd, int events, Callback fn) : m_handle(new Handle{{}, std::move(fn)})
    {
        uv_poll_init(loop.uv(), &m_handle->poll, fd);
        m_handle->poll.data = m_handle;
        start(events);
    }
    ~PollWatch()
    {
        m_handle->fn = nullptr;
        uv_close(reinterpret_cast<uv_handle_t*>(&m_handle->poll),
                 [](uv_handle_t* h) { delete static_cast<Handle*>(h->data); });
    }
    void start(int events)
    {
        uv_poll_start(&m_handle->poll, events, [](uv_poll_t* p, int status, int events) {
            auto* h = static_cast<Handle*>(p->data);
            if (h->fn) {
                Callback fn = h->fn; // may destroy this watch
                fn(status < 0 ? -1 : events);
            }
        });
    }
    void stop() { uv_poll_stop(&m_handle->poll); }

private:
    struct Handle {
        uv_poll_t poll;
        Callback fn;
    };
    Handle* m_handle;
};

// A one-shot timer that frees itself once libuv closed it.
class Timer {
public:
    Timer(Loop& loop, uint64_t ms, std::function<void()> fn) : m_handle(new Handle{{}, std::move(fn)})
    {
        uv_timer_init(loop.uv(), &m_handle->timer);
        m_handle->timer.data = m_handle;
        uv_timer_start(&m_handle->timer, [](uv_timer_t* t) {
            auto* h = static_cast<Handle*>(t->data);
            if (h->fn) {
                auto fn = std::move(h->fn);
                h->fn = nullptr;
                fn();
            }
        }, ms, 0);
    }
    ~Timer()
    {
        m_handle->fn = nullptr;
        uv_close(reinterpret_cast<uv_handle_t*>(&m_handle->timer),
                 [](uv_handle_t* h) { delete static_cast<Handle*>(h->data); });
    }

private:
    struct Handle {
        uv_timer_t timer;
        std::function<void()> fn;
    };
    Handle* m_handle;
};

std::string errno_text(int err = errno) { return strerror(err); }

struct Endpoint {
    bool is_unix = false;
    std::string path;       // unix
    std::string host, port; // tcp
};

Endpoint parse_address(const std::string& address)
{
    Endpoint e;
    if (address.rfind("unix:", 0) == 0) {
        e.is_unix = true;
        e.path = address.substr(5);
        return e;
    }
    std::string rest = address.substr(4); // "tcp:"
    size_t colon = rest.rfind(':');
    e.host = rest.substr(0, colon);
    e.port = rest.substr(colon + 1);
    if (e.host.size() >= 2 && e.host.front() == '[')
        e.host = e.host.substr(1, e.host.size() - 2);
    return e;
}

// "127.0.0.1:4444", "[::1]:4444"
std::string sockaddr_text(const sockaddr_storage& ss)
{
    char host[INET6_ADDRSTRLEN] = "?";
    if (ss.ss_family == AF_INET) {
        auto* in = reinterpret_cast<const sockaddr_in*>(&ss);
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
        return std::string(host) + ":" + std::to_string(ntohs(in->sin_port));
    }
    if (ss.ss_family == AF_INET6) {
        auto* in6 = reinterpret_cast<const sockaddr_in6*>(&ss);
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
        return "[" + std::string(host) + "]:" + std::to_string(ntohs(in6->sin6_port));
    }
    return "?";
}

class SocketBackend final : public PeerChardev {
public:
    SocketBackend(Loop& loop, ChardevSpec spec)
        : PeerChardev(loop, std::move(spec)), m_ep(parse_address(m_spec.address))
    {
    }
    ~SocketBackend() override
    {
        drop_peer();
        m_listen_watch.reset();
        m_connect_watch.reset();
        m_retry.reset();
        if (m_listen_fd >= 0)
            ::close(m_listen_fd);
        if (m_connect_fd >= 0)
            ::close(m_connect_fd);
        if (!m_unlink_path.empty())
            unlink(m_unlink_path.c_str());
    }

    std::string filename() const override
    {
        std::string server = m_spec.server ? ",server" : "";
        if (!has_peer())
            return "disconnected:" + m_shown_address + server;
        if (m_ep.is_unix)
            return m_shown_address + server;
        return "tcp:" + m_local + server + " <-> " + m_peer;
    }

    qmp::Result<void> open() { return m_spec.server ? listen() : connect_first(); }

private:
    std::string where() const { return "chardev '" + id() + "'"; }

    // --- server ---

    qmp::Result<void> listen()
    {
        m_shown_address = m_spec.address;
        auto fail = [&](const std::string& what, int err) {
            return qmp::fail(where() + ": " + what + " " + m_spec.address + ": " + errno_text(err));
        };
        if (m_ep.is_unix) {
            sockaddr_un sun{};
            if (m_ep.path.size() >= sizeof sun.sun_path)
                return qmp::fail(where() + ": socket path " + m_ep.path + " is longer than " +
                                 std::to_string(sizeof sun.sun_path - 1) + " bytes");
            sun.sun_family = AF_UNIX;
            memcpy(sun.sun_path, m_ep.path.c_str(), m_ep.path.size() + 1);
            // A socket file left by a process that is gone is stale: replace it.
            // One that still accepts connections belongs to a live server.
            struct stat st;
            if (lstat(m_ep.path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) {
                int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
                bool live = ::connect(probe, reinterpret_cast<sockaddr*>(&sun), sizeof sun) == 0;
                ::close(probe);
                if (live)
                    return qmp::fail(where() + ": cannot listen on " + m_spec.address +
                                     ": another server is listening there");
                unlink(m_ep.path.c_str());
            }
            m_listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
            if (m_listen_fd < 0)
                return fail("cannot create a socket for", errno);
            if (bind(m_listen_fd, reinterpret_cast<sockaddr*>(&sun), sizeof sun) != 0)
                return fail("Failed to bind socket to", errno);
            m_unlink_path = m_ep.path;
            chmod(m_ep.path.c_str(), 0600);
        } else {
            addrinfo hints{}, *res = nullptr;
            hints.ai_family = m_spec.family ? m_spec.family : AF_UNSPEC;
            hints.ai_socktype = SOCK_STREAM;
            hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
            int rc = getaddrinfo(m_ep.host.empty() ? nullptr : m_ep.host.c_str(), m_ep.port.c_str(), &hints, &res);
            if (rc != 0)
                return qmp::fail(where() + ": address resolution failed for " + m_spec.address + ": " +
                                 gai_strerror(rc));
            int err = 0;
            for (addrinfo* ai = res; ai; ai = ai->ai_next) {
                int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
                if (fd < 0) {
                    err = errno;
                    continue;
                }
                int one = 1;
                setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
                if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
                    m_listen_fd = fd;
                    break;
                }
                err = errno;
                ::close(fd);
            }
            freeaddrinfo(res);
            if (m_listen_fd < 0)
                return fail("Failed to bind socket to", err);
            sockaddr_storage ss{};
            socklen_t len = sizeof ss;
            getsockname(m_listen_fd, reinterpret_cast<sockaddr*>(&ss), &len);
            m_shown_address = "tcp:" + sockaddr_text(ss); // the port the kernel chose for port 0
        }
        if (::listen(m_listen_fd, k_backlog) != 0)
            return fail("Failed to listen on", errno);
        m_listen_watch = std::make_unique<PollWatch>(m_loop, m_listen_fd, UV_READABLE, [this](int) { accept(); });
        log_info("{}: listening on {}{}", log_name(), m_shown_address,
                 m_spec.wait ? " (the VM starts when a client connects)" : "");
        return {};
    }

    void accept()
    {
        int fd = accept4(m_listen_fd, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR || errno == ECONNABORTED)
                return;
            // Out of descriptors, most likely: the pending peer would wake us
            // at once again, so pause listening for a second.
            log_warn("{}: accept failed: {}; trying again in a second", log_name(), errno_text());
            m_listen_watch->stop();
            m_retry = std::make_unique<Timer>(m_loop, 1000, [this] {
                if (!has_peer())
                    m_listen_watch->start(UV_READABLE);
            });
            return;
        }
        if (!attach(fd))
            return;
        // One peer at a time: the next waits in the backlog until this one leaves.
        m_listen_watch->stop();
        log_info("{}: client connected{}", log_name(), m_ep.is_unix ? "" : " from " + m_peer);
        if (!m_had_client) {
            m_had_client = true;
            if (on_first_client)
                on_first_client();
        }
    }

    // --- client ---

    qmp::Result<void> connect_first()
    {
        m_shown_address = m_spec.address;
        std::string err;
        int fd = start_connect(err);
        if (fd >= 0 && m_in_progress) {
            // Wait a little: VM creation reports a refused connection.
            pollfd p{fd, POLLOUT, 0};
            int rc = ::poll(&p, 1, k_connect_timeout_ms);
            int soerr = 0;
            socklen_t len = sizeof soerr;
            if (rc <= 0)
                soerr = rc == 0 ? ETIMEDOUT : errno;
            else
                getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len);
            if (soerr != 0) {
                ::close(fd);
                fd = -1;
                err = errno_text(soerr);
            }
        }
        if (fd < 0) {
            std::string msg = where() + ": Failed to connect to " + m_spec.address + ": " + err;
            if (m_spec.reconnect == 0)
                return qmp::fail(msg);
            log_warn("{}: Failed to connect to {}: {}; retrying every {} s", log_name(), m_spec.address, err,
                     m_spec.reconnect);
            schedule_reconnect();
            return {};
        }
        if (attach(fd))
            log_info("{}: connected to {}", log_name(), m_spec.address);
        return {};
    }

    // A non-blocking connect; returns the socket (m_in_progress when not done
    // yet) or -1 with 'err'.
    int start_connect(std::string& err)
    {
        m_in_progress = false;
        if (m_ep.is_unix) {
            sockaddr_un sun{};
            if (m_ep.path.size() >= sizeof sun.sun_path) {
                err = "socket path too long";
                return -1;
            }
            sun.sun_family = AF_UNIX;
            memcpy(sun.sun_path, m_ep.path.c_str(), m_ep.path.size() + 1);
            int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
            if (::connect(fd, reinterpret_cast<sockaddr*>(&sun), sizeof sun) == 0)
                return fd;
            if (errno == EINPROGRESS || errno == EAGAIN) {
                m_in_progress = true;
                return fd;
            }
            err = errno_text();
            ::close(fd);
            return -1;
        }
        addrinfo hints{}, *res = nullptr;
        hints.ai_family = m_spec.family ? m_spec.family : AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        hints.ai_flags = AI_NUMERICSERV;
        int rc = getaddrinfo(m_ep.host.c_str(), m_ep.port.c_str(), &hints, &res);
        if (rc != 0) {
            err = std::string("address resolution failed: ") + gai_strerror(rc);
            return -1;
        }
        int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, res->ai_protocol);
        int result = fd < 0 ? -1 : ::connect(fd, res->ai_addr, res->ai_addrlen);
        int saved = errno;
        freeaddrinfo(res);
        if (result == 0)
            return fd;
        if (fd >= 0 && saved == EINPROGRESS) {
            m_in_progress = true;
            return fd;
        }
        err = errno_text(saved);
        if (fd >= 0)
            ::close(fd);
        return -1;
    }

    void schedule_reconnect()
    {
        m_retry = std::make_unique<Timer>(m_loop, uint64_t(m_spec.reconnect) * 1000, [this] { reconnect(); });
    }

    void reconnect()
    {
        std::string err;
        int fd = start_connect(err);
        if (fd < 0) {
            log_debug("{}: reconnect to {} failed: {}", log_name(), m_spec.address, err);
            schedule_reconnect();
            return;
        }
        if (!m_in_progress) {
            if (attach(fd))
                log_info("{}: reconnected to {}", log_name(), m_spec.address);
            return;
        }
        m_connect_fd = fd;
        m_connect_watch = std::make_unique<PollWatch>(m_loop, fd, UV_WRITABLE, [this](int) {
            int soerr = 0;
            socklen_t len = sizeof soerr;
            getsockopt(m_connect_fd, SOL_SOCKET, SO_ERROR, &soerr, &len);
            int fd = m_connect_fd;
            m_connect_fd = -1;
            m_connect_watch.reset();
            if (soerr != 0) {
                ::close(fd);
                log_debug("{}: reconnect to {} failed: {}", log_name(), m_spec.address, errno_text(soerr));
                schedule_reconnect();
                return;
            }
            if (attach(fd))
                log_info("{}: reconnected to {}", log_name(), m_spec.address);
        });
    }

    // --- both ---

    // Makes fd the connection; false (fd closed) if it cannot be polled.
    bool attach(int fd)
    {
        if (!m_ep.is_unix) {
            if (m_spec.nodelay) {
                int one = 1;
                setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            }
            sockaddr_storage local{}, peer{};
            socklen_t len = sizeof local;
            getsockname(fd, reinterpret_cast<sockaddr*>(&local), &len);
            len = sizeof peer;
            getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &len);
            m_local = sockaddr_text(local);
            m_peer = sockaddr_text(peer);
        }
        return attach_peer(fd, "connection", [this](const std::string& why) { lost(why); });
    }

    void lost(const std::string& why)
    {
        if (m_spec.server) {
            log_info("{}: client disconnected ({}); waiting for the next one", log_name(), why);
            m_listen_watch->start(UV_READABLE);
        } else if (m_spec.reconnect > 0) {
            log_info("{}: connection lost ({}); reconnecting in {} s", log_name(), why, m_spec.reconnect);
            schedule_reconnect();
        } else {
            log_info("{}: connection lost ({}); without reconnect it stays down", log_name(), why);
        }
    }

    Endpoint m_ep;
    std::string m_shown_address; // the address, with the port the kernel chose
    std::string m_unlink_path;
    std::string m_local, m_peer; // tcp, while connected
    int m_listen_fd = -1;
    int m_connect_fd = -1;
    bool m_in_progress = false;
    bool m_had_client = false;
    std::unique_ptr<PollWatch> m_listen_watch;
    std::unique_ptr<PollWatch> m_connect_watch;
    std::unique_ptr<Timer> m_retry;
};

} // namespace

qmp::Result<std::unique_ptr<Chardev>> open_socket_chardev(Loop& loop, const ChardevSpec& spec)
{
    auto backend = std::make_unique<SocketBackend>(loop, spec);
    if (auto ok = backend->open(); !ok)
        return std::unexpected(ok.error());
    return backend;
}

} // namespace emu::daemon
