// daemon/commands_vm.cpp — the commands of a VM's own QMP endpoint.
#include "daemon/daemon.h"
#include "daemon/dispatcher.h"
#include "daemon/vm.h"
#include "protocol/hmp/hmp.h"

#include <cerrno>
#include <cstdio>
#include <cstring>

namespace emu::daemon {

using nlohmann::json;

namespace {

std::string hex(uint64_t v)
{
    char buf[24];
    snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
    return buf;
}

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
    d.add("pmemsave", [](Context& ctx, const json& args) -> qmp::Result<json> {
        uint64_t addr = args["val"].get<uint64_t>();
        int64_t size = args["size"].get<int64_t>();
        std::string file = args["filename"].get<std::string>();
        if (size < 0 || size > (int64_t(4) << 30))
            return qmp::fail("pmemsave: size " + std::to_string(size) + " is not in 0..4 GiB");
        FILE* f = fopen(file.c_str(), "wb");
        if (!f)
            return qmp::fail("Could not open '" + file + "': " + strerror(errno));
        std::vector<uint8_t> chunk(1 << 20);
        for (int64_t done = 0; done < size;) {
            size_t n = size_t(std::min<int64_t>(size - done, int64_t(chunk.size())));
            if (!ctx.vm->machine().read_physical(addr + uint64_t(done), chunk.data(), n)) {
                fclose(f);
                return qmp::fail("pmemsave: guest physical " + hex(addr + uint64_t(done)) + "..+" +
                                 std::to_string(n) + " is not all RAM");
            }
            if (fwrite(chunk.data(), 1, n, f) != n) {
                fclose(f);
                return qmp::fail("Error writing to '" + file + "': " + strerror(errno));
            }
            done += int64_t(n);
        }
        if (fclose(f) != 0)
            return qmp::fail("Error writing to '" + file + "': " + strerror(errno));
        return json::object();
    });
    d.add("__org.emud_read-physical", [](Context& ctx, const json& args) -> qmp::Result<json> {
        uint64_t addr = args["address"].get<uint64_t>();
        int64_t size = args["size"].get<int64_t>();
        if (size < 0 || size > 65536)
            return qmp::fail("size " + std::to_string(size) + " is not in 0..65536");
        std::vector<uint8_t> buf(static_cast<size_t>(size));
        if (!ctx.vm->machine().read_physical(addr, buf.data(), buf.size()))
            return qmp::fail("guest physical " + hex(addr) + "..+" + std::to_string(size) + " is not all RAM");
        static const char digits[] = "0123456789abcdef";
        std::string text;
        for (uint8_t b : buf) {
            text += digits[b >> 4];
            text += digits[b & 15];
        }
        return json{{"data", text}};
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
