// protocol/hmp/hmp.h — the human monitor: a thin text layer over QMP.
//
// Every HMP command names the QMP command it runs; the monitor only turns
// words into arguments and a return value into text. One implementation of
// each action lives behind QMP.
#pragma once

#include "protocol/qmp/error.h"

#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

namespace emu::hmp {

using json = nlohmann::json;

// Runs a QMP command on the monitor's VM.
using Executor = std::function<qmp::Result<json>(const std::string& command, const json& arguments)>;

struct Command {
    std::string_view name;    // "cont"; info subcommands live in their own table
    std::string_view aliases; // "c"
    std::string_view params;  // as shown by help
    std::string_view help;
    std::string_view qmp;     // the QMP command behind it
    json (*arguments)(const std::vector<std::string>& words) = nullptr;
    std::string (*format)(const json& value) = nullptr;
};

const std::vector<Command>& commands();
const std::vector<Command>& info_commands();

// Runs one command line; returns its output (lines end in "\n"). Errors
// print as QEMU's monitor prints them ("Error: …", "unknown command: 'x'").
std::string run(std::string_view line, const Executor& execute);

// The banner a monitor prints when a client connects.
std::string banner(const json& version);
inline constexpr std::string_view k_prompt = "(qemu) ";

} // namespace emu::hmp
