// storage/nbd/address.h — socket addresses for NBD listeners and clients:
// "unix:PATH", "HOST:PORT", "[IPV6]:PORT", ":PORT" (every interface). A TCP
// listener binds every address the host name resolves to; a unix listener
// replaces a stale socket file but refuses a path a live server listens on.
#pragma once

#include "storage/error.h"

#include <string>
#include <string_view>
#include <vector>

namespace emu::storage::nbd {

struct SocketAddress {
    bool is_unix = false;
    std::string path; // unix
    std::string host; // TCP; empty = every interface (listen) or localhost (connect)
    std::string port; // TCP
    // "unix:/run/x.sock", "127.0.0.1:10809", "[::1]:10809"
    std::string to_string() const;
};

Result<SocketAddress> parse_socket_address(std::string_view text);

// Listening sockets (several for a host name with IPv4 and IPv6 addresses).
struct ListenSocket {
    int fd = -1;
    std::string name;      // what was bound, with the actual port ("127.0.0.1:36817")
    std::string unix_path; // removed when the listener closes
};
Result<std::vector<ListenSocket>> listen_on(const SocketAddress& address, int backlog = 128);
// A connected stream socket (TCP_NODELAY for TCP), blocking.
Result<int> connect_to(const SocketAddress& address);
// The peer of an accepted socket as text ("127.0.0.1:51234", "unix:/run/x.sock").
std::string peer_name(int fd, std::string_view unix_path);

} // namespace emu::storage::nbd
