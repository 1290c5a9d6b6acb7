// clients/emuctl/flags_chardev.cpp — the character devices of `emuctl run`:
// -chardev, -serial, -monitor, -qmp, -mon and the default serial port and
// monitor that -nographic implies, as QEMU 2.10 has them; see flags.h.
//
// The handlers record chardevs and their users (serial ports, monitors) in
// the State; finish_chardevs() adds QEMU's defaults once every flag is read
// and checks that each "chardev:ID" exists and that only a mux=on chardev is
// shared.
#include "clients/emuctl/flags_internal.h"

namespace emu::emuctl::detail {

namespace {

constexpr size_t k_max_serials = 4; // COM1..COM4, QEMU's MAX_SERIAL_PORTS

constexpr std::string_view k_chardev_backends[] = {
    "null", "socket", "udp", "file", "pipe", "pty", "vc", "ringbuf", "memory", "serial", "tty",
    "parallel", "parport", "stdio", "msmouse", "braille", "testdev", "wctablet", "spicevmc", "spiceport"};
constexpr std::string_view k_chardev_bool_keys[] = {"server", "wait", "telnet", "tn3270", "delay",
                                                    "mux", "signal", "append", "ipv4", "ipv6"};

// Maps stdio to the console backend, validates and normalizes boolean options
// to on/off and makes paths absolute.
Result normalize_chardev(State& st, Chardev& chardev)
{
    if (chardev.backend == "stdio")
        chardev.backend = "console";
    for (std::string_view key : k_chardev_bool_keys) {
        auto value = chardev.props.get_bool(key, false);
        if (!value)
            return fail(chardev.label, value.error().message);
        if (chardev.props.has(key))
            chardev.props.set(key, *value ? "on" : "off");
    }
    for (std::string_view key : {"path", "logfile"}) {
        if (const std::string* path = chardev.props.find(key))
            chardev.props.set(key, join_path(st.cwd, *path));
    }
    return {};
}

Result add_chardev(State& st, Chardev chardev)
{
    if (auto r = normalize_chardev(st, chardev); !r)
        return r;
    for (const Chardev& other : st.chardevs) {
        if (other.id == chardev.id)
            return fail(chardev.label, "Duplicate ID '" + chardev.id + "' for chardev");
        if (other.backend == "console" && chardev.backend == "console") {
            std::string hint = chardev.is_default && st.out.nographic
                                   ? " (-nographic puts the monitor on stdio: use -serial mon:stdio or -monitor none)"
                                   : "";
            return fail(chardev.label, "cannot use stdio by multiple character devices" + hint);
        }
    }
    st.chardevs.push_back(std::move(chardev));
    return {};
}

bool console_in_use(const State& st)
{
    return std::any_of(st.chardevs.begin(), st.chardevs.end(), [](const Chardev& c) { return c.backend == "console"; });
}

std::expected<Chardev, FlagError> legacy_chardev(const std::string& label, std::string_view spec, std::string id,
                                                 bool is_default)
{
    auto parsed = parse_legacy_chardev(spec);
    if (!parsed)
        return fail(label, parsed.error().message);
    return Chardev{std::move(id), std::move(parsed->backend), std::move(parsed->props), label, is_default};
}

void add_monitor_entry(State& st, const std::string& chardev, std::string_view mode, bool pretty)
{
    st.monitors.push_back({{"chardev", chardev}, {"mode", mode}, {"pretty", pretty}});
}

// -serial SPEC (and the default serial port).
Result add_serial(State& st, const std::string& label, std::string_view spec, bool is_default = false)
{
    st.serial_given = true;
    if (spec == "none")
        return {};
    if (st.serials.size() >= k_max_serials)
        return fail(label, "too many serial ports (at most 4)");
    if (spec.starts_with("chardev:")) {
        std::string id(spec.substr(8));
        st.frontends.push_back({id, label});
        st.serials.push_back(id);
        return {};
    }
    auto chardev = legacy_chardev(label, spec, "serial" + std::to_string(st.serials.size()), is_default);
    if (!chardev)
        return std::unexpected(chardev.error());
    std::string id = chardev->id;
    bool mux = chardev->props.get("mux") == "on";
    if (auto r = add_chardev(st, std::move(*chardev)); !r)
        return r;
    st.serials.push_back(id);
    st.frontends.push_back({id, label});
    if (mux) { // QEMU puts a readline monitor on a "mon:" serial port
        st.monitor_given = true;
        add_monitor_entry(st, id, "readline", false);
        st.frontends.push_back({id, label});
    }
    return {};
}

// -monitor SPEC / -qmp SPEC (and the default monitor).
Result add_monitor(State& st, const std::string& label, std::string_view spec, std::string_view mode,
                   bool is_default = false)
{
    st.monitor_given = true;
    if (mode == "readline" && spec == "none")
        return {};
    std::string id;
    if (spec.starts_with("chardev:")) {
        id = spec.substr(8);
    } else {
        auto chardev = legacy_chardev(label, spec, "compat_monitor" + std::to_string(st.monitor_index), is_default);
        if (!chardev)
            return std::unexpected(chardev.error());
        id = chardev->id;
        if (auto r = add_chardev(st, std::move(*chardev)); !r)
            return r;
    }
    ++st.monitor_index;
    st.frontends.push_back({id, label});
    add_monitor_entry(st, id, mode, false);
    return {};
}

// Every chardev:ID exists, and a chardev without mux=on has one user.
Result check_frontends(const State& st)
{
    std::vector<std::string> used;
    for (const Frontend& frontend : st.frontends) {
        auto it = std::find_if(st.chardevs.begin(), st.chardevs.end(),
                               [&](const Chardev& c) { return c.id == frontend.chardev; });
        if (it == st.chardevs.end())
            return fail(frontend.label, "chardev '" + frontend.chardev + "' not found");
        if (std::find(used.begin(), used.end(), it->id) != used.end() && it->props.get("mux") != "on")
            return fail(frontend.label, "chardev '" + it->id + "' is already in use (give it mux=on to share it)");
        used.push_back(it->id);
    }
    return {};
}

} // namespace

Result on_serial(State& st, const Use& use) { return add_serial(st, use.label(), use.arg); }

// -debugcon DEV: an isa-debugcon device (port 0xe9) on a chardev "debugcon".
Result on_debugcon(State& st, const Use& use)
{
    if (use.arg == "none")
        return {};
    std::string id;
    if (use.arg.starts_with("chardev:")) {
        id = use.arg.substr(8);
    } else {
        auto chardev = legacy_chardev(use.label(), use.arg, "debugcon", false);
        if (!chardev)
            return std::unexpected(chardev.error());
        id = chardev->id;
        if (auto r = add_chardev(st, std::move(*chardev)); !r)
            return r;
    }
    st.frontends.push_back({id, use.label()});
    st.devices.push_back({{"driver", "isa-debugcon"}, {"props", {{"chardev", id}}}});
    return {};
}
Result on_monitor(State& st, const Use& use) { return add_monitor(st, use.label(), use.arg, "readline"); }
Result on_qmp(State& st, const Use& use) { return add_monitor(st, use.label(), use.arg, "control"); }

Result on_mon(State& st, const Use& use)
{
    auto o = opts(use, "chardev");
    if (!o)
        return std::unexpected(o.error());
    if (auto r = check(use, o->check_keys({"chardev", "mode", "pretty", "default"})); !r)
        return r;
    std::string chardev = o->get("chardev"), mode = o->get("mode", "readline");
    if (chardev.empty())
        return fail(use, "Parameter 'chardev' is missing");
    if (mode != "readline" && mode != "control")
        return fail(use, "unknown monitor mode '" + mode + "' (use readline or control)");
    auto pretty = o->get_bool("pretty", false);
    if (auto r = check(use, pretty); !r)
        return r;
    if (auto r = check(use, o->get_bool("default", false)); !r)
        return r;
    st.monitor_given = true;
    st.frontends.push_back({chardev, use.label()});
    add_monitor_entry(st, chardev, mode, *pretty);
    return {};
}

Result on_chardev(State& st, const Use& use)
{
    auto o = opts(use, "backend");
    if (!o)
        return std::unexpected(o.error());
    std::string backend = o->get("backend"), id = o->get("id");
    if (backend.empty())
        return fail(use, "Parameter 'backend' is missing");
    if (!contains(k_chardev_backends, backend))
        return fail(use, "'" + backend + "' is not a valid char driver name");
    if (id.empty())
        return fail(use, "Parameter 'id' is missing");
    o->erase("backend");
    o->erase("id");
    if ((backend == "file" || backend == "pipe") && o->get("path").empty())
        return fail(use, backend + " needs a path");
    if (backend == "socket" && o->get("path").empty() && o->get("port").empty())
        return fail(use, "socket needs path=PATH or host=HOST,port=PORT");
    return add_chardev(st, Chardev{id, backend, std::move(*o), use.label()});
}

Result on_nographic(State& st, const Use&)
{
    st.out.nographic = true;
    st.cfg()["display"] = {{"type", "none"}};
    return {};
}

Result finish_chardevs(State& st)
{
    RunOptions& out = st.out;
    // QEMU's defaults: -nographic puts serial0 and the monitor on stdio
    // (muxed when both are defaults); otherwise serial0 goes to the console
    // (QEMU's vc), or to null when the console is taken already.
    if (out.nographic) {
        if (out.daemonize && (!st.serial_given || !st.monitor_given))
            return std::unexpected(FlagError{"-nographic cannot be used with -daemonize"});
        bool both = !st.serial_given && !st.monitor_given;
        if (!st.serial_given) {
            if (auto r = add_serial(st, "-nographic", both ? "mon:stdio" : "stdio", true); !r)
                return r;
        }
        if (!st.monitor_given) {
            if (auto r = add_monitor(st, "-nographic", "stdio", "readline", true); !r)
                return r;
        }
    } else if (!st.serial_given) {
        if (auto r = add_serial(st, "default serial port", console_in_use(st) ? "null" : "stdio", true); !r)
            return r;
    }
    if (auto r = check_frontends(st); !r)
        return r;
    for (const Chardev& chardev : st.chardevs) {
        if (chardev.backend != "console")
            continue;
        if (out.daemonize && !chardev.is_default)
            return fail(chardev.label, "cannot use stdio with -daemonize");
        out.attach_console = !out.daemonize;
        out.console_has_monitor = chardev.props.get("mux") == "on" &&
                                  std::any_of(st.monitors.begin(), st.monitors.end(), [&](const json& m) {
                                      return m["chardev"] == chardev.id && m["mode"] == "readline";
                                  });
    }
    return {};
}

void write_chardevs(State& st)
{
    json& cfg = st.cfg();
    json& chardevs = cfg["chardevs"] = json::array();
    for (const Chardev& chardev : st.chardevs) {
        chardevs.push_back({{"id", chardev.id}, {"backend", chardev.backend}});
        if (!chardev.props.empty())
            chardevs.back()["props"] = chardev.props.to_json();
    }
    cfg["serials"] = st.serials;
    cfg["monitors"] = st.monitors;
}

} // namespace emu::emuctl::detail
