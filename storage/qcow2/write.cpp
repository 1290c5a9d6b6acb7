// storage/qcow2/write.cpp — write paths: data writes with cluster allocation
// and copy-on-write, zero clusters, discard, compressed writes, L1 growth,
// preallocation.
#include "storage/endian.h"
#include "storage/qcow2/compress.h"
#include "storage/qcow2/qcow2.h"

#include <algorithm>
#include <cstring>
#include <fmt/format.h>

namespace emu::storage::qcow2 {

Result<void> Driver::writable()
{
    if (m_read_only)
        return fail(fmt::format("qcow2: '{}' is opened read-only", filename()), EROFS);
    return mark_dirty_once();
}

Result<void> Driver::mark_dirty_once()
{
    if (m_dirty_marked || !(m_header.compatible_features & k_compat_lazy_refcounts))
        return {};
    m_dirty_marked = true;
    if (m_header.incompatible_features & k_incompat_dirty)
        return {};
    m_header.incompatible_features |= k_incompat_dirty;
    if (auto r = write_header(); !r)
        return r;
    return m_file->flush();
}

Result<TableRef> Driver::l2_for_write(uint64_t l1_index)
{
    if (l1_index >= m_l1.size())
        return fail(fmt::format("qcow2: L1 index {} is beyond the L1 table", l1_index), EINVAL);
    const uint64_t entry = m_l1[l1_index];
    const uint64_t off = entry & k_l1_offset_mask;
    if (off && (entry & k_entry_copied))
        return load_l2(l1_index, entry);
    // A new table, or a private copy of a shared one.
    TableRef old;
    if (off) {
        auto t = load_l2(l1_index, entry);
        if (!t)
            return t;
        old = *t;
    }
    auto fresh = alloc_clusters(1);
    if (!fresh)
        return std::unexpected(fresh.error());
    auto t = m_l2_cache->get_empty(*fresh);
    if (!t)
        return t;
    if (old)
        (*t)->data = old->data;
    if (auto r = m_file->write(*fresh, (*t)->data); !r)
        return chain("qcow2: cannot write a new L2 table", r.error());
    (*t)->dirty = false;
    if (auto r = m_refblock_cache->flush(); !r)
        return std::unexpected(r.error());
    m_l1[l1_index] = *fresh | k_entry_copied;
    m_l2_tables.insert(*fresh);
    if (auto r = write_l1_entry(l1_index); !r)
        return std::unexpected(r.error());
    if (off) {
        m_l2_tables.erase(off);
        if (auto r = free_range(off, m_cs); !r)
            return std::unexpected(r.error());
    }
    return t;
}

Result<void> Driver::free_entry(uint64_t entry)
{
    if (entry & k_entry_compressed) {
        auto ref = decode_compressed(entry, m_cluster_bits);
        if (ref.offset == m_ccache_host)
            m_ccache_host = UINT64_MAX;
        return free_range(ref.offset, ref.sectors_bytes);
    }
    uint64_t host = entry & k_l2_offset_mask;
    if (host == 0)
        return {};
    return free_range(host, m_cs);
}

Result<void> Driver::write_in_cluster(uint64_t offset, std::span<const uint8_t> buf)
{
    const uint64_t in_cluster = offset & (m_cs - 1);
    const uint64_t cluster_start = offset - in_cluster;
    const uint64_t guest_cluster = offset >> m_cluster_bits;
    const uint64_t l1_index = guest_cluster / m_l2_entries;
    const uint64_t l2_index = guest_cluster % m_l2_entries;

    // Validates the current entry (and reads the old contents if needed) first.
    auto mapping = lookup(cluster_start);
    if (!mapping)
        return std::unexpected(mapping.error());
    auto t = l2_for_write(l1_index);
    if (!t)
        return std::unexpected(t.error());
    uint8_t* ep = (*t)->data.data() + l2_index * uint64_t(m_l2_entry_bytes);
    const uint64_t entry = load_be64(ep);
    const uint64_t host = entry & k_l2_offset_mask;
    const bool copied = entry & k_entry_copied;
    const bool compressed = entry & k_entry_compressed;

    if (!compressed && host && copied && !(entry & k_entry_zero)) {
        if (overlaps_metadata(host + in_cluster, buf.size()))
            return corrupt(fmt::format("L2 entry for guest offset 0x{:x} points to metadata at 0x{:x}",
                                       cluster_start, host));
        if (auto r = m_file->write(host + in_cluster, buf); !r)
            return chain(fmt::format("qcow2: cannot write guest offset 0x{:x}", offset), r.error());
        return {};
    }

    uint64_t target;
    bool reuse = !compressed && host && copied && (entry & k_entry_zero);
    bool hole = false; // the new cluster lies past the old end of the file: it reads as zeroes already
    if (reuse) {
        if (overlaps_metadata(host, m_cs))
            return corrupt(fmt::format("L2 entry for guest offset 0x{:x} points to metadata at 0x{:x}",
                                       cluster_start, host));
        target = host;
    } else {
        const uint64_t file_end = m_file->size();
        auto fresh = alloc_clusters(1);
        if (!fresh)
            return std::unexpected(fresh.error());
        target = *fresh;
        hole = target >= file_end;
    }
    const bool old_zero = mapping->kind == Kind::Zero || (mapping->kind == Kind::Unallocated && !m_backing);
    if (hole && old_zero) {
        // Only the new bytes need writing.
        if (auto r = m_file->write(target + in_cluster, buf); !r)
            return chain(fmt::format("qcow2: cannot write guest offset 0x{:x}", offset), r.error());
    } else {
        // Build the whole cluster: the old contents around the new data.
        std::vector<uint8_t> cluster(m_cs, 0);
        if (buf.size() != m_cs) {
            // Past the virtual size (the VM state area) the whole cluster is meaningful.
            uint64_t valid =
                cluster_start < m_header.size ? std::min<uint64_t>(m_cs, m_header.size - cluster_start) : m_cs;
            if (mapping->kind == Kind::Compressed) {
                if (auto r = read_compressed(mapping->host, mapping->span, cluster); !r)
                    return r;
            } else if (mapping->kind != Kind::Zero) {
                // Re-resolve: the mapping covers the whole cluster here (no subclusters when writable).
                if (auto r = read_mapping(*mapping, cluster_start, std::span<uint8_t>(cluster.data(), valid)); !r)
                    return r;
            }
        }
        std::memcpy(cluster.data() + in_cluster, buf.data(), buf.size());
        if (auto r = m_file->write(target, cluster); !r)
            return chain(fmt::format("qcow2: cannot write guest offset 0x{:x}", offset), r.error());
    }
    // The table may have been evicted and reloaded while allocating: look it up again.
    auto t2 = l2_for_write(l1_index);
    if (!t2)
        return std::unexpected(t2.error());
    ep = (*t2)->data.data() + l2_index * uint64_t(m_l2_entry_bytes);
    store_be64(ep, target | k_entry_copied);
    m_l2_cache->mark_dirty(*t2);
    if (!reuse)
        return free_entry(entry);
    return {};
}

Result<void> Driver::write(uint64_t offset, std::span<const uint8_t> buf)
{
    if (offset > m_header.size || buf.size() > m_header.size - offset)
        return fail(fmt::format("qcow2: write of {} bytes at {} is beyond the end of the image ({} bytes)",
                                buf.size(), offset, m_header.size), EINVAL);
    if (auto r = writable(); !r)
        return r;
    return write_range(offset, buf);
}

Result<void> Driver::write_range(uint64_t offset, std::span<const uint8_t> buf)
{
    size_t done = 0;
    while (done < buf.size()) {
        const uint64_t off = offset + done;
        const size_t left = buf.size() - done;
        if ((off & (m_cs - 1)) == 0 && left >= m_cs) {
            auto n = write_clusters(off, buf.subspan(done, left - left % m_cs));
            if (!n)
                return std::unexpected(n.error());
            done += *n;
            continue;
        }
        size_t n = size_t(std::min<uint64_t>(m_cs - (off & (m_cs - 1)), left));
        if (auto r = write_in_cluster(off, buf.subspan(done, n)); !r)
            return r;
        done += n;
    }
    return {};
}

// Whole clusters from `offset` (cluster aligned; buf a multiple of the
// cluster size), within one L2 table: a run that can be written in place
// (COPIED, host-contiguous) goes in one write; a run that needs new clusters
// gets them in one allocation and one write. Returns the bytes written.
Result<uint64_t> Driver::write_clusters(uint64_t offset, std::span<const uint8_t> buf)
{
    const uint64_t guest_cluster = offset >> m_cluster_bits;
    const uint64_t l1_index = guest_cluster / m_l2_entries;
    const uint64_t l2_index = guest_cluster % m_l2_entries;
    // At most 256 clusters a call, each entry validated first (lookup refuses hostile ones).
    const uint64_t max = std::min<uint64_t>({buf.size() >> m_cluster_bits, m_l2_entries - l2_index, 256});
    for (uint64_t i = 0; i < max; i++) {
        if (auto m = lookup(offset + (i << m_cluster_bits)); !m)
            return std::unexpected(m.error());
    }
    auto t = l2_for_write(l1_index);
    if (!t)
        return std::unexpected(t.error());
    auto entry_at = [&](const TableRef& table, uint64_t i) {
        return load_be64(table->data.data() + (l2_index + i) * uint64_t(m_l2_entry_bytes));
    };
    auto in_place = [&](uint64_t e) {
        return !(e & k_entry_compressed) && (e & k_l2_offset_mask) && (e & k_entry_copied);
    };
    const uint64_t first = entry_at(*t, 0);
    uint64_t count = 1;
    if (in_place(first)) {
        const uint64_t host = first & k_l2_offset_mask;
        while (count < max && in_place(entry_at(*t, count)) &&
               (entry_at(*t, count) & k_l2_offset_mask) == host + (count << m_cluster_bits))
            count++;
        const uint64_t bytes = count << m_cluster_bits;
        if (overlaps_metadata(host, bytes))
            return corrupt(fmt::format("L2 entry for guest offset 0x{:x} points to metadata at 0x{:x}", offset, host));
        if (auto r = m_file->write(host, buf.first(bytes)); !r)
            return chain(fmt::format("qcow2: cannot write guest offset 0x{:x}", offset), r.error());
        // Preallocated zero clusters now hold data.
        bool changed = false;
        for (uint64_t i = 0; i < count; i++) {
            uint8_t* ep = (*t)->data.data() + (l2_index + i) * uint64_t(m_l2_entry_bytes);
            if (load_be64(ep) & k_entry_zero) {
                store_be64(ep, load_be64(ep) & ~k_entry_zero);
                changed = true;
            }
        }
        if (changed)
            m_l2_cache->mark_dirty(*t);
        return bytes;
    }
    while (count < max && !in_place(entry_at(*t, count)))
        count++;
    std::vector<uint64_t> old(count);
    for (uint64_t i = 0; i < count; i++)
        old[i] = entry_at(*t, i);
    const uint64_t bytes = count << m_cluster_bits;
    auto host = alloc_clusters(count);
    if (!host)
        return std::unexpected(host.error());
    if (auto r = m_file->write(*host, buf.first(bytes)); !r)
        return chain(fmt::format("qcow2: cannot write guest offset 0x{:x}", offset), r.error());
    // The table may have been evicted and reloaded while allocating: look it up again.
    auto t2 = l2_for_write(l1_index);
    if (!t2)
        return std::unexpected(t2.error());
    for (uint64_t i = 0; i < count; i++)
        store_be64((*t2)->data.data() + (l2_index + i) * uint64_t(m_l2_entry_bytes),
                   (*host + (i << m_cluster_bits)) | k_entry_copied);
    m_l2_cache->mark_dirty(*t2);
    for (uint64_t e : old)
        if (auto r = free_entry(e); !r)
            return std::unexpected(r.error());
    return bytes;
}

Result<void> Driver::zero_cluster(uint64_t offset, bool may_unmap, bool discard)
{
    auto m = lookup(offset);
    if (!m)
        return std::unexpected(m.error());
    const bool reads_zero = m->kind == Kind::Zero || (m->kind == Kind::Unallocated && !m_backing);
    if (reads_zero && (!discard || m->kind == Kind::Unallocated) && !(may_unmap && m->kind == Kind::Zero && m->host))
        return {};
    const uint64_t guest_cluster = offset >> m_cluster_bits;
    const uint64_t l1_index = guest_cluster / m_l2_entries;
    const uint64_t l2_index = guest_cluster % m_l2_entries;
    if (m_header.version < 3 && m_backing && !discard) {
        // No zero flag in version 2: store real zeroes over the backing data.
        std::vector<uint8_t> zeroes(m_cs, 0);
        return write_in_cluster(offset, zeroes);
    }
    auto t = l2_for_write(l1_index);
    if (!t)
        return std::unexpected(t.error());
    uint8_t* ep = (*t)->data.data() + l2_index * uint64_t(m_l2_entry_bytes);
    const uint64_t entry = load_be64(ep);
    uint64_t fresh;
    bool keep = false;
    if (m_header.version < 3 || (!m_backing && (discard || may_unmap))) {
        fresh = 0;
    } else if (!may_unmap && !discard && !(entry & k_entry_compressed) && (entry & k_entry_copied) &&
               (entry & k_l2_offset_mask)) {
        fresh = (entry & (k_l2_offset_mask | k_entry_copied)) | k_entry_zero; // keep the preallocated cluster
        keep = true;
    } else {
        fresh = k_entry_zero;
    }
    store_be64(ep, fresh);
    m_l2_cache->mark_dirty(*t);
    if (keep)
        return {};
    return free_entry(entry);
}

Result<void> Driver::write_zeroes(uint64_t offset, uint64_t bytes, bool may_unmap)
{
    if (offset > m_header.size || bytes > m_header.size - offset)
        return fail(fmt::format("qcow2: write of {} bytes at {} is beyond the end of the image", bytes, offset),
                    EINVAL);
    if (auto r = writable(); !r)
        return r;
    uint64_t pos = offset, end = offset + bytes;
    while (pos < end) {
        uint64_t in_cluster = pos & (m_cs - 1);
        uint64_t cluster_end = std::min(pos - in_cluster + m_cs, m_header.size);
        uint64_t n = std::min(cluster_end, end) - pos;
        if (in_cluster == 0 && pos + n == cluster_end) {
            if (auto r = zero_cluster(pos, may_unmap, false); !r)
                return r;
        } else {
            auto m = lookup(pos);
            if (!m)
                return std::unexpected(m.error());
            if (!(m->kind == Kind::Zero || (m->kind == Kind::Unallocated && !m_backing))) {
                std::vector<uint8_t> zeroes(size_t(n), 0);
                if (auto r = write_in_cluster(pos, zeroes); !r)
                    return r;
            }
        }
        pos += n;
    }
    return {};
}

Result<void> Driver::discard(uint64_t offset, uint64_t bytes)
{
    if (offset > m_header.size || bytes > m_header.size - offset)
        return fail(fmt::format("qcow2: discard of {} bytes at {} is beyond the end of the image", bytes, offset),
                    EINVAL);
    if (auto r = writable(); !r)
        return r;
    uint64_t pos = (offset + m_cs - 1) & ~(m_cs - 1);
    uint64_t end = offset + bytes;
    while (pos < end) {
        uint64_t cluster_end = std::min(pos + m_cs, m_header.size);
        if (cluster_end > end)
            break;
        if (auto r = zero_cluster(pos, true, true); !r)
            return r;
        pos += m_cs;
    }
    return {};
}

Result<void> Driver::write_compressed(uint64_t offset, std::span<const uint8_t> data)
{
    if (offset % m_cs || offset >= m_header.size)
        return fail(fmt::format("qcow2: compressed write at {} is not cluster aligned", offset), EINVAL);
    std::vector<uint8_t> cluster(m_cs, 0);
    std::memcpy(cluster.data(), data.data(), std::min<size_t>(data.size(), m_cs));
    auto packed = compress_cluster(m_header.compression_type, cluster);
    uint64_t valid = std::min<uint64_t>(m_cs, m_header.size - offset);
    if (!packed)
        return write(offset, std::span<const uint8_t>(cluster.data(), valid));
    if (auto r = writable(); !r)
        return r;
    const uint64_t guest_cluster = offset >> m_cluster_bits;
    const uint64_t l1_index = guest_cluster / m_l2_entries;
    const uint64_t l2_index = guest_cluster % m_l2_entries;
    if (auto m = lookup(offset); !m)
        return std::unexpected(m.error());
    auto host = alloc_compressed_bytes(packed->size());
    if (!host)
        return std::unexpected(host.error());
    if (auto r = m_file->write(*host, *packed); !r)
        return chain(fmt::format("qcow2: cannot write compressed cluster at guest offset 0x{:x}", offset), r.error());
    auto t = l2_for_write(l1_index);
    if (!t)
        return std::unexpected(t.error());
    uint8_t* ep = (*t)->data.data() + l2_index * uint64_t(m_l2_entry_bytes);
    const uint64_t old = load_be64(ep);
    store_be64(ep, encode_compressed(*host, packed->size(), m_cluster_bits));
    m_l2_cache->mark_dirty(*t);
    return free_entry(old);
}

Result<void> Driver::grow_l1(uint64_t min_entries)
{
    if (min_entries <= m_l1.size())
        return {};
    if (min_entries * 8 > k_max_l1_bytes)
        return fail(fmt::format("qcow2: an L1 table of {} entries exceeds the size limit", min_entries), EFBIG);
    uint64_t clusters = (min_entries * 8 + m_cs - 1) / m_cs;
    auto off = alloc_clusters(clusters);
    if (!off)
        return std::unexpected(off.error());
    std::vector<uint64_t> table(min_entries, 0);
    std::copy(m_l1.begin(), m_l1.end(), table.begin());
    std::vector<uint8_t> raw(clusters * m_cs, 0);
    for (size_t i = 0; i < table.size(); i++)
        store_be64(raw.data() + i * 8, table[i]);
    if (auto r = m_file->write(*off, raw); !r)
        return chain("qcow2: cannot write the new L1 table", r.error());
    if (auto r = flush(); !r)
        return r;
    uint64_t old_off = m_header.l1_table_offset;
    uint64_t old_bytes = uint64_t(m_header.l1_size) * 8;
    m_header.l1_table_offset = *off;
    m_header.l1_size = uint32_t(min_entries);
    m_l1 = std::move(table);
    if (auto r = write_header(); !r)
        return r;
    if (old_bytes)
        return free_range(old_off, (old_bytes + m_cs - 1) / m_cs * m_cs);
    return {};
}

Result<void> Driver::preallocate(Preallocation mode, uint64_t start, uint64_t end)
{
    if (mode == Preallocation::Off || start >= end)
        return {};
    const uint64_t first = start >> m_cluster_bits;
    const uint64_t clusters = (end + m_cs - 1) >> m_cluster_bits;
    for (uint64_t g = first; g < clusters;) {
        const uint64_t l1_index = g / m_l2_entries;
        const uint64_t count = std::min(m_l2_entries - g % m_l2_entries, clusters - g);
        auto t = l2_for_write(l1_index);
        if (!t)
            return std::unexpected(t.error());
        // Clusters of this table that have no allocation yet get one run of new clusters.
        std::vector<uint64_t> todo;
        for (uint64_t i = 0; i < count; i++) {
            const uint64_t entry = load_be64((*t)->data.data() + ((g + i) % m_l2_entries) * uint64_t(m_l2_entry_bytes));
            if (!(entry & k_entry_compressed) && !(entry & k_l2_offset_mask))
                todo.push_back(g + i);
        }
        g += count;
        if (todo.empty())
            continue;
        const uint64_t file_end = m_file->size();
        auto host = alloc_clusters(todo.size());
        if (!host)
            return std::unexpected(host.error());
        const uint64_t bytes = todo.size() * m_cs;
        // Reused clusters may hold old data: what the image maps must read as zeroes.
        if (mode == Preallocation::Metadata && *host < file_end) {
            if (auto r = m_file->write_zeroes(*host, std::min(*host + bytes, file_end) - *host, false); !r)
                return r;
        }
        auto t2 = l2_for_write(l1_index);
        if (!t2)
            return std::unexpected(t2.error());
        for (size_t i = 0; i < todo.size(); i++) {
            uint8_t* ep = (*t2)->data.data() + (todo[i] % m_l2_entries) * uint64_t(m_l2_entry_bytes);
            // A zero-flagged cluster stays zero, now with its space reserved.
            const uint64_t zero = load_be64(ep) & k_entry_zero;
            store_be64(ep, (*host + i * m_cs) | k_entry_copied | zero);
        }
        m_l2_cache->mark_dirty(*t2);
        if (mode == Preallocation::Falloc) {
            if (auto r = m_file->write_zeroes(*host, bytes, false); !r)
                return r;
        } else if (mode == Preallocation::Full) {
            std::vector<uint8_t> zeroes(size_t(std::min<uint64_t>(bytes, 1 << 20)), 0);
            for (uint64_t pos = 0; pos < bytes;) {
                size_t n = size_t(std::min<uint64_t>(zeroes.size(), bytes - pos));
                if (auto r = m_file->write(*host + pos, std::span<const uint8_t>(zeroes.data(), n)); !r)
                    return r;
                pos += n;
            }
        }
    }
    return flush();
}

} // namespace emu::storage::qcow2
