// daemon/commands_common.cpp — commands every endpoint has: introspection
// and host facts.
#include "daemon/daemon.h"
#include "daemon/dispatcher.h"
#include "daemon/vm.h"
#include "devices/machine.h"
#include "engine/x86/cpuid.h"

namespace emu::daemon {

using nlohmann::json;

void register_common_commands(Dispatcher& d)
{
    d.add("query-version", [](Context& ctx, const json&) -> qmp::Result<json> {
        return ctx.daemon.dispatcher().schema().version();
    });
    d.add("query-commands", [](Context& ctx, const json&) -> qmp::Result<json> {
        json list = json::array();
        for (auto* c : ctx.daemon.dispatcher().schema().commands(ctx.scope))
            list.push_back({{"name", c->name}});
        return list;
    });
    d.add("query-events", [](Context& ctx, const json&) -> qmp::Result<json> {
        json list = json::array();
        for (auto* e : ctx.daemon.dispatcher().schema().events(ctx.scope))
            list.push_back({{"name", e->name}});
        return list;
    });
    d.add("query-qmp-schema", [](Context& ctx, const json&) -> qmp::Result<json> {
        return ctx.daemon.dispatcher().schema().introspect(ctx.scope);
    });
    d.add("query-kvm", [](Context& ctx, const json&) -> qmp::Result<json> {
        bool enabled = ctx.vm && ctx.vm->kvm_enabled();
        // As QEMU: 'present' says KVM support is built in, whether or not
        // /dev/kvm can be used here (query-cpu-definitions tells that).
        return json{{"enabled", enabled}, {"present", true}};
    });
    d.add("query-target", [](Context&, const json&) -> qmp::Result<json> { return json{{"arch", "x86_64"}}; });
    d.add("query-machines", [](Context&, const json&) -> qmp::Result<json> {
        json list = json::array();
        for (auto& mc : devices::machine_classes()) {
            json m = {{"name", mc.name},
                      {"cpu-max", mc.max_cpus},
                      {"hotpluggable-cpus", mc.hotpluggable_cpus},
                      {"numa-mem-supported", false},
                      {"deprecated", false},
                      {"default-ram-id", "ram"}};
            if (!mc.alias.empty())
                m["alias"] = mc.alias;
            if (mc.is_default)
                m["is-default"] = true;
            if (!mc.default_cpu_type.empty())
                m["default-cpu-type"] = mc.default_cpu_type;
            list.push_back(m);
        }
        return list;
    });
    d.add("query-cpu-definitions", [](Context& ctx, const json&) -> qmp::Result<json> {
        json list = json::array();
        for (auto& m : x86::cpu_models())
            list.push_back({{"name", m.name},
                            {"static", false},
                            {"migration-safe", true},
                            {"typename", m.name + "-x86_64-cpu"},
                            {"unavailable-features", json::array()},
                            {"deprecated", false}});
        if (ctx.daemon.kvm().present)
            list.push_back({{"name", "host"},
                            {"static", false},
                            {"migration-safe", false},
                            {"typename", "host-x86_64-cpu"},
                            {"unavailable-features", json::array()},
                            {"deprecated", false}});
        return list;
    });
    d.add("qom-list-types", [](Context&, const json& args) -> qmp::Result<json> {
        std::string implements = args.value("implements", "");
        json list = json::array();
        for (auto& t : devices::device_types())
            if (implements.empty() || implements == "device" || implements == t.parent || implements == t.name)
                list.push_back({{"name", t.name}, {"parent", t.parent}});
        return list;
    });
    d.add("device-list-properties", [](Context&, const json& args) -> qmp::Result<json> {
        std::string name = args["typename"];
        const devices::DeviceTypeInfo* t = devices::find_device_type(name);
        if (!t)
            return qmp::fail("Device '" + name + "' not found", qmp::ErrorClass::DeviceNotFound);
        json list = json::array();
        for (auto& p : t->props) {
            json prop = {{"name", p.name}, {"type", p.type}, {"description", p.description}};
            if (!p.default_value.empty())
                prop["default-value"] = p.default_value;
            list.push_back(prop);
        }
        return list;
    });
    d.add("quit", [](Context& ctx, const json&) -> qmp::Result<json> {
        if (ctx.vm) {
            ctx.vm->quit(devices::ShutdownCause::HostQmpQuit, false);
        } else {
            Daemon& daemon = ctx.daemon;
            daemon.loop().post([&daemon] { daemon.shutdown(devices::ShutdownCause::HostQmpQuit); });
        }
        return json::object();
    });
}

} // namespace emu::daemon
