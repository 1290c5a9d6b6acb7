// tests/unit/test_flags.cpp — emuctl's QEMU flag translator (clients/emuctl/flags.h).
#include "clients/emuctl/flags.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <initializer_list>

using namespace emu::emuctl;
using nlohmann::json;

namespace {

const std::string k_cwd = "/home/user/vm";
constexpr uint64_t k_mib = uint64_t{1} << 20;

using Args = std::vector<std::string>;

// The members of VmConfig in protocol/qmp/schema.json.
constexpr std::string_view k_config_members[] = {
    "name", "uuid", "machine", "accel", "cpu", "smp", "memory", "kernel", "initrd", "append",
    "boot", "rtc", "start-paused", "no-reboot", "no-shutdown", "snapshot", "incoming", "chardevs",
    "serials", "monitors", "drives", "blockdevs", "netdevs", "devices", "display", "vnc"};

void check_schema_members(const json& config)
{
    REQUIRE(config.is_object());
    for (const auto& [key, value] : config.items()) {
        INFO("config member: " << key);
        CHECK(std::find(std::begin(k_config_members), std::end(k_config_members), key) != std::end(k_config_members));
    }
}

RunOptions run(const Args& args)
{
    auto result = translate_flags(args, k_cwd);
    if (!result)
        FAIL("translate_flags failed: " << result.error().message);
    check_schema_members(result->config);
    return *result;
}

RunOptions run_unchecked(const Args& args)
{
    auto result = translate_flags_unchecked(args, k_cwd);
    if (!result)
        FAIL("translate_flags_unchecked failed: " << result.error().message);
    check_schema_members(result->config);
    return *result;
}

std::string error_of(const Args& args)
{
    auto result = translate_flags(args, k_cwd);
    REQUIRE_FALSE(result.has_value());
    return result.error().message;
}

std::string unchecked_error_of(const Args& args)
{
    auto result = translate_flags_unchecked(args, k_cwd);
    REQUIRE_FALSE(result.has_value());
    return result.error().message;
}

const json k_default_console = {{"id", "serial0"}, {"backend", "console"}};

} // namespace

// ---- general ----

TEST_CASE("no flags: serial0 on the console, nothing else")
{
    RunOptions run_options = run({});
    CHECK(run_options.config == json{{"chardevs", {k_default_console}},
                                     {"serials", {"serial0"}},
                                     {"monitors", json::array()}});
    CHECK(run_options.attach_console);
    CHECK_FALSE(run_options.console_has_monitor);
    CHECK_FALSE(run_options.nographic);
    CHECK_FALSE(run_options.daemonize);
    CHECK(run_options.pidfile.empty());
    CHECK(run_options.help_topic.empty());
}

TEST_CASE("options may be written with one or two dashes")
{
    CHECK(run({"--m", "256"}).config["memory"]["size"] == 256 * k_mib);
    CHECK(run({"--nographic"}).nographic);
    CHECK(run({"--name", "a", "-S"}).config["start-paused"] == true);
}

TEST_CASE("unknown options")
{
    CHECK(error_of({"-foo"}) == "-foo: invalid option");
    CHECK(error_of({"--foo", "x"}) == "--foo: invalid option");
    CHECK(error_of({"-"}) == "-: invalid option");
    CHECK(error_of({"--"}) == "--: invalid option");
    CHECK(error_of({"-m=512"}) == "-m=512: invalid option");
    CHECK(error_of({"-NAME", "x"}) == "-NAME: invalid option");
}

TEST_CASE("missing arguments")
{
    for (std::string_view flag : {"m", "smp", "name", "uuid", "machine", "M", "cpu", "accel", "kernel", "initrd",
                                  "append", "serial", "monitor", "qmp", "mon", "chardev", "display", "pidfile",
                                  "drive", "hda", "cdrom", "boot", "vnc", "netdev", "device", "incoming", "rtc"}) {
        CHECK(error_of({"-" + std::string(flag)}) == "-" + std::string(flag) + ": requires an argument");
    }
    CHECK(error_of({"--m"}) == "-m: requires an argument");
    CHECK(error_of({"-name", "x", "-m"}) == "-m: requires an argument");
}

TEST_CASE("an argument that looks like a flag is still the argument")
{
    CHECK(run({"-kernel", "k", "-append", "-v"}).config["append"] == "-v");
}

TEST_CASE("the working directory must be absolute")
{
    CHECK_FALSE(translate_flags({}, "relative").has_value());
    CHECK_FALSE(translate_flags({}, "").has_value());
}

// ---- -name, -uuid ----

TEST_CASE("-name")
{
    CHECK(run({"-name", "foo"}).config["name"] == "foo");
    CHECK(run({"-name", "guest=foo,debug-threads=on"}).config["name"] == "foo");
    CHECK(run({"-name", "foo,process=bar"}).config["name"] == "foo");
    CHECK(run({"-name", "a,,b"}).config["name"] == "a,b");
    CHECK(run({"-name", "a", "-name", "b"}).config["name"] == "b");
    CHECK_FALSE(run({"-name", "debug-threads=off"}).config.contains("name"));
    CHECK(error_of({"-name", "foo,color=red"}) == "-name foo,color=red: Invalid parameter 'color'");
    CHECK(error_of({"-name", "foo,debug-threads=maybe"}) ==
          "-name foo,debug-threads=maybe: Parameter 'debug-threads' expects 'on' or 'off'");
}

TEST_CASE("-uuid")
{
    CHECK(run({"-uuid", "12345678-9abc-def0-1234-56789abcdef0"}).config["uuid"] ==
          "12345678-9abc-def0-1234-56789abcdef0");
    CHECK(run({"-uuid", "ABCDEF00-0000-0000-0000-00000000000A"}).config["uuid"] ==
          "abcdef00-0000-0000-0000-00000000000a");
    CHECK(error_of({"-uuid", "xyz"}).starts_with("-uuid xyz: invalid UUID"));
    for (std::string bad : {"12345678-9abc-def0-1234-56789abcdef", "12345678-9abc-def0-1234-56789abcdef01",
                            "123456789abc-def0-1234-56789abcdef0-", "12345678-9abc-def0-1234_56789abcdef0",
                            "g2345678-9abc-def0-1234-56789abcdef0", ""})
        CHECK(error_of({"-uuid", bad}).find("invalid UUID") != std::string::npos);
}

// ---- -m, -smp ----

TEST_CASE("-m sizes are bytes; a bare number is MiB")
{
    CHECK(run({"-m", "512"}).config["memory"] == json{{"size", 512 * k_mib}});
    CHECK(run({"-m", "2G"}).config["memory"]["size"] == 2048 * k_mib);
    CHECK(run({"-m", "1.5G"}).config["memory"]["size"] == 1536 * k_mib);
    CHECK(run({"-m", "65536k"}).config["memory"]["size"] == 64 * k_mib);
    CHECK(run({"-m", "size=1024"}).config["memory"]["size"] == 1024 * k_mib);
    CHECK(run({"-m", "256", "-m", "1G"}).config["memory"]["size"] == 1024 * k_mib);
    CHECK_FALSE(run({}).config.contains("memory"));
}

TEST_CASE("-m with hotplug slots")
{
    CHECK(run({"-m", "size=1G,slots=2,maxmem=4G"}).config["memory"] ==
          json{{"size", 1024 * k_mib}, {"slots", 2}, {"maxmem", 4096 * k_mib}});
    CHECK(run({"-m", "1G", "-m", "slots=1,maxmem=2G"}).config["memory"]["slots"] == 1);
    CHECK(error_of({"-m", "1G,slots=2"}) == "-m 1G,slots=2: 'slots' needs 'maxmem'");
    CHECK(error_of({"-m", "1G,maxmem=2G"}) == "-m 1G,maxmem=2G: 'maxmem' needs 'slots'");
    CHECK(error_of({"-m", "1G,slots=2,maxmem=512M"}) ==
          "-m 1G,slots=2,maxmem=512M: maxmem must be at least the initial memory size");
    CHECK(error_of({"-m", "1G,slots=0,maxmem=2G"}).find("no hotplug slots") != std::string::npos);
    CHECK(error_of({"-m", "1G,slots=2,maxmem=1G"}).find("maxmem equals size") != std::string::npos);
    // maxmem counts bytes without a suffix, as in QEMU
    CHECK(error_of({"-m", "1G,slots=2,maxmem=4096"}).find("at least the initial") != std::string::npos);
}

TEST_CASE("-m errors")
{
    CHECK(error_of({"-m", "12X"}) == "-m 12X: invalid size");
    CHECK(error_of({"-m", "1.5"}) == "-m 1.5: invalid size");
    CHECK(error_of({"-m", "-1"}) == "-m -1: invalid size");
    CHECK(error_of({"-m", "0"}) == "-m 0: memory size must not be zero");
    CHECK(error_of({"-m", "99999999999T"}) == "-m 99999999999T: size too large");
    CHECK(error_of({"-m", "1G,speed=fast"}) == "-m 1G,speed=fast: Invalid parameter 'speed'");
    CHECK(error_of({"-m", "1G,slots=x,maxmem=2G"}) == "-m 1G,slots=x,maxmem=2G: Parameter 'slots' expects a number");
    CHECK(error_of({"-m", "1G,slots=1,maxmem=lots"}).starts_with(
        "-m 1G,slots=1,maxmem=lots: Parameter 'maxmem' expects a size"));
}

TEST_CASE("-smp")
{
    CHECK(run({"-smp", "4"}).config["smp"] == json{{"cpus", 4}});
    CHECK(run({"-smp", "cpus=4,sockets=1,cores=2,threads=2,maxcpus=8"}).config["smp"] ==
          json{{"cpus", 4}, {"sockets", 1}, {"cores", 2}, {"threads", 2}, {"maxcpus", 8}});
    CHECK(run({"-smp", "sockets=2,cores=2"}).config["smp"] == json{{"sockets", 2}, {"cores", 2}});
    CHECK(run({"-smp", "2", "-smp", "maxcpus=4"}).config["smp"] == json{{"cpus", 2}, {"maxcpus", 4}});
    CHECK(run({"-smp", "4,dies=2"}).config["smp"]["dies"] == 2);
    CHECK(run({"-smp", "0x4"}).config["smp"]["cpus"] == 4);
}

TEST_CASE("-smp errors")
{
    CHECK(error_of({"-smp", "cpus=abc"}) == "-smp cpus=abc: Parameter 'cpus' expects a number");
    CHECK(error_of({"-smp", "abc"}) == "-smp abc: Parameter 'cpus' expects a number");
    CHECK(error_of({"-smp", "4,cores=x"}) == "-smp 4,cores=x: Parameter 'cores' expects a number");
    CHECK(error_of({"-smp", "4,maxcpus=2"}) == "-smp 4,maxcpus=2: maxcpus must be equal to or greater than cpus");
    CHECK(error_of({"-smp", "8,sockets=1,cores=2,threads=2"}) ==
          "-smp 8,sockets=1,cores=2,threads=2: cpu topology: sockets * cores * threads is less than cpus");
    CHECK(error_of({"-smp", "2,sockets=2,cores=2,threads=1,maxcpus=2"}).find("greater than maxcpus") !=
          std::string::npos);
    CHECK(error_of({"-smp", "5000"}) == "-smp 5000: 'cpus' must be at most 4096");
    CHECK(error_of({"-smp", "4,nodes=2"}) == "-smp 4,nodes=2: Invalid parameter 'nodes'");
}

// ---- -machine, -accel, -enable-kvm, -cpu ----

TEST_CASE("-machine")
{
    json config = run({"-machine", "pc,accel=kvm:tcg"}).config;
    CHECK(config["machine"] == json{{"type", "pc"}});
    CHECK(config["accel"] == json{{{"type", "kvm"}}, {{"type", "tcg"}}});
    CHECK(run({"-M", "q35"}).config["machine"] == json{{"type", "q35"}});
    CHECK(run({"-machine", "type=none"}).config["machine"] == json{{"type", "none"}});
    CHECK(run({"-machine", "pc,kernel_irqchip=on,usb=off"}).config["machine"] ==
          json{{"type", "pc"}, {"props", {{"kernel_irqchip", "on"}, {"usb", "off"}}}});
    CHECK(run({"-machine", "accel=tcg"}).config.contains("machine") == false);
}

TEST_CASE("-machine flags merge, the last value winning")
{
    json config = run({"-machine", "pc,usb=on", "-M", "q35", "-machine", "usb=off,vmport=off"}).config;
    CHECK(config["machine"] == json{{"type", "q35"}, {"props", {{"usb", "off"}, {"vmport", "off"}}}});
}

TEST_CASE("-machine accel errors")
{
    CHECK(error_of({"-machine", "pc,accel=xen"}) ==
          "-machine pc,accel=xen: accelerator 'xen' not found (emud has kvm and tcg)");
    CHECK(error_of({"-machine", "accel="}) == "-machine accel=: the accelerator list is empty");
    CHECK(error_of({"-machine", "accel=kvm:"}).find("accelerator '' not found") != std::string::npos);
}

TEST_CASE("-accel and -enable-kvm append to the accelerator list")
{
    CHECK(run({"-accel", "tcg,thread=multi"}).config["accel"] == json{{{"type", "tcg"}, {"props", {{"thread", "multi"}}}}});
    CHECK(run({"-accel", "kvm", "-accel", "tcg"}).config["accel"] == json{{{"type", "kvm"}}, {{"type", "tcg"}}});
    CHECK(run({"-accel", "accel=tcg"}).config["accel"] == json{{{"type", "tcg"}}});
    CHECK(run({"-enable-kvm"}).config["accel"] == json{{{"type", "kvm"}}});
    CHECK(run({"-enable-kvm", "-accel", "tcg"}).config["accel"] == json{{{"type", "kvm"}}, {{"type", "tcg"}}});
    // naming an accelerator twice merges it
    CHECK(run({"-enable-kvm", "-machine", "accel=kvm"}).config["accel"] == json{{{"type", "kvm"}}});
    CHECK(run({"-accel", "tcg", "-accel", "tcg,thread=single"}).config["accel"] ==
          json{{{"type", "tcg"}, {"props", {{"thread", "single"}}}}});
    // -machine accel= replaces the list
    CHECK(run({"-accel", "tcg", "-machine", "accel=kvm"}).config["accel"] == json{{{"type", "kvm"}}});
    CHECK_FALSE(run({}).config.contains("accel"));
}

TEST_CASE("-accel errors")
{
    CHECK(error_of({"-accel", "hax"}) == "-accel hax: accelerator 'hax' not found (emud has kvm and tcg)");
    CHECK(error_of({"-accel", "thread=multi"}) == "-accel thread=multi: Parameter 'accel' is missing");
    CHECK(error_of({"-accel", "tcg,thread=many"}) ==
          "-accel tcg,thread=many: invalid 'thread' setting 'many' (use single or multi)");
    CHECK(error_of({"-accel", "kvm,thread=multi"}) ==
          "-accel kvm,thread=multi: 'thread' applies to the tcg accelerator only");
}

TEST_CASE("-cpu")
{
    CHECK(run({"-cpu", "qemu64"}).config["cpu"] == json{{"model", "qemu64"}});
    CHECK(run({"-cpu", "host,+sse4.2,-x2apic,level=13,enforce"}).config["cpu"] ==
          json{{"model", "host"},
               {"props", {{"sse4.2", "on"}, {"x2apic", "off"}, {"level", "13"}, {"enforce", "on"}}}});
    CHECK(run({"-cpu", "host,model-id=A,,B"}).config["cpu"]["props"]["model-id"] == "A,B");
    SUBCASE("-feat wins over +feat and feat=on, in any order, as QEMU 2.10")
    {
        CHECK(run({"-cpu", "host,-avx,+avx"}).config["cpu"]["props"]["avx"] == "off");
        CHECK(run({"-cpu", "host,+avx,-avx"}).config["cpu"]["props"]["avx"] == "off");
        CHECK(run({"-cpu", "host,-avx,avx=on"}).config["cpu"]["props"]["avx"] == "off");
        CHECK(run({"-cpu", "host,avx=off,+avx"}).config["cpu"]["props"]["avx"] == "on");
    }
    CHECK(error_of({"-cpu", ",+avx"}) == "-cpu ,+avx: the CPU model is missing");
    CHECK(error_of({"-cpu", ""}) == "-cpu '': the CPU model is missing");
    CHECK(error_of({"-cpu", "host,+"}) == "-cpu host,+: empty CPU feature name");
    CHECK(error_of({"-cpu", "host,=on"}) == "-cpu host,=on: empty CPU feature name");
}

// ---- help ----

TEST_CASE("help requests")
{
    struct Case {
        Args args;
        std::string topic;
        std::string arg;
    };
    for (const Case& c : {Case{{"-machine", "help"}, "machine", ""}, Case{{"-M", "help"}, "machine", ""},
                          Case{{"-M", "?"}, "machine", ""}, Case{{"-machine", "type=help"}, "machine", ""},
                          Case{{"-cpu", "help"}, "cpu", ""}, Case{{"-cpu", "?"}, "cpu", ""},
                          Case{{"-device", "help"}, "device", ""}, Case{{"-device", "?"}, "device", ""},
                          Case{{"-device", "e1000,help"}, "device", "e1000"},
                          Case{{"-device", "virtio-blk-pci,?"}, "device", "virtio-blk-pci"},
                          Case{{"-accel", "help"}, "accel", ""}, Case{{"-m", "1G", "-cpu", "help", "-foo"}, "cpu", ""}}) {
        INFO("args: " << c.args[0] << " " << c.args[1]);
        auto result = translate_flags(c.args, k_cwd);
        REQUIRE(result.has_value());
        CHECK(result->help_topic == c.topic);
        CHECK(result->help_arg == c.arg);
    }
    // flags before the help request are still checked
    CHECK(error_of({"-foo", "-cpu", "help"}) == "-foo: invalid option");
}

// ---- kernel boot ----

TEST_CASE("-kernel, -initrd, -append and relative paths")
{
    json config = run({"-kernel", "bzImage", "-initrd", "./initrd.img", "-append", "console=ttyS0 quiet"}).config;
    CHECK(config["kernel"] == "/home/user/vm/bzImage");
    CHECK(config["initrd"] == "/home/user/vm/initrd.img");
    CHECK(config["append"] == "console=ttyS0 quiet");
    CHECK(run({"-kernel", "/boot/vmlinuz"}).config["kernel"] == "/boot/vmlinuz");
    CHECK(run({"-kernel", "../k"}).config["kernel"] == "/home/user/vm/../k");
    CHECK(run({"-kernel", "k", "-append", ""}).config["append"] == "");
    auto root = translate_flags({"-kernel", "k"}, "/");
    REQUIRE(root.has_value());
    CHECK(root->config["kernel"] == "/k");
}

TEST_CASE("-initrd: each comma-separated module is made absolute")
{
    CHECK(run({"-kernel", "k", "-initrd", "mod1 arg=1,/abs/mod2,mod3"}).config["initrd"] ==
          "/home/user/vm/mod1 arg=1,/abs/mod2,/home/user/vm/mod3");
    CHECK(run({"-kernel", "k", "-initrd", "a,,b.img"}).config["initrd"] == "/home/user/vm/a,,b.img");
    CHECK(error_of({"-kernel", "k", "-initrd", ""}) == "-initrd '': an initrd file name is empty");
    CHECK(error_of({"-kernel", "k", "-initrd", ",a"}) == "-initrd ,a: an initrd file name is empty");
}

TEST_CASE("-append and -initrd need -kernel")
{
    CHECK(error_of({"-append", "quiet"}) == "-append: only allowed with -kernel");
    CHECK(error_of({"-initrd", "i"}) == "-initrd: only allowed with -kernel");
    CHECK(run({"-append", "quiet", "-kernel", "k"}).config["append"] == "quiet");
    CHECK(error_of({"-kernel", ""}) == "-kernel '': the file name is empty");
}

// ---- -boot, -rtc ----

TEST_CASE("-boot")
{
    CHECK(run({"-boot", "order=cd,once=d,menu=on"}).config["boot"] ==
          json{{"order", "cd"}, {"once", "d"}, {"menu", true}});
    CHECK(run({"-boot", "cd"}).config["boot"] == json{{"order", "cd"}});
    CHECK(run({"-boot", "strict=off,reboot-timeout=1000,splash-time=500"}).config["boot"] ==
          json{{"strict", false}, {"reboot-timeout", 1000}, {"splash-time", 500}});
    CHECK(run({"-boot", "c", "-boot", "menu=yes"}).config["boot"] == json{{"order", "c"}, {"menu", true}});
    CHECK(run({"-boot", ""}).config["boot"] == json::object());
    CHECK(error_of({"-boot", "cz"}) == "-boot cz: invalid boot device 'z'");
    CHECK(error_of({"-boot", "once=dd"}) == "-boot once=dd: boot device 'd' was given twice");
    CHECK(error_of({"-boot", "menu=maybe"}) == "-boot menu=maybe: Parameter 'menu' expects 'on' or 'off'");
    CHECK(error_of({"-boot", "reboot-timeout=70000"}) ==
          "-boot reboot-timeout=70000: Parameter 'reboot-timeout' expects a number from 0 to 65535");
    CHECK(error_of({"-boot", "splash=logo.bmp"}) == "-boot splash=logo.bmp: 'splash' is not supported yet");
    CHECK(error_of({"-boot", "c,fast=on"}) == "-boot c,fast=on: Invalid parameter 'fast'");
}

TEST_CASE("-rtc")
{
    CHECK(run({"-rtc", "base=utc,clock=host,driftfix=slew"}).config["rtc"] ==
          json{{"base", "utc"}, {"clock", "host"}, {"driftfix", "slew"}});
    CHECK(run({"-rtc", "base=localtime"}).config["rtc"] == json{{"base", "localtime"}});
    CHECK(run({"-rtc", "base=2006-06-17T16:01:21,clock=vm"}).config["rtc"] ==
          json{{"base", "2006-06-17T16:01:21"}, {"clock", "vm"}});
    CHECK(run({"-rtc", "base=2006-06-17"}).config["rtc"]["base"] == "2006-06-17");
    CHECK(run({"-rtc", "clock=rt", "-rtc", "driftfix=none"}).config["rtc"] ==
          json{{"clock", "rt"}, {"driftfix", "none"}});
    for (std::string bad : {"2006-13-01", "2006-06-32", "1969-01-01", "2006-06-17T24:00:00", "2006-6-17", "yesterday"})
        CHECK(error_of({"-rtc", "base=" + bad}).starts_with("-rtc base=" + bad + ": invalid base '" + bad + "'"));
    CHECK(error_of({"-rtc", "clock=wall"}) == "-rtc clock=wall: invalid clock 'wall' (use host, rt or vm)");
    CHECK(error_of({"-rtc", "driftfix=fast"}) == "-rtc driftfix=fast: invalid driftfix 'fast' (use none or slew)");
    CHECK(error_of({"-rtc", "utc"}) == "-rtc utc: Invalid parameter 'utc'");
}

// ---- run control ----

TEST_CASE("-S, -no-reboot, -no-shutdown")
{
    json config = run({"-S", "-no-reboot", "-no-shutdown"}).config;
    CHECK(config["start-paused"] == true);
    CHECK(config["no-reboot"] == true);
    CHECK(config["no-shutdown"] == true);
    CHECK_FALSE(run({}).config.contains("start-paused"));
}

TEST_CASE("-daemonize and -pidfile")
{
    RunOptions run_options = run({"-daemonize", "-pidfile", "vm.pid"});
    CHECK(run_options.daemonize);
    CHECK(run_options.pidfile == "/home/user/vm/vm.pid");
    CHECK(run({"-pidfile", "/run/vm.pid"}).pidfile == "/run/vm.pid");
    // the default console stays, for `emuctl console`, but emuctl does not attach
    CHECK(run_options.config["chardevs"] == json{k_default_console});
    CHECK_FALSE(run_options.attach_console);
    CHECK(error_of({"-daemonize", "-serial", "stdio"}) == "-serial stdio: cannot use stdio with -daemonize");
    CHECK(error_of({"-daemonize", "-chardev", "stdio,id=c0"}) == "-chardev stdio,id=c0: cannot use stdio with -daemonize");
    CHECK(error_of({"-pidfile", ""}) == "-pidfile '': the file name is empty");
}

// ---- -display, -nographic ----

TEST_CASE("-display")
{
    CHECK(run({"-display", "none"}).config["display"] == json{{"type", "none"}});
    CHECK_FALSE(run({"-display", "none"}).nographic);
    CHECK_FALSE(run({}).config.contains("display"));
    CHECK(error_of({"-display", "sdl"}) == "-display sdl: not supported yet");
    CHECK(error_of({"-display", "gtk,grab_on_hover=on"}) == "-display gtk: not supported yet");
    CHECK(error_of({"-display", "curses"}) == "-display curses: not supported yet");
    CHECK(error_of({"-display", "vnc=:1"}) == "-display vnc: not supported yet");
    CHECK(error_of({"-display", "fancy"}) == "-display fancy: unknown display type 'fancy'");
    CHECK(error_of({"-display", "none,x=y"}) == "-display none,x=y: 'none' takes no options");
}

TEST_CASE("-nographic: serial0 is mon:stdio, the console muxed with a readline monitor")
{
    RunOptions run_options = run({"-nographic"});
    CHECK(run_options.nographic);
    CHECK(run_options.attach_console);
    CHECK(run_options.console_has_monitor);
    CHECK(run_options.config == json{{"display", {{"type", "none"}}},
                                     {"chardevs", {{{"id", "serial0"}, {"backend", "console"}, {"props", {{"mux", "on"}}}}}},
                                     {"serials", {"serial0"}},
                                     {"monitors", {{{"chardev", "serial0"}, {"mode", "readline"}, {"pretty", false}}}}});
    // the same as writing it out
    RunOptions explicit_options = run({"-display", "none", "-serial", "mon:stdio"});
    CHECK(explicit_options.config == run_options.config);
    CHECK(explicit_options.console_has_monitor);
    CHECK_FALSE(explicit_options.nographic);
}

TEST_CASE("-nographic with an explicit -monitor: serial0 is plain stdio")
{
    RunOptions run_options = run({"-nographic", "-monitor", "unix:mon.sock,server,nowait"});
    CHECK(run_options.config["serials"] == json{"serial0"});
    CHECK(run_options.config["chardevs"] ==
          json{{{"id", "compat_monitor0"},
                {"backend", "socket"},
                {"props", {{"path", "/home/user/vm/mon.sock"}, {"server", "on"}, {"wait", "off"}}}},
               k_default_console});
    CHECK(run_options.config["monitors"] == json{{{"chardev", "compat_monitor0"}, {"mode", "readline"}, {"pretty", false}}});
    CHECK(run_options.attach_console);
    CHECK_FALSE(run_options.console_has_monitor);
    // -monitor none counts as a monitor choice too, as do -qmp and -mon
    CHECK(run({"-nographic", "-monitor", "none"}).config["monitors"] == json::array());
    CHECK(run({"-nographic", "-monitor", "none"}).config["chardevs"] == json{k_default_console});
    CHECK(run({"-nographic", "-qmp", "unix:q,server,nowait"}).config["chardevs"][1] == k_default_console);
}

TEST_CASE("-nographic with an explicit -serial: the monitor goes to the console")
{
    RunOptions run_options = run({"-nographic", "-serial", "file:serial.log"});
    CHECK(run_options.config["chardevs"] ==
          json{{{"id", "serial0"}, {"backend", "file"}, {"props", {{"path", "/home/user/vm/serial.log"}}}},
               {{"id", "compat_monitor0"}, {"backend", "console"}}});
    CHECK(run_options.config["monitors"] == json{{{"chardev", "compat_monitor0"}, {"mode", "readline"}, {"pretty", false}}});
    CHECK(run_options.attach_console);
    CHECK_FALSE(run_options.console_has_monitor); // the whole console is the monitor
    RunOptions no_serial = run({"-nographic", "-serial", "none"});
    CHECK(no_serial.config["serials"] == json::array());
    CHECK(no_serial.config["chardevs"] == json{{{"id", "compat_monitor0"}, {"backend", "console"}}});
}

TEST_CASE("-nographic -serial stdio needs mon:stdio, as in QEMU")
{
    CHECK(error_of({"-nographic", "-serial", "stdio"}).starts_with(
        "-nographic: cannot use stdio by multiple character devices"));
    CHECK(run({"-nographic", "-serial", "stdio", "-monitor", "none"}).attach_console);
}

TEST_CASE("-nographic and -daemonize")
{
    CHECK(error_of({"-nographic", "-daemonize"}) == "-nographic cannot be used with -daemonize");
    CHECK(error_of({"-nographic", "-daemonize", "-serial", "null"}) == "-nographic cannot be used with -daemonize");
    RunOptions run_options = run({"-daemonize", "-nographic", "-serial", "null", "-monitor", "none"});
    CHECK(run_options.daemonize);
    CHECK_FALSE(run_options.attach_console);
}

// ---- -serial ----

TEST_CASE("-serial: the legacy chardev syntax")
{
    struct Case {
        std::string spec;
        json chardev;
    };
    const Case cases[] = {
        {"null", {{"backend", "null"}}},
        {"vc", {{"backend", "vc"}}},
        {"vc:80Cx24C", {{"backend", "vc"}, {"props", {{"cols", "80"}, {"rows", "24"}}}}},
        {"pty", {{"backend", "pty"}}},
        {"file:out.log", {{"backend", "file"}, {"props", {{"path", "/home/user/vm/out.log"}}}}},
        {"file:/var/log/s", {{"backend", "file"}, {"props", {{"path", "/var/log/s"}}}}},
        {"pipe:fifo", {{"backend", "pipe"}, {"props", {{"path", "/home/user/vm/fifo"}}}}},
        {"unix:s.sock,server,nowait",
         {{"backend", "socket"}, {"props", {{"path", "/home/user/vm/s.sock"}, {"server", "on"}, {"wait", "off"}}}}},
        {"unix:/tmp/s", {{"backend", "socket"}, {"props", {{"path", "/tmp/s"}}}}},
        {"tcp:localhost:4444,server,nowait",
         {{"backend", "socket"}, {"props", {{"host", "localhost"}, {"port", "4444"}, {"server", "on"}, {"wait", "off"}}}}},
        {"tcp::4444,server=on,wait=no",
         {{"backend", "socket"}, {"props", {{"host", ""}, {"port", "4444"}, {"server", "on"}, {"wait", "off"}}}}},
        {"telnet::4445,server,nowait",
         {{"backend", "socket"},
          {"props", {{"host", ""}, {"port", "4445"}, {"server", "on"}, {"wait", "off"}, {"telnet", "on"}}}}},
        {"udp:10.0.0.1:9000", {{"backend", "udp"}, {"props", {{"host", "10.0.0.1"}, {"port", "9000"}}}}},
        {"/dev/ttyS0", {{"backend", "serial"}, {"props", {{"path", "/dev/ttyS0"}}}}},
        {"mon:unix:m.sock,server,nowait",
         {{"backend", "socket"},
          {"props", {{"mux", "on"}, {"path", "/home/user/vm/m.sock"}, {"server", "on"}, {"wait", "off"}}}}},
    };
    for (const Case& c : cases) {
        INFO("-serial " << c.spec);
        RunOptions run_options = run({"-serial", c.spec});
        json chardev = c.chardev;
        chardev["id"] = "serial0";
        CHECK(run_options.config["chardevs"] == json{chardev});
        CHECK(run_options.config["serials"] == json{"serial0"});
        CHECK_FALSE(run_options.attach_console);
    }
}

TEST_CASE("-serial stdio is the console")
{
    RunOptions run_options = run({"-serial", "stdio"});
    CHECK(run_options.config["chardevs"] == json{k_default_console});
    CHECK(run_options.attach_console);
    CHECK_FALSE(run_options.console_has_monitor);
}

TEST_CASE("-serial: numbering, none, and a monitor on mon:")
{
    json config = run({"-serial", "none", "-serial", "null", "-serial", "stdio", "-serial", "pty"}).config;
    CHECK(config["serials"] == json{"serial0", "serial1", "serial2"});
    CHECK(config["chardevs"][1] == json{{"id", "serial1"}, {"backend", "console"}});
    CHECK(run({"-serial", "none"}).config["serials"] == json::array());
    CHECK(run({"-serial", "none"}).config["chardevs"] == json::array());
    CHECK_FALSE(run({"-serial", "none"}).attach_console);
    json muxed = run({"-serial", "mon:tcp::4444,server,nowait"}).config;
    CHECK(muxed["monitors"] == json{{{"chardev", "serial0"}, {"mode", "readline"}, {"pretty", false}}});
}

TEST_CASE("-serial errors")
{
    CHECK(error_of({"-serial", "nonsense"}) == "-serial nonsense: 'nonsense' is not a valid char driver");
    CHECK(error_of({"-serial", "tcp:4444"}) == "-serial tcp:4444: 'tcp:4444' is not a valid char driver");
    CHECK(error_of({"-serial", "file:"}) == "-serial file:: 'file:' needs a path");
    CHECK(error_of({"-serial", "unix:s,server=maybe"}) ==
          "-serial unix:s,server=maybe: Parameter 'server' expects 'on' or 'off'");
    CHECK(error_of({"-serial", "null", "-serial", "null", "-serial", "null", "-serial", "null", "-serial", "null"}) ==
          "-serial null: too many serial ports (at most 4)");
    CHECK(error_of({"-serial", "stdio", "-serial", "mon:stdio"}) ==
          "-serial mon:stdio: cannot use stdio by multiple character devices");
    CHECK(error_of({"-serial", "chardev:nope"}) == "-serial chardev:nope: chardev 'nope' not found");
}

// ---- -chardev and chardev:ID ----

TEST_CASE("-chardev")
{
    json config = run({"-chardev", "socket,id=c0,path=c0.sock,server,nowait", "-serial", "chardev:c0"}).config;
    CHECK(config["chardevs"] ==
          json{{{"id", "c0"},
                {"backend", "socket"},
                {"props", {{"path", "/home/user/vm/c0.sock"}, {"server", "on"}, {"wait", "off"}}}}});
    CHECK(config["serials"] == json{"c0"});
    // the referenced chardev may come later, as QEMU creates -chardev first
    CHECK(run({"-serial", "chardev:c1", "-chardev", "null,id=c1"}).config["serials"] == json{"c1"});
    CHECK(run({"-chardev", "file,id=f,path=a,,b.log", "-serial", "null"}).config["chardevs"][0]["props"]["path"] ==
          "/home/user/vm/a,b.log");
    CHECK(run({"-chardev", "socket,id=t,host=localhost,port=4444,server=yes,nodelay", "-serial", "null"})
              .config["chardevs"][0]["props"] == json{{"host", "localhost"}, {"port", "4444"}, {"server", "on"},
                                                      {"delay", "off"}});
    CHECK(run({"-chardev", "pty,id=p,logfile=pty.log", "-serial", "null"}).config["chardevs"][0]["props"] ==
          json{{"logfile", "/home/user/vm/pty.log"}});
}

TEST_CASE("-chardev stdio is the console, and mux=on shares it with a monitor")
{
    RunOptions run_options =
        run({"-chardev", "stdio,id=con,mux=on,signal=off", "-serial", "chardev:con", "-mon", "chardev=con"});
    CHECK(run_options.config["chardevs"] ==
          json{{{"id", "con"}, {"backend", "console"}, {"props", {{"mux", "on"}, {"signal", "off"}}}}});
    CHECK(run_options.config["monitors"] == json{{{"chardev", "con"}, {"mode", "readline"}, {"pretty", false}}});
    CHECK(run_options.attach_console);
    CHECK(run_options.console_has_monitor);
    // an unused console still gets the terminal; the default serial port then goes to null
    RunOptions unused = run({"-chardev", "stdio,id=c0"});
    CHECK(unused.attach_console);
    CHECK(unused.config["chardevs"] ==
          json{{{"id", "c0"}, {"backend", "console"}}, {{"id", "serial0"}, {"backend", "null"}}});
    // a QMP monitor on the console is not the Ctrl-a c monitor
    CHECK_FALSE(run({"-chardev", "stdio,id=c,mux=on", "-serial", "chardev:c", "-mon", "c,mode=control"})
                    .console_has_monitor);
}

TEST_CASE("-chardev errors")
{
    CHECK(error_of({"-chardev", "stdio"}) == "-chardev stdio: Parameter 'id' is missing");
    CHECK(error_of({"-chardev", "id=c0"}) == "-chardev id=c0: Parameter 'backend' is missing");
    CHECK(error_of({"-chardev", "bogus,id=c0"}) == "-chardev bogus,id=c0: 'bogus' is not a valid char driver name");
    CHECK(error_of({"-chardev", "console,id=c0"}).find("not a valid char driver name") != std::string::npos);
    CHECK(error_of({"-chardev", "file,id=f"}) == "-chardev file,id=f: file needs a path");
    CHECK(error_of({"-chardev", "socket,id=s,server"}) ==
          "-chardev socket,id=s,server: socket needs path=PATH or host=HOST,port=PORT");
    CHECK(error_of({"-chardev", "null,id=a,mux=perhaps"}) ==
          "-chardev null,id=a,mux=perhaps: Parameter 'mux' expects 'on' or 'off'");
    CHECK(error_of({"-chardev", "null,id=a", "-chardev", "pty,id=a"}) ==
          "-chardev pty,id=a: Duplicate ID 'a' for chardev");
    CHECK(error_of({"-chardev", "null,id=serial0", "-serial", "null"}) ==
          "-serial null: Duplicate ID 'serial0' for chardev");
    CHECK(error_of({"-chardev", "stdio,id=a", "-chardev", "stdio,id=b"}) ==
          "-chardev stdio,id=b: cannot use stdio by multiple character devices");
    CHECK(error_of({"-chardev", "null,id=c", "-serial", "chardev:c", "-serial", "chardev:c"}) ==
          "-serial chardev:c: chardev 'c' is already in use (give it mux=on to share it)");
    CHECK(run({"-chardev", "null,id=c,mux=on", "-serial", "chardev:c", "-serial", "chardev:c"}).config["serials"] ==
          json{"c", "c"});
}

// ---- -monitor, -qmp, -mon ----

TEST_CASE("-monitor and -qmp")
{
    RunOptions run_options = run({"-monitor", "stdio", "-qmp", "unix:qmp.sock,server,nowait", "-qmp", "tcp::4444,server"});
    json config = run_options.config;
    CHECK(config["chardevs"] ==
          json{{{"id", "compat_monitor0"}, {"backend", "console"}},
               {{"id", "compat_monitor1"},
                {"backend", "socket"},
                {"props", {{"path", "/home/user/vm/qmp.sock"}, {"server", "on"}, {"wait", "off"}}}},
               {{"id", "compat_monitor2"}, {"backend", "socket"}, {"props", {{"host", ""}, {"port", "4444"}, {"server", "on"}}}},
               {{"id", "serial0"}, {"backend", "null"}}}); // the console is taken by the monitor
    CHECK(config["monitors"] == json{{{"chardev", "compat_monitor0"}, {"mode", "readline"}, {"pretty", false}},
                                     {{"chardev", "compat_monitor1"}, {"mode", "control"}, {"pretty", false}},
                                     {{"chardev", "compat_monitor2"}, {"mode", "control"}, {"pretty", false}}});
    CHECK(run_options.attach_console);
    CHECK_FALSE(run_options.console_has_monitor);
}

TEST_CASE("-monitor variants")
{
    CHECK(run({"-monitor", "none"}).config["monitors"] == json::array());
    json muxed = run({"-monitor", "mon:stdio"}).config;
    CHECK(muxed["chardevs"][0] == json{{"id", "compat_monitor0"}, {"backend", "console"}, {"props", {{"mux", "on"}}}});
    CHECK(muxed["monitors"].size() == 1);
    json shared = run({"-chardev", "socket,id=m,path=/m,server,nowait", "-monitor", "chardev:m", "-qmp", "null"}).config;
    CHECK(shared["monitors"][0] == json{{"chardev", "m"}, {"mode", "readline"}, {"pretty", false}});
    // chardev: uses an index too, as in QEMU
    CHECK(shared["monitors"][1]["chardev"] == "compat_monitor1");
    CHECK(error_of({"-qmp", "none"}) == "-qmp none: 'none' is not a valid char driver");
    CHECK(error_of({"-monitor", "chardev:m"}) == "-monitor chardev:m: chardev 'm' not found");
    CHECK(error_of({"-monitor", "stdio", "-serial", "stdio"}) ==
          "-serial stdio: cannot use stdio by multiple character devices");
}

TEST_CASE("-mon")
{
    json config = run({"-chardev", "socket,id=q,path=/q,server,nowait", "-mon", "chardev=q,mode=control,pretty=on"}).config;
    CHECK(config["monitors"] == json{{{"chardev", "q"}, {"mode", "control"}, {"pretty", true}}});
    CHECK(run({"-chardev", "null,id=h", "-mon", "h"}).config["monitors"] ==
          json{{{"chardev", "h"}, {"mode", "readline"}, {"pretty", false}}});
    CHECK(error_of({"-mon", "mode=control"}) == "-mon mode=control: Parameter 'chardev' is missing");
    CHECK(error_of({"-mon", "q,mode=json"}) == "-mon q,mode=json: unknown monitor mode 'json' (use readline or control)");
    CHECK(error_of({"-mon", "q,pretty=very"}) == "-mon q,pretty=very: Parameter 'pretty' expects 'on' or 'off'");
    CHECK(error_of({"-mon", "q,colour=on"}) == "-mon q,colour=on: Invalid parameter 'colour'");
    CHECK(error_of({"-mon", "q"}) == "-mon q: chardev 'q' not found");
}

// ---- flags emud does not support yet ----

TEST_CASE("unsupported flags are parsed, then refused naming the flag")
{
    struct Case {
        Args args;
        std::string message;
    };
    const Case cases[] = {
        {{"-netdev", "user,id=n0"}, "-netdev: not supported yet (network backends)"},
        {{"-vnc", ":1"}, "-vnc: not supported yet (VNC server)"},
        {{"-incoming", "defer"}, "-incoming: not supported yet (migration)"},
    };
    for (const Case& c : cases) {
        INFO("args: " << c.args[0]);
        CHECK(error_of(c.args) == c.message);
        CHECK(translate_flags_unchecked(c.args, k_cwd).has_value());
    }
    CHECK(error_of({"-drive", "media=floppy"}) == "-drive media=floppy: invalid media 'floppy' (use disk or cdrom)");
    CHECK(error_of({"-netdev", "user"}) == "-netdev user: Parameter 'id' is missing");
}

TEST_CASE("-blockdev translation")
{
    json config = run({"-blockdev", "driver=qcow2,node-name=d0,file.driver=file,file.filename=a.qcow2,read-only=on",
                       "-blockdev", R"({"driver": "file", "node-name": "f1", "filename": "/abs/b.raw"})"})
                      .config;
    CHECK(config["blockdevs"] ==
          json::parse(R"([{"driver": "qcow2", "node-name": "d0", "read-only": "on",
                           "file": {"driver": "file", "filename": "/home/user/vm/a.qcow2"}},
                          {"driver": "file", "node-name": "f1", "filename": "/abs/b.raw"}])"));
    CHECK(error_of({"-blockdev", "node-name=x"}) == "-blockdev node-name=x: Parameter 'driver' is missing");
    CHECK(error_of({"-blockdev", "{nope"}) == "-blockdev {nope: the JSON option set is not a valid JSON object");
    CHECK(error_of({"-blockdev", "driver=raw,file=f,file.driver=file"}) ==
          "-blockdev driver=raw,file=f,file.driver=file: Parameters 'file.driver' and 'file' conflict");
}

TEST_CASE("-drive translation")
{
    json config = run_unchecked({"-drive", "file=disk.qcow2,if=virtio,format=qcow2,cache=none"}).config;
    CHECK(config["drives"] ==
          json{{{"file", "/home/user/vm/disk.qcow2"}, {"if", "virtio"}, {"format", "qcow2"}, {"cache", "none"}}});
    CHECK(run_unchecked({"-drive", "file=nbd:localhost:10809"}).config["drives"][0]["file"] == "nbd:localhost:10809");
    CHECK(run_unchecked({"-drive", "file=./a:b.img"}).config["drives"][0]["file"] == "/home/user/vm/a:b.img");
    CHECK(run_unchecked({"-drive", "file=my,,disk.img,media=cdrom,index=1"}).config["drives"][0] ==
          json{{"file", "/home/user/vm/my,disk.img"}, {"media", "cdrom"}, {"index", "1"}});
    CHECK(run_unchecked({"-drive", "if=none,id=d0"}).config["drives"][0] == json{{"if", "none"}, {"id", "d0"}});
    CHECK(unchecked_error_of({"-drive", "file=a,if=usb"}) == "-drive file=a,if=usb: unsupported bus type 'usb'");
    CHECK(unchecked_error_of({"-drive", "file=a,index=one"}) ==
          "-drive file=a,index=one: Parameter 'index' expects a number");
    CHECK(unchecked_error_of({"-drive", "file=a,readonly=sure"}) ==
          "-drive file=a,readonly=sure: Parameter 'readonly' expects 'on' or 'off'");
    CHECK(unchecked_error_of({"-drive", ""}) == "-drive '': no drive options given");
}

TEST_CASE("-hda..-hdd, -cdrom, bare images and -snapshot")
{
    json config = run_unchecked({"-hda", "a.img", "-hdb", "/b.img", "-cdrom", "c.iso", "-hdd", "d.img"}).config;
    CHECK(config["drives"] == json{{{"file", "/home/user/vm/a.img"}, {"index", "0"}, {"media", "disk"}},
                                   {{"file", "/b.img"}, {"index", "1"}, {"media", "disk"}},
                                   {{"file", "/home/user/vm/c.iso"}, {"index", "2"}, {"media", "cdrom"}},
                                   {{"file", "/home/user/vm/d.img"}, {"index", "3"}, {"media", "disk"}}});
    CHECK(run_unchecked({"disk.img"}).config["drives"] ==
          json{{{"file", "/home/user/vm/disk.img"}, {"index", "0"}, {"media", "disk"}}});
    CHECK(run_unchecked({"-cdrom", ""}).config["drives"][0]["file"] == "");
    CHECK(run_unchecked({"-snapshot"}).config["snapshot"] == true);
    CHECK(unchecked_error_of({"-hdc", "a.img", "-cdrom", "b.iso"}) ==
          "-cdrom b.iso: a drive with index 2 on if=ide exists already");
    CHECK(unchecked_error_of({"a.img", "b.img"}) == "-hda b.img: a drive with index 0 on if=ide exists already");
    CHECK(run_unchecked({"-hda", "a.img", "-drive", "file=b.img,if=virtio,index=0"}).config["drives"].size() == 2);
    CHECK(unchecked_error_of({"-hda", ""}) == "-hda '': the file name is empty");
}

TEST_CASE("-netdev translation")
{
    json config = run_unchecked({"-netdev", "user,id=n0,hostfwd=tcp::2222-:22,tftp=boot"}).config;
    CHECK(config["netdevs"] ==
          json{{{"type", "user"}, {"id", "n0"}, {"hostfwd", "tcp::2222-:22"}, {"tftp", "/home/user/vm/boot"}}});
    CHECK(run_unchecked({"-netdev", "tap,id=t,script=ifup,downscript=no"}).config["netdevs"][0] ==
          json{{"type", "tap"}, {"id", "t"}, {"script", "/home/user/vm/ifup"}, {"downscript", "no"}});
    CHECK(unchecked_error_of({"-netdev", "id=n0"}) == "-netdev id=n0: Parameter 'type' is missing");
    CHECK(unchecked_error_of({"-netdev", "wifi,id=n0"}).starts_with("-netdev wifi,id=n0: Parameter 'type' expects"));
    CHECK(unchecked_error_of({"-netdev", "user,id=n", "-netdev", "user,id=n"}) ==
          "-netdev user,id=n: Duplicate ID 'n' for netdev");
}

TEST_CASE("-device translation")
{
    json config = run_unchecked({"-device", "virtio-net-pci,netdev=n0,id=nic0", "-device", "isa-debug-exit"}).config;
    CHECK(config["devices"] == json{{{"driver", "virtio-net-pci"}, {"props", {{"netdev", "n0"}, {"id", "nic0"}}}},
                                    {{"driver", "isa-debug-exit"}}});
    CHECK(run_unchecked({"-device", "driver=e1000,mac=52:54:00:12:34:56"}).config["devices"][0]["driver"] == "e1000");
    CHECK(unchecked_error_of({"-device", "id=x"}) == "-device id=x: Parameter 'driver' is missing");
    CHECK(unchecked_error_of({"-device", "e1000,id=a", "-device", "e1000,id=a"}) ==
          "-device e1000,id=a: Duplicate ID 'a' for device");
}

TEST_CASE("-vnc translation")
{
    CHECK(run_unchecked({"-vnc", ":1"}).config["vnc"] == json{{"display", ":1"}});
    CHECK(run_unchecked({"-vnc", ":1,password,websocket=5701"}).config["vnc"] ==
          json{{"display", ":1"}, {"props", {{"password", "on"}, {"websocket", "5701"}}}});
    CHECK(run_unchecked({"-vnc", "localhost:5"}).config["vnc"]["display"] == "localhost:5");
    CHECK(run_unchecked({"-vnc", "[::1]:5"}).config["vnc"]["display"] == "[::1]:5");
    CHECK(run_unchecked({"-vnc", "unix:vnc.sock"}).config["vnc"]["display"] == "unix:/home/user/vm/vnc.sock");
    CHECK(run_unchecked({"-vnc", "none"}).config["vnc"]["display"] == "none");
    for (std::string bad : {"1", ":x", "host", "::1:5", "[::1:5", "unix:"})
        CHECK(unchecked_error_of({"-vnc", bad}).starts_with("-vnc " + bad + ": invalid VNC display"));
}

TEST_CASE("-incoming translation")
{
    CHECK(run_unchecked({"-incoming", "defer"}).config["incoming"] == "defer");
    CHECK(run_unchecked({"-incoming", "tcp:0:4444"}).config["incoming"] == "tcp:0:4444");
    CHECK(run_unchecked({"-incoming", "unix:mig.sock"}).config["incoming"] == "unix:/home/user/vm/mig.sock");
    CHECK(run_unchecked({"-incoming", "exec:cat state"}).config["incoming"] == "exec:cat state");
    CHECK(unchecked_error_of({"-incoming", "ftp:x"}).starts_with("-incoming ftp:x: unknown migration URI"));
    CHECK(unchecked_error_of({"-incoming", "tcp:"}).starts_with("-incoming tcp:: unknown migration URI"));
}

// ---- a whole command line ----

TEST_CASE("a typical command line")
{
    RunOptions run_options =
        run({"-name", "guest=test", "-machine", "pc,accel=kvm:tcg", "-cpu", "max", "-smp", "2", "-m", "256",
             "-kernel", "vmlinuz", "-initrd", "initrd.gz", "-append", "console=ttyS0", "-nographic", "-no-reboot",
             "-qmp", "unix:/run/qmp.sock,server,nowait", "-S"});
    CHECK(run_options.nographic);
    CHECK(run_options.attach_console);
    CHECK_FALSE(run_options.console_has_monitor); // -qmp is a monitor choice: serial0 is plain stdio
    const json& config = run_options.config;
    CHECK(config["name"] == "test");
    CHECK(config["machine"] == json{{"type", "pc"}});
    CHECK(config["smp"] == json{{"cpus", 2}});
    CHECK(config["memory"] == json{{"size", 256 * k_mib}});
    CHECK(config["kernel"] == "/home/user/vm/vmlinuz");
    CHECK(config["serials"] == json{"serial0"});
    CHECK(config["chardevs"][1] == k_default_console);
    CHECK(config["monitors"] == json{{{"chardev", "compat_monitor0"}, {"mode", "control"}, {"pretty", false}}});
    CHECK(config["start-paused"] == true);
    CHECK(config["no-reboot"] == true);
}
