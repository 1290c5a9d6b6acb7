#include "daemon/chardev_fd.h"

#include "common/log.h"
#include "daemon/chardev.h"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

namespace emu::daemon {

namespace {
// Per poll callback: enough to keep up, little enough to be fair to other VMs.
constexpr size_t k_read_chunk = 16 * 1024;
constexpr int k_reads_per_wakeup = 4;
} // namespace

std::expected<std::unique_ptr<FdChannel>, std::string> FdChannel::open(Loop& loop, int fd, bool readable, Data on_data,
                                                                       Hangup on_hangup)
{
    std::unique_ptr<FdChannel> ch(new FdChannel(loop));
    ch->m_fd = fd;
    ch->m_readable = readable;
    ch->m_on_data = std::move(on_data);
    ch->m_on_hangup = std::move(on_hangup);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    fcntl(fd, F_SETFD, FD_CLOEXEC);
    auto* h = new Handle{{}, ch.get()};
    if (int rc = uv_poll_init(loop.uv(), &h->poll, fd); rc != 0) {
        delete h;
        ::close(fd);
        ch->m_fd = -1;
        return std::unexpected(std::string(uv_strerror(rc)));
    }
    h->poll.data = h;
    ch->m_handle = h;
    ch->update();
    return ch;
}

FdChannel::~FdChannel()
{
    *m_alive = false;
    if (m_handle) {
        m_handle->owner = nullptr;
        uv_close(reinterpret_cast<uv_handle_t*>(&m_handle->poll),
                 [](uv_handle_t* handle) { delete static_cast<Handle*>(handle->data); });
    }
    if (m_fd >= 0)
        ::close(m_fd); // after uv_close: the descriptor is no longer polled
}

void FdChannel::update()
{
    if (!m_handle || m_dead)
        return;
    int events = 0;
    if (m_readable && !m_paused)
        events |= UV_READABLE | UV_DISCONNECT;
    if (!m_pending.empty())
        events |= UV_WRITABLE;
    if (events == 0)
        uv_poll_stop(&m_handle->poll);
    else
        uv_poll_start(&m_handle->poll, events, on_poll);
}

void FdChannel::pause(bool paused)
{
    if (m_paused == paused)
        return;
    m_paused = paused;
    update();
}

size_t FdChannel::send(std::string_view bytes)
{
    if (m_dead || bytes.empty())
        return 0;
    if (m_pending.empty()) {
        ssize_t n = ::write(m_fd, bytes.data(), bytes.size());
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            hang_up(strerror(errno));
            return 0;
        }
        if (n > 0)
            bytes.remove_prefix(size_t(n));
        if (bytes.empty())
            return 0;
    }
    size_t room = k_chardev_out_cap - std::min(m_pending.size(), k_chardev_out_cap);
    size_t take = std::min(room, bytes.size());
    bool was_empty = m_pending.empty();
    m_pending.append(bytes.data(), take);
    if (was_empty && take > 0)
        update();
    return bytes.size() - take;
}

void FdChannel::flush()
{
    while (!m_pending.empty()) {
        ssize_t n = ::write(m_fd, m_pending.data(), m_pending.size());
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                hang_up(strerror(errno));
            break;
        }
        m_pending.erase(0, size_t(n));
    }
    update();
}

void FdChannel::hang_up(std::string why)
{
    if (m_dead)
        return;
    m_dead = true;
    m_pending.clear();
    if (m_handle)
        uv_poll_stop(&m_handle->poll);
    // Later, from the loop: the owner may destroy this channel in the callback.
    m_loop.post([this, alive = std::weak_ptr<bool>(m_alive), why = std::move(why)] {
        if (!alive.lock() || !m_on_hangup)
            return;
        Hangup callback = m_on_hangup; // the callback may destroy this channel
        callback(why);
    });
}

void FdChannel::on_poll(uv_poll_t* poll, int status, int events)
{
    auto* h = static_cast<Handle*>(poll->data);
    FdChannel* self = h->owner;
    if (!self || self->m_dead)
        return;
    if (status < 0) {
        self->hang_up(uv_strerror(status));
        return;
    }
    if (events & UV_WRITABLE)
        self->flush();
    if (!(events & (UV_READABLE | UV_DISCONNECT)) || self->m_dead)
        return;
    char buf[k_read_chunk];
    for (int i = 0; i < k_reads_per_wakeup && !self->m_paused; i++) {
        ssize_t n = ::read(self->m_fd, buf, sizeof buf);
        if (n > 0) {
            self->m_on_data(std::string_view(buf, size_t(n)));
            if (!h->owner || self->m_dead)
                return; // closed or hung up by the callback
            continue;
        }
        if (n == 0) {
            self->hang_up("end of file");
            return;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return;
        self->hang_up(errno == EIO ? "the other side closed it" : strerror(errno));
        return;
    }
}

bool PeerChardev::attach_peer(int fd, const std::string& what, FdChannel::Hangup on_hangup)
{
    auto channel = FdChannel::open(
        m_loop, fd, true, [this](std::string_view bytes) { input(bytes); },
        [this, on_hangup = std::move(on_hangup)](const std::string& why) {
            m_peer.reset();
            on_hangup(why);
        });
    if (!channel) {
        log_warn("{}: cannot poll the {}: {}", log_name(), what, channel.error());
        return false;
    }
    m_peer = std::move(*channel);
    if (m_input_paused)
        m_peer->pause(true);
    connected();
    return true;
}

void PeerChardev::emit(std::string_view bytes)
{
    if (m_peer)
        count_dropped(m_peer->send(bytes));
}

void PeerChardev::pause_input(bool paused)
{
    m_input_paused = paused;
    if (m_peer)
        m_peer->pause(paused);
}

} // namespace emu::daemon
