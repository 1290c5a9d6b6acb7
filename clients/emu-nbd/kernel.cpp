// clients/emu-nbd/kernel.cpp — the Linux kernel's NBD client (/dev/nbdN):
// -c serves the image through a socket pair whose other end, once the
// handshake is done, goes to the kernel (NBD_SET_SOCK, NBD_DO_IT); -d
// disconnects a device.
#include "clients/emu-nbd/emu_nbd.h"

#include "storage/endian.h"
#include "storage/nbd/channel.h"
#include "storage/nbd/codec.h"

#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <fmt/format.h>
#include <linux/nbd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <thread>
#include <unistd.h>

namespace emu::nbdtool {

namespace nbd = emu::storage::nbd;

namespace {

// The kernel takes the socket after the handshake: NBD_OPT_EXPORT_NAME, as
// its transmission phase knows only simple replies.
storage::Result<std::pair<uint64_t, uint16_t>> handshake(int fd, const std::string& name)
{
    nbd::SocketChannel ch(dup(fd));
    uint8_t g[nbd::k_greeting_size];
    if (auto r = ch.read(g); !r)
        return std::unexpected(r.error());
    auto flags = nbd::decode_greeting(std::span<const uint8_t, nbd::k_greeting_size>(g));
    if (!flags)
        return std::unexpected(flags.error());
    uint8_t cf[4];
    storage::store_be32(cf, nbd::k_client_fixed_newstyle | nbd::k_client_no_zeroes);
    if (auto r = ch.write(cf); !r)
        return std::unexpected(r.error());
    auto header = nbd::encode_option_header(uint32_t(nbd::Option::ExportName), uint32_t(name.size()));
    std::span<const uint8_t> parts[2] = {header, {reinterpret_cast<const uint8_t*>(name.data()), name.size()}};
    if (auto r = ch.write(std::span<const std::span<const uint8_t>>(parts)); !r)
        return std::unexpected(r.error());
    uint8_t reply[nbd::k_export_name_reply_size];
    if (auto r = ch.read(reply); !r)
        return std::unexpected(r.error());
    return std::make_pair(storage::load_be64(reply), storage::load_be16(reply + 8));
}

} // namespace

int connect_device(const Options& o, nbd::NbdServer& server)
{
    const std::string& device = o.connect_device;
    int dev = open(device.c_str(), O_RDWR | O_CLOEXEC);
    if (dev < 0) {
        error(fmt::format("Failed to open {}: {}", device, std::strerror(errno)));
        return 1;
    }
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
        error(fmt::format("Failed to create a socket pair: {}", std::strerror(errno)));
        close(dev);
        return 1;
    }
    if (auto r = server.adopt(sv[0], "kernel " + device); !r) {
        error(r.error().message);
        close(sv[1]);
        close(dev);
        return 1;
    }
    auto info = handshake(sv[1], o.export_name);
    if (!info) {
        error(fmt::format("{}: handshake failed: {}", device, info.error().message));
        close(sv[1]);
        close(dev);
        return 1;
    }
    auto [size, flags] = *info;
    if (ioctl(dev, NBD_SET_BLKSIZE, 512UL) < 0 || ioctl(dev, NBD_SET_SIZE, (unsigned long)size) < 0 ||
        ioctl(dev, NBD_SET_FLAGS, (unsigned long)flags) < 0 || ioctl(dev, NBD_SET_SOCK, (unsigned long)sv[1]) < 0) {
        error(fmt::format("Failed to set up {}: {}", device, std::strerror(errno)));
        ioctl(dev, NBD_CLEAR_SOCK);
        close(sv[1]);
        close(dev);
        return 1;
    }
    if (o.verbose)
        error(fmt::format("NBD device {} is now connected to {}", device, o.filename));
    // SIGTERM/SIGINT (blocked in every thread) disconnect the device.
    std::thread([dev] {
        sigset_t mask;
        sigemptyset(&mask);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGHUP);
        int sig = 0;
        if (sigwait(&mask, &sig) == 0)
            ioctl(dev, NBD_DISCONNECT);
    }).detach();
    int rc = 0;
    if (ioctl(dev, NBD_DO_IT) < 0 && errno != EPIPE && errno != EBUSY) {
        error(fmt::format("{}: NBD_DO_IT failed: {}", device, std::strerror(errno)));
        rc = 1;
    }
    ioctl(dev, NBD_CLEAR_QUE);
    ioctl(dev, NBD_CLEAR_SOCK);
    close(sv[1]);
    return rc;
}

int disconnect_device(const std::string& device)
{
    int fd = open(device.c_str(), O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        error(fmt::format("Cannot open {}: {}", device, std::strerror(errno)));
        return 1;
    }
    if (ioctl(fd, NBD_DISCONNECT) < 0) {
        error(fmt::format("Failed to disconnect {}: {}", device, std::strerror(errno)));
        close(fd);
        return 1;
    }
    ioctl(fd, NBD_CLEAR_SOCK);
    close(fd);
    std::printf("%s disconnected\n", device.c_str());
    return 0;
}

} // namespace emu::nbdtool
