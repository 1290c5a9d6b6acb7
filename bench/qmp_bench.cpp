// qmp_bench — QMP round-trip latency and throughput of one server.
//
// Connects N clients (spread over the given sockets), negotiates, then every
// client sends {"execute":"query-status"} and waits for its reply, again and
// again, for a fixed count. Reports the median and p99 latency of a request
// and the total throughput. Clients are multiplexed with epoll on
// non-blocking sockets by a few threads, so the client side costs a couple of
// syscalls per request and never becomes the bottleneck.
//
// Several sockets exist because a QEMU QMP monitor serves one client at a
// time: 100 concurrent clients of QEMU need 100 '-qmp' monitors, while emud
// serves them all on one socket.
#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <string>
#include <string_view>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <thread>
#include <unistd.h>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

constexpr std::string_view k_request = "{\"execute\":\"query-status\"}\n";
constexpr int k_idle_timeout_ms = 10000;

const char* k_usage = R"(Usage: qmp_bench [OPTIONS] SOCKET [SOCKET...]
Measures QMP round trips of query-status against a server.

  -c, --clients N    concurrent clients, spread over the sockets (default 1)
  -n, --requests N   measured requests per client (default 10000)
  -w, --warmup N     unmeasured requests per client first (default 200)
  -t, --threads N    client threads, each with its own epoll (default 1)
  -h, --help         print this help

Prints one line: clients, requests, median_us, p99_us, mean_us, throughput_rps.
)";

[[noreturn]] void die(const std::string& what)
{
    fprintf(stderr, "qmp_bench: %s\n", what.c_str());
    exit(1);
}

struct Client {
    int fd = -1;
    std::string in;          // bytes received and not yet consumed
    Clock::time_point sent;  // when the outstanding request left
    int remaining = 0;       // requests still to send, warmup included
    int warmup = 0;          // how many of the first replies are not recorded
};

// Blocking read of one CRLF-terminated line during setup.
std::string read_line(Client& c)
{
    for (;;) {
        if (size_t nl = c.in.find('\n'); nl != std::string::npos) {
            std::string line = c.in.substr(0, nl);
            c.in.erase(0, nl + 1);
            return line;
        }
        char buf[4096];
        ssize_t n = recv(c.fd, buf, sizeof buf, 0);
        if (n <= 0)
            die(std::string("connection closed during setup: ") + (n == 0 ? "EOF" : strerror(errno)));
        c.in.append(buf, static_cast<size_t>(n));
    }
}

void send_all(int fd, std::string_view data)
{
    while (!data.empty()) {
        ssize_t n = send(fd, data.data(), data.size(), MSG_NOSIGNAL);
        if (n > 0) {
            data.remove_prefix(static_cast<size_t>(n));
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            pollfd p{fd, POLLOUT, 0};
            poll(&p, 1, k_idle_timeout_ms);
        } else if (n < 0 && errno != EINTR) {
            die(std::string("send: ") + strerror(errno));
        }
    }
}

// Connects, checks the greeting, negotiates; the socket stays blocking.
Client connect_client(const std::string& path)
{
    Client c;
    c.fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un sun{};
    sun.sun_family = AF_UNIX;
    if (path.size() >= sizeof sun.sun_path)
        die("socket path too long: " + path);
    memcpy(sun.sun_path, path.c_str(), path.size() + 1);
    if (connect(c.fd, reinterpret_cast<sockaddr*>(&sun), sizeof sun) != 0)
        die("cannot connect to " + path + ": " + strerror(errno));
    timeval tv{k_idle_timeout_ms / 1000, 0};
    setsockopt(c.fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    auto greeting = nlohmann::json::parse(read_line(c), nullptr, false);
    if (!greeting.is_object() || !greeting.contains("QMP"))
        die("no QMP greeting on " + path);
    send_all(c.fd, "{\"execute\":\"qmp_capabilities\"}\n");
    for (;;) {
        auto reply = nlohmann::json::parse(read_line(c), nullptr, false);
        if (reply.contains("event"))
            continue;
        if (reply != nlohmann::json{{"return", nlohmann::json::object()}})
            die("qmp_capabilities failed on " + path + ": " + reply.dump());
        break;
    }
    // One real request to check the reply, outside the measurement.
    send_all(c.fd, k_request);
    for (;;) {
        auto reply = nlohmann::json::parse(read_line(c), nullptr, false);
        if (reply.contains("event"))
            continue;
        if (!reply.contains("return") || !reply["return"].contains("status"))
            die("query-status failed on " + path + ": " + reply.dump());
        break;
    }
    return c;
}

struct Worker {
    std::vector<Client*> clients;
    std::vector<uint32_t> latencies_ns;
};

// Handles complete lines in c.in; returns false when the client is done.
bool consume(Client& c, Worker& w, Clock::time_point now)
{
    size_t start = 0;
    bool replied = false;
    for (size_t nl; (nl = c.in.find('\n', start)) != std::string::npos; start = nl + 1) {
        std::string_view line(c.in.data() + start, nl - start);
        if (line.starts_with("{\"event\"") || line.find("\"event\":") != std::string_view::npos)
            continue;
        if (line.find("\"return\"") == std::string_view::npos)
            die("unexpected reply: " + std::string(line));
        if (replied)
            die("more replies than requests");
        replied = true;
        if (c.warmup > 0)
            c.warmup--;
        else
            w.latencies_ns.push_back(static_cast<uint32_t>(std::min<int64_t>(
                UINT32_MAX, std::chrono::duration_cast<std::chrono::nanoseconds>(now - c.sent).count())));
    }
    c.in.erase(0, start);
    if (!replied)
        return true;
    if (c.remaining == 0)
        return false;
    c.remaining--;
    c.sent = Clock::now();
    send_all(c.fd, k_request);
    return true;
}

void run_worker(Worker& w, std::atomic<int>& ready, std::atomic<bool>& go)
{
    int ep = epoll_create1(EPOLL_CLOEXEC);
    for (Client* c : w.clients) {
        fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK);
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.ptr = c;
        epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
    }
    ready++;
    while (!go.load(std::memory_order_acquire))
        std::this_thread::yield();
    for (Client* c : w.clients) {
        c->remaining--;
        c->sent = Clock::now();
        send_all(c->fd, k_request);
    }
    size_t active = w.clients.size();
    std::vector<epoll_event> events(std::max<size_t>(1, w.clients.size()));
    char buf[65536];
    while (active > 0) {
        int n = epoll_wait(ep, events.data(), static_cast<int>(events.size()), k_idle_timeout_ms);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            die(n == 0 ? "no reply within 10 s" : std::string("epoll_wait: ") + strerror(errno));
        Clock::time_point now = Clock::now();
        for (int i = 0; i < n; i++) {
            auto* c = static_cast<Client*>(events[i].data.ptr);
            ssize_t got = recv(c->fd, buf, sizeof buf, 0);
            if (got < 0 && (errno == EAGAIN || errno == EINTR))
                continue;
            if (got <= 0)
                die(std::string("connection closed: ") + (got == 0 ? "EOF" : strerror(errno)));
            c->in.append(buf, static_cast<size_t>(got));
            if (!consume(*c, w, now)) {
                epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, nullptr);
                active--;
            }
        }
    }
    close(ep);
}

int parse_count(const char* text, const char* what, int min)
{
    char* end = nullptr;
    long v = strtol(text, &end, 10);
    if (!end || *end || v < min || v > 100000000)
        die(std::string(what) + ": '" + text + "' is not a count >= " + std::to_string(min));
    return static_cast<int>(v);
}

} // namespace

int main(int argc, char** argv)
{
    int clients = 1, requests = 10000, warmup = 200, threads = 1;
    static const option long_opts[] = {{"clients", required_argument, nullptr, 'c'},
                                       {"requests", required_argument, nullptr, 'n'},
                                       {"warmup", required_argument, nullptr, 'w'},
                                       {"threads", required_argument, nullptr, 't'},
                                       {"help", no_argument, nullptr, 'h'},
                                       {nullptr, 0, nullptr, 0}};
    for (int opt; (opt = getopt_long(argc, argv, "c:n:w:t:h", long_opts, nullptr)) != -1;) {
        switch (opt) {
        case 'c':
            clients = parse_count(optarg, "--clients", 1);
            break;
        case 'n':
            requests = parse_count(optarg, "--requests", 1);
            break;
        case 'w':
            warmup = parse_count(optarg, "--warmup", 0);
            break;
        case 't':
            threads = parse_count(optarg, "--threads", 1);
            break;
        case 'h':
            fputs(k_usage, stdout);
            return 0;
        default:
            fputs(k_usage, stderr);
            return 2;
        }
    }
    if (optind >= argc) {
        fputs(k_usage, stderr);
        return 2;
    }
    std::vector<std::string> sockets(argv + optind, argv + argc);
    threads = std::min(threads, clients);

    std::vector<Client> all;
    all.reserve(static_cast<size_t>(clients));
    for (int i = 0; i < clients; i++) {
        all.push_back(connect_client(sockets[static_cast<size_t>(i) % sockets.size()]));
        all.back().remaining = warmup + requests;
        all.back().warmup = warmup;
    }
    std::vector<Worker> workers(static_cast<size_t>(threads));
    for (int i = 0; i < clients; i++)
        workers[static_cast<size_t>(i % threads)].clients.push_back(&all[static_cast<size_t>(i)]);
    for (auto& w : workers)
        w.latencies_ns.reserve(w.clients.size() * static_cast<size_t>(requests));

    std::atomic<int> ready{0};
    std::atomic<bool> go{false};
    std::vector<std::thread> pool;
    for (auto& w : workers)
        pool.emplace_back([&w, &ready, &go] { run_worker(w, ready, go); });
    while (ready.load() < threads)
        std::this_thread::yield();
    Clock::time_point begin = Clock::now();
    go.store(true, std::memory_order_release);
    for (auto& t : pool)
        t.join();
    double seconds = std::chrono::duration<double>(Clock::now() - begin).count();

    std::vector<uint32_t> lat;
    for (auto& w : workers)
        lat.insert(lat.end(), w.latencies_ns.begin(), w.latencies_ns.end());
    for (auto& c : all)
        close(c.fd);
    if (lat.empty())
        die("no replies measured");
    std::sort(lat.begin(), lat.end());
    auto at = [&](double q) {
        size_t i = std::min(lat.size() - 1, static_cast<size_t>(q * static_cast<double>(lat.size())));
        return lat[i] / 1000.0;
    };
    double sum = 0;
    for (uint32_t v : lat)
        sum += v;
    // Throughput counts the warmup too: it ran inside the timed interval.
    double total = static_cast<double>(clients) * (warmup + requests);
    printf("clients=%d requests=%zu median_us=%.1f p99_us=%.1f mean_us=%.1f throughput_rps=%.0f\n", clients,
           lat.size(), at(0.5), at(0.99), sum / static_cast<double>(lat.size()) / 1000.0, total / seconds);
    return 0;
}
