// daemon/commands_vm.cpp — the commands of a VM's own QMP endpoint.
#include "daemon/daemon.h"
#include "daemon/dispatcher.h"
#include "daemon/vm.h"
#include "protocol/hmp/hmp.h"

namespace emu::daemon {

using nlohmann::json;

namespace {

qmp::Result<json> done(qmp::Result<void> r)
{
    if (!r)
        return std::unexpected(r.error());
    return json::object();
}

} // namespace

void register_vm_commands(Dispatcher& d)
{
    d.add("query-name", [](Context& ctx, const json&) -> qmp::Result<json> {
        // Every emud VM has a name (generated when the config gave none).
        return json{{"name", ctx.vm->name()}};
    });
    d.add("query-uuid", [](Context& ctx, const json&) -> qmp::Result<json> { return json{{"UUID", ctx.vm->uuid()}}; });
    d.add("query-status", [](Context& ctx, const json&) -> qmp::Result<json> {
        RunState s = ctx.vm->state();
        return json{{"running", s == RunState::Running}, {"singlestep", false}, {"status", run_state_name(s)}};
    });
    d.add("query-cpus-fast", [](Context& ctx, const json&) -> qmp::Result<json> {
        json list = json::array();
        for (auto& cpu : ctx.vm->cpus())
            list.push_back({{"cpu-index", cpu.index},
                            {"qom-path", cpu.qom_path},
                            {"thread-id", cpu.thread_id},
                            {"props", {{"socket-id", cpu.socket_id}, {"core-id", cpu.core_id},
                                       {"thread-id", cpu.thread_index}}},
                            {"target", "x86_64"}});
        return list;
    });
    d.add("query-cpus", [](Context& ctx, const json&) -> qmp::Result<json> {
        json list = json::array();
        for (auto& cpu : ctx.vm->cpus()) {
            auto dump = ctx.vm->machine().dump_cpu(cpu.index);
            list.push_back({{"CPU", cpu.index},
                            {"current", cpu.index == 0},
                            {"halted", dump ? dump->halted : false},
                            {"qom_path", cpu.qom_path},
                            {"thread_id", cpu.thread_id},
                            {"props", {{"socket-id", cpu.socket_id}, {"core-id", cpu.core_id},
                                       {"thread-id", cpu.thread_index}}},
                            {"arch", "x86"},
                            {"pc", dump ? dump->pc : 0}});
        }
        return list;
    });
    d.add("__org.emud_query-registers", [](Context& ctx, const json& args) -> qmp::Result<json> {
        auto cpus = ctx.vm->cpus();
        std::string text;
        if (args.contains("cpu-index")) {
            int index = args["cpu-index"].get<int>();
            auto dump = ctx.vm->machine().dump_cpu(index);
            if (!dump)
                return qmp::fail("CPU " + std::to_string(index) + " not found");
            text = dump->registers;
        } else {
            for (auto& cpu : cpus)
                if (auto dump = ctx.vm->machine().dump_cpu(cpu.index))
                    text += "\nCPU#" + std::to_string(cpu.index) + "\n" + dump->registers;
        }
        return json{{"human-readable-text", text}};
    });
    d.add("__org.emud_query-lapic", [](Context& ctx, const json& args) -> qmp::Result<json> {
        int index = args.value("cpu-index", 0);
        auto text = ctx.vm->machine().dump_lapic(index);
        if (!text)
            return qmp::fail("CPU " + std::to_string(index) + " not found");
        return json{{"human-readable-text", *text}};
    });
    d.add("stop", [](Context& ctx, const json&) { return done(ctx.vm->stop()); });
    d.add("cont", [](Context& ctx, const json&) { return done(ctx.vm->cont()); });
    d.add("system_reset", [](Context& ctx, const json&) -> qmp::Result<json> {
        ctx.vm->system_reset(devices::ShutdownCause::HostQmpSystemReset, false);
        return json::object();
    });
    d.add("system_powerdown", [](Context& ctx, const json&) -> qmp::Result<json> {
        ctx.vm->system_powerdown();
        return json::object();
    });
    d.add("human-monitor-command", [](Context& ctx, const json& args) -> qmp::Result<json> {
        Context inner = ctx;
        std::string text = hmp::run(args["command-line"].get<std::string>(), [&](const std::string& cmd,
                                                                                 const json& a) {
            return inner.daemon.dispatcher().execute(inner, cmd, a);
        });
        // The monitor's output as its terminal would get it: CRLF line ends, as QEMU.
        std::string crlf;
        for (char c : text) {
            if (c == '\n')
                crlf += '\r';
            crlf += c;
        }
        return crlf;
    });
    d.add("__org.emud_inject-internal-error", [](Context& ctx, const json& args) -> qmp::Result<json> {
        ctx.vm->fail(args.value("reason", "injected by __org.emud_inject-internal-error"));
        return json::object();
    });
}

} // namespace emu::daemon
