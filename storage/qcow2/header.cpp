// storage/qcow2/header.cpp — parse and validate the qcow2 header, its
// extensions and the snapshot table; serialize the header.
#include "storage/endian.h"
#include "storage/qcow2/format.h"

#include <algorithm>
#include <fmt/format.h>

namespace emu::storage::qcow2 {

namespace {

const char* incompat_bit_name(int bit)
{
    switch (bit) {
    case 0: return " (dirty)";
    case 1: return " (corrupt)";
    case 2: return " (external data file)";
    case 3: return " (compression type)";
    case 4: return " (extended L2 entries)";
    default: return "";
    }
}

// Does [offset, offset+len) fit inside [0, limit)?
bool fits(uint64_t offset, uint64_t len, uint64_t limit)
{
    return offset <= limit && len <= limit - offset;
}

Result<void> parse_extensions(std::span<const uint8_t> data, uint64_t start, uint64_t end, Header& h)
{
    uint64_t pos = start;
    while (true) {
        if (pos + 8 > end)
            return fail(fmt::format("qcow2: header extension at offset {} runs past the end of the header area ({})",
                                    pos, end));
        uint32_t type = load_be32(data.data() + pos);
        uint32_t len = load_be32(data.data() + pos + 4);
        pos += 8;
        if (type == k_ext_end)
            return {};
        if (len > end - pos)
            return fail(fmt::format("qcow2: header extension 0x{:08x} of {} bytes runs past the end of the header area",
                                    type, len));
        const uint8_t* p = data.data() + pos;
        switch (type) {
        case k_ext_backing_format:
            if (len > 1023)
                return fail(fmt::format("qcow2: backing format extension is too long ({} bytes)", len));
            h.backing_format.assign(reinterpret_cast<const char*>(p), len);
            if (h.backing_format.find('\0') != std::string::npos)
                h.backing_format.resize(h.backing_format.find('\0'));
            break;
        case k_ext_crypto:
            return fail("qcow2: encrypted images are not supported (full disk encryption header present)");
        case k_ext_feature_table:
        case k_ext_bitmaps:
        case k_ext_data_file:
            // Names only / not supported features we clear or refuse elsewhere.
            break;
        default:
            h.unknown_extensions.emplace_back(type, std::vector<uint8_t>(p, p + len));
            break;
        }
        pos += (uint64_t(len) + 7) & ~uint64_t(7);
    }
}

} // namespace

Result<Header> parse_header(std::span<const uint8_t> data, uint64_t file_size)
{
    if (data.size() < k_v2_header_size)
        return fail(fmt::format("qcow2: image is truncated: {} bytes is shorter than the header", data.size()));
    const uint8_t* p = data.data();
    if (load_be32(p) != k_magic)
        return fail("qcow2: bad magic: not a qcow2 image");
    Header h;
    h.version = load_be32(p + 4);
    if (h.version != 2 && h.version != 3)
        return fail(fmt::format("qcow2: unsupported qcow2 version {}", h.version));
    h.backing_file_offset = load_be64(p + 8);
    h.backing_file_size = load_be32(p + 16);
    h.cluster_bits = load_be32(p + 20);
    h.size = load_be64(p + 24);
    h.crypt_method = load_be32(p + 32);
    h.l1_size = load_be32(p + 36);
    h.l1_table_offset = load_be64(p + 40);
    h.refcount_table_offset = load_be64(p + 48);
    h.refcount_table_clusters = load_be32(p + 56);
    h.nb_snapshots = load_be32(p + 60);
    h.snapshots_offset = load_be64(p + 64);

    if (h.cluster_bits < k_min_cluster_bits || h.cluster_bits > k_max_cluster_bits)
        return fail(fmt::format("qcow2: cluster_bits {} is out of range ({}..{})", h.cluster_bits,
                                k_min_cluster_bits, k_max_cluster_bits));
    const uint64_t cs = h.cluster_size();

    if (h.version == 2) {
        h.header_length = k_v2_header_size;
        h.refcount_order = 4;
    } else {
        if (data.size() < k_v3_header_size)
            return fail(fmt::format("qcow2: image is truncated: {} bytes is shorter than the version 3 header",
                                    data.size()));
        h.incompatible_features = load_be64(p + 72);
        h.compatible_features = load_be64(p + 80);
        h.autoclear_features = load_be64(p + 88);
        h.refcount_order = load_be32(p + 96);
        h.header_length = load_be32(p + 100);
        if (h.header_length < k_v3_header_size)
            return fail(fmt::format("qcow2: header_length {} is shorter than the version 3 header ({})",
                                    h.header_length, k_v3_header_size));
        if (h.header_length > cs || h.header_length > data.size())
            return fail(fmt::format("qcow2: header_length {} is larger than the first cluster", h.header_length));
        if (h.header_length > k_v3_header_size) {
            uint8_t ct = p[104];
            if (ct > 1)
                return fail(fmt::format("qcow2: unknown compression type {}", ct));
            h.compression_type = CompressionType(ct);
        }
    }

    uint64_t unknown = h.incompatible_features & ~k_incompat_known;
    if (h.incompatible_features & k_incompat_data_file)
        unknown |= k_incompat_data_file;
    if (unknown) {
        int bit = __builtin_ctzll(unknown);
        return fail(fmt::format("qcow2: unsupported incompatible feature bit {}{}", bit, incompat_bit_name(bit)));
    }
    bool compression_bit = h.incompatible_features & k_incompat_compression;
    if (compression_bit != (h.compression_type != CompressionType::Zlib))
        return fail(compression_bit ? "qcow2: compression type bit is set but the compression type is zlib"
                                    : "qcow2: compression type is not zlib but the compression type bit is clear");
    if (h.extended_l2() && h.cluster_bits < 14)
        return fail(fmt::format("qcow2: extended L2 entries need clusters of at least 16 KiB (cluster_bits {})",
                                h.cluster_bits));
    if (h.crypt_method != 0)
        return fail(fmt::format("qcow2: encrypted images are not supported (crypt_method {})", h.crypt_method));
    if (h.refcount_order > 6)
        return fail(fmt::format("qcow2: refcount_order {} is out of range (0..6)", h.refcount_order));

    // Virtual size and L1 table.
    const uint64_t l2_entries = cs / uint64_t(l2_entry_bytes(h));
    if (h.size > (1ull << 62))
        return fail(fmt::format("qcow2: virtual size {} is too large", h.size));
    uint64_t clusters = (h.size + cs - 1) / cs;
    uint64_t l1_needed = (clusters + l2_entries - 1) / l2_entries;
    if (uint64_t(h.l1_size) * 8 > k_max_l1_bytes || l1_needed * 8 > k_max_l1_bytes)
        return fail(fmt::format("qcow2: L1 table of {} entries is too large (limit {} bytes)",
                                std::max<uint64_t>(h.l1_size, l1_needed), k_max_l1_bytes));
    if (h.l1_size < l1_needed)
        return fail(fmt::format("qcow2: L1 table of {} entries is too small for the virtual size {}", h.l1_size,
                                h.size));
    if (h.l1_size > 0) {
        if (h.l1_table_offset % cs)
            return fail(fmt::format("qcow2: L1 table offset 0x{:x} is not cluster aligned", h.l1_table_offset));
        if (h.l1_table_offset == 0)
            return fail("qcow2: L1 table overlaps the header");
        if (!fits(h.l1_table_offset, uint64_t(h.l1_size) * 8, file_size))
            return fail(fmt::format("qcow2: L1 table (offset 0x{:x}, {} entries) extends beyond the end of the "
                                    "file ({} bytes)", h.l1_table_offset, h.l1_size, file_size));
    }

    // Refcount table.
    if (h.refcount_table_clusters == 0)
        return fail("qcow2: refcount table has no clusters");
    if (uint64_t(h.refcount_table_clusters) * cs > k_max_reftable_bytes)
        return fail(fmt::format("qcow2: refcount table of {} clusters is too large", h.refcount_table_clusters));
    if (h.refcount_table_offset % cs)
        return fail(fmt::format("qcow2: refcount table offset 0x{:x} is not cluster aligned",
                                h.refcount_table_offset));
    if (h.refcount_table_offset == 0)
        return fail("qcow2: refcount table overlaps the header");
    const uint64_t reftable_bytes = uint64_t(h.refcount_table_clusters) * cs;
    if (!fits(h.refcount_table_offset, reftable_bytes, file_size))
        return fail(fmt::format("qcow2: refcount table (offset 0x{:x}, {} clusters) extends beyond the end of "
                                "the file ({} bytes)", h.refcount_table_offset, h.refcount_table_clusters,
                                file_size));
    if (h.l1_size > 0) {
        uint64_t l1_end = h.l1_table_offset + uint64_t(h.l1_size) * 8;
        uint64_t rt_end = h.refcount_table_offset + reftable_bytes;
        if (h.l1_table_offset < rt_end && h.refcount_table_offset < l1_end)
            return fail("qcow2: L1 table overlaps the refcount table");
    }

    // Snapshot table.
    if (h.nb_snapshots > k_max_snapshots)
        return fail(fmt::format("qcow2: too many snapshots ({}, limit {})", h.nb_snapshots, k_max_snapshots));
    if (h.nb_snapshots > 0) {
        if (h.snapshots_offset % cs)
            return fail(fmt::format("qcow2: snapshot table offset 0x{:x} is not cluster aligned",
                                    h.snapshots_offset));
        if (h.snapshots_offset == 0)
            return fail("qcow2: snapshot table overlaps the header");
        if (h.snapshots_offset >= file_size)
            return fail(fmt::format("qcow2: snapshot table (offset 0x{:x}) is beyond the end of the file",
                                    h.snapshots_offset));
    }

    // Extensions end where the backing name starts, or at the end of the first cluster.
    uint64_t area_end = std::min<uint64_t>(cs, data.size());
    if (h.backing_file_offset != 0) {
        if (h.backing_file_size > k_max_backing_name || h.backing_file_size == 0)
            return fail(fmt::format("qcow2: backing file name length {} is out of range (1..{})",
                                    h.backing_file_size, k_max_backing_name));
        if (!fits(h.backing_file_offset, h.backing_file_size, area_end))
            return fail(fmt::format("qcow2: backing file name (offset {}, {} bytes) is not inside the first "
                                    "cluster", h.backing_file_offset, h.backing_file_size));
        if (h.backing_file_offset < h.header_length)
            return fail("qcow2: backing file name overlaps the header");
        h.backing_file.assign(reinterpret_cast<const char*>(data.data() + h.backing_file_offset),
                              h.backing_file_size);
        if (h.backing_file.find('\0') != std::string::npos)
            return fail("qcow2: backing file name contains a NUL byte");
        area_end = std::min<uint64_t>(area_end, h.backing_file_offset);
    }
    if (h.header_length + 8 <= area_end) {
        if (auto r = parse_extensions(data, h.header_length, area_end, h); !r)
            return std::unexpected(r.error());
    }
    return h;
}

Result<std::vector<uint8_t>> serialize_header(const Header& h)
{
    const uint64_t cs = h.cluster_size();
    std::vector<uint8_t> out(cs, 0);
    uint8_t* p = out.data();
    store_be32(p, k_magic);
    store_be32(p + 4, h.version);
    store_be32(p + 20, h.cluster_bits);
    store_be64(p + 24, h.size);
    store_be32(p + 32, h.crypt_method);
    store_be32(p + 36, h.l1_size);
    store_be64(p + 40, h.l1_table_offset);
    store_be64(p + 48, h.refcount_table_offset);
    store_be32(p + 56, h.refcount_table_clusters);
    store_be32(p + 60, h.nb_snapshots);
    store_be64(p + 64, h.snapshots_offset);
    uint64_t pos = k_v2_header_size;
    if (h.version >= 3) {
        store_be64(p + 72, h.incompatible_features);
        store_be64(p + 80, h.compatible_features);
        store_be64(p + 88, h.autoclear_features);
        store_be32(p + 96, h.refcount_order);
        store_be32(p + 100, 112);
        p[104] = uint8_t(h.compression_type);
        pos = 112;
    }
    auto put_ext = [&](uint32_t type, const uint8_t* data, size_t len) -> bool {
        uint64_t padded = (len + 7) & ~size_t(7);
        if (pos + 8 + padded + 8 > cs)
            return false;
        store_be32(p + pos, type);
        store_be32(p + pos + 4, uint32_t(len));
        std::copy(data, data + len, p + pos + 8);
        pos += 8 + padded;
        return true;
    };
    if (!h.backing_format.empty()) {
        if (!put_ext(k_ext_backing_format, reinterpret_cast<const uint8_t*>(h.backing_format.data()),
                     h.backing_format.size()))
            return fail("qcow2: header extensions do not fit in the first cluster");
    }
    for (const auto& [type, data] : h.unknown_extensions) {
        if (!put_ext(type, data.data(), data.size()))
            return fail("qcow2: header extensions do not fit in the first cluster");
    }
    pos += 8; // end-of-extensions marker (zeroes)
    if (!h.backing_file.empty()) {
        if (h.backing_file.size() > k_max_backing_name || pos + h.backing_file.size() > cs)
            return fail(fmt::format("qcow2: backing file name '{}' is too long", h.backing_file));
        store_be64(p + 8, pos);
        store_be32(p + 16, uint32_t(h.backing_file.size()));
        std::copy(h.backing_file.begin(), h.backing_file.end(), p + pos);
    }
    return out;
}

Result<std::vector<Snapshot>> parse_snapshots(std::span<const uint8_t> table, const Header& h, uint64_t file_size,
                                              uint64_t* table_bytes)
{
    std::vector<Snapshot> out;
    const uint64_t cs = h.cluster_size();
    uint64_t pos = 0;
    for (uint32_t i = 0; i < h.nb_snapshots; i++) {
        if (pos + 40 > table.size())
            return fail(fmt::format("qcow2: snapshot table entry {} runs past the end of the table", i));
        const uint8_t* p = table.data() + pos;
        Snapshot s;
        s.l1_table_offset = load_be64(p);
        s.l1_size = load_be32(p + 8);
        uint16_t id_size = load_be16(p + 12);
        uint16_t name_size = load_be16(p + 14);
        s.date_sec = load_be32(p + 16);
        s.date_nsec = load_be32(p + 20);
        s.vm_clock_nsec = load_be64(p + 24);
        s.vm_state_size = load_be32(p + 32);
        uint32_t extra = load_be32(p + 36);
        if (extra > k_max_snapshot_extra)
            return fail(fmt::format("qcow2: snapshot table entry {} has too much extra data ({} bytes)", i, extra));
        uint64_t need = 40 + uint64_t(extra) + id_size + name_size;
        if (pos + need > table.size())
            return fail(fmt::format("qcow2: snapshot table entry {} runs past the end of the table", i));
        const uint8_t* e = p + 40;
        if (extra >= 8)
            s.vm_state_size = load_be64(e);
        s.disk_size = extra >= 16 ? load_be64(e + 8) : h.size;
        if (extra >= 24 && load_be64(e + 16) != UINT64_MAX)
            s.icount = load_be64(e + 16);
        if (extra > 24)
            s.unknown_extra.assign(e + 24, e + extra);
        s.id.assign(reinterpret_cast<const char*>(p + 40 + extra), id_size);
        s.name.assign(reinterpret_cast<const char*>(p + 40 + extra + id_size), name_size);
        if (uint64_t(s.l1_size) * 8 > k_max_l1_bytes)
            return fail(fmt::format("qcow2: snapshot '{}' has an L1 table of {} entries, too large", s.id, s.l1_size));
        if (s.l1_size > 0 && (s.l1_table_offset % cs || s.l1_table_offset == 0 ||
                              !fits(s.l1_table_offset, uint64_t(s.l1_size) * 8, file_size)))
            return fail(fmt::format("qcow2: snapshot '{}' L1 table (offset 0x{:x}, {} entries) is invalid", s.id,
                                    s.l1_table_offset, s.l1_size));
        if (s.disk_size > (1ull << 62))
            return fail(fmt::format("qcow2: snapshot '{}' has a disk size of {} bytes, too large", s.id, s.disk_size));
        out.push_back(std::move(s));
        pos += (need + 7) & ~uint64_t(7);
    }
    if (table_bytes)
        *table_bytes = pos;
    return out;
}

std::vector<uint8_t> serialize_snapshots(const std::vector<Snapshot>& snapshots)
{
    std::vector<uint8_t> out;
    for (const auto& s : snapshots) {
        const uint32_t extra = uint32_t(24 + s.unknown_extra.size());
        const uint64_t need = 40 + uint64_t(extra) + s.id.size() + s.name.size();
        const size_t at = out.size();
        out.resize(at + ((need + 7) & ~uint64_t(7)), 0);
        uint8_t* p = out.data() + at;
        store_be64(p, s.l1_table_offset);
        store_be32(p + 8, s.l1_size);
        store_be16(p + 12, uint16_t(s.id.size()));
        store_be16(p + 14, uint16_t(s.name.size()));
        store_be32(p + 16, s.date_sec);
        store_be32(p + 20, s.date_nsec);
        store_be64(p + 24, s.vm_clock_nsec);
        store_be32(p + 32, uint32_t(std::min<uint64_t>(s.vm_state_size, UINT32_MAX)));
        store_be32(p + 36, extra);
        store_be64(p + 40, s.vm_state_size);
        store_be64(p + 48, s.disk_size);
        store_be64(p + 56, s.icount.value_or(UINT64_MAX));
        std::copy(s.unknown_extra.begin(), s.unknown_extra.end(), p + 64);
        std::copy(s.id.begin(), s.id.end(), p + 40 + extra);
        std::copy(s.name.begin(), s.name.end(), p + 40 + extra + s.id.size());
    }
    return out;
}

} // namespace emu::storage::qcow2
