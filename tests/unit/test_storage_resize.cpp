// Unit tests: changing qcow2 images in place — resize (grow, L1 growth,
// shrink, with snapshots and a longer backing file), make_empty, a new
// backing file name, amend (compat up and down with zero clusters and
// snapshots, lazy refcounts), measure.
#include "storage/backend.h"
#include "storage/qcow2/qcow2.h"

#include <doctest/doctest.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <random>

using namespace emu::storage;
namespace fs = std::filesystem;

namespace {

struct TempDir {
    fs::path path;
    TempDir()
    {
        char tmpl[] = "/tmp/emu-resize-test-XXXXXX";
        path = mkdtemp(tmpl);
    }
    ~TempDir() { fs::remove_all(path); }
    std::string file(const std::string& name) const { return (path / name).string(); }
};

std::unique_ptr<BlockDriver> open_rw(const std::string& path)
{
    ImageOptions o;
    o.filename = path;
    auto d = open_image(o);
    REQUIRE_MESSAGE(d.has_value(), (d ? "" : d.error().message));
    return std::move(*d);
}

void make_qcow2(const std::string& path, uint64_t size, uint32_t cluster, int version = 3,
                const std::string& backing = "")
{
    qcow2::CreateOptions o;
    o.size = size;
    o.cluster_size = cluster;
    o.version = version;
    o.backing_file = backing;
    o.backing_format = backing.empty() ? "" : "qcow2";
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
    REQUIRE_MESSAGE(r.has_value(), (r ? "" : r.error().message));
    for (const auto& m : r->messages)
        MESSAGE(m);
    CHECK(r->corruptions == 0);
    CHECK(r->leaks == 0);
}

void require_ok(const Result<void>& r)
{
    REQUIRE_MESSAGE(r.has_value(), (r ? "" : r.error().message));
}

std::vector<uint8_t> random_bytes(size_t n, unsigned seed)
{
    std::vector<uint8_t> v(n);
    std::mt19937 rng(seed);
    for (auto& b : v)
        b = uint8_t(rng() | 1);
    return v;
}

} // namespace

TEST_CASE("qcow2 resize: grow across L1 entries, shrink, grow again: old data never reappears")
{
    TempDir dir;
    for (uint32_t cluster : {512u, 65536u}) {
        CAPTURE(cluster);
        const std::string path = dir.file("r.qcow2");
        make_qcow2(path, 1 << 20, cluster);
        auto d = open_rw(path);
        auto data = random_bytes(1 << 20, cluster);
        require_ok(d->write(0, data));
        // 512-byte clusters: an L2 table covers 32 KiB, so 8 MiB needs a much larger L1 table.
        const uint64_t big = 8ull << 20;
        require_ok(d->resize(big, Preallocation::Off));
        CHECK(d->size() == big);
        auto all = read_all(*d);
        CHECK(std::memcmp(all.data(), data.data(), data.size()) == 0);
        CHECK(std::all_of(all.begin() + std::ptrdiff_t(data.size()), all.end(), [](uint8_t b) { return b == 0; }));
        require_ok(d->write(big - 4096, std::span<const uint8_t>(data).first(4096)));
        check_clean(*d);
        // Shrink to a size that ends inside a cluster, then grow: the tail reads as zeroes.
        const uint64_t small = 300 * 1024 + 512;
        require_ok(d->resize(small, Preallocation::Off));
        CHECK(read_all(*d) == std::vector<uint8_t>(data.begin(), data.begin() + small));
        check_clean(*d);
        require_ok(d->resize(1 << 20, Preallocation::Metadata));
        all = read_all(*d);
        CHECK(std::memcmp(all.data(), data.data(), small) == 0);
        CHECK(std::all_of(all.begin() + std::ptrdiff_t(small), all.end(), [](uint8_t b) { return b == 0; }));
        check_clean(*d);
        CHECK(d->resize(1000, Preallocation::Off).error().message == "The new size must be a multiple of 512");
        CHECK_FALSE(d->resize(512, Preallocation::Full).has_value());
        require_ok(d->close());
    }
}

TEST_CASE("qcow2 resize: snapshots keep their size; a longer backing file does not show through")
{
    TempDir dir;
    const std::string base = dir.file("base.qcow2"), top = dir.file("top.qcow2");
    make_qcow2(base, 4 << 20, 65536);
    auto pattern = random_bytes(4 << 20, 3);
    {
        auto b = open_rw(base);
        require_ok(b->write(0, pattern));
        require_ok(b->close());
    }
    make_qcow2(top, 1 << 20, 4096, 3, "base.qcow2");
    auto d = open_rw(top);
    SnapshotInfo sn;
    sn.name = "small";
    require_ok(d->snapshot_create(sn));
    require_ok(d->resize(3 << 20, Preallocation::Off));
    auto all = read_all(*d);
    CHECK(std::memcmp(all.data(), pattern.data(), 1 << 20) == 0);
    CHECK(std::all_of(all.begin() + (1 << 20), all.end(), [](uint8_t b) { return b == 0; }));
    check_clean(*d);
    require_ok(d->snapshot_goto("small"));
    CHECK(d->size() == (1u << 20));
    CHECK(read_all(*d) == std::vector<uint8_t>(pattern.begin(), pattern.begin() + (1 << 20)));
    check_clean(*d);
    require_ok(d->close());
}

TEST_CASE("qcow2 make_empty and set_backing_file")
{
    TempDir dir;
    const std::string base = dir.file("base.qcow2"), top = dir.file("top.qcow2"), other = dir.file("other.qcow2");
    make_qcow2(base, 1 << 20, 65536);
    make_qcow2(other, 1 << 20, 65536);
    make_qcow2(top, 1 << 20, 65536, 3, "base.qcow2");
    auto d = open_rw(top);
    require_ok(d->write(0, random_bytes(700000, 5)));
    require_ok(d->make_empty());
    CHECK(read_all(*d) == std::vector<uint8_t>(1 << 20, 0));
    check_clean(*d);
    CHECK(fs::file_size(top) <= 4 * 65536);
    require_ok(d->set_backing_file("other.qcow2", "qcow2"));
    require_ok(d->close());
    d.reset();
    d = open_rw(top);
    CHECK(d->info().backing_filename == "other.qcow2");
    require_ok(d->set_backing_file("", ""));
    require_ok(d->close());
    d.reset();
    d = open_rw(top);
    CHECK(d->backing() == nullptr);
    CHECK(d->info().backing_format.empty());
}

TEST_CASE("qcow2 amend: compat down and up keeps the contents of the image and its snapshots")
{
    TempDir dir;
    const std::string base = dir.file("base.qcow2"), img = dir.file("img.qcow2");
    make_qcow2(base, 1 << 20, 65536);
    auto pattern = random_bytes(1 << 20, 9);
    {
        auto b = open_rw(base);
        require_ok(b->write(0, pattern));
        require_ok(b->close());
    }
    make_qcow2(img, 1 << 20, 4096, 3, "base.qcow2");
    auto d = open_rw(img);
    auto* q = dynamic_cast<qcow2::Driver*>(d.get());
    REQUIRE(q);
    require_ok(d->write_zeroes(0, 8192, false));      // zero clusters over the backing file
    require_ok(d->write(65536, random_bytes(4096, 1)));
    require_ok(d->write_zeroes(65536, 4096, false));  // a zero cluster that keeps its allocation
    SnapshotInfo sn;
    sn.name = "s";
    require_ok(d->snapshot_create(sn));
    require_ok(d->write_zeroes(200000, 50000, false));
    auto before = read_all(*d);
    qcow2::AmendOptions down;
    down.version = 2;
    require_ok(q->amend(down));
    CHECK(q->header().version == 2);
    CHECK(read_all(*d) == before);
    check_clean(*d);
    qcow2::AmendOptions up;
    up.version = 3;
    up.lazy_refcounts = true;
    require_ok(q->amend(up));
    CHECK(q->header().version == 3);
    CHECK(d->info().qcow2->lazy_refcounts);
    require_ok(d->write(0, random_bytes(512, 2)));
    qcow2::AmendOptions lazy_off;
    lazy_off.lazy_refcounts = false;
    require_ok(q->amend(lazy_off));
    CHECK_FALSE(d->info().dirty);
    check_clean(*d);
    // The snapshot taken as version 3 is still there and still reads as it was.
    require_ok(d->snapshot_goto("s"));
    auto snap = read_all(*d);
    CHECK(std::all_of(snap.begin(), snap.begin() + 8192, [](uint8_t b) { return b == 0; }));
    CHECK(std::memcmp(snap.data() + 8192, pattern.data() + 8192, 65536 - 8192) == 0);
    // A snapshot of another disk size prevents a downgrade.
    qcow2::AmendOptions grow;
    grow.size = 2 << 20;
    require_ok(q->amend(grow));
    CHECK(q->amend(down).error().message == "Internal snapshots prevent downgrade of image");
    require_ok(d->close());
}

TEST_CASE("qcow2 measure: the fully allocated size is what a fully preallocated image takes")
{
    TempDir dir;
    for (uint32_t cluster : {512u, 4096u, 65536u}) {
        for (uint64_t size : {0ull, 1ull << 20, 5ull << 20}) {
            CAPTURE(cluster);
            CAPTURE(size);
            qcow2::CreateOptions o;
            o.size = size;
            o.cluster_size = cluster;
            auto m = qcow2::measure(o, 0);
            REQUIRE(m.has_value());
            CHECK(m->required <= m->fully_allocated);
            CHECK(m->fully_allocated - m->required == (size + cluster - 1) / cluster * cluster);
            o.preallocation = Preallocation::Full;
            const std::string path = dir.file("m.qcow2");
            REQUIRE(create_qcow2(path, o).has_value());
            CHECK(fs::file_size(path) <= m->fully_allocated);
        }
    }
}
