#include "protocol/hmp/hmp.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <sstream>

namespace emu::hmp {

namespace {

std::string format_status(const json& v)
{
    std::string out = "VM status: ";
    out += v.value("running", false) ? "running" : "paused";
    if (v.value("singlestep", false))
        out += " (single step mode)";
    std::string status = v.value("status", "");
    if (!v.value("running", false) && status != "paused")
        out += " (" + status + ")";
    return out + "\n";
}

std::string format_version(const json& v)
{
    auto& q = v["qemu"];
    return std::to_string(q.value("major", 0)) + "." + std::to_string(q.value("minor", 0)) + "." +
           std::to_string(q.value("micro", 0)) + " (" + v.value("package", "") + ")\n";
}

std::string format_name(const json& v) { return v.contains("name") ? v["name"].get<std::string>() + "\n" : ""; }

std::string format_uuid(const json& v) { return v.value("UUID", "") + "\n"; }

std::string format_kvm(const json& v)
{
    if (!v.value("present", false))
        return "kvm support: not available\n";
    return std::string("kvm support: ") + (v.value("enabled", false) ? "enabled" : "disabled") + "\n";
}

// QEMU 2.10's `info cpus`: "* CPU #0: pc=0xffffffff81a3b4c2 (halted) thread_id=4242".
std::string format_cpus(const json& v)
{
    std::string out;
    for (auto& cpu : v) {
        char pc[32];
        std::snprintf(pc, sizeof pc, "0x%016llx", static_cast<unsigned long long>(cpu.value("pc", uint64_t(0))));
        out += std::string(cpu.value("current", false) ? "*" : " ") + " CPU #" + std::to_string(cpu.value("CPU", 0)) +
               ": pc=" + pc + (cpu.value("halted", false) ? " (halted)" : "") +
               " thread_id=" + std::to_string(cpu.value("thread_id", 0)) + "\n";
    }
    return out;
}

// `xp /FMT ADDR`: FMT is [COUNT][x|d|u][b|h|w|g] (hex words by default).
struct XpFormat {
    unsigned count = 1, size = 4;
    char base = 'x';
};

XpFormat xp_format(const std::vector<std::string>& words)
{
    XpFormat f;
    if (words.size() < 3 || words[1].empty() || words[1][0] != '/')
        return f;
    const char* p = words[1].c_str() + 1;
    if (std::isdigit(static_cast<unsigned char>(*p)))
        f.count = unsigned(std::strtoul(p, const_cast<char**>(&p), 10));
    for (; *p; p++) {
        switch (*p) {
        case 'x': case 'd': case 'u': f.base = *p; break;
        case 'b': f.size = 1; break;
        case 'h': f.size = 2; break;
        case 'w': f.size = 4; break;
        case 'g': f.size = 8; break;
        default: break;
        }
    }
    f.count = std::min(f.count, 65536u / f.size);
    return f;
}

// QEMU's layout: "ADDRESS: v v v v", 16 bytes a line.
std::string run_xp(const std::vector<std::string>& words, const Executor& execute)
{
    XpFormat f = xp_format(words);
    std::string addr_word = words.size() >= 3 ? words[2] : words.size() == 2 ? words[1] : std::string();
    if (addr_word.empty())
        return "xp: an address is needed (xp /FMT ADDR)\n";
    uint64_t addr = std::strtoull(addr_word.c_str(), nullptr, 0);
    auto r = execute("__org.emud_read-physical", {{"address", addr}, {"size", f.count * f.size}});
    if (!r)
        return "Error: " + r.error().desc + "\n";
    std::string hexdata = (*r)["data"].get<std::string>();
    std::string out;
    unsigned per_line = 16 / f.size;
    for (unsigned i = 0; i < f.count; i++) {
        if (i % per_line == 0) {
            char head[32];
            std::snprintf(head, sizeof head, "%s%016llx:", i ? "\n" : "",
                          static_cast<unsigned long long>(addr + uint64_t(i) * f.size));
            out += head;
        }
        uint64_t v = 0;
        for (unsigned b = 0; b < f.size; b++)
            v |= uint64_t(std::stoul(hexdata.substr((i * f.size + b) * 2, 2), nullptr, 16)) << (8 * b);
        char cell[32];
        if (f.base == 'x')
            std::snprintf(cell, sizeof cell, " 0x%0*llx", int(f.size * 2), static_cast<unsigned long long>(v));
        else if (f.base == 'u')
            std::snprintf(cell, sizeof cell, " %llu", static_cast<unsigned long long>(v));
        else {
            int64_t sv = f.size == 8 ? int64_t(v) : int64_t(v << (64 - 8 * f.size)) >> (64 - 8 * f.size);
            std::snprintf(cell, sizeof cell, " %lld", static_cast<long long>(sv));
        }
        out += cell;
    }
    return out + "\n";
}

json lapic_args(const std::vector<std::string>& words)
{
    // `info lapic [N]`
    json args = json::object();
    if (words.size() > 2)
        args["cpu-index"] = std::atoi(words[2].c_str());
    return args;
}

json registers_args(const std::vector<std::string>& words)
{
    // `info registers -a`: every vCPU; without it the monitor's CPU (0).
    bool all = std::find(words.begin(), words.end(), "-a") != words.end();
    return all ? json::object() : json{{"cpu-index", 0}};
}

std::string format_text(const json& v) { return v.value("human-readable-text", ""); }

std::string format_machines(const json& v)
{
    std::string out = "Supported machines are:\n";
    for (auto& m : v) {
        std::string name = m.value("name", "");
        out += name + std::string(name.size() < 20 ? 20 - name.size() : 1, ' ') +
               (m.value("is-default", false) ? " (default)" : "") + "\n";
    }
    return out;
}

std::string format_chardevs(const json& v)
{
    std::string out;
    for (auto& c : v)
        out += c.value("label", "") + ": filename=" + c.value("filename", "") + "\n";
    return out;
}

// ringbuf_read shows control characters as \uXXXX and a backslash as \\,
// so that what the guest wrote is visible whatever it was.
std::string format_ringbuf(const json& v)
{
    std::string out;
    for (unsigned char c : v.get<std::string>()) {
        if (c == '\\') {
            out += "\\\\";
        } else if ((c < 0x20 && c != '\n' && c != '\t') || c == 0x7f) {
            char esc[8];
            snprintf(esc, sizeof esc, "\\u%04X", c);
            out += esc;
        } else {
            out.push_back(char(c));
        }
    }
    return out + "\n";
}

// "ringbuf_write DEVICE DATA": DATA is the rest of the line; a double-quoted
// DATA takes C escapes (\n, \r, \t, \\, \").
// QEMU 2.10's `info block`.
std::string format_block(const json& v)
{
    std::string out;
    for (auto& b : v) {
        const json* ins = b.contains("inserted") ? &b["inserted"] : nullptr;
        out += b.value("device", "");
        if (ins) {
            out += " (" + ins->value("node-name", "") + "): " + ins->value("file", "") + " (" + ins->value("drv", "") +
                   (ins->value("ro", false) ? ", read-only" : "") + ")\n";
        } else {
            out += ": [not inserted]\n";
        }
        if (b.contains("qdev"))
            out += "    Attached to:      " + b["qdev"].get<std::string>() + "\n";
        if (b.value("removable", false))
            out += std::string("    Removable device: ") + (b.value("locked", false) ? "locked" : "not locked") +
                   ", tray " + (b.value("tray_open", false) ? "open" : "closed") + "\n";
        if (b.value("io-status", "ok") != "ok")
            out += "    I/O status:       " + b["io-status"].get<std::string>() + "\n";
        if (ins) {
            const json& cache = (*ins)["cache"];
            std::string mode = cache.value("writeback", true) ? "writeback" : "writethrough";
            if (cache.value("direct", false))
                mode += ", direct";
            if (cache.value("no-flush", false))
                mode += ", ignore flushes";
            out += "    Cache mode:       " + mode + "\n";
            const json& image = (*ins)["image"];
            if (image.contains("backing-filename"))
                out += "    Backing file:     " + image["backing-filename"].get<std::string>() + " (chain depth: " +
                       std::to_string(ins->value("backing_file_depth", 0)) + ")\n";
            if (ins->value("detect_zeroes", "off") != "off")
                out += "    Detect zeroes:    " + (*ins)["detect_zeroes"].get<std::string>() + "\n";
        }
        out += "\n";
    }
    return out;
}

// QEMU 2.10's `info blockstats`.
std::string format_blockstats(const json& v)
{
    std::string out;
    for (auto& b : v) {
        const json& s = b["stats"];
        out += b.value("device", "") + ":";
        for (const char* key : {"rd_bytes", "wr_bytes", "rd_operations", "wr_operations", "flush_operations",
                                "wr_total_time_ns", "rd_total_time_ns", "flush_total_time_ns", "rd_merged",
                                "wr_merged"})
            out += std::string(" ") + key + "=" + std::to_string(s.value(key, uint64_t(0)));
        out += "\n";
    }
    return out;
}

// A size with an optional K/M/G/T suffix (binary, as the monitor's 'o' type).
json size_word(const std::string& word)
{
    char* end = nullptr;
    double n = strtod(word.c_str(), &end);
    if (!end || end == word.c_str() || n < 0)
        return word; // not a size: the QMP validation names the argument
    uint64_t mult = 1;
    switch (*end) {
    case 'k': case 'K': mult = 1ull << 10; end++; break;
    case 'm': case 'M': mult = 1ull << 20; end++; break;
    case 'g': case 'G': mult = 1ull << 30; end++; break;
    case 't': case 'T': mult = 1ull << 40; end++; break;
    default: break;
    }
    if (*end == 'b' || *end == 'B')
        end++;
    if (*end)
        return word;
    return int64_t(n * double(mult));
}

json block_resize_args(const std::vector<std::string>& words)
{
    json args = json::object();
    if (words.size() > 1)
        args["device"] = words[1];
    if (words.size() > 2)
        args["size"] = size_word(words[2]);
    return args;
}

json eject_args(const std::vector<std::string>& words)
{
    json args = json::object();
    for (size_t i = 1; i < words.size(); i++) {
        if (words[i] == "-f")
            args["force"] = true;
        else
            args["device"] = words[i];
    }
    return args;
}

json change_args(const std::vector<std::string>& words)
{
    json args = json::object();
    const char* keys[] = {"device", "target", "arg"};
    for (size_t i = 1; i < words.size() && i <= 3; i++)
        args[keys[i - 1]] = words[i];
    return args;
}

// Positional words after the command name to named arguments; "-x" flags
// to booleans (or, for snapshot_blkdev's -n, to a mode).
json positional_args(const std::vector<std::string>& words, std::initializer_list<const char*> keys)
{
    json args = json::object();
    auto key = keys.begin();
    for (size_t i = 1; i < words.size() && key != keys.end(); i++, ++key)
        args[*key] = words[i];
    return args;
}

json snapshot_blkdev_args(const std::vector<std::string>& words)
{
    std::vector<std::string> rest{words.front()};
    bool reuse = false;
    for (size_t i = 1; i < words.size(); i++) {
        if (words[i] == "-n")
            reuse = true;
        else
            rest.push_back(words[i]);
    }
    json args = positional_args(rest, {"device", "snapshot-file", "format"});
    args["mode"] = reuse ? "existing" : "absolute-paths";
    return args;
}

json snapshot_internal_args(const std::vector<std::string>& words)
{
    return positional_args(words, {"device", "name"});
}

json snapshot_delete_internal_args(const std::vector<std::string>& words)
{
    return positional_args(words, {"device", "name", "id"});
}

json device_args(const std::vector<std::string>& words)
{
    return positional_args(words, {"device"});
}

json block_job_set_speed_args(const std::vector<std::string>& words)
{
    json args = positional_args(words, {"device"});
    if (words.size() > 2)
        args["speed"] = size_word(words[2]);
    return args;
}

// QEMU 2.10's `info block-jobs`.
std::string format_block_jobs(const json& v)
{
    if (v.empty())
        return "No active jobs\n";
    std::string out;
    for (const json& j : v)
        out += "Type " + j.value("type", "") + ", device " + j.value("device", "") + ": Completed " +
               std::to_string(j.value("offset", 0LL)) + " of " + std::to_string(j.value("len", 0LL)) +
               " bytes, speed limit " + std::to_string(j.value("speed", 0LL)) + " bytes/s\n";
    return out;
}

json ringbuf_write_args(const std::vector<std::string>& words)
{
    json args = json::object();
    if (words.size() > 1)
        args["device"] = words[1];
    if (words.size() < 3)
        return args;
    std::string data;
    for (size_t i = 2; i < words.size(); i++)
        data += (i > 2 ? " " : "") + words[i];
    if (data.size() >= 2 && data.front() == '"' && data.back() == '"') {
        std::string raw = data.substr(1, data.size() - 2);
        data.clear();
        for (size_t i = 0; i < raw.size(); i++) {
            if (raw[i] != '\\' || i + 1 == raw.size()) {
                data.push_back(raw[i]);
                continue;
            }
            char e = raw[++i];
            data.push_back(e == 'n' ? '\n' : e == 'r' ? '\r' : e == 't' ? '\t' : e);
        }
    }
    args["data"] = data;
    return args;
}

json ringbuf_read_args(const std::vector<std::string>& words)
{
    json args = json::object();
    if (words.size() > 1)
        args["device"] = words[1];
    if (words.size() > 2) {
        // Not a number: the QMP validation names the argument.
        char* end = nullptr;
        long long size = strtoll(words[2].c_str(), &end, 0);
        if (end && *end == 0 && !words[2].empty())
            args["size"] = size;
        else
            args["size"] = words[2];
    }
    return args;
}

// An HMP socket address ("HOST:PORT", "[V6]:PORT", "unix:PATH") as QMP's
// SocketAddressLegacy in QEMU 2.10's form. A word that is neither keeps
// 'port' out, so the QMP validation names what is missing.
json socket_address(const std::string& word)
{
    if (word.rfind("unix:", 0) == 0)
        return {{"type", "unix"}, {"data", {{"path", word.substr(5)}}}};
    json data = json::object();
    size_t colon = word.rfind(':');
    std::string host = colon == std::string::npos ? word : word.substr(0, colon);
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
        host = host.substr(1, host.size() - 2);
    data["host"] = host;
    if (colon != std::string::npos)
        data["port"] = word.substr(colon + 1);
    return {{"type", "inet"}, {"data", data}};
}

// Splits leading "-x" flags from the other words (the command name dropped).
std::vector<std::string> operands(const std::vector<std::string>& words, std::string& flags)
{
    std::vector<std::string> rest;
    for (size_t i = 1; i < words.size(); i++) {
        if (rest.empty() && words[i].size() == 2 && words[i][0] == '-')
            flags += words[i][1];
        else
            rest.push_back(words[i]);
    }
    return rest;
}

// `nbd_server_start [-a] [-w] HOST:PORT`: with -a, every drive with a medium
// is exported too (writable with -w); if one cannot be, the server stops.
std::string run_nbd_server_start(const std::vector<std::string>& words, const Executor& execute)
{
    std::string flags;
    auto rest = operands(words, flags);
    json args = json::object();
    if (!rest.empty())
        args["addr"] = socket_address(rest[0]);
    auto started = execute("nbd-server-start", args);
    if (!started)
        return "Error: " + started.error().desc + "\n";
    if (flags.find('a') == std::string::npos)
        return {};
    auto blocks = execute("query-block", json::object());
    qmp::Result<json> added = blocks;
    if (blocks)
        for (auto& b : *blocks) {
            if (!b.contains("inserted"))
                continue;
            added = execute("nbd-server-add",
                            {{"device", b["device"]}, {"writable", flags.find('w') != std::string::npos}});
            if (!added)
                break;
        }
    if (added)
        return {};
    (void)execute("nbd-server-stop", json::object());
    return "Error: " + added.error().desc + "\n";
}

json nbd_server_add_args(const std::vector<std::string>& words)
{
    std::string flags;
    auto rest = operands(words, flags);
    json args = json::object();
    if (flags.find('w') != std::string::npos)
        args["writable"] = true;
    if (!rest.empty())
        args["device"] = rest[0];
    if (rest.size() > 1)
        args["name"] = rest[1];
    return args;
}

json nbd_server_remove_args(const std::vector<std::string>& words)
{
    std::string flags;
    auto rest = operands(words, flags);
    json args = json::object();
    if (flags.find('f') != std::string::npos)
        args["mode"] = "hard";
    if (!rest.empty())
        args["name"] = rest[0];
    return args;
}

const std::vector<Command> k_commands = {
    {"help", "?", "[cmd]", "show the help", "", nullptr, nullptr},
    {"info", "", "[subcommand]", "show various information about the system state", "", nullptr, nullptr},
    {"stop", "s", "", "stop emulation", "stop", nullptr, nullptr},
    {"cont", "c", "", "resume emulation", "cont", nullptr, nullptr},
    {"system_reset", "", "", "reset the system", "system_reset", nullptr, nullptr},
    {"system_powerdown", "", "", "send system power down event", "system_powerdown", nullptr, nullptr},
    {"quit", "q", "", "quit the emulator", "quit", nullptr, nullptr},
    {"ringbuf_write", "", "device data", "type data into the serial port behind a ringbuf chardev", "ringbuf-write",
     ringbuf_write_args, nullptr},
    {"ringbuf_read", "", "device size", "read at most size bytes of a ringbuf chardev's output", "ringbuf-read",
     ringbuf_read_args, format_ringbuf},
    {"block_resize", "", "device size", "resize a block image", "block_resize", block_resize_args, nullptr},
    {"eject", "", "[-f] device", "eject a removable medium (use -f to force it)", "eject", eject_args, nullptr},
    {"change", "", "device filename [format]", "change a removable medium", "change", change_args, nullptr},
    {"nbd_server_start", "", "[-a] [-w] host:port",
     "serve block devices on the given host and port (-a: export every drive with a medium, -w: writable)",
     "nbd-server-start", nullptr, nullptr},
    {"nbd_server_add", "", "[-w] device [name]", "export a block device via NBD (-w: writable)", "nbd-server-add",
     nbd_server_add_args, nullptr},
    {"nbd_server_remove", "", "[-f] name",
     "remove an export previously exposed via NBD (-f: even if clients use it, disconnecting them)",
     "nbd-server-remove", nbd_server_remove_args, nullptr},
    {"nbd_server_stop", "", "", "stop serving block devices using the NBD protocol", "nbd-server-stop", nullptr,
     nullptr},
    {"snapshot_blkdev", "", "[-n] device [new-image-file] [format]",
     "initiates a live snapshot of device (-n: the image exists already)", "blockdev-snapshot-sync",
     snapshot_blkdev_args, nullptr},
    {"snapshot_blkdev_internal", "", "device name", "take an internal snapshot of device",
     "blockdev-snapshot-internal-sync", snapshot_internal_args, nullptr},
    {"snapshot_delete_blkdev_internal", "", "device name [id]", "delete an internal snapshot of device",
     "blockdev-snapshot-delete-internal-sync", snapshot_delete_internal_args, nullptr},
    {"commit", "", "device|all", "commit changes to the disk images (if -snapshot is used) or backing files",
     "__org.emud_commit", device_args, nullptr},
    {"block_job_cancel", "", "[-f] device", "stop an active background block operation (-f: at once)",
     "block-job-cancel", eject_args, nullptr},
    {"block_job_complete", "", "device", "stop an active background block operation", "block-job-complete",
     device_args, nullptr},
    {"block_job_set_speed", "", "device speed", "set maximum speed for a background block operation",
     "block-job-set-speed", block_job_set_speed_args, nullptr},
    {"xp", "", "/fmt addr", "physical memory dump starting at 'addr'", "__org.emud_read-physical", nullptr, nullptr},
};

const std::vector<Command> k_info = {
    {"status", "", "", "show the current VM status (running|paused)", "query-status", nullptr, format_status},
    {"version", "", "", "show the version of QEMU", "query-version", nullptr, format_version},
    {"name", "", "", "show the current VM name", "query-name", nullptr, format_name},
    {"uuid", "", "", "show the current VM UUID", "query-uuid", nullptr, format_uuid},
    {"kvm", "", "", "show KVM information", "query-kvm", nullptr, format_kvm},
    {"cpus", "", "", "show information about active cpus", "query-cpus", nullptr, format_cpus},
    {"registers", "", "[-a]", "show the cpu registers (-a: all CPUs)", "__org.emud_query-registers", registers_args,
     format_text},
    {"machines", "", "", "show the supported machine types", "query-machines", nullptr, format_machines},
    {"chardev", "", "", "show the character devices", "query-chardev", nullptr, format_chardevs},
    {"block", "", "", "show the block devices", "query-block", nullptr, format_block},
    {"lapic", "", "[cpu]", "show the local APIC state", "__org.emud_query-lapic", lapic_args, format_text},
    {"blockstats", "", "", "show block device statistics", "query-blockstats", nullptr, format_blockstats},
    {"block-jobs", "", "", "show progress of ongoing block device operations", "query-block-jobs", nullptr,
     format_block_jobs},
};

std::vector<std::string> split_words(std::string_view line)
{
    std::vector<std::string> words;
    std::istringstream in{std::string(line)};
    std::string w;
    while (in >> w)
        words.push_back(w);
    return words;
}

const Command* find(const std::vector<Command>& table, std::string_view name)
{
    for (auto& c : table) {
        if (c.name == name)
            return &c;
        if (!c.aliases.empty()) {
            std::string_view aliases = c.aliases;
            size_t pos = 0;
            while (pos <= aliases.size()) {
                size_t bar = aliases.find('|', pos);
                if (aliases.substr(pos, bar - pos) == name)
                    return &c;
                if (bar == std::string_view::npos)
                    break;
                pos = bar + 1;
            }
        }
    }
    return nullptr;
}

std::string help_line(const Command& c, std::string_view prefix)
{
    std::string out(prefix);
    out += c.name;
    if (!c.aliases.empty())
        out += "|" + std::string(c.aliases);
    if (!c.params.empty())
        out += " " + std::string(c.params);
    return out + " -- " + std::string(c.help) + "\n";
}

std::string help_text(const std::vector<std::string>& words)
{
    std::string out;
    bool info_only = words.size() > 1 && words[1] == "info";
    if (!info_only)
        for (auto& c : k_commands) {
            if (words.size() > 1 && c.name != words[1] && !find({c}, words[1]))
                continue;
            out += help_line(c, "");
        }
    if (words.size() == 1 || info_only)
        for (auto& c : k_info)
            out += help_line(c, "info ");
    return out;
}

std::string call(const Command& c, const std::vector<std::string>& words, const Executor& execute)
{
    json args = c.arguments ? c.arguments(words) : json::object();
    auto result = execute(std::string(c.qmp), args);
    if (!result)
        return "Error: " + result.error().desc + "\n";
    return c.format ? c.format(*result) : std::string();
}

} // namespace

const std::vector<Command>& commands() { return k_commands; }
const std::vector<Command>& info_commands() { return k_info; }

std::string run(std::string_view line, const Executor& execute)
{
    auto words = split_words(line);
    if (words.empty())
        return {};
    const Command* c = find(k_commands, words[0]);
    if (!c)
        return "unknown command: '" + words[0] + "'\n";
    if (c->name == "help")
        return help_text(words);
    if (c->name == "xp")
        return run_xp(words, execute);
    if (c->name == "nbd_server_start")
        return run_nbd_server_start(words, execute);
    if (c->name == "info") {
        if (words.size() < 2)
            return help_text({"help", "info"});
        const Command* sub = find(k_info, words[1]);
        if (!sub)
            return "unknown command: 'info " + words[1] + "'\n";
        return call(*sub, words, execute);
    }
    return call(*c, words, execute);
}

std::string banner(const json& version)
{
    auto& q = version["qemu"];
    return "QEMU " + std::to_string(q.value("major", 0)) + "." + std::to_string(q.value("minor", 0)) + "." +
           std::to_string(q.value("micro", 0)) + " monitor - type 'help' for more information\n";
}

} // namespace emu::hmp
