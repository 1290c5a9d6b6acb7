// daemon/commands_daemon.cpp — VM management on the daemon's control endpoint.
#include "daemon/daemon.h"
#include "daemon/dispatcher.h"
#include "daemon/vm.h"

namespace emu::daemon {

using nlohmann::json;

namespace {

qmp::Result<Vm*> lookup(Context& ctx, const json& args)
{
    std::string name = args["name"].get<std::string>();
    if (Vm* vm = ctx.daemon.find_vm(name))
        return vm;
    return qmp::fail("VM '" + name + "' not found", qmp::ErrorClass::DeviceNotFound);
}

} // namespace

void register_daemon_commands(Dispatcher& d)
{
    d.add("__org.emud_vm-create", [](Context& ctx, const json& args) -> qmp::Result<json> {
        auto vm = ctx.daemon.create_vm(args["config"], args.value("start", true));
        if (!vm)
            return std::unexpected(vm.error());
        return (*vm)->summary();
    });
    d.add("__org.emud_vm-list", [](Context& ctx, const json&) -> qmp::Result<json> {
        json list = json::array();
        for (Vm* vm : ctx.daemon.vms())
            list.push_back(vm->summary());
        return list;
    });
    d.add("__org.emud_vm-destroy", [](Context& ctx, const json& args) -> qmp::Result<json> {
        auto vm = lookup(ctx, args);
        if (!vm)
            return std::unexpected(vm.error());
        (*vm)->events().emit("SHUTDOWN", {{"guest", false}, {"reason", "host-qmp-quit"}});
        ctx.daemon.destroy_vm((*vm)->name(), devices::ShutdownCause::HostQmpQuit);
        return json::object();
    });
    d.add("__org.emud_vm-get-config", [](Context& ctx, const json& args) -> qmp::Result<json> {
        auto vm = lookup(ctx, args);
        if (!vm)
            return std::unexpected(vm.error());
        return (*vm)->config();
    });
    d.add("__org.emud_vm-execute", [](Context& ctx, const json& args) -> qmp::Result<json> {
        auto vm = lookup(ctx, args);
        if (!vm)
            return std::unexpected(vm.error());
        json arguments = args.value("arguments", json::object());
        if (!arguments.is_object())
            return qmp::fail("Invalid parameter type for 'arguments', expected: object");
        Context inner{ctx.daemon, qmp::Scope::Vm, *vm};
        return ctx.daemon.dispatcher().execute(inner, args["execute"].get<std::string>(), arguments);
    });
}

} // namespace emu::daemon
