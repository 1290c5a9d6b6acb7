// tests/fuzz/fuzz_nbd_server.cpp — libFuzzer target for the NBD server's
// option and request parsers (STYLE.md item 21). Each input is what a client
// sends, fed to a server session through a BufferChannel: the fixed newstyle
// handshake, every option, then transmission requests against a writable and
// a read-only export in memory. The first byte picks the mode: odd values
// prepend a valid handshake (structured replies, base:allocation, GO) so that
// the rest of the input reaches the request parser directly. Nothing may
// crash, hang or leak, and the exports' bytes past their ends stay untouched.
#include "storage/memory.h"
#include "storage/nbd/codec.h"
#include "storage/nbd/session.h"
#include "storage/raw.h"

#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

using namespace emu::storage;
using namespace emu::storage::nbd;

namespace {

constexpr size_t k_export_size = 16 * 1024;

std::vector<uint8_t> handshake()
{
    std::vector<uint8_t> out;
    auto add = [&](std::span<const uint8_t> b) { out.insert(out.end(), b.begin(), b.end()); };
    uint8_t flags[4] = {0, 0, 0, 3};
    add(flags);
    add(encode_option_header(uint32_t(Option::StructuredReply), 0));
    std::vector<std::string> q{"base:allocation"};
    auto meta = encode_meta_context_request("rw", q);
    add(encode_option_header(uint32_t(Option::SetMetaContext), uint32_t(meta.size())));
    add(meta);
    auto go = encode_info_request("rw", {});
    add(encode_option_header(uint32_t(Option::Go), uint32_t(go.size())));
    add(go);
    return out;
}

std::shared_ptr<BlockBackend> backend(bool read_only)
{
    // The memory driver may grow on writes past its end: a cap one byte over
    // the export lets such a write be detected below.
    // Copied from a template: an instrumented fill loop would dominate the run.
    static const std::vector<uint8_t> k_template(k_export_size, 0x5a);
    std::vector<uint8_t> data = k_template;
    auto mem = std::make_unique<MemoryDriver>("fuzz", std::move(data), read_only, k_export_size + 1);
    return std::make_shared<BlockBackend>(std::make_unique<RawDriver>(std::move(mem)), BackendOptions{});
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
{
    if (size == 0)
        return 0;
    std::vector<uint8_t> input;
    if (data[0] & 1)
        input = handshake();
    input.insert(input.end(), data + 1, data + size);

    auto rw = backend(false);
    auto ro = backend(true);
    ExportTable exports;
    (void)exports.add(*Export::create("rw", "fuzzed", rw, true));
    (void)exports.add(*Export::create("ro", "", ro, false));
    SessionConfig config;
    config.exports = &exports;
    config.handshake_timeout = std::chrono::milliseconds(0);
    {
        ServerSession session(config, std::make_unique<BufferChannel>(std::move(input), 64 * 1024), "fuzz");
        (void)session.run();
    }
    auto* mem = static_cast<MemoryDriver*>(rw->driver().file());
    if (mem->data().size() != k_export_size)
        abort(); // a write reached past the end of the export
    return 0;
}
