#include "daemon/stream.h"

#include "common/log.h"

#include <cstring>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

namespace emu::daemon {

namespace {

// Per-client output that may be queued before the client is cut off.
constexpr size_t k_max_backlog = 16u << 20;

struct WriteReq {
    uv_write_t req;
    std::string data;
};

std::string uv_message(int err) { return uv_strerror(err); }

} // namespace

// --- Peer ---------------------------------------------------------------------

bool Peer::attach(uv_stream_t* server, bool is_tcp)
{
    uv_loop_t* loop = server->loop;
    if (is_tcp)
        uv_tcp_init(loop, &m_handle.tcp);
    else
        uv_pipe_init(loop, &m_handle.pipe, 0);
    m_handle.pipe.data = this;
    if (uv_accept(server, stream()) != 0) {
        m_closing = true;
        uv_close(reinterpret_cast<uv_handle_t*>(&m_handle), on_closed);
        return false;
    }
    if (is_tcp)
        uv_tcp_nodelay(&m_handle.tcp, 1);
    return true;
}

void Peer::start()
{
    uv_read_start(stream(), on_alloc, on_read);
    on_open();
}

void Peer::on_alloc(uv_handle_t*, size_t, uv_buf_t* buf)
{
    // One buffer serves every connection: reads run one at a time on the loop.
    static char buffer[64 * 1024];
    *buf = uv_buf_init(buffer, sizeof buffer);
}

void Peer::on_read(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf)
{
    auto* self = static_cast<Peer*>(stream->data);
    if (nread == UV_EOF) {
        // The client finished sending: answer what it sent, then close.
        self->close();
        return;
    }
    if (nread < 0) {
        // A reset: the client is gone; drop what it had queued.
        self->close_now();
        return;
    }
    if (nread > 0 && !self->m_closing)
        self->on_data(std::string_view(buf->base, size_t(nread)));
}

void Peer::send(std::string_view bytes)
{
    if (m_closing || bytes.empty())
        return;
    if (uv_stream_get_write_queue_size(stream()) == 0) {
        uv_buf_t b = uv_buf_init(const_cast<char*>(bytes.data()), unsigned(bytes.size()));
        int n = uv_try_write(stream(), &b, 1);
        if (n == int(bytes.size()))
            return;
        if (n > 0)
            bytes.remove_prefix(size_t(n));
        else if (n != UV_EAGAIN && n != UV_ENOSYS) {
            close_now();
            return;
        }
    }
    if (uv_stream_get_write_queue_size(stream()) + bytes.size() > k_max_backlog) {
        log_warn("{}: client does not read its replies; disconnecting it", m_name);
        close_now();
        return;
    }
    auto* req = new WriteReq{{}, std::string(bytes)};
    uv_buf_t b = uv_buf_init(req->data.data(), unsigned(req->data.size()));
    int rc = uv_write(&req->req, stream(), &b, 1, [](uv_write_t* r, int) { delete reinterpret_cast<WriteReq*>(r); });
    if (rc != 0) {
        delete req;
        close_now();
    }
}

void Peer::close()
{
    if (m_closing)
        return;
    m_closing = true;
    on_close();
    if (m_listener) {
        m_listener->forget(this);
        m_listener = nullptr;
    }
    uv_read_stop(stream());
    m_shutdown.data = this;
    if (uv_stream_get_write_queue_size(stream()) == 0 ||
        uv_shutdown(&m_shutdown, stream(), [](uv_shutdown_t* req, int) {
            auto* self = static_cast<Peer*>(req->data);
            if (!self->m_handle_closed) {
                self->m_handle_closed = true;
                uv_close(reinterpret_cast<uv_handle_t*>(self->stream()), on_closed);
            }
        }) != 0) {
        m_handle_closed = true;
        uv_close(reinterpret_cast<uv_handle_t*>(stream()), on_closed);
    }
}

void Peer::close_now()
{
    if (!m_closing) {
        m_closing = true;
        on_close();
        if (m_listener) {
            m_listener->forget(this);
            m_listener = nullptr;
        }
    }
    if (!m_handle_closed) {
        m_handle_closed = true;
        uv_close(reinterpret_cast<uv_handle_t*>(stream()), on_closed);
    }
}

void Peer::on_closed(uv_handle_t* handle) { delete static_cast<Peer*>(handle->data); }

// --- Listener -----------------------------------------------------------------

std::expected<Listener*, std::string> Listener::open(Loop& loop, const std::string& address, Factory factory,
                                                     std::string name)
{
    auto* l = new Listener();
    l->m_factory = std::move(factory);
    l->m_name = std::move(name);
    l->m_address = address;
    bool inited = false; // the uv handle exists and must be closed, not deleted
    auto fail = [&](const std::string& why) -> std::unexpected<std::string> {
        std::string msg = l->m_name + ": cannot listen on " + address + ": " + why;
        if (!l->m_unix_path.empty())
            unlink(l->m_unix_path.c_str());
        l->m_unix_path.clear();
        if (inited) {
            l->m_handle.pipe.data = l;
            uv_close(reinterpret_cast<uv_handle_t*>(&l->m_handle), on_closed);
        } else {
            delete l;
        }
        return std::unexpected(msg);
    };
    std::string spec = address;
    if (spec.rfind("tcp:", 0) == 0) {
        l->m_is_tcp = true;
        spec = spec.substr(4);
        auto colon = spec.rfind(':');
        if (colon == std::string::npos)
            return fail("expected tcp:HOST:PORT");
        std::string host = spec.substr(0, colon);
        int port = atoi(spec.c_str() + colon + 1);
        if (host.size() > 2 && host.front() == '[')
            host = host.substr(1, host.size() - 2);
        if (host.empty())
            host = "0.0.0.0";
        sockaddr_storage ss{};
        if (uv_ip4_addr(host.c_str(), port, reinterpret_cast<sockaddr_in*>(&ss)) != 0 &&
            uv_ip6_addr(host.c_str(), port, reinterpret_cast<sockaddr_in6*>(&ss)) != 0) {
            return fail("'" + host + "' is not an IP address");
        }
        uv_tcp_init(loop.uv(), &l->m_handle.tcp);
        inited = true;
        if (int rc = uv_tcp_bind(&l->m_handle.tcp, reinterpret_cast<sockaddr*>(&ss), 0); rc != 0)
            return fail(uv_message(rc));
        if (port == 0) {
            // Report the port the kernel chose, so "tcp:127.0.0.1:0" is usable.
            sockaddr_storage bound{};
            int len = sizeof bound;
            uv_tcp_getsockname(&l->m_handle.tcp, reinterpret_cast<sockaddr*>(&bound), &len);
            char ip[64];
            int real_port = 0;
            if (bound.ss_family == AF_INET) {
                uv_ip4_name(reinterpret_cast<sockaddr_in*>(&bound), ip, sizeof ip);
                real_port = ntohs(reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
                l->m_address = "tcp:" + std::string(ip) + ":" + std::to_string(real_port);
            } else {
                uv_ip6_name(reinterpret_cast<sockaddr_in6*>(&bound), ip, sizeof ip);
                real_port = ntohs(reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port);
                l->m_address = "tcp:[" + std::string(ip) + "]:" + std::to_string(real_port);
            }
        }
    } else {
        if (spec.rfind("unix:", 0) == 0)
            spec = spec.substr(5);
        if (spec.size() >= sizeof(sockaddr_un{}.sun_path)) {
            return fail("socket path is longer than " + std::to_string(sizeof(sockaddr_un{}.sun_path) - 1) +
                        " bytes");
        }
        uv_pipe_init(loop.uv(), &l->m_handle.pipe, 0);
        inited = true;
        // A socket file left by a process that is gone is stale: replace it.
        // One that still accepts connections belongs to a live server.
        struct stat st;
        if (lstat(spec.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) {
            int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
            sockaddr_un sun{};
            sun.sun_family = AF_UNIX;
            memcpy(sun.sun_path, spec.c_str(), spec.size() + 1);
            bool live = connect(probe, reinterpret_cast<sockaddr*>(&sun), sizeof sun) == 0;
            ::close(probe);
            if (live)
                return fail("another server is listening there");
            unlink(spec.c_str());
        }
        if (int rc = uv_pipe_bind(&l->m_handle.pipe, spec.c_str()); rc != 0)
            return fail(uv_message(rc));
        l->m_unix_path = spec;
        chmod(spec.c_str(), 0600);
        l->m_address = "unix:" + spec;
    }
    l->m_handle.pipe.data = l;
    if (int rc = uv_listen(reinterpret_cast<uv_stream_t*>(&l->m_handle), 511, on_connection); rc != 0)
        return fail(uv_message(rc));
    return l;
}

std::expected<Listener*, std::string> Listener::adopt(Loop& loop, int fd, Factory factory, std::string name)
{
    auto* l = new Listener();
    l->m_factory = std::move(factory);
    l->m_name = std::move(name);
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
    l->m_is_tcp = ss.ss_family != AF_UNIX;
    int rc = l->m_is_tcp ? (uv_tcp_init(loop.uv(), &l->m_handle.tcp), uv_tcp_open(&l->m_handle.tcp, fd))
                         : (uv_pipe_init(loop.uv(), &l->m_handle.pipe, 0), uv_pipe_open(&l->m_handle.pipe, fd));
    l->m_handle.pipe.data = l;
    if (rc == 0)
        rc = uv_listen(reinterpret_cast<uv_stream_t*>(&l->m_handle), 511, on_connection);
    if (rc != 0) {
        std::string msg = l->m_name + ": cannot use the socket passed by systemd (fd " + std::to_string(fd) +
                          "): " + uv_message(rc);
        uv_close(reinterpret_cast<uv_handle_t*>(&l->m_handle), on_closed);
        return std::unexpected(msg);
    }
    if (ss.ss_family == AF_UNIX)
        l->m_address = std::string("unix:") + reinterpret_cast<sockaddr_un*>(&ss)->sun_path;
    else
        l->m_address = "tcp:(fd " + std::to_string(fd) + ")";
    return l;
}

void Listener::on_connection(uv_stream_t* server, int status)
{
    auto* self = static_cast<Listener*>(server->data);
    if (status < 0) {
        log_warn("{}: accept failed: {}", self->m_name, uv_message(status));
        return;
    }
    Peer* peer = self->m_factory();
    if (!peer->attach(server, self->m_is_tcp)) {
        log_warn("{}: accept failed (out of file descriptors?)", self->m_name);
        return;
    }
    peer->m_listener = self;
    peer->m_name = self->m_name;
    self->m_peers.insert(peer);
    peer->start();
    if (self->on_accept && !peer->closing())
        self->on_accept(*peer);
}

void Listener::close()
{
    auto peers = m_peers;
    m_peers.clear();
    for (Peer* p : peers) {
        p->m_listener = nullptr;
        p->close();
    }
    if (!m_unix_path.empty())
        unlink(m_unix_path.c_str());
    m_unix_path.clear();
    uv_close(reinterpret_cast<uv_handle_t*>(&m_handle), on_closed);
}

void Listener::on_closed(uv_handle_t* handle) { delete static_cast<Listener*>(handle->data); }

} // namespace emu::daemon
