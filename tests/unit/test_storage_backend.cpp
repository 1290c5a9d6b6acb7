// Unit tests: BlockBackend (sync and async API, detect-zeroes, discard,
// cache modes), image locking, raw preallocation.
#include "storage/backend.h"

#include <doctest/doctest.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <future>
#include <sys/stat.h>

using namespace emu::storage;
namespace fs = std::filesystem;

namespace {

struct TempDir {
    fs::path path;
    explicit TempDir(const char* base = "/tmp")
    {
        std::string tmpl = std::string(base) + "/emu-storage-backend-XXXXXX";
        path = mkdtemp(tmpl.data());
    }
    ~TempDir() { fs::remove_all(path); }
    std::string file(const std::string& name) const { return (path / name).string(); }
};

BackendOptions options(const std::string& path, bool read_only = false)
{
    BackendOptions o;
    o.image.filename = path;
    o.image.read_only = read_only;
    return o;
}

} // namespace

TEST_CASE("backend: asynchronous requests complete on workers")
{
    TempDir dir;
    std::string path = dir.file("a.qcow2");
    qcow2::CreateOptions c;
    c.size = 4 << 20;
    REQUIRE(create_qcow2(path, c).has_value());
    auto be = BlockBackend::open(options(path));
    REQUIRE(be.has_value());
    std::vector<std::vector<uint8_t>> bufs;
    for (int i = 0; i < 32; i++)
        bufs.emplace_back(10000, uint8_t(i + 1));
    std::atomic<int> ok{0};
    for (int i = 0; i < 32; i++)
        (*be)->write_async(uint64_t(i) * 100000 + 17, bufs[size_t(i)], [&](Result<void> r) {
            if (r)
                ok++;
        });
    (*be)->drain();
    CHECK(ok == 32);
    std::vector<uint8_t> back(10000);
    std::promise<bool> done;
    (*be)->read_async(5 * 100000 + 17, back, [&](Result<void> r) { done.set_value(r.has_value()); });
    CHECK(done.get_future().get());
    CHECK(back == bufs[5]);
    std::promise<bool> flushed;
    (*be)->flush_async([&](Result<void> r) { flushed.set_value(r.has_value()); });
    CHECK(flushed.get_future().get());
    REQUIRE((*be)->close().has_value());
}

TEST_CASE("backend: detect-zeroes=unmap with discard=unmap deallocates")
{
    TempDir dir;
    std::string path = dir.file("z.qcow2");
    qcow2::CreateOptions c;
    c.size = 1 << 20;
    REQUIRE(create_qcow2(path, c).has_value());
    auto o = options(path);
    o.detect_zeroes = DetectZeroes::Unmap;
    o.discard = DiscardMode::Unmap;
    auto be = BlockBackend::open(o);
    REQUIRE(be.has_value());
    std::vector<uint8_t> data(65536, 9);
    REQUIRE((*be)->write(0, data).has_value());
    auto st = (*be)->block_status(0, 65536);
    REQUIRE(st.has_value());
    CHECK(st->data);
    std::vector<uint8_t> zeroes(65536, 0);
    REQUIRE((*be)->write(0, zeroes).has_value());
    st = (*be)->block_status(0, 65536);
    REQUIRE(st.has_value());
    CHECK_FALSE(st->data);
    CHECK(st->zero);
}

TEST_CASE("backend: discard=ignore keeps data, read-only refuses writes")
{
    TempDir dir;
    std::string path = dir.file("r.raw");
    REQUIRE(create_raw(path, 1 << 20, Preallocation::Off).has_value());
    {
        auto be = BlockBackend::open(options(path));
        REQUIRE(be.has_value());
        std::vector<uint8_t> data(4096, 1);
        REQUIRE((*be)->write(0, data).has_value());
        REQUIRE((*be)->discard(0, 4096).has_value());
        std::vector<uint8_t> back(4096);
        REQUIRE((*be)->read(0, back).has_value());
        CHECK(back == data);
    }
    auto ro = BlockBackend::open(options(path, true));
    REQUIRE(ro.has_value());
    std::vector<uint8_t> data(512, 1);
    CHECK_FALSE((*ro)->write(0, data).has_value());
}

TEST_CASE("backend: image locking keeps two writers apart; force-share reads")
{
    TempDir dir;
    std::string path = dir.file("l.qcow2");
    qcow2::CreateOptions c;
    c.size = 1 << 20;
    REQUIRE(create_qcow2(path, c).has_value());
    auto writer = BlockBackend::open(options(path));
    REQUIRE(writer.has_value());
    auto second = BlockBackend::open(options(path));
    REQUIRE_FALSE(second.has_value());
    CHECK(second.error().message.find("lock") != std::string::npos);
    auto reader = BlockBackend::open(options(path, true));
    REQUIRE_FALSE(reader.has_value());
    auto o = options(path, true);
    o.image.force_share = true;
    auto shared = BlockBackend::open(o);
    CHECK(shared.has_value());
    writer->reset();
    auto after = BlockBackend::open(options(path));
    CHECK(after.has_value());
}

TEST_CASE("backend: cache modes")
{
    // O_DIRECT needs a filesystem that supports it; tmpfs does not.
    TempDir dir(fs::exists("/var/tmp") ? "/var/tmp" : "/tmp");
    std::string path = dir.file("c.qcow2");
    qcow2::CreateOptions c;
    c.size = 1 << 20;
    REQUIRE(create_qcow2(path, c).has_value());
    for (auto mode : {CacheMode::Writeback, CacheMode::Writethrough, CacheMode::Unsafe, CacheMode::None,
                      CacheMode::Directsync}) {
        CAPTURE(cache_mode_name(mode));
        auto o = options(path);
        o.image.cache = mode;
        auto be = BlockBackend::open(o);
        if (!be && cache_direct(mode)) {
            MESSAGE("O_DIRECT unsupported here: " << be.error().message);
            continue;
        }
        REQUIRE(be.has_value());
        std::vector<uint8_t> data(1000, uint8_t(int(mode) + 1));
        REQUIRE((*be)->write(333, data).has_value());
        REQUIRE((*be)->flush().has_value());
        std::vector<uint8_t> back(1000);
        REQUIRE((*be)->read(333, back).has_value());
        CHECK(back == data);
        REQUIRE((*be)->close().has_value());
    }
    CHECK(parse_cache_mode("bogus").has_value() == false);
    CHECK(parse_aio("native").error().message.find("only aio=threads") != std::string::npos);
}

TEST_CASE("raw: preallocation off, falloc, full")
{
    TempDir dir;
    for (auto mode : {Preallocation::Off, Preallocation::Falloc, Preallocation::Full}) {
        std::string path = dir.file("p.raw");
        REQUIRE(create_raw(path, 1 << 20, mode).has_value());
        struct stat st{};
        REQUIRE(stat(path.c_str(), &st) == 0);
        CHECK(st.st_size == (1 << 20));
        if (mode == Preallocation::Off)
            CHECK(st.st_blocks * 512 < (1 << 20));
        else
            CHECK(st.st_blocks * 512 >= (1 << 20));
    }
    CHECK_FALSE(create_raw(dir.file("m.raw"), 4096, Preallocation::Metadata).has_value());
}
