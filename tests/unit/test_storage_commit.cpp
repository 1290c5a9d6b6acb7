// Unit tests: committing over a backing chain (CommitCopier), the graph
// changes after a commit (unlink_layers, make_root), BlockBackend write
// tracking and root replacement, reopen with image locks.
#include "storage/backend.h"
#include "storage/commit.h"

#include <doctest/doctest.h>

#include <cstdlib>
#include <filesystem>
#include <thread>

using namespace emu::storage;
namespace fs = std::filesystem;

namespace {

struct TempDir {
    fs::path path;
    TempDir()
    {
        std::string tmpl = "/tmp/emu-storage-commit-XXXXXX";
        path = mkdtemp(tmpl.data());
    }
    ~TempDir() { fs::remove_all(path); }
    std::string file(const std::string& name) const { return (path / name).string(); }
};

constexpr uint64_t k_size = 8 << 20;
constexpr uint64_t k_cluster = 64 * 1024;

// base.qcow2 <- mid.qcow2 <- top.qcow2, each writing its own clusters.
struct Chain {
    TempDir dir;
    std::string base = dir.file("base.qcow2"), mid = dir.file("mid.qcow2"), top = dir.file("top.qcow2");
    Chain()
    {
        qcow2::CreateOptions c;
        c.size = k_size;
        REQUIRE(create_qcow2(base, c).has_value());
        c.backing_file = base;
        c.backing_format = "qcow2";
        REQUIRE(create_qcow2(mid, c).has_value());
        c.backing_file = mid;
        REQUIRE(create_qcow2(top, c).has_value());
        fill(base, {0, 1, 2, 3}, 0xb0);
        fill(mid, {1, 5}, 0x30);
        fill(top, {2, 6}, 0x70);
    }
    static void fill(const std::string& path, std::initializer_list<int> clusters, uint8_t value)
    {
        ImageOptions o;
        o.filename = path;
        o.open_backing = false;
        auto d = open_image(o);
        REQUIRE(d.has_value());
        for (int c : clusters) {
            std::vector<uint8_t> buf(k_cluster, uint8_t(value + c));
            REQUIRE((*d)->write(uint64_t(c) * k_cluster, buf).has_value());
        }
        REQUIRE((*d)->close().has_value());
    }
};

uint8_t byte_at(BlockDriver& d, uint64_t offset)
{
    uint8_t b = 0;
    REQUIRE(read_clamped(d, offset, std::span<uint8_t>(&b, 1)).has_value());
    return b;
}

std::unique_ptr<BlockDriver> open_chain(const std::string& top, bool read_only = false)
{
    ImageOptions o;
    o.filename = top;
    o.read_only = read_only;
    auto d = open_image(o);
    if (!d)
        FAIL(d.error().message);
    return std::move(*d);
}

} // namespace

TEST_CASE("commit: an intermediate commit copies top and mid into base, then unlinks them")
{
    Chain ch;
    auto root = open_chain(ch.top);
    BlockDriver* mid = root->backing();
    BlockDriver* base = find_backing_image(*root, ch.base);
    REQUIRE(base);
    CHECK(find_backing_image(*root, ch.mid) == mid);
    CHECK(chain_bottom(*root) == base);
    CHECK(overlay_of(*root, *base) == mid);
    std::vector<uint8_t> before;
    for (int c = 0; c < 8; c++)
        before.push_back(byte_at(*root, uint64_t(c) * k_cluster + 7));

    // Commit mid (top stays): only mid's clusters 1 and 5 go down.
    REQUIRE(base->reopen(false).has_value());
    CommitCopier copier(*mid, *base, k_cluster);
    REQUIRE(copier.prepare().has_value());
    uint64_t copied = 0;
    for (uint64_t off = 0; off < copier.size();) {
        auto run = copier.step(off);
        REQUIRE(run.has_value());
        REQUIRE(run->length > 0);
        if (run->copied)
            copied += run->length;
        off += run->length;
    }
    CHECK(copied == 2 * k_cluster);
    CHECK(byte_at(*base, 1 * k_cluster) == 0x31);
    CHECK(byte_at(*base, 5 * k_cluster) == 0x35);
    CHECK(byte_at(*base, 2 * k_cluster) == 0xb2); // top's cluster is not mid's business

    REQUIRE(root->set_backing_file(ch.base, "qcow2").has_value());
    auto removed = unlink_layers(*root, *base);
    REQUIRE(removed.has_value());
    CHECK(root->backing() == base);
    CHECK((*removed)->filename() == ch.mid);
    CHECK((*removed)->backing() == nullptr);
    REQUIRE(base->reopen(true).has_value());
    for (int c = 0; c < 8; c++)
        CHECK(byte_at(*root, uint64_t(c) * k_cluster + 7) == before[size_t(c)]);
    REQUIRE((*removed)->close().has_value());
    REQUIRE(root->close().has_value());
    removed->reset();
    root.reset(); // a closed driver still holds its file and lock

    // The header names the base now: a fresh open sees two layers.
    auto again = open_chain(ch.top, true);
    REQUIRE(again->backing());
    CHECK(again->backing()->filename() == ch.base);
    CHECK(again->backing()->backing() == nullptr);
    CHECK(byte_at(*again, 5 * k_cluster) == 0x35);
}

TEST_CASE("commit: an active commit into the bottom, then base becomes the root")
{
    Chain ch;
    std::unique_ptr<BlockDriver> root = open_chain(ch.top);
    BlockDriver* base = chain_bottom(*root);
    REQUIRE(base->reopen(false).has_value());
    CommitCopier copier(*root, *base);
    REQUIRE(copier.prepare().has_value());
    for (uint64_t off = 0; off < copier.size();) {
        auto run = copier.step(off);
        REQUIRE(run.has_value());
        off += run->length;
    }
    // copy() writes a range whatever decides it, zeroes as zeroes.
    std::vector<uint8_t> zeroes(k_cluster, 0);
    REQUIRE(root->write(7 * k_cluster, zeroes).has_value());
    REQUIRE(copier.copy(7 * k_cluster, k_cluster).has_value());
    auto old = make_root(root, *base);
    REQUIRE(old.has_value());
    CHECK(root.get() == base);
    CHECK(root->backing() == nullptr);
    const uint8_t want[8] = {0xb0, 0x31, 0x72, 0xb3, 0, 0x35, 0x76, 0};
    for (int c = 0; c < 8; c++)
        CHECK(byte_at(*root, uint64_t(c) * k_cluster + 100) == want[c]);
    REQUIRE((*old)->close().has_value());
    REQUIRE(root->close().has_value());
    old->reset();
    root.reset();
    // Not below: an error, the chain unchanged.
    auto lone = open_chain(ch.base, true);
    std::unique_ptr<BlockDriver> other = open_chain(ch.top, true);
    CHECK_FALSE(make_root(other, *lone).has_value());
    CHECK(other->filename() == ch.top);
}

TEST_CASE("backend: write tracking marks what writes, zero writes and discards touch")
{
    TempDir dir;
    std::string path = dir.file("t.qcow2");
    qcow2::CreateOptions c;
    c.size = k_size;
    REQUIRE(create_qcow2(path, c).has_value());
    BackendOptions o;
    o.image.filename = path;
    o.discard = DiscardMode::Unmap;
    auto be = BlockBackend::open(o);
    REQUIRE(be.has_value());
    std::vector<uint8_t> buf(4096, 0x5a);
    REQUIRE((*be)->write(0, buf).has_value()); // before tracking: not marked
    (*be)->start_write_tracking(k_cluster);
    REQUIRE((*be)->write(k_cluster - 512, buf).has_value()); // straddles chunks 0 and 1
    REQUIRE((*be)->write_zeroes(4 * k_cluster, k_cluster).has_value());
    REQUIRE((*be)->discard(6 * k_cluster + 512, 512).has_value());
    std::atomic<int> done{0};
    (*be)->write_async(2 * k_cluster, buf, [&](Result<void> r) { done += r.has_value(); });
    (*be)->drain();
    CHECK(done == 1);
    auto ranges = (*be)->take_written();
    using R = std::pair<uint64_t, uint64_t>;
    CHECK(ranges == std::vector<R>{{0, 3 * k_cluster}, {4 * k_cluster, k_cluster}, {6 * k_cluster, k_cluster}});
    CHECK((*be)->take_written().empty()); // handed out once
    REQUIRE((*be)->write(0, buf).has_value());
    // take_written() inside locked(): the lock is recursive.
    auto inside = (*be)->locked([&](BlockDriver&) { return (*be)->take_written(); });
    CHECK(inside == std::vector<R>{{0, k_cluster}});
    (*be)->stop_write_tracking();
    REQUIRE((*be)->write(0, buf).has_value());
    CHECK((*be)->take_written().empty());
}

TEST_CASE("backend: with_root puts an overlay on top; size and read-only follow the root")
{
    TempDir dir;
    std::string base = dir.file("b.qcow2"), over = dir.file("o.qcow2");
    qcow2::CreateOptions c;
    c.size = k_size;
    REQUIRE(create_qcow2(base, c).has_value());
    c.size = 2 * k_size;
    c.backing_file = base;
    REQUIRE(create_qcow2(over, c).has_value());
    BackendOptions o;
    o.image.filename = base;
    auto be = BlockBackend::open(o);
    REQUIRE(be.has_value());
    std::vector<uint8_t> buf(512, 0x11);
    REQUIRE((*be)->write(0, buf).has_value());
    CHECK((*be)->size() == k_size);
    ImageOptions io;
    io.filename = over;
    io.open_backing = false;
    auto overlay = open_image(io);
    REQUIRE(overlay.has_value());
    auto ok = (*be)->with_root([&](std::unique_ptr<BlockDriver>& root) -> Result<void> {
        if (auto r = root->reopen(true); !r)
            return r;
        if (auto r = (*overlay)->attach_backing(std::move(root)); !r)
            return r;
        root = std::move(*overlay);
        return {};
    });
    REQUIRE(ok.has_value());
    CHECK((*be)->size() == 2 * k_size);
    CHECK((*be)->driver().filename() == over);
    CHECK((*be)->driver().backing()->read_only());
    std::vector<uint8_t> back(512);
    REQUIRE((*be)->read(0, back).has_value());
    CHECK(back == buf);
    std::vector<uint8_t> buf2(512, 0x22);
    REQUIRE((*be)->write(0, buf2).has_value());
    REQUIRE((*be)->close().has_value());
    be->reset();
    // The base kept its data; the overlay holds the new one.
    auto b = open_chain(base, true);
    CHECK(byte_at(*b, 0) == 0x11);
    auto t = open_chain(over, true);
    CHECK(byte_at(*t, 0) == 0x22);
}

TEST_CASE("reopen: the image lock follows the access mode, and a refused reopen keeps the old one")
{
    TempDir dir;
    std::string path = dir.file("l.qcow2");
    qcow2::CreateOptions c;
    c.size = k_size;
    REQUIRE(create_qcow2(path, c).has_value());
    auto writer = open_chain(path);
    ImageOptions ro;
    ro.filename = path;
    ro.read_only = true;
    auto reader = open_image(ro);
    REQUIRE_FALSE(reader.has_value()); // a writer holds "write": a reader that does not share it is refused
    CHECK(reader.error().message.find("Failed to get shared \"write\" lock") != std::string::npos);
    REQUIRE(writer->reopen(true).has_value());
    CHECK(writer->read_only());
    reader = open_image(ro);
    REQUIRE(reader.has_value());
    // The reader does not share "write": back to read-write is refused, and the old lock stays.
    auto again = writer->reopen(false);
    REQUIRE_FALSE(again.has_value());
    CHECK(writer->read_only());
    CHECK(byte_at(*writer, 0) == 0);
    reader->reset();
    REQUIRE(writer->reopen(false).has_value());
    std::vector<uint8_t> buf(512, 0x44);
    REQUIRE(writer->write(0, buf).has_value());
    REQUIRE(writer->close().has_value());
}
