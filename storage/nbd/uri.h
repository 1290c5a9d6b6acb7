// storage/nbd/uri.h — the names under which an NBD export opens as an image:
//   nbd://HOST[:PORT]/[EXPORT]            (nbd+tcp:// too; [IPV6] hosts)
//   nbd+unix:///[EXPORT]?socket=PATH
//   nbds://…, nbds+unix://…               TLS
//   nbd:HOST:PORT[:exportname=NAME]       QEMU's legacy syntax
//   nbd:unix:PATH[:exportname=NAME]
// Query parameters: socket=PATH (unix), tls-creds=DIR (a directory with
// ca-cert.pem and optionally client-cert.pem/client-key.pem; implies TLS),
// tls-hostname=NAME (the name the server's certificate must carry).
// Export names are percent-decoded.
#pragma once

#include "storage/error.h"
#include "storage/nbd/address.h"

#include <string>
#include <string_view>

namespace emu::storage::nbd {

struct NbdTarget {
    SocketAddress address;
    std::string export_name;
    bool tls = false;
    std::string tls_creds_dir; // empty with TLS: the system's CA certificates
    std::string tls_hostname;  // empty: the host connected to (TCP), none (unix)
    std::string name;          // the name as given, for messages
};

// Does the name ask for the NBD protocol driver?
bool is_nbd_filename(std::string_view name);
Result<NbdTarget> parse_nbd_filename(std::string_view name);
// The name as QEMU shows an open NBD image: nbd://HOST:PORT[/EXPORT] or
// nbd+unix://[/EXPORT]?socket=PATH (nbds… with TLS), whatever the syntax given.
std::string canonical_name(const NbdTarget& target);

} // namespace emu::storage::nbd
