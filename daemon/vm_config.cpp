#include "daemon/vm_config.h"

#include "engine/x86/cpuid.h"

#include <algorithm>
#include <cctype>
#include <optional>
#include <regex>
#include <set>
#include <sys/socket.h>

namespace emu::daemon {

using nlohmann::json;

namespace {

// What the config may name that emud cannot do yet, and what to say then.
constexpr std::pair<const char*, const char*> k_unsupported_sections[] = {
    {"netdevs", "network backends are not supported yet"},
    {"vnc", "the VNC server is not supported yet"},
    {"incoming", "incoming migration is not supported yet"},
};


std::string prop_string(const json& v)
{
    if (v.is_string())
        return v.get<std::string>();
    if (v.is_boolean())
        return v.get<bool>() ? "on" : "off";
    return v.dump();
}

qmp::Result<std::map<std::string, std::string>> props_of(const json& section, const std::string& where)
{
    std::map<std::string, std::string> out;
    auto it = section.find("props");
    if (it == section.end() || it->is_null())
        return out;
    if (!it->is_object())
        return qmp::fail(where + ": 'props' must be an object");
    for (auto& [k, v] : it->items()) {
        if (v.is_object() || v.is_array() || v.is_null())
            return qmp::fail(where + ": property '" + k + "' must be a string, number or boolean");
        out[k] = prop_string(v);
    }
    return out;
}

qmp::Result<bool> parse_bool(const std::string& value, const std::string& where)
{
    if (value == "on" || value == "yes" || value == "true")
        return true;
    if (value == "off" || value == "no" || value == "false")
        return false;
    return qmp::fail(where + ": '" + value + "' is not a boolean (use on or off)");
}

bool valid_uuid(const std::string& s)
{
    static const std::regex re("^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$");
    return std::regex_match(s, re);
}

qmp::Result<std::string> choose_accel(const json& config, const kvm::ProbeResult& kvm,
                                      std::map<std::string, std::string>& accel_props)
{
    json list = config.value("accel", json::array());
    if (list.empty())
        list.push_back({{"type", "tcg"}});
    std::string why_not;
    for (auto& a : list) {
        std::string type = a["type"].get<std::string>();
        auto props = props_of(a, "accel " + type);
        if (!props)
            return std::unexpected(props.error());
        if (type == "tcg") {
            for (auto& [k, v] : *props) {
                if (k != "thread")
                    return qmp::fail("accel tcg: property '" + k + "' is unknown");
                if (v != "single" && v != "multi")
                    return qmp::fail("accel tcg: thread must be 'single' or 'multi', not '" + v + "'");
            }
            accel_props = *props;
            return type;
        }
        if (type == "kvm") {
            if (!props->empty())
                return qmp::fail("accel kvm: property '" + props->begin()->first + "' is unknown");
            if (kvm.present) {
                accel_props = *props;
                return type;
            }
            why_not = "accel kvm: " + kvm.reason;
            continue;
        }
        return qmp::fail("invalid accelerator " + type);
    }
    return qmp::fail(why_not.empty() ? "no usable accelerator" : why_not, qmp::ErrorClass::KVMMissingCap);
}

// "65536", "64k", "1M": a byte count with an optional binary suffix.
std::optional<uint64_t> parse_size(const std::string& text)
{
    if (text.empty() || !std::isdigit(static_cast<unsigned char>(text[0])))
        return std::nullopt;
    size_t end = 0;
    uint64_t value = 0;
    try {
        value = std::stoull(text, &end);
    } catch (const std::exception&) {
        return std::nullopt;
    }
    std::string suffix = text.substr(end);
    int shift = 0;
    if (suffix == "" || suffix == "b" || suffix == "B")
        shift = 0;
    else if (suffix == "k" || suffix == "K")
        shift = 10;
    else if (suffix == "m" || suffix == "M")
        shift = 20;
    else if (suffix == "g" || suffix == "G")
        shift = 30;
    else
        return std::nullopt;
    if (value > (UINT64_MAX >> shift))
        return std::nullopt;
    return value << shift;
}

// The largest ring a ringbuf chardev may ask for.
constexpr uint64_t k_max_ringbuf = uint64_t(256) << 20;

// Backends QEMU 2.10 has and emud does not, with what to say.
constexpr std::pair<const char*, const char*> k_unsupported_backends[] = {
    {"udp", "UDP sockets are not supported"},
    {"serial", "host serial ports are not supported"},
    {"tty", "host serial ports are not supported"},
    {"parallel", "host parallel ports are not supported"},
    {"parport", "host parallel ports are not supported"},
    {"vc", "there is no graphical console (use 'console' or a pty)"},
    {"msmouse", "the serial mouse is not supported"},
    {"wctablet", "the serial tablet is not supported"},
    {"braille", "braille devices are not supported"},
    {"testdev", "the test device is not supported"},
    {"spicevmc", "SPICE is not supported"},
    {"spiceport", "SPICE is not supported"},
};

qmp::Result<ChardevSpec> parse_chardev(const json& c)
{
    ChardevSpec spec;
    spec.id = c["id"].get<std::string>();
    spec.backend = c["backend"].get<std::string>();
    std::string where = "chardev '" + spec.id + "'";
    if (spec.id.empty())
        return qmp::fail("chardev: 'id' must not be empty");
    if (spec.backend == "stdio")
        spec.backend = "console"; // emuctl's terminal is the daemon's stdio
    if (spec.backend == "memory")
        spec.backend = "ringbuf"; // QEMU's old name for it
    for (auto& [name, why] : k_unsupported_backends)
        if (spec.backend == name)
            return qmp::fail(where + ": backend '" + spec.backend + "' is not supported: " + why);
    static const char* const known[] = {"console", "null", "file", "pipe", "pty", "socket", "ringbuf"};
    if (std::none_of(std::begin(known), std::end(known), [&](const char* k) { return spec.backend == k; }))
        return qmp::fail(where + ": backend '" + spec.backend + "' is unknown");

    auto props = props_of(c, where);
    if (!props)
        return std::unexpected(props.error());
    spec.props = *props;
    auto take_bool = [&](const char* key, bool fallback) -> qmp::Result<bool> {
        auto it = spec.props.find(key);
        if (it == spec.props.end())
            return fallback;
        return parse_bool(it->second, where + ": " + key);
    };
    auto check_keys = [&](std::initializer_list<const char*> allowed) -> qmp::Result<void> {
        for (auto& [k, v] : spec.props) {
            if (k == "mux")
                continue;
            if (k == "logfile" || k == "logappend")
                return qmp::fail(where + ": " + k + " is not supported yet");
            if (std::none_of(allowed.begin(), allowed.end(), [&](const char* a) { return k == a; }))
                return qmp::fail(where + ": property '" + k + "' is not supported for backend '" + spec.backend +
                                 "'");
        }
        return {};
    };
    auto absolute_path = [&]() -> qmp::Result<void> {
        auto it = spec.props.find("path");
        if (it == spec.props.end() || it->second.empty())
            return qmp::fail(where + ": backend '" + spec.backend + "' needs a path");
        if (it->second[0] != '/')
            return qmp::fail(where + ": path must be absolute (the daemon's working directory is not yours)");
        spec.path = it->second;
        return {};
    };
    auto mux = take_bool("mux", false);
    if (!mux)
        return std::unexpected(mux.error());
    spec.mux = *mux;

    if (spec.backend == "console") {
        // 'signal' is the terminal's business: emuctl reads it from the config.
        if (auto ok = check_keys({"signal"}); !ok)
            return std::unexpected(ok.error());
        return spec;
    }
    if (spec.backend == "null" || spec.backend == "pty") {
        if (auto ok = check_keys({}); !ok)
            return std::unexpected(ok.error());
        return spec;
    }
    if (spec.backend == "file" || spec.backend == "pipe") {
        bool file = spec.backend == "file";
        if (auto ok = file ? check_keys({"path", "append"}) : check_keys({"path"}); !ok)
            return std::unexpected(ok.error());
        if (auto ok = absolute_path(); !ok)
            return std::unexpected(ok.error());
        auto append = take_bool("append", false);
        if (!append)
            return std::unexpected(append.error());
        spec.append = *append;
        return spec;
    }
    if (spec.backend == "ringbuf") {
        if (auto ok = check_keys({"size"}); !ok)
            return std::unexpected(ok.error());
        if (spec.props.count("size")) {
            auto size = parse_size(spec.props["size"]);
            if (!size)
                return qmp::fail(where + ": size '" + spec.props["size"] + "' is not a size (e.g. 65536 or 64k)");
            if (*size == 0 || (*size & (*size - 1)) != 0)
                return qmp::fail(where + ": size of ringbuf chardev must be power of two");
            if (*size > k_max_ringbuf)
                return qmp::fail(where + ": size " + std::to_string(*size) + " is above the maximum of 256 MiB");
            spec.size = *size;
        }
        return spec;
    }

    // socket
    if (auto ok = check_keys({"path", "host", "port", "server", "wait", "nodelay", "delay", "reconnect", "ipv4",
                              "ipv6", "telnet", "tn3270"});
        !ok)
        return std::unexpected(ok.error());
    for (const char* key : {"telnet", "tn3270"}) {
        auto on = take_bool(key, false);
        if (!on)
            return std::unexpected(on.error());
        if (*on)
            return qmp::fail(where + ": " + key + "=on is not supported yet");
    }
    auto server = take_bool("server", false);
    if (!server)
        return std::unexpected(server.error());
    spec.server = *server;
    auto wait = take_bool("wait", true);
    if (!wait)
        return std::unexpected(wait.error());
    spec.wait = spec.server && *wait;
    auto nodelay = take_bool("nodelay", false);
    auto delay = take_bool("delay", true);
    if (!nodelay)
        return std::unexpected(nodelay.error());
    if (!delay)
        return std::unexpected(delay.error());
    spec.nodelay = *nodelay || !*delay;
    if (spec.props.count("reconnect")) {
        const std::string& r = spec.props["reconnect"];
        if (r.empty() || r.size() > 6 || !std::all_of(r.begin(), r.end(), ::isdigit))
            return qmp::fail(where + ": reconnect must be a number of seconds, not '" + r + "'");
        spec.reconnect = std::stoi(r);
        if (spec.server && spec.reconnect > 0)
            return qmp::fail(where + ": reconnect is for clients (server=off) only");
    }
    auto ipv4 = take_bool("ipv4", false), ipv6 = take_bool("ipv6", false);
    if (!ipv4)
        return std::unexpected(ipv4.error());
    if (!ipv6)
        return std::unexpected(ipv6.error());
    if (*ipv4 && *ipv6)
        return qmp::fail(where + ": ipv4 and ipv6 exclude each other");
    spec.family = *ipv4 ? AF_INET : *ipv6 ? AF_INET6 : 0;
    if (spec.props.count("path")) {
        if (spec.props.count("host") || spec.props.count("port"))
            return qmp::fail(where + ": give either path or host and port");
        if (auto ok = absolute_path(); !ok)
            return std::unexpected(ok.error());
        spec.address = "unix:" + spec.path;
    } else if (spec.props.count("port")) {
        const std::string& port = spec.props["port"];
        if (port.empty() || port.size() > 5 || !std::all_of(port.begin(), port.end(), ::isdigit) ||
            std::stoi(port) > 65535)
            return qmp::fail(where + ": port must be a number from 0 to 65535, not '" + port + "'");
        if (!spec.server && std::stoi(port) == 0)
            return qmp::fail(where + ": a client needs a port other than 0");
        std::string host = spec.props.count("host") ? spec.props["host"] : "127.0.0.1";
        if (host.empty() && !spec.server)
            host = "127.0.0.1"; // as QEMU: a client without a host connects to this machine
        if (host.find(':') != std::string::npos && host.front() != '[')
            host = "[" + host + "]";
        spec.address = "tcp:" + host + ":" + port;
    } else {
        return qmp::fail(where + ": socket needs path, or host and port");
    }
    return spec;
}

qmp::Result<void> parse_chardevs_and_monitors(const json& config, VmSpec& spec)
{
    bool have_console = false;
    for (auto& c : config.value("chardevs", json::array())) {
        auto cd = parse_chardev(c);
        if (!cd)
            return std::unexpected(cd.error());
        for (auto& other : spec.chardevs)
            if (other.id == cd->id)
                return qmp::fail("chardev '" + cd->id + "' is defined twice");
        if (cd->backend == "console") {
            if (have_console)
                return qmp::fail("chardev '" + cd->id + "': a VM has one console; another chardev already uses it");
            have_console = true;
        }
        spec.chardevs.push_back(std::move(*cd));
    }
    auto find = [&](const std::string& id) -> ChardevSpec* {
        for (auto& c : spec.chardevs)
            if (c.id == id)
                return &c;
        return nullptr;
    };
    std::map<std::string, int> serial_users, monitor_users;
    for (auto& s : config.value("serials", json::array())) {
        std::string id = s.get<std::string>();
        if (!find(id))
            return qmp::fail("serial: chardev '" + id + "' is not defined");
        spec.serials.push_back(id);
        serial_users[id]++;
    }
    for (auto& device : spec.machine.devices) { // -device …,chardev=ID (isa-debugcon)
        auto it = device.props.find("chardev");
        if (it == device.props.end())
            continue;
        if (!find(it->second))
            return qmp::fail("device '" + device.driver + "': chardev '" + it->second + "' is not defined");
        serial_users[it->second]++;
    }
    for (auto& m : config.value("monitors", json::array())) {
        MonitorSpec mon;
        mon.chardev = m["chardev"].get<std::string>();
        std::string mode = m.value("mode", "readline");
        std::string where = "monitor on '" + mon.chardev + "'";
        if (mode != "readline" && mode != "control")
            return qmp::fail(where + ": mode must be 'readline' or 'control', not '" + mode + "'");
        mon.control = mode == "control";
        mon.pretty = m.value("pretty", false);
        ChardevSpec* cd = find(mon.chardev);
        if (!cd)
            return qmp::fail("monitor: chardev '" + mon.chardev + "' is not defined");
        if (cd->backend == "null")
            return qmp::fail(where + ": a monitor on the null backend is unreachable");
        if (cd->backend == "file")
            return qmp::fail(where + ": a monitor on a file chardev cannot read commands");
        if (cd->backend == "console" && mon.control)
            return qmp::fail(where + ": QMP on the console is not supported yet");
        bool listener = cd->backend == "socket" && cd->server && !cd->mux;
        if (mon.control && !listener && cd->backend != "console")
            return qmp::fail(where + ": QMP (mode=control) needs a socket chardev with server=on and without mux=on");
        if (cd->backend == "console" && !cd->mux && serial_users[mon.chardev])
            return qmp::fail(where + ": chardev is in use by a serial port (use mux=on)");
        monitor_users[mon.chardev]++;
        spec.monitors.push_back(mon);
    }
    for (auto& c : spec.chardevs) {
        int serials = serial_users[c.id], monitors = monitor_users[c.id];
        if (serials + monitors > 1 && !c.mux)
            return qmp::fail("chardev '" + c.id + "' is used twice without mux=on");
        if (c.mux && c.backend != "console" && (serials > 1 || monitors > 1))
            return qmp::fail("chardev '" + c.id + "': a mux chardev serves one serial port and one monitor");
    }
    return {};
}

} // namespace

bool valid_vm_name(const std::string& name)
{
    if (name.empty() || name.size() > 64 || !std::isalnum(static_cast<unsigned char>(name[0])))
        return false;
    return std::all_of(name.begin(), name.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
    });
}

qmp::Result<VmSpec> parse_vm_config(const json& config, const kvm::ProbeResult& kvm,
                                    const std::function<bool(const std::string&)>& name_in_use,
                                    const std::string& fallback_name)
{
    VmSpec spec;
    spec.config = config;
    spec.name = config.value("name", fallback_name);
    if (!valid_vm_name(spec.name))
        return qmp::fail("VM name '" + spec.name +
                         "' is invalid: use 1 to 64 letters, digits, '-', '_' or '.', starting with a letter or digit");
    if (name_in_use(spec.name))
        return qmp::fail("a VM named '" + spec.name + "' already exists");
    spec.config["name"] = spec.name;
    spec.uuid = config.value("uuid", "00000000-0000-0000-0000-000000000000");
    if (!valid_uuid(spec.uuid))
        return qmp::fail("uuid '" + spec.uuid + "' is not a UUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)");

    for (auto& [section, why] : k_unsupported_sections) {
        auto it = config.find(section);
        if (it == config.end() || it->is_null() || (it->is_array() && it->empty()))
            continue;
        return qmp::fail(std::string(section) + ": " + why);
    }
    for (auto& d : config.value("devices", json::array())) {
        devices::DeviceConfig device;
        device.driver = d["driver"].get<std::string>();
        const devices::DeviceTypeInfo* type = devices::find_device_type(device.driver);
        if (!type)
            return qmp::fail("'" + device.driver + "' is not a valid device model name");
        auto props = props_of(d, "device '" + device.driver + "'");
        if (!props)
            return std::unexpected(props.error());
        device.props = *props;
        for (auto& [key, value] : device.props)
            if (key != "id" && std::none_of(type->props.begin(), type->props.end(),
                                            [&](const devices::DevicePropertyInfo& p) { return p.name == key; }))
                return qmp::fail("Property '" + device.driver + "." + key + "' not found");
        spec.machine.devices.push_back(std::move(device));
    }
    auto drives = parse_drives(config, config.value("snapshot", false), spec.machine.devices);
    if (!drives)
        return std::unexpected(drives.error());
    spec.drives = std::move(*drives);
    // -blockdev option sets are opened with the VM; here: objects with names.
    std::set<std::string> node_names;
    for (const json& b : config.value("blockdevs", json::array())) {
        if (!b.is_object())
            return qmp::fail("blockdevs: each -blockdev is an object of options");
        if (!b.contains("node-name") || !b["node-name"].is_string())
            return qmp::fail("blockdev: 'node-name' must be specified for the root node");
        if (!node_names.insert(b["node-name"].get<std::string>()).second)
            return qmp::fail("blockdev: Duplicate node name");
    }
    for (auto& device : spec.machine.devices) { // -device …,drive=ID (a -drive id or a -blockdev node)
        auto it = device.props.find("drive");
        if (it == device.props.end())
            continue;
        if (std::none_of(spec.drives.begin(), spec.drives.end(),
                         [&](const DriveSpec& d) { return d.id == it->second || d.node_name == it->second; }) &&
            !node_names.count(it->second))
            return qmp::fail("device '" + device.driver + "': drive '" + it->second + "' not found");
    }
    if (config.contains("display")) {
        std::string type = config["display"]["type"].get<std::string>();
        if (type != "none")
            return qmp::fail("display '" + type + "' is not supported yet");
    }

    // Machine.
    json machine = config.value("machine", json::object());
    std::string type = machine.value("type", "");
    const devices::MachineClass* mc = nullptr;
    if (type.empty()) {
        for (auto& c : devices::machine_classes())
            if (c.is_default)
                mc = &c;
    } else {
        mc = devices::find_machine_class(type);
    }
    if (!mc)
        return qmp::fail("unsupported machine type '" + type + "' (query-machines lists them)");
    spec.machine.type = mc->name;
    auto mprops = props_of(machine, "machine " + mc->name);
    if (!mprops)
        return std::unexpected(mprops.error());
    spec.machine.props = *mprops;
    std::map<std::string, std::string> accel_props;
    auto accel = choose_accel(config, kvm, accel_props);
    if (!accel)
        return std::unexpected(accel.error());
    spec.machine.accel = *accel;
    spec.machine.tcg_single_thread = *accel == "tcg" && accel_props["thread"] == "single";

    // CPU and topology.
    json cpu = config.value("cpu", json::object());
    spec.machine.cpu_model = cpu.value("model", "qemu64");
    // The engine's models, and 'host' (KVM only).
    if (spec.machine.cpu_model != "host" && !x86::find_cpu_model(spec.machine.cpu_model))
        return qmp::fail("unable to find CPU model '" + spec.machine.cpu_model + "'");
    if (spec.machine.cpu_model == "host" && spec.machine.accel != "kvm")
        return qmp::fail("CPU model 'host' requires KVM");
    json smp = config.value("smp", json::object());
    int cpus = smp.value("cpus", 0);
    int sockets = smp.value("sockets", 0), cores = smp.value("cores", 0), threads = smp.value("threads", 0);
    int dies = smp.value("dies", 1);
    for (auto [key, value] : {std::pair{"cpus", cpus}, {"sockets", sockets}, {"cores", cores}, {"threads", threads}})
        if (value < 0 || (smp.contains(key) && value == 0))
            return qmp::fail(std::string("smp: ") + key + " must be at least 1");
    if (cpus == 0)
        cpus = std::max(1, sockets) * std::max(1, dies) * std::max(1, cores) * std::max(1, threads);
    int maxcpus = smp.value("maxcpus", cpus);
    if (maxcpus < cpus)
        return qmp::fail("smp: maxcpus (" + std::to_string(maxcpus) + ") must be at least cpus (" +
                         std::to_string(cpus) + ")");
    if (maxcpus > mc->max_cpus)
        return qmp::fail("Invalid SMP CPUs " + std::to_string(maxcpus) + ". The max CPUs supported by machine '" +
                         mc->name + "' is " + std::to_string(mc->max_cpus));
    spec.machine.cpus = cpus;

    // Memory.
    json memory = config.value("memory", json::object());
    uint64_t size = memory.value("size", uint64_t(128) << 20);
    if (size < (1u << 20))
        return qmp::fail("memory: size " + std::to_string(size) + " is below the minimum of 1 MiB");
    if (size > (uint64_t(1) << 40))
        return qmp::fail("memory: size " + std::to_string(size) + " is above the maximum of 1 TiB");
    if (memory.contains("slots") || memory.contains("maxmem"))
        return qmp::fail("memory: hotplug slots and maxmem are not supported yet");
    spec.machine.ram_size = (size + 4095) & ~uint64_t(4095);

    // Boot.
    spec.machine.kernel = config.value("kernel", "");
    spec.machine.initrd = config.value("initrd", "");
    spec.machine.append = config.value("append", "");
    if (spec.machine.kernel.empty() && (!spec.machine.initrd.empty() || !spec.machine.append.empty()))
        return qmp::fail(spec.machine.initrd.empty() ? "-append only allowed with -kernel option"
                                                     : "-initrd only allowed with -kernel option");
    json boot = config.value("boot", json::object());
    for (const char* key : {"order", "once"}) {
        std::string order = boot.value(key, "");
        for (char c : order)
            if (c < 'a' || c > 'p')
                return qmp::fail(std::string("boot: invalid boot device '") + c + "' in " + key + "=" + order);
    }
    json rtc = config.value("rtc", json::object());
    if (rtc.contains("clock")) {
        std::string clock = rtc["clock"];
        if (clock != "host" && clock != "rt" && clock != "vm")
            return qmp::fail("rtc: clock must be host, rt or vm, not '" + clock + "'");
    }
    spec.machine.rtc_base = rtc.value("base", "utc");
    spec.machine.rtc_clock = rtc.value("clock", "host");
    if (spec.machine.rtc_clock == "rt")
        spec.machine.rtc_clock = "host"; // the host's monotonic clock: as 'host' for the guest's date
    if (rtc.contains("driftfix")) {
        std::string fix = rtc["driftfix"];
        if (fix != "none" && fix != "slew")
            return qmp::fail("rtc: driftfix must be none or slew, not '" + fix + "'");
    }

    spec.start_paused = config.value("start-paused", false);
    spec.no_reboot = config.value("no-reboot", false);
    spec.no_shutdown = config.value("no-shutdown", false);

    if (auto ok = parse_chardevs_and_monitors(config, spec); !ok)
        return std::unexpected(ok.error());
    return spec;
}

} // namespace emu::daemon
