// storage/qcow2/format.h — qcow2 on-disk layout (versions 2 and 3): header
// fields, header extensions, table entry bits, and the validating parser.
#pragma once

#include "storage/block_driver.h"

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace emu::storage::qcow2 {

constexpr uint32_t k_magic = 0x514649fb; // "QFI\xfb"
constexpr uint32_t k_v2_header_size = 72;
constexpr uint32_t k_v3_header_size = 104;
constexpr int k_min_cluster_bits = 9;
constexpr int k_max_cluster_bits = 21;
constexpr uint32_t k_max_backing_name = 1023;
constexpr uint64_t k_max_l1_bytes = 32u << 20;       // as QEMU: 32 MiB of L1 table
constexpr uint64_t k_max_reftable_bytes = 8u << 20;  // 8 MiB of refcount table
constexpr uint32_t k_max_snapshots = 65536;
constexpr uint64_t k_max_snapshot_table = 64u << 20;
constexpr uint32_t k_max_snapshot_extra = 1024;
constexpr uint32_t k_max_snapshot_name = 65535;

// Incompatible feature bits.
constexpr uint64_t k_incompat_dirty = 1u << 0;
constexpr uint64_t k_incompat_corrupt = 1u << 1;
constexpr uint64_t k_incompat_data_file = 1u << 2;
constexpr uint64_t k_incompat_compression = 1u << 3;
constexpr uint64_t k_incompat_extl2 = 1u << 4;
constexpr uint64_t k_incompat_known =
    k_incompat_dirty | k_incompat_corrupt | k_incompat_data_file | k_incompat_compression | k_incompat_extl2;
// Compatible and autoclear feature bits.
constexpr uint64_t k_compat_lazy_refcounts = 1u << 0;
constexpr uint64_t k_autoclear_bitmaps = 1u << 0;
constexpr uint64_t k_autoclear_data_file_raw = 1u << 1;

// Header extension types.
constexpr uint32_t k_ext_end = 0;
constexpr uint32_t k_ext_backing_format = 0xe2792aca;
constexpr uint32_t k_ext_feature_table = 0x6803f857;
constexpr uint32_t k_ext_bitmaps = 0x23852875;
constexpr uint32_t k_ext_crypto = 0x0537be77;
constexpr uint32_t k_ext_data_file = 0x44415441;

// Table entries.
constexpr uint64_t k_entry_copied = 1ull << 63;
constexpr uint64_t k_entry_compressed = 1ull << 62;
constexpr uint64_t k_entry_zero = 1ull << 0;
constexpr uint64_t k_l1_offset_mask = 0x00fffffffffffe00ull;
constexpr uint64_t k_l2_offset_mask = 0x00fffffffffffe00ull;
constexpr uint64_t k_l1_reserved = 0x7f000000000001ffull;
constexpr uint64_t k_l2_reserved = 0x3f000000000001feull;
constexpr uint64_t k_reftable_offset_mask = 0xfffffffffffffe00ull;
constexpr int k_subclusters = 32; // extended L2 entries

enum class CompressionType : uint8_t { Zlib = 0, Zstd = 1 };

struct Header {
    uint32_t version = 3;
    uint64_t backing_file_offset = 0;
    uint32_t backing_file_size = 0;
    uint32_t cluster_bits = 16;
    uint64_t size = 0;
    uint32_t crypt_method = 0;
    uint32_t l1_size = 0;
    uint64_t l1_table_offset = 0;
    uint64_t refcount_table_offset = 0;
    uint32_t refcount_table_clusters = 0;
    uint32_t nb_snapshots = 0;
    uint64_t snapshots_offset = 0;
    uint64_t incompatible_features = 0;
    uint64_t compatible_features = 0;
    uint64_t autoclear_features = 0;
    uint32_t refcount_order = 4;
    uint32_t header_length = k_v3_header_size;
    CompressionType compression_type = CompressionType::Zlib;

    // From the extensions and the backing name.
    std::string backing_file;
    std::string backing_format;
    std::vector<std::pair<uint32_t, std::vector<uint8_t>>> unknown_extensions;

    uint64_t cluster_size() const { return 1ull << cluster_bits; }
    bool extended_l2() const { return incompatible_features & k_incompat_extl2; }
    uint32_t refcount_bits() const { return 1u << refcount_order; }
};

// Parses and validates the header in `first_cluster` (the first bytes of the
// file, at least one cluster or the whole file if shorter) against the file
// size. Every error names the field.
Result<Header> parse_header(std::span<const uint8_t> data, uint64_t file_size);

// The header, its extensions and the backing name, serialized into one cluster.
Result<std::vector<uint8_t>> serialize_header(const Header& h);

// L2 entry geometry.
inline int l2_entry_bytes(const Header& h)
{
    return h.extended_l2() ? 16 : 8;
}

// Compressed cluster descriptor: host offset and byte length of the
// compressed data span (whole sectors, as the descriptor records them).
struct CompressedRef {
    uint64_t offset;
    uint64_t sectors_bytes; // bytes from offset to the end of its last sector
};
inline CompressedRef decode_compressed(uint64_t entry, uint32_t cluster_bits)
{
    int shift = 62 - int(cluster_bits - 8);
    uint64_t offset = entry & ((1ull << shift) - 1);
    uint64_t nb_sectors = ((entry & ~(k_entry_copied | k_entry_compressed)) >> shift) + 1;
    uint64_t span = nb_sectors * 512 - (offset & 511);
    return {offset, span};
}
inline uint64_t encode_compressed(uint64_t offset, uint64_t bytes, uint32_t cluster_bits)
{
    int shift = 62 - int(cluster_bits - 8);
    uint64_t last_sector = (offset + bytes - 1) >> 9;
    uint64_t nb_sectors = last_sector - (offset >> 9) + 1;
    return k_entry_compressed | ((nb_sectors - 1) << shift) | offset;
}

// Refcount block entries of `bits` (1..64) bits: big-endian for whole bytes,
// packed from the least significant bit for narrower widths.
uint64_t refcount_get(const uint8_t* block, uint32_t bits, uint64_t index);
void refcount_set(uint8_t* block, uint32_t bits, uint64_t index, uint64_t value);

struct Snapshot {
    uint64_t l1_table_offset = 0;
    uint32_t l1_size = 0;
    std::string id;
    std::string name;
    uint32_t date_sec = 0;
    uint32_t date_nsec = 0;
    uint64_t vm_clock_nsec = 0;
    uint64_t vm_state_size = 0; // the 64-bit size from the extra data when present, else the 32-bit field
    uint64_t disk_size = 0;
    std::optional<uint64_t> icount; // absent: no extra field, or all ones ("not recorded")
    std::vector<uint8_t> unknown_extra; // extra data past the fields we know, preserved as it is
};

// Parses and validates the snapshot table; `table_bytes` receives the bytes
// the entries take (each padded to 8 bytes).
Result<std::vector<Snapshot>> parse_snapshots(std::span<const uint8_t> table, const Header& h, uint64_t file_size,
                                              uint64_t* table_bytes = nullptr);

// The snapshot table as stored: every entry with 24 bytes of extra data
// (64-bit VM state size, disk size, icount) plus any preserved unknown extra data.
std::vector<uint8_t> serialize_snapshots(const std::vector<Snapshot>& snapshots);

} // namespace emu::storage::qcow2
