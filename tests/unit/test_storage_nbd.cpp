// Unit tests: the NBD wire codec, image names, and the server session's
// handshake and request handling driven byte by byte (BufferChannel):
// malformed and hostile input gets an error reply or ends the session, and
// never writes outside the export.
#include "nbd_test_util.h"

#include "storage/nbd/uri.h"

#include <cstring>

using namespace nbdtest;

namespace {

std::vector<uint8_t> bytes_of(std::string_view s)
{
    return std::vector<uint8_t>(s.begin(), s.end());
}

std::unique_ptr<ExportTable> table_with(std::string name, std::shared_ptr<BlockBackend> backend, bool writable,
                                        std::string description = "")
{
    auto t = std::make_unique<ExportTable>();
    auto ex = Export::create(std::move(name), std::move(description), std::move(backend), writable);
    REQUIRE(ex);
    REQUIRE(t->add(*ex));
    return t;
}

} // namespace

// --- codec -------------------------------------------------------------------

TEST_CASE("nbd codec: fixed headers round-trip")
{
    Request r{k_cmd_fua, uint16_t(Cmd::Write), 0x1122334455667788ull, 1ull << 40, 4096};
    auto b = encode_request(r);
    auto d = decode_request(b);
    REQUIRE(d);
    CHECK(d->flags == r.flags);
    CHECK(d->type == r.type);
    CHECK(d->cookie == r.cookie);
    CHECK(d->offset == r.offset);
    CHECK(d->length == r.length);
    b[0] ^= 1;
    CHECK(!decode_request(b));

    auto g = encode_greeting(k_flag_fixed_newstyle);
    auto gd = decode_greeting(g);
    REQUIRE(gd);
    CHECK(*gd == k_flag_fixed_newstyle);
    // An oldstyle server is named as such.
    store_be64(g.data() + 8, 0x00420281861253ull);
    auto old = decode_greeting(g);
    REQUIRE(!old);
    CHECK(old.error().message.find("oldstyle") != std::string::npos);

    auto oh = encode_option_header(uint32_t(Option::Go), 99);
    auto ohd = decode_option_header(oh);
    REQUIRE(ohd);
    CHECK(ohd->option == uint32_t(Option::Go));
    CHECK(ohd->length == 99);

    auto s = encode_simple_reply(k_einval, 5);
    auto sh = decode_reply_header(s);
    REQUIRE(sh);
    CHECK(!sh->structured);
    CHECK(sh->error == k_einval);
    CHECK(sh->cookie == 5);
    auto c = encode_chunk_header(k_reply_flag_done, Chunk::OffsetHole, 9, 12);
    auto ch = decode_reply_header(c);
    REQUIRE(ch);
    CHECK(ch->structured);
    CHECK(ch->type == uint16_t(Chunk::OffsetHole));
    CHECK(ch->length == 12);
    CHECK(!decode_reply_header(std::span<const uint8_t>(c.data(), 19)));
}

TEST_CASE("nbd codec: info requests are validated")
{
    const uint16_t infos[] = {1, 3};
    auto ok = parse_info_request(encode_info_request("disk", infos));
    REQUIRE(ok);
    CHECK(ok->name == "disk");
    CHECK(ok->requests == std::vector<uint16_t>{1, 3});

    auto payload = encode_info_request("disk", infos);
    // Name length beyond the payload.
    auto bad = payload;
    store_be32(bad.data(), 1000);
    CHECK(!parse_info_request(bad));
    // Count that does not match the bytes present.
    bad = payload;
    store_be16(bad.data() + 8, 3);
    CHECK(!parse_info_request(bad));
    bad = payload;
    bad.push_back(0);
    CHECK(!parse_info_request(bad));
    // Truncated.
    CHECK(!parse_info_request(std::span<const uint8_t>(payload.data(), 3)));
    // A name of 4097 bytes, a NUL in the name.
    CHECK(!parse_info_request(encode_info_request(std::string(4097, 'a'), {})));
    CHECK(!parse_info_request(encode_info_request(std::string("a\0b", 3), {})));
    CHECK(parse_info_request(encode_info_request(std::string(4096, 'a'), {})));
}

TEST_CASE("nbd codec: meta context requests are validated")
{
    std::vector<std::string> q{"base:allocation", "qemu:dirty-bitmap:x"};
    auto ok = parse_meta_context_request(encode_meta_context_request("e", q));
    REQUIRE(ok);
    CHECK(ok->name == "e");
    CHECK(ok->queries == q);

    auto payload = encode_meta_context_request("e", q);
    auto bad = payload;
    store_be32(bad.data() + 5, 0xffffffffu); // a count no payload can hold
    auto r = parse_meta_context_request(bad);
    CHECK(!r);
    bad = payload;
    store_be32(bad.data() + 9, 5000); // first query longer than the payload
    CHECK(!parse_meta_context_request(bad));
    bad = payload;
    bad.push_back('x'); // trailing byte
    CHECK(!parse_meta_context_request(bad));
    std::vector<std::string> many(k_max_meta_queries + 1, "base:allocation");
    auto big = parse_meta_context_request(encode_meta_context_request("e", many));
    REQUIRE(!big);
    CHECK(big.error().err == E2BIG);
}

TEST_CASE("nbd codec: reply payloads are validated")
{
    auto e = encode_error_chunk(k_eperm, "no");
    auto pe = parse_error_chunk(uint16_t(Chunk::Error), e);
    REQUIRE(pe);
    CHECK(pe->error == k_eperm);
    CHECK(pe->message == "no");
    store_be16(e.data() + 4, 50); // message longer than the chunk
    CHECK(!parse_error_chunk(uint16_t(Chunk::Error), e));
    CHECK(!parse_error_chunk(uint16_t(Chunk::Error), encode_error_chunk(0, "")));

    ByteWriter w;
    w.u32(1).u32(4096).u32(k_state_hole).u32(512).u32(0);
    auto bs = parse_block_status_chunk(w.data());
    REQUIRE(bs);
    CHECK(bs->context == 1);
    REQUIRE(bs->extents.size() == 2);
    CHECK(bs->extents[0].flags == k_state_hole);
    w.u32(7); // not a whole descriptor
    CHECK(!parse_block_status_chunk(w.data()));
    ByteWriter z;
    z.u32(1).u32(0).u32(0);
    CHECK(!parse_block_status_chunk(z.data())); // zero-length extent
}

TEST_CASE("nbd names: URIs and the legacy syntax")
{
    auto a = parse_nbd_filename("nbd://example.com:1234/my%20disk");
    REQUIRE(a);
    CHECK(!a->address.is_unix);
    CHECK(a->address.host == "example.com");
    CHECK(a->address.port == "1234");
    CHECK(a->export_name == "my disk");
    CHECK(!a->tls);

    auto b = parse_nbd_filename("nbd://localhost");
    REQUIRE(b);
    CHECK(b->address.port == "10809");
    CHECK(b->export_name == "");

    auto c = parse_nbd_filename("nbd+unix:///exp?socket=/run/x.sock");
    REQUIRE(c);
    CHECK(c->address.is_unix);
    CHECK(c->address.path == "/run/x.sock");
    CHECK(c->export_name == "exp");

    auto d = parse_nbd_filename("nbds://[::1]:99/x?tls-creds=/etc/pki/c&tls-hostname=srv");
    REQUIRE(d);
    CHECK(d->tls);
    CHECK(d->address.host == "::1");
    CHECK(d->address.port == "99");
    CHECK(d->tls_creds_dir == "/etc/pki/c");
    CHECK(d->tls_hostname == "srv");

    auto e = parse_nbd_filename("nbd:localhost:10810:exportname=foo");
    REQUIRE(e);
    CHECK(e->address.host == "localhost");
    CHECK(e->address.port == "10810");
    CHECK(e->export_name == "foo");
    auto f = parse_nbd_filename("nbd:unix:/tmp/s.sock:exportname=bar");
    REQUIRE(f);
    CHECK(f->address.is_unix);
    CHECK(f->address.path == "/tmp/s.sock");
    CHECK(f->export_name == "bar");

    CHECK(!parse_nbd_filename("nbd+unix:///x"));               // no socket
    CHECK(!parse_nbd_filename("nbd+unix://host/x?socket=/s")); // a host
    CHECK(!parse_nbd_filename("nbd://h:99999/"));
    CHECK(!parse_nbd_filename("nbd://h/x?colour=blue"));
    CHECK(!parse_nbd_filename("nbd://h/%zz"));
    CHECK(!parse_nbd_filename("nbd:hostonly"));
    CHECK(!is_nbd_filename("disk.qcow2"));
    CHECK(!is_nbd_filename("nbdfile.raw"));
}

// --- handshake ---------------------------------------------------------------

TEST_CASE("nbd server: unknown client flags end the session before any option")
{
    auto t = table_with("", memory_backend(4096), true);
    Script s;
    s.flags(1u << 7);
    auto r = run_session(*t, s);
    CHECK(!r.result);
    CHECK(r.output.size() == k_greeting_size);
}

TEST_CASE("nbd server: unknown, unsupported and oversize options get error replies")
{
    auto t = table_with("", memory_backend(4096), true);
    auto s = hello();
    s.option_raw(999, bytes_of("whatever"));
    s.option(Option::PeekExport);
    s.option(Option::ExtendedHeaders);
    std::vector<uint8_t> huge(k_max_option_length + 1, 'x');
    s.option(Option::Info, huge); // skipped unread, not buffered
    s.option(Option::List, bytes_of("data"));
    s.option(Option::StructuredReply, bytes_of("x"));
    s.option(Option::StartTls);
    s.option(Option::Abort);
    auto r = run_session(*t, s);
    CHECK(r.result);
    Replies out(r.output);
    out.greeting();
    CHECK(out.rep().type == uint32_t(Rep::ErrUnsup));
    CHECK(out.rep().type == uint32_t(Rep::ErrUnsup));
    CHECK(out.rep().type == uint32_t(Rep::ErrUnsup));
    CHECK(out.rep().type == uint32_t(Rep::ErrTooBig));
    CHECK(out.rep().type == uint32_t(Rep::ErrInvalid));
    CHECK(out.rep().type == uint32_t(Rep::ErrInvalid));
    CHECK(out.rep().type == uint32_t(Rep::ErrPolicy)); // no TLS configured
    CHECK(out.rep().type == uint32_t(Rep::Ack));       // abort
    CHECK(out.left() == 0);
}

TEST_CASE("nbd server: malformed handshakes end the session")
{
    auto t = table_with("", memory_backend(4096), true);
    SUBCASE("bad option magic")
    {
        auto s = hello();
        s.raw(std::vector<uint8_t>(16, 0x41));
        CHECK(!run_session(*t, s).result);
    }
    SUBCASE("truncated option data")
    {
        auto s = hello();
        s.raw(encode_option_header(uint32_t(Option::Go), 100)).string("short");
        CHECK(!run_session(*t, s).result);
    }
    SUBCASE("export name too large")
    {
        auto s = hello();
        s.raw(encode_option_header(uint32_t(Option::ExportName), k_max_option_length + 1));
        auto r = run_session(*t, s);
        CHECK(!r.result);
        CHECK(r.output.size() == k_greeting_size);
    }
    SUBCASE("unknown export by NBD_OPT_EXPORT_NAME: a hard disconnect")
    {
        auto s = hello();
        s.option(Option::ExportName, bytes_of("nope"));
        auto r = run_session(*t, s);
        CHECK(!r.result);
        CHECK(r.output.size() == k_greeting_size);
    }
    SUBCASE("options without fixed newstyle")
    {
        Script s;
        s.flags(0).option(Option::List);
        CHECK(!run_session(*t, s).result);
    }
    SUBCASE("nothing at all")
    {
        CHECK(!run_session(*t, Script{}).result);
    }
}

TEST_CASE("nbd server: INFO, GO, LIST and meta contexts")
{
    auto t = table_with("disk", memory_backend(1 << 20), false, "the disk");
    auto s = hello();
    s.option(Option::List);
    s.option(Option::Info, encode_info_request("nope", {}));
    s.option(Option::Info, encode_info_request("disk", std::vector<uint16_t>{1, 2, 3, 77}));
    s.option(Option::SetMetaContext, encode_meta_context_request("disk", std::vector<std::string>{"base:allocation"}));
    s.option(Option::StructuredReply);
    s.option(Option::ListMetaContext, encode_meta_context_request("disk", {}));
    s.option(Option::ListMetaContext, encode_meta_context_request("disk", std::vector<std::string>{"base:"}));
    s.option(Option::SetMetaContext,
             encode_meta_context_request("disk", std::vector<std::string>{"qemu:x", "base:allocation", "base:nope"}));
    s.option(Option::SetMetaContext, encode_meta_context_request("disk", std::vector<std::string>{"nocolon"}));
    s.go("disk");
    s.request(Cmd::Disc, 0, 0);
    auto r = run_session(*t, s);
    CHECK(r.result);
    Replies out(r.output);
    out.greeting();
    auto list = out.reps();
    REQUIRE(list.size() == 2);
    CHECK(list[0].type == uint32_t(Rep::Server));
    CHECK(std::string(list[0].data.begin() + 4, list[0].data.end()) == "diskthe disk");
    CHECK(out.rep().type == uint32_t(Rep::ErrUnknown));
    auto info = out.reps();
    REQUIRE(info.size() == 5); // export, name, description, block size, ack
    CHECK(load_be16(info[0].data.data()) == uint16_t(InfoType::Export));
    CHECK(load_be64(info[0].data.data() + 2) == 1 << 20);
    uint16_t flags = load_be16(info[0].data.data() + 10);
    CHECK((flags & k_read_only));
    CHECK(!(flags & k_send_trim));
    CHECK(std::string(info[1].data.begin() + 2, info[1].data.end()) == "disk");
    CHECK(std::string(info[2].data.begin() + 2, info[2].data.end()) == "the disk");
    CHECK(load_be16(info[3].data.data()) == uint16_t(InfoType::BlockSize));
    CHECK(info[4].type == uint32_t(Rep::Ack));
    CHECK(out.rep().type == uint32_t(Rep::ErrInvalid)); // meta context before structured replies
    CHECK(out.rep().type == uint32_t(Rep::Ack));        // structured replies
    auto all = out.reps();
    REQUIRE(all.size() == 2);
    CHECK(std::string(all[0].data.begin() + 4, all[0].data.end()) == "base:allocation");
    CHECK(out.reps().size() == 2); // "base:" lists base:allocation
    auto set = out.reps();
    REQUIRE(set.size() == 2);
    CHECK(set[0].type == uint32_t(Rep::MetaContext));
    CHECK(load_be32(set[0].data.data()) != 0);
    CHECK(out.rep().type == uint32_t(Rep::ErrInvalid)); // no namespace
    auto go = out.reps();
    CHECK(go.back().type == uint32_t(Rep::Ack));
    CHECK(out.left() == 0);
}

TEST_CASE("nbd server: a TLS-only server refuses plaintext options")
{
    TempDir dir;
    if (!make_certs(dir.path)) {
        MESSAGE("openssl is not installed: TLS refusals not tested");
        return;
    }
    TlsOptions to;
    to.dir = dir.path;
    to.verify_peer = false;
    auto creds = TlsCredentials::load(to);
    REQUIRE(creds);
    auto t = table_with("", memory_backend(4096), true);
    SUBCASE("every option but STARTTLS and ABORT")
    {
        auto s = hello();
        s.option(Option::Info, encode_info_request("", {}));
        s.option(Option::List);
        s.option(Option::StructuredReply);
        s.option_raw(1234, {});
        s.go("");
        s.option(Option::Abort);
        auto r = run_session(*t, s, *creds);
        CHECK(r.result);
        Replies out(r.output);
        out.greeting();
        for (int i = 0; i < 5; i++)
            CHECK(out.rep().type == uint32_t(Rep::ErrTlsReqd));
        CHECK(out.rep().type == uint32_t(Rep::Ack));
    }
    SUBCASE("NBD_OPT_EXPORT_NAME in plaintext: a hard disconnect")
    {
        auto s = hello();
        s.option(Option::ExportName);
        auto r = run_session(*t, s, *creds);
        CHECK(!r.result);
        CHECK(r.output.size() == k_greeting_size);
    }
    SUBCASE("no fixed newstyle, no TLS")
    {
        Script s;
        s.flags(0).option(Option::ExportName);
        CHECK(!run_session(*t, s, *creds).result);
    }
}

// --- transmission ------------------------------------------------------------

namespace {

// Handshake into transmission on export "" with or without structured
// replies and base:allocation.
Script into_transmission(bool structured)
{
    auto s = hello();
    if (structured) {
        s.option(Option::StructuredReply);
        s.option(Option::SetMetaContext, encode_meta_context_request("", std::vector<std::string>{"base:allocation"}));
    }
    s.go("");
    return s;
}

void skip_handshake(Replies& out, bool structured)
{
    out.greeting();
    if (structured) {
        out.reps();
        out.reps();
    }
    auto go = out.reps();
    REQUIRE(go.back().type == uint32_t(Rep::Ack));
}

} // namespace

TEST_CASE("nbd server: requests past the end, too large, or with bad flags fail and write nothing")
{
    auto backend = memory_backend(1 << 20);
    const auto before = memory_of(*backend);
    auto t = table_with("", backend, true);
    for (bool structured : {false, true}) {
        CAPTURE(structured);
        auto s = into_transmission(structured);
        std::vector<uint8_t> data(4096, 0xee);
        s.request(Cmd::Write, (1 << 20) - 100, 4096).raw(data); // 1: ENOSPC
        s.request(Cmd::Read, (1 << 20) - 100, 4096);            // 2: EINVAL
        s.request(Cmd::Read, 0, k_max_payload + 1);             // 3: EINVAL
        s.request(Cmd::Trim, 1 << 20, 1);                       // 4: EINVAL
        s.request(Cmd::WriteZeroes, ~0ull - 10, 100);           // 5: ENOSPC (offset overflow)
        s.request(Cmd::Write, 0, 16, 0x8000).raw(std::span<const uint8_t>(data.data(), 16)); // 6: unknown flag
        s.request(Cmd::Read, 0, 16, k_cmd_req_one); // 7: flag of another command
        s.request(Cmd::Flush, 5, 0);                // 8: flush with an offset
        s.request(Cmd(42), 0, 0);                   // 9: unknown command
        s.request(Cmd::BlockStatus, 0, 0);          // 10: zero length / no context
        s.request(Cmd::Write, 0, 16, k_cmd_payload_len)
            .raw(std::span<const uint8_t>(data.data(), 16)); // 11: extended headers
        s.request(Cmd::Disc, 0, 0);
        auto r = run_session(*t, s);
        CHECK(r.result);
        Replies out(r.output);
        skip_handshake(out, structured);
        const uint32_t expect[] = {k_enospc, k_einval, k_einval, k_einval, k_enospc, k_einval,
                                   k_einval, k_einval, k_einval, k_einval, k_einval};
        for (uint32_t e : expect) {
            auto h = out.reply();
            CHECK(h.cookie == 7);
            if (h.structured) {
                CHECK(h.type == uint16_t(Chunk::Error));
                CHECK((h.flags & k_reply_flag_done));
                auto payload = out.take(h.length);
                auto ec = parse_error_chunk(h.type, payload);
                REQUIRE(ec);
                CHECK(ec->error == e);
                CHECK(!ec->message.empty());
            } else {
                CHECK(h.error == e);
            }
        }
        CHECK(out.left() == 0);
    }
    CHECK(memory_of(*backend) == before);
}

TEST_CASE("nbd server: oversize writes and disconnects in the middle of a request end the session")
{
    auto backend = memory_backend(1 << 20);
    const auto before = memory_of(*backend);
    auto t = table_with("", backend, true);
    SUBCASE("a write larger than 32 MiB")
    {
        auto s = into_transmission(false);
        s.request(Cmd::Write, 0, k_max_payload + 1).raw(std::vector<uint8_t>(1000, 1));
        CHECK(!run_session(*t, s).result);
    }
    SUBCASE("a write whose payload stops short")
    {
        auto s = into_transmission(false);
        s.request(Cmd::Write, 0, 4096).raw(std::vector<uint8_t>(100, 1));
        CHECK(!run_session(*t, s).result);
    }
    SUBCASE("half a request header")
    {
        auto s = into_transmission(false);
        auto req = encode_request(Request{0, uint16_t(Cmd::Read), 1, 0, 512});
        s.raw(std::span<const uint8_t>(req.data(), 13));
        CHECK(!run_session(*t, s).result);
    }
    SUBCASE("bad request magic")
    {
        auto s = into_transmission(false);
        s.raw(std::vector<uint8_t>(28, 0x5a));
        CHECK(!run_session(*t, s).result);
    }
    CHECK(memory_of(*backend) == before);
}

TEST_CASE("nbd server: a read-only export refuses writes with EPERM")
{
    auto backend = memory_backend(65536, true);
    auto t = table_with("", backend, false);
    auto s = into_transmission(false);
    s.request(Cmd::Write, 0, 512).raw(std::vector<uint8_t>(512, 9));
    s.request(Cmd::WriteZeroes, 0, 512);
    s.request(Cmd::Trim, 0, 512);
    s.request(Cmd::Flush, 0, 0);
    s.request(Cmd::Read, 0, 512);
    s.request(Cmd::Disc, 0, 0);
    auto r = run_session(*t, s);
    CHECK(r.result);
    Replies out(r.output);
    skip_handshake(out, false);
    CHECK(out.reply().error == k_eperm);
    CHECK(out.reply().error == k_eperm);
    CHECK(out.reply().error == k_eperm);
    CHECK(out.reply().error == 0);
    CHECK(out.reply().error == 0);
    auto data = out.take(512);
    CHECK(std::equal(data.begin(), data.end(), memory_of(*backend).begin()));
}

TEST_CASE("nbd server: writes, zeroes, reads and block status in simple and structured replies")
{
    auto backend = memory_backend(1 << 20);
    auto t = table_with("", backend, true);
    auto s = into_transmission(true);
    std::vector<uint8_t> data(8192);
    for (size_t i = 0; i < data.size(); i++)
        data[i] = uint8_t(i ^ 0x5a);
    s.request(Cmd::Write, 4096, 8192, k_cmd_fua, 1).raw(data);
    s.request(Cmd::WriteZeroes, 65536, 65536, 0, 2);
    s.request(Cmd::WriteZeroes, 0, 4096, k_cmd_fast_zero, 3); // data there: not fast
    s.request(Cmd::Read, 4096, 8192, 0, 4);
    s.request(Cmd::Read, 0, 16, k_cmd_df, 5);
    s.request(Cmd::BlockStatus, 0, 1 << 20, 0, 6);
    s.request(Cmd::BlockStatus, 0, 1 << 20, k_cmd_req_one, 8);
    s.request(Cmd::Cache, 0, 1 << 20, 0, 9);
    s.request(Cmd::Read, 0, 0, 0, 10);
    s.request(Cmd::Disc, 0, 0);
    auto r = run_session(*t, s);
    CHECK(r.result);
    Replies out(r.output);
    skip_handshake(out, true);
    auto h1 = out.reply();
    CHECK(h1.cookie == 1);
    CHECK(h1.error == 0);
    CHECK(out.reply().cookie == 2);
    auto h3 = out.reply();
    REQUIRE(h3.structured);
    CHECK(parse_error_chunk(h3.type, out.take(h3.length))->error == k_enotsup);
    auto h4 = out.reply();
    REQUIRE(h4.structured);
    CHECK(h4.type == uint16_t(Chunk::OffsetData));
    CHECK((h4.flags & k_reply_flag_done));
    CHECK(load_be64(out.take(8).data()) == 4096);
    auto got = out.take(h4.length - 8);
    CHECK(std::equal(got.begin(), got.end(), data.begin(), data.end()));
    auto h5 = out.reply();
    CHECK(h5.type == uint16_t(Chunk::OffsetData));
    out.take(h5.length);
    auto h6 = out.reply();
    REQUIRE(h6.type == uint16_t(Chunk::BlockStatus));
    auto bs = parse_block_status_chunk(out.take(h6.length));
    REQUIRE(bs);
    uint64_t total = 0;
    for (const auto& e : bs->extents)
        total += e.length;
    CHECK(total == 1 << 20);
    auto h8 = out.reply();
    auto one = parse_block_status_chunk(out.take(h8.length));
    REQUIRE(one);
    CHECK(one->extents.size() == 1);
    CHECK(out.reply().error == 0); // cache
    auto h10 = out.reply();
    CHECK(h10.type == uint16_t(Chunk::None));
    CHECK(out.left() == 0);
    const auto& mem = memory_of(*backend);
    CHECK(std::equal(data.begin(), data.end(), mem.begin() + 4096));
    CHECK(std::all_of(mem.begin() + 65536, mem.begin() + 131072, [](uint8_t b) { return b == 0; }));
}
