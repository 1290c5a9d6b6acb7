// Unit tests: qcow2 read/write round trips, backing chains, compression,
// zero clusters, refcount table growth, lazy refcounts, check and repair.
#include "storage/backend.h"
#include "storage/endian.h"
#include "storage/qcow2/qcow2.h"

#include <doctest/doctest.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

using namespace emu::storage;
namespace fs = std::filesystem;

namespace {

struct TempDir {
    fs::path path;
    TempDir()
    {
        char tmpl[] = "/tmp/emu-storage-test-XXXXXX";
        path = mkdtemp(tmpl);
    }
    ~TempDir() { fs::remove_all(path); }
    std::string file(const std::string& name) const { return (path / name).string(); }
};

std::unique_ptr<BlockDriver> open_rw(const std::string& path, const std::string& format = "")
{
    ImageOptions o;
    o.filename = path;
    o.format = format;
    auto d = open_image(o);
    REQUIRE_MESSAGE(d.has_value(), (d ? "" : d.error().message));
    return std::move(*d);
}

std::unique_ptr<BlockDriver> open_ro(const std::string& path)
{
    ImageOptions o;
    o.filename = path;
    o.read_only = true;
    auto d = open_image(o);
    REQUIRE_MESSAGE(d.has_value(), (d ? "" : d.error().message));
    return std::move(*d);
}

void make_qcow2(const std::string& path, uint64_t size, uint32_t cluster = 65536, int version = 3,
                int refcount_bits = 16, const std::string& backing = "", const std::string& backing_fmt = "")
{
    qcow2::CreateOptions o;
    o.size = size;
    o.cluster_size = cluster;
    o.version = version;
    o.refcount_bits = refcount_bits;
    o.backing_file = backing;
    o.backing_format = backing_fmt;
    auto r = create_qcow2(path, o);
    REQUIRE_MESSAGE(r.has_value(), (r ? "" : r.error().message));
}

std::vector<uint8_t> read_all(BlockDriver& d)
{
    std::vector<uint8_t> out(d.size());
    auto r = d.read(0, out);
    REQUIRE_MESSAGE(r.has_value(), (r ? "" : r.error().message));
    return out;
}

void check_clean(BlockDriver& d)
{
    auto r = d.check(CheckRepair::None);
    REQUIRE(r.has_value());
    for (const auto& m : r->messages)
        MESSAGE(m);
    CHECK(r->corruptions == 0);
    CHECK(r->leaks == 0);
    CHECK(r->check_errors == 0);
}

// Random writes at odd offsets and lengths, mirrored into a shadow buffer.
void random_writes(BlockDriver& d, std::vector<uint8_t>& shadow, unsigned seed, int count, uint64_t max_len)
{
    std::mt19937_64 rng(seed);
    for (int i = 0; i < count; i++) {
        uint64_t len = 1 + rng() % std::min<uint64_t>(max_len, shadow.size() / 2);
        uint64_t off = rng() % (shadow.size() - len);
        std::vector<uint8_t> data(len);
        for (auto& b : data)
            b = uint8_t(rng());
        auto r = d.write(off, data);
        REQUIRE_MESSAGE(r.has_value(), (r ? "" : r.error().message));
        std::memcpy(shadow.data() + off, data.data(), len);
    }
}

} // namespace

TEST_CASE("qcow2: round trips at odd offsets across cluster boundaries")
{
    TempDir dir;
    for (uint32_t cluster : {512u, 4096u, 65536u, 2u << 20}) {
        for (int version : {2, 3}) {
            CAPTURE(cluster);
            CAPTURE(version);
            std::string path = dir.file("rt.qcow2");
            const uint64_t size = 3 * 1024 * 1024 + 512;
            make_qcow2(path, size, cluster, version);
            std::vector<uint8_t> shadow(size, 0);
            {
                auto d = open_rw(path);
                CHECK(d->format_name() == "qcow2");
                CHECK(read_all(*d) == shadow);
                random_writes(*d, shadow, cluster + version, 60, 3 * cluster + 777);
                CHECK(read_all(*d) == shadow);
                // Unaligned reads straddling clusters.
                std::vector<uint8_t> part(std::min<uint64_t>(cluster + 3, size - cluster + 1));
                REQUIRE(d->read(cluster - 1, part).has_value());
                CHECK(std::memcmp(part.data(), shadow.data() + cluster - 1, part.size()) == 0);
                REQUIRE(d->close().has_value());
            }
            auto d = open_rw(path);
            CHECK(read_all(*d) == shadow);
            check_clean(*d);
            REQUIRE(d->close().has_value());
        }
    }
}

TEST_CASE("qcow2: refcount widths 1..64 and refcount table growth")
{
    TempDir dir;
    for (int bits : {1, 2, 4, 8, 16, 32, 64}) {
        CAPTURE(bits);
        std::string path = dir.file("rc.qcow2");
        // 512-byte clusters with wide refcounts: a block covers few clusters and
        // one table cluster covers little, so 6 MiB of data grows the table.
        const uint64_t size = 6 * 1024 * 1024;
        make_qcow2(path, size, 512, 3, bits);
        std::vector<uint8_t> shadow(size);
        std::mt19937 rng(bits);
        for (auto& b : shadow)
            b = uint8_t(rng() | 1);
        auto d = open_rw(path);
        REQUIRE(d->write(0, shadow).has_value());
        CHECK(read_all(*d) == shadow);
        check_clean(*d);
        auto* q = dynamic_cast<qcow2::Driver*>(d.get());
        REQUIRE(q);
        if (bits == 64)
            CHECK(q->header().refcount_table_clusters > 1);
        REQUIRE(d->close().has_value());
        d.reset();
        auto again = open_ro(path);
        CHECK(read_all(*again) == shadow);
    }
}

TEST_CASE("qcow2: backing chains, copy-on-write and relative backing names")
{
    TempDir dir;
    fs::create_directory(dir.path / "sub");
    const uint64_t size = 1024 * 1024;
    std::string base = dir.file("base.qcow2");
    make_qcow2(base, size, 4096);
    std::vector<uint8_t> shadow(size, 0);
    {
        auto d = open_rw(base);
        random_writes(*d, shadow, 7, 30, 20000);
        REQUIRE(d->close().has_value());
    }
    // Overlay in a subdirectory naming its backing file relative to itself.
    std::string mid = dir.file("sub/mid.qcow2");
    make_qcow2(mid, size, 65536, 3, 16, "../base.qcow2", "qcow2");
    std::string top = dir.file("sub/top.qcow2");
    make_qcow2(top, size, 512, 2, 16, "mid.qcow2", "qcow2");
    {
        auto d = open_rw(top);
        REQUIRE(d->backing());
        REQUIRE(d->backing()->backing());
        CHECK(read_all(*d) == shadow);
        random_writes(*d, shadow, 8, 40, 3000); // partial clusters: copy-on-write from the chain
        CHECK(read_all(*d) == shadow);
        auto info = d->info();
        CHECK(info.backing_filename == "mid.qcow2");
        CHECK(info.backing_format == "qcow2");
        REQUIRE(d->close().has_value());
    }
    auto d = open_ro(top);
    CHECK(read_all(*d) == shadow);
    // The base is untouched by writes to the top.
    auto b = open_ro(base);
    CHECK(read_all(*b) != shadow);
}

TEST_CASE("qcow2: compressed clusters (zlib and zstd) and overwrites of them")
{
    TempDir dir;
    for (auto type : {qcow2::CompressionType::Zlib, qcow2::CompressionType::Zstd}) {
        std::string path = dir.file("c.qcow2");
        qcow2::CreateOptions o;
        o.size = 1024 * 1024;
        o.cluster_size = 65536;
        o.compression_type = type;
        REQUIRE(create_qcow2(path, o).has_value());
        std::vector<uint8_t> shadow(o.size, 0);
        auto d = open_rw(path);
        auto* q = dynamic_cast<qcow2::Driver*>(d.get());
        REQUIRE(q);
        for (uint64_t c = 0; c < 16; c++) {
            std::vector<uint8_t> cluster(65536);
            for (size_t i = 0; i < cluster.size(); i++)
                cluster[i] = uint8_t((i / 100) * (c + 1));
            REQUIRE(q->write_compressed(c * 65536, cluster).has_value());
            std::memcpy(shadow.data() + c * 65536, cluster.data(), cluster.size());
        }
        CHECK(read_all(*d) == shadow);
        check_clean(*d);
        random_writes(*d, shadow, 3, 20, 5000); // partial writes over compressed data
        CHECK(read_all(*d) == shadow);
        check_clean(*d);
        REQUIRE(d->close().has_value());
        d.reset();
        auto again = open_ro(path);
        CHECK(read_all(*again) == shadow);
    }
}

TEST_CASE("qcow2: write_zeroes and discard")
{
    TempDir dir;
    std::string base = dir.file("zb.qcow2");
    make_qcow2(base, 1 << 20, 4096);
    {
        auto d = open_rw(base);
        std::vector<uint8_t> ones(1 << 20, 1);
        REQUIRE(d->write(0, ones).has_value());
        REQUIRE(d->close().has_value());
    }
    for (int version : {2, 3}) {
        CAPTURE(version);
        std::string path = dir.file("z.qcow2");
        make_qcow2(path, 1 << 20, 4096, version, 16, "zb.qcow2", "qcow2");
        auto d = open_rw(path);
        std::vector<uint8_t> shadow(1 << 20, 1);
        REQUIRE(d->write_zeroes(1000, 20000, false).has_value());
        std::memset(shadow.data() + 1000, 0, 20000);
        REQUIRE(d->write_zeroes(65536, 65536, true).has_value());
        std::memset(shadow.data() + 65536, 0, 65536);
        CHECK(read_all(*d) == shadow);
        auto st = d->block_status(65536, 65536);
        REQUIRE(st.has_value());
        if (version == 3) { // version 2 has no zero flag: over a backing file it stores zeroes
            CHECK(st->zero);
            CHECK_FALSE(st->data);
        }
        REQUIRE(d->discard(0, 1 << 20).has_value()); // contents unspecified afterwards
        check_clean(*d);
        REQUIRE(d->close().has_value());
    }
}

TEST_CASE("qcow2: lazy refcounts set the dirty bit, close clears it, a dirty image is repaired")
{
    TempDir dir;
    std::string path = dir.file("lazy.qcow2");
    qcow2::CreateOptions o;
    o.size = 1 << 20;
    o.lazy_refcounts = true;
    REQUIRE(create_qcow2(path, o).has_value());
    std::vector<uint8_t> data(300000, 0x5a);
    {
        auto d = open_rw(path);
        REQUIRE(d->write(12345, data).has_value());
        REQUIRE(d->flush().has_value());
        CHECK(d->info().dirty);
        // Snapshot the file while dirty, as after a crash.
        fs::copy_file(path, dir.file("crashed.qcow2"));
        REQUIRE(d->close().has_value());
        CHECK_FALSE(d->info().dirty);
    }
    CHECK_FALSE(open_ro(path)->info().dirty);
    CHECK(open_ro(dir.file("crashed.qcow2"))->info().dirty);
    auto d = open_rw(dir.file("crashed.qcow2")); // repairs the refcounts
    CHECK_FALSE(d->info().dirty);
    check_clean(*d);
    std::vector<uint8_t> back(data.size());
    REQUIRE(d->read(12345, back).has_value());
    CHECK(back == data);
}

TEST_CASE("qcow2: check finds a planted leak and -r leaks repairs it")
{
    TempDir dir;
    std::string path = dir.file("leak.qcow2");
    make_qcow2(path, 1 << 20, 65536);
    {
        auto d = open_rw(path);
        std::vector<uint8_t> data(70000, 3);
        REQUIRE(d->write(0, data).has_value());
        REQUIRE(d->close().has_value());
    }
    // Append a cluster and give it refcount 1 without referencing it.
    {
        std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
        std::vector<uint8_t> head(112);
        f.read(reinterpret_cast<char*>(head.data()), 112);
        uint64_t reftable = load_be64(head.data() + 48);
        f.seekg(0, std::ios::end);
        uint64_t end = uint64_t(f.tellg());
        uint64_t cluster = (end + 65535) / 65536;
        std::vector<char> junk(65536, 'x');
        f.seekp(cluster * 65536);
        f.write(junk.data(), junk.size());
        uint8_t raw[8];
        f.seekg(reftable);
        f.read(reinterpret_cast<char*>(raw), 8);
        uint64_t block = load_be64(raw);
        uint8_t one[2] = {0, 1};
        f.seekp(block + cluster * 2);
        f.write(reinterpret_cast<char*>(one), 2);
    }
    {
        auto d = open_ro(path);
        auto r = d->check(CheckRepair::None);
        REQUIRE(r.has_value());
        CHECK(r->leaks == 1);
        CHECK(r->corruptions == 0);
        REQUIRE(r->messages.size() == 1);
        CHECK(r->messages[0].find("Leaked cluster") == 0);
    }
    auto d = open_rw(path);
    auto r = d->check(CheckRepair::Leaks);
    REQUIRE(r.has_value());
    CHECK(r->leaks_fixed == 1);
    check_clean(*d);
}

TEST_CASE("qcow2: preallocation modes")
{
    TempDir dir;
    for (auto mode : {Preallocation::Metadata, Preallocation::Falloc, Preallocation::Full}) {
        std::string path = dir.file("p.qcow2");
        qcow2::CreateOptions o;
        o.size = 1 << 20;
        o.cluster_size = 65536;
        o.preallocation = mode;
        REQUIRE(create_qcow2(path, o).has_value());
        auto d = open_rw(path);
        auto st = d->block_status(0, 1 << 20);
        REQUIRE(st.has_value());
        CHECK(st->allocated);
        CHECK(st->data);
        CHECK(st->length == (1u << 20));
        CHECK(read_all(*d) == std::vector<uint8_t>(1 << 20, 0));
        check_clean(*d);
    }
}

TEST_CASE("qcow2: tiny metadata caches evict and write back in order")
{
    TempDir dir;
    std::string path = dir.file("tiny.qcow2");
    const uint64_t size = 2 * 1024 * 1024;
    make_qcow2(path, size, 512, 3, 16);
    std::vector<uint8_t> shadow(size, 0);
    {
        ImageOptions o;
        o.filename = path;
        o.l2_cache_bytes = 4 * 512;
        o.refcount_cache_bytes = 4 * 512;
        auto d = open_image(o);
        REQUIRE(d.has_value());
        random_writes(**d, shadow, 99, 200, 4000);
        CHECK(read_all(**d) == shadow);
        check_clean(**d);
        REQUIRE((*d)->close().has_value());
    }
    auto d = open_ro(path);
    CHECK(read_all(*d) == shadow);
    check_clean(*d);
}
