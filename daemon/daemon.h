// daemon/daemon.h — the daemon: options, control endpoints and the VM registry.
#pragma once

#include "daemon/dispatcher.h"
#include "daemon/events.h"
#include "daemon/loop.h"
#include "devices/machine.h"
#include "engine/kvm/probe.h"

#include <map>
#include <memory>
#include <string>
#include <vector>

namespace emu::daemon {

class Listener;
class Vm;

struct Options {
    std::string socket_path;  // control socket (unix)
    std::string listen;       // optional TCP control endpoint, "HOST:PORT"
    std::string state_dir;    // VM endpoint sockets live here
    bool daemonize = false;
    std::string pidfile;
    bool check_returns = false; // abort when a reply or event breaks the schema (tests)
};

class Daemon {
public:
    Daemon(Loop& loop, Options options);
    ~Daemon();

    // Opens the control endpoints (or adopts systemd's socket).
    std::expected<void, std::string> start();
    // Ends every VM and closes every endpoint; the loop then runs dry.
    void shutdown(devices::ShutdownCause cause);
    bool shutting_down() const { return m_shutting_down; }

    Loop& loop() { return m_loop; }
    const Options& options() const { return m_options; }
    Dispatcher& dispatcher() { return m_dispatcher; }
    EventHub& events() { return m_events; }
    const kvm::ProbeResult& kvm() const { return m_kvm; }
    const std::vector<std::string>& control_addresses() const { return m_control_addresses; }

    qmp::Result<Vm*> create_vm(const nlohmann::json& config, bool start);
    Vm* find_vm(const std::string& name);
    std::vector<Vm*> vms();
    // Ends a VM now: closes its endpoints and frees it.
    void destroy_vm(const std::string& name, devices::ShutdownCause cause);

private:
    Loop& m_loop;
    Options m_options;
    Dispatcher m_dispatcher;
    EventHub m_events;
    kvm::ProbeResult m_kvm;
    std::vector<Listener*> m_listeners;
    std::vector<std::string> m_control_addresses;
    std::map<std::string, std::unique_ptr<Vm>> m_vms;
    unsigned m_next_vm_number = 0;
    bool m_shutting_down = false;
};

} // namespace emu::daemon
