// storage/qcow2/resize.cpp — changing an image in place: resize (grow with
// preallocation, shrink), make_empty (after a commit), a new backing file
// name, and amend (compat 0.10 <-> 1.1, lazy refcounts, size).
#include "storage/endian.h"
#include "storage/qcow2/qcow2.h"

#include <algorithm>
#include <fmt/format.h>
#include <unordered_set>

namespace emu::storage::qcow2 {

Result<void> Driver::drop_clusters_from(uint64_t first)
{
    for (uint64_t i = first / m_l2_entries; i < m_l1.size(); i++) {
        if (!(m_l1[i] & k_l1_offset_mask))
            continue;
        if (i * m_l2_entries >= first) {
            // The whole table goes: it, and what it reaches, lose the active image's reference.
            std::vector<uint64_t> one = {m_l1[i]};
            if (auto r = update_l1_refcounts(one, -1); !r)
                return r;
            m_l1[i] = 0;
            continue;
        }
        auto t = l2_for_write(i);
        if (!t)
            return std::unexpected(t.error());
        TableRef table = *t;
        for (uint64_t j = first % m_l2_entries; j < m_l2_entries; j++) {
            uint8_t* ep = table->data.data() + j * uint64_t(m_l2_entry_bytes);
            const uint64_t entry = load_be64(ep);
            if (!entry)
                continue;
            store_be64(ep, 0);
            m_l2_cache->mark_dirty(table);
            if (auto r = free_entry(entry); !r)
                return r;
        }
    }
    if (auto r = write_l1_table(); !r)
        return r;
    index_metadata();
    m_ccache_host = UINT64_MAX;
    m_compressed_next = 0;
    return flush();
}

Result<void> Driver::truncate_file_to_used()
{
    // Refcount blocks that count nothing but themselves go first: they would keep the file long.
    if (auto r = flush(); !r)
        return r;
    for (uint64_t i = 1; i < m_reftable.size(); i++) {
        const uint64_t off = m_reftable[i] & k_reftable_offset_mask;
        if (!off)
            continue;
        auto block = load_refblock(i);
        if (!block)
            return std::unexpected(block.error());
        const uint64_t own = off >> m_cluster_bits;
        const bool describes_itself = own / m_refblock_entries == i;
        bool empty = true;
        for (uint64_t j = 0; j < m_refblock_entries && empty; j++)
            empty = refcount_entry(**block, j) == 0 || (describes_itself && j == own % m_refblock_entries);
        if (!empty)
            continue;
        block->reset();
        m_refblock_cache->discard(off);
        m_refblocks.erase(off);
        m_reftable[i] = 0;
        if (auto r = write_reftable_entry(i); !r)
            return r;
        if (!describes_itself) {
            if (auto r = update_refcount(own, -1); !r)
                return r;
        }
    }
    if (auto r = flush(); !r)
        return r;
    uint64_t end = (m_file->size() + m_cs - 1) >> m_cluster_bits;
    while (end > 1) {
        auto rc = get_refcount(end - 1);
        if (!rc)
            return std::unexpected(rc.error());
        if (*rc)
            break;
        end--;
    }
    if ((end << m_cluster_bits) >= m_file->size())
        return {};
    if (auto r = m_file->resize(end << m_cluster_bits, Preallocation::Off); !r)
        return r;
    m_free_hint = std::min(m_free_hint, end);
    return {};
}

Result<void> Driver::resize(uint64_t size, Preallocation prealloc)
{
    if (size % 512)
        return fail("The new size must be a multiple of 512", EINVAL);
    if (size > (1ull << 62))
        return fail(fmt::format("qcow2: a virtual size of {} bytes is too large", size), EFBIG);
    if (auto r = writable(); !r)
        return r;
    if (!m_snapshots.empty() && m_header.version < 3)
        return fail("Can't resize a v2 image which has snapshots", ENOTSUP);
    const uint64_t old = m_header.size;
    if (size < old) {
        if (prealloc != Preallocation::Off)
            return fail("Preallocation can only be used for growing images", EINVAL);
        if (auto r = drop_clusters_from((size + m_cs - 1) >> m_cluster_bits); !r)
            return r;
        m_header.size = size;
        if (auto r = write_header(); !r)
            return r;
        if (auto r = flush(); !r)
            return r;
        return truncate_file_to_used();
    }
    if (size == old)
        return {};
    const uint64_t per_l2 = m_l2_entries * m_cs;
    if (auto r = grow_l1((size + per_l2 - 1) / per_l2); !r)
        return r;
    m_header.size = size;
    // Old data past the old end of a partial last cluster must not reappear.
    if (old % m_cs) {
        auto m = lookup(old);
        if (!m)
            return std::unexpected(m.error());
        if (m->kind == Kind::Normal || m->kind == Kind::Compressed) {
            std::vector<uint8_t> zeroes(size_t(std::min(size, old - old % m_cs + m_cs) - old), 0);
            if (auto r = write_range(old, zeroes); !r)
                return r;
        }
    }
    // Nor may a longer backing file show through the new area.
    if (m_backing && m_backing->size() > old) {
        if (auto r = write_zeroes(old, std::min(size, m_backing->size()) - old, false); !r)
            return r;
    }
    if (auto r = write_header(); !r)
        return r;
    if (auto r = preallocate(prealloc, old, size); !r)
        return r;
    if (prealloc == Preallocation::Falloc || prealloc == Preallocation::Full) {
        // Metadata written since has gone past the preallocated data; nothing else to do.
    }
    return flush();
}

Result<void> Driver::make_empty()
{
    if (auto r = writable(); !r)
        return r;
    if (auto r = flush(); !r)
        return r;
    if (auto r = drop_clusters_from(0); !r)
        return r;
    return truncate_file_to_used();
}

Result<void> Driver::set_backing_file(const std::string& name, const std::string& format)
{
    if (auto r = writable(); !r)
        return r;
    Header h = m_header;
    h.backing_file = name;
    h.backing_format = name.empty() ? "" : format;
    if (name.size() > k_max_backing_name)
        return fail(fmt::format("qcow2: backing file name '{}' is too long", name), ENAMETOOLONG);
    auto raw = serialize_header(h);
    if (!raw)
        return std::unexpected(raw.error());
    if (auto r = flush(); !r)
        return r;
    m_header = std::move(h);
    if (auto r = write_header(); !r)
        return r;
    return m_file->flush();
}

// Version 2 has no zero flag: zero clusters become real zeroes, in the active
// tables and in every snapshot's.
Result<void> Driver::expand_zero_clusters()
{
    std::vector<std::vector<uint64_t>> l1s = {m_l1};
    for (const auto& sn : m_snapshots) {
        auto l1 = read_l1(sn.l1_table_offset, sn.l1_size);
        if (!l1)
            return std::unexpected(l1.error());
        l1s.push_back(std::move(*l1));
    }
    std::unordered_set<uint64_t> done;
    std::vector<uint8_t> zeroes(m_cs, 0);
    for (const auto& l1 : l1s) {
        for (uint64_t e : l1) {
            const uint64_t l2_off = e & k_l1_offset_mask;
            if (!l2_off || !done.insert(l2_off).second)
                continue;
            auto l2_rc = get_refcount(l2_off >> m_cluster_bits);
            if (!l2_rc)
                return std::unexpected(l2_rc.error());
            for (uint64_t j = 0; j < m_l2_entries; j++) {
                auto t = load_l2(0, e);
                if (!t)
                    return std::unexpected(t.error());
                uint8_t* ep = (*t)->data.data() + j * uint64_t(m_l2_entry_bytes);
                const uint64_t entry = load_be64(ep);
                if ((entry & k_entry_compressed) || !(entry & k_entry_zero))
                    continue;
                uint64_t host = entry & k_l2_offset_mask;
                uint64_t next = 0;
                if (host) {
                    if (overlaps_metadata(host, m_cs))
                        return corrupt(fmt::format("zero cluster entry 0x{:x} points to metadata", entry));
                    if (auto r = m_file->write(host, zeroes); !r)
                        return r;
                    next = entry & ~k_entry_zero;
                } else if (m_backing) {
                    // Zeroes over backing data need a cluster of their own; every L1 table that reaches this L2
                    // table references it.
                    auto fresh = alloc_clusters(1);
                    if (!fresh)
                        return std::unexpected(fresh.error());
                    if (*l2_rc > 1) {
                        if (auto r = update_refcount(*fresh >> m_cluster_bits, int64_t(*l2_rc - 1)); !r)
                            return r;
                    }
                    if (auto r = m_file->write(*fresh, zeroes); !r)
                        return r;
                    next = *fresh | (*l2_rc == 1 ? k_entry_copied : 0);
                }
                auto t2 = load_l2(0, e);
                if (!t2)
                    return std::unexpected(t2.error());
                store_be64((*t2)->data.data() + j * uint64_t(m_l2_entry_bytes), next);
                m_l2_cache->mark_dirty(*t2);
            }
        }
    }
    return flush();
}

Result<void> Driver::amend(const AmendOptions& o)
{
    if (auto r = writable(); !r)
        return r;
    const int version = o.version.value_or(int(m_header.version));
    bool lazy = o.lazy_refcounts.value_or(m_header.compatible_features & k_compat_lazy_refcounts);
    if (version < 3 && o.lazy_refcounts.value_or(false) && !o.version)
        return fail("Lazy refcounts only supported with compatibility level 1.1 and above (use compat=1.1 or greater)",
                    EINVAL);
    if (version < 3) {
        lazy = false; // a downgrade drops them
        if (m_refcount_bits != 16)
            return fail("compat=0.10 requires refcount_bits=16", EINVAL);
        uint64_t blocking = m_header.incompatible_features & ~(k_incompat_dirty | k_incompat_compression);
        if (blocking)
            return fail(fmt::format("Cannot downgrade an image with incompatible features 0x{:x} set", blocking),
                        ENOTSUP);
    }
    if (auto r = flush(); !r)
        return r;
    // An upgrade first (a resize may need it), then lazy refcounts and the size, a downgrade last.
    if (version >= 3 && m_header.version < 3) {
        m_header.version = 3;
        m_header.refcount_order = 4;
        m_header.header_length = k_v3_header_size;
        if (auto r = write_header(); !r)
            return r;
        // Version 3 snapshot entries carry the extra data (VM state size, disk size): rewrite the table.
        if (!m_snapshots.empty()) {
            if (auto r = write_snapshot_table(m_snapshots); !r)
                return r;
        }
    }
    if (m_header.version >= 3) {
        if (lazy) {
            m_header.compatible_features |= k_compat_lazy_refcounts;
        } else {
            // Refcounts are on disk (flushed above): the image is clean.
            m_header.compatible_features &= ~k_compat_lazy_refcounts;
            m_header.incompatible_features &= ~k_incompat_dirty;
            m_dirty_marked = false;
        }
        if (auto r = write_header(); !r)
            return r;
    }
    if (o.size) {
        if (auto r = resize(*o.size, Preallocation::Off); !r)
            return r;
    }
    if (version < 3 && m_header.version >= 3) {
        // Version 2 snapshot entries cannot record another disk size, nor a VM state of 4 GiB or more.
        for (const auto& sn : m_snapshots)
            if (sn.disk_size != m_header.size || sn.vm_state_size > UINT32_MAX)
                return fail("Internal snapshots prevent downgrade of image", ENOTSUP);
        if (m_header.compression_type != CompressionType::Zlib) {
            if (auto r = refuse_compressed_clusters(); !r)
                return r;
        }
        if (auto r = expand_zero_clusters(); !r)
            return r;
        if (auto r = flush(); !r)
            return r;
        m_header.version = 2;
        m_header.incompatible_features = 0;
        m_header.compatible_features = 0;
        m_header.autoclear_features = 0;
        m_header.compression_type = CompressionType::Zlib;
        m_header.header_length = k_v2_header_size;
        m_dirty_marked = false;
        if (auto r = write_header(); !r)
            return r;
    }
    return flush();
}

Result<void> Driver::refuse_compressed_clusters()
{
    std::vector<std::vector<uint64_t>> l1s = {m_l1};
    for (const auto& sn : m_snapshots) {
        auto l1 = read_l1(sn.l1_table_offset, sn.l1_size);
        if (!l1)
            return std::unexpected(l1.error());
        l1s.push_back(std::move(*l1));
    }
    for (const auto& l1 : l1s) {
        for (uint64_t e : l1) {
            if (!(e & k_l1_offset_mask))
                continue;
            auto t = load_l2(0, e);
            if (!t)
                return std::unexpected(t.error());
            for (uint64_t j = 0; j < m_l2_entries; j++)
                if (load_be64((*t)->data.data() + j * uint64_t(m_l2_entry_bytes)) & k_entry_compressed)
                    return fail("Cannot downgrade an image with zstd compression type and existing compressed "
                                "clusters", ENOTSUP);
        }
    }
    return {};
}

} // namespace emu::storage::qcow2
