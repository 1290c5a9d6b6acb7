// tests/fuzz/fuzz_qcow2_write.cpp — libFuzzer target for the qcow2 write
// paths on hostile images: each input is an image file opened read-write
// through the memory driver (growth capped at 64 MiB), then written, zeroed,
// discarded, snapshotted (create, apply, delete), resized and checked, with
// offsets and lengths taken from the input's last bytes. Errors are fine
// (most mutated images are refused or marked corrupt); crashes, hangs,
// leaks and undefined behaviour are not.
#include "storage/memory.h"
#include "storage/qcow2/qcow2.h"

#include <algorithm>
#include <cstdint>
#include <vector>

using namespace emu::storage;

namespace {

// The operations' parameters come from the input's tail, read backwards.
struct Params {
    const uint8_t* data;
    size_t size;
    size_t pos = 0;
    uint64_t next(uint64_t limit)
    {
        uint64_t v = 0;
        for (int i = 0; i < 3; i++)
            v = v << 8 | (pos < size ? data[size - 1 - pos++] : 0);
        return limit ? v % limit : 0;
    }
};

// A check visits every L2 entry of every L1 table: only when that is small.
bool cluster_count_small(qcow2::Driver& d)
{
    uint64_t entries = d.header().l1_size;
    for (const auto& sn : d.snapshots())
        entries += sn.l1_size;
    return entries * (d.cluster_size() / 8) <= (1u << 20);
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
{
    auto file = std::make_unique<MemoryDriver>("fuzz.qcow2", std::vector<uint8_t>(data, data + size), false,
                                               64ull << 20);
    qcow2::OpenOptions options;
    options.l2_cache_bytes = 64 * 1024;
    options.repair_dirty = true;
    auto opened = qcow2::Driver::open(std::move(file), options);
    if (!opened)
        return 0;
    qcow2::Driver& d = **opened;
    // Large virtual sizes are fine to write sparsely, but keep offsets near the start.
    const uint64_t span = std::min<uint64_t>(d.size(), 8ull << 20);
    if (span == 0)
        return 0;
    Params p{data, size};
    std::vector<uint8_t> buf(256 * 1024);
    for (size_t i = 0; i < buf.size(); i++)
        buf[i] = uint8_t(i * 7 + 1);
    for (int step = 0; step < 12; step++) {
        const uint64_t op = p.next(10);
        const uint64_t off = p.next(span);
        const uint64_t len = std::min<uint64_t>(1 + p.next(buf.size()), span - off);
        switch (op) {
        case 0: case 1: case 2:
            (void)d.write(off, std::span<const uint8_t>(buf.data(), len));
            break;
        case 3:
            (void)d.write_zeroes(off, len, p.next(2));
            break;
        case 4:
            (void)d.discard(off, len);
            break;
        case 5: {
            SnapshotInfo sn;
            sn.name = "s" + std::to_string(step);
            sn.vm_state_size = p.next(2) ? len : 0;
            if (sn.vm_state_size)
                (void)d.vmstate_write(0, std::span<const uint8_t>(buf.data(), len));
            (void)d.snapshot_create(sn);
            break;
        }
        case 6:
        case 7: {
            auto snaps = d.snapshots();
            if (snaps.empty())
                break;
            const auto& sn = snaps[p.next(snaps.size())];
            if (op == 6)
                (void)d.snapshot_goto(sn.id);
            else
                (void)d.snapshot_delete(sn.id);
            break;
        }
        case 8:
            (void)d.resize((off + 512 * p.next(4096)) & ~uint64_t(511), Preallocation::Off);
            break;
        case 9:
            if (cluster_count_small(d))
                (void)d.check(p.next(2) ? CheckRepair::All : CheckRepair::None);
            break;
        }
        if (d.read_only())
            break; // marked corrupt: nothing more to write
    }
    std::vector<uint8_t> back(size_t(std::min<uint64_t>(d.size(), 1 << 20)));
    (void)d.read(0, back);
    (void)d.close();
    return 0;
}
