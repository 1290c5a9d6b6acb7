// daemon/vm.h — one hosted VM: its run state, machine, endpoints and events.
//
// A Vm lives on the control thread. Its machine may run threads of its own
// (vCPUs); they reach the VM only through MachineHost, which posts to the
// loop. A failure inside the machine puts this VM in 'internal-error'; it
// never reaches the daemon or the other VMs.
#pragma once

#include "daemon/block_jobs.h"
#include "daemon/block_nodes.h"
#include "daemon/chardev.h"
#include "daemon/events.h"
#include "daemon/nbd_service.h"
#include "daemon/objects.h"
#include "daemon/vm_config.h"
#include "devices/machine.h"
#include "protocol/qmp/error.h"

#include <map>
#include <memory>
#include <set>
#include <string>

namespace emu::daemon {

class Daemon;
class Listener;
class ConsoleSession;

enum class RunState { Debug, InMigrate, InternalError, IoError, Paused, PostMigrate, Prelaunch, FinishMigrate,
                      RestoreVm, Running, SaveVm, Shutdown, Suspended, Watchdog, GuestPanicked, Colo };
const char* run_state_name(RunState state);

class Vm final : public devices::MachineHost {
public:
    // Builds the machine and opens the endpoints; the VM starts in 'prelaunch'.
    static qmp::Result<std::unique_ptr<Vm>> create(Daemon& daemon, VmSpec spec);
    ~Vm() override;

    const std::string& name() const { return m_spec.name; }
    const std::string& uuid() const { return m_spec.uuid; }
    const nlohmann::json& config() const { return m_spec.config; }
    RunState state() const { return m_state; }
    bool kvm_enabled() const { return m_spec.machine.accel == "kvm"; }
    EventHub& events() { return m_events; }
    nlohmann::json summary() const;
    std::vector<devices::CpuInfo> cpus() const { return m_machine->cpus(); }
    devices::Machine& machine() { return *m_machine; }

    // Actions, on the loop thread; each is one QMP command's behaviour.
    // start() runs the VM as soon as the monitors that wait for a client have one.
    void start();
    qmp::Result<void> stop();
    qmp::Result<void> cont();
    void system_reset(devices::ShutdownCause cause, bool guest);
    void system_powerdown();
    // Ends the VM: SHUTDOWN event, then the daemon destroys it (deferred, so
    // that the reply to the command that asked goes out first).
    void quit(devices::ShutdownCause cause, bool guest);
    // Puts the VM into 'internal-error' with an event.
    void fail(const std::string& reason);
    // Closes every endpoint; called by the daemon just before destruction.
    void close();

    // The character devices (query-chardev) and one of them by id.
    nlohmann::json chardev_info() const;
    Chardev* find_chardev(const std::string& id) const;

    // Console stream (the 'console' chardev backend).
    void console_attach(ConsoleSession* s) { m_console_clients.insert(s); }
    void console_detach(ConsoleSession* s) { m_console_clients.erase(s); }
    void console_input(std::string_view bytes);
    void console_output(std::string_view bytes);

    // The drives (query-block) and one of them by id or node name.
    const std::vector<std::unique_ptr<Drive>>& drives() const { return m_drives; }
    Drive* find_drive(const std::string& id_or_node) const;

    // The VM's NBD server (nbd-server-*, block-export-*) and its objects
    // (object-add: TLS credentials).
    NbdService& nbd() { return *m_nbd; }
    Objects& objects() { return m_objects; }
    // The block graph (daemon/vm_block.cpp): monitor-owned nodes
    // (blockdev-add, -blockdev), node names, block jobs.
    std::vector<std::unique_ptr<BlockNode>>& nodes() { return m_nodes; }
    BlockNode* find_node(const std::string& name) const;
    // Takes a node blockdev-add opened: the nodes it borrows become its children.
    void add_node(std::unique_ptr<BlockNode> node);
    NodeEnv node_env();
    // Why `name` cannot name a new node ("" if it can), QEMU's words.
    std::string node_name_conflict(const std::string& name) const;
    std::string auto_node_name();
    // Gives every unnamed layer (and file child) of a chain a "#block…" name.
    void name_layers(storage::BlockDriver& top);
    // Forgets nodes whose driver left every chain (a commit dropped them).
    void prune_nodes();
    // Every named driver of the VM: drive chains, then standalone nodes.
    std::vector<storage::BlockDriver*> named_drivers() const;
    // The job working on a drive's backend, if any.
    CommitJob* job_on(const storage::BlockBackend* backend) const;
    CommitJob* find_job(const std::string& id) const;
    std::vector<CommitJob*> jobs() const;
    // Starts a commit job; its events go out on this VM's endpoint.
    qmp::Result<void> start_commit(CommitJob::Params params, Drive* drive);

    // MachineHost, callable from any thread.
    // Runs fn on the loop thread if this VM still exists then and is not quitting.
    void on_loop(std::function<void(Vm&)> fn);

    void request_shutdown(devices::ShutdownCause cause) override;
    void request_reset(devices::ShutdownCause cause) override;
    void report_internal_error(const std::string& reason) override;
    void request_exit(int status) override;
    void block_io_error(const devices::BlockIoError& error) override;
    void tray_moved(const std::string& drive, const std::string& qdev, bool open) override;

private:
    Vm(Daemon& daemon, VmSpec spec) : m_daemon(daemon), m_spec(std::move(spec)) {}
    qmp::Result<void> make_backends();
    qmp::Result<void> open_drives();
    qmp::Result<void> open_blockdevs();
    void job_progress(const std::string& id, CommitJob::Outcome outcome, const std::string& error);
    void stop_jobs();
    qmp::Result<void> open_endpoints();
    qmp::Result<void> open_endpoint(const std::string& address, const std::string& protocol, bool pretty,
                                    bool wait);
    void set_state(RunState state, const std::string& reason = {});
    void client_arrived();

    Daemon& m_daemon;
    VmSpec m_spec;
    std::vector<std::unique_ptr<devices::CharBackend>> m_backends; // outlive the machine (see close())
    ConsoleBackend* m_console_backend = nullptr;
    std::map<std::string, Chardev*> m_chardevs;         // by id: the backends in m_backends but the console
    std::map<std::string, Listener*> m_chardev_listeners; // socket servers that serve monitors (open_endpoint)
    std::vector<std::unique_ptr<BlockNode>> m_nodes; // outlive the drives, which may borrow them
    std::vector<std::unique_ptr<Drive>> m_drives; // outlive the machine (see close())
    std::unique_ptr<NbdService> m_nbd;             // ends before the drives (see close())
    Objects m_objects;
    struct JobEntry {
        std::unique_ptr<CommitJob> job;
        const storage::BlockBackend* backend = nullptr;
        Drive* drive = nullptr;
    };
    std::map<std::string, JobEntry> m_jobs;
    unsigned m_next_node = 200;
    std::unique_ptr<devices::Machine> m_machine;
    RunState m_state = RunState::Prelaunch;
    std::string m_error;
    std::string m_dir;
    EventHub m_events;
    std::vector<Listener*> m_listeners;
    std::vector<nlohmann::json> m_endpoints; // VmEndpoint documents
    std::set<ConsoleSession*> m_console_clients;
    int m_waiting_for_clients = 0; // wait=on server monitors still without a client
    bool m_start_requested = false;
    bool m_quitting = false;
    bool m_closed = false;
};

} // namespace emu::daemon
