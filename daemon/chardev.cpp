#include "daemon/chardev.h"

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

} // namespace emu::daemon
