// clients/emuctl/flags.h — QEMU 2.10 command-line flags → one VmConfig document.
//
// `emuctl run FLAGS...` hands its flags to translate_flags(), which returns
// the VmConfig (protocol/qmp/schema.json) for __org.emud_vm-create plus the
// things emuctl itself acts on (attach the terminal, daemonize, pidfile,
// help). Flags whose subsystem emud does not have yet are parsed in full and
// then refused by translate_flags() with "-FLAG: not supported yet (...)";
// translate_flags_unchecked() skips that refusal so the translation can be
// tested before the subsystem lands. docs/emuctl.md documents every flag.
#pragma once

#include <nlohmann/json.hpp>

#include <expected>
#include <string>
#include <vector>

namespace emu::emuctl {

struct RunOptions {
    nlohmann::json config = nlohmann::json::object(); // a VmConfig document
    bool nographic = false;
    bool daemonize = false;      // -daemonize: emuctl exits once the VM is running
    std::string pidfile;         // -pidfile PATH (absolute)
    // A chardev of backend "console" exists (stdio in QEMU terms) and emuctl
    // stays in the foreground: emuctl puts the terminal on it. Always false
    // with -daemonize (the console is then reachable with `emuctl console`).
    bool attach_console = false;
    // That console is muxed with a readline monitor (mon:stdio / -nographic):
    // Ctrl-a c switches to the HMP monitor.
    bool console_has_monitor = false;
    // "machine", "cpu", "device" or "accel" when the user asked `-machine help`
    // etc.; main() answers it and nothing else is translated.
    std::string help_topic;
    std::string help_arg; // e.g. the device name for `-device NAME,help`
};

struct FlagError {
    std::string message; // full message, e.g. "-foo: invalid option"
};

// ARGS are the flags after `emuctl run` ("-opt" or "--opt"); CWD is emuctl's
// absolute working directory, used to make relative paths absolute because
// the daemon's working directory differs.
std::expected<RunOptions, FlagError> translate_flags(const std::vector<std::string>& args,
                                                     const std::string& cwd);
// The same translation without refusing the flags emud does not support yet.
std::expected<RunOptions, FlagError> translate_flags_unchecked(const std::vector<std::string>& args,
                                                               const std::string& cwd);

} // namespace emu::emuctl
