// daemon/commands_nbd.cpp — the NBD commands of a VM's QMP endpoint:
// nbd-server-start/-add/-remove/-stop (QEMU 2.10), block-export-add/-del and
// query-block-exports (QEMU 5.2), with QEMU's messages. They parse and check
// on the loop and act on the VM's NbdService.
#include "daemon/daemon.h"
#include "daemon/dispatcher.h"
#include "daemon/drives.h"
#include "daemon/vm.h"

#include <cstdint>

namespace emu::daemon {

using nlohmann::json;

namespace {

qmp::Result<json> done(qmp::Result<void> r)
{
    if (!r)
        return std::unexpected(r.error());
    return json::object();
}

// A SocketAddressLegacy (2.10's {type, data} or the flat form) as the
// server's listen address ("unix:PATH", "HOST:PORT", "[V6]:PORT").
qmp::Result<std::string> listen_address(const qmp::Schema& schema, const json& addr)
{
    std::string type = addr["type"].get<std::string>();
    if (type == "vsock" || type == "fd")
        return qmp::fail("NBD server: socket address type '" + type + "' is not supported (supported: inet, unix)");
    json body = json::object();
    std::string where = "addr";
    if (addr.contains("data")) {
        for (auto& [key, value] : addr.items())
            if (key != "type" && key != "data")
                return qmp::fail("Parameter 'addr." + key + "' is unexpected");
        body = addr["data"];
        where = "addr.data";
    } else {
        for (auto& [key, value] : addr.items())
            if (key != "type")
                body[key] = value;
    }
    bool inet = type == "inet";
    if (auto ok = schema.check_value(qmp::TypeRef{inet ? "InetSocketAddress" : "UnixSocketAddress"}, body, where); !ok)
        return std::unexpected(ok.error());
    if (!inet) {
        if (body.value("abstract", false))
            return qmp::fail("NBD server: abstract unix sockets are not supported");
        return "unix:" + body["path"].get<std::string>();
    }
    for (const char* refused : {"to", "ipv4", "ipv6"})
        if (body.contains(refused))
            return qmp::fail("NBD server: parameter '" + where + "." + refused + "' is not supported");
    std::string host = body["host"].get<std::string>();
    std::string port = body["port"].get<std::string>();
    if (host.find(':') != std::string::npos)
        host = "[" + host + "]";
    return host + ":" + port;
}

storage::nbd::RemoveMode remove_mode(const json& args)
{
    return args.value("mode", "safe") == "hard" ? storage::nbd::RemoveMode::Hard : storage::nbd::RemoveMode::Safe;
}

// The drive behind a node name (block-export-add names nodes only).
Drive* drive_by_node(Vm& vm, const std::string& node)
{
    for (auto& d : vm.drives())
        if (d->spec().node_name == node && d->backend())
            return d.get();
    return nullptr;
}

} // namespace

void register_nbd_commands(Dispatcher& d)
{
    d.add("nbd-server-start", [](Context& ctx, const json& args) -> qmp::Result<json> {
        NbdService& nbd = ctx.vm->nbd();
        if (nbd.running())
            return qmp::fail("NBD server already running");
        if (args.contains("tls-authz"))
            return qmp::fail("tls-authz is not supported (TLS clients are not authorized by name)");
        NbdService::StartOptions options;
        if (args.contains("max-connections")) {
            int64_t n = args["max-connections"].get<int64_t>();
            if (n < 0 || n > int64_t(UINT32_MAX))
                return qmp::fail("Parameter 'max-connections' expects uint32_t");
            options.max_connections = size_t(n);
        }
        if (args.contains("tls-creds")) {
            auto tls = ctx.vm->objects().server_tls(args["tls-creds"].get<std::string>());
            if (!tls)
                return std::unexpected(tls.error());
            options.tls = *tls;
        }
        auto address = listen_address(ctx.daemon.dispatcher().schema(), args["addr"]);
        if (!address)
            return std::unexpected(address.error());
        options.address = *address;
        auto bound = nbd.start(options);
        if (!bound)
            return std::unexpected(bound.error());
        return json::object();
    });
    d.add("nbd-server-add", [](Context& ctx, const json& args) -> qmp::Result<json> {
        NbdService& nbd = ctx.vm->nbd();
        if (!nbd.running())
            return qmp::fail("NBD server not running");
        if (args.contains("bitmap"))
            return qmp::fail("nbd-server-add: 'bitmap' is not supported (emud has no dirty bitmaps)");
        std::string device = args["device"].get<std::string>();
        std::string name = args.value("name", device);
        if (!id_wellformed(name))
            return qmp::fail("Invalid block export id");
        if (nbd.has_id(name))
            return qmp::fail("Block export id '" + name + "' is already in use");
        Drive* drive = ctx.vm->find_drive(device);
        if (!drive)
            return qmp::fail("Cannot find device='" + device + "' nor node-name='" + device + "'");
        if (!drive->backend())
            return qmp::fail("Device '" + device + "' has no medium");
        NbdService::ExportSpec spec;
        spec.id = name;
        spec.name = name;
        spec.description = args.value("description", "");
        spec.drive = drive->spec().id;
        spec.node_name = drive->spec().node_name;
        spec.backend = drive->shared_backend();
        spec.writable = args.value("writable", false);
        spec.close_on_eject = drive->spec().id == device;
        spec.downgrade_read_only = true;
        return done(nbd.add(std::move(spec)));
    });
    d.add("nbd-server-remove", [](Context& ctx, const json& args) -> qmp::Result<json> {
        if (!ctx.vm->nbd().running())
            return qmp::fail("NBD server not running");
        return done(ctx.vm->nbd().remove(args["name"].get<std::string>(), remove_mode(args)));
    });
    d.add("nbd-server-stop", [](Context& ctx, const json&) -> qmp::Result<json> {
        if (!ctx.vm->nbd().running())
            return qmp::fail("NBD server not running");
        ctx.vm->nbd().stop();
        return json::object();
    });
    d.add("block-export-add", [](Context& ctx, const json& args) -> qmp::Result<json> {
        std::string type = args["type"].get<std::string>();
        if (type != "nbd")
            return qmp::fail("block export type '" + type + "' is not supported (supported: nbd)");
        if (args.contains("iothread") || args.value("fixed-iothread", false))
            return qmp::fail("block-export-add: iothreads are not supported");
        if (args.value("writethrough", false))
            return qmp::fail("block-export-add: 'writethrough' is not supported (clients flush, or ask for FUA)");
        if (args.contains("bitmaps") && !args["bitmaps"].empty())
            return qmp::fail("block-export-add: 'bitmaps' is not supported (emud has no dirty bitmaps)");
        if (args.value("allocation-depth", false))
            return qmp::fail("block-export-add: 'allocation-depth' is not supported");
        std::string id = args["id"].get<std::string>();
        std::string node = args["node-name"].get<std::string>();
        NbdService& nbd = ctx.vm->nbd();
        if (!id_wellformed(id))
            return qmp::fail("Invalid block export id");
        if (nbd.has_id(id))
            return qmp::fail("Block export id '" + id + "' is already in use");
        Drive* drive = drive_by_node(*ctx.vm, node);
        if (!drive)
            return qmp::fail("Cannot find device='' nor node-name='" + node + "'");
        if (!nbd.running())
            return qmp::fail("NBD server not running");
        NbdService::ExportSpec spec;
        spec.id = id;
        spec.name = args.value("name", node);
        spec.description = args.value("description", "");
        spec.drive = drive->spec().id;
        spec.node_name = node;
        spec.backend = drive->shared_backend();
        spec.writable = args.value("writable", false);
        return done(nbd.add(std::move(spec)));
    });
    d.add("block-export-del", [](Context& ctx, const json& args) -> qmp::Result<json> {
        return done(ctx.vm->nbd().remove(args["id"].get<std::string>(), remove_mode(args)));
    });
    d.add("query-block-exports", [](Context& ctx, const json&) -> qmp::Result<json> { return ctx.vm->nbd().query(); });
}

void register_object_commands(Dispatcher& d)
{
    d.add("object-add", [](Context& ctx, const json& args) -> qmp::Result<json> {
        return done(ctx.vm->objects().add(args));
    });
    d.add("object-del", [](Context& ctx, const json& args) -> qmp::Result<json> {
        return done(ctx.vm->objects().del(args["id"].get<std::string>()));
    });
}

} // namespace emu::daemon
