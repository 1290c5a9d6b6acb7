// Unit tests: VM config documents to VM specs (daemon/vm_config).
#include "daemon/vm_config.h"

#include <doctest/doctest.h>

using namespace emu;
using json = nlohmann::json;

namespace {
kvm::ProbeResult no_kvm{false, "/dev/kvm: No such file or directory"};
kvm::ProbeResult with_kvm{true, ""};

qmp::Result<daemon::VmSpec> parse(const json& config, const kvm::ProbeResult& kvm = no_kvm)
{
    return daemon::parse_vm_config(config, kvm, [](const std::string& n) { return n == "taken"; }, "vm0");
}

std::string error_of(const json& config, const kvm::ProbeResult& kvm = no_kvm)
{
    auto r = parse(config, kvm);
    return r ? std::string() : r.error().desc;
}
} // namespace

TEST_CASE("defaults")
{
    auto spec = parse(json::object());
    REQUIRE(spec);
    CHECK(spec->name == "vm0");
    CHECK(spec->config["name"] == "vm0");
    CHECK(spec->uuid == "00000000-0000-0000-0000-000000000000");
    CHECK(spec->machine.type == "pc-i440fx-2.10");
    CHECK(spec->machine.accel == "tcg");
    CHECK(spec->machine.cpus == 1);
    CHECK(spec->machine.ram_size == 128ull << 20);
    CHECK_FALSE(spec->start_paused);
}

TEST_CASE("names")
{
    CHECK(daemon::valid_vm_name("web-1.prod_2"));
    CHECK_FALSE(daemon::valid_vm_name(""));
    CHECK_FALSE(daemon::valid_vm_name("-x"));
    CHECK_FALSE(daemon::valid_vm_name("a/b"));
    CHECK_FALSE(daemon::valid_vm_name("../x"));
    CHECK_FALSE(daemon::valid_vm_name(std::string(65, 'a')));
    CHECK(error_of(json({{"name", "taken"}})) == "a VM named 'taken' already exists");
}

TEST_CASE("accelerator choice and fallback")
{
    auto kvm_only = json::parse(R"({"accel": [{"type": "kvm"}]})");
    auto kvm_tcg = json::parse(R"({"accel": [{"type": "kvm"}, {"type": "tcg"}]})");
    CHECK(error_of(kvm_only).find("/dev/kvm") != std::string::npos);
    CHECK(parse(kvm_only).error().cls == qmp::ErrorClass::KVMMissingCap);
    auto fallback = parse(kvm_tcg);
    REQUIRE(fallback.has_value());
    CHECK(fallback->machine.accel == "tcg");
    CHECK(parse(kvm_tcg, with_kvm)->machine.accel == "kvm");
    CHECK(error_of(json::parse(R"({"accel": [{"type": "tcg", "props": {"thread": "many"}}]})")).find("thread") !=
          std::string::npos);
    CHECK(error_of(json::parse(R"({"accel": [{"type": "whpx"}]})")) == "invalid accelerator whpx");
    CHECK(error_of(json::parse(R"({"cpu": {"model": "host"}})")) == "CPU model 'host' requires KVM");
}

TEST_CASE("topology and memory limits")
{
    CHECK(error_of(json({{"machine", {{"type", "none"}}}, {"smp", {{"cpus", 2}}}})) ==
          "Invalid SMP CPUs 2. The max CPUs supported by machine 'none' is 1");
    CHECK(error_of(json({{"smp", {{"cpus", 256}}}})) == "Invalid SMP CPUs 256. The max CPUs supported by machine 'pc-i440fx-2.10' is 255");
    CHECK(error_of(json({{"smp", {{"cpus", 0}}}})) == "smp: cpus must be at least 1");
    CHECK(error_of(json({{"smp", {{"cpus", 1}, {"maxcpus", 0}}}})).find("maxcpus") != std::string::npos);
    CHECK(error_of(json({{"memory", {{"size", 1000}}}})).find("below the minimum") != std::string::npos);
    CHECK(error_of(json({{"memory", {{"size", uint64_t(1) << 41}}}})).find("above the maximum") != std::string::npos);
    auto spec = parse({{"memory", {{"size", (512u << 20) + 1}}}});
    CHECK(spec->machine.ram_size == (512u << 20) + 4096);
}

TEST_CASE("chardevs and monitors")
{
    auto spec = parse(json::parse(R"({
        "chardevs": [
            {"id": "con", "backend": "console", "props": {"mux": "on"}},
            {"id": "q", "backend": "socket", "props": {"path": "/tmp/q.sock", "server": "on", "wait": "off"}},
            {"id": "t", "backend": "socket", "props": {"host": "127.0.0.1", "port": "0", "server": true}}],
        "serials": ["con"],
        "monitors": [{"chardev": "con"}, {"chardev": "q", "mode": "control"}]})"));
    REQUIRE_MESSAGE(spec.has_value(), (spec ? std::string() : spec.error().desc));
    CHECK(spec->chardevs[1].address == "unix:/tmp/q.sock");
    CHECK_FALSE(spec->chardevs[1].wait);
    CHECK(spec->chardevs[2].address == "tcp:127.0.0.1:0");
    CHECK(spec->chardevs[2].wait); // QEMU's default for servers
    CHECK(spec->monitors[1].control);

    auto err = [](const char* text) { return error_of(json::parse(text)); };
    CHECK(err(R"({"chardevs": [{"id": "c", "backend": "console"}], "serials": ["c"],
                  "monitors": [{"chardev": "c"}]})")
              .find("mux=on") != std::string::npos);
    CHECK(err(R"({"chardevs": [{"id": "c", "backend": "socket", "props": {"path": "rel.sock", "server": "on"}}]})")
              .find("absolute") != std::string::npos);
    CHECK(err(R"({"chardevs": [{"id": "c", "backend": "warp"}]})") == "chardev 'c': backend 'warp' is unknown");
    CHECK(err(R"({"chardevs": [{"id": "c", "backend": "null"}, {"id": "c", "backend": "null"}]})") ==
          "chardev 'c' is defined twice");
    CHECK(err(R"({"monitors": [{"chardev": "nope"}]})") == "monitor: chardev 'nope' is not defined");
}

TEST_CASE("drives: interfaces, QEMU's ids and node names, the implied devices, and the refusals")
{
    using daemon::VmSpec;
    auto spec_of = [](const char* text) {
        auto spec = parse(json::parse(text));
        REQUIRE(spec.has_value());
        return *spec;
    };
    auto err = [](const char* text) { return error_of(json::parse(text)); };
    VmSpec s = spec_of(R"({"drives": [{"file": "/a.qcow2", "if": "virtio"}, {"file": "/b.img", "index": "1"},
                                      {"file": "/c.iso", "media": "cdrom", "index": "2"}, {"file": "", "media": "cdrom"},
                                      {"file": "/d.img", "if": "none", "id": "disk9", "cache": "none",
                                       "detect-zeroes": "on", "werror": "stop", "rerror": "ignore"}]})");
    REQUIRE(s.drives.size() == 5);
    CHECK(s.drives[0].id == "virtio0");
    CHECK(s.drives[1].id == "ide0-hd1");
    CHECK(s.drives[2].id == "ide1-cd0");
    CHECK(s.drives[2].read_only);
    CHECK(s.drives[3].id == "ide0-cd0"); // the first free place, an empty CD-ROM
    CHECK(s.drives[3].file.empty());
    CHECK(s.drives[4].id == "disk9");
    CHECK(s.drives[4].cache == storage::CacheMode::None);
    CHECK(s.drives[4].detect_zeroes == storage::DetectZeroes::On);
    CHECK(s.drives[4].werror == devices::BlockErrorAction::Stop);
    CHECK(s.drives[4].rerror == devices::BlockErrorAction::Ignore);
    CHECK(s.drives[0].node_name == "#block100");
    // if=virtio and if=ide imply their devices; if=none waits for a -device.
    REQUIRE(s.machine.devices.size() == 4);
    CHECK(s.machine.devices[0].driver == "virtio-blk-pci");
    CHECK(s.machine.devices[0].props.at("drive") == "virtio0");
    CHECK(s.machine.devices[2].driver == "ide-cd");
    CHECK(s.machine.devices[2].props.at("bus") == "ide.1");
    // -snapshot: every writable drive with a file gets an overlay.
    VmSpec snap = spec_of(R"({"snapshot": true, "drives": [{"file": "/a.img"}, {"file": "/b.img", "readonly": "on"}]})");
    CHECK(snap.drives[0].snapshot);
    CHECK_FALSE(snap.drives[1].snapshot);

    CHECK(err(R"({"drives": [{"file": "/a", "if": "scsi"}]})") ==
          "drive: if=scsi is not supported yet (supported: ide, virtio, none)");
    CHECK(err(R"({"drives": [{"file": "/a", "format": "vmdk"}]})") ==
          "drive: format 'vmdk' is not supported yet (supported: raw, qcow2)");
    CHECK(err(R"({"drives": [{"file": "/a", "copy-on-read": "on"}]})") ==
          "drive: option 'copy-on-read' is not supported yet");
    CHECK(err(R"({"drives": [{"file": "/a", "index": "4"}]})") ==
          "drive: IDE bus 2 unit 0 does not exist (2 buses of 2 units: index 0-3)");
    CHECK(err(R"({"drives": [{"file": "/a", "index": "0"}, {"file": "/b", "index": "0"}]})") ==
          "drive: IDE bus 0 unit 0 is already in use");
    CHECK(err(R"({"drives": [{"file": "/a", "if": "virtio", "id": "x"}, {"file": "/b", "if": "none", "id": "x"}]})") ==
          "drive: Duplicate ID 'x' for drive");
    CHECK(err(R"({"drives": [{"file": "/a", "werror": "panic"}]})") == "drive: 'panic' invalid write error action");
    CHECK(err(R"({"drives": [{"if": "virtio"}]})") == "drive: a disk needs a file (only a cdrom may be empty)");
    CHECK(err(R"({"drives": [{"file": "/a", "detect-zeroes": "unmap"}]})") ==
          "drive: setting detect-zeroes to unmap is not allowed without setting discard operation to unmap");
    CHECK(err(R"({"devices": [{"driver": "virtio-blk-pci", "props": {"drive": "nope"}}]})") ==
          "device 'virtio-blk-pci': drive 'nope' not found");
}

TEST_CASE("sections without a subsystem yet are refused by name")
{
    auto err = [](const char* text) { return error_of(json::parse(text)); };
    CHECK(err(R"({"blockdevs": [{"driver": "raw"}]})") == "blockdev: 'node-name' must be specified for the root node");
    CHECK(err(R"({"blockdevs": [{"driver": "raw", "node-name": "a"}, {"driver": "raw", "node-name": "a"}]})") ==
          "blockdev: Duplicate node name");
    CHECK(err(R"({"netdevs": [{"type": "user"}]})") == "netdevs: network backends are not supported yet");
    CHECK(err(R"({"vnc": {"display": ":1"}})") == "vnc: the VNC server is not supported yet");
    CHECK(err(R"({"devices": [{"driver": "e1000"}]})") == "'e1000' is not a valid device model name");
    CHECK(err(R"({"devices": [{"driver": "isa-debug-exit", "props": {"size": 4}}]})") ==
          "Property 'isa-debug-exit.size' not found");
    CHECK(err(R"({"devices": [{"driver": "isa-debug-exit", "props": {"iobase": "0xf4", "iosize": 4}}]})") == "");
    CHECK(err(R"({"drives": []})") == "");
    // The kernel is the machine's business (machine 'none' refuses it when created).
    CHECK(err(R"({"kernel": "/vmlinuz"})") == "");
}

TEST_CASE("chardev backends")
{
    auto one = [](const char* backend, json props) {
        json c = {{"id", "c"}, {"backend", backend}};
        if (!props.is_null())
            c["props"] = props;
        return parse(json({{"chardevs", {c}}, {"serials", {"c"}}}));
    };
    auto err = [&](const char* backend, json props) {
        auto r = one(backend, props);
        return r ? std::string() : r.error().desc;
    };

    auto file = one("file", {{"path", "/var/log/s.log"}, {"append", "on"}});
    REQUIRE(file);
    CHECK(file->chardevs[0].path == "/var/log/s.log");
    CHECK(file->chardevs[0].append);
    CHECK_FALSE(one("file", {{"path", "/x"}})->chardevs[0].append);
    CHECK(err("file", nullptr) == "chardev 'c': backend 'file' needs a path");
    CHECK(err("file", {{"path", "x.log"}}).find("absolute") != std::string::npos);
    CHECK(err("file", {{"path", "/x"}, {"append", "maybe"}}) ==
          "chardev 'c': append: 'maybe' is not a boolean (use on or off)");
    CHECK(err("file", {{"path", "/x"}, {"size", "4"}}) ==
          "chardev 'c': property 'size' is not supported for backend 'file'");
    CHECK(err("file", {{"path", "/x"}, {"logfile", "/y"}}) == "chardev 'c': logfile is not supported yet");

    CHECK(one("pipe", {{"path", "/tmp/fifo"}})->chardevs[0].path == "/tmp/fifo");
    CHECK(err("pipe", {{"path", "/x"}, {"append", "on"}}).find("'append' is not supported") != std::string::npos);
    CHECK(one("pty", nullptr));
    CHECK(err("pty", {{"path", "/x"}}).find("'path' is not supported") != std::string::npos);

    // ringbuf: 64 KiB by default, a power of two, suffixes, 'memory' is its old name.
    CHECK(one("ringbuf", nullptr)->chardevs[0].size == 65536);
    CHECK(one("ringbuf", {{"size", "1M"}})->chardevs[0].size == 1u << 20);
    CHECK(one("ringbuf", {{"size", 4096}})->chardevs[0].size == 4096);
    CHECK(one("memory", nullptr)->chardevs[0].backend == "ringbuf");
    CHECK(err("ringbuf", {{"size", "1000"}}) == "chardev 'c': size of ringbuf chardev must be power of two");
    CHECK(err("ringbuf", {{"size", "0"}}) == "chardev 'c': size of ringbuf chardev must be power of two");
    CHECK(err("ringbuf", {{"size", "lots"}}).find("is not a size") != std::string::npos);
    CHECK(err("ringbuf", {{"size", "1G"}}).find("above the maximum") != std::string::npos);

    // stdio is the console.
    CHECK(one("stdio", nullptr)->chardevs[0].backend == "console");

    // Sockets: servers and clients, unix and TCP.
    auto server = one("socket", {{"path", "/run/s.sock"}, {"server", "on"}, {"wait", "off"}});
    REQUIRE(server);
    CHECK(server->chardevs[0].server);
    CHECK_FALSE(server->chardevs[0].wait);
    auto client = one("socket", {{"host", "10.0.0.1"}, {"port", "4444"}, {"reconnect", "5"}, {"nodelay", "on"}});
    REQUIRE(client);
    CHECK_FALSE(client->chardevs[0].server);
    CHECK_FALSE(client->chardevs[0].wait); // wait is for servers
    CHECK(client->chardevs[0].address == "tcp:10.0.0.1:4444");
    CHECK(client->chardevs[0].reconnect == 5);
    CHECK(client->chardevs[0].nodelay);
    CHECK(one("socket", {{"port", "4444"}, {"delay", "off"}})->chardevs[0].nodelay);
    CHECK(one("socket", {{"host", "::1"}, {"port", "4444"}})->chardevs[0].address == "tcp:[::1]:4444");
    CHECK(one("socket", {{"host", ""}, {"port", "4444"}, {"server", "on"}})->chardevs[0].address == "tcp::4444");
    CHECK(one("socket", {{"host", ""}, {"port", "4444"}})->chardevs[0].address == "tcp:127.0.0.1:4444");
    CHECK(err("socket", {{"port", "0"}}) == "chardev 'c': a client needs a port other than 0");
    CHECK(err("socket", {{"port", "70000"}}).find("port must be a number") != std::string::npos);
    CHECK(err("socket", {{"path", "/x"}, {"reconnect", "soon"}}).find("reconnect must be") != std::string::npos);
    CHECK(err("socket", {{"path", "/x"}, {"server", "on"}, {"reconnect", "1"}}) ==
          "chardev 'c': reconnect is for clients (server=off) only");
    CHECK(err("socket", {{"path", "/x"}, {"telnet", "on"}}) == "chardev 'c': telnet=on is not supported yet");
    CHECK(err("socket", {{"path", "/x"}, {"port", "1"}}) == "chardev 'c': give either path or host and port");
    CHECK(err("socket", nullptr) == "chardev 'c': socket needs path, or host and port");

    // QEMU's other backends are refused by name.
    CHECK(err("udp", nullptr) == "chardev 'c': backend 'udp' is not supported: UDP sockets are not supported");
    for (const char* b : {"serial", "tty", "parallel", "vc", "msmouse", "braille", "spicevmc", "spiceport"})
        CHECK(err(b, nullptr).find(std::string("backend '") + b + "' is not supported: ") != std::string::npos);
}

TEST_CASE("chardev users: serial ports, monitors, mux")
{
    auto err = [](const char* text) { return error_of(json::parse(text)); };
    // A mux socket carries a serial port and a human monitor.
    CHECK(err(R"({"chardevs": [{"id": "m", "backend": "socket", "props": {"path": "/m", "server": "on", "mux": "on"}}],
                  "serials": ["m"], "monitors": [{"chardev": "m"}]})") == "");
    CHECK(err(R"({"chardevs": [{"id": "p", "backend": "pty", "props": {"mux": "on"}}],
                  "serials": ["p"], "monitors": [{"chardev": "p"}]})") == "");
    CHECK(err(R"({"chardevs": [{"id": "p", "backend": "pty"}], "monitors": [{"chardev": "p"}]})") == "");
    CHECK(err(R"({"chardevs": [{"id": "p", "backend": "pty"}], "serials": ["p"], "monitors": [{"chardev": "p"}]})") ==
          "chardev 'p' is used twice without mux=on");
    CHECK(err(R"({"chardevs": [{"id": "p", "backend": "pty", "props": {"mux": "on"}}], "serials": ["p", "p"]})") ==
          "chardev 'p': a mux chardev serves one serial port and one monitor");
    CHECK(err(R"({"chardevs": [{"id": "f", "backend": "file", "props": {"path": "/f"}}],
                  "monitors": [{"chardev": "f"}]})") ==
          "monitor on 'f': a monitor on a file chardev cannot read commands");
    CHECK(err(R"({"chardevs": [{"id": "p", "backend": "pty"}], "monitors": [{"chardev": "p", "mode": "control"}]})") ==
          "monitor on 'p': QMP (mode=control) needs a socket chardev with server=on and without mux=on");
    CHECK(err(R"({"chardevs": [{"id": "m", "backend": "socket", "props": {"path": "/m", "server": "on", "mux": "on"}}],
                  "monitors": [{"chardev": "m", "mode": "control"}]})")
              .find("without mux=on") != std::string::npos);
    // A serial port on every backend.
    for (const char* backend : {"null", "pty", "ringbuf"}) {
        json config = {{"chardevs", {{{"id", "s"}, {"backend", backend}}}}, {"serials", {"s"}}};
        CHECK_MESSAGE(error_of(config) == "", backend);
    }
}
