#include "daemon/nbd_service.h"

#include "common/log.h"
#include "storage/nbd/channel.h"

#include <cerrno>

namespace emu::daemon {

using nlohmann::json;
using storage::nbd::ServerEvent;

namespace {

void log_event(const std::string& vm, const ServerEvent& e)
{
    switch (e.kind) {
    case ServerEvent::Kind::Connected:
        log_debug("{}: NBD client {} connected ({} served)", vm, e.peer, e.connections);
        break;
    case ServerEvent::Kind::Refused:
        log_info("{}: NBD client {} refused: {}", vm, e.peer, e.reason);
        break;
    case ServerEvent::Kind::Transmission:
        log_info("{}: NBD client {} uses export '{}'", vm, e.peer, e.export_name);
        break;
    case ServerEvent::Kind::Disconnected:
        if (e.reason.empty() || e.error == storage::nbd::k_peer_closed)
            log_info("{}: NBD client {} disconnected", vm, e.peer);
        else
            log_info("{}: NBD client {} disconnected: {}", vm, e.peer, e.reason);
        break;
    }
}

} // namespace

NbdService::NbdService(Loop& loop, std::string vm_name, EventHub& events)
    : m_loop(loop), m_vm(std::move(vm_name)), m_events(events)
{}

NbdService::~NbdService()
{
    if (m_server) {
        stop_server();
        log_info("{}: NBD server stopped with the VM", m_vm);
    }
}

qmp::Result<std::string> NbdService::start(const StartOptions& options)
{
    if (m_server)
        return qmp::fail("NBD server already running");
    storage::nbd::ServerOptions o;
    o.max_connections = options.max_connections;
    o.tls = options.tls;
    // Server threads: hop to the loop, where the service may be gone already.
    o.on_event = [loop = &m_loop, vm = m_vm, alive = std::weak_ptr<int>(m_alive)](const ServerEvent& e) {
        loop->post([vm, alive, e] {
            if (!alive.expired())
                log_event(vm, e);
        });
    };
    auto server = std::make_unique<storage::nbd::NbdServer>(std::move(o));
    auto bound = server->listen(options.address);
    if (!bound)
        return qmp::fail(bound.error().message);
    m_server = std::move(server);
    log_info("{}: NBD server listening on {}{}", m_vm, *bound, options.tls ? " (TLS)" : "");
    return *bound;
}

qmp::Result<void> NbdService::add(ExportSpec spec)
{
    if (!m_server)
        return qmp::fail("NBD server not running");
    if (m_exports.count(spec.id))
        return qmp::fail("Block export id '" + spec.id + "' is already in use");
    for (auto& [id, other] : m_exports)
        if (other.name == spec.name)
            return qmp::fail("NBD server already has export named '" + spec.name + "'");
    if (spec.writable && spec.backend->read_only()) {
        if (!spec.downgrade_read_only)
            return qmp::fail("Cannot export read-only node as writable");
        log_info("{}: drive '{}' is read-only: export '{}' is read-only too", m_vm, spec.drive, spec.name);
        spec.writable = false;
    }
    if (auto ok = m_server->add_export(spec.name, spec.description, spec.backend, spec.writable); !ok)
        return qmp::fail(ok.error().message);
    log_info("{}: NBD export '{}' of drive '{}' ({})", m_vm, spec.name, spec.drive,
             spec.writable ? "writable" : "read-only");
    std::string id = spec.id;
    m_exports.emplace(std::move(id), std::move(spec));
    return {};
}

qmp::Result<void> NbdService::remove(const std::string& id, storage::nbd::RemoveMode mode)
{
    auto it = m_exports.find(id);
    if (it == m_exports.end() || !m_server)
        return qmp::fail("Export '" + id + "' is not found");
    if (auto ok = m_server->remove_export(it->second.name, mode); !ok) {
        if (ok.error().err == EBUSY)
            return qmp::fail("export '" + id + "' still in use");
        return qmp::fail(ok.error().message);
    }
    log_info("{}: NBD export '{}' removed", m_vm, it->second.name);
    m_exports.erase(it);
    // As QEMU: the event comes before the reply once the export is gone.
    m_events.emit("BLOCK_EXPORT_DELETED", {{"id", id}});
    return {};
}

void NbdService::stop()
{
    if (!m_server)
        return;
    std::map<std::string, ExportSpec> gone;
    gone.swap(m_exports);
    stop_server();
    for (auto& [id, spec] : gone)
        m_events.emit("BLOCK_EXPORT_DELETED", {{"id", id}});
    log_info("{}: NBD server stopped", m_vm);
}

void NbdService::stop_server()
{
    m_server->stop(); // listeners closed, clients disconnected, threads joined
    m_server.reset();
    m_exports.clear();
}

void NbdService::medium_removed(const std::string& drive)
{
    std::vector<std::string> ids;
    for (auto& [id, spec] : m_exports)
        if (spec.close_on_eject && spec.drive == drive)
            ids.push_back(id);
    for (auto& id : ids)
        if (auto ok = remove(id, storage::nbd::RemoveMode::Hard); !ok)
            log_error("{}: NBD export '{}': {}", m_vm, id, ok.error().desc);
}

json NbdService::query() const
{
    json list = json::array();
    for (auto& [id, spec] : m_exports)
        list.push_back({{"id", id}, {"type", "nbd"}, {"node-name", spec.node_name}, {"shutting-down", false}});
    return list;
}

} // namespace emu::daemon
