// Unit tests: NbdServer and the NBD client over real sockets — exports,
// the protocol driver under open_image(), errors naming the export, the
// connection limit, export removal, TLS with and without client
// certificates, stop() with clients connected.
#include "nbd_test_util.h"

#include "storage/image.h"
#include "storage/nbd/client.h"
#include "storage/nbd/server.h"

#include <algorithm>
#include <atomic>
#include <fcntl.h>
#include <sys/socket.h>
#include <thread>
#include <unistd.h>

using namespace nbdtest;

namespace {

struct Fixture {
    TempDir dir;
    std::string sock = dir.file("nbd.sock");
    std::shared_ptr<BlockBackend> rw = memory_backend(1 << 20);
    std::shared_ptr<BlockBackend> ro = memory_backend(65536, true);
    std::unique_ptr<NbdServer> server;
    std::atomic<int> refused{0};

    explicit Fixture(ServerOptions o = {})
    {
        o.on_event = [this](const ServerEvent& e) {
            if (e.kind == ServerEvent::Kind::Refused)
                refused++;
        };
        server = std::make_unique<NbdServer>(o);
        REQUIRE(server->add_export("rw", "writable", rw, true));
        REQUIRE(server->add_export("ro", "", ro, false));
        REQUIRE(server->listen("unix:" + sock));
    }
    std::string uri(const std::string& name, const std::string& extra = "") const
    {
        return "nbd+unix:///" + name + "?socket=" + sock + extra;
    }
    NbdTarget target(const std::string& name, const std::string& extra = "") const
    {
        auto t = parse_nbd_filename(uri(name, extra));
        REQUIRE(t);
        return *t;
    }
};

} // namespace

TEST_CASE("nbd client/server: I/O through the protocol driver")
{
    Fixture f;
    ImageOptions io;
    io.filename = f.uri("rw");
    auto drv = open_image(io);
    REQUIRE(drv);
    CHECK((*drv)->format_name() == "raw"); // probed on top of the nbd protocol driver
    CHECK((*drv)->size() == 1 << 20);
    REQUIRE((*drv)->file());
    CHECK((*drv)->file()->format_name() == "nbd");

    std::vector<uint8_t> buf(3 << 20 >> 2); // 768 KiB: more than one request? no; exercised below
    REQUIRE((*drv)->read(0, buf));
    CHECK(std::equal(buf.begin(), buf.end(), memory_of(*f.rw).begin()));

    std::vector<uint8_t> data(100000, 0xab);
    REQUIRE((*drv)->write(12345, data));
    REQUIRE((*drv)->flush());
    CHECK(std::equal(data.begin(), data.end(), memory_of(*f.rw).begin() + 12345));
    REQUIRE((*drv)->write_zeroes(0, 4096, false));
    CHECK(memory_of(*f.rw)[100] == 0);
    REQUIRE((*drv)->discard(8192, 4096));
    auto st = (*drv)->block_status(0, 1 << 20);
    REQUIRE(st);
    CHECK(st->length > 0);

    // Out of range: refused by the driver before anything is sent.
    CHECK(!(*drv)->read((1 << 20) - 10, std::span(buf.data(), 100)));
    CHECK(!(*drv)->write((1 << 20) - 10, std::span(data.data(), 100)));
    REQUIRE((*drv)->close());
}

TEST_CASE("nbd client/server: read-only export, unknown export, server errors")
{
    Fixture f;
    auto ro = NbdDriver::open(f.uri("ro"), false);
    REQUIRE(ro);
    CHECK((*ro)->read_only());
    std::vector<uint8_t> b(512);
    auto w = (*ro)->write(0, b);
    REQUIRE(!w);
    CHECK(w.error().err == EROFS);

    // The server's own refusal, bypassing the driver's check.
    auto c = NbdClient::connect(f.target("ro"));
    REQUIRE(c);
    auto e = (*c)->write(0, b);
    REQUIRE(!e);
    CHECK(e.error().err == EPERM);
    CHECK(e.error().message.find(f.uri("ro")) == 0);
    // Past the end: a server error, the connection stays usable.
    auto past = (*c)->read(65536 - 100, b);
    REQUIRE(!past);
    CHECK(past.error().err == EINVAL);
    CHECK((*c)->read(0, b));

    auto missing = NbdDriver::open(f.uri("nope"), false);
    REQUIRE(!missing);
    CHECK(missing.error().message == f.uri("nope") + ": server refused export 'nope': No such export");
    CHECK(missing.error().err == ENOENT);

    auto nosock = NbdDriver::open("nbd+unix:///x?socket=" + f.dir.file("none.sock"), false);
    REQUIRE(!nosock);
    CHECK(nosock.error().message.find("No such file or directory") != std::string::npos);
}

TEST_CASE("nbd client/server: listing exports, TCP on an ephemeral port")
{
    Fixture f;
    auto list = NbdClient::list(f.target(""));
    REQUIRE(list);
    REQUIRE(list->size() == 2);
    CHECK((*list)[0].name == "ro");
    CHECK((*list)[1].name == "rw");
    CHECK((*list)[1].description == "writable");
    CHECK((*list)[1].size == 1 << 20);
    CHECK(((*list)[0].flags & k_read_only));

    auto bound = f.server->listen("127.0.0.1:0");
    REQUIRE(bound);
    auto port = bound->substr(bound->rfind(':') + 1);
    auto drv = NbdDriver::open("nbd://127.0.0.1:" + port + "/rw", true);
    REQUIRE(drv);
    CHECK((*drv)->size() == 1 << 20);
    auto legacy = NbdDriver::open("nbd:127.0.0.1:" + port + ":exportname=ro", true);
    REQUIRE(legacy);
    CHECK((*legacy)->size() == 65536);
}

TEST_CASE("nbd client/server: structured reads of sparse data, block status")
{
    TempDir dir;
    const std::string path = dir.file("sparse.raw");
    {
        int fd = open(path.c_str(), O_CREAT | O_RDWR, 0600);
        REQUIRE(fd >= 0);
        REQUIRE(ftruncate(fd, 4 << 20) == 0);
        std::vector<uint8_t> data(65536, 0x77);
        REQUIRE(pwrite(fd, data.data(), data.size(), 1 << 20) == ssize_t(data.size()));
        close(fd);
    }
    BackendOptions bo;
    bo.image.filename = path;
    bo.image.format = "raw";
    auto backend = BlockBackend::open(bo);
    REQUIRE(backend);
    NbdServer server;
    REQUIRE(server.add_export("", "", std::shared_ptr<BlockBackend>(std::move(*backend)), false));
    REQUIRE(server.listen("unix:" + dir.file("s.sock")));
    auto c = NbdClient::connect(*parse_nbd_filename("nbd+unix:///?socket=" + dir.file("s.sock")));
    REQUIRE(c);
    CHECK((*c)->structured());
    CHECK((*c)->has_block_status());
    std::vector<uint8_t> buf(2 << 20, 0xff);
    REQUIRE((*c)->read(0, buf));
    for (size_t i = 0; i < buf.size(); i++) {
        uint8_t want = (i >= (1u << 20) && i < (1u << 20) + 65536) ? 0x77 : 0;
        if (buf[i] != want) {
            FAIL("byte " << i << " is " << int(buf[i]));
            break;
        }
    }
    auto ext = (*c)->block_status(0, 4 << 20);
    REQUIRE(ext);
    REQUIRE(ext->size() >= 3);
    CHECK((*ext)[0].flags == (k_state_hole | k_state_zero));
    CHECK((*ext)[0].length == 1 << 20);
    CHECK((*ext)[1].flags == 0);
    auto one = (*c)->block_status(0, 4 << 20, true);
    REQUIRE(one);
    CHECK(one->size() == 1);
}

TEST_CASE("nbd server: the connection limit refuses extra clients, others keep working")
{
    ServerOptions o;
    o.max_connections = 2;
    o.max_waiting = 0;
    Fixture f(o);
    auto a = NbdClient::connect(f.target("rw"));
    auto b = NbdClient::connect(f.target("rw"));
    REQUIRE(a);
    REQUIRE(b);
    CHECK(((*a)->flags() & k_can_multi_conn)); // more than one client allowed
    auto c = NbdClient::connect(f.target("rw"));
    CHECK(!c);
    for (int i = 0; i < 100 && f.refused == 0; i++)
        usleep(10000); // the event follows the close the client saw
    CHECK(f.refused >= 1);
    std::vector<uint8_t> buf(4096);
    CHECK((*a)->read(0, buf));
    a->reset();
    // A slot is free again once the first client has gone.
    for (int i = 0; i < 100 && f.server->connection_count() > 1; i++)
        usleep(10000);
    auto d = NbdClient::connect(f.target("rw"));
    CHECK(d);
}

TEST_CASE("nbd server: one client at a time: no multi-conn, the next one waits for the slot")
{
    ServerOptions o;
    o.max_connections = 1;
    Fixture f(o);
    auto a = NbdClient::connect(f.target("ro"));
    REQUIRE(a);
    CHECK(!((*a)->flags() & k_can_multi_conn));
    std::atomic<bool> second_in{false};
    std::thread t([&] {
        auto b = NbdClient::connect(f.target("ro"));
        second_in = bool(b);
    });
    usleep(100000);
    CHECK(!second_in); // waiting, not refused
    CHECK(f.server->connection_count() == 1);
    a->reset();
    t.join();
    CHECK(second_in);
    CHECK(f.refused == 0);
}

TEST_CASE("nbd server: removing exports, safe and hard")
{
    Fixture f;
    auto c = NbdClient::connect(f.target("rw"));
    REQUIRE(c);
    auto safe = f.server->remove_export("rw", RemoveMode::Safe);
    REQUIRE(!safe);
    CHECK(safe.error().message.find("in use") != std::string::npos);
    std::vector<uint8_t> buf(512);
    CHECK((*c)->read(0, buf)); // still served
    REQUIRE(f.server->remove_export("rw", RemoveMode::Hard));
    CHECK(!(*c)->read(0, buf)); // disconnected
    CHECK(f.server->exports().size() == 1);
    CHECK(!NbdClient::connect(f.target("rw")));
    REQUIRE(f.server->remove_export("ro", RemoveMode::Safe));
    CHECK(!f.server->remove_export("ro", RemoveMode::Safe));
    CHECK(f.server->exports().empty());
}

TEST_CASE("nbd server: stop() ends connected and idle clients")
{
    Fixture f;
    auto c = NbdClient::connect(f.target("rw"));
    REQUIRE(c);
    int raw = -1;
    {
        auto a = parse_socket_address("unix:" + f.sock);
        REQUIRE(a);
        auto fd = connect_to(*a);
        REQUIRE(fd);
        raw = *fd; // connected, never says a word
    }
    f.server->stop();
    CHECK(f.server->connection_count() == 0);
    std::vector<uint8_t> buf(512);
    CHECK(!(*c)->read(0, buf));
    close(raw);
    CHECK(access(f.sock.c_str(), F_OK) != 0); // the socket file is removed
}

TEST_CASE("nbd server: TLS required, with and without client certificates")
{
    TempDir certs;
    if (!make_certs(certs.path)) {
        MESSAGE("openssl is not installed: TLS not tested");
        return;
    }
    for (bool verify : {false, true}) {
        CAPTURE(verify);
        TlsOptions to;
        to.dir = certs.path;
        to.verify_peer = verify;
        auto creds = TlsCredentials::load(to);
        REQUIRE(creds);
        ServerOptions o;
        o.tls = *creds;
        Fixture f(o);
        auto plain = NbdDriver::open(f.uri("rw"), true);
        REQUIRE(!plain);
        CHECK(plain.error().message.find("TLS") != std::string::npos);

        auto tls = NbdDriver::open(f.uri("rw", "&tls-creds=" + certs.path), false);
        REQUIRE(tls);
        std::vector<uint8_t> data(300000, 0x3c);
        REQUIRE((*tls)->write(1000, data));
        std::vector<uint8_t> back(data.size());
        REQUIRE((*tls)->read(1000, back));
        CHECK(back == data);
        auto list = NbdClient::list(f.target("", "&tls-creds=" + certs.path));
        REQUIRE(list);
        CHECK(list->size() == 2);
    }
    // A client without a certificate, against a server that verifies peers.
    TempDir bare;
    std::filesystem::copy_file(certs.file("ca-cert.pem"), bare.file("ca-cert.pem"));
    TlsOptions to;
    to.dir = certs.path;
    auto creds = TlsCredentials::load(to);
    REQUIRE(creds);
    ServerOptions o;
    o.tls = *creds;
    Fixture f(o);
    CHECK(!NbdDriver::open(f.uri("rw", "&tls-creds=" + bare.path), true));
    // A client that does not trust the server's CA.
    TempDir other;
    REQUIRE(make_certs(other.path));
    CHECK(!NbdDriver::open(f.uri("rw", "&tls-creds=" + other.path), true));
    // The server is still serving.
    CHECK(NbdDriver::open(f.uri("rw", "&tls-creds=" + certs.path), true));
}

TEST_CASE("nbd server: a client that says nothing is dropped after the handshake timeout")
{
    ServerOptions o;
    o.handshake_timeout = std::chrono::milliseconds(200);
    Fixture f(o);
    auto a = parse_socket_address("unix:" + f.sock);
    REQUIRE(a);
    auto fd = connect_to(*a);
    REQUIRE(fd);
    uint8_t greeting[k_greeting_size];
    REQUIRE(recv(*fd, greeting, sizeof greeting, MSG_WAITALL) == ssize_t(sizeof greeting));
    auto start = std::chrono::steady_clock::now();
    uint8_t b;
    CHECK(recv(*fd, &b, 1, 0) == 0); // closed by the server
    CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(5));
    close(*fd);
    for (int i = 0; i < 100 && f.server->connection_count() > 0; i++)
        usleep(10000);
    CHECK(f.server->connection_count() == 0);
}

TEST_CASE("nbd server: NBD_OPT_EXPORT_NAME with and without the 124 zero bytes; IPv6")
{
    Fixture f;
    for (bool no_zeroes : {false, true}) {
        CAPTURE(no_zeroes);
        auto a = parse_socket_address("unix:" + f.sock);
        REQUIRE(a);
        auto fd = connect_to(*a);
        REQUIRE(fd);
        SocketChannel ch(*fd);
        uint8_t greeting[k_greeting_size];
        REQUIRE(ch.read(greeting));
        Script s;
        s.flags(k_client_fixed_newstyle | (no_zeroes ? k_client_no_zeroes : 0));
        s.option(Option::ExportName, std::vector<uint8_t>{'r', 'o'});
        s.request(Cmd::Read, 0, 4);
        REQUIRE(ch.write(s.bytes));
        std::vector<uint8_t> reply(k_export_name_reply_size + (no_zeroes ? 0 : k_export_name_zeroes));
        REQUIRE(ch.read(reply));
        CHECK(load_be64(reply.data()) == 65536);
        CHECK((load_be16(reply.data() + 8) & k_read_only));
        CHECK(std::all_of(reply.begin() + 10, reply.end(), [](uint8_t v) { return v == 0; }));
        uint8_t simple[k_simple_reply_size + 4];
        REQUIRE(ch.read(simple));
        CHECK(load_be32(simple) == k_simple_reply_magic);
        CHECK(load_be32(simple + 4) == 0);
        CHECK(std::equal(simple + 16, simple + 20, memory_of(*f.ro).begin()));
    }
    auto v6 = f.server->listen("[::1]:0");
    if (!v6) {
        MESSAGE("no IPv6 loopback: " << v6.error().message);
        return;
    }
    CHECK(v6->starts_with("[::1]:"));
    auto drv = NbdDriver::open("nbd://[::1]:" + v6->substr(v6->rfind(':') + 1) + "/ro", true);
    REQUIRE(drv);
    CHECK((*drv)->filename() == "nbd://[::1]:" + v6->substr(v6->rfind(':') + 1) + "/ro");
}
