// emuctl — the emud command-line client. `emuctl run` takes QEMU's flags and
// makes a VM of them; the other subcommands manage VMs over the control socket.
#include "clients/emuctl/flags.h"
#include "clients/emuctl/terminal.h"
#include "protocol/qmp/client.h"

#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <optional>
#include <map>
#include <string>
#include <sys/socket.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <algorithm>
#include <unistd.h>
#include <vector>

using namespace emu;
using json = nlohmann::json;

namespace {

const char* k_usage = R"(Usage: emuctl [--socket PATH | --connect HOST:PORT] [--start-daemon] COMMAND [ARGS]

Commands:
  run QEMU-FLAGS...   create a VM from qemu-system-x86_64 flags and run it
  list                list the VMs
  status VM           show a VM's run state
  stop VM             pause a VM            cont VM       resume it
  reset VM            reset a VM            powerdown VM  press its power button
  destroy VM          end a VM at once
  qmp VM JSON         send one QMP command (VM '-' is the daemon), print the reply
  monitor VM          open the human monitor (HMP) of a VM
  console VM          attach to a VM's console (Ctrl-a x detaches)

Options:
  --socket PATH       emud's control socket (default: $XDG_RUNTIME_DIR/emud/emud.sock,
                      /run/emud/emud.sock for root)
  --connect HOST:PORT reach emud's TCP control endpoint instead
  --start-daemon      start a user-level emud if none answers
See docs/emuctl.md for every flag that `run` understands.
)";

struct Global {
    std::string address;
    bool start_daemon = false;
};

int fail(const std::string& message)
{
    fprintf(stderr, "emuctl: %s\n", message.c_str());
    return 1;
}

std::string default_socket()
{
    if (getuid() == 0)
        return "/run/emud/emud.sock";
    if (const char* xdg = getenv("XDG_RUNTIME_DIR"); xdg && *xdg)
        return std::string(xdg) + "/emud/emud.sock";
    return "/tmp/emud-" + std::to_string(getuid()) + "/emud.sock";
}

// emud next to this binary (install or build tree), else on PATH.
std::string find_emud()
{
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n > 0) {
        self[n] = 0;
        std::string dir(self);
        dir = dir.substr(0, dir.rfind('/'));
        for (std::string candidate : {dir + "/emud", dir + "/../daemon/emud"})
            if (access(candidate.c_str(), X_OK) == 0)
                return candidate;
    }
    return "emud";
}

std::expected<qmp::Client, std::string> connect_daemon(const Global& g)
{
    auto client = qmp::Client::open(g.address);
    if (client || !g.start_daemon || g.address.rfind("tcp:", 0) == 0)
        return client;
    // Start a user-level daemon whose state directory holds the socket.
    std::string path = g.address.rfind("unix:", 0) == 0 ? g.address.substr(5) : g.address;
    std::string state_dir = path.substr(0, path.rfind('/'));
    std::string emud = find_emud();
    pid_t pid = fork();
    if (pid == 0) {
        // The daemon outlives us: it must not hold our caller's stderr open.
        std::string log = state_dir + "/emud.log";
        mkdir(state_dir.c_str(), 0700);
        int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        if (fd >= 0) {
            dup2(fd, STDERR_FILENO);
            dup2(fd, STDOUT_FILENO);
        }
        execlp(emud.c_str(), emud.c_str(), "--daemonize", "--state-dir", state_dir.c_str(), "--socket",
               path.c_str(), nullptr);
        fprintf(stderr, "emuctl: cannot run %s: %s\n", emud.c_str(), strerror(errno));
        _exit(127);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return std::unexpected("could not start emud (" + emud + ")");
    return qmp::Client::open(g.address);
}

// The reply's value, or a printed error.
std::optional<json> call(qmp::Client& c, const std::string& command, const json& args = json::object())
{
    auto reply = c.call(command, args);
    if (!reply) {
        fail(reply.error());
        return std::nullopt;
    }
    if (reply->contains("error")) {
        fail((*reply)["error"].value("desc", "unknown error"));
        return std::nullopt;
    }
    return (*reply)["return"];
}

std::optional<json> vm_call(qmp::Client& c, const std::string& vm, const std::string& command,
                            const json& args = json::object())
{
    json a = {{"name", vm}, {"execute", command}};
    if (!args.empty())
        a["arguments"] = args;
    return call(c, "__org.emud_vm-execute", a);
}

std::string endpoint(const json& summary, const std::string& protocol)
{
    for (auto& e : summary.value("endpoints", json::array()))
        if (e.value("protocol", "") == protocol && e.value("address", "").rfind("unix:", 0) == 0)
            return e["address"].get<std::string>().substr(5);
    return {};
}

std::optional<json> find_vm(qmp::Client& c, const std::string& vm)
{
    auto list = call(c, "__org.emud_vm-list");
    if (!list)
        return std::nullopt;
    for (auto& v : *list)
        if (v.value("name", "") == vm)
            return v;
    fail("VM '" + vm + "' not found");
    return std::nullopt;
}

int answer_help(qmp::Client& c, const emuctl::RunOptions& opts)
{
    if (opts.help_topic == "machine") {
        auto machines = call(c, "query-machines");
        if (!machines)
            return 1;
        printf("Supported machines are:\n");
        for (auto& m : *machines)
            printf("%-20s %s%s\n", m.value("name", "").c_str(), m.value("name", "") == "none" ? "empty machine" : "",
                   m.value("is-default", false) ? " (default)" : "");
        return 0;
    }
    if (opts.help_topic == "accel") {
        printf("Accelerators supported in QEMU binary:\ntcg\nkvm\n");
        return 0;
    }
    if (opts.help_topic == "cpu") {
        auto models = call(c, "query-cpu-definitions");
        if (!models)
            return 1;
        printf("Available CPUs:\n");
        for (auto& m : *models)
            printf("  %s\n", m.value("name", "").c_str());
        return 0;
    }
    if (opts.help_topic == "device") {
        if (!opts.help_arg.empty()) {
            // As QEMU: "NAME options:" and one property per line.
            auto props = call(c, "device-list-properties", {{"typename", opts.help_arg}});
            if (!props)
                return 1;
            printf("%s options:\n", opts.help_arg.c_str());
            for (auto& p : *props) {
                std::string left = p.value("name", "") + "=<" + p.value("type", "") + ">";
                std::string text = p.value("description", "");
                if (p.contains("default-value"))
                    text += " (default: " + p["default-value"].get<std::string>() + ")";
                printf("  %-24s - %s\n", left.c_str(), text.c_str());
            }
            return 0;
        }
        auto types = call(c, "qom-list-types", {{"implements", "device"}});
        if (!types)
            return 1;
        // Grouped by category, each with its bus, as QEMU's -device help.
        std::map<std::string, std::vector<std::pair<std::string, std::string>>> by_category;
        for (auto& t : *types) {
            std::string name = t.value("name", ""), parent = t.value("parent", "");
            std::string bus = parent == "isa-device" ? "ISA" : parent == "pci-device" ? "PCI"
                            : parent == "ide-device" ? "IDE" : "System";
            bool storage = name.starts_with("ide-") || name.find("-blk") != std::string::npos;
            by_category[storage ? "Storage" : "Misc"].emplace_back(name, bus);
        }
        for (auto& [category, devices] : by_category) {
            printf("%s devices:\n", category.c_str());
            for (auto& [name, bus] : devices)
                printf("name \"%s\", bus %s\n", name.c_str(), bus.c_str());
            printf("\n");
        }
        return 0;
    }
    return fail("no help for '" + opts.help_topic + "'");
}

int cmd_run(const Global& g, const std::vector<std::string>& args)
{
    char cwd[PATH_MAX];
    if (!getcwd(cwd, sizeof cwd))
        return fail(std::string("getcwd: ") + strerror(errno));
    auto opts = emuctl::translate_flags(args, cwd);
    if (!opts)
        return fail(opts.error().message);
    auto client = connect_daemon(g);
    if (!client)
        return fail(client.error());
    if (!opts->help_topic.empty())
        return answer_help(*client, *opts);
    auto summary = call(*client, "__org.emud_vm-create", {{"config", opts->config}, {"start", false}});
    if (!summary)
        return 1;
    std::string name = (*summary)["name"];
    if (!opts->pidfile.empty()) {
        // The process whose life is the VM's: emuctl in the foreground, emud
        // itself with -daemonize (it keeps the VM after emuctl exits).
        pid_t pid = getpid();
        if (opts->daemonize) {
            ucred cred{};
            socklen_t len = sizeof cred;
            if (getsockopt(client->fd(), SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0)
                pid = cred.pid;
        }
        FILE* f = fopen(opts->pidfile.c_str(), "w");
        if (!f) {
            call(*client, "__org.emud_vm-destroy", {{"name", name}});
            return fail("-pidfile " + opts->pidfile + ": " + strerror(errno));
        }
        fprintf(f, "%d\n", int(pid));
        fclose(f);
    }
    emuctl::AttachOptions attach;
    attach.name = name;
    attach.qmp_path = endpoint(*summary, "qmp");
    attach.hmp_path = endpoint(*summary, "hmp");
    if (opts->attach_console && !opts->daemonize)
        attach.console_path = endpoint(*summary, "console");
    bool paused = opts->config.value("start-paused", false);
    if (opts->daemonize) {
        if (!paused && !vm_call(*client, name, "cont"))
            return 1;
        return 0;
    }
    // Attach first, then start: not a byte of console output is missed.
    attach.start_vm = !paused;
    // "-monitor stdio" alone: the terminal is the human monitor, not a console.
    bool console_is_serial = false, console_has_monitor = opts->console_has_monitor;
    for (auto& cd : opts->config.value("chardevs", json::array())) {
        if (cd.value("backend", "") != "console")
            continue;
        for (auto& s : opts->config.value("serials", json::array()))
            console_is_serial |= s == cd["id"];
        if (cd.contains("props") && cd["props"].value("signal", "") == "on")
            attach.ctrl_c_ends_vm = true;
        for (auto& m : opts->config.value("monitors", json::array()))
            console_has_monitor |= m.value("chardev", "") == cd["id"].get<std::string>();
    }
    if (!attach.console_path.empty() && !console_is_serial && console_has_monitor) {
        attach.console_path.clear();
        attach.start_in_monitor = true;
    }
    int rc = emuctl::attach_terminal(attach);
    if (!opts->pidfile.empty())
        unlink(opts->pidfile.c_str());
    return rc;
}

int cmd_list(qmp::Client& c)
{
    auto list = call(c, "__org.emud_vm-list");
    if (!list)
        return 1;
    printf("%-20s %-15s %-10s %5s %10s\n", "NAME", "STATUS", "MACHINE", "CPUS", "MEMORY");
    for (auto& v : *list)
        printf("%-20s %-15s %-10s %5d %9lluM\n", v.value("name", "").c_str(), v.value("status", "").c_str(),
               v.value("machine", "").c_str(), v.value("cpus", 0),
               static_cast<unsigned long long>(v.value("memory", uint64_t(0)) >> 20));
    return 0;
}

int cmd_qmp(const Global& g, qmp::Client& c, const std::string& vm, const std::string& text)
{
    std::string address = g.address;
    if (vm != "-") {
        auto summary = find_vm(c, vm);
        if (!summary)
            return 1;
        address = endpoint(*summary, "qmp");
        if (address.empty())
            return fail(vm + ": no local QMP socket");
    }
    json request = json::parse(text, nullptr, false);
    if (request.is_discarded() || !request.is_object())
        return fail("qmp: '" + text + "' is not a JSON object such as {\"execute\": \"query-status\"}");
    auto client = qmp::Client::open(address);
    if (!client)
        return fail(client.error());
    if (auto sent = client->send_raw(request.dump() + "\r\n"); !sent)
        return fail(sent.error());
    for (;;) {
        auto msg = client->next_message(30000);
        if (!msg)
            return fail("qmp: " + msg.error());
        if (msg->contains("event"))
            continue;
        printf("%s\n", msg->dump().c_str());
        return msg->contains("error") ? 1 : 0;
    }
}

int cmd_monitor(qmp::Client& c, const std::string& vm)
{
    auto summary = find_vm(c, vm);
    if (!summary)
        return 1;
    emuctl::AttachOptions a;
    a.name = vm;
    a.hmp_path = endpoint(*summary, "hmp");
    a.run_mode = false;
    a.start_in_monitor = true;
    return emuctl::attach_terminal(a);
}

int cmd_console(qmp::Client& c, const std::string& vm)
{
    auto summary = find_vm(c, vm);
    if (!summary)
        return 1;
    emuctl::AttachOptions a;
    a.name = vm;
    a.console_path = endpoint(*summary, "console");
    a.hmp_path = endpoint(*summary, "hmp");
    a.run_mode = false;
    if (a.console_path.empty())
        return fail(vm + ": the VM has no console (its serial ports are not on the 'console' backend)");
    fprintf(stderr, "[attached to %s; Ctrl-a x detaches, Ctrl-a h helps]\n", vm.c_str());
    return emuctl::attach_terminal(a);
}

} // namespace

int main(int argc, char** argv)
{
    Global g;
    g.address = default_socket();
    int i = 1;
    for (; i < argc; i++) {
        std::string a = argv[i];
        if ((a == "--socket" || a == "-s") && i + 1 < argc)
            g.address = argv[++i];
        else if (a == "--connect" && i + 1 < argc)
            g.address = std::string("tcp:") + argv[++i];
        else if (a == "--start-daemon")
            g.start_daemon = true;
        else if (a == "--help" || a == "-h" || a == "help") {
            fputs(k_usage, stdout);
            return 0;
        } else if (a == "--version") {
            printf("emuctl 0.1.0\n");
            return 0;
        } else if (a.rfind("-", 0) == 0)
            return fail("unknown option '" + a + "' (see emuctl --help)");
        else
            break;
    }
    if (i >= argc) {
        fputs(k_usage, stderr);
        return 2;
    }
    std::string command = argv[i++];
    std::vector<std::string> rest(argv + i, argv + argc);
    if (command == "run")
        return cmd_run(g, rest);

    static const std::vector<std::pair<std::string, int>> arity = {
        {"list", 0}, {"status", 1}, {"stop", 1},    {"cont", 1},    {"reset", 1},
        {"powerdown", 1}, {"destroy", 1}, {"qmp", 2}, {"monitor", 1}, {"console", 1}};
    auto it = std::find_if(arity.begin(), arity.end(), [&](auto& p) { return p.first == command; });
    if (it == arity.end())
        return fail("unknown command '" + command + "' (see emuctl --help)");
    if (int(rest.size()) != it->second)
        return fail(command + ": expects " + std::to_string(it->second) + " argument(s)");
    auto client = connect_daemon(g);
    if (!client)
        return fail(client.error());
    qmp::Client& c = *client;
    if (command == "list")
        return cmd_list(c);
    if (command == "qmp")
        return cmd_qmp(g, c, rest[0], rest[1]);
    if (command == "monitor")
        return cmd_monitor(c, rest[0]);
    if (command == "console")
        return cmd_console(c, rest[0]);
    if (command == "destroy")
        return call(c, "__org.emud_vm-destroy", {{"name", rest[0]}}) ? 0 : 1;
    if (command == "status") {
        auto s = vm_call(c, rest[0], "query-status");
        if (!s)
            return 1;
        printf("%s: %s\n", rest[0].c_str(), (*s)["status"].get<std::string>().c_str());
        return 0;
    }
    static const std::pair<const char*, const char*> actions[] = {
        {"stop", "stop"}, {"cont", "cont"}, {"reset", "system_reset"}, {"powerdown", "system_powerdown"}};
    for (auto& [name, qmp_command] : actions)
        if (command == name)
            return vm_call(c, rest[0], qmp_command) ? 0 : 1;
    return fail("unknown command '" + command + "'");
}
