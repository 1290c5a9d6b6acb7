// daemon/vm_config.h — from a VmConfig document (schema-checked JSON) to
// the typed specification a VM is built from. Everything a VM cannot do yet
// is refused here, with an error naming the section and the cause.
#pragma once

#include "daemon/drives.h"
#include "devices/machine.h"
#include "engine/kvm/probe.h"
#include "protocol/qmp/error.h"

#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace emu::daemon {

struct ChardevSpec {
    std::string id;
    std::string vm; // the VM's name, for log messages (set when the VM is built)
    // console ('stdio' is read as console), null, file, pipe, pty, socket,
    // ringbuf ('memory' is read as ringbuf)
    std::string backend;
    std::map<std::string, std::string> props;
    bool mux = false;
    // file, pipe: an absolute path
    std::string path;
    bool append = false; // file
    // socket
    std::string address;   // unix:PATH or tcp:HOST:PORT
    bool server = false;
    bool wait = false;     // server waits for a client before the VM starts
    bool nodelay = false;
    int reconnect = 0;     // client: seconds between connection attempts, 0 = never
    int family = 0;        // tcp: AF_INET or AF_INET6 when ipv4/ipv6 asked for one
    // ringbuf
    uint64_t size = 64 * 1024;
};

struct MonitorSpec {
    std::string chardev;
    bool control = false; // QMP; else HMP (readline)
    bool pretty = false;
};

struct VmSpec {
    nlohmann::json config; // the document as given, with the generated name filled in
    std::string name;
    std::string uuid;
    devices::MachineConfig machine;
    bool start_paused = false;
    bool no_reboot = false;
    bool no_shutdown = false;
    std::vector<ChardevSpec> chardevs;
    std::vector<std::string> serials;
    std::vector<MonitorSpec> monitors;
    std::vector<DriveSpec> drives;
};

// 'name_in_use' tells whether a VM name is taken; 'fallback_name' is used
// when the config names none.
qmp::Result<VmSpec> parse_vm_config(const nlohmann::json& config, const kvm::ProbeResult& kvm,
                                    const std::function<bool(const std::string&)>& name_in_use,
                                    const std::string& fallback_name);

bool valid_vm_name(const std::string& name);

} // namespace emu::daemon
