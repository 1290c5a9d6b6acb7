// tests/unit/nbd_test_util.h — helpers of the NBD unit tests: client byte
// streams to feed a server session through a BufferChannel, a parser for
// what the session answered, and in-memory exports.
#pragma once

#include "storage/endian.h"
#include "storage/memory.h"
#include "storage/nbd/codec.h"
#include "storage/nbd/session.h"
#include "storage/raw.h"

#include <doctest/doctest.h>

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

namespace nbdtest {

using namespace emu::storage;
using namespace emu::storage::nbd;

struct TempDir {
    std::string path;
    TempDir()
    {
        std::string tmpl = "/tmp/emu-nbd-test-XXXXXX";
        path = mkdtemp(tmpl.data());
    }
    ~TempDir() { std::filesystem::remove_all(path); }
    std::string file(const std::string& name) const { return path + "/" + name; }
};

// A CA and server and client certificates (for "localhost" and 127.0.0.1)
// made with the openssl command, under QEMU's file names. False when
// openssl is not installed.
inline bool make_certs(const std::string& dir)
{
    const std::string script = "cd '" + dir +
        "' && "
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca-key.pem "
        "-out ca-cert.pem -days 2 -subj /CN=emu-test-ca && "
        "printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\n' > ext && "
        "for who in server client; do "
        "openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout $who-key.pem "
        "-out $who.csr -subj /CN=localhost && "
        "openssl x509 -req -in $who.csr -CA ca-cert.pem -CAkey ca-key.pem -CAcreateserial -days 2 "
        "-extfile ext -out $who-cert.pem || exit 1; done";
    return std::system(("(" + script + ") >/dev/null 2>&1").c_str()) == 0;
}

// What a client sends, built up step by step.
struct Script {
    std::vector<uint8_t> bytes;

    Script& raw(std::span<const uint8_t> b)
    {
        bytes.insert(bytes.end(), b.begin(), b.end());
        return *this;
    }
    Script& flags(uint32_t f)
    {
        uint8_t b[4];
        store_be32(b, f);
        return raw(b);
    }
    Script& option(Option opt, std::span<const uint8_t> data = {})
    {
        raw(encode_option_header(uint32_t(opt), uint32_t(data.size())));
        return raw(data);
    }
    Script& option_raw(uint32_t opt, std::span<const uint8_t> data)
    {
        raw(encode_option_header(opt, uint32_t(data.size())));
        return raw(data);
    }
    Script& go(std::string_view name, std::vector<uint16_t> infos = {})
    {
        return option(Option::Go, encode_info_request(name, infos));
    }
    Script& request(Cmd cmd, uint64_t offset, uint32_t length, uint16_t flags = 0, uint64_t cookie = 7)
    {
        return raw(encode_request(Request{flags, uint16_t(cmd), cookie, offset, length}));
    }
    Script& string(std::string_view s) { return raw({reinterpret_cast<const uint8_t*>(s.data()), s.size()}); }
};

// The start of every handshake: fixed newstyle, no zeroes.
inline Script hello()
{
    Script s;
    s.flags(k_client_fixed_newstyle | k_client_no_zeroes);
    return s;
}

// Reads back what the server sent.
struct Replies {
    const std::vector<uint8_t>& out;
    size_t pos = 0;

    explicit Replies(const std::vector<uint8_t>& o) : out(o) {}
    size_t left() const { return out.size() - pos; }
    std::span<const uint8_t> take(size_t n)
    {
        REQUIRE(left() >= n);
        auto s = std::span<const uint8_t>(out.data() + pos, n);
        pos += n;
        return s;
    }
    void greeting()
    {
        auto g = take(k_greeting_size);
        REQUIRE(decode_greeting(std::span<const uint8_t, k_greeting_size>(g.data(), k_greeting_size)));
    }
    struct OptReply {
        uint32_t option = 0;
        uint32_t type = 0;
        std::vector<uint8_t> data;
    };
    OptReply rep()
    {
        auto h = take(k_option_reply_header_size);
        auto d = decode_option_reply_header(std::span<const uint8_t, k_option_reply_header_size>(h.data(), 20));
        REQUIRE(d);
        OptReply r{d->option, d->type, {}};
        auto p = take(d->length);
        r.data.assign(p.begin(), p.end());
        return r;
    }
    // Option replies up to and including the final one (ACK or an error).
    std::vector<OptReply> reps()
    {
        std::vector<OptReply> all;
        while (true) {
            all.push_back(rep());
            uint32_t t = all.back().type;
            if (t == uint32_t(emu::storage::nbd::Rep::Ack) || (t & k_rep_error_bit))
                return all;
        }
    }
    ReplyHeader reply()
    {
        auto m = take(4);
        auto rest = reply_header_rest(std::span<const uint8_t, 4>(m.data(), 4));
        REQUIRE(rest);
        pos -= 4;
        auto all = take(4 + *rest);
        auto h = decode_reply_header(all);
        REQUIRE(h);
        return *h;
    }
};

// A raw export of `size` bytes filled with a pattern, in memory.
inline std::shared_ptr<BlockBackend> memory_backend(size_t size, bool read_only = false)
{
    std::vector<uint8_t> data(size);
    for (size_t i = 0; i < size; i++)
        data[i] = uint8_t(i * 7 + 3);
    auto mem = std::make_unique<MemoryDriver>("mem", std::move(data), read_only, size);
    return std::make_shared<BlockBackend>(std::make_unique<RawDriver>(std::move(mem)), BackendOptions{});
}

inline const std::vector<uint8_t>& memory_of(BlockBackend& b)
{
    return static_cast<MemoryDriver*>(b.driver().file())->data();
}

// Runs one session over the script; returns its output and result.
struct SessionRun {
    std::vector<uint8_t> output;
    Result<void> result;
};
inline SessionRun run_session(const ExportTable& exports, const Script& script,
                              std::shared_ptr<TlsCredentials> tls = nullptr)
{
    SessionConfig config;
    config.exports = &exports;
    config.tls = std::move(tls);
    config.handshake_timeout = std::chrono::milliseconds(0);
    auto channel = std::make_unique<BufferChannel>(script.bytes, 64u << 20);
    BufferChannel* ch = channel.get();
    ServerSession session(config, std::move(channel), "test");
    SessionRun r;
    r.result = session.run();
    r.output = ch->output();
    return r;
}

} // namespace nbdtest
