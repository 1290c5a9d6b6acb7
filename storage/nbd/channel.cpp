// storage/nbd/channel.cpp — plain sockets and byte buffers (the TLS half of
// SocketChannel is in tls.cpp).
#include "storage/nbd/channel.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <fmt/format.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

namespace emu::storage::nbd {

// tls.cpp
void tls_session_free(void* ssl);
void tls_session_close(void* ssl);

Result<void> Channel::write(std::span<const uint8_t> buf)
{
    std::span<const uint8_t> one[1] = {buf};
    return write(std::span<const std::span<const uint8_t>>(one));
}

Result<void> Channel::discard(uint64_t bytes)
{
    uint8_t scratch[16384];
    while (bytes > 0) {
        size_t n = size_t(std::min<uint64_t>(bytes, sizeof scratch));
        if (auto r = read(std::span<uint8_t>(scratch, n)); !r)
            return r;
        bytes -= n;
    }
    return {};
}

Result<void> Channel::start_tls(const TlsCredentials&, const std::string&)
{
    return fail("TLS is not available on this channel", ENOTSUP);
}

// --- SocketChannel -------------------------------------------------------------

SocketChannel::SocketChannel(int fd) : m_fd(fd)
{}

SocketChannel::~SocketChannel()
{
    if (m_ssl) {
        // The close alert must not block on a peer that stopped reading.
        fcntl(m_fd, F_SETFL, fcntl(m_fd, F_GETFL) | O_NONBLOCK);
        tls_session_close(m_ssl);
        tls_session_free(m_ssl);
    }
    close(m_fd);
}

void SocketChannel::shutdown()
{
    ::shutdown(m_fd, SHUT_RDWR);
}

Result<void> SocketChannel::apply_deadline()
{
    if (!m_deadline) {
        if (m_timeouts_set) {
            timeval none{};
            setsockopt(m_fd, SOL_SOCKET, SO_RCVTIMEO, &none, sizeof none);
            setsockopt(m_fd, SOL_SOCKET, SO_SNDTIMEO, &none, sizeof none);
            m_timeouts_set = false;
        }
        return {};
    }
    auto left = std::chrono::duration_cast<std::chrono::microseconds>(*m_deadline - Clock::now());
    if (left.count() <= 0)
        return fail("timed out", ETIMEDOUT);
    timeval tv{};
    tv.tv_sec = time_t(left.count() / 1000000);
    tv.tv_usec = suseconds_t(left.count() % 1000000);
    setsockopt(m_fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(m_fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    m_timeouts_set = true;
    return {};
}

Result<void> SocketChannel::read(std::span<uint8_t> buf)
{
    if (m_ssl)
        return tls_read(buf);
    return plain_read(buf);
}

Result<void> SocketChannel::write(std::span<const std::span<const uint8_t>> bufs)
{
    if (!m_ssl)
        return plain_write(bufs);
    for (auto b : bufs) {
        if (auto r = tls_write(b); !r)
            return r;
    }
    return {};
}

Result<void> SocketChannel::plain_read(std::span<uint8_t> buf)
{
    size_t done = 0;
    while (done < buf.size()) {
        if (auto r = apply_deadline(); !r)
            return r;
        ssize_t n = recv(m_fd, buf.data() + done, buf.size() - done, 0);
        if (n > 0) {
            done += size_t(n);
            continue;
        }
        if (n == 0)
            return fail("connection closed by the peer", k_peer_closed);
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return fail("timed out", ETIMEDOUT);
        int err = errno;
        return fail(fmt::format("read failed: {}", std::strerror(err)), err);
    }
    return {};
}

Result<void> SocketChannel::plain_write(std::span<const std::span<const uint8_t>> bufs)
{
    constexpr size_t k_max_iov = 64;
    size_t index = 0;  // first buffer not fully sent
    size_t offset = 0; // bytes of it already sent
    while (index < bufs.size()) {
        if (bufs[index].size() == offset) {
            index++;
            offset = 0;
            continue;
        }
        iovec iov[k_max_iov];
        size_t count = 0;
        for (size_t i = index; i < bufs.size() && count < k_max_iov; i++) {
            size_t skip = i == index ? offset : 0;
            if (bufs[i].size() == skip)
                continue;
            iov[count].iov_base = const_cast<uint8_t*>(bufs[i].data() + skip);
            iov[count].iov_len = bufs[i].size() - skip;
            count++;
        }
        if (auto r = apply_deadline(); !r)
            return r;
        msghdr msg{};
        msg.msg_iov = iov;
        msg.msg_iovlen = count;
        ssize_t n = sendmsg(m_fd, &msg, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return fail("timed out", ETIMEDOUT);
            if (errno == EPIPE || errno == ECONNRESET)
                return fail("connection closed by the peer", k_peer_closed);
            int err = errno;
            return fail(fmt::format("write failed: {}", std::strerror(err)), err);
        }
        size_t sent = size_t(n);
        while (sent > 0 && index < bufs.size()) {
            size_t take = std::min(sent, bufs[index].size() - offset);
            sent -= take;
            offset += take;
            if (offset == bufs[index].size()) {
                index++;
                offset = 0;
            }
        }
    }
    return {};
}

// --- BufferChannel -------------------------------------------------------------

Result<void> BufferChannel::read(std::span<uint8_t> buf)
{
    if (m_shut)
        return fail("channel shut down", ESHUTDOWN);
    if (m_input.size() - m_pos < buf.size()) {
        m_pos = m_input.size();
        return fail("connection closed by the peer", k_peer_closed);
    }
    if (!buf.empty())
        std::memcpy(buf.data(), m_input.data() + m_pos, buf.size());
    m_pos += buf.size();
    return {};
}

Result<void> BufferChannel::write(std::span<const std::span<const uint8_t>> bufs)
{
    if (m_shut)
        return fail("channel shut down", ESHUTDOWN);
    for (auto b : bufs) {
        m_written += b.size();
        size_t room = m_output_cap - std::min(m_output_cap, m_output.size());
        size_t n = std::min(room, b.size());
        m_output.insert(m_output.end(), b.begin(), b.begin() + ptrdiff_t(n));
    }
    return {};
}

} // namespace emu::storage::nbd
