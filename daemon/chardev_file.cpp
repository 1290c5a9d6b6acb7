// daemon/chardev_file.cpp — the chardev transports on plain descriptors:
// file (output only), pipe (FIFOs: PATH.in/PATH.out, else PATH both ways)
// and pty (a pseudo-terminal whose slave the user opens).
#include "common/log.h"
#include "daemon/chardev.h"
#include "daemon/chardev_fd.h"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <poll.h>
#include <termios.h>
#include <unistd.h>

namespace emu::daemon {

namespace {

std::string cannot_open(const ChardevSpec& spec, const std::string& path, int err)
{
    return "chardev '" + spec.id + "': Could not open '" + path + "': " + strerror(err);
}

// -chardev file: output appended or truncated; writes never block the loop
// (a full disk or a FIFO without reader drops, counted and logged once).
class FileBackend final : public Chardev {
public:
    FileBackend(Loop& loop, ChardevSpec spec, int fd) : Chardev(loop, std::move(spec)), m_fd(fd) {}
    ~FileBackend() override { ::close(m_fd); }
    std::string filename() const override { return "file"; }

private:
    void emit(std::string_view bytes) override
    {
        while (!bytes.empty()) {
            ssize_t n = ::write(m_fd, bytes.data(), bytes.size());
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0) {
                if (!m_warned) {
                    m_warned = true;
                    log_warn("{}: cannot write to {}: {}; dropping output", log_name(), m_spec.path,
                             n < 0 ? strerror(errno) : "nothing written");
                }
                count_dropped(bytes.size());
                return;
            }
            bytes.remove_prefix(size_t(n));
        }
    }
    int m_fd;
    bool m_warned = false;
};

// -chardev pipe: QEMU's rule, PATH.in and PATH.out when both exist, else
// PATH for both ways. Opened read-write, so a FIFO never reports end of file
// and opening never waits for the other side.
class PipeBackend final : public Chardev {
public:
    PipeBackend(Loop& loop, ChardevSpec spec) : Chardev(loop, std::move(spec)) {}
    std::string filename() const override { return "pipe"; }
    bool has_peer() const override { return true; }

    qmp::Result<void> open()
    {
        std::string in_path = m_spec.path + ".in", out_path = m_spec.path + ".out";
        int in = ::open(in_path.c_str(), O_RDWR | O_CLOEXEC | O_NONBLOCK);
        int out = in >= 0 ? ::open(out_path.c_str(), O_RDWR | O_CLOEXEC | O_NONBLOCK) : -1;
        if (in < 0 || out < 0) {
            if (in >= 0)
                ::close(in);
            in = ::open(m_spec.path.c_str(), O_RDWR | O_CLOEXEC | O_NONBLOCK);
            if (in < 0)
                return qmp::fail(cannot_open(m_spec, m_spec.path, errno));
            out = -1;
        }
        auto hangup = [this](const std::string& why) {
            log_warn("{}: pipe {} closed: {}", log_name(), m_spec.path, why);
        };
        auto input = FdChannel::open(
            m_loop, in, true, [this](std::string_view bytes) { input_from_pipe(bytes); }, hangup);
        if (!input) {
            if (out >= 0)
                ::close(out);
            return qmp::fail("chardev '" + id() + "': cannot poll '" + m_spec.path + "': " + input.error());
        }
        m_in = std::move(*input);
        if (out >= 0) {
            auto output = FdChannel::open(m_loop, out, false, nullptr, hangup);
            if (!output)
                return qmp::fail("chardev '" + id() + "': cannot poll '" + out_path + "': " + output.error());
            m_out = std::move(*output);
        }
        return {};
    }

private:
    void input_from_pipe(std::string_view bytes) { input(bytes); }
    void emit(std::string_view bytes) override { count_dropped((m_out ? m_out : m_in)->send(bytes)); }
    void pause_input(bool paused) override { m_in->pause(paused); }
    std::unique_ptr<FdChannel> m_in, m_out;
};

// -chardev pty: the daemon holds the master; whoever opens the slave
// (/dev/pts/N, named by query-chardev and the log) is the peer. While no one
// has it open, output is dropped, as QEMU does, and the master is checked
// every k_pty_poll_ms for a reader.
constexpr uint64_t k_pty_poll_ms = 200;

class PtyBackend final : public PeerChardev {
public:
    PtyBackend(Loop& loop, ChardevSpec spec) : PeerChardev(loop, std::move(spec)) {}
    ~PtyBackend() override
    {
        drop_peer();
        if (m_timer) {
            uv_close(reinterpret_cast<uv_handle_t*>(m_timer),
                     [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
        }
        if (m_master >= 0)
            ::close(m_master);
    }
    std::string filename() const override { return "pty:" + m_slave_path; }
    qmp::Result<void> open()
    {
        m_master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
        if (m_master < 0 || grantpt(m_master) != 0 || unlockpt(m_master) != 0)
            return qmp::fail("chardev '" + id() + "': cannot open a pty: " + strerror(errno));
        char name[128];
        if (ptsname_r(m_master, name, sizeof name) != 0)
            return qmp::fail("chardev '" + id() + "': cannot name the pty: " + strerror(errno));
        m_slave_path = name;
        // Raw, no echo: the guest's bytes as they are, as QEMU sets it up. The
        // settings stay with the pty while the master is open.
        int slave = ::open(name, O_RDWR | O_NOCTTY | O_CLOEXEC);
        if (slave < 0)
            return qmp::fail("chardev '" + id() + "': cannot open " + m_slave_path + ": " + strerror(errno));
        termios tio{};
        if (tcgetattr(slave, &tio) == 0) {
            cfmakeraw(&tio);
            tcsetattr(slave, TCSAFLUSH, &tio);
        }
        ::close(slave);
        fcntl(m_master, F_SETFL, fcntl(m_master, F_GETFL) | O_NONBLOCK);
        m_timer = new uv_timer_t;
        uv_timer_init(m_loop.uv(), m_timer);
        m_timer->data = this;
        log_info("{}: char device redirected to {}", log_name(), m_slave_path);
        watch();
        return {};
    }

private:
    // Is there a reader on the slave side? (The master reports a hang-up while not.)
    bool slave_open() const
    {
        pollfd p{m_master, POLLIN, 0};
        return ::poll(&p, 1, 0) >= 0 && !(p.revents & POLLHUP);
    }

    void watch()
    {
        uv_timer_start(m_timer, [](uv_timer_t* t) { static_cast<PtyBackend*>(t->data)->check(); }, k_pty_poll_ms,
                       k_pty_poll_ms);
    }

    void check()
    {
        if (has_peer() || !slave_open())
            return;
        int fd = dup(m_master);
        if (fd < 0)
            return;
        bool ok = attach_peer(fd, "pty", [this](const std::string&) {
            // The reader closed the slave: wait for the next one.
            log_info("{}: {} closed", log_name(), m_slave_path);
        });
        if (ok)
            log_info("{}: {} opened", log_name(), m_slave_path);
    }

    int m_master = -1;
    std::string m_slave_path;
    uv_timer_t* m_timer = nullptr;
};

} // namespace

qmp::Result<std::unique_ptr<Chardev>> open_file_chardev(Loop& loop, const ChardevSpec& spec)
{
    int flags = O_WRONLY | O_CREAT | O_CLOEXEC | O_NONBLOCK | (spec.append ? O_APPEND : O_TRUNC);
    int fd = ::open(spec.path.c_str(), flags, 0666);
    if (fd < 0)
        return qmp::fail(cannot_open(spec, spec.path, errno));
    return std::make_unique<FileBackend>(loop, spec, fd);
}

qmp::Result<std::unique_ptr<Chardev>> open_pipe_chardev(Loop& loop, const ChardevSpec& spec)
{
    auto backend = std::make_unique<PipeBackend>(loop, spec);
    if (auto ok = backend->open(); !ok)
        return std::unexpected(ok.error());
    return backend;
}

qmp::Result<std::unique_ptr<Chardev>> open_pty_chardev(Loop& loop, const ChardevSpec& spec)
{
    auto backend = std::make_unique<PtyBackend>(loop, spec);
    if (auto ok = backend->open(); !ok)
        return std::unexpected(ok.error());
    return backend;
}

} // namespace emu::daemon
