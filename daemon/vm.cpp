#include "daemon/vm.h"

#include "common/log.h"
#include "daemon/daemon.h"
#include "daemon/sessions.h"
#include "daemon/stream.h"
#include "protocol/hmp/hmp.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <sys/stat.h>
#include <unistd.h>

namespace emu::daemon {

using nlohmann::json;
using devices::ShutdownCause;

const char* run_state_name(RunState state)
{
    static const char* const names[] = {"debug",     "inmigrate",      "internal-error", "io-error",
                                        "paused",    "postmigrate",    "prelaunch",      "finish-migrate",
                                        "restore-vm", "running",       "save-vm",        "shutdown",
                                        "suspended", "watchdog",       "guest-panicked", "colo"};
    return names[static_cast<int>(state)];
}

qmp::Result<std::unique_ptr<Vm>> Vm::create(Daemon& daemon, VmSpec spec)
{
    std::unique_ptr<Vm> vm(new Vm(daemon, std::move(spec)));
    if (auto ok = vm->make_backends(); !ok)
        return std::unexpected(ok.error());
    if (auto ok = vm->open_drives(); !ok)
        return std::unexpected(ok.error());
    vm->m_nbd = std::make_unique<NbdService>(daemon.loop(), vm->name(), vm->m_events);
    const devices::MachineClass* mc = devices::find_machine_class(vm->m_spec.machine.type);
    auto machine = mc->create(vm->m_spec.machine, *vm);
    if (!machine)
        return qmp::fail("VM '" + vm->name() + "': " + machine.error());
    vm->m_machine = std::move(*machine);
    if (vm->m_console_backend)
        vm->m_console_backend->set_machine(vm->m_machine.get());
    for (auto& [id, chardev] : vm->m_chardevs)
        chardev->set_machine(vm->m_machine.get());
    if (auto ok = vm->open_endpoints(); !ok) {
        vm->close();
        return std::unexpected(ok.error());
    }
    log_info("{}: created (machine {}, accel {}, {} MiB)", vm->name(), vm->m_spec.machine.type,
             vm->m_spec.machine.accel, vm->m_spec.machine.ram_size >> 20);
    return vm;
}

Vm::~Vm() { close(); }

namespace {

// A socket server that only serves a monitor is a monitor endpoint
// (open_endpoint: several clients, QMP or HMP), not a chardev backend.
bool is_monitor_endpoint(const ChardevSpec& c, const VmSpec& spec)
{
    if (c.backend != "socket" || !c.server || c.mux)
        return false;
    return std::any_of(spec.monitors.begin(), spec.monitors.end(),
                       [&](const MonitorSpec& m) { return m.chardev == c.id; });
}

} // namespace

qmp::Result<void> Vm::make_backends()
{
    for (ChardevSpec& c : m_spec.chardevs) {
        if (c.backend == "console" || is_monitor_endpoint(c, m_spec))
            continue;
        c.vm = name();
        auto chardev = open_chardev(m_daemon.loop(), c);
        if (!chardev)
            return qmp::fail("VM '" + name() + "': " + chardev.error().desc);
        if (c.backend == "socket" && c.server && c.wait) {
            m_waiting_for_clients++;
            (*chardev)->on_first_client = [this] { client_arrived(); };
        }
        if (c.mux)
            (*chardev)->on_quit = [this] { quit(ShutdownCause::HostUi, false); };
        m_chardevs[c.id] = chardev->get();
        m_backends.push_back(std::move(*chardev));
    }
    // Every chardev a device can use, by id (the console one made on first use).
    for (const ChardevSpec& c : m_spec.chardevs) {
        if (c.backend == "console") {
            if (!m_console_backend) {
                auto backend = std::make_unique<ConsoleBackend>(
                    m_daemon.loop(), [this](std::string_view bytes) { console_output(bytes); });
                m_console_backend = backend.get();
                m_backends.push_back(std::move(backend));
            }
            m_spec.machine.chardevs[c.id] = m_console_backend;
        } else if (auto it = m_chardevs.find(c.id); it != m_chardevs.end()) {
            m_spec.machine.chardevs[c.id] = it->second;
        }
    }
    for (const std::string& id : m_spec.serials)
        m_spec.machine.serials.push_back(m_spec.machine.chardevs.at(id));
    // Human monitors on chardevs (a pty, a client socket, a mux=on socket...).
    for (const MonitorSpec& mon : m_spec.monitors) {
        auto it = m_chardevs.find(mon.chardev);
        if (it == m_chardevs.end())
            continue; // the console (emuctl's terminal) or a monitor endpoint
        MonitorHooks hooks;
        hooks.banner = hmp::banner(m_daemon.dispatcher().schema().version());
        hooks.run = [this](const std::string& line) {
            Daemon& daemon = m_daemon;
            return hmp::run(line, [&](const std::string& command, const json& args) {
                Context ctx{daemon, qmp::Scope::Vm, this};
                return daemon.dispatcher().execute(ctx, command, args);
            });
        };
        it->second->attach_monitor(std::move(hooks));
    }
    return {};
}

qmp::Result<void> Vm::open_drives()
{
    if (auto ok = open_blockdevs(); !ok)
        return ok;
    for (DriveSpec& spec : m_spec.drives) {
        if (std::string why = node_name_conflict(spec.node_name); !why.empty() && !spec.node_name.starts_with('#'))
            return qmp::fail("VM '" + name() + "': drive '" + spec.id + "': " + why);
        auto drive = Drive::open(spec, m_daemon.options().state_dir, name());
        if (!drive)
            return qmp::fail("VM '" + name() + "': " + drive.error().desc);
        if ((*drive)->backend())
            name_layers((*drive)->backend()->driver());
        devices::DriveConfig config = (*drive)->device_config();
        m_spec.machine.drives[spec.id] = config;
        m_spec.machine.drives[spec.node_name] = config;
        m_drives.push_back(std::move(*drive));
    }
    // -device …,drive=NODE with a -blockdev node: the node becomes a drive.
    for (const devices::DeviceConfig& device : m_spec.machine.devices) {
        auto it = device.props.find("drive");
        if (it == device.props.end() || m_spec.machine.drives.count(it->second))
            continue;
        BlockNode* node = find_node(it->second);
        if (!node || !node->backend)
            return qmp::fail("VM '" + name() + "': device '" + device.driver + "': drive '" + it->second +
                             "' not found");
        if (!node->parent.empty())
            return qmp::fail("VM '" + name() + "': device '" + device.driver + "': Node '" + node->name +
                             "' is busy: node is used as " + node->role + " of '" + node->parent + "'");
        DriveSpec spec;
        spec.node_name = node->name;
        spec.interface = "none";
        spec.read_only = node->backend->read_only();
        spec.cache = node->cache;
        spec.detect_zeroes = node->detect_zeroes;
        spec.discard = node->discard;
        auto drive = Drive::adopt(std::move(spec), std::move(node->backend));
        node->in_drive = true;
        m_spec.machine.drives[node->name] = drive->device_config();
        m_drives.push_back(std::move(drive));
    }
    return {};
}

Drive* Vm::find_drive(const std::string& id_or_node) const
{
    if (id_or_node.empty())
        return nullptr;
    for (auto& d : m_drives)
        if (d->spec().id == id_or_node || d->spec().node_name == id_or_node || d->root_node_name() == id_or_node)
            return d.get();
    return nullptr;
}

json Vm::chardev_info() const
{
    auto used = [&](const std::string& id) {
        auto device_uses = [&](const devices::DeviceConfig& d) {
            auto it = d.props.find("chardev");
            return it != d.props.end() && it->second == id;
        };
        return std::count(m_spec.serials.begin(), m_spec.serials.end(), id) > 0 ||
               std::any_of(m_spec.monitors.begin(), m_spec.monitors.end(),
                           [&](const MonitorSpec& m) { return m.chardev == id; }) ||
               std::any_of(m_spec.machine.devices.begin(), m_spec.machine.devices.end(), device_uses);
    };
    json list = json::array();
    for (const ChardevSpec& c : m_spec.chardevs) {
        if (c.backend == "console") {
            list.push_back({{"label", c.id}, {"filename", "stdio"}, {"frontend-open", used(c.id)}});
        } else if (auto l = m_chardev_listeners.find(c.id); l != m_chardev_listeners.end()) {
            std::string prefix = l->second->peer_count() ? "" : "disconnected:";
            list.push_back({{"label", c.id},
                            {"filename", prefix + l->second->address() + ",server"},
                            {"frontend-open", true}});
        } else if (auto cd = m_chardevs.find(c.id); cd != m_chardevs.end()) {
            const Chardev& chardev = *cd->second;
            if (c.mux) {
                // As QEMU: the mux under the id, the backend under id-base.
                list.push_back({{"label", c.id}, {"filename", "mux"}, {"frontend-open", chardev.frontend_open()}});
                list.push_back({{"label", c.id + "-base"}, {"filename", chardev.filename()}, {"frontend-open", true}});
            } else {
                list.push_back(
                    {{"label", c.id}, {"filename", chardev.filename()}, {"frontend-open", chardev.frontend_open()}});
            }
        }
    }
    return list;
}

Chardev* Vm::find_chardev(const std::string& id) const
{
    auto it = m_chardevs.find(id);
    return it == m_chardevs.end() ? nullptr : it->second;
}

qmp::Result<void> Vm::open_endpoints()
{
    m_dir = m_daemon.options().state_dir + "/vms/" + name();
    std::string parent = m_daemon.options().state_dir + "/vms";
    mkdir(parent.c_str(), 0700);
    if (mkdir(m_dir.c_str(), 0700) != 0 && errno != EEXIST)
        return qmp::fail("VM '" + name() + "': cannot create " + m_dir + ": " + strerror(errno));
    if (auto ok = open_endpoint("unix:" + m_dir + "/qmp.sock", "qmp", false, false); !ok)
        return ok;
    if (auto ok = open_endpoint("unix:" + m_dir + "/hmp.sock", "hmp", false, false); !ok)
        return ok;
    bool has_console = false;
    for (auto& c : m_spec.chardevs)
        has_console |= c.backend == "console";
    if (has_console)
        if (auto ok = open_endpoint("unix:" + m_dir + "/console.sock", "console", false, false); !ok)
            return ok;
    for (auto& mon : m_spec.monitors) {
        for (auto& c : m_spec.chardevs) {
            if (c.id != mon.chardev || c.backend != "socket")
                continue;
            if (!is_monitor_endpoint(c, m_spec))
                continue;
            if (auto ok = open_endpoint(c.address, mon.control ? "qmp" : "hmp", mon.pretty, c.wait); !ok)
                return ok;
            m_chardev_listeners[c.id] = m_listeners.back();
        }
    }
    return {};
}

qmp::Result<void> Vm::open_endpoint(const std::string& address, const std::string& protocol, bool pretty, bool wait)
{
    Daemon& daemon = m_daemon;
    Listener::Factory factory;
    if (protocol == "qmp")
        factory = [this, &daemon, pretty]() -> Peer* { return new QmpSession(daemon, this, pretty); };
    else if (protocol == "hmp")
        factory = [this, &daemon]() -> Peer* { return new HmpSession(daemon, this); };
    else
        factory = [this]() -> Peer* { return new ConsoleSession(this); };
    auto listener = Listener::open(daemon.loop(), address, std::move(factory), name() + " " + protocol);
    if (!listener)
        return qmp::fail("VM '" + name() + "': " + listener.error());
    m_listeners.push_back(*listener);
    m_endpoints.push_back({{"protocol", protocol}, {"address", (*listener)->address()}});
    if (wait) {
        // Like QEMU's server sockets with wait=on: the VM does not run until a
        // client is there to see it start.
        m_waiting_for_clients++;
        auto waiting = std::make_shared<bool>(true);
        (*listener)->on_accept = [this, waiting](Peer&) {
            if (*waiting) {
                *waiting = false;
                client_arrived();
            }
        };
        log_info("{}: waiting for a client on {} before starting", name(), (*listener)->address());
    }
    return {};
}

void Vm::client_arrived()
{
    if (--m_waiting_for_clients == 0 && m_start_requested && m_state == RunState::Prelaunch)
        start();
}

void Vm::close()
{
    if (m_closed)
        return;
    m_closed = true;
    stop_jobs();
    if (m_machine)
        m_machine->pause();
    for (Listener* l : m_listeners)
        l->close();
    m_listeners.clear();
    m_nbd.reset();     // NBD clients disconnected before the images close
    m_machine.reset(); // its disk devices drain first
    m_drives.clear();
    while (!m_nodes.empty()) // later nodes may borrow earlier ones
        m_nodes.pop_back();
    m_console_backend = nullptr;
    m_chardevs.clear();
    m_chardev_listeners.clear();
    m_backends.clear();
    if (!m_dir.empty())
        rmdir(m_dir.c_str());
}

json Vm::summary() const
{
    json s = {{"name", name()},
              {"uuid", uuid()},
              {"status", run_state_name(m_state)},
              {"running", m_state == RunState::Running},
              {"machine", m_spec.machine.type},
              {"cpus", m_spec.machine.cpus},
              {"memory", m_spec.machine.ram_size},
              {"endpoints", m_endpoints}};
    if (m_state == RunState::InternalError)
        s["error"] = m_error;
    return s;
}

void Vm::set_state(RunState state, const std::string& reason)
{
    if (state == m_state)
        return;
    m_state = state;
    json data = {{"name", name()}, {"status", run_state_name(state)}};
    if (!reason.empty())
        data["reason"] = reason;
    m_daemon.events().emit("__org.emud_VM_STATE_CHANGED", data);
}

void Vm::start()
{
    m_start_requested = true;
    if (m_waiting_for_clients > 0 || m_state != RunState::Prelaunch)
        return;
    m_machine->resume();
    set_state(RunState::Running);
    m_events.emit("RESUME");
}

qmp::Result<void> Vm::stop()
{
    if (m_state == RunState::Running) {
        m_machine->pause();
        set_state(RunState::Paused);
        m_events.emit("STOP");
    } else if (m_state == RunState::Prelaunch) {
        // Not running: no event, as QEMU; 'cont' will start it.
        m_start_requested = false;
        set_state(RunState::Paused);
    }
    return {};
}

qmp::Result<void> Vm::cont()
{
    if (m_state == RunState::InternalError || m_state == RunState::Shutdown || m_state == RunState::GuestPanicked)
        return qmp::fail("Resetting the Virtual Machine is required");
    if (m_state == RunState::Running)
        return {};
    if (m_state == RunState::Prelaunch && m_waiting_for_clients > 0) {
        m_start_requested = true;
        return {};
    }
    if (m_state == RunState::IoError)
        m_machine->resume_block_requests();
    m_machine->resume();
    set_state(RunState::Running);
    m_events.emit("RESUME");
    return {};
}

void Vm::system_reset(ShutdownCause cause, bool guest)
{
    m_machine->reset();
    m_events.emit("RESET", {{"guest", guest}, {"reason", devices::shutdown_cause_name(cause)}});
    // As QEMU's main loop: a reset of a VM that is not running leaves it in
    // 'prelaunch' (this also clears the states that needed a reset).
    if (m_state != RunState::Running && m_state != RunState::InMigrate)
        set_state(RunState::Prelaunch);
}

void Vm::system_powerdown()
{
    m_events.emit("POWERDOWN");
    m_machine->powerdown();
}

void Vm::quit(ShutdownCause cause, bool guest)
{
    if (m_quitting)
        return;
    m_quitting = true;
    std::string vm_name = name();
    Daemon& daemon = m_daemon;
    // QEMU's order: SHUTDOWN, then the reply to the command that asked, then
    // the endpoints close. Destruction is deferred so that the reply goes out.
    m_events.emit("SHUTDOWN", {{"guest", guest}, {"reason", devices::shutdown_cause_name(cause)}});
    daemon.loop().post([&daemon, vm_name, cause] { daemon.destroy_vm(vm_name, cause); });
}

void Vm::fail(const std::string& reason)
{
    if (m_state == RunState::InternalError)
        return;
    log_error("{}: internal error: {}", name(), reason);
    bool was_running = m_state == RunState::Running;
    m_machine->pause();
    m_error = reason;
    set_state(RunState::InternalError, reason);
    if (was_running)
        m_events.emit("STOP");
    m_events.emit("__org.emud_INTERNAL_ERROR", {{"reason", reason}});
}

void Vm::console_input(std::string_view bytes)
{
    // Machine 'none' has no serial port behind the console: keys typed there
    // go nowhere, as in QEMU.
    if (m_console_backend)
        m_console_backend->input(bytes);
}

void Vm::console_output(std::string_view bytes)
{
    for (ConsoleSession* s : m_console_clients)
        s->send(bytes);
}

// --- MachineHost: may be called from a vCPU thread; hop to the loop. ------------

void Vm::on_loop(std::function<void(Vm&)> fn)
{
    std::string vm_name = name();
    Daemon& daemon = m_daemon;
    daemon.loop().post([&daemon, vm_name, fn = std::move(fn)] {
        Vm* vm = daemon.find_vm(vm_name);
        if (vm && !vm->m_quitting)
            fn(*vm);
    });
}

void Vm::request_shutdown(ShutdownCause cause)
{
    on_loop([cause](Vm& vmr) {
        Vm* vm = &vmr;
        if (vm->m_spec.no_shutdown) {
            vm->m_events.emit("SHUTDOWN", {{"guest", true}, {"reason", devices::shutdown_cause_name(cause)}});
            bool was_running = vm->m_state == RunState::Running;
            vm->m_machine->pause();
            vm->set_state(RunState::Shutdown);
            if (was_running)
                vm->m_events.emit("STOP");
            return;
        }
        vm->quit(cause, true);
    });
}

void Vm::request_reset(ShutdownCause cause)
{
    on_loop([cause](Vm& vmr) {
        Vm* vm = &vmr;
        if (vm->m_spec.no_reboot) {
            vm->quit(cause, true);
            return;
        }
        vm->system_reset(cause, true);
    });
}

void Vm::request_exit(int status)
{
    on_loop([status](Vm& vmr) {
        Vm* vm = &vmr;
        log_info("{}: the guest asked to exit with status {}", vm->name(), status);
        vm->m_events.emit("__org.emud_GUEST_EXIT", {{"status", status}});
        vm->quit(ShutdownCause::GuestShutdown, true);
    });
}

void Vm::report_internal_error(const std::string& reason)
{
    on_loop([reason](Vm& vm) { vm.fail(reason); });
}

void Vm::block_io_error(const devices::BlockIoError& e)
{
    on_loop([e](Vm& vm) {
        Drive* drive = vm.find_drive(e.drive);
        std::string action = e.stopping ? "stop" : block_error_action_name(e.action);
        if (action == "enospc")
            action = "report";
        json data = {{"device", e.drive},
                     {"node-name", drive ? drive->root_node_name() : e.drive},
                     {"operation", e.is_read ? "read" : "write"},
                     {"action", action},
                     {"nospace", e.error == ENOSPC},
                     {"reason", strerror(e.error)}};
        log_warn("{}: drive '{}': {} error: {} (action {})", vm.name(), e.drive, e.is_read ? "read" : "write",
                 strerror(e.error), action);
        vm.m_events.emit("BLOCK_IO_ERROR", data);
        if (e.stopping && vm.m_state == RunState::Running) {
            vm.m_machine->pause();
            vm.set_state(RunState::IoError);
            vm.m_events.emit("STOP");
        }
    });
}

void Vm::tray_moved(const std::string& drive, const std::string& qdev, bool open)
{
    on_loop([drive, qdev, open](Vm& vm) {
        vm.m_events.emit("DEVICE_TRAY_MOVED", {{"device", drive}, {"id", qdev}, {"tray-open", open}});
    });
}

} // namespace emu::daemon
