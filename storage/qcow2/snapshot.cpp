// storage/qcow2/snapshot.cpp — internal snapshots: create, apply (goto),
// delete, and the VM state area.
//
// A snapshot is a copy of the active L1 table plus an entry in the snapshot
// table. Refcounts count L1 tables: a cluster reached from the active L1 and
// from one snapshot has refcount 2, even when both reach it through the same
// shared L2 table. Shared clusters lose the COPIED flag, so the write path
// copies them (and their L2 tables) before changing them. Refcounts are
// raised before anything refers to the new copy and lowered only after
// nothing does, so a crash in between leaks clusters and never frees one in
// use.
#include "storage/endian.h"
#include "storage/qcow2/qcow2.h"

#include <algorithm>
#include <ctime>
#include <unordered_map>
#include <fmt/format.h>

namespace emu::storage::qcow2 {

std::optional<size_t> Driver::find_snapshot(std::string_view id_or_name) const
{
    for (size_t i = 0; i < m_snapshots.size(); i++)
        if (m_snapshots[i].id == id_or_name)
            return i;
    for (size_t i = 0; i < m_snapshots.size(); i++)
        if (m_snapshots[i].name == id_or_name)
            return i;
    return std::nullopt;
}

Result<std::vector<uint64_t>> Driver::read_l1(uint64_t offset, uint32_t entries)
{
    std::vector<uint64_t> l1(entries, 0);
    if (entries == 0)
        return l1;
    std::vector<uint8_t> raw(size_t(entries) * 8);
    if (auto r = m_file->read(offset, raw); !r)
        return chain(fmt::format("qcow2: cannot read the snapshot L1 table at 0x{:x}", offset), r.error());
    for (size_t i = 0; i < l1.size(); i++)
        l1[i] = load_be64(raw.data() + i * 8);
    return l1;
}

Result<void> Driver::update_l1_refcounts(std::vector<uint64_t>& l1, int delta)
{
    const uint64_t file_size = m_file->size();
    for (size_t i = 0; i < l1.size(); i++) {
        const uint64_t l2_off = l1[i] & k_l1_offset_mask;
        if (!l2_off)
            continue;
        if ((l1[i] & k_l1_reserved) || l2_off % m_cs || l2_off < m_cs || l2_off + m_cs > file_size ||
            m_refblocks.count(l2_off) || overlaps_snapshot_meta(l2_off, m_cs) ||
            (l2_off < m_header.refcount_table_offset + uint64_t(m_header.refcount_table_clusters) * m_cs &&
             m_header.refcount_table_offset < l2_off + m_cs))
            return corrupt(fmt::format("L1 entry {} (0x{:x}) does not point to a valid L2 table", i, l1[i]));
        auto t = m_l2_cache->get(l2_off);
        if (!t)
            return std::unexpected(t.error());
        TableRef table = *t;
        bool changed = false;
        for (uint64_t j = 0; j < m_l2_entries; j++) {
            uint8_t* ep = table->data.data() + j * uint64_t(m_l2_entry_bytes);
            const uint64_t entry = load_be64(ep);
            if (entry & k_entry_compressed) {
                if (delta != 0) {
                    auto ref = decode_compressed(entry, m_cluster_bits);
                    if (ref.offset < m_cs || ref.offset >= file_size)
                        return corrupt(fmt::format("compressed cluster descriptor 0x{:x} in the L2 table at 0x{:x} "
                                                   "points outside the image", entry, l2_off));
                    uint64_t first = ref.offset / m_cs, last = (ref.offset + ref.sectors_bytes - 1) / m_cs;
                    for (uint64_t c = first; c <= last; c++)
                        if (auto r = update_refcount(c, delta); !r)
                            return r;
                }
                continue;
            }
            const uint64_t host = entry & k_l2_offset_mask;
            if (!host)
                continue;
            if (host % m_cs || host < m_cs)
                return corrupt(fmt::format("L2 entry 0x{:x} in the table at 0x{:x} points to an invalid cluster",
                                           entry, l2_off));
            if (delta != 0) {
                if (auto r = update_refcount(host >> m_cluster_bits, delta); !r)
                    return r;
            }
            auto rc = get_refcount(host >> m_cluster_bits);
            if (!rc)
                return std::unexpected(rc.error());
            const uint64_t want = *rc == 1 ? entry | k_entry_copied : entry & ~k_entry_copied;
            if (want != entry) {
                store_be64(ep, want);
                changed = true;
            }
        }
        if (changed)
            m_l2_cache->mark_dirty(table);
        // Last: lowering the table's own refcount to zero forgets it in the cache.
        if (delta != 0) {
            if (auto r = update_refcount(l2_off >> m_cluster_bits, delta); !r)
                return r;
        }
        auto rc = get_refcount(l2_off >> m_cluster_bits);
        if (!rc)
            return std::unexpected(rc.error());
        l1[i] = *rc == 1 ? l1[i] | k_entry_copied : l1[i] & ~k_entry_copied;
    }
    return {};
}

Result<void> Driver::check_refcount_room(const std::vector<uint64_t>& l1)
{
    if (m_refcount_bits >= 32)
        return {};
    // How many references each cluster would gain (several compressed clusters may share one host cluster).
    std::unordered_map<uint64_t, uint64_t> gain;
    for (uint64_t e : l1) {
        const uint64_t l2_off = e & k_l1_offset_mask;
        if (!l2_off)
            continue;
        gain[l2_off >> m_cluster_bits]++;
        auto t = load_l2(0, e);
        if (!t)
            return std::unexpected(t.error());
        for (uint64_t j = 0; j < m_l2_entries; j++) {
            const uint64_t entry = load_be64((*t)->data.data() + j * uint64_t(m_l2_entry_bytes));
            if (entry & k_entry_compressed) {
                auto ref = decode_compressed(entry, m_cluster_bits);
                for (uint64_t c = ref.offset / m_cs; c <= (ref.offset + ref.sectors_bytes - 1) / m_cs; c++)
                    gain[c]++;
            } else if (uint64_t host = entry & k_l2_offset_mask) {
                gain[host >> m_cluster_bits]++;
            }
        }
    }
    for (const auto& [cluster, n] : gain) {
        auto rc = get_refcount(cluster);
        if (!rc)
            return std::unexpected(rc.error());
        if (m_refcount_max - *rc < n)
            return fail(fmt::format("qcow2: cluster {} of '{}' already has {} references, the most {}-bit refcounts "
                                    "can count", cluster, filename(), *rc, m_refcount_bits), EOVERFLOW);
    }
    return {};
}

Result<void> Driver::write_snapshot_table(std::vector<Snapshot> snapshots)
{
    std::vector<uint8_t> raw = serialize_snapshots(snapshots);
    if (raw.size() > k_max_snapshot_table)
        return fail(fmt::format("qcow2: the snapshot table of '{}' would exceed {} bytes", filename(),
                                k_max_snapshot_table), EFBIG);
    uint64_t offset = 0;
    if (!raw.empty()) {
        const uint64_t clusters = (raw.size() + m_cs - 1) / m_cs;
        auto off = alloc_clusters(clusters);
        if (!off)
            return std::unexpected(off.error());
        offset = *off;
        const size_t used = raw.size();
        raw.resize(clusters * m_cs, 0);
        if (auto r = m_file->write(offset, raw); !r)
            return chain("qcow2: cannot write the snapshot table", r.error());
        raw.resize(used);
    }
    // The table and its refcounts are on disk before the header points at it.
    if (auto r = flush(); !r)
        return r;
    const uint64_t old_offset = m_header.nb_snapshots ? m_header.snapshots_offset : 0;
    const uint64_t old_bytes = m_snapshot_table_bytes;
    m_header.nb_snapshots = uint32_t(snapshots.size());
    m_header.snapshots_offset = offset;
    if (auto r = write_header(); !r)
        return r;
    if (auto r = m_file->flush(); !r)
        return r;
    m_snapshots = std::move(snapshots);
    m_snapshot_table_bytes = raw.size();
    index_metadata();
    if (old_offset && old_bytes)
        return free_range(old_offset, (old_bytes + m_cs - 1) / m_cs * m_cs);
    return {};
}

uint64_t Driver::vm_state_offset() const
{
    const uint64_t per_l2 = m_l2_entries * m_cs;
    return (m_header.size + per_l2 - 1) / per_l2 * per_l2;
}

Result<void> Driver::snapshot_create(const SnapshotInfo& info)
{
    if (auto r = writable(); !r)
        return r;
    if (m_snapshots.size() >= k_max_snapshots)
        return fail(fmt::format("qcow2: '{}' already has the maximum of {} snapshots", filename(), k_max_snapshots),
                    EFBIG);
    if (info.name.size() > k_max_snapshot_name || info.id.size() > k_max_snapshot_name)
        return fail(fmt::format("qcow2: snapshot name '{}' is too long", info.name), EINVAL);
    Snapshot sn;
    sn.id = info.id;
    if (sn.id.empty()) {
        // One more than the largest numeric ID, as QEMU numbers them.
        uint64_t max_id = 0;
        for (const auto& s : m_snapshots) {
            char* end = nullptr;
            unsigned long long v = std::strtoull(s.id.c_str(), &end, 10);
            if (end && *end == '\0' && !s.id.empty())
                max_id = std::max<uint64_t>(max_id, v);
        }
        sn.id = std::to_string(max_id + 1);
    } else {
        for (const auto& s : m_snapshots)
            if (s.id == sn.id)
                return fail(fmt::format("qcow2: a snapshot with ID '{}' already exists", sn.id), EEXIST);
    }
    sn.name = info.name;
    sn.date_sec = info.date_sec;
    sn.date_nsec = info.date_nsec;
    sn.vm_clock_nsec = info.vm_clock_nsec;
    sn.vm_state_size = info.vm_state_size;
    sn.icount = info.icount;
    sn.disk_size = m_header.size;
    if (info.date_sec == 0 && info.date_nsec == 0) {
        struct timespec ts{};
        clock_gettime(CLOCK_REALTIME, &ts);
        sn.date_sec = uint32_t(ts.tv_sec);
        sn.date_nsec = uint32_t(ts.tv_nsec / 1000 * 1000);
    }
    if (auto r = flush(); !r)
        return r;

    if (auto r = check_refcount_room(m_l1); !r)
        return r;
    // 1. A copy of the active L1 table (COPIED flags only mean something in the active one).
    sn.l1_size = uint32_t(m_l1.size());
    if (!m_l1.empty()) {
        const uint64_t clusters = (m_l1.size() * 8 + m_cs - 1) / m_cs;
        auto off = alloc_clusters(clusters);
        if (!off)
            return std::unexpected(off.error());
        std::vector<uint8_t> raw(clusters * m_cs, 0);
        for (size_t i = 0; i < m_l1.size(); i++)
            store_be64(raw.data() + i * 8, m_l1[i] & ~k_entry_copied);
        if (auto r = m_file->write(*off, raw); !r)
            return chain("qcow2: cannot write the snapshot's L1 table", r.error());
        sn.l1_table_offset = *off;
    }
    // 2. Everything the active L1 reaches gains a reference and becomes shared.
    if (auto r = update_l1_refcounts(m_l1, +1); !r)
        return r;
    if (auto r = write_l1_table(); !r)
        return r;
    // 3. The snapshot table.
    std::vector<Snapshot> next = m_snapshots;
    next.push_back(sn);
    if (auto r = write_snapshot_table(std::move(next)); !r)
        return r;
    // 4. The saved VM state belongs to the snapshot now; the active image does not need it.
    if (sn.vm_state_size) {
        const uint64_t start = vm_state_offset();
        const uint64_t end = start + (sn.vm_state_size + m_cs - 1) / m_cs * m_cs;
        for (uint64_t pos = start; pos < end; pos += m_cs) {
            if ((pos >> m_cluster_bits) / m_l2_entries >= m_l1.size())
                break;
            if (auto r = zero_cluster(pos, true, true); !r)
                return r;
        }
    }
    return flush();
}

Result<void> Driver::snapshot_load_tmp(std::string_view id_or_name)
{
    if (!m_read_only)
        return fail(fmt::format("qcow2: '{}' must be opened read-only to load a snapshot temporarily", filename()),
                    EINVAL);
    auto idx = find_snapshot(id_or_name);
    if (!idx)
        return fail(fmt::format("qcow2: '{}' has no snapshot '{}'", filename(), id_or_name), ENOENT);
    const Snapshot& sn = m_snapshots[*idx];
    auto l1 = read_l1(sn.l1_table_offset, sn.l1_size);
    if (!l1)
        return std::unexpected(l1.error());
    m_l1 = std::move(*l1);
    m_header.size = sn.disk_size;
    return {};
}

Result<void> Driver::snapshot_goto(std::string_view id_or_name)
{
    auto idx = find_snapshot(id_or_name);
    if (!idx)
        return fail(fmt::format("qcow2: '{}' has no snapshot '{}'", filename(), id_or_name), ENOENT);
    if (auto r = writable(); !r)
        return r;
    if (auto r = flush(); !r)
        return r;
    const Snapshot sn = m_snapshots[*idx];
    auto snap_l1 = read_l1(sn.l1_table_offset, sn.l1_size);
    if (!snap_l1)
        return std::unexpected(snap_l1.error());
    // The active L1 must hold the snapshot's table and cover its disk size.
    const uint64_t per_l2 = m_l2_entries * m_cs;
    const uint64_t need = std::max<uint64_t>(sn.l1_size, (sn.disk_size + per_l2 - 1) / per_l2);
    if (auto r = grow_l1(need); !r)
        return r;
    std::vector<uint64_t> next(m_l1.size(), 0);
    std::copy(snap_l1->begin(), snap_l1->end(), next.begin());
    if (auto r = check_refcount_room(next); !r)
        return r;
    if (auto r = update_l1_refcounts(next, +1); !r)
        return r;
    std::vector<uint64_t> old = std::move(m_l1);
    m_l1 = std::move(next);
    if (auto r = write_l1_table(); !r)
        return r;
    if (auto r = flush(); !r)
        return r;
    if (auto r = update_l1_refcounts(old, -1); !r)
        return r;
    if (auto r = update_l1_refcounts(m_l1, 0); !r)
        return r;
    if (auto r = write_l1_table(); !r)
        return r;
    index_metadata();
    m_ccache_host = UINT64_MAX;
    m_compressed_next = 0;
    if (sn.disk_size != m_header.size) {
        m_header.size = sn.disk_size;
        if (auto r = write_header(); !r)
            return r;
    }
    return flush();
}

Result<void> Driver::snapshot_delete(std::string_view id_or_name)
{
    auto idx = find_snapshot(id_or_name);
    if (!idx)
        return fail(fmt::format("qcow2: '{}' has no snapshot '{}'", filename(), id_or_name), ENOENT);
    if (auto r = writable(); !r)
        return r;
    if (auto r = flush(); !r)
        return r;
    const Snapshot sn = m_snapshots[*idx];
    auto snap_l1 = read_l1(sn.l1_table_offset, sn.l1_size);
    if (!snap_l1)
        return std::unexpected(snap_l1.error());
    std::vector<Snapshot> next = m_snapshots;
    next.erase(next.begin() + std::ptrdiff_t(*idx));
    if (auto r = write_snapshot_table(std::move(next)); !r)
        return r;
    if (auto r = update_l1_refcounts(*snap_l1, -1); !r)
        return r;
    if (sn.l1_size) {
        if (auto r = free_range(sn.l1_table_offset, (uint64_t(sn.l1_size) * 8 + m_cs - 1) / m_cs * m_cs); !r)
            return r;
    }
    // Clusters only the active image still uses get their COPIED flags back.
    if (auto r = update_l1_refcounts(m_l1, 0); !r)
        return r;
    if (auto r = write_l1_table(); !r)
        return r;
    m_ccache_host = UINT64_MAX;
    m_compressed_next = 0;
    return flush();
}

Result<void> Driver::vmstate_write(uint64_t pos, std::span<const uint8_t> buf)
{
    if (auto r = writable(); !r)
        return r;
    const uint64_t start = vm_state_offset();
    if (pos > (1ull << 62) || buf.size() > (1ull << 62) - pos)
        return fail(fmt::format("qcow2: VM state write of {} bytes at {} is out of range", buf.size(), pos), EINVAL);
    if (buf.empty())
        return {};
    const uint64_t per_l2 = m_l2_entries * m_cs;
    if (auto r = grow_l1((start + pos + buf.size() - 1) / per_l2 + 1); !r)
        return r;
    return write_range(start + pos, buf);
}

Result<void> Driver::vmstate_read(uint64_t pos, std::span<uint8_t> buf)
{
    if (pos > (1ull << 62) || buf.size() > (1ull << 62) - pos)
        return fail(fmt::format("qcow2: VM state read of {} bytes at {} is out of range", buf.size(), pos), EINVAL);
    return read_range(vm_state_offset() + pos, buf);
}

} // namespace emu::storage::qcow2
