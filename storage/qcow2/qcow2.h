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

#include <map>
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

// What `amend` changes in an existing image; unset fields stay as they are.
struct AmendOptions {
    std::optional<int> version; // 2 (compat=0.10) or 3 (compat=1.1)
    std::optional<bool> lazy_refcounts;
    std::optional<uint64_t> size;
};

// Bytes a new image of `options` takes (qemu-img measure): `fully_allocated`
// with every cluster allocated, `required` with only `data_bytes` of data
// clusters (everything with preallocation falloc or full).
struct Measurement {
    uint64_t required = 0;
    uint64_t fully_allocated = 0;
};
Result<Measurement> measure(const CreateOptions& options, uint64_t data_bytes);

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
    std::unique_ptr<BlockDriver> take_backing() override { return std::move(m_backing); }
    Result<void> attach_backing(std::unique_ptr<BlockDriver> backing) override;
    Result<void> reopen(bool read_only) override;
    BlockDriver* file() override { return m_file.get(); }
    uint64_t allocated_bytes() const override { return m_file->allocated_bytes(); }
    ImageInfo info() const override;
    Result<CheckResult> check(CheckRepair repair) override;

    Result<void> resize(uint64_t size, Preallocation prealloc) override;
    Result<void> make_empty() override;
    Result<void> set_backing_file(const std::string& name, const std::string& format) override;
    // Changes what amend can change in place (see AmendOptions).
    Result<void> amend(const AmendOptions& options);
    Result<void> snapshot_create(const SnapshotInfo& snapshot) override;
    Result<void> snapshot_goto(std::string_view id_or_name) override;
    // Shows an internal snapshot in place of the active image, in memory only:
    // read-only opens (emu-nbd -l); nothing is written to the image.
    Result<void> snapshot_load_tmp(std::string_view id_or_name);
    Result<void> snapshot_delete(std::string_view id_or_name) override;
    Result<void> vmstate_write(uint64_t pos, std::span<const uint8_t> buf) override;
    Result<void> vmstate_read(uint64_t pos, std::span<uint8_t> buf) override;
    // Guest offset where the VM state area starts: the first L2 table's worth
    // of guest space past the virtual size.
    uint64_t vm_state_offset() const;

    // Writes one whole guest cluster compressed (falls back to a normal write
    // when the data does not compress). `offset` must be cluster aligned.
    Result<void> write_compressed(uint64_t offset, std::span<const uint8_t> cluster);

    const Header& header() const { return m_header; }
    uint64_t cluster_size() const { return m_cs; }
    void set_backing(std::unique_ptr<BlockDriver> backing) { m_backing = std::move(backing); }
    const std::vector<Snapshot>& snapshots() const { return m_snapshots; }

private:
    // Metadata written back and the dirty bit cleared (close, reopen read-only).
    Result<void> write_back_clean();
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
    Result<void> read_range(uint64_t offset, std::span<uint8_t> buf);
    Result<void> write_header();
    Result<void> write_l1_entry(uint64_t index);
    Result<void> write_l1_table();
    void index_metadata();
    std::unexpected<Error> corrupt(std::string what);
    bool overlaps_metadata(uint64_t host, uint64_t len) const;
    bool overlaps_snapshot_meta(uint64_t host, uint64_t len) const;

    // write.cpp — write paths.
    Result<void> writable();
    Result<TableRef> l2_for_write(uint64_t l1_index);
    Result<void> write_range(uint64_t offset, std::span<const uint8_t> buf);
    Result<void> write_in_cluster(uint64_t offset, std::span<const uint8_t> buf);
    Result<uint64_t> write_clusters(uint64_t offset, std::span<const uint8_t> buf);
    Result<void> zero_cluster(uint64_t offset, bool may_unmap, bool discard);
    Result<void> free_entry(uint64_t entry);
    Result<void> mark_dirty_once();
    Result<void> preallocate(Preallocation mode, uint64_t start, uint64_t end);
    Result<void> grow_l1(uint64_t min_entries);

    // snapshot.cpp — internal snapshots.
    std::optional<size_t> find_snapshot(std::string_view id_or_name) const;
    Result<std::vector<uint64_t>> read_l1(uint64_t offset, uint32_t entries);
    Result<void> update_l1_refcounts(std::vector<uint64_t>& l1, int delta);
    Result<void> check_refcount_room(const std::vector<uint64_t>& l1);
    Result<void> write_snapshot_table(std::vector<Snapshot> snapshots);

    // resize.cpp — resize, make_empty, amend.
    Result<void> drop_clusters_from(uint64_t first_cluster);
    Result<void> truncate_file_to_used();
    Result<void> expand_zero_clusters();
    Result<void> refuse_compressed_clusters();

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
    uint64_t m_snapshot_table_bytes = 0;
    std::map<uint64_t, uint64_t> m_snapshot_meta; // start → end of snapshot L1 tables and the snapshot table
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
