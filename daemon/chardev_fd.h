// daemon/chardev_fd.h — non-blocking I/O on one file descriptor (a pty
// master, a FIFO, a connected socket) for the chardev transports, over a
// libuv poll handle on the loop thread.
//
// Reads go to on_data until pause(true); writes that the descriptor does not
// take at once wait in a buffer capped at k_chardev_out_cap (send() returns
// how many bytes it had to drop). End of file, EIO (a pty without a reader)
// and errors end the channel: on_hangup is called once, later, from the
// loop, and the owner decides what comes next (wait, reconnect, poll).
#pragma once

#include "daemon/chardev.h"
#include "daemon/loop.h"

#include <expected>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <uv.h>

namespace emu::daemon {

class FdChannel {
public:
    using Data = std::function<void(std::string_view)>;
    using Hangup = std::function<void(const std::string& why)>;

    // Takes ownership of fd (made non-blocking); 'readable' polls it for input.
    static std::expected<std::unique_ptr<FdChannel>, std::string> open(Loop& loop, int fd, bool readable, Data on_data,
                                                                       Hangup on_hangup);
    ~FdChannel();
    FdChannel(const FdChannel&) = delete;
    FdChannel& operator=(const FdChannel&) = delete;

    // Returns the number of bytes dropped because the buffer was full.
    size_t send(std::string_view bytes);
    void pause(bool paused);
    int fd() const { return m_fd; }

private:
    struct Handle {
        uv_poll_t poll;
        FdChannel* owner;
    };
    FdChannel(Loop& loop) : m_loop(loop) {}
    static void on_poll(uv_poll_t* poll, int status, int events);
    void update();
    void flush();
    void hang_up(std::string why);

    Loop& m_loop;
    Handle* m_handle = nullptr;
    int m_fd = -1;
    bool m_readable = false;
    bool m_paused = false;
    bool m_dead = false;
    std::string m_pending;
    Data m_on_data;
    Hangup m_on_hangup;
    std::shared_ptr<bool> m_alive = std::make_shared<bool>(true);
};

// A chardev whose outside is one descriptor that comes and goes: a pty's
// reader, a socket's peer. Output without a peer is dropped, as QEMU does.
class PeerChardev : public Chardev {
protected:
    using Chardev::Chardev;
    bool has_peer() const override { return m_peer != nullptr; }
    // Makes fd (owned from now on) the peer: its bytes go to the frontend,
    // on_hangup runs when it goes away (the peer is dropped by then). False,
    // logged, if fd cannot be polled.
    bool attach_peer(int fd, const std::string& what, FdChannel::Hangup on_hangup);
    void drop_peer() { m_peer.reset(); }

private:
    void emit(std::string_view bytes) override;
    void pause_input(bool paused) override;
    std::unique_ptr<FdChannel> m_peer;
    bool m_input_paused = false;
};

} // namespace emu::daemon
