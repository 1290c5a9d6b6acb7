// storage/qcow2/check.cpp — consistency check and repair: recount every
// reference from the metadata, compare with the refcounts on disk, report
// leaks and corruptions with qemu-img's wording, repair leaks (and, with
// CheckRepair::All, too-low refcounts and COPIED flags).
#include "storage/endian.h"
#include "storage/qcow2/qcow2.h"

#include <algorithm>
#include <fmt/format.h>

namespace emu::storage::qcow2 {

class Checker {
public:
    Checker(Driver& d, CheckRepair repair) : m_d(d), m_repair(repair) {}
    Result<CheckResult> run();

private:
    void reference(uint64_t offset, uint64_t bytes);
    void check_l1(uint64_t l1_offset, uint32_t l1_size, bool active);
    void check_l2(uint64_t l2_offset, bool active, uint64_t& next_contiguous);
    void check_refcount_structures();
    Result<void> compare_and_repair();
    Result<void> fix_copied_flags();
    void corruption(std::string msg)
    {
        m_res.corruptions++;
        m_res.messages.push_back(std::move(msg));
    }

    Driver& m_d;
    CheckRepair m_repair;
    CheckResult m_res;
    std::vector<uint32_t> m_refs; // computed references per host cluster
    uint64_t m_nb_clusters = 0;
};

void Checker::reference(uint64_t offset, uint64_t bytes)
{
    if (bytes == 0)
        return;
    const uint64_t cs = m_d.m_cs;
    uint64_t first = offset / cs, last = (offset + bytes - 1) / cs;
    for (uint64_t c = first; c <= last; c++) {
        if (c >= m_nb_clusters) {
            corruption(fmt::format("ERROR: counting reference for region exceeding the end of the file by one cluster "
                                   "or more: offset 0x{:x} size 0x{:x}", offset, bytes));
            return;
        }
        if (m_refs[c] != UINT32_MAX)
            m_refs[c]++;
    }
}

void Checker::check_l2(uint64_t l2_offset, bool active, uint64_t& next_contiguous)
{
    auto t = m_d.m_l2_cache->get(l2_offset);
    if (!t) {
        m_res.check_errors++;
        m_res.messages.push_back(fmt::format("ERROR: I/O error in check_refcounts_l2: {}", t.error().message));
        return;
    }
    const uint64_t cs = m_d.m_cs;
    const uint64_t file_size = m_d.m_file->size();
    for (uint64_t i = 0; i < m_d.m_l2_entries; i++) {
        const uint8_t* ep = (*t)->data.data() + i * uint64_t(m_d.m_l2_entry_bytes);
        uint64_t entry = load_be64(ep);
        if (entry & k_entry_compressed) {
            if (entry & k_entry_copied)
                corruption(fmt::format("ERROR: coffset=0x{:x}: copied flag must never be set for compressed clusters",
                                       entry & ((1ull << (62 - (m_d.m_cluster_bits - 8))) - 1)));
            auto ref = decode_compressed(entry, m_d.m_cluster_bits);
            if (active) {
                // Compressed clusters count as fragmented, as qemu-img counts them.
                m_res.allocated_clusters++;
                m_res.compressed_clusters++;
                m_res.fragmented_clusters++;
            }
            if (ref.offset >= file_size) {
                corruption(fmt::format("ERROR compressed cluster at 0x{:x} is beyond the end of the file", ref.offset));
                continue;
            }
            reference(ref.offset & ~uint64_t(511), ref.sectors_bytes + (ref.offset & 511));
            next_contiguous = 0;
            continue;
        }
        uint64_t host = entry & k_l2_offset_mask;
        if (entry & k_l2_reserved)
            corruption(fmt::format("ERROR: L2 entry 0x{:x} at table 0x{:x} index {} has reserved bits set", entry,
                                   l2_offset, i));
        if (host == 0)
            continue;
        if (host % cs) {
            corruption(fmt::format("ERROR offset={:x}: Cluster is not properly aligned; L2 entry corrupted.", host));
            continue;
        }
        if (active) {
            m_res.allocated_clusters++;
            if (next_contiguous && host != next_contiguous)
                m_res.fragmented_clusters++;
            next_contiguous = host + cs;
        }
        reference(host, cs);
    }
}

void Checker::check_l1(uint64_t l1_offset, uint32_t l1_size, bool active)
{
    if (l1_size == 0)
        return;
    reference(l1_offset, uint64_t(l1_size) * 8);
    std::vector<uint64_t> l1;
    if (active) {
        l1 = m_d.m_l1;
    } else {
        std::vector<uint8_t> raw(size_t(l1_size) * 8);
        if (auto r = m_d.m_file->read(l1_offset, raw); !r) {
            m_res.check_errors++;
            m_res.messages.push_back(fmt::format("ERROR: I/O error in check_refcounts_l1: {}", r.error().message));
            return;
        }
        for (uint32_t i = 0; i < l1_size; i++)
            l1.push_back(load_be64(raw.data() + i * 8));
    }
    const uint64_t cs = m_d.m_cs;
    uint64_t next_contiguous = 0;
    for (size_t i = 0; i < l1.size(); i++) {
        uint64_t off = l1[i] & k_l1_offset_mask;
        if (off == 0)
            continue;
        if (l1[i] & k_l1_reserved)
            corruption(fmt::format("ERROR: L1 entry {} (0x{:x}) has reserved bits set", i, l1[i]));
        if (off % cs) {
            corruption(fmt::format("ERROR l2_offset={:x}: Table is not cluster aligned; L1 entry corrupted", off));
            continue;
        }
        if (off < cs || off + cs > m_d.m_file->size()) {
            corruption(fmt::format("ERROR l2_offset={:x}: Table is outside the image; L1 entry corrupted", off));
            continue;
        }
        reference(off, cs);
        check_l2(off, active, next_contiguous);
    }
}

void Checker::check_refcount_structures()
{
    const uint64_t cs = m_d.m_cs;
    reference(m_d.m_header.refcount_table_offset, uint64_t(m_d.m_header.refcount_table_clusters) * cs);
    for (size_t i = 0; i < m_d.m_reftable.size(); i++) {
        uint64_t entry = m_d.m_reftable[i];
        uint64_t off = entry & k_reftable_offset_mask;
        if (off == 0)
            continue;
        if ((entry & 511) || off % cs) {
            corruption(fmt::format("ERROR refcount block {} is not cluster aligned; refcount table entry corrupted", i));
            continue;
        }
        if (off < cs || off + cs > m_d.m_file->size()) {
            corruption(fmt::format("ERROR refcount block {} is outside image", i));
            continue;
        }
        reference(off, cs);
    }
}

Result<void> Checker::compare_and_repair()
{
    const uint64_t cs = m_d.m_cs;
    uint64_t highest = 0;
    bool any = false;
    uint64_t covered = uint64_t(m_d.m_reftable.size()) * m_d.m_refblock_entries;
    uint64_t limit = std::max(m_nb_clusters, std::min<uint64_t>(covered, m_nb_clusters + m_d.m_refblock_entries));
    // Clusters described beyond that limit can only be described by blocks we visit below.
    for (uint64_t c = 0; c < limit; c++) {
        uint64_t bi = c / m_d.m_refblock_entries;
        uint64_t entry = bi < m_d.m_reftable.size() ? m_d.m_reftable[bi] : 0;
        uint64_t boff = entry & k_reftable_offset_mask;
        bool block_ok = boff && !(entry & 511) && boff % cs == 0 && boff >= cs && boff + cs <= m_d.m_file->size();
        uint64_t on_disk = 0;
        if (block_ok) {
            auto b = m_d.m_refblock_cache->get(boff);
            if (!b) {
                m_res.check_errors++;
                m_res.messages.push_back(fmt::format("ERROR: I/O error reading refcount block {}", bi));
                continue;
            }
            on_disk = m_d.refcount_entry(**b, c % m_d.m_refblock_entries);
        }
        uint64_t computed = c < m_nb_clusters ? m_refs[c] : 0;
        if (on_disk || computed) {
            highest = c;
            any = true;
        }
        if (on_disk == computed)
            continue;
        bool leak = on_disk > computed;
        bool fix = m_repair == CheckRepair::All || (m_repair == CheckRepair::Leaks && leak);
        m_res.messages.push_back(fmt::format("{} cluster {} refcount={} reference={}",
                                             fix ? "Repairing" : leak ? "Leaked" : "ERROR", c, on_disk, computed));
        if (leak)
            m_res.leaks++;
        else
            m_res.corruptions++;
        if (!fix)
            continue;
        if (!block_ok) {
            if (bi < m_d.m_reftable.size() && m_d.m_reftable[bi]) {
                m_d.m_refblocks.erase(boff);
                m_d.m_reftable[bi] = 0;
                if (auto r = m_d.write_reftable_entry(bi); !r)
                    return r;
            }
            if (auto r = m_d.ensure_refblock(bi); !r)
                return r;
        }
        auto b = m_d.load_refblock(bi);
        if (!b)
            return std::unexpected(b.error());
        m_d.set_refcount_entry(**b, c % m_d.m_refblock_entries, computed);
        if (leak)
            m_res.leaks_fixed++;
        else
            m_res.corruptions_fixed++;
    }
    m_res.image_end_offset = any ? (highest + 1) * cs : 0;
    return {};
}

Result<void> Checker::fix_copied_flags()
{
    const uint64_t cs = m_d.m_cs;
    for (size_t i = 0; i < m_d.m_l1.size(); i++) {
        uint64_t off = m_d.m_l1[i] & k_l1_offset_mask;
        if (!off || off % cs || off + cs > m_d.m_file->size() || off < cs)
            continue;
        auto rc = m_d.get_refcount(off / cs);
        if (!rc)
            return std::unexpected(rc.error());
        bool want = *rc == 1;
        if (want != bool(m_d.m_l1[i] & k_entry_copied)) {
            bool fix = m_repair == CheckRepair::All;
            m_res.messages.push_back(fmt::format("{} OFLAG_COPIED L2 cluster: l1_index={} l1_entry={:x} refcount={}",
                                                 fix ? "Repairing" : "ERROR", i, m_d.m_l1[i], *rc));
            m_res.corruptions++;
            if (fix) {
                m_d.m_l1[i] = want ? m_d.m_l1[i] | k_entry_copied : m_d.m_l1[i] & ~k_entry_copied;
                if (auto r = m_d.write_l1_entry(i); !r)
                    return r;
                m_res.corruptions_fixed++;
            }
        }
        auto t = m_d.m_l2_cache->get(off);
        if (!t)
            return std::unexpected(t.error());
        for (uint64_t j = 0; j < m_d.m_l2_entries; j++) {
            uint8_t* ep = (*t)->data.data() + j * uint64_t(m_d.m_l2_entry_bytes);
            uint64_t entry = load_be64(ep);
            uint64_t host = entry & k_l2_offset_mask;
            if ((entry & k_entry_compressed) || !host || host % cs || host >= m_d.m_file->size())
                continue;
            auto drc = m_d.get_refcount(host / cs);
            if (!drc)
                return std::unexpected(drc.error());
            bool want_copied = *drc == 1;
            if (want_copied == bool(entry & k_entry_copied))
                continue;
            bool fix = m_repair == CheckRepair::All;
            m_res.messages.push_back(fmt::format("{} OFLAG_COPIED data cluster: l2_entry={:x} refcount={}",
                                                 fix ? "Repairing" : "ERROR", entry, *drc));
            m_res.corruptions++;
            if (fix) {
                store_be64(ep, want_copied ? entry | k_entry_copied : entry & ~k_entry_copied);
                m_d.m_l2_cache->mark_dirty(*t);
                m_res.corruptions_fixed++;
            }
        }
    }
    return {};
}

Result<CheckResult> Checker::run()
{
    const uint64_t cs = m_d.m_cs;
    const uint64_t file_size = m_d.m_file->size();
    m_nb_clusters = (file_size + cs - 1) / cs;
    if (m_nb_clusters > (1ull << 27))
        return fail(fmt::format("qcow2: image file is too large to check ({} clusters, limit {})", m_nb_clusters,
                                1ull << 27));
    m_refs.assign(size_t(m_nb_clusters), 0);
    m_res.total_clusters = (m_d.m_header.size + cs - 1) / cs;
    if (m_repair != CheckRepair::None) {
        if (auto r = m_d.flush(); !r)
            return std::unexpected(r.error());
        // New refcount structures go past everything that might be in use.
        m_d.m_free_hint = std::max(m_d.m_free_hint, m_nb_clusters);
    }

    reference(0, cs); // header
    check_l1(m_d.m_header.l1_table_offset, m_d.m_header.l1_size, true);
    for (const auto& s : m_d.m_snapshots)
        check_l1(s.l1_table_offset, s.l1_size, false);
    if (m_d.m_header.nb_snapshots > 0)
        reference(m_d.m_header.snapshots_offset, m_d.m_snapshot_table_bytes);
    check_refcount_structures();
    if (auto r = compare_and_repair(); !r)
        return std::unexpected(r.error());
    if (auto r = fix_copied_flags(); !r)
        return std::unexpected(r.error());
    if (m_repair != CheckRepair::None) {
        if (auto r = m_d.flush(); !r)
            return std::unexpected(r.error());
    }
    return m_res;
}

Result<CheckResult> Driver::check(CheckRepair repair)
{
    if (repair != CheckRepair::None && m_read_only)
        return fail(fmt::format("qcow2: cannot repair '{}': it is opened read-only", filename()), EROFS);
    Checker checker(*this, repair);
    return checker.run();
}

} // namespace emu::storage::qcow2
