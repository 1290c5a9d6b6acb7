// Unit tests: qcow2 internal snapshots — create, apply, delete against a
// model of every snapshot's contents, refcounts checked after each step, the
// VM state area, snapshots over backing files and of compressed clusters.
#include "storage/backend.h"
#include "storage/memory.h"
#include "storage/qcow2/qcow2.h"

#include <doctest/doctest.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <random>

using namespace emu::storage;
namespace fs = std::filesystem;

namespace {

struct TempDir {
    fs::path path;
    TempDir()
    {
        char tmpl[] = "/tmp/emu-snapshot-test-XXXXXX";
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

void make_qcow2(const std::string& path, uint64_t size, uint32_t cluster, int version = 3, int refcount_bits = 16,
                const std::string& backing = "")
{
    qcow2::CreateOptions o;
    o.size = size;
    o.cluster_size = cluster;
    o.version = version;
    o.refcount_bits = refcount_bits;
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
    CHECK(r->check_errors == 0);
}

void require_ok(const Result<void>& r)
{
    REQUIRE_MESSAGE(r.has_value(), (r ? "" : r.error().message));
}

} // namespace

TEST_CASE("qcow2 snapshots: random writes, creates, applies and deletes against a model")
{
    TempDir dir;
    struct Case {
        uint32_t cluster;
        int version;
        int refcount_bits;
    };
    for (Case c : {Case{512, 3, 16}, Case{4096, 2, 16}, Case{65536, 3, 2}, Case{4096, 3, 64}}) {
        CAPTURE(c.cluster);
        CAPTURE(c.version);
        CAPTURE(c.refcount_bits);
        const std::string path = dir.file("s.qcow2");
        const uint64_t size = 64 * c.cluster + 1536;
        make_qcow2(path, size, c.cluster, c.version, c.refcount_bits);
        std::vector<uint8_t> shadow(size, 0);
        std::map<std::string, std::vector<uint8_t>> saved; // by name
        std::mt19937_64 rng(c.cluster + c.version);
        auto d = open_rw(path);
        auto* q = dynamic_cast<qcow2::Driver*>(d.get());
        REQUIRE(q);
        int next_name = 0;
        for (int step = 0; step < 60; step++) {
            const int op = int(rng() % 10);
            if (op < 5) {
                uint64_t len = 1 + rng() % (3 * c.cluster);
                uint64_t off = rng() % (size - len);
                std::vector<uint8_t> data(len);
                for (auto& b : data)
                    b = uint8_t(rng());
                if (rng() % 4 == 0) {
                    require_ok(d->write_zeroes(off, len, rng() % 2));
                    std::fill(data.begin(), data.end(), 0);
                } else if (rng() % 4 == 0 && off / c.cluster + 1 < size / c.cluster && c.refcount_bits > 2) {
                    off = off / c.cluster * c.cluster;
                    data.assign(c.cluster, uint8_t(step));
                    require_ok(q->write_compressed(off, data));
                } else {
                    require_ok(d->write(off, data));
                }
                std::memcpy(shadow.data() + off, data.data(), data.size());
            } else if (op < 7 || saved.empty()) {
                if (saved.size() >= 1 && c.refcount_bits == 2) {
                    // 2-bit refcounts count at most 3 references (applying needs one more for a moment): refused before
                    // anything changes.
                    SnapshotInfo sn;
                    sn.name = "too-many";
                    auto r = d->snapshot_create(sn);
                    if (!r) {
                        CHECK(r.error().err == EOVERFLOW);
                        check_clean(*d);
                    } else {
                        require_ok(d->snapshot_delete("too-many"));
                    }
                    continue;
                }
                SnapshotInfo sn;
                sn.name = "snap" + std::to_string(next_name++);
                require_ok(d->snapshot_create(sn));
                saved[sn.name] = shadow;
            } else {
                auto it = std::next(saved.begin(), std::ptrdiff_t(rng() % saved.size()));
                if (op < 9) {
                    require_ok(d->snapshot_goto(it->first));
                    shadow = it->second;
                } else {
                    require_ok(d->snapshot_delete(it->first));
                    saved.erase(it);
                }
            }
            REQUIRE(read_all(*d) == shadow);
            CHECK(q->snapshots().size() == saved.size());
            if (step % 6 == 5)
                check_clean(*d);
        }
        check_clean(*d);
        require_ok(d->close());
        d.reset();
        // Everything persists: every snapshot still reads as it was taken.
        d = open_rw(path);
        CHECK(read_all(*d) == shadow);
        for (const auto& [name, data] : saved) {
            require_ok(d->snapshot_goto(name));
            CHECK(read_all(*d) == data);
        }
        for (const auto& [name, data] : saved)
            require_ok(d->snapshot_delete(name));
        check_clean(*d);
        require_ok(d->close());
    }
}

TEST_CASE("qcow2 snapshots: IDs, lookup by ID or name, missing snapshots, listing fields")
{
    TempDir dir;
    const std::string path = dir.file("ids.qcow2");
    make_qcow2(path, 1 << 20, 65536);
    auto d = open_rw(path);
    for (const char* name : {"a", "b", "a"}) {
        SnapshotInfo sn;
        sn.name = name;
        sn.vm_clock_nsec = 3723004000000ull;
        sn.icount = 77;
        require_ok(d->snapshot_create(sn));
    }
    auto info = d->info();
    REQUIRE(info.snapshots.size() == 3);
    CHECK(info.snapshots[0].id == "1");
    CHECK(info.snapshots[2].id == "3");
    CHECK(info.snapshots[1].icount == std::optional<uint64_t>(77));
    CHECK(info.snapshots[1].vm_clock_nsec == 3723004000000ull);
    CHECK(info.snapshots[0].date_sec != 0);
    // "a" by name is the first one; "3" is an ID.
    require_ok(d->snapshot_delete("a"));
    info = d->info();
    REQUIRE(info.snapshots.size() == 2);
    CHECK(info.snapshots[0].id == "2");
    require_ok(d->snapshot_delete("3"));
    SnapshotInfo sn;
    sn.name = "c";
    require_ok(d->snapshot_create(sn));
    CHECK(d->info().snapshots.back().id == "3");
    auto missing = d->snapshot_goto("nope");
    REQUIRE_FALSE(missing.has_value());
    CHECK(missing.error().err == ENOENT);
    CHECK(d->snapshot_delete("nope").error().err == ENOENT);
    SnapshotInfo dup;
    dup.id = "2";
    CHECK(d->snapshot_create(dup).error().err == EEXIST);
    check_clean(*d);
    require_ok(d->close());
}

TEST_CASE("qcow2 snapshots: the VM state area is saved with a snapshot and comes back with it")
{
    TempDir dir;
    for (uint32_t cluster : {512u, 65536u}) {
        CAPTURE(cluster);
        const std::string path = dir.file("vm.qcow2");
        const uint64_t size = 1 << 20;
        make_qcow2(path, size, cluster);
        auto d = open_rw(path);
        std::vector<uint8_t> disk(size, 0x11), state(300000);
        std::mt19937 rng(cluster);
        for (auto& b : state)
            b = uint8_t(rng());
        require_ok(d->write(0, disk));
        // Saved in pieces, as a migration stream arrives.
        for (size_t pos = 0; pos < state.size(); pos += 70001)
            require_ok(d->vmstate_write(pos, std::span<const uint8_t>(state).subspan(
                                                 pos, std::min<size_t>(70001, state.size() - pos))));
        SnapshotInfo sn;
        sn.name = "with-state";
        sn.vm_state_size = state.size();
        require_ok(d->snapshot_create(sn));
        CHECK(d->info().snapshots[0].vm_state_size == state.size());
        // The active image no longer holds the state: it reads as zeroes.
        std::vector<uint8_t> got(state.size());
        require_ok(d->vmstate_read(0, got));
        CHECK(std::all_of(got.begin(), got.end(), [](uint8_t b) { return b == 0; }));
        check_clean(*d);
        // A second snapshot with other state, then the disk changes.
        std::vector<uint8_t> state2(5000, 0x42);
        require_ok(d->vmstate_write(0, state2));
        SnapshotInfo sn2;
        sn2.name = "other";
        sn2.vm_state_size = state2.size();
        require_ok(d->snapshot_create(sn2));
        std::vector<uint8_t> disk2(size, 0x22);
        require_ok(d->write(0, disk2));
        require_ok(d->snapshot_goto("with-state"));
        require_ok(d->vmstate_read(0, got));
        CHECK(got == state);
        CHECK(read_all(*d) == disk);
        require_ok(d->snapshot_goto("other"));
        std::vector<uint8_t> got2(state2.size());
        require_ok(d->vmstate_read(0, got2));
        CHECK(got2 == state2);
        CHECK(d->size() == size);
        require_ok(d->snapshot_delete("with-state"));
        require_ok(d->snapshot_delete("other"));
        check_clean(*d);
        require_ok(d->close());
    }
}

TEST_CASE("qcow2 snapshots: an overlay's snapshots leave the backing file alone")
{
    TempDir dir;
    const uint64_t size = 512 * 1024;
    const std::string base = dir.file("base.qcow2"), top = dir.file("top.qcow2");
    make_qcow2(base, size, 4096);
    std::vector<uint8_t> pattern(size, 0x33);
    {
        auto b = open_rw(base);
        require_ok(b->write(0, pattern));
        require_ok(b->close());
    }
    make_qcow2(top, size, 4096, 3, 16, "base.qcow2");
    auto d = open_rw(top);
    SnapshotInfo sn;
    sn.name = "empty";
    require_ok(d->snapshot_create(sn));
    std::vector<uint8_t> data(10000, 0x44);
    require_ok(d->write(5000, data));
    std::vector<uint8_t> expect = pattern;
    std::memcpy(expect.data() + 5000, data.data(), data.size());
    CHECK(read_all(*d) == expect);
    require_ok(d->snapshot_goto("empty"));
    CHECK(read_all(*d) == pattern);
    check_clean(*d);
    require_ok(d->close());
}

TEST_CASE("qcow2 snapshots: drivers without snapshots say so")
{
    TempDir dir;
    const std::string path = dir.file("r.raw");
    REQUIRE(create_raw(path, 65536, Preallocation::Off).has_value());
    auto d = open_rw(path);
    SnapshotInfo sn;
    sn.name = "x";
    auto r = d->snapshot_create(sn);
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().err == ENOTSUP);
    CHECK(d->snapshot_goto("x").error().err == ENOTSUP);
}

TEST_CASE("memory driver: a qcow2 image created, written and snapshotted in memory")
{
    // Created in memory, as a file would be.
    {
        qcow2::CreateOptions o;
        o.size = 1 << 20;
        o.cluster_size = 4096;
        auto mem = std::make_unique<MemoryDriver>("new.qcow2", std::vector<uint8_t>{}, false);
        require_ok(qcow2::Driver::create(std::move(mem), o));
    }
    std::vector<uint8_t> bytes;
    // Same layout as a file: build one through create_qcow2 and load it into memory.
    TempDir dir;
    const std::string path = dir.file("m.qcow2");
    make_qcow2(path, 1 << 20, 4096);
    {
        std::FILE* f = std::fopen(path.c_str(), "rb");
        REQUIRE(f);
        std::fseek(f, 0, SEEK_END);
        bytes.resize(size_t(std::ftell(f)));
        std::fseek(f, 0, SEEK_SET);
        REQUIRE(std::fread(bytes.data(), 1, bytes.size(), f) == bytes.size());
        std::fclose(f);
    }
    auto opened = qcow2::Driver::open(std::make_unique<MemoryDriver>("m.qcow2", bytes, false, 8 << 20), {});
    REQUIRE_MESSAGE(opened.has_value(), (opened ? "" : opened.error().message));
    auto& d = **opened;
    std::vector<uint8_t> data(100000, 0x77);
    require_ok(d.write(12345, data));
    SnapshotInfo sn;
    sn.name = "m";
    require_ok(d.snapshot_create(sn));
    require_ok(d.write_zeroes(0, 1 << 20, false));
    require_ok(d.snapshot_goto("m"));
    std::vector<uint8_t> back(data.size());
    require_ok(d.read(12345, back));
    CHECK(back == data);
    check_clean(d);
    // Growth past the memory driver's limit is an error, not an allocation.
    auto* q = &d;
    CHECK_FALSE(q->resize(1ull << 40, Preallocation::Full).has_value());
    require_ok(d.close());
}
