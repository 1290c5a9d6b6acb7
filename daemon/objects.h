// daemon/objects.h — a VM's user-created objects: what object-add and
// object-del manage (QEMU's /objects container). The one type emud has is
// tls-creds-x509, which nbd-server-start names with 'tls-creds'; other types
// are refused by name.
#pragma once

#include "protocol/qmp/error.h"
#include "storage/nbd/tls.h"

#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

namespace emu::daemon {

// QEMU's identifier rule (object ids, export ids): a letter, then letters,
// digits, '-', '.' and '_'.
bool id_wellformed(const std::string& id);

class Objects {
public:
    // object-add's arguments: QEMU 2.10's {qom-type, id, props} or the flat
    // form of later versions (properties next to qom-type and id).
    qmp::Result<void> add(const nlohmann::json& args);
    qmp::Result<void> del(const std::string& id);
    // The credentials 'tls-creds' names, which must be a server's. A server
    // that uses them keeps them after object-del, as QEMU's reference does.
    qmp::Result<std::shared_ptr<storage::nbd::TlsCredentials>> server_tls(const std::string& id) const;

private:
    std::map<std::string, std::shared_ptr<storage::nbd::TlsCredentials>> m_tls;
};

} // namespace emu::daemon
