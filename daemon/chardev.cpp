#include "daemon/chardev.h"

#include "common/log.h"

namespace emu::daemon {

ConsoleBackend::ConsoleBackend(Loop& loop, Output output)
    : m_shared(std::make_shared<Shared>(loop, std::move(output)))
{
}

ConsoleBackend::~ConsoleBackend() { m_shared->machine = nullptr; }

void ConsoleBackend::set_frontend(devices::CharFrontend* frontend) { m_shared->frontend = frontend; }

void ConsoleBackend::write(std::span<const uint8_t> bytes)
{
    bool first;
    {
        std::lock_guard lock(m_shared->out_lock);
        first = m_shared->out.empty();
        m_shared->out.append(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    }
    // One post per burst: the loop takes everything written until it runs.
    if (first)
        m_shared->loop.post([weak = std::weak_ptr<Shared>(m_shared)] {
            if (auto shared = weak.lock())
                shared->flush();
        });
}

void ConsoleBackend::accept_input()
{
    m_shared->loop.post([weak = std::weak_ptr<Shared>(m_shared)] {
        if (auto shared = weak.lock())
            shared->deliver();
    });
}

void ConsoleBackend::input(std::string_view bytes)
{
    m_shared->in.insert(m_shared->in.end(), bytes.begin(), bytes.end());
    m_shared->deliver();
}

void ConsoleBackend::Shared::flush()
{
    std::string chunk;
    {
        std::lock_guard lock(out_lock);
        chunk.swap(out);
    }
    if (!chunk.empty() && output)
        output(chunk);
}

void ConsoleBackend::Shared::deliver()
{
    if (!machine || in.empty())
        return;
    machine->with_devices([this] {
        while (frontend && !in.empty()) {
            size_t n = std::min(frontend->can_receive(), in.size());
            if (n == 0)
                return; // the device calls accept_input() when it has room
            std::vector<uint8_t> chunk(in.begin(), in.begin() + ptrdiff_t(n));
            in.erase(in.begin(), in.begin() + ptrdiff_t(n));
            frontend->receive(chunk);
        }
    });
}

// --- Chardev: the device side and input pacing, common to every backend ------

namespace {
// Input queued for the device beyond which the transport stops reading.
constexpr size_t k_in_high = 4096;
} // namespace

Chardev::Chardev(Loop& loop, ChardevSpec spec)
    : m_loop(loop), m_spec(std::move(spec)), m_shared(std::make_shared<Shared>(loop))
{
    m_shared->owner = this;
}

Chardev::~Chardev()
{
    m_shared->owner = nullptr;
    m_shared->machine = nullptr;
}

std::string Chardev::log_name() const
{
    return (m_spec.vm.empty() ? "" : m_spec.vm + ": ") + "chardev '" + id() + "'";
}

uint64_t Chardev::dropped() const
{
    std::lock_guard lock(m_shared->out_lock);
    return m_shared->dropped;
}

void Chardev::set_machine(devices::Machine* machine) { m_shared->machine = machine; }

void Chardev::attach_monitor(MonitorHooks hooks)
{
    m_monitor = std::move(hooks);
    m_has_monitor = true;
    if (has_peer())
        connected();
}

void Chardev::set_frontend(devices::CharFrontend* frontend)
{
    m_shared->frontend = frontend;
    m_serial_attached = frontend != nullptr;
}

void Chardev::write(std::span<const uint8_t> bytes)
{
    bool first = false, warn = false;
    {
        std::lock_guard lock(m_shared->out_lock);
        std::string& out = m_shared->out;
        first = out.empty();
        size_t room = k_chardev_out_cap - std::min(out.size(), k_chardev_out_cap);
        size_t n = std::min(room, bytes.size());
        out.append(reinterpret_cast<const char*>(bytes.data()), n);
        if (n < bytes.size()) {
            m_shared->dropped += bytes.size() - n;
            warn = !m_shared->warned;
            m_shared->warned = true;
        }
    }
    if (warn)
        log_warn("{}: output is not read fast enough; dropping what exceeds {} KiB (counted)", log_name(),
                 k_chardev_out_cap >> 10);
    // One post per burst: the loop takes everything written until it runs.
    if (first)
        m_loop.post([weak = std::weak_ptr<Shared>(m_shared)] {
            if (auto shared = weak.lock(); shared && shared->owner)
                shared->owner->flush();
        });
}

void Chardev::accept_input()
{
    m_loop.post([weak = std::weak_ptr<Shared>(m_shared)] {
        if (auto shared = weak.lock(); shared && shared->owner)
            shared->owner->deliver();
    });
}

void Chardev::count_dropped(size_t n)
{
    if (n == 0)
        return;
    bool warn;
    {
        std::lock_guard lock(m_shared->out_lock);
        m_shared->dropped += n;
        warn = !m_shared->warned;
        m_shared->warned = true;
    }
    if (warn)
        log_warn("{}: the peer does not read its output; dropping what exceeds {} KiB (counted)", log_name(),
                 k_chardev_out_cap >> 10);
}

void Chardev::flush()
{
    std::string chunk;
    {
        std::lock_guard lock(m_shared->out_lock);
        chunk.swap(m_shared->out);
    }
    if (chunk.empty())
        return;
    if (m_spec.mux && m_timestamps)
        chunk = stamp(chunk);
    emit(chunk);
}

void Chardev::input(std::string_view bytes)
{
    if (m_spec.mux || (m_has_monitor && !m_serial_attached)) {
        mux_input(bytes);
        return;
    }
    to_serial(bytes);
}

void Chardev::to_serial(std::string_view bytes)
{
    if (bytes.empty())
        return;
    if (!m_serial_attached) {
        return; // nobody listens: the bytes are lost, as on a wire without a receiver
    }
    m_in.insert(m_in.end(), bytes.begin(), bytes.end());
    deliver();
}

void Chardev::deliver()
{
    devices::Machine* machine = m_shared->machine;
    if (machine && !m_in.empty()) {
        machine->with_devices([this] {
            devices::CharFrontend* frontend = m_shared->frontend;
            if (!frontend) {
                m_in.clear();
                return;
            }
            while (!m_in.empty()) {
                size_t n = std::min(frontend->can_receive(), m_in.size());
                if (n == 0)
                    return; // the device calls accept_input() when it has room
                std::vector<uint8_t> chunk(m_in.begin(), m_in.begin() + ptrdiff_t(n));
                m_in.erase(m_in.begin(), m_in.begin() + ptrdiff_t(n));
                frontend->receive(chunk);
            }
        });
    }
    bool full = m_in.size() > k_in_high;
    if (full != m_paused) {
        m_paused = full;
        pause_input(full);
    }
}

// --- ringbuf --------------------------------------------------------------------

RingbufBackend::RingbufBackend(Loop& loop, ChardevSpec spec) : Chardev(loop, std::move(spec))
{
    m_ring.resize(m_spec.size);
}

void RingbufBackend::emit(std::string_view bytes)
{
    const uint64_t mask = m_ring.size() - 1;
    for (char c : bytes)
        m_ring[m_head++ & mask] = uint8_t(c);
    if (m_head - m_tail > m_ring.size())
        m_tail = m_head - m_ring.size();
}

std::string RingbufBackend::read(size_t max)
{
    const uint64_t mask = m_ring.size() - 1;
    std::string out;
    size_t n = size_t(std::min<uint64_t>(max, m_head - m_tail));
    out.reserve(n);
    for (size_t i = 0; i < n; i++)
        out.push_back(char(m_ring[m_tail++ & mask]));
    return out;
}

// --- opening --------------------------------------------------------------------

qmp::Result<std::unique_ptr<Chardev>> open_chardev(Loop& loop, const ChardevSpec& spec)
{
    if (spec.backend == "null")
        return std::make_unique<NullBackend>(loop, spec);
    if (spec.backend == "ringbuf")
        return std::make_unique<RingbufBackend>(loop, spec);
    if (spec.backend == "file")
        return open_file_chardev(loop, spec);
    if (spec.backend == "pipe")
        return open_pipe_chardev(loop, spec);
    if (spec.backend == "pty")
        return open_pty_chardev(loop, spec);
    if (spec.backend == "socket")
        return open_socket_chardev(loop, spec);
    return qmp::fail("chardev '" + spec.id + "': backend '" + spec.backend + "' cannot be opened here");
}

} // namespace emu::daemon
