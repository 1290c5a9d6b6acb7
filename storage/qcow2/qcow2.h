// storage/qcow2/qcow2.h — the qcow2 format driver (versions 2 and 3).
//
// Reads: unallocated clusters fall through to the backing image (or read as
// zeroes), zero clusters, normal clusters, compressed clusters (zlib, zstd),
// extended L2 entries (subclusters). Writes: cluster allocation with refcount
// updates (refcount blocks and table growth), copy-on-write of partial
// clusters from the backing image or from compressed data, L2 table
// allocation, zero clusters (v3), compressed writes, lazy refcounts with the
// dirty bit. Every table and entry is validated before use; a corrupt
// structure gives an error naming it.
//
// Files: header.cpp (parsing), qcow2.cpp (open, read, status), write.cpp
// (write paths), refcount.cpp (allocation), check.cpp (check and repair),
// create.cpp (image creation).
#pragma once

#include "storage/block_driver.h"
#include "storage/file.h"
#include "storage/qcow2/cache.h"
#include "storage/qcow2/format.h"

#include <memory>
#include <unordered_set>

namespace emu::storage::qcow2 {

struct OpenOptions {
    bool read_only = false;
    size_t l2_cache_bytes = 0;       // 0: 1 MiB (at least 4 tables)
    size_t refcount_cache_bytes = 0; // 0: a quarter of the L2 cache
    bool repair_dirty = true;        // rebuild refcounts of a dirty image when opened read-write
};

struct CreateOptions {
    uint64_t size = 0;
    uint32_t cluster_size = 65536;
    int version = 3; // compat=0.10 → 2, 1.1 → 3
    std::string backing_file;
    std::string backing_format;
    Preallocation preallocation = Preallocation::Off;
    bool lazy_refcounts = false;
    int refcount_bits = 16;
    CompressionType compression_type = CompressionType::Zlib;
    bool extended_l2 = false;
};

class Driver final : public BlockDriver {
public:
    static Result<std::unique_ptr<Driver>> open(std::unique_ptr<BlockDriver> file, const OpenOptions& options);
    // Writes a new image into an empty, writable protocol driver.
    static Result<void> create(std::unique_ptr<BlockDriver> file, const CreateOptions& options);
    ~Driver() override;

    std::string_view format_name() const override { return "qcow2"; }
    const std::string& filename() const override { return m_file->filename(); }
    uint64_t size() const override { return m_header.size; }
    bool read_only() const override { return m_read_only; }

    Result<void> read(uint64_t offset, std::span<uint8_t> buf) override;
    Result<void> write(uint64_t offset, std::span<const uint8_t> buf) override;
    Result<void> write_zeroes(uint64_t offset, uint64_t bytes, bool may_unmap) override;
    Result<void> discard(uint64_t offset, uint64_t bytes) override;
    Result<void> flush() override;
    Result<BlockStatus> block_status(uint64_t offset, uint64_t bytes) override;
    Result<void> close() override;
    BlockDriver* backing() override { return m_backing.get(); }
    BlockDriver* file() override { return m_file.get(); }
    uint64_t allocated_bytes() const override { return m_file->allocated_bytes(); }
    ImageInfo info() const override;
    Result<CheckResult> check(CheckRepair repair) override;

    // Writes one whole guest cluster compressed (falls back to a normal write
    // when the data does not compress). `offset` must be cluster aligned.
    Result<void> write_compressed(uint64_t offset, std::span<const uint8_t> cluster);

    const Header& header() const { return m_header; }
    uint64_t cluster_size() const { return m_cs; }
    void set_backing(std::unique_ptr<BlockDriver> backing) { m_backing = std::move(backing); }
    const std::vector<Snapshot>& snapshots() const { return m_snapshots; }

private:
    friend class Checker;
    enum class Kind { Unallocated, Zero, Normal, Compressed };
    struct Mapping {
        Kind kind = Kind::Unallocated;
        uint64_t host = 0;   // Normal: host offset of the guest offset; Compressed: descriptor offset
        uint64_t span = 0;   // Compressed: bytes of compressed data
        uint64_t bytes = 0;  // bytes from the guest offset sharing this mapping (within one cluster)
    };

    Driver(std::unique_ptr<BlockDriver> file, Header header, const OpenOptions& options);
    Result<void> load_tables();

    // qcow2.cpp — lookups and reads.
    Result<TableRef> load_l2(uint64_t l1_index, uint64_t l1_entry);
    Result<Mapping> lookup(uint64_t offset);
    Result<void> read_mapping(const Mapping& m, uint64_t offset, std::span<uint8_t> buf);
    Result<void> read_compressed(uint64_t host, uint64_t span, std::span<uint8_t> cluster);
    Result<void> read_backing(uint64_t offset, std::span<uint8_t> buf);
    Result<void> write_header();
    Result<void> write_l1_entry(uint64_t index);
    std::unexpected<Error> corrupt(std::string what);
    bool overlaps_metadata(uint64_t host, uint64_t len) const;

    // write.cpp — write paths.
    Result<void> writable();
    Result<TableRef> l2_for_write(uint64_t l1_index);
    Result<void> write_in_cluster(uint64_t offset, std::span<const uint8_t> buf);
    Result<void> zero_cluster(uint64_t offset, bool may_unmap, bool discard);
    Result<void> free_entry(uint64_t entry);
    Result<void> mark_dirty_once();
    Result<void> preallocate(Preallocation mode);
    Result<void> grow_l1(uint64_t min_entries);

    // refcount.cpp — refcounts and allocation.
    Result<uint64_t> get_refcount(uint64_t cluster);
    Result<void> update_refcount(uint64_t cluster, int64_t delta);
    Result<void> ensure_refblock(uint64_t block_index);
    Result<void> grow_reftable(uint64_t min_entries);
    Result<uint64_t> alloc_clusters(uint64_t count);
    Result<uint64_t> alloc_compressed_bytes(uint64_t bytes);
    Result<void> free_range(uint64_t offset, uint64_t bytes);
    Result<uint64_t> find_free_run(uint64_t count);
    Result<TableRef> load_refblock(uint64_t block_index);
    uint64_t refcount_entry(const Table& block, uint64_t index) const;
    void set_refcount_entry(Table& block, uint64_t index, uint64_t value) const;
    Result<void> write_reftable_entry(uint64_t index);
    Result<void> extend_file(uint64_t end);

    std::unique_ptr<BlockDriver> m_file;
    std::unique_ptr<BlockDriver> m_backing;
    Header m_header;
    bool m_read_only;
    uint64_t m_cs;
    uint32_t m_cluster_bits;
    uint64_t m_l2_entries;
    int m_l2_entry_bytes;
    uint64_t m_refcount_bits;
    uint64_t m_refblock_entries;
    uint64_t m_refcount_max;
    std::vector<uint64_t> m_l1;
    std::vector<uint64_t> m_reftable;
    std::unordered_set<uint64_t> m_refblocks; // host offsets of refcount blocks
    std::unordered_set<uint64_t> m_l2_tables; // host offsets of the active L2 tables
    std::vector<Snapshot> m_snapshots;
    std::unique_ptr<MetadataCache> m_l2_cache;
    std::unique_ptr<MetadataCache> m_refblock_cache;
    uint64_t m_free_hint = 0;       // no free cluster below this index
    uint64_t m_compressed_next = 0; // next free byte in the current compressed-data cluster (0: none)
    uint64_t m_ccache_host = UINT64_MAX;
    std::vector<uint8_t> m_ccache;  // last decompressed cluster
    bool m_dirty_marked = false;
    bool m_closed = false;
    bool m_allow_small_l1 = false;  // during creation
};

} // namespace emu::storage::qcow2
