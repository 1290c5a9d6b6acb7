// tests/fuzz/fuzz_qcow2.cpp — libFuzzer target for the qcow2 parser and read
// path (STYLE.md item 21). Each input is a whole image file, opened
// read-only through the memory protocol driver: the header, extensions,
// snapshot table, L1/refcount tables are validated on open; then the image is
// read (the start, clusters spread over the virtual size, the VM state area),
// its block status walked, its info listed and, when small enough to finish
// quickly, checked. Nothing may crash, hang or leak; errors are fine.
#include "storage/memory.h"
#include "storage/qcow2/qcow2.h"

#include <algorithm>
#include <cstdint>
#include <vector>

using namespace emu::storage;

namespace {

// Bounds that keep one input well under a second.
constexpr uint64_t k_read_bytes = 1 << 20;   // read at the start of the image
constexpr int k_spread_reads = 64;           // clusters read across the virtual size
constexpr int k_status_steps = 512;          // block status calls
constexpr uint64_t k_check_entries = 1 << 20; // L2 entries a check may visit

void exercise(qcow2::Driver& d, const uint8_t* data, size_t size)
{
    const uint64_t vsize = d.size();
    std::vector<uint8_t> buf(size_t(std::min<uint64_t>(vsize, k_read_bytes)));
    (void)d.read(0, buf);
    // Clusters spread over the whole virtual size, at offsets the input picks too.
    std::vector<uint8_t> cluster(size_t(std::min<uint64_t>(d.cluster_size() + 1, 1 << 20)));
    for (int i = 0; i < k_spread_reads && vsize > cluster.size(); i++) {
        uint64_t pick = size >= 8 ? uint64_t(data[(i * 7) % size]) << 8 | data[(i * 13 + 1) % size] : 0;
        uint64_t off = (vsize - cluster.size()) / k_spread_reads * uint64_t(i) + pick;
        off = std::min(off, vsize - cluster.size());
        (void)d.read(off, cluster);
    }
    uint64_t off = 0;
    for (int i = 0; i < k_status_steps && off < vsize; i++) {
        auto st = d.block_status(off, vsize - off);
        if (!st || st->length == 0)
            break;
        off += st->length;
    }
    (void)d.info();
    std::vector<uint8_t> state(4096);
    (void)d.vmstate_read(0, state);
    // A check visits every L2 entry of every L1 table: only when that is small.
    uint64_t entries = uint64_t(d.header().l1_size);
    for (const auto& sn : d.snapshots())
        entries += sn.l1_size;
    if (entries * (d.cluster_size() / 8) <= k_check_entries)
        (void)d.check(CheckRepair::None);
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
{
    auto file = std::make_unique<MemoryDriver>("fuzz.qcow2", std::vector<uint8_t>(data, data + size), true);
    qcow2::OpenOptions options;
    options.read_only = true;
    options.l2_cache_bytes = 256 * 1024;
    auto drv = qcow2::Driver::open(std::move(file), options);
    if (drv)
        exercise(**drv, data, size);
    return 0;
}
