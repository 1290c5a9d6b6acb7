#include "clients/emuctl/terminal.h"

#include "protocol/qmp/client.h"

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <optional>
#include <poll.h>
#include <string_view>
#include <sys/socket.h>
#include <termios.h>
#include <unistd.h>

namespace emu::emuctl {

namespace {

constexpr char k_escape = 0x01; // Ctrl-a

const char* k_mux_help = "\r\n"
                         "C-a h    print this help\r\n"
                         "C-a x    exit emulator\r\n"
                         "C-a s    save disk data back to file (if -snapshot)\r\n"
                         "C-a t    toggle console timestamps\r\n"
                         "C-a b    send break (magic sysrq)\r\n"
                         "C-a c    switch between console and monitor\r\n"
                         "C-a C-a  sends C-a\r\n";

// Raw mode for the life of the attach, restored on every exit path.
class RawTerminal {
public:
    RawTerminal()
    {
        if (!isatty(STDIN_FILENO) || tcgetattr(STDIN_FILENO, &m_saved) != 0)
            return;
        termios raw = m_saved;
        cfmakeraw(&raw);
        tcsetattr(STDIN_FILENO, TCSANOW, &raw);
        m_active = true;
    }
    ~RawTerminal()
    {
        if (m_active)
            tcsetattr(STDIN_FILENO, TCSANOW, &m_saved);
    }

private:
    termios m_saved{};
    bool m_active = false;
};

int g_signal_pipe[2] = {-1, -1};

void on_signal(int signum)
{
    char c = char(signum);
    (void)!write(g_signal_pipe[1], &c, 1);
}

void write_all(int fd, std::string_view data)
{
    while (!data.empty()) {
        ssize_t n = write(fd, data.data(), data.size());
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return;
        data.remove_prefix(size_t(n));
    }
}

void say(const std::string& text) { write_all(STDOUT_FILENO, text); }

class Session {
public:
    explicit Session(const AttachOptions& opts) : m_opts(opts) {}

    int run()
    {
        if (!m_opts.console_path.empty()) {
            auto fd = qmp::connect_socket(m_opts.console_path);
            if (!fd) {
                fprintf(stderr, "emuctl: %s: cannot attach the console: %s\n", m_opts.name.c_str(),
                        fd.error().c_str());
                return 1;
            }
            m_console = *fd;
        }
        if (!m_opts.qmp_path.empty()) {
            auto client = qmp::Client::open(m_opts.qmp_path);
            if (!client) {
                fprintf(stderr, "emuctl: %s: %s\n", m_opts.name.c_str(), client.error().c_str());
                return 1;
            }
            m_qmp = std::move(*client);
            if (m_opts.start_vm) {
                auto reply = m_qmp->call("cont");
                if (!reply || reply->contains("error")) {
                    fprintf(stderr, "emuctl: %s: cannot start: %s\n", m_opts.name.c_str(),
                            reply ? (*reply)["error"].value("desc", "").c_str() : reply.error().c_str());
                    return 1;
                }
            }
        }
        if (pipe(g_signal_pipe) == 0) {
            signal(SIGINT, on_signal);
            signal(SIGTERM, on_signal);
            signal(SIGHUP, on_signal);
        }
        RawTerminal raw;
        if (m_opts.start_in_monitor)
            enter_monitor();
        return loop();
    }

private:
    int loop()
    {
        for (;;) {
            pollfd fds[5];
            int n = 0;
            int i_stdin = -1, i_console = -1, i_qmp = -1, i_hmp = -1, i_sig = -1;
            if (m_stdin_open) {
                i_stdin = n;
                fds[n++] = {STDIN_FILENO, POLLIN, 0};
            }
            if (m_console >= 0) {
                i_console = n;
                fds[n++] = {m_console, POLLIN, 0};
            }
            if (m_qmp) {
                i_qmp = n;
                fds[n++] = {m_qmp->fd(), POLLIN, 0};
            }
            if (m_hmp >= 0) {
                i_hmp = n;
                fds[n++] = {m_hmp, POLLIN, 0};
            }
            if (g_signal_pipe[0] >= 0) {
                i_sig = n;
                fds[n++] = {g_signal_pipe[0], POLLIN, 0};
            }
            if (n == 0)
                return 0;
            if (poll(fds, nfds_t(n), -1) < 0) {
                if (errno == EINTR)
                    continue;
                return 1;
            }
            char buf[4096];
            if (i_sig >= 0 && fds[i_sig].revents) {
                char sig = 0;
                (void)!read(g_signal_pipe[0], &sig, 1);
                if (!m_opts.run_mode)
                    return 0;
                end_vm(); // as QEMU: a signal to the emulator ends the VM
            }
            if (i_console >= 0 && fds[i_console].revents) {
                ssize_t r = read(m_console, buf, sizeof buf);
                if (r <= 0) {
                    close(m_console);
                    m_console = -1;
                    if (!m_qmp)
                        return 0;
                } else {
                    console_output(std::string_view(buf, size_t(r)));
                }
            }
            if (i_hmp >= 0 && fds[i_hmp].revents) {
                ssize_t r = read(m_hmp, buf, sizeof buf);
                if (r <= 0) {
                    close(m_hmp);
                    m_hmp = -1;
                    m_in_monitor = false;
                    if (m_opts.start_in_monitor && !m_qmp)
                        return 0;
                } else {
                    write_all(STDOUT_FILENO, std::string_view(buf, size_t(r)));
                }
            }
            if (i_qmp >= 0 && fds[i_qmp].revents) {
                if (int code = vm_events(); code >= 0)
                    return finish(code);
            }
            if (i_stdin >= 0 && fds[i_stdin].revents) {
                ssize_t r = read(STDIN_FILENO, buf, sizeof buf);
                if (r <= 0) {
                    m_stdin_open = false; // keep showing output until the VM ends
                    if (m_hmp >= 0 && m_opts.start_in_monitor && !m_opts.run_mode) {
                        // Piped commands: let the monitor answer them all, then leave
                        // when it closes.
                        shutdown(m_hmp, SHUT_WR);
                    } else if (!m_opts.run_mode) {
                        return 0;
                    }
                } else if (int code = keys(std::string_view(buf, size_t(r))); code >= 0) {
                    return code;
                }
            }
        }
    }

    // Reads what the VM's QMP socket has; returns an exit code once the VM ended.
    int vm_events()
    {
        for (;;) {
            auto msg = m_qmp->next_message(0);
            if (!msg) {
                if (msg.error() == "timed out")
                    return -1;
                return m_exit_status; // socket closed: the VM is gone
            }
            if (msg->value("event", "") == "SHUTDOWN")
                m_saw_shutdown = true;
            if (msg->value("event", "") == "__org.emud_GUEST_EXIT" && msg->contains("data"))
                m_exit_status = (*msg)["data"].value("status", 0);
        }
    }

    // Shows the console's last words before leaving.
    int finish(int code)
    {
        if (m_console >= 0) {
            char buf[4096];
            pollfd p{m_console, POLLIN, 0};
            while (poll(&p, 1, 200) > 0) {
                ssize_t r = read(m_console, buf, sizeof buf);
                if (r <= 0)
                    break;
                console_output(std::string_view(buf, size_t(r)));
            }
        }
        return code;
    }

    void console_output(std::string_view bytes)
    {
        if (!m_timestamps) {
            write_all(STDOUT_FILENO, bytes);
            return;
        }
        std::string out;
        for (char c : bytes) {
            if (m_line_start) {
                timespec ts;
                clock_gettime(CLOCK_MONOTONIC, &ts);
                char stamp[32];
                snprintf(stamp, sizeof stamp, "[%02ld:%02ld:%02ld.%03ld] ", long(ts.tv_sec / 3600 % 100),
                         long(ts.tv_sec / 60 % 60), long(ts.tv_sec % 60), long(ts.tv_nsec / 1000000));
                out += stamp;
            }
            out.push_back(c);
            m_line_start = c == '\n';
        }
        write_all(STDOUT_FILENO, out);
    }

    void end_vm()
    {
        if (m_qmp)
            (void)m_qmp->send_raw("{\"execute\":\"quit\"}\r\n");
    }

    void enter_monitor()
    {
        if (m_hmp < 0) {
            auto fd = qmp::connect_socket(m_opts.hmp_path);
            if (!fd) {
                say("\r\nemuctl: cannot reach the monitor: " + fd.error() + "\r\n");
                return;
            }
            m_hmp = *fd;
        } else {
            say("\r\n(qemu) ");
        }
        m_in_monitor = true;
        m_monitor_line.clear();
    }

    // Handles typed bytes; returns an exit code to leave, -1 to go on.
    int keys(std::string_view bytes)
    {
        std::string to_console;
        for (char c : bytes) {
            if (m_escape_pending) {
                m_escape_pending = false;
                switch (c) {
                case 'x':
                    if (!m_opts.run_mode) {
                        say("\r\n[detached]\r\n");
                        return 0;
                    }
                    say("QEMU: Terminated\r\n");
                    end_vm();
                    m_stdin_open = false;
                    continue;
                case 'h':
                case '?':
                    say(k_mux_help);
                    continue;
                case 'c':
                    if (m_in_monitor)
                        m_in_monitor = false;
                    else
                        enter_monitor();
                    continue;
                case 't':
                    m_timestamps = !m_timestamps;
                    continue;
                case 's':
                    // No block devices yet, so there is nothing to commit.
                    continue;
                case 'b':
                    say("\r\nemuctl: break: the VM has no serial port to send it to\r\n");
                    continue;
                case k_escape:
                    break; // a literal Ctrl-a for the guest
                default:
                    continue;
                }
            } else if (c == k_escape) {
                m_escape_pending = true;
                continue;
            }
            if (c == 0x03 && m_opts.ctrl_c_ends_vm && m_opts.run_mode) {
                say("qemu: terminating on signal 2\r\n");
                end_vm();
                m_stdin_open = false;
                continue;
            }
            if (m_in_monitor)
                monitor_key(c);
            else
                to_console.push_back(c);
        }
        if (!to_console.empty() && m_console >= 0)
            write_all(m_console, to_console);
        return -1;
    }

    // The monitor gets whole lines; emuctl echoes and edits them locally.
    void monitor_key(char c)
    {
        if (c == '\r' || c == '\n') {
            say("\r\n");
            write_all(m_hmp, m_monitor_line + "\n");
            m_monitor_line.clear();
        } else if (c == 0x7f || c == 0x08) {
            if (!m_monitor_line.empty()) {
                m_monitor_line.pop_back();
                say("\b \b");
            }
        } else if (c == 0x03) { // Ctrl-c drops the line, as a shell would
            m_monitor_line.clear();
            say("^C\r\n(qemu) ");
        } else if (static_cast<unsigned char>(c) >= 0x20) {
            m_monitor_line.push_back(c);
            write_all(STDOUT_FILENO, std::string_view(&c, 1));
        }
    }

    const AttachOptions& m_opts;
    int m_console = -1;
    int m_hmp = -1;
    std::optional<qmp::Client> m_qmp;
    bool m_stdin_open = true;
    bool m_escape_pending = false;
    bool m_in_monitor = false;
    bool m_timestamps = false;
    bool m_line_start = true;
    bool m_saw_shutdown = false;
    int m_exit_status = 0; // __org.emud_GUEST_EXIT
    std::string m_monitor_line;
};

} // namespace

int attach_terminal(const AttachOptions& opts)
{
    Session s(opts);
    return s.run();
}

} // namespace emu::emuctl
