// tests/unit/test_qemu_opts.cpp — QemuOpts-style option strings and value parsers.
#include "clients/emuctl/qemu_opts.h"

#include <doctest/doctest.h>

using namespace emu::emuctl;

namespace {

QemuOpts parsed(std::string_view text, std::string_view implied = {})
{
    auto opts = parse_opts(text, implied);
    if (!opts)
        FAIL("parse_opts(\"" << std::string(text) << "\") failed: " << opts.error().message);
    return *opts;
}

std::string parse_error(std::string_view text, std::string_view implied = {})
{
    auto opts = parse_opts(text, implied);
    REQUIRE_FALSE(opts.has_value());
    return opts.error().message;
}

LegacyChardev legacy(std::string_view spec)
{
    auto chardev = parse_legacy_chardev(spec);
    if (!chardev)
        FAIL("parse_legacy_chardev(\"" << std::string(spec) << "\") failed: " << chardev.error().message);
    return *chardev;
}

} // namespace

TEST_CASE("split_opt_items splits at commas and unescapes ,,")
{
    using V = std::vector<std::string>;
    CHECK(split_opt_items("") == V{});
    CHECK(split_opt_items("a") == V{"a"});
    CHECK(split_opt_items("a=1,b=2") == V{"a=1", "b=2"});
    CHECK(split_opt_items("a=1,") == V{"a=1"});
    CHECK(split_opt_items("path=a,,b,c") == V{"path=a,b", "c"});
    CHECK(split_opt_items("a,,,b") == V{"a,", "b"});
    CHECK(split_opt_items("a,,,,b") == V{"a,,b"});
    CHECK(split_opt_items(",a") == V{"", "a"});
    CHECK(split_opt_items(",,a") == V{",a"});
    CHECK(split_opt_items("a,,") == V{"a,"});
}

TEST_CASE("escape_opt_value round-trips through split_opt_items")
{
    CHECK(escape_opt_value("plain") == "plain");
    CHECK(escape_opt_value("a,b,,c") == "a,,b,,,,c");
    for (std::string_view text : {"x", "a,b", ",lead", "trail,", "a,,b"})
        CHECK(split_opt_items(escape_opt_value(text)) == std::vector<std::string>{std::string(text)});
}

TEST_CASE("parse_opts: key=value items")
{
    QemuOpts opts = parsed("a=1,b=two,c=");
    CHECK(opts.size() == 3);
    CHECK(opts.get("a") == "1");
    CHECK(opts.get("b") == "two");
    CHECK(opts.has("c"));
    CHECK(opts.get("c") == "");
    CHECK_FALSE(opts.has("d"));
    CHECK(opts.get("d", "fallback") == "fallback");
    CHECK(opts.find("d") == nullptr);
    REQUIRE(opts.find("a") != nullptr);
    CHECK(*opts.find("a") == "1");
    CHECK(parsed("").empty());
}

TEST_CASE("parse_opts: only the first '=' separates key and value")
{
    CHECK(parsed("append=root=/dev/sda console=ttyS0").get("append") == "root=/dev/sda console=ttyS0");
}

TEST_CASE("parse_opts: ,, is a literal comma in values")
{
    QemuOpts opts = parsed("file=a,,b.img,if=virtio");
    CHECK(opts.get("file") == "a,b.img");
    CHECK(opts.get("if") == "virtio");
    CHECK(parsed("virtio-blk,,x,drive=d0", "driver").get("driver") == "virtio-blk,x");
}

TEST_CASE("parse_opts: implied first key")
{
    QemuOpts device = parsed("virtio-blk,drive=d0", "driver");
    CHECK(device.get("driver") == "virtio-blk");
    CHECK(device.get("drive") == "d0");
    CHECK(parsed("pc,accel=kvm", "type").get("type") == "pc");
    CHECK(parsed("socket,id=c0", "backend").get("backend") == "socket");
    CHECK(parsed("user,id=n0", "type").get("type") == "user");
    CHECK(parsed("512", "size").get("size") == "512");

    SUBCASE("not used when the first item has a key")
    {
        QemuOpts opts = parsed("accel=kvm,pc", "type");
        CHECK_FALSE(opts.has("type"));
        CHECK(opts.get("accel") == "kvm");
        CHECK(opts.get("pc") == "on");
    }
    SUBCASE("only the first item")
    {
        QemuOpts opts = parsed("a,b", "type");
        CHECK(opts.get("type") == "a");
        CHECK(opts.get("b") == "on");
    }
    SUBCASE("an empty first item is an error")
    {
        CHECK(parse_error(",accel=kvm", "type").find("empty parameter") != std::string::npos);
    }
}

TEST_CASE("parse_opts: bare flags mean on, a no prefix means off")
{
    QemuOpts opts = parsed("path=/s,server,nowait,telnet,nodelay");
    CHECK(opts.get("server") == "on");
    CHECK(opts.get("wait") == "off");
    CHECK(opts.get("telnet") == "on");
    CHECK(opts.get("delay") == "off");
    CHECK_FALSE(opts.has("nowait"));
    CHECK(parsed("no").get("no") == "on"); // nothing to negate
}

TEST_CASE("parse_opts: a repeated key keeps its place and the last value wins")
{
    QemuOpts opts = parsed("a=1,b=2,a=3,wait,nowait");
    CHECK(opts.get("a") == "3");
    CHECK(opts.get("wait") == "off");
    REQUIRE(opts.size() == 3);
    CHECK(opts.entries()[0] == QemuOpts::Entry{"a", "3"});
    CHECK(opts.entries()[1] == QemuOpts::Entry{"b", "2"});
}

TEST_CASE("parse_opts: bad input")
{
    CHECK(parse_error("=x").find("Invalid parameter ''") != std::string::npos);
    CHECK(parse_error("a=1,=x").find("Invalid parameter ''") != std::string::npos);
    CHECK(parse_error(",a=1").find("empty parameter") != std::string::npos);
}

TEST_CASE("QemuOpts: set, erase, check_keys, to_json")
{
    QemuOpts opts = parsed("a=1,b=2");
    opts.set("c", "3");
    opts.set("a", "9");
    CHECK(opts.to_json() == nlohmann::json{{"a", "9"}, {"b", "2"}, {"c", "3"}});
    CHECK(opts.erase("b"));
    CHECK_FALSE(opts.erase("b"));
    CHECK(opts.size() == 2);
    CHECK(opts.check_keys({"a", "c", "d"}).has_value());
    auto bad = opts.check_keys({"a"});
    REQUIRE_FALSE(bad.has_value());
    CHECK(bad.error().message == "Invalid parameter 'c'");
    CHECK(QemuOpts{}.to_json() == nlohmann::json::object());
}

TEST_CASE("QemuOpts typed getters")
{
    QemuOpts opts = parsed("on=yes,off=false,n=42,h=0x10,s=2G,bad=maybe");
    CHECK(opts.get_bool("on", false).value() == true);
    CHECK(opts.get_bool("off", true).value() == false);
    CHECK(opts.get_bool("absent", true).value() == true);
    CHECK(opts.get_bool("bad", false).error().message == "Parameter 'bad' expects 'on' or 'off'");
    CHECK(opts.get_number("n", 0).value() == 42);
    CHECK(opts.get_number("h", 0).value() == 16);
    CHECK(opts.get_number("absent", 7).value() == 7);
    CHECK(opts.get_number("bad", 0).error().message == "Parameter 'bad' expects a number");
    CHECK(opts.get_size("s", 0).value() == 2 * k_gib);
    CHECK(opts.get_size("n", 0).value() == 42);
    CHECK(opts.get_size("n", 0, k_mib).value() == 42 * k_mib);
    CHECK(opts.get_size("absent", 5).value() == 5);
    CHECK(opts.get_size("bad", 0).error().message.starts_with("Parameter 'bad' expects a size"));
}

TEST_CASE("parse_bool")
{
    for (std::string_view text : {"on", "yes", "true"})
        CHECK(parse_bool(text).value() == true);
    for (std::string_view text : {"off", "no", "false"})
        CHECK(parse_bool(text).value() == false);
    for (std::string_view text : {"", "ON", "1", "0", "y", "maybe"})
        CHECK_FALSE(parse_bool(text).has_value());
    CHECK(parse_bool("maybe").error().message.find("'maybe' is not a boolean") != std::string::npos);
}

TEST_CASE("parse_number")
{
    CHECK(parse_number("0").value() == 0);
    CHECK(parse_number("4").value() == 4);
    CHECK(parse_number("18446744073709551615").value() == UINT64_MAX);
    CHECK(parse_number("0x1F").value() == 31);
    CHECK(parse_number("0xffffffffffffffff").value() == UINT64_MAX);
    CHECK(parse_number("18446744073709551616").error().message.find("too large") != std::string::npos);
    CHECK(parse_number("0x10000000000000000").error().message.find("too large") != std::string::npos);
    for (std::string_view text : {"", "abc", "-1", "+1", " 1", "1 ", "1.5", "0x", "0xg", "4k"})
        CHECK_FALSE(parse_number(text).has_value());
}

TEST_CASE("parse_size: numbers and suffixes")
{
    CHECK(parse_size("0").value() == 0);
    CHECK(parse_size("512").value() == 512);
    CHECK(parse_size("512", k_mib).value() == 512 * k_mib);
    CHECK(parse_size("512b", k_mib).value() == 512);
    CHECK(parse_size("512B").value() == 512);
    CHECK(parse_size("4k").value() == 4 * k_kib);
    CHECK(parse_size("4K").value() == 4 * k_kib);
    CHECK(parse_size("512M").value() == 512 * k_mib);
    CHECK(parse_size("512m").value() == 512 * k_mib);
    CHECK(parse_size("2G", k_mib).value() == 2 * k_gib);
    CHECK(parse_size("2g").value() == 2 * k_gib);
    CHECK(parse_size("1T").value() == uint64_t{1} << 40);
    CHECK(parse_size("1P").value() == uint64_t{1} << 50);
    CHECK(parse_size("15E").value() == uint64_t{15} << 60);
}

TEST_CASE("parse_size: fractions need a suffix")
{
    CHECK(parse_size("1.5G").value() == 3 * k_gib / 2);
    CHECK(parse_size("0.5M").value() == k_mib / 2);
    CHECK(parse_size(".5K").value() == 512);
    CHECK(parse_size("1.0", k_mib).value() == k_mib); // a zero fraction is no fraction
    CHECK(parse_size("1.", k_mib).value() == k_mib);
    CHECK(parse_size("1.1G").value() == 1181116006); // truncated, as QEMU
    CHECK(parse_size("1.5").error().message == "invalid size");
    CHECK(parse_size("1.5", k_mib).error().message == "invalid size");
}

TEST_CASE("parse_size: bad input")
{
    for (std::string_view text : {"", "G", "12X", "1.5.5G", "-1", " 1", "1 ", "1GB", "1G ", "0x10", ".", "1,5G"}) {
        INFO("text: " << std::string(text));
        CHECK(parse_size(text).error().message == "invalid size");
    }
    CHECK(parse_size("16E").error().message == "size too large");
    CHECK(parse_size("17179869184G").error().message == "size too large");
    CHECK(parse_size("99999999999999999999").error().message == "size too large");
    CHECK(parse_size("18446744073709551615").value() == UINT64_MAX);
}

TEST_CASE("parse_legacy_chardev: simple backends")
{
    for (std::string_view name : {"stdio", "null", "pty", "msmouse", "braille", "testdev"}) {
        LegacyChardev c = legacy(name);
        CHECK(c.backend == name);
        CHECK(c.props.empty());
    }
}

TEST_CASE("parse_legacy_chardev: mon: prefix adds mux=on")
{
    LegacyChardev c = legacy("mon:stdio");
    CHECK(c.backend == "stdio");
    CHECK(c.props.to_json() == nlohmann::json{{"mux", "on"}});
    LegacyChardev t = legacy("mon:tcp::4444,server,nowait");
    CHECK(t.backend == "socket");
    CHECK(t.props.get("mux") == "on");
    CHECK(t.props.get("server") == "on");
}

TEST_CASE("parse_legacy_chardev: vc")
{
    CHECK(legacy("vc").backend == "vc");
    CHECK(legacy("vc:800x600").props.to_json() == nlohmann::json{{"width", "800"}, {"height", "600"}});
    CHECK(legacy("vc:80Cx24C").props.to_json() == nlohmann::json{{"cols", "80"}, {"rows", "24"}});
    CHECK_FALSE(parse_legacy_chardev("vc:80x").has_value());
    CHECK_FALSE(parse_legacy_chardev("vc:big").has_value());
    CHECK_FALSE(parse_legacy_chardev("vcx").has_value());
}

TEST_CASE("parse_legacy_chardev: file and pipe keep the path as written")
{
    LegacyChardev file = legacy("file:out/serial.log");
    CHECK(file.backend == "file");
    CHECK(file.props.to_json() == nlohmann::json{{"path", "out/serial.log"}});
    CHECK(legacy("file:/a,b").props.get("path") == "/a,b"); // no option syntax after file:
    CHECK(legacy("pipe:/tmp/guest").backend == "pipe");
    CHECK(legacy("pipe:/tmp/guest").props.get("path") == "/tmp/guest");
    CHECK(parse_legacy_chardev("file:").error().message == "'file:' needs a path");
}

TEST_CASE("parse_legacy_chardev: tcp and telnet")
{
    LegacyChardev c = legacy("tcp:localhost:4444,server,nowait");
    CHECK(c.backend == "socket");
    CHECK(c.props.to_json() ==
          nlohmann::json{{"host", "localhost"}, {"port", "4444"}, {"server", "on"}, {"wait", "off"}});
    CHECK(legacy("tcp::4444").props.to_json() == nlohmann::json{{"host", ""}, {"port", "4444"}});
    CHECK(legacy("tcp:[::1]:4444").props.get("host") == "::1");
    CHECK(legacy("tcp:127.0.0.1:5555,nodelay").props.get("delay") == "off");
    LegacyChardev t = legacy("telnet::4445,server,nowait");
    CHECK(t.props.get("telnet") == "on");
    CHECK(t.props.get("port") == "4445");
    for (std::string_view bad : {"tcp:", "tcp:host", "tcp:host:", "tcp:[::1", "telnet:x"})
        CHECK_FALSE(parse_legacy_chardev(bad).has_value());
}

TEST_CASE("parse_legacy_chardev: udp")
{
    CHECK(legacy("udp:host:1234").props.to_json() == nlohmann::json{{"host", "host"}, {"port", "1234"}});
    CHECK(legacy("udp::1234@:4321").props.to_json() ==
          nlohmann::json{{"host", ""}, {"port", "1234"}, {"localaddr", ""}, {"localport", "4321"}});
    CHECK_FALSE(parse_legacy_chardev("udp:host").has_value());
    CHECK_FALSE(parse_legacy_chardev("udp::1@x").has_value());
}

TEST_CASE("parse_legacy_chardev: unix sockets")
{
    LegacyChardev c = legacy("unix:/run/s.sock,server,nowait");
    CHECK(c.backend == "socket");
    CHECK(c.props.to_json() == nlohmann::json{{"path", "/run/s.sock"}, {"server", "on"}, {"wait", "off"}});
    CHECK(legacy("unix:rel,,comma.sock").props.get("path") == "rel,comma.sock");
    CHECK(parse_legacy_chardev("unix:").error().message == "'unix:' needs a path");
    CHECK_FALSE(parse_legacy_chardev("unix:/s,=x").has_value());
}

TEST_CASE("parse_legacy_chardev: host devices")
{
    CHECK(legacy("/dev/ttyS0").backend == "serial");
    CHECK(legacy("/dev/ttyS0").props.get("path") == "/dev/ttyS0");
    CHECK(legacy("/dev/parport0").backend == "parallel");
    CHECK(legacy("/dev/ppi0").backend == "parallel");
    CHECK_FALSE(parse_legacy_chardev("/dev/").has_value());
}

TEST_CASE("parse_legacy_chardev: not devices")
{
    for (std::string_view bad : {"", "none", "chardev:c0", "nonsense", "con:", "COM1", "mon:", "mon:none", "stdio,x"}) {
        INFO("spec: " << std::string(bad));
        auto c = parse_legacy_chardev(bad);
        REQUIRE_FALSE(c.has_value());
        CHECK(c.error().message == "'" + std::string(bad) + "' is not a valid char driver");
    }
}
