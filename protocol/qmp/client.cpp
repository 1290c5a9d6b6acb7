#include "protocol/qmp/client.h"

#include <cerrno>
#include <cstring>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

namespace emu::qmp {

std::expected<int, std::string> connect_socket(const std::string& address)
{
    std::string addr = address;
    bool is_tcp = false;
    if (addr.rfind("unix:", 0) == 0) {
        addr = addr.substr(5);
    } else if (addr.rfind("tcp:", 0) == 0) {
        addr = addr.substr(4);
        is_tcp = true;
    } else if (addr.find('/') == std::string::npos && addr.find(':') != std::string::npos) {
        is_tcp = true;
    }
    if (!is_tcp) {
        sockaddr_un sun{};
        sun.sun_family = AF_UNIX;
        if (addr.size() >= sizeof sun.sun_path)
            return std::unexpected(address + ": socket path is too long");
        memcpy(sun.sun_path, addr.c_str(), addr.size() + 1);
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
            return std::unexpected(address + ": " + strerror(errno));
        if (::connect(fd, reinterpret_cast<sockaddr*>(&sun), sizeof sun) < 0) {
            std::string err = address + ": " + strerror(errno);
            close(fd);
            return std::unexpected(err);
        }
        return fd;
    }
    auto colon = addr.rfind(':');
    if (colon == std::string::npos)
        return std::unexpected(address + ": expected HOST:PORT");
    std::string host = addr.substr(0, colon), port = addr.substr(colon + 1);
    if (host.size() > 2 && host.front() == '[' && host.back() == ']')
        host = host.substr(1, host.size() - 2);
    addrinfo hints{};
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* res = nullptr;
    if (int rc = getaddrinfo(host.empty() ? "localhost" : host.c_str(), port.c_str(), &hints, &res); rc != 0)
        return std::unexpected(address + ": " + gai_strerror(rc));
    std::string err = address + ": no address";
    for (addrinfo* ai = res; ai; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0)
            continue;
        if (::connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
            freeaddrinfo(res);
            return fd;
        }
        err = address + ": " + strerror(errno);
        close(fd);
    }
    freeaddrinfo(res);
    return std::unexpected(err);
}

Client::Client(Client&& other) noexcept { *this = std::move(other); }

Client& Client::operator=(Client&& other) noexcept
{
    if (this != &other) {
        if (m_fd >= 0)
            close(m_fd);
        m_fd = std::exchange(other.m_fd, -1);
        m_greeting = std::move(other.m_greeting);
        m_framer = std::move(other.m_framer);
        m_pending = std::move(other.m_pending);
        m_events = std::move(other.m_events);
        m_next_id = other.m_next_id;
    }
    return *this;
}

Client::~Client()
{
    if (m_fd >= 0)
        close(m_fd);
}

std::expected<Client, std::string> Client::open(const std::string& address, bool negotiate)
{
    auto fd = connect_socket(address);
    if (!fd)
        return std::unexpected(fd.error());
    Client client;
    client.m_fd = *fd;
    auto greeting = client.read_one(10000);
    if (!greeting)
        return std::unexpected(address + ": no QMP greeting: " + greeting.error());
    if (!greeting->contains("QMP"))
        return std::unexpected(address + ": not a QMP endpoint (greeting " + greeting->dump() + ")");
    client.m_greeting = *greeting;
    if (negotiate) {
        auto reply = client.call("qmp_capabilities");
        if (!reply)
            return std::unexpected(reply.error());
        if (reply->contains("error"))
            return std::unexpected(address + ": qmp_capabilities failed: " + (*reply)["error"].dump());
    }
    return client;
}

std::expected<void, std::string> Client::send_raw(const std::string& text)
{
    size_t done = 0;
    while (done < text.size()) {
        ssize_t n = ::send(m_fd, text.data() + done, text.size() - done, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return std::unexpected(std::string("send: ") + strerror(errno));
        }
        done += size_t(n);
    }
    return {};
}

std::expected<json, std::string> Client::read_one(int timeout_ms)
{
    while (m_pending.empty()) {
        pollfd pfd{m_fd, POLLIN, 0};
        int rc = poll(&pfd, 1, timeout_ms);
        if (rc < 0 && errno == EINTR)
            continue;
        if (rc == 0)
            return std::unexpected("timed out");
        char buf[65536];
        ssize_t n = ::recv(m_fd, buf, sizeof buf, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return std::unexpected(n == 0 ? "connection closed" : std::string("recv: ") + strerror(errno));
        for (auto& msg : m_framer.feed(std::string_view(buf, size_t(n)))) {
            json doc = json::parse(msg.text, nullptr, false);
            if (msg.error || doc.is_discarded())
                return std::unexpected("malformed message from server");
            m_pending.push_back(std::move(doc));
        }
    }
    json msg = std::move(m_pending.front());
    m_pending.pop_front();
    return msg;
}

std::expected<json, std::string> Client::call(const std::string& command, const json& arguments)
{
    json id = "emu-" + std::to_string(m_next_id++);
    json request = {{"execute", command}, {"id", id}};
    if (!arguments.empty())
        request["arguments"] = arguments;
    if (auto sent = send_raw(encode(request)); !sent)
        return std::unexpected(sent.error());
    for (;;) {
        auto msg = read_one(-1);
        if (!msg)
            return msg;
        if (msg->contains("event")) {
            m_events.push_back(std::move(*msg));
            continue;
        }
        return msg;
    }
}

std::expected<json, std::string> Client::next_message(int timeout_ms)
{
    if (!m_events.empty()) {
        json ev = std::move(m_events.front());
        m_events.pop_front();
        return ev;
    }
    return read_one(timeout_ms);
}

} // namespace emu::qmp
