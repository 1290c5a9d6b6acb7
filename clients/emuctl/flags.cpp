// clients/emuctl/flags.cpp — QEMU 2.10 flags → VmConfig; see flags.h.
//
// Each flag has a handler that parses and validates it in full and records
// it in a State (flags_internal.h). k_flags (near the end) is the one table
// of flags: what each takes, its handler, and whether emud supports it yet.
// finish() then adds QEMU's default serial port and monitor (the -nographic
// rules), resolves "chardev:ID" references and writes the config document.
// The character devices, serial ports and monitors are in flags_chardev.cpp.
#include "clients/emuctl/flags.h"

#include "clients/emuctl/flags_internal.h"
#include "clients/emuctl/qemu_opts.h"

#include <algorithm>
#include <functional>
#include <string_view>
#include <utility>

namespace emu::emuctl {

namespace detail {

std::string join_path(const std::string& cwd, std::string_view path)
{
    if (path.empty() || path.front() == '/')
        return std::string(path);
    while (path.starts_with("./"))
        path.remove_prefix(2);
    if (path.empty() || path == ".")
        return cwd;
    return cwd + (cwd.ends_with('/') ? "" : "/") + std::string(path);
}

std::expected<QemuOpts, FlagError> opts(const Use& use, std::string_view implied)
{
    auto parsed = parse_opts(use.arg, implied);
    if (!parsed)
        return fail(use, parsed.error().message);
    return std::move(*parsed);
}

} // namespace detail

namespace {

using namespace detail;

constexpr uint64_t k_max_smp = 4096;

// As QEMU's path_has_protocol(): "nbd:host:port", "json:{...}" are not paths.
bool has_protocol(std::string_view file)
{
    size_t colon = file.find(':');
    return colon != std::string_view::npos && file.substr(0, colon).find('/') == std::string_view::npos;
}

bool is_help(std::string_view text) { return text == "help" || text == "?"; }

bool all_digits(std::string_view text)
{
    return !text.empty() && std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; });
}

bool is_uuid(std::string_view text)
{
    if (text.size() != 36)
        return false;
    for (size_t i = 0; i < text.size(); ++i) {
        char c = text[i];
        bool hex = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
        if ((i == 8 || i == 13 || i == 18 || i == 23) ? c != '-' : !hex)
            return false;
    }
    return true;
}

// "2006-06-17T16:01:21" or "2006-06-17", as QEMU's -rtc base=DATE.
bool is_rtc_date(std::string_view text)
{
    auto field = [&](size_t pos, size_t len, int lo, int hi) {
        if (!all_digits(text.substr(pos, len)))
            return false;
        int value = std::stoi(std::string(text.substr(pos, len)));
        return value >= lo && value <= hi;
    };
    if (text.size() != 10 && text.size() != 19)
        return false;
    bool date = field(0, 4, 1970, 9999) && text[4] == '-' && field(5, 2, 1, 12) && text[7] == '-' &&
                field(8, 2, 1, 31);
    if (!date || text.size() == 10)
        return date;
    return text[10] == 'T' && field(11, 2, 0, 23) && text[13] == ':' && field(14, 2, 0, 59) && text[16] == ':' &&
           field(17, 2, 0, 59);
}

constexpr std::string_view k_netdev_types[] = {"user", "tap", "bridge", "socket", "vde",
                                               "l2tpv3", "vhost-user", "netmap", "hubport", "none"};
constexpr std::string_view k_drive_interfaces[] = {"ide", "scsi", "sd", "mtd", "floppy", "pflash", "virtio", "none"};

// ---- machine, CPU, memory ----

Result on_name(State& st, const Use& use)
{
    auto o = opts(use, "guest");
    if (!o)
        return std::unexpected(o.error());
    if (auto r = check(use, o->check_keys({"guest", "process", "debug-threads"})); !r)
        return r;
    if (auto r = check(use, o->get_bool("debug-threads", false)); !r)
        return r;
    if (!o->get("guest").empty())
        st.cfg()["name"] = o->get("guest");
    return {};
}

Result on_uuid(State& st, const Use& use)
{
    if (!is_uuid(use.arg))
        return fail(use, "invalid UUID (expected 8-4-4-4-12 hexadecimal digits)");
    std::string uuid(use.arg);
    std::transform(uuid.begin(), uuid.end(), uuid.begin(), [](char c) { return c >= 'A' && c <= 'F' ? c + 32 : c; });
    st.cfg()["uuid"] = uuid;
    return {};
}

Result on_memory(State& st, const Use& use)
{
    auto o = opts(use, "size");
    if (!o)
        return std::unexpected(o.error());
    if (auto r = check(use, o->check_keys({"size", "slots", "maxmem"})); !r)
        return r;
    for (const auto& [key, value] : o->entries())
        st.memory.set(key, value); // repeated -m flags merge, as in QEMU
    json memory = json::object();
    uint64_t size = 128 * k_mib;
    if (const std::string* text = st.memory.find("size")) {
        auto parsed = parse_size(*text, k_mib); // a bare number is MiB, as QEMU's -m
        if (!parsed)
            return fail(use, parsed.error().message);
        if (*parsed == 0)
            return fail(use, "memory size must not be zero");
        size = *parsed;
        memory["size"] = size;
    }
    auto slots = st.memory.get_number("slots", 0);
    auto maxmem = st.memory.get_size("maxmem", size); // bytes without a suffix, as QEMU
    if (!slots || !maxmem)
        return fail(use, (!slots ? slots.error() : maxmem.error()).message);
    bool have_slots = st.memory.has("slots"), have_maxmem = st.memory.has("maxmem");
    if (have_slots != have_maxmem)
        return fail(use, have_slots ? "'slots' needs 'maxmem'" : "'maxmem' needs 'slots'");
    if (have_maxmem) {
        if (*maxmem < size)
            return fail(use, "maxmem must be at least the initial memory size");
        if (*maxmem > size && *slots == 0)
            return fail(use, "maxmem is larger than size but no hotplug slots were given");
        if (*slots > 0 && *maxmem == size)
            return fail(use, "hotplug slots were given but maxmem equals size");
        memory["slots"] = *slots;
        memory["maxmem"] = *maxmem;
    }
    st.cfg()["memory"] = memory;
    return {};
}

Result on_smp(State& st, const Use& use)
{
    auto o = opts(use, "cpus");
    if (!o)
        return std::unexpected(o.error());
    if (auto r = check(use, o->check_keys({"cpus", "sockets", "dies", "cores", "threads", "maxcpus"})); !r)
        return r;
    for (const auto& [key, value] : o->entries()) {
        auto n = o->get_number(key, 0);
        if (!n)
            return fail(use, n.error().message);
        if (*n > k_max_smp)
            return fail(use, "'" + key + "' must be at most " + std::to_string(k_max_smp));
        st.smp.set(key, value); // repeated -smp flags merge, as in QEMU
    }
    auto get = [&](std::string_view key) { return st.smp.get_number(key, 0).value_or(0); };
    uint64_t cpus = get("cpus"), sockets = get("sockets"), dies = std::max<uint64_t>(get("dies"), 1);
    uint64_t cores = get("cores"), threads = get("threads"), maxcpus = get("maxcpus");
    // Fill in what is missing as QEMU's smp_parse() does, only to validate;
    // the config keeps what was written.
    if (cpus == 0 || sockets == 0) {
        cores = std::max<uint64_t>(cores, 1);
        threads = std::max<uint64_t>(threads, 1);
        if (cpus == 0) {
            sockets = std::max<uint64_t>(sockets, 1);
            cpus = sockets * dies * cores * threads;
        } else {
            sockets = std::max<uint64_t>((maxcpus ? maxcpus : cpus) / (dies * cores * threads), 1);
        }
    } else if (cores == 0) {
        threads = std::max<uint64_t>(threads, 1);
        cores = std::max<uint64_t>(cpus / (sockets * dies * threads), 1);
    } else if (threads == 0) {
        threads = std::max<uint64_t>(cpus / (sockets * dies * cores), 1);
    } else if (sockets * dies * cores * threads < cpus) {
        return fail(use, "cpu topology: sockets * cores * threads is less than cpus");
    }
    maxcpus = maxcpus ? maxcpus : cpus;
    if (maxcpus < cpus)
        return fail(use, "maxcpus must be equal to or greater than cpus");
    if (sockets * dies * cores * threads > maxcpus)
        return fail(use, "cpu topology: sockets * cores * threads is greater than maxcpus");
    json smp = json::object();
    for (const auto& entry : st.smp.entries())
        smp[entry.first] = get(entry.first);
    st.cfg()["smp"] = smp;
    return {};
}

Result add_accel(State& st, const Use& use, std::string_view type, QemuOpts props)
{
    if (type != "kvm" && type != "tcg")
        return fail(use, "accelerator '" + std::string(type) + "' not found (emud has kvm and tcg)");
    if (const std::string* thread = props.find("thread")) {
        if (type != "tcg")
            return fail(use, "'thread' applies to the tcg accelerator only");
        if (*thread != "single" && *thread != "multi")
            return fail(use, "invalid 'thread' setting '" + *thread + "' (use single or multi)");
    }
    for (auto& [existing, existing_props] : st.accels) {
        if (existing == type) { // named again: merge the properties
            for (const auto& [key, value] : props.entries())
                existing_props.set(key, value);
            return {};
        }
    }
    st.accels.emplace_back(std::string(type), std::move(props));
    return {};
}

Result on_machine(State& st, const Use& use)
{
    auto o = opts(use, "type");
    if (!o)
        return std::unexpected(o.error());
    if (is_help(o->get("type"))) {
        st.out.help_topic = "machine";
        return {};
    }
    if (const std::string* type = o->find("type"))
        st.machine_type = *type;
    if (const std::string* accel = o->find("accel")) {
        // accel=kvm:tcg replaces the list, as a later accel= did in QEMU
        if (accel->empty())
            return fail(use, "the accelerator list is empty");
        st.accels.clear();
        std::string_view rest = *accel;
        for (size_t colon = 0; colon != std::string_view::npos; rest.remove_prefix(colon + 1)) {
            colon = rest.find(':');
            if (auto r = add_accel(st, use, rest.substr(0, colon), QemuOpts{}); !r)
                return r;
        }
    }
    for (const auto& [key, value] : o->entries()) {
        if (key != "type" && key != "accel")
            st.machine_props.set(key, value); // repeated -machine flags merge
    }
    return {};
}

Result on_accel(State& st, const Use& use)
{
    auto o = opts(use, "accel");
    if (!o)
        return std::unexpected(o.error());
    std::string type = o->get("accel");
    if (is_help(type)) {
        st.out.help_topic = "accel";
        return {};
    }
    if (type.empty())
        return fail(use, "Parameter 'accel' is missing");
    o->erase("accel");
    return add_accel(st, use, type, std::move(*o));
}

Result on_enable_kvm(State& st, const Use& use) { return add_accel(st, use, "kvm", QemuOpts{}); }

Result on_cpu(State& st, const Use& use)
{
    std::vector<std::string> items = split_opt_items(use.arg);
    if (items.empty() || items[0].empty())
        return fail(use, "the CPU model is missing");
    if (is_help(items[0])) {
        st.out.help_topic = "cpu";
        return {};
    }
    // feat=value and bare "feat" (=on) first, then +feat, then -feat: as in
    // QEMU 2.10, "-feat" wins over "+feat" and "feat=on" whatever the order.
    json props = json::object();
    std::vector<std::string> plus, minus;
    for (size_t i = 1; i < items.size(); ++i) {
        const std::string& item = items[i];
        size_t eq = item.find('=');
        if (item.empty() || eq == 0 || item == "+" || item == "-")
            return fail(use, "empty CPU feature name");
        if (item[0] == '+' || item[0] == '-')
            (item[0] == '+' ? plus : minus).push_back(item.substr(1));
        else if (eq == std::string::npos)
            props[item] = "on";
        else
            props[item.substr(0, eq)] = item.substr(eq + 1);
    }
    for (const std::string& feature : plus)
        props[feature] = "on";
    for (const std::string& feature : minus)
        props[feature] = "off";
    json cpu = {{"model", items[0]}};
    if (!props.empty())
        cpu["props"] = props;
    st.cfg()["cpu"] = cpu;
    return {};
}

// ---- boot ----

Result on_kernel(State& st, const Use& use)
{
    if (use.arg.empty())
        return fail(use, "the file name is empty");
    st.cfg()["kernel"] = join_path(st.cwd, use.arg);
    return {};
}

Result on_initrd(State& st, const Use& use)
{
    // Multiboot modules are comma-separated ("mod1 args,mod2"), ",," being a
    // literal comma; each starts with its file name, made absolute here.
    std::vector<std::string> modules = split_opt_items(use.arg);
    if (modules.empty() || std::any_of(modules.begin(), modules.end(), [](auto& m) { return m.empty(); }))
        return fail(use, "an initrd file name is empty");
    std::string joined;
    for (const std::string& module : modules)
        joined += (joined.empty() ? "" : ",") + escape_opt_value(join_path(st.cwd, module));
    st.cfg()["initrd"] = joined;
    return {};
}

Result on_append(State& st, const Use& use)
{
    st.cfg()["append"] = std::string(use.arg);
    return {};
}

// Boot devices are drive letters a..p, each at most once (validate_bootdevices).
Result check_boot_devices(const Use& use, std::string_view devices)
{
    for (size_t i = 0; i < devices.size(); ++i) {
        char c = devices[i];
        if (c < 'a' || c > 'p')
            return fail(use, "invalid boot device '" + std::string(1, c) + "'");
        if (devices.substr(0, i).find(c) != std::string_view::npos)
            return fail(use, "boot device '" + std::string(1, c) + "' was given twice");
    }
    return {};
}

Result on_boot(State& st, const Use& use)
{
    auto o = opts(use, "order");
    if (!o)
        return std::unexpected(o.error());
    if (auto r = check(use, o->check_keys({"order", "once", "menu", "splash", "splash-time", "reboot-timeout",
                                           "strict"}));
        !r)
        return r;
    if (o->has("splash"))
        return fail(use, "'splash' is not supported yet");
    json& boot = st.cfg()["boot"];
    if (boot.is_null())
        boot = json::object();
    for (const auto& [key, value] : o->entries()) { // repeated -boot flags merge
        if (key == "order" || key == "once") {
            if (auto r = check_boot_devices(use, value); !r)
                return r;
            boot[key] = value;
        } else if (key == "menu" || key == "strict") {
            auto flag = o->get_bool(key, false);
            if (!flag)
                return fail(use, flag.error().message);
            boot[key] = *flag;
        } else {
            auto n = o->get_number(key, 0);
            if (!n || *n > 65535)
                return fail(use, "Parameter '" + key + "' expects a number from 0 to 65535");
            boot[key] = *n;
        }
    }
    return {};
}

Result on_rtc(State& st, const Use& use)
{
    auto o = opts(use);
    if (!o)
        return std::unexpected(o.error());
    if (auto r = check(use, o->check_keys({"base", "clock", "driftfix"})); !r)
        return r;
    std::string base = o->get("base", "utc"), clock = o->get("clock", "host"), driftfix = o->get("driftfix", "none");
    if (base != "utc" && base != "localtime" && !is_rtc_date(base))
        return fail(use, "invalid base '" + base + "' (use utc, localtime, 2006-06-17T16:01:21 or 2006-06-17)");
    if (clock != "host" && clock != "rt" && clock != "vm")
        return fail(use, "invalid clock '" + clock + "' (use host, rt or vm)");
    if (driftfix != "none" && driftfix != "slew")
        return fail(use, "invalid driftfix '" + driftfix + "' (use none or slew)");
    for (const auto& [key, value] : o->entries())
        st.cfg()["rtc"][key] = value;
    return {};
}

// ---- display and run control ----

Result on_display(State& st, const Use& use)
{
    if (use.arg == "none") {
        st.cfg()["display"] = {{"type", "none"}};
        return {};
    }
    static constexpr std::string_view known[] = {"sdl", "gtk", "curses", "vnc", "egl-headless", "spice-app", "dbus"};
    std::string_view type = use.arg.substr(0, use.arg.find_first_of(",="));
    if (contains(known, type))
        return std::unexpected(FlagError{"-display " + std::string(type) + ": not supported yet"});
    return fail(use, type == "none" ? "'none' takes no options" : "unknown display type '" + std::string(type) + "'");
}

Result on_bool_flag(State& st, const Use& use)
{
    static constexpr std::pair<std::string_view, std::string_view> keys[] = {
        {"S", "start-paused"}, {"no-reboot", "no-reboot"}, {"no-shutdown", "no-shutdown"}, {"snapshot", "snapshot"}};
    for (const auto& [flag, key] : keys) {
        if (flag == use.name)
            st.cfg()[std::string(key)] = true;
    }
    return {};
}

Result on_daemonize(State& st, const Use&)
{
    st.out.daemonize = true;
    return {};
}

Result on_pidfile(State& st, const Use& use)
{
    if (use.arg.empty())
        return fail(use, "the file name is empty");
    st.out.pidfile = join_path(st.cwd, use.arg);
    return {};
}

Result on_incoming(State& st, const Use& use)
{
    std::string_view uri = use.arg;
    if (uri.starts_with("unix:") && uri.size() > 5) {
        st.cfg()["incoming"] = "unix:" + join_path(st.cwd, uri.substr(5));
        return {};
    }
    static constexpr std::string_view prefixes[] = {"tcp:", "rdma:", "exec:", "fd:"};
    bool known = uri == "defer" ||
                 std::any_of(std::begin(prefixes), std::end(prefixes), [&](auto p) { return uri.starts_with(p); });
    if (!known || uri.ends_with(':'))
        return fail(use, "unknown migration URI (use defer, tcp:HOST:PORT, unix:PATH, exec:CMD, fd:N or rdma:...)");
    st.cfg()["incoming"] = std::string(uri);
    return {};
}

// ---- block, network, devices, VNC ----

// Two drives on one interface may not share an index.
Result add_drive(State& st, const Use& use, json drive)
{
    if (drive.contains("index")) {
        std::string bus = drive.value("if", "ide");
        for (const json& other : st.drives) {
            if (other.value("if", "ide") == bus && other.value("index", "") == drive["index"])
                return fail(use, "a drive with index " + drive["index"].get<std::string>() + " on if=" + bus +
                                     " exists already");
        }
    }
    st.drives.push_back(std::move(drive));
    return {};
}

Result on_drive(State& st, const Use& use)
{
    auto o = opts(use);
    if (!o)
        return std::unexpected(o.error());
    if (o->empty())
        return fail(use, "no drive options given");
    std::string file = o->get("file"), media = o->get("media", "disk"), bus = o->get("if", "ide");
    if (!file.empty() && !has_protocol(file))
        o->set("file", join_path(st.cwd, file));
    if (media != "disk" && media != "cdrom")
        return fail(use, "invalid media '" + media + "' (use disk or cdrom)");
    if (!contains(k_drive_interfaces, bus))
        return fail(use, "unsupported bus type '" + bus + "'");
    if (auto r = check(use, o->get_number("index", 0)); !r)
        return r;
    for (std::string_view key : {"readonly", "snapshot", "copy-on-read"}) {
        if (auto r = check(use, o->get_bool(key, false)); !r)
            return r;
    }
    return add_drive(st, use, o->to_json());
}

// -hda..-hdd FILE (and a bare FILE argument): index 0..3, media=disk.
Result on_hd(State& st, const Use& use)
{
    if (use.arg.empty())
        return fail(use, "the file name is empty");
    std::string file = has_protocol(use.arg) ? std::string(use.arg) : join_path(st.cwd, use.arg);
    json drive = {{"file", file}, {"index", std::to_string(use.name[2] - 'a')}, {"media", "disk"}};
    return add_drive(st, use, std::move(drive));
}

// -cdrom FILE: index 2, media=cdrom; an empty FILE is an empty drive.
Result on_cdrom(State& st, const Use& use)
{
    std::string file = use.arg.empty() || has_protocol(use.arg) ? std::string(use.arg) : join_path(st.cwd, use.arg);
    return add_drive(st, use, {{"file", file}, {"index", "2"}, {"media", "cdrom"}});
}

// -blockdev JSON or -blockdev KEY=VALUE,... with dotted keys for the
// children (file.driver=file,file.filename=x.qcow2): one option object as
// blockdev-add takes it. Values stay strings (the daemon makes on/off
// booleans); file names become absolute.
Result on_blockdev(State& st, const Use& use)
{
    json options;
    if (!use.arg.empty() && use.arg.front() == '{') {
        options = json::parse(use.arg, nullptr, false);
        if (options.is_discarded() || !options.is_object())
            return fail(use, "the JSON option set is not a valid JSON object");
    } else {
        auto o = opts(use);
        if (!o)
            return std::unexpected(o.error());
        options = json::object();
        for (const auto& [key, value] : o->entries()) {
            json* at = &options;
            std::string_view rest = key;
            for (size_t dot; (dot = rest.find('.')) != std::string_view::npos; rest.remove_prefix(dot + 1)) {
                json& child = (*at)[std::string(rest.substr(0, dot))];
                if (child.is_string())
                    return fail(use, "Parameters '" + key + "' and '" + std::string(key.substr(0, key.size() -
                                     rest.size() + dot)) + "' conflict");
                at = &child;
            }
            if (at->contains(std::string(rest)))
                return fail(use, "Parameter '" + key + "' appears more than once");
            (*at)[std::string(rest)] = value;
        }
    }
    std::function<void(json&)> absolute = [&](json& o) {
        for (auto& [k, v] : o.items()) {
            if (v.is_object())
                absolute(v);
            else if (k == "filename" && v.is_string() && !v.get<std::string>().empty())
                v = join_path(st.cwd, v.get<std::string>());
        }
    };
    absolute(options);
    if (!options.contains("driver"))
        return fail(use, "Parameter 'driver' is missing");
    st.blockdevs.push_back(std::move(options));
    return {};
}

Result on_netdev(State& st, const Use& use)
{
    auto o = opts(use, "type");
    if (!o)
        return std::unexpected(o.error());
    std::string type = o->get("type"), id = o->get("id");
    if (type.empty())
        return fail(use, "Parameter 'type' is missing");
    if (!contains(k_netdev_types, type))
        return fail(use, "Parameter 'type' expects a netdev backend type, not '" + type + "'");
    if (id.empty())
        return fail(use, "Parameter 'id' is missing");
    for (const json& other : st.netdevs) {
        if (other["id"] == id)
            return fail(use, "Duplicate ID '" + id + "' for netdev");
    }
    for (std::string_view key : {"script", "downscript", "tftp", "smb"}) {
        const std::string* path = o->find(key);
        if (path && *path != "no")
            o->set(key, join_path(st.cwd, *path));
    }
    st.netdevs.push_back(o->to_json());
    return {};
}

Result on_device(State& st, const Use& use)
{
    auto o = opts(use, "driver");
    if (!o)
        return std::unexpected(o.error());
    std::string driver = o->get("driver");
    if (is_help(driver) || o->has("help") || o->has("?")) {
        st.out.help_topic = "device";
        st.out.help_arg = is_help(driver) ? "" : driver;
        return {};
    }
    if (driver.empty())
        return fail(use, "Parameter 'driver' is missing");
    std::string id = o->get("id");
    for (const json& other : st.devices) {
        if (!id.empty() && other.contains("props") && other["props"].value("id", "") == id)
            return fail(use, "Duplicate ID '" + id + "' for device");
    }
    if (o->has("chardev"))
        st.frontends.push_back({o->get("chardev"), use.label()});
    o->erase("driver");
    json device = {{"driver", driver}};
    if (!o->empty())
        device["props"] = o->to_json();
    st.devices.push_back(std::move(device));
    return {};
}

// -vnc DISPLAY[,OPTIONS]: DISPLAY is [HOST]:N, [V6HOST]:N, unix:PATH or none.
Result on_vnc(State& st, const Use& use)
{
    auto o = opts(use, "vnc");
    if (!o)
        return std::unexpected(o.error());
    std::string display = o->get("vnc");
    if (display.starts_with("unix:") && display.size() > 5) {
        display = "unix:" + join_path(st.cwd, std::string_view(display).substr(5));
    } else if (display != "none") {
        size_t colon = display.rfind(':');
        std::string_view host = std::string_view(display).substr(0, colon == std::string::npos ? 0 : colon);
        bool bracketed = host.starts_with('[') == host.ends_with(']');
        if (colon == std::string::npos || !all_digits(display.substr(colon + 1)) ||
            (host.find(':') != std::string_view::npos && !host.starts_with('[')) || !bracketed)
            return fail(use, "invalid VNC display '" + display + "' (use :N, HOST:N, unix:PATH or none)");
    }
    o->erase("vnc");
    json vnc = {{"display", display}};
    if (!o->empty())
        vnc["props"] = o->to_json();
    st.cfg()["vnc"] = vnc;
    return {};
}

// ---- the table ----

using Handler = Result (*)(State&, const Use&);

struct FlagSpec {
    std::string_view name; // as written after '-' or '--'
    bool takes_arg;
    Handler handler;
    std::string_view not_yet; // empty: supported; else the emud subsystem it waits for
};

// Every flag emuctl knows. To support a flag, clear its not_yet.
constexpr FlagSpec k_flags[] = {
    {"name", true, on_name, {}},
    {"uuid", true, on_uuid, {}},
    {"M", true, on_machine, {}},
    {"machine", true, on_machine, {}},
    {"accel", true, on_accel, {}},
    {"enable-kvm", false, on_enable_kvm, {}},
    {"cpu", true, on_cpu, {}},
    {"smp", true, on_smp, {}},
    {"m", true, on_memory, {}},
    {"kernel", true, on_kernel, {}},
    {"initrd", true, on_initrd, {}},
    {"append", true, on_append, {}},
    {"boot", true, on_boot, {}},
    {"rtc", true, on_rtc, {}},
    {"chardev", true, on_chardev, {}},
    {"serial", true, on_serial, {}},
    {"debugcon", true, on_debugcon, {}},
    {"monitor", true, on_monitor, {}},
    {"qmp", true, on_qmp, {}},
    {"mon", true, on_mon, {}},
    {"nographic", false, on_nographic, {}},
    {"display", true, on_display, {}},
    {"S", false, on_bool_flag, {}},
    {"no-reboot", false, on_bool_flag, {}},
    {"no-shutdown", false, on_bool_flag, {}},
    {"daemonize", false, on_daemonize, {}},
    {"pidfile", true, on_pidfile, {}},
    {"drive", true, on_drive, {}},
    {"hda", true, on_hd, {}},
    {"hdb", true, on_hd, {}},
    {"hdc", true, on_hd, {}},
    {"hdd", true, on_hd, {}},
    {"cdrom", true, on_cdrom, {}},
    {"blockdev", true, on_blockdev, {}},
    {"snapshot", false, on_bool_flag, {}},
    {"netdev", true, on_netdev, "network backends"},
    {"device", true, on_device, {}},
    {"vnc", true, on_vnc, "VNC server"},
    {"incoming", true, on_incoming, "migration"},
};

const FlagSpec* find_flag(std::string_view name)
{
    for (const FlagSpec& spec : k_flags) {
        if (spec.name == name)
            return &spec;
    }
    return nullptr;
}

// ---- after the last flag ----

Result finish(State& st)
{
    json& cfg = st.cfg();
    // QEMU's default serial port and monitor, then the chardev checks.
    if (auto r = finish_chardevs(st); !r)
        return r;
    if (!cfg.contains("kernel")) {
        for (std::string_view flag : {"append", "initrd"}) {
            if (cfg.contains(flag))
                return std::unexpected(FlagError{"-" + std::string(flag) + ": only allowed with -kernel"});
        }
    }

    json machine = json::object();
    if (!st.machine_type.empty())
        machine["type"] = st.machine_type;
    if (!st.machine_props.empty())
        machine["props"] = st.machine_props.to_json();
    if (!machine.empty())
        cfg["machine"] = machine;
    if (!st.accels.empty()) {
        json& accels = cfg["accel"] = json::array();
        for (const auto& [type, props] : st.accels) {
            accels.push_back({{"type", type}});
            if (!props.empty())
                accels.back()["props"] = props.to_json();
        }
    }
    write_chardevs(st);
    if (!st.drives.empty())
        cfg["drives"] = st.drives;
    if (!st.blockdevs.empty())
        cfg["blockdevs"] = st.blockdevs;
    if (!st.netdevs.empty())
        cfg["netdevs"] = st.netdevs;
    if (!st.devices.empty())
        cfg["devices"] = st.devices;
    return {};
}

std::expected<RunOptions, FlagError> translate(const std::vector<std::string>& args, const std::string& cwd,
                                               bool refuse_unsupported)
{
    if (cwd.empty() || cwd.front() != '/')
        return std::unexpected(FlagError{"the working directory '" + cwd + "' is not absolute"});
    State st;
    st.cwd = cwd;
    for (size_t i = 0; i < args.size(); ++i) {
        std::string_view arg = args[i];
        const FlagSpec* spec = nullptr;
        Use use;
        if (arg.empty() || arg[0] != '-') { // QEMU takes a bare argument as the -hda image
            spec = find_flag("hda");
            use = {spec->name, arg, true};
        } else {
            std::string_view name = arg.substr(arg.starts_with("--") ? 2 : 1);
            spec = find_flag(name);
            if (!spec)
                return std::unexpected(FlagError{std::string(arg) + ": invalid option"});
            use = {spec->name, {}, spec->takes_arg};
            if (spec->takes_arg) {
                if (i + 1 == args.size())
                    return std::unexpected(FlagError{"-" + std::string(name) + ": requires an argument"});
                use.arg = args[++i];
            }
        }
        if (auto r = spec->handler(st, use); !r)
            return std::unexpected(r.error());
        if (!st.out.help_topic.empty())
            return std::move(st.out);
        if (refuse_unsupported && !spec->not_yet.empty())
            return std::unexpected(FlagError{"-" + std::string(spec->name) + ": not supported yet (" +
                                             std::string(spec->not_yet) + ")"});
    }
    if (auto r = finish(st); !r)
        return std::unexpected(r.error());
    return std::move(st.out);
}

} // namespace

std::expected<RunOptions, FlagError> translate_flags(const std::vector<std::string>& args, const std::string& cwd)
{
    return translate(args, cwd, true);
}

std::expected<RunOptions, FlagError> translate_flags_unchecked(const std::vector<std::string>& args,
                                                               const std::string& cwd)
{
    return translate(args, cwd, false);
}

} // namespace emu::emuctl