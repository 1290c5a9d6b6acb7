// daemon/nbd_service.h — a VM's NBD server: what nbd-server-start/-add/
// -remove/-stop and block-export-add/-del/query-block-exports act on. As in
// QEMU each VM has its own: one storage::nbd::NbdServer (its own threads), the
// exports of the VM's drives on it, and their QMP identity (export id, node).
//
// Lives on the loop thread. The server's events (clients coming and going)
// arrive on its threads and are posted to the loop; they only log. Exports
// hold their drive's backend (shared), so guest and clients go through one
// BlockBackend, which serializes their requests. The VM destroys the service
// before its drives: the clients are disconnected, then the images close.
#pragma once

#include "daemon/events.h"
#include "daemon/loop.h"
#include "protocol/qmp/error.h"
#include "storage/nbd/server.h"

#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

namespace emu::daemon {

class NbdService {
public:
    NbdService(Loop& loop, std::string vm_name, EventHub& events);
    ~NbdService(); // stops the server without events: the VM is ending
    NbdService(const NbdService&) = delete;
    NbdService& operator=(const NbdService&) = delete;

    struct StartOptions {
        std::string address; // "unix:PATH", "HOST:PORT", "[V6]:PORT", ":PORT"
        std::shared_ptr<storage::nbd::TlsCredentials> tls;
        size_t max_connections = 100; // QEMU's default; 0: no limit
    };
    // Listens; returns the bound address. "NBD server already running" when it is.
    qmp::Result<std::string> start(const StartOptions& options);
    bool running() const { return m_server != nullptr; }

    struct ExportSpec {
        std::string id;   // QMP's export id (nbd-server-add: the NBD name)
        std::string name; // NBD export name
        std::string description;
        std::string drive;     // the drive's id
        std::string node_name; // what query-block-exports reports
        std::shared_ptr<storage::BlockBackend> backend;
        bool writable = false;
        bool close_on_eject = false; // nbd-server-add of a drive by its id, as QEMU's on-eject
        // nbd-server-add exports a read-only drive read-only whatever 'writable'
        // says; block-export-add refuses it.
        bool downgrade_read_only = false;
    };
    qmp::Result<void> add(ExportSpec spec);
    bool has_id(const std::string& id) const { return m_exports.count(id) > 0; }
    // block-export-del / nbd-server-remove: Safe refuses while clients use the
    // export, Hard disconnects them. Emits BLOCK_EXPORT_DELETED.
    qmp::Result<void> remove(const std::string& id, storage::nbd::RemoveMode mode);
    // nbd-server-stop: every export goes (an event each), clients are
    // disconnected, the listeners close.
    void stop();
    // A drive's medium goes away (eject, change): its close_on_eject exports
    // end (clients disconnected) before the drive lets the medium go.
    void medium_removed(const std::string& drive);
    // query-block-exports.
    nlohmann::json query() const;

private:
    void stop_server();

    Loop& m_loop;
    std::string m_vm;
    EventHub& m_events;
    std::unique_ptr<storage::nbd::NbdServer> m_server;
    std::map<std::string, ExportSpec> m_exports; // by id
    // Posted events look at this (on the loop) to know the service still exists.
    std::shared_ptr<int> m_alive = std::make_shared<int>(0);
};

} // namespace emu::daemon
