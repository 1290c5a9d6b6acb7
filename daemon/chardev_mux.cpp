// daemon/chardev_mux.cpp — a chardev shared by a serial port and a human
// monitor (mux=on), and the monitor's line editor.
//
// The peer's keys go to whichever frontend has the line; Ctrl-a starts an
// escape: c switches, h prints the keys, x ends the VM, s flushes disks,
// t toggles timestamps on the serial output, b sends a break to the serial
// port, a second Ctrl-a is a literal one. Both frontends' output reaches the
// peer whatever has the line. The monitor echoes and edits its line itself,
// as the peer is usually a raw terminal (socat, screen on a pty).
#include "common/log.h"
#include "daemon/chardev.h"

#include <cstdio>

namespace emu::daemon {

namespace {

constexpr char k_escape = 0x01; // Ctrl-a
constexpr size_t k_max_line = 4096;

const char* const k_mux_keys = "\r\n"
                               "Ctrl-a h        this list\r\n"
                               "Ctrl-a x        end the VM\r\n"
                               "Ctrl-a s        write disk data back (no disks in emud yet)\r\n"
                               "Ctrl-a t        timestamps on serial output, on or off\r\n"
                               "Ctrl-a b        send a break to the serial port\r\n"
                               "Ctrl-a c        switch between the serial port and the monitor\r\n"
                               "Ctrl-a Ctrl-a   send Ctrl-a itself\r\n";

std::string crlf(std::string_view text)
{
    std::string out;
    out.reserve(text.size() + 16);
    for (char c : text) {
        if (c == '\n')
            out.push_back('\r');
        out.push_back(c);
    }
    return out;
}

} // namespace

bool Chardev::monitor_has_line() const { return m_has_monitor && (m_monitor_focus || !m_serial_attached); }

void Chardev::connected()
{
    // A new peer: a fresh line, and the banner again, as QEMU greets each one.
    m_escape = false;
    m_skip_lf = false;
    m_line.clear();
    m_banner_shown = false;
    if (monitor_has_line())
        monitor_enter();
}

void Chardev::mux_input(std::string_view bytes)
{
    std::string serial;
    for (char c : bytes) {
        if (m_spec.mux && m_escape) {
            m_escape = false;
            if (c != k_escape) {
                to_serial(serial);
                serial.clear();
                escape(c);
                continue;
            }
        } else if (m_spec.mux && c == k_escape) {
            m_escape = true;
            continue;
        }
        if (monitor_has_line()) {
            to_serial(serial);
            serial.clear();
            monitor_key(c);
        } else {
            serial.push_back(c);
        }
    }
    to_serial(serial);
}

void Chardev::escape(char c)
{
    switch (c) {
    case 'h':
    case '?':
        emit(k_mux_keys);
        break;
    case 'x':
        emit("QEMU: Terminated\r\n");
        log_info("{}: Ctrl-a x: ending the VM", log_name());
        if (on_quit)
            on_quit();
        break;
    case 's':
        emit("\r\nNo disks to write back (emud has no block devices yet)\r\n");
        break;
    case 't':
        m_timestamps = !m_timestamps;
        m_stamp_start = std::chrono::steady_clock::now();
        m_line_start = true;
        break;
    case 'b':
        if (devices::Machine* machine = m_shared->machine)
            machine->with_devices([this] {
                if (m_shared->frontend)
                    m_shared->frontend->receive_break();
            });
        break;
    case 'c':
        if (!m_has_monitor || !m_serial_attached)
            break; // one frontend: nothing to switch to
        m_monitor_focus = !m_monitor_focus;
        if (m_monitor_focus)
            monitor_enter();
        else
            emit("\r\n");
        break;
    default:
        break; // unknown escapes are swallowed, as QEMU does
    }
}

void Chardev::monitor_enter()
{
    if (!m_banner_shown) {
        m_banner_shown = true;
        monitor_print(m_monitor.banner);
    } else {
        emit("\r\n");
    }
    emit("(qemu) " + m_line);
}

void Chardev::monitor_print(std::string_view text) { emit(crlf(text)); }

void Chardev::monitor_key(char c)
{
    if (c == '\n' && m_skip_lf) {
        m_skip_lf = false;
        return;
    }
    m_skip_lf = c == '\r';
    if (c == '\r' || c == '\n') {
        emit("\r\n");
        std::string line;
        line.swap(m_line);
        std::string output = m_monitor.run ? m_monitor.run(line) : std::string();
        monitor_print(output + "(qemu) ");
        return;
    }
    if (c == 0x7f || c == 0x08) {
        if (!m_line.empty()) {
            m_line.pop_back();
            emit("\b \b");
        }
        return;
    }
    if (c == 0x03) { // Ctrl-c drops the line
        m_line.clear();
        emit("^C\r\n(qemu) ");
        return;
    }
    if (static_cast<unsigned char>(c) < 0x20 || m_line.size() >= k_max_line)
        return;
    m_line.push_back(c);
    emit(std::string_view(&c, 1));
}

std::string Chardev::stamp(std::string_view bytes)
{
    std::string out;
    out.reserve(bytes.size() + 64);
    for (char c : bytes) {
        if (m_line_start) {
            auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                                            m_stamp_start)
                          .count();
            char prefix[48];
            snprintf(prefix, sizeof prefix, "[%02lld:%02lld:%02lld.%03lld] ", (long long)(ms / 3600000),
                     (long long)(ms / 60000 % 60), (long long)(ms / 1000 % 60), (long long)(ms % 1000));
            out += prefix;
            m_line_start = false;
        }
        out.push_back(c);
        if (c == '\n')
            m_line_start = true;
    }
    return out;
}

} // namespace emu::daemon
