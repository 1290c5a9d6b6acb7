// storage/qcow2/refcount.cpp — refcount blocks, the refcount table and its
// growth, cluster allocation.
#include "storage/endian.h"
#include "storage/qcow2/qcow2.h"

#include <algorithm>
#include <fmt/format.h>

namespace emu::storage::qcow2 {

uint64_t refcount_get(const uint8_t* d, uint32_t bits, uint64_t index)
{
    switch (bits) {
    case 64: return load_be64(d + index * 8);
    case 32: return load_be32(d + index * 4);
    case 16: return load_be16(d + index * 2);
    case 8: return d[index];
    default: {
        uint64_t bit = index * bits;
        return (d[bit / 8] >> (bit % 8)) & ((1u << bits) - 1);
    }
    }
}

void refcount_set(uint8_t* d, uint32_t bits, uint64_t index, uint64_t value)
{
    switch (bits) {
    case 64: store_be64(d + index * 8, value); break;
    case 32: store_be32(d + index * 4, uint32_t(value)); break;
    case 16: store_be16(d + index * 2, uint16_t(value)); break;
    case 8: d[index] = uint8_t(value); break;
    default: {
        uint64_t bit = index * bits;
        uint8_t mask = uint8_t(((1u << bits) - 1) << (bit % 8));
        d[bit / 8] = uint8_t((d[bit / 8] & ~mask) | ((value << (bit % 8)) & mask));
    }
    }
}

uint64_t Driver::refcount_entry(const Table& block, uint64_t index) const
{
    return refcount_get(block.data.data(), uint32_t(m_refcount_bits), index);
}

void Driver::set_refcount_entry(Table& block, uint64_t index, uint64_t value) const
{
    refcount_set(block.data.data(), uint32_t(m_refcount_bits), index, value);
    block.dirty = true;
}

Result<TableRef> Driver::load_refblock(uint64_t block_index)
{
    uint64_t entry = m_reftable[block_index];
    uint64_t off = entry & k_reftable_offset_mask;
    if (entry & 511)
        return corrupt(fmt::format("refcount table entry {} (0x{:x}) has reserved bits set", block_index, entry));
    if (off % m_cs)
        return corrupt(fmt::format("refcount block {} offset 0x{:x} is not cluster aligned", block_index, off));
    if (off < m_cs)
        return corrupt(fmt::format("refcount block {} overlaps the header", block_index));
    if (off + m_cs > m_file->size())
        return corrupt(fmt::format("refcount block {} offset 0x{:x} is beyond the end of the file", block_index, off));
    return m_refblock_cache->get(off);
}

Result<uint64_t> Driver::get_refcount(uint64_t cluster)
{
    uint64_t bi = cluster / m_refblock_entries;
    if (bi >= m_reftable.size() || m_reftable[bi] == 0)
        return 0;
    auto block = load_refblock(bi);
    if (!block)
        return std::unexpected(block.error());
    return refcount_entry(**block, cluster % m_refblock_entries);
}

Result<void> Driver::write_reftable_entry(uint64_t index)
{
    uint8_t raw[8];
    store_be64(raw, m_reftable[index]);
    if (auto r = m_file->write(m_header.refcount_table_offset + index * 8, raw); !r)
        return chain(fmt::format("qcow2: cannot write refcount table entry {}", index), r.error());
    return {};
}

Result<void> Driver::extend_file(uint64_t end)
{
    uint64_t size = m_file->size();
    if (end <= size)
        return {};
    return m_file->write_zeroes(size, end - size, false);
}

Result<uint64_t> Driver::find_free_run(uint64_t count)
{
    // Move the hint past used clusters: no free cluster lies below it.
    m_free_hint = std::max<uint64_t>(m_free_hint, 1);
    while (true) {
        uint64_t bi = m_free_hint / m_refblock_entries;
        if (bi >= m_reftable.size() || m_reftable[bi] == 0)
            break;
        auto rc = get_refcount(m_free_hint);
        if (!rc)
            return std::unexpected(rc.error());
        if (*rc == 0)
            break;
        m_free_hint++;
    }
    uint64_t start = m_free_hint;
    uint64_t run = 0;
    for (uint64_t c = start;; c++) {
        uint64_t bi = c / m_refblock_entries;
        if (bi >= m_reftable.size() || m_reftable[bi] == 0) {
            // An uncovered block: all of it is free.
            if (run == 0)
                start = c;
            uint64_t block_end = (bi + 1) * m_refblock_entries;
            run += block_end - c;
            if (run >= count)
                return start;
            c = block_end - 1;
            continue;
        }
        auto rc = get_refcount(c);
        if (!rc)
            return std::unexpected(rc.error());
        if (*rc == 0) {
            if (run == 0)
                start = c;
            if (++run >= count)
                return start;
        } else {
            run = 0;
        }
        if (c > (1ull << (62 - m_cluster_bits)))
            return fail("qcow2: no free clusters left in the image's address space", ENOSPC);
    }
}

Result<void> Driver::ensure_refblock(uint64_t block_index)
{
    for (int guard = 0; guard < 64; guard++) {
        if (block_index < m_reftable.size() && m_reftable[block_index] != 0)
            return {};
        if (block_index >= m_reftable.size()) {
            if (auto r = grow_reftable(block_index + 1); !r)
                return r;
            continue;
        }
        auto f = find_free_run(1);
        if (!f)
            return std::unexpected(f.error());
        uint64_t fb = *f / m_refblock_entries;
        uint64_t off = *f * m_cs;
        if (fb != block_index && (fb >= m_reftable.size() || m_reftable[fb] == 0)) {
            if (auto r = ensure_refblock(fb); !r)
                return r;
            continue;
        }
        if (fb != block_index) {
            if (auto r = update_refcount(*f, 1); !r)
                return r;
        }
        if (auto r = extend_file(off + m_cs); !r)
            return r;
        auto t = m_refblock_cache->get_empty(off);
        if (!t)
            return std::unexpected(t.error());
        if (fb == block_index)
            set_refcount_entry(**t, *f % m_refblock_entries, 1);
        if (auto r = m_file->write(off, (*t)->data); !r)
            return chain("qcow2: cannot write a new refcount block", r.error());
        (*t)->dirty = false;
        m_reftable[block_index] = off;
        m_refblocks.insert(off);
        if (auto r = write_reftable_entry(block_index); !r)
            return r;
        return {};
    }
    return fail("qcow2: cannot place a new refcount block", ENOSPC);
}

Result<void> Driver::grow_reftable(uint64_t min_entries)
{
    const uint64_t per_cluster = m_cs / 8;
    const uint64_t old_entries = m_reftable.size();
    uint64_t entries = std::max(min_entries, old_entries + old_entries / 2);
    uint64_t m = 0;
    uint64_t start = 0;
    uint64_t clusters = 0;
    std::vector<uint64_t> needed;
    for (int guard = 0;; guard++) {
        if (guard > 32)
            return fail("qcow2: cannot place a larger refcount table", ENOSPC);
        entries = (entries + per_cluster - 1) / per_cluster * per_cluster;
        clusters = entries / per_cluster;
        if (clusters * m_cs > k_max_reftable_bytes)
            return fail("qcow2: the refcount table would exceed its size limit; the image is too large", EFBIG);
        auto s = find_free_run(clusters + m);
        if (!s)
            return std::unexpected(s.error());
        start = *s;
        needed.clear();
        uint64_t first_bi = start / m_refblock_entries;
        uint64_t last_bi = (start + clusters + m - 1) / m_refblock_entries;
        for (uint64_t bi = first_bi; bi <= last_bi; bi++)
            if (bi >= old_entries || m_reftable[bi] == 0)
                needed.push_back(bi);
        if (!needed.empty() && needed.back() >= entries) {
            entries = needed.back() + 1;
            continue;
        }
        if (needed.size() <= m)
            break;
        m = needed.size();
    }
    std::vector<uint64_t> table(entries, 0);
    std::copy(m_reftable.begin(), m_reftable.end(), table.begin());
    const uint64_t end = start + clusters + m;
    if (auto r = extend_file(end * m_cs); !r)
        return r;
    // New refcount blocks after the table, describing the table and themselves.
    for (size_t j = 0; j < needed.size(); j++) {
        uint64_t bi = needed[j];
        uint64_t off = (start + clusters + j) * m_cs;
        auto t = m_refblock_cache->get_empty(off);
        if (!t)
            return std::unexpected(t.error());
        for (uint64_t c = std::max(start, bi * m_refblock_entries); c < std::min(end, (bi + 1) * m_refblock_entries); c++)
            set_refcount_entry(**t, c % m_refblock_entries, 1);
        if (auto r = m_file->write(off, (*t)->data); !r)
            return chain("qcow2: cannot write a new refcount block", r.error());
        (*t)->dirty = false;
        table[bi] = off;
        m_refblocks.insert(off);
    }
    // Clusters of the new range that existing blocks describe.
    for (uint64_t c = start; c < end; c++) {
        uint64_t bi = c / m_refblock_entries;
        if (bi < old_entries && m_reftable[bi] != 0) {
            if (auto r = update_refcount(c, 1); !r)
                return r;
        }
    }
    std::vector<uint8_t> raw(clusters * m_cs, 0);
    for (uint64_t i = 0; i < entries; i++)
        store_be64(raw.data() + i * 8, table[i]);
    if (auto r = m_file->write(start * m_cs, raw); !r)
        return chain("qcow2: cannot write the new refcount table", r.error());
    if (auto r = m_refblock_cache->flush(); !r)
        return r;
    if (auto r = m_file->flush(); !r)
        return r;
    const uint64_t old_offset = m_header.refcount_table_offset;
    const uint64_t old_clusters = m_header.refcount_table_clusters;
    m_header.refcount_table_offset = start * m_cs;
    m_header.refcount_table_clusters = uint32_t(clusters);
    m_reftable = std::move(table);
    if (auto r = write_header(); !r)
        return r;
    if (auto r = m_file->flush(); !r)
        return r;
    if (m_free_hint >= start && m_free_hint < end)
        m_free_hint = end;
    return free_range(old_offset, old_clusters * m_cs);
}

Result<void> Driver::update_refcount(uint64_t cluster, int64_t delta)
{
    uint64_t bi = cluster / m_refblock_entries;
    if (auto r = ensure_refblock(bi); !r)
        return r;
    auto block = load_refblock(bi);
    if (!block)
        return std::unexpected(block.error());
    uint64_t idx = cluster % m_refblock_entries;
    uint64_t old = refcount_entry(**block, idx);
    if (delta < 0 && old < uint64_t(-delta))
        return corrupt(fmt::format("refcount of cluster {} would drop below zero", cluster));
    if (delta > 0 && m_refcount_max - old < uint64_t(delta))
        return fail(fmt::format("qcow2: refcount of cluster {} would overflow {} bits", cluster, m_refcount_bits),
                    EOVERFLOW);
    uint64_t now = old + uint64_t(delta);
    set_refcount_entry(**block, idx, now);
    if (now == 0) {
        // A freed L2 table must not be written back over the cluster's next use.
        m_l2_cache->discard(cluster << m_cluster_bits);
        if (cluster < m_free_hint)
            m_free_hint = cluster;
    }
    return {};
}

Result<uint64_t> Driver::alloc_clusters(uint64_t count)
{
    for (int guard = 0; guard < 1000; guard++) {
        auto s = find_free_run(count);
        if (!s)
            return std::unexpected(s.error());
        uint64_t start = *s;
        bool changed = false;
        for (uint64_t bi = start / m_refblock_entries; bi <= (start + count - 1) / m_refblock_entries; bi++) {
            if (bi >= m_reftable.size() || m_reftable[bi] == 0) {
                if (auto r = ensure_refblock(bi); !r)
                    return std::unexpected(r.error());
                changed = true;
            }
        }
        if (changed)
            continue;
        // Free clusters that hold metadata mean the refcounts are wrong: never overwrite tables.
        if (overlaps_metadata(start * m_cs, count * m_cs))
            return corrupt(fmt::format("cluster {} is free according to its refcount but holds metadata", start));
        for (uint64_t c = start; c < start + count; c++) {
            if (auto r = update_refcount(c, 1); !r)
                return std::unexpected(r.error());
        }
        if (start <= m_free_hint && m_free_hint < start + count)
            m_free_hint = start + count;
        if (auto r = extend_file((start + count) * m_cs); !r)
            return std::unexpected(r.error());
        return start * m_cs;
    }
    return fail("qcow2: cannot allocate clusters", ENOSPC);
}

Result<uint64_t> Driver::alloc_compressed_bytes(uint64_t bytes)
{
    if (m_compressed_next != 0) {
        uint64_t used = m_compressed_next % m_cs;
        if (used != 0 && m_cs - used >= bytes) {
            uint64_t off = m_compressed_next;
            if (auto r = update_refcount(off / m_cs, 1); !r)
                return std::unexpected(r.error());
            m_compressed_next += bytes;
            return off;
        }
    }
    uint64_t n = (bytes + m_cs - 1) / m_cs;
    auto off = alloc_clusters(n);
    if (!off)
        return off;
    m_compressed_next = (*off + bytes) % m_cs ? *off + bytes : 0;
    return off;
}

Result<void> Driver::free_range(uint64_t offset, uint64_t bytes)
{
    if (bytes == 0)
        return {};
    for (uint64_t c = offset / m_cs; c <= (offset + bytes - 1) / m_cs; c++) {
        if (auto r = update_refcount(c, -1); !r)
            return r;
        if (m_compressed_next / m_cs == c) {
            auto rc = get_refcount(c);
            if (rc && *rc == 0)
                m_compressed_next = 0;
        }
    }
    return {};
}

} // namespace emu::storage::qcow2
