// storage/nbd/address.cpp — parsing, listening, connecting.
#include "storage/nbd/address.h"

#include <arpa/inet.h>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <fmt/format.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

namespace emu::storage::nbd {

namespace {

std::string sockaddr_text(const sockaddr* sa)
{
    char host[INET6_ADDRSTRLEN] = "";
    if (sa->sa_family == AF_INET) {
        auto* in = reinterpret_cast<const sockaddr_in*>(sa);
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
        return fmt::format("{}:{}", host, ntohs(in->sin_port));
    }
    if (sa->sa_family == AF_INET6) {
        auto* in6 = reinterpret_cast<const sockaddr_in6*>(sa);
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
        return fmt::format("[{}]:{}", host, ntohs(in6->sin6_port));
    }
    return "unknown";
}

Result<sockaddr_un> unix_address(const std::string& path)
{
    sockaddr_un sun{};
    sun.sun_family = AF_UNIX;
    if (path.empty() || path.size() >= sizeof sun.sun_path)
        return fail(
            fmt::format("unix socket path '{}' is empty or longer than {} bytes", path, sizeof sun.sun_path - 1),
            ENAMETOOLONG);
    std::memcpy(sun.sun_path, path.c_str(), path.size() + 1);
    return sun;
}

Result<std::vector<ListenSocket>> listen_unix(const std::string& path, int backlog)
{
    auto sun = unix_address(path);
    if (!sun)
        return std::unexpected(sun.error());
    struct stat st {};
    if (lstat(path.c_str(), &st) == 0) {
        if (!S_ISSOCK(st.st_mode))
            return fail(fmt::format("cannot listen on unix:{}: the path exists and is not a socket", path), EEXIST);
        // A live server answers: leave it alone. A stale socket is replaced.
        int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        bool live = probe >= 0 && connect(probe, reinterpret_cast<sockaddr*>(&*sun), sizeof *sun) == 0;
        if (probe >= 0)
            close(probe);
        if (live)
            return fail(fmt::format("cannot listen on unix:{}: another server is listening there", path), EADDRINUSE);
        unlink(path.c_str());
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return fail(fmt::format("cannot listen on unix:{}: {}", path, std::strerror(errno)), errno);
    if (bind(fd, reinterpret_cast<sockaddr*>(&*sun), sizeof *sun) != 0 || listen(fd, backlog) != 0) {
        int err = errno;
        close(fd);
        return fail(fmt::format("cannot listen on unix:{}: {}", path, std::strerror(err)), err);
    }
    return std::vector<ListenSocket>{ListenSocket{fd, "unix:" + path, path}};
}

} // namespace

std::string SocketAddress::to_string() const
{
    if (is_unix)
        return "unix:" + path;
    if (host.find(':') != std::string::npos)
        return fmt::format("[{}]:{}", host, port);
    return fmt::format("{}:{}", host, port);
}

Result<SocketAddress> parse_socket_address(std::string_view text)
{
    SocketAddress a;
    if (text.starts_with("unix:")) {
        a.is_unix = true;
        a.path = std::string(text.substr(5));
        if (a.path.empty())
            return fail(fmt::format("'{}': the unix socket path is empty", text), EINVAL);
        return a;
    }
    if (text.starts_with("[")) {
        auto close = text.find(']');
        if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':')
            return fail(fmt::format("'{}' is not an address: expected [IPV6]:PORT", text), EINVAL);
        a.host = std::string(text.substr(1, close - 1));
        a.port = std::string(text.substr(close + 2));
    } else {
        auto colon = text.rfind(':');
        if (colon == std::string_view::npos)
            return fail(fmt::format("'{}' is not an address: expected HOST:PORT or unix:PATH", text), EINVAL);
        a.host = std::string(text.substr(0, colon));
        a.port = std::string(text.substr(colon + 1));
        if (a.host.find(':') != std::string::npos)
            return fail(fmt::format("'{}': write IPv6 addresses in brackets, [ADDRESS]:PORT", text), EINVAL);
    }
    if (a.port.empty() || a.port.find_first_not_of("0123456789") != std::string::npos || a.port.size() > 5 ||
        std::stoul(a.port) > 65535)
        return fail(fmt::format("'{}': '{}' is not a port number", text, a.port), EINVAL);
    return a;
}

Result<std::vector<ListenSocket>> listen_on(const SocketAddress& address, int backlog)
{
    if (address.is_unix)
        return listen_unix(address.path, backlog);
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_ADDRCONFIG;
    addrinfo* list = nullptr;
    const char* host = address.host.empty() ? nullptr : address.host.c_str();
    int rc = getaddrinfo(host, address.port.c_str(), &hints, &list);
    if (rc != 0)
        return fail(fmt::format("cannot listen on {}: {}", address.to_string(), gai_strerror(rc)), EINVAL);
    std::vector<ListenSocket> out;
    std::string first_error;
    int first_errno = 0;
    std::string port = address.port;
    for (addrinfo* ai = list; ai; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0)
            continue;
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (ai->ai_family == AF_INET6)
            setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
        // Port 0: the first socket picks a port, the others bind the same one.
        if (port != address.port && port != "0") {
            uint16_t p = uint16_t(std::stoul(port));
            if (ai->ai_family == AF_INET)
                reinterpret_cast<sockaddr_in*>(ai->ai_addr)->sin_port = htons(p);
            else if (ai->ai_family == AF_INET6)
                reinterpret_cast<sockaddr_in6*>(ai->ai_addr)->sin6_port = htons(p);
        }
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, backlog) != 0) {
            if (first_error.empty()) {
                first_errno = errno;
                first_error = std::strerror(errno);
            }
            close(fd);
            continue;
        }
        sockaddr_storage ss{};
        socklen_t len = sizeof ss;
        getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
        std::string name = sockaddr_text(reinterpret_cast<sockaddr*>(&ss));
        port = name.substr(name.rfind(':') + 1);
        out.push_back(ListenSocket{fd, name, {}});
    }
    freeaddrinfo(list);
    if (out.empty())
        return fail(fmt::format("cannot listen on {}: {}", address.to_string(),
                                first_error.empty() ? "no usable address" : first_error),
                    first_errno ? first_errno : EADDRNOTAVAIL);
    return out;
}

Result<int> connect_to(const SocketAddress& address)
{
    if (address.is_unix) {
        auto sun = unix_address(address.path);
        if (!sun)
            return std::unexpected(sun.error());
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
            return fail(fmt::format("cannot create a socket: {}", std::strerror(errno)), errno);
        if (connect(fd, reinterpret_cast<sockaddr*>(&*sun), sizeof *sun) != 0) {
            int err = errno;
            close(fd);
            return fail(fmt::format("cannot connect to unix:{}: {}", address.path, std::strerror(err)), err);
        }
        return fd;
    }
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* list = nullptr;
    std::string host = address.host.empty() ? "localhost" : address.host;
    int rc = getaddrinfo(host.c_str(), address.port.c_str(), &hints, &list);
    if (rc != 0)
        return fail(fmt::format("cannot resolve '{}': {}", host, gai_strerror(rc)), EHOSTUNREACH);
    int last_err = ECONNREFUSED;
    for (addrinfo* ai = list; ai; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            last_err = errno;
            continue;
        }
        int r;
        do
            r = connect(fd, ai->ai_addr, ai->ai_addrlen);
        while (r != 0 && errno == EINTR);
        if (r == 0) {
            int one = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            freeaddrinfo(list);
            return fd;
        }
        last_err = errno;
        close(fd);
    }
    freeaddrinfo(list);
    SocketAddress shown = address;
    shown.host = host;
    return fail(fmt::format("cannot connect to {}: {}", shown.to_string(), std::strerror(last_err)), last_err);
}

std::string peer_name(int fd, std::string_view unix_path)
{
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    if (getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0)
        return "unknown peer";
    if (ss.ss_family == AF_UNIX) {
        ucred cred{};
        socklen_t clen = sizeof cred;
        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) == 0)
            return fmt::format("unix:{} (pid {})", unix_path, cred.pid);
        return fmt::format("unix:{}", unix_path);
    }
    return sockaddr_text(reinterpret_cast<sockaddr*>(&ss));
}

} // namespace emu::storage::nbd
