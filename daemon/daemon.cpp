#include "daemon/daemon.h"

#include "common/log.h"
#include "daemon/sessions.h"
#include "daemon/stream.h"
#include "daemon/vm.h"

#include <cerrno>
#include <cstring>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>

namespace emu::daemon {

using nlohmann::json;

Daemon::Daemon(Loop& loop, Options options)
    : m_loop(loop), m_options(std::move(options)), m_dispatcher(qmp::Schema::builtin()), m_kvm(kvm::probe())
{
    register_common_commands(m_dispatcher);
    register_vm_commands(m_dispatcher);
    register_daemon_commands(m_dispatcher);
    register_chardev_commands(m_dispatcher);
    register_block_commands(m_dispatcher);
    register_nbd_commands(m_dispatcher);
    register_object_commands(m_dispatcher);
    register_block_op_commands(m_dispatcher);
    if (auto missing = m_dispatcher.mismatches(); !missing.empty()) {
        for (auto& m : missing)
            log_error("QMP schema and handlers disagree: {}", m);
        abort();
    }
    m_dispatcher.set_check_returns(m_options.check_returns);
}

Daemon::~Daemon()
{
    if (!m_shutting_down)
        shutdown(devices::ShutdownCause::HostSignal);
}

std::expected<void, std::string> Daemon::start()
{
    if (mkdir(m_options.state_dir.c_str(), 0700) != 0 && errno != EEXIST)
        return std::unexpected("cannot create state directory " + m_options.state_dir + ": " + strerror(errno));
    auto factory = [this]() -> Peer* { return new QmpSession(*this, nullptr); };
    // systemd socket activation hands us the control socket already listening.
    int passed = sd_listen_fds(1);
    for (int i = 0; i < passed; i++) {
        auto l = Listener::adopt(m_loop, SD_LISTEN_FDS_START + i, factory, "control");
        if (!l)
            return std::unexpected(l.error());
        m_listeners.push_back(*l);
        m_control_addresses.push_back((*l)->address());
    }
    if (passed <= 0) {
        auto l = Listener::open(m_loop, "unix:" + m_options.socket_path, factory, "control");
        if (!l)
            return std::unexpected(l.error());
        m_listeners.push_back(*l);
        m_control_addresses.push_back((*l)->address());
    }
    if (!m_options.listen.empty()) {
        auto l = Listener::open(m_loop, "tcp:" + m_options.listen, factory, "control");
        if (!l)
            return std::unexpected(l.error());
        m_listeners.push_back(*l);
        m_control_addresses.push_back((*l)->address());
    }
    for (auto& a : m_control_addresses)
        log_info("listening on {}", a);
    return {};
}

void Daemon::shutdown(devices::ShutdownCause cause)
{
    if (m_shutting_down)
        return;
    m_shutting_down = true;
    sd_notify(0, "STOPPING=1");
    std::vector<std::string> names;
    for (auto& [name, vm] : m_vms)
        names.push_back(name);
    for (auto& name : names) {
        if (Vm* vm = find_vm(name))
            vm->events().emit("SHUTDOWN", {{"guest", false}, {"reason", devices::shutdown_cause_name(cause)}});
        destroy_vm(name, cause);
    }
    for (Listener* l : m_listeners)
        l->close();
    m_listeners.clear();
    m_loop.close();
}

qmp::Result<Vm*> Daemon::create_vm(const json& config, bool start)
{
    if (m_shutting_down)
        return qmp::fail("emud is shutting down");
    std::string fallback;
    do
        fallback = "vm" + std::to_string(m_next_vm_number++);
    while (m_vms.count(fallback));
    auto spec = parse_vm_config(config, m_kvm, [this](const std::string& n) { return m_vms.count(n) > 0; },
                                fallback);
    if (!spec)
        return std::unexpected(spec.error());
    auto vm = Vm::create(*this, std::move(*spec));
    if (!vm)
        return std::unexpected(vm.error());
    Vm* raw = vm->get();
    m_vms[raw->name()] = std::move(*vm);
    m_events.emit("__org.emud_VM_CREATED", {{"name", raw->name()}});
    if (start && !raw->config().value("start-paused", false))
        raw->start();
    return raw;
}

Vm* Daemon::find_vm(const std::string& name)
{
    auto it = m_vms.find(name);
    return it == m_vms.end() ? nullptr : it->second.get();
}

std::vector<Vm*> Daemon::vms()
{
    std::vector<Vm*> out;
    for (auto& [name, vm] : m_vms)
        out.push_back(vm.get());
    return out;
}

void Daemon::destroy_vm(const std::string& name, devices::ShutdownCause cause)
{
    auto it = m_vms.find(name);
    if (it == m_vms.end())
        return;
    std::unique_ptr<Vm> vm = std::move(it->second);
    m_vms.erase(it);
    vm->close();
    log_info("{}: destroyed ({})", name, devices::shutdown_cause_name(cause));
    m_events.emit("__org.emud_VM_DESTROYED", {{"name", name}, {"reason", devices::shutdown_cause_name(cause)}});
}

} // namespace emu::daemon
