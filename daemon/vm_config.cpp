#include "daemon/vm_config.h"

#include "engine/x86/cpuid.h"

#include <algorithm>
#include <cctype>
#include <regex>

namespace emu::daemon {

using nlohmann::json;

namespace {

// What the config may name that emud cannot do yet, and what to say then.
constexpr std::pair<const char*, const char*> k_unsupported_sections[] = {
    {"drives", "block devices are not supported yet"},
    {"blockdevs", "block devices are not supported yet"},
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

qmp::Result<ChardevSpec> parse_chardev(const json& c)
{
    ChardevSpec spec;
    spec.id = c["id"].get<std::string>();
    spec.backend = c["backend"].get<std::string>();
    std::string where = "chardev '" + spec.id + "'";
    if (spec.id.empty())
        return qmp::fail("chardev: 'id' must not be empty");
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
    auto mux = take_bool("mux", false);
    if (!mux)
        return std::unexpected(mux.error());
    spec.mux = *mux;
    auto check_keys = [&](std::initializer_list<const char*> allowed) -> qmp::Result<void> {
        for (auto& [k, v] : spec.props)
            if (std::find_if(allowed.begin(), allowed.end(), [&](const char* a) { return k == a; }) == allowed.end())
                return qmp::fail(where + ": property '" + k + "' is not supported for backend '" + spec.backend +
                                 "'");
        return {};
    };
    if (spec.backend == "console") {
        // 'signal' is the terminal's business: emuctl reads it from the config.
        if (auto ok = check_keys({"mux", "signal"}); !ok)
            return std::unexpected(ok.error());
        return spec;
    }
    if (spec.backend == "null") {
        if (auto ok = check_keys({}); !ok)
            return std::unexpected(ok.error());
        return spec;
    }
    if (spec.backend == "socket") {
        if (auto ok = check_keys({"path", "host", "port", "server", "wait"}); !ok)
            return std::unexpected(ok.error());
        auto server = take_bool("server", false);
        if (!server)
            return std::unexpected(server.error());
        if (!*server)
            return qmp::fail(where + ": client-mode sockets (server=off) are not supported yet");
        auto wait = take_bool("wait", true);
        if (!wait)
            return std::unexpected(wait.error());
        spec.wait = *wait;
        if (spec.mux)
            return qmp::fail(where + ": mux=on is supported only on the console backend");
        if (spec.props.count("path")) {
            if (spec.props.count("host") || spec.props.count("port"))
                return qmp::fail(where + ": give either path or host and port");
            spec.address = "unix:" + spec.props["path"];
            if (spec.props["path"].empty() || spec.props["path"][0] != '/')
                return qmp::fail(where + ": path must be absolute (the daemon's working directory is not yours)");
        } else if (spec.props.count("port")) {
            std::string host = spec.props.count("host") ? spec.props["host"] : "127.0.0.1";
            spec.address = "tcp:" + host + ":" + spec.props["port"];
        } else {
            return qmp::fail(where + ": socket needs path, or host and port");
        }
        return spec;
    }
    static const char* later[] = {"file", "pipe", "pty", "ringbuf", "memory", "udp", "serial", "tty",
                                  "parallel", "stdio", "vc", "msmouse", "braille", "spicevmc", "spiceport"};
    for (const char* b : later)
        if (spec.backend == b)
            return qmp::fail(where + ": backend '" + spec.backend + "' is not supported yet");
    return qmp::fail(where + ": backend '" + spec.backend + "' is unknown");
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
    for (auto& s : config.value("serials", json::array())) {
        std::string id = s.get<std::string>();
        if (!find(id))
            return qmp::fail("serial: chardev '" + id + "' is not defined");
        spec.serials.push_back(id);
    }
    std::map<std::string, int> users;
    for (auto& s : spec.serials)
        users[s]++;
    for (auto& m : config.value("monitors", json::array())) {
        MonitorSpec mon;
        mon.chardev = m["chardev"].get<std::string>();
        std::string mode = m.value("mode", "readline");
        if (mode != "readline" && mode != "control")
            return qmp::fail("monitor on '" + mon.chardev + "': mode must be 'readline' or 'control', not '" + mode +
                             "'");
        mon.control = mode == "control";
        mon.pretty = m.value("pretty", false);
        ChardevSpec* cd = find(mon.chardev);
        if (!cd)
            return qmp::fail("monitor: chardev '" + mon.chardev + "' is not defined");
        if (cd->backend == "null")
            return qmp::fail("monitor on '" + mon.chardev + "': a monitor on the null backend is unreachable");
        if (cd->backend == "console" && mon.control)
            return qmp::fail("monitor on '" + mon.chardev + "': QMP on the console is not supported yet");
        if (cd->backend == "console" && !cd->mux && users[mon.chardev])
            return qmp::fail("monitor on '" + mon.chardev + "': chardev is in use by a serial port (use mux=on)");
        users[mon.chardev]++;
        if (users[mon.chardev] > 1 && !cd->mux)
            return qmp::fail("chardev '" + mon.chardev + "' is used twice without mux=on");
        spec.monitors.push_back(mon);
    }
    for (auto& [id, count] : users)
        if (count > 1 && !find(id)->mux)
            return qmp::fail("chardev '" + id + "' is used twice without mux=on");
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
    if (config.value("snapshot", false))
        return qmp::fail("snapshot: temporary disk overlays are not supported yet (no block devices)");
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
