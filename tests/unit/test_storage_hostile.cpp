// Unit tests: hostile and damaged images give errors naming the structure,
// never a crash, a hang or a huge allocation.
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
        char tmpl[] = "/tmp/emu-storage-hostile-XXXXXX";
        path = mkdtemp(tmpl);
    }
    ~TempDir() { fs::remove_all(path); }
    std::string file(const std::string& name) const { return (path / name).string(); }
};

std::vector<uint8_t> slurp(const std::string& path)
{
    std::ifstream f(path, std::ios::binary);
    return std::vector<uint8_t>(std::istreambuf_iterator<char>(f), {});
}

void spit(const std::string& path, const std::vector<uint8_t>& data)
{
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f.write(reinterpret_cast<const char*>(data.data()), std::streamsize(data.size()));
}

// A small valid v3 image with data in its first two clusters.
std::vector<uint8_t> good_image(const TempDir& dir, bool compressed = false)
{
    std::string path = dir.file("good.qcow2");
    qcow2::CreateOptions o;
    o.size = 1 << 20;
    o.cluster_size = 65536;
    REQUIRE(create_qcow2(path, o).has_value());
    ImageOptions io;
    io.filename = path;
    auto d = open_image(io);
    REQUIRE(d.has_value());
    std::vector<uint8_t> data(65536 * 2);
    for (size_t i = 0; i < data.size(); i++)
        data[i] = uint8_t(i / 7);
    if (compressed) {
        auto* q = dynamic_cast<qcow2::Driver*>(d->get());
        REQUIRE(q->write_compressed(0, std::span<const uint8_t>(data.data(), 65536)).has_value());
    } else {
        REQUIRE((*d)->write(0, data).has_value());
    }
    REQUIRE((*d)->close().has_value());
    return slurp(path);
}

// Opens `image` (read-only) and reads all of it; returns the first error.
std::string open_and_read(const TempDir& dir, const std::vector<uint8_t>& image, const std::string& format = "qcow2")
{
    std::string path = dir.file("hostile.img");
    spit(path, image);
    ImageOptions io;
    io.filename = path;
    io.format = format;
    io.read_only = true;
    auto d = open_image(io);
    if (!d)
        return d.error().message;
    std::vector<uint8_t> buf(64 * 1024);
    for (uint64_t off = 0; off < (*d)->size(); off += buf.size()) {
        auto n = std::min<uint64_t>(buf.size(), (*d)->size() - off);
        if (auto r = (*d)->read(off, std::span<uint8_t>(buf.data(), n)); !r)
            return r.error().message;
    }
    auto st = (*d)->block_status(0, (*d)->size());
    if (!st)
        return st.error().message;
    auto chk = (*d)->check(CheckRepair::None);
    if (!chk)
        return chk.error().message;
    return "";
}

uint64_t l1_offset(const std::vector<uint8_t>& img)
{
    return load_be64(img.data() + 40);
}

} // namespace

TEST_CASE("hostile qcow2: header fields")
{
    TempDir dir;
    const auto good = good_image(dir);
    CHECK(open_and_read(dir, good) == "");

    SUBCASE("truncated file")
    {
        std::vector<uint8_t> img(good.begin(), good.begin() + 50);
        CHECK(open_and_read(dir, img).find("truncated") != std::string::npos);
    }
    SUBCASE("cluster_bits 30")
    {
        auto img = good;
        store_be32(img.data() + 20, 30);
        CHECK(open_and_read(dir, img).find("cluster_bits 30 is out of range") != std::string::npos);
    }
    SUBCASE("L1 table beyond the end of the file")
    {
        auto img = good;
        store_be64(img.data() + 40, 0x100000000ull);
        CHECK(open_and_read(dir, img).find("L1 table") != std::string::npos);
    }
    SUBCASE("huge l1_size")
    {
        auto img = good;
        store_be32(img.data() + 36, 0x40000000);
        CHECK(open_and_read(dir, img).find("L1 table of 1073741824 entries is too large") != std::string::npos);
    }
    SUBCASE("L1 table too small for the virtual size")
    {
        auto img = good;
        store_be64(img.data() + 24, 1ull << 40);
        CHECK(open_and_read(dir, img).find("too small") != std::string::npos);
    }
    SUBCASE("refcount table overlapping the header")
    {
        auto img = good;
        store_be64(img.data() + 48, 0);
        CHECK(open_and_read(dir, img).find("refcount table overlaps the header") != std::string::npos);
    }
    SUBCASE("refcount table beyond the end of the file")
    {
        auto img = good;
        store_be32(img.data() + 56, 100);
        CHECK(open_and_read(dir, img).find("refcount table") != std::string::npos);
    }
    SUBCASE("unknown incompatible feature bit")
    {
        auto img = good;
        store_be64(img.data() + 72, 1ull << 5);
        CHECK(open_and_read(dir, img) == "Could not open '" + dir.file("hostile.img") +
                                             "': qcow2: unsupported incompatible feature bit 5");
    }
    SUBCASE("external data file bit")
    {
        auto img = good;
        store_be64(img.data() + 72, 1ull << 2);
        CHECK(open_and_read(dir, img).find("unsupported incompatible feature bit 2") != std::string::npos);
    }
    SUBCASE("header_length larger than the cluster")
    {
        auto img = good;
        store_be32(img.data() + 100, 1 << 20);
        CHECK(open_and_read(dir, img).find("header_length") != std::string::npos);
    }
    SUBCASE("snapshot table beyond the end of the file")
    {
        auto img = good;
        store_be32(img.data() + 60, 3);
        store_be64(img.data() + 64, 1ull << 40);
        CHECK(open_and_read(dir, img).find("snapshot table") != std::string::npos);
    }
    SUBCASE("backing name outside the first cluster")
    {
        auto img = good;
        store_be64(img.data() + 8, 65530);
        store_be32(img.data() + 16, 100);
        CHECK(open_and_read(dir, img).find("backing file name") != std::string::npos);
    }
    SUBCASE("encrypted image")
    {
        auto img = good;
        store_be32(img.data() + 32, 1);
        CHECK(open_and_read(dir, img).find("encrypted") != std::string::npos);
    }
}

TEST_CASE("hostile qcow2: tables and entries")
{
    TempDir dir;
    const auto good = good_image(dir);
    const uint64_t l1 = l1_offset(good);
    const uint64_t l2 = load_be64(good.data() + l1) & qcow2::k_l1_offset_mask;
    REQUIRE(l2 != 0);

    SUBCASE("L1 entry pointing beyond the end of the file")
    {
        auto img = good;
        store_be64(img.data() + l1, qcow2::k_entry_copied | (1ull << 40));
        CHECK(open_and_read(dir, img).find("L2 table offset") != std::string::npos);
    }
    SUBCASE("L1 entry pointing into the header")
    {
        auto img = good;
        store_be64(img.data() + l1, qcow2::k_entry_copied | 512);
        CHECK(open_and_read(dir, img).find("L2 table") != std::string::npos);
    }
    SUBCASE("L2 entry with reserved bits")
    {
        auto img = good;
        store_be64(img.data() + l2, load_be64(img.data() + l2) | 0x2);
        CHECK(open_and_read(dir, img).find("reserved bits") != std::string::npos);
    }
    SUBCASE("L2 entry pointing into the header")
    {
        auto img = good;
        store_be64(img.data() + l2, qcow2::k_entry_copied | 0);
        store_be64(img.data() + l2, qcow2::k_entry_copied | 0x200);
        CHECK(open_and_read(dir, img).find("L2 entry") != std::string::npos);
    }
    SUBCASE("data cluster beyond the end of the file reads as zeroes but check reports it")
    {
        auto img = good;
        store_be64(img.data() + l2, qcow2::k_entry_copied | (1ull << 40));
        CHECK(open_and_read(dir, img) == "");
    }
}

TEST_CASE("hostile qcow2: compressed cluster descriptor past the end of the file")
{
    TempDir dir;
    auto img = good_image(dir, true);
    const uint64_t l1 = l1_offset(img);
    const uint64_t l2 = load_be64(img.data() + l1) & qcow2::k_l1_offset_mask;
    uint64_t entry = load_be64(img.data() + l2);
    REQUIRE((entry & qcow2::k_entry_compressed));
    CHECK(open_and_read(dir, img) == "");
    store_be64(img.data() + l2, qcow2::encode_compressed(img.size() + 4096, 1000, 16));
    CHECK(open_and_read(dir, img).find("compressed cluster descriptor") != std::string::npos);
    // Garbage compressed data: a decode error, not a crash.
    store_be64(img.data() + l2, qcow2::encode_compressed(65536 * 3, 2000, 16));
    auto err = open_and_read(dir, img);
    CHECK(err.find("compressed cluster") != std::string::npos);
}

TEST_CASE("hostile qcow2: loops in backing chains")
{
    TempDir dir;
    qcow2::CreateOptions o;
    o.size = 1 << 20;
    o.backing_file = "b.qcow2";
    o.backing_format = "qcow2";
    REQUIRE(create_qcow2(dir.file("a.qcow2"), o).has_value());
    o.backing_file = "a.qcow2";
    REQUIRE(create_qcow2(dir.file("b.qcow2"), o).has_value());
    ImageOptions io;
    io.filename = dir.file("a.qcow2");
    io.read_only = true;
    auto d = open_image(io);
    REQUIRE_FALSE(d.has_value());
    CHECK(d.error().message.find("backing chain loop") != std::string::npos);
    o.backing_file = "self.qcow2";
    REQUIRE(create_qcow2(dir.file("self.qcow2"), o).has_value());
    io.filename = dir.file("self.qcow2");
    d = open_image(io);
    REQUIRE_FALSE(d.has_value());
    CHECK(d.error().message.find("backing chain loop") != std::string::npos);
}

TEST_CASE("hostile qcow2: corrupt bit refuses read-write, writes never touch metadata")
{
    TempDir dir;
    auto img = good_image(dir);
    const uint64_t l1 = l1_offset(img);
    const uint64_t l2 = load_be64(img.data() + l1) & qcow2::k_l1_offset_mask;
    // Point the first data cluster at the L1 table: a write there must be refused.
    store_be64(img.data() + l2, qcow2::k_entry_copied | l1);
    std::string path = dir.file("meta.qcow2");
    spit(path, img);
    {
        ImageOptions io;
        io.filename = path;
        auto d = open_image(io);
        REQUIRE(d.has_value());
        std::vector<uint8_t> data(512, 0xee);
        auto r = (*d)->write(0, data);
        REQUIRE_FALSE(r.has_value());
        CHECK(r.error().message.find("points to metadata") != std::string::npos);
    }
    auto after = slurp(path);
    CHECK(std::memcmp(after.data() + l1, img.data() + l1, 512) == 0);
    CHECK((load_be64(after.data() + 72) & qcow2::k_incompat_corrupt));
    ImageOptions io;
    io.filename = path;
    auto d = open_image(io);
    REQUIRE_FALSE(d.has_value());
    CHECK(d.error().message.find("corrupt") != std::string::npos);
}

TEST_CASE("hostile qcow2: random header and table mutations never crash")
{
    TempDir dir;
    const auto good = good_image(dir, true);
    std::mt19937 rng(1234);
    int opened = 0;
    for (int iter = 0; iter < 400; iter++) {
        auto img = good;
        int flips = 1 + int(rng() % 4);
        for (int k = 0; k < flips; k++) {
            // Mostly the header; sometimes L1/L2/refcount tables.
            size_t pos = (rng() % 3) ? rng() % 112 : rng() % img.size();
            img[pos] = uint8_t(rng());
        }
        if (open_and_read(dir, img).empty())
            opened++;
    }
    MESSAGE("mutated images that still opened and read: " << opened);
}

TEST_CASE("refused formats are named")
{
    TempDir dir;
    std::vector<uint8_t> qed(4096, 0);
    std::memcpy(qed.data(), "QED\0", 4);
    CHECK(open_and_read(dir, qed, "").find("image format 'qed' is not supported yet") != std::string::npos);
    std::vector<uint8_t> vmdk(4096, 0);
    std::memcpy(vmdk.data(), "KDMV", 4);
    CHECK(open_and_read(dir, vmdk, "").find("'vmdk'") != std::string::npos);
    std::vector<uint8_t> qcow1(4096, 0);
    store_be32(qcow1.data(), qcow2::k_magic);
    store_be32(qcow1.data() + 4, 1);
    CHECK(open_and_read(dir, qcow1, "").find("'qcow'") != std::string::npos);
    CHECK(open_and_read(dir, qed, "vdi").find("'vdi' is not supported yet") != std::string::npos);
    CHECK(open_and_read(dir, qed, "nosuch").find("Unknown driver 'nosuch'") != std::string::npos);
}

TEST_CASE("hostile qcow2: a zero refcount on a metadata cluster never lets a write overwrite it")
{
    TempDir dir;
    auto img = good_image(dir);
    const uint64_t l1 = l1_offset(img);
    const uint64_t reftable = load_be64(img.data() + 48);
    const uint64_t block = load_be64(img.data() + reftable);
    // Refcount of the L1 table's cluster (16-bit entries) set to 0: it looks free.
    store_be16(img.data() + block + (l1 / 65536) * 2, 0);
    std::string path = dir.file("free-l1.qcow2");
    spit(path, img);
    {
        ImageOptions io;
        io.filename = path;
        auto d = open_image(io);
        REQUIRE(d.has_value());
        std::vector<uint8_t> data(65536, 0xab);
        auto r = (*d)->write(512 * 1024, data); // needs a new cluster
        REQUIRE_FALSE(r.has_value());
        CHECK(r.error().message.find("holds metadata") != std::string::npos);
    }
    auto after = slurp(path);
    CHECK(std::memcmp(after.data() + l1, img.data() + l1, 64) == 0);
}
