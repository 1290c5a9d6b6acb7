// clients/emuctl/flags_internal.h — what flags.cpp and flags_chardev.cpp
// share: the translation State, one flag occurrence (Use), the error helpers
// and the character-device handlers. Not for use outside the two files; the
// interface is flags.h.
#pragma once

#include "clients/emuctl/flags.h"
#include "clients/emuctl/qemu_opts.h"

#include <algorithm>
#include <expected>
#include <iterator>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace emu::emuctl::detail {

using json = nlohmann::json;
using Result = std::expected<void, FlagError>;

// One occurrence of a flag.
struct Use {
    std::string_view name; // the table's name, without dashes
    std::string_view arg;
    bool has_arg = false;

    std::string label() const
    {
        std::string out = "-" + std::string(name);
        if (has_arg)
            out += arg.empty() ? std::string(" ''") : " " + std::string(arg);
        return out;
    }
};

inline std::unexpected<FlagError> fail(std::string_view label, std::string_view cause)
{
    return std::unexpected(FlagError{std::string(label) + ": " + std::string(cause)});
}

inline std::unexpected<FlagError> fail(const Use& use, std::string_view cause) { return fail(use.label(), cause); }

template <class T> Result check(const Use& use, const std::expected<T, OptsError>& result)
{
    if (!result)
        return fail(use, result.error().message);
    return {};
}

template <size_t N> bool contains(const std::string_view (&list)[N], std::string_view item)
{
    return std::find(std::begin(list), std::end(list), item) != std::end(list);
}

struct Chardev {
    std::string id;
    std::string backend; // QEMU's stdio is emud's "console"
    QemuOpts props;
    std::string label;   // the flag that made it, for messages
    bool is_default = false;
};

// A serial port or monitor using a chardev.
struct Frontend {
    std::string chardev;
    std::string label;
};

struct State {
    std::string cwd;
    RunOptions out;
    std::vector<Chardev> chardevs;
    std::vector<Frontend> frontends;
    std::vector<std::string> serials;
    json monitors = json::array();
    bool serial_given = false;  // any -serial (even "none"): no default serial port
    bool monitor_given = false; // -monitor, -qmp, -mon or -serial mon:...: no default monitor
    unsigned monitor_index = 0; // for compat_monitorN
    std::string machine_type;
    QemuOpts machine_props;
    std::vector<std::pair<std::string, QemuOpts>> accels;
    QemuOpts memory; // merged -m options
    QemuOpts smp;    // merged -smp options
    json drives = json::array();
    json blockdevs = json::array();
    json netdevs = json::array();
    json devices = json::array();

    json& cfg() { return out.config; }
};

// flags.cpp

// PATH made absolute against CWD ("./" prefixes dropped).
std::string join_path(const std::string& cwd, std::string_view path);
// The flag's argument as QEMU options; IMPLIED names a leading key-less value.
std::expected<QemuOpts, FlagError> opts(const Use& use, std::string_view implied = {});

// flags_chardev.cpp: -chardev, -serial, -monitor, -qmp, -mon, -nographic.

Result on_chardev(State& st, const Use& use);
Result on_serial(State& st, const Use& use);
Result on_debugcon(State& st, const Use& use);
Result on_monitor(State& st, const Use& use);
Result on_qmp(State& st, const Use& use);
Result on_mon(State& st, const Use& use);
Result on_nographic(State& st, const Use& use);

// After the last flag: adds QEMU's default serial port and monitor (the
// -nographic rules), checks every chardev:ID and chardev sharing, and sets
// RunOptions::attach_console / console_has_monitor.
Result finish_chardevs(State& st);
// Writes "chardevs", "serials" and "monitors" into the config.
void write_chardevs(State& st);

} // namespace emu::emuctl::detail
