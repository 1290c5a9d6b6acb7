// storage/qcow2/qcow2.cpp — open, lookups, reads, block status, info.
#include "storage/qcow2/qcow2.h"

#include "common/log.h"
#include "storage/endian.h"
#include "storage/qcow2/compress.h"

#include <algorithm>
#include <cstring>
#include <fmt/format.h>

namespace emu::storage::qcow2 {

Driver::Driver(std::unique_ptr<BlockDriver> file, Header header, const OpenOptions& options)
    : m_file(std::move(file)), m_header(std::move(header)), m_read_only(options.read_only)
{
    m_cs = m_header.cluster_size();
    m_cluster_bits = m_header.cluster_bits;
    m_l2_entry_bytes = l2_entry_bytes(m_header);
    m_l2_entries = m_cs / uint64_t(m_l2_entry_bytes);
    m_refcount_bits = m_header.refcount_bits();
    m_refblock_entries = m_cs * 8 / m_refcount_bits;
    m_refcount_max = m_refcount_bits == 64 ? UINT64_MAX : (1ull << m_refcount_bits) - 1;

    size_t l2_bytes = options.l2_cache_bytes ? options.l2_cache_bytes : (1u << 20);
    size_t rc_bytes = options.refcount_cache_bytes ? options.refcount_cache_bytes : l2_bytes / 4;
    auto reader = [this](uint64_t off, std::span<uint8_t> buf) -> Result<void> {
        if (auto r = m_file->read(off, buf); !r)
            return chain(fmt::format("qcow2: cannot read metadata at 0x{:x} of '{}'", off, filename()), r.error());
        return {};
    };
    auto writer = [this](uint64_t off, std::span<const uint8_t> buf) -> Result<void> {
        // A table never lands on the header, the L1 table or the refcount table.
        auto hits = [&](uint64_t start, uint64_t len) { return off < start + len && start < off + buf.size(); };
        if (off < m_cs || (m_header.l1_size && hits(m_header.l1_table_offset, uint64_t(m_header.l1_size) * 8)) ||
            hits(m_header.refcount_table_offset, uint64_t(m_header.refcount_table_clusters) * m_cs) ||
            (m_refblocks.count(off) && m_l2_tables.count(off)) || overlaps_snapshot_meta(off, buf.size()))
            return corrupt(fmt::format("refusing to write a metadata table at 0x{:x} over other metadata", off));
        if (auto r = m_file->write(off, buf); !r)
            return chain(fmt::format("qcow2: cannot write metadata at 0x{:x} of '{}'", off, filename()), r.error());
        return {};
    };
    m_l2_cache = std::make_unique<MetadataCache>(m_cs, l2_bytes / m_cs, reader, writer);
    m_refblock_cache = std::make_unique<MetadataCache>(m_cs, rc_bytes / m_cs, reader, writer);
    m_l2_cache->set_depends_on(m_refblock_cache.get());
}

Driver::~Driver()
{
    if (!m_closed && !m_read_only) {
        if (auto r = close(); !r)
            log_error("{}", r.error().message);
    }
}

Result<std::unique_ptr<Driver>> Driver::open(std::unique_ptr<BlockDriver> file, const OpenOptions& options)
{
    const uint64_t file_size = file->size();
    std::vector<uint8_t> first(size_t(std::min<uint64_t>(file_size, 1u << k_max_cluster_bits)));
    if (auto r = file->read(0, first); !r)
        return chain(fmt::format("qcow2: cannot read the header of '{}'", file->filename()), r.error());
    auto header = parse_header(first, file_size);
    if (!header)
        return std::unexpected(header.error());
    if (!options.read_only) {
        if (header->incompatible_features & k_incompat_corrupt)
            return fail("qcow2: image is corrupt; cannot be opened read/write (repair it with 'emu-img check -r all')");
        if (header->extended_l2())
            return fail("qcow2: writing to images with extended L2 entries is not supported yet; open it read-only");
    }
    std::unique_ptr<Driver> drv(new Driver(std::move(file), std::move(*header), options));
    if (auto r = drv->load_tables(); !r)
        return std::unexpected(r.error());
    if (!options.read_only) {
        Header& h = drv->m_header;
        bool rewrite = h.autoclear_features != 0;
        h.autoclear_features = 0; // features we do not maintain are cleared, as the spec asks
        if (h.incompatible_features & k_incompat_dirty) {
            if (!options.repair_dirty)
                return fail("qcow2: image is dirty (lazy refcounts were not written back); run 'emu-img check -r all'");
            log_warn("qcow2: '{}' was not closed cleanly; rebuilding refcounts", drv->filename());
            auto res = drv->check(CheckRepair::All);
            if (!res)
                return chain("qcow2: cannot repair the dirty image", res.error());
            h.incompatible_features &= ~k_incompat_dirty;
            rewrite = true;
        }
        if (rewrite) {
            if (auto r = drv->write_header(); !r)
                return std::unexpected(r.error());
        }
    }
    return drv;
}

Result<void> Driver::load_tables()
{
    const uint64_t file_size = m_file->size();
    m_l1.assign(m_header.l1_size, 0);
    if (m_header.l1_size > 0) {
        std::vector<uint8_t> raw(size_t(m_header.l1_size) * 8);
        if (auto r = m_file->read(m_header.l1_table_offset, raw); !r)
            return chain("qcow2: cannot read the L1 table", r.error());
        for (size_t i = 0; i < m_l1.size(); i++) {
            m_l1[i] = load_be64(raw.data() + i * 8);
            if (uint64_t off = m_l1[i] & k_l1_offset_mask)
                m_l2_tables.insert(off);
        }
    }
    m_reftable.assign(size_t(m_header.refcount_table_clusters) * m_cs / 8, 0);
    {
        std::vector<uint8_t> raw(m_reftable.size() * 8);
        if (auto r = m_file->read(m_header.refcount_table_offset, raw); !r)
            return chain("qcow2: cannot read the refcount table", r.error());
        for (size_t i = 0; i < m_reftable.size(); i++) {
            m_reftable[i] = load_be64(raw.data() + i * 8);
            if (uint64_t off = m_reftable[i] & k_reftable_offset_mask)
                m_refblocks.insert(off);
        }
    }
    if (m_header.nb_snapshots > 0) {
        uint64_t len = std::min<uint64_t>(file_size - m_header.snapshots_offset, k_max_snapshot_table);
        std::vector<uint8_t> raw(static_cast<size_t>(len));
        if (auto r = m_file->read(m_header.snapshots_offset, raw); !r)
            return chain("qcow2: cannot read the snapshot table", r.error());
        auto snaps = parse_snapshots(raw, m_header, file_size, &m_snapshot_table_bytes);
        if (!snaps)
            return std::unexpected(snaps.error());
        m_snapshots = std::move(*snaps);
    }
    index_metadata();
    return {};
}

void Driver::index_metadata()
{
    m_l2_tables.clear();
    for (uint64_t e : m_l1)
        if (uint64_t off = e & k_l1_offset_mask)
            m_l2_tables.insert(off);
    m_snapshot_meta.clear();
    auto add = [&](uint64_t start, uint64_t len) {
        if (len == 0)
            return;
        auto& end = m_snapshot_meta[start];
        end = std::max(end, start + len);
    };
    if (m_header.nb_snapshots > 0)
        add(m_header.snapshots_offset, m_snapshot_table_bytes);
    for (const auto& sn : m_snapshots)
        add(sn.l1_table_offset, uint64_t(sn.l1_size) * 8);
}

std::unexpected<Error> Driver::corrupt(std::string what)
{
    std::string msg = "qcow2: " + what;
    if (!m_read_only && m_header.version >= 3 && !(m_header.incompatible_features & k_incompat_corrupt)) {
        m_header.incompatible_features |= k_incompat_corrupt;
        if (write_header())
            msg += "; the image is now marked corrupt";
        m_read_only = true; // no further writes to a corrupt image
    }
    return fail(std::move(msg), EIO);
}

bool Driver::overlaps_metadata(uint64_t host, uint64_t len) const
{
    auto overlap = [&](uint64_t start, uint64_t n) { return host < start + n && start < host + len; };
    if (overlap(0, m_cs))
        return true;
    if (m_header.l1_size && overlap(m_header.l1_table_offset, uint64_t(m_header.l1_size) * 8))
        return true;
    if (overlap(m_header.refcount_table_offset, uint64_t(m_header.refcount_table_clusters) * m_cs))
        return true;
    for (uint64_t c = host & ~(m_cs - 1); c < host + len; c += m_cs) {
        if (m_refblocks.count(c) || m_l2_tables.count(c))
            return true;
    }
    return overlaps_snapshot_meta(host, len);
}

bool Driver::overlaps_snapshot_meta(uint64_t host, uint64_t len) const
{
    // Ranges may nest or overlap in a hostile image: scan back from the last
    // range starting before our end while one could still reach into ours.
    auto it = m_snapshot_meta.lower_bound(host + len);
    while (it != m_snapshot_meta.begin()) {
        --it;
        if (it->second > host)
            return true;
        if (it->first + k_max_snapshot_table <= host)
            break;
    }
    return false;
}

Result<TableRef> Driver::load_l2(uint64_t l1_index, uint64_t l1_entry)
{
    uint64_t off = l1_entry & k_l1_offset_mask;
    if (l1_entry & k_l1_reserved)
        return corrupt(fmt::format("L1 entry {} (0x{:x}) has reserved bits set", l1_index, l1_entry));
    if (off % m_cs)
        return corrupt(fmt::format("L2 table offset 0x{:x} of L1 entry {} is not cluster aligned", off, l1_index));
    if (off < m_cs)
        return corrupt(fmt::format("L2 table of L1 entry {} overlaps the header", l1_index));
    if (off + m_cs > m_file->size())
        return corrupt(fmt::format("L2 table offset 0x{:x} of L1 entry {} is beyond the end of the file", off,
                                   l1_index));
    return m_l2_cache->get(off);
}

Result<Driver::Mapping> Driver::lookup(uint64_t offset)
{
    const uint64_t in_cluster = offset & (m_cs - 1);
    const uint64_t guest_cluster = offset >> m_cluster_bits;
    const uint64_t l1_index = guest_cluster / m_l2_entries;
    const uint64_t l2_index = guest_cluster % m_l2_entries;
    Mapping m;
    m.bytes = m_cs - in_cluster;
    if (l1_index >= m_l1.size() || (m_l1[l1_index] & k_l1_offset_mask) == 0) {
        if (l1_index < m_l1.size() && (m_l1[l1_index] & k_l1_reserved))
            return corrupt(fmt::format("L1 entry {} (0x{:x}) has reserved bits set", l1_index, m_l1[l1_index]));
        return m;
    }
    auto l2 = load_l2(l1_index, m_l1[l1_index]);
    if (!l2)
        return std::unexpected(l2.error());
    const uint8_t* ep = (*l2)->data.data() + l2_index * uint64_t(m_l2_entry_bytes);
    const uint64_t entry = load_be64(ep);
    const uint64_t file_size = m_file->size();
    if (entry & k_entry_compressed) {
        auto ref = decode_compressed(entry, m_cluster_bits);
        if (ref.offset < m_cs)
            return corrupt(fmt::format("compressed cluster descriptor for guest offset 0x{:x} points into the header",
                                       offset - in_cluster));
        if (ref.offset > file_size || ref.sectors_bytes > file_size - ref.offset) {
            // The descriptor may round up to a whole sector past a file that ends mid-sector.
            uint64_t end = ref.offset + ref.sectors_bytes;
            if (ref.offset >= file_size || end - file_size >= 512)
                return corrupt(fmt::format("compressed cluster descriptor for guest offset 0x{:x} (offset 0x{:x}, "
                                           "{} bytes) points past the end of the file", offset - in_cluster,
                                           ref.offset, ref.sectors_bytes));
        }
        m.kind = Kind::Compressed;
        m.host = ref.offset;
        m.span = ref.sectors_bytes;
        return m;
    }
    if (entry & k_l2_reserved)
        return corrupt(fmt::format("L2 entry 0x{:x} for guest offset 0x{:x} has reserved bits set", entry,
                                   offset - in_cluster));
    const uint64_t host = entry & k_l2_offset_mask;
    if (host % m_cs)
        return corrupt(fmt::format("L2 entry for guest offset 0x{:x} points to unaligned offset 0x{:x}",
                                   offset - in_cluster, host));
    if (host != 0 && host < m_cs)
        return corrupt(fmt::format("L2 entry for guest offset 0x{:x} points into the header", offset - in_cluster));
    if (m_header.extended_l2()) {
        const uint64_t bitmap = load_be64(ep + 8);
        const uint64_t sc_size = m_cs / k_subclusters;
        const uint64_t sc = in_cluster / sc_size;
        auto state = [&](uint64_t i) -> int {
            bool alloc = (bitmap >> i) & 1, zero = (bitmap >> (32 + i)) & 1;
            return alloc ? 1 : zero ? 2 : 0;
        };
        for (uint64_t i = 0; i < k_subclusters; i++) {
            if (((bitmap >> i) & 1) && ((bitmap >> (32 + i)) & 1))
                return corrupt(fmt::format("extended L2 entry for guest offset 0x{:x} marks subcluster {} both "
                                           "allocated and zero", offset - in_cluster, i));
        }
        int s = state(sc);
        uint64_t end = sc + 1;
        while (end < uint64_t(k_subclusters) && state(end) == s)
            end++;
        m.bytes = end * sc_size - in_cluster;
        if (s == 1) {
            if (host == 0)
                return corrupt(fmt::format("extended L2 entry for guest offset 0x{:x} has allocated subclusters "
                                           "but no host cluster", offset - in_cluster));
            m.kind = Kind::Normal;
            m.host = host + in_cluster;
        } else if (s == 2) {
            m.kind = Kind::Zero;
        }
        return m;
    }
    if (entry & k_entry_zero) {
        if (m_header.version < 3)
            return corrupt(fmt::format("L2 entry for guest offset 0x{:x} has the zero flag in a version 2 image",
                                       offset - in_cluster));
        m.kind = Kind::Zero;
        m.host = host;
        return m;
    }
    if (host == 0)
        return m;
    m.kind = Kind::Normal;
    m.host = host + in_cluster;
    return m;
}

Result<void> Driver::read_backing(uint64_t offset, std::span<uint8_t> buf)
{
    // Past this image's virtual size (the VM state area) nothing comes from the backing image.
    size_t below = offset >= m_header.size ? 0 : size_t(std::min<uint64_t>(buf.size(), m_header.size - offset));
    if (below < buf.size())
        std::memset(buf.data() + below, 0, buf.size() - below);
    if (!m_backing) {
        std::memset(buf.data(), 0, below);
        return {};
    }
    return read_clamped(*m_backing, offset, buf.first(below));
}

Result<void> Driver::read_compressed(uint64_t host, uint64_t span, std::span<uint8_t> cluster)
{
    if (m_ccache_host == host && m_ccache.size() == m_cs) {
        std::memcpy(cluster.data(), m_ccache.data(), m_cs);
        return {};
    }
    std::vector<uint8_t> in(static_cast<size_t>(span));
    if (auto r = read_clamped(*m_file, host, in); !r)
        return chain(fmt::format("qcow2: cannot read compressed cluster at 0x{:x}", host), r.error());
    if (auto r = decompress_cluster(m_header.compression_type, in, cluster); !r)
        return chain(fmt::format("qcow2: compressed cluster at 0x{:x}", host), r.error());
    m_ccache.assign(cluster.begin(), cluster.end());
    m_ccache_host = host;
    return {};
}

Result<void> Driver::read_mapping(const Mapping& m, uint64_t offset, std::span<uint8_t> buf)
{
    switch (m.kind) {
    case Kind::Unallocated:
        return read_backing(offset, buf);
    case Kind::Zero:
        std::memset(buf.data(), 0, buf.size());
        return {};
    case Kind::Normal:
        if (auto r = read_clamped(*m_file, m.host, buf); !r)
            return chain(fmt::format("qcow2: cannot read guest offset 0x{:x}", offset), r.error());
        return {};
    case Kind::Compressed: {
        std::vector<uint8_t> cluster(m_cs);
        if (auto r = read_compressed(m.host, m.span, cluster); !r)
            return r;
        std::memcpy(buf.data(), cluster.data() + (offset & (m_cs - 1)), buf.size());
        return {};
    }
    }
    return {};
}

Result<void> Driver::read(uint64_t offset, std::span<uint8_t> buf)
{
    if (offset > m_header.size || buf.size() > m_header.size - offset)
        return fail(fmt::format("qcow2: read of {} bytes at {} is beyond the end of the image ({} bytes)",
                                buf.size(), offset, m_header.size), EINVAL);
    return read_range(offset, buf);
}

Result<void> Driver::read_range(uint64_t offset, std::span<uint8_t> buf)
{
    size_t done = 0;
    while (done < buf.size()) {
        auto m = lookup(offset + done);
        if (!m)
            return std::unexpected(m.error());
        uint64_t n = std::min<uint64_t>(m->bytes, buf.size() - done);
        // Data clusters that follow each other in the file too are read in one go.
        if (m->kind == Kind::Normal) {
            while (done + n < buf.size()) {
                auto next = lookup(offset + done + n);
                if (!next)
                    return std::unexpected(next.error());
                if (next->kind != Kind::Normal || next->host != m->host + n)
                    break;
                n += std::min<uint64_t>(next->bytes, buf.size() - done - n);
            }
        }
        if (auto r = read_mapping(*m, offset + done, buf.subspan(done, size_t(n))); !r)
            return r;
        done += size_t(n);
    }
    return {};
}

Result<BlockStatus> Driver::block_status(uint64_t offset, uint64_t bytes)
{
    BlockStatus st;
    if (offset >= m_header.size || bytes == 0)
        return st;
    bytes = std::min(bytes, m_header.size - offset);
    auto first = lookup(offset);
    if (!first)
        return std::unexpected(first.error());
    auto fill = [&](const Mapping& m) {
        st.allocated = m.kind != Kind::Unallocated;
        st.zero = m.kind == Kind::Zero || (m.kind == Kind::Unallocated && !m_backing);
        st.data = m.kind == Kind::Normal || m.kind == Kind::Compressed;
        if (m.kind == Kind::Normal)
            st.host_offset = m.host;
    };
    fill(*first);
    uint64_t len = std::min(first->bytes, bytes);
    // Extend over following clusters with the same status (and contiguous host data).
    while (len < bytes && len < (1ull << 32)) {
        auto m = lookup(offset + len);
        if (!m)
            break;
        if (m->kind != first->kind)
            break;
        if (m->kind == Kind::Normal && m->host != first->host + len)
            break;
        len += std::min(m->bytes, bytes - len);
    }
    st.length = len;
    return st;
}

Result<void> Driver::write_header()
{
    auto raw = serialize_header(m_header);
    if (!raw)
        return std::unexpected(raw.error());
    // Write only the meaningful prefix: the header, extensions and backing name.
    size_t len = raw->size();
    while (len > k_v3_header_size && (*raw)[len - 1] == 0)
        len--;
    len = (len + 511) & ~size_t(511);
    len = std::min(len, raw->size());
    if (auto r = m_file->write(0, std::span<const uint8_t>(raw->data(), len)); !r)
        return chain(fmt::format("qcow2: cannot write the header of '{}'", filename()), r.error());
    return {};
}

Result<void> Driver::write_l1_table()
{
    if (m_l1.empty())
        return {};
    std::vector<uint8_t> raw(m_l1.size() * 8);
    for (size_t i = 0; i < m_l1.size(); i++)
        store_be64(raw.data() + i * 8, m_l1[i]);
    if (auto r = m_file->write(m_header.l1_table_offset, raw); !r)
        return chain(fmt::format("qcow2: cannot write the L1 table of '{}'", filename()), r.error());
    return {};
}

Result<void> Driver::write_l1_entry(uint64_t index)
{
    uint8_t raw[8];
    store_be64(raw, m_l1[index]);
    if (auto r = m_file->write(m_header.l1_table_offset + index * 8, raw); !r)
        return chain(fmt::format("qcow2: cannot write L1 entry {}", index), r.error());
    return {};
}

Result<void> Driver::flush()
{
    if (m_read_only)
        return {};
    if (auto r = m_refblock_cache->flush(); !r)
        return r;
    if (auto r = m_l2_cache->flush(); !r)
        return r;
    return m_file->flush();
}

Result<void> Driver::close()
{
    if (m_closed)
        return {};
    m_closed = true;
    if (m_backing) {
        // A backing image a commit had made writable is written back too.
        if (auto r = m_backing->close(); !r)
            return r;
    }
    if (m_read_only)
        return {};
    return write_back_clean();
}

Result<void> Driver::write_back_clean()
{
    if (auto r = flush(); !r)
        return r;
    if (m_header.incompatible_features & k_incompat_dirty) {
        m_header.incompatible_features &= ~k_incompat_dirty;
        if (auto r = write_header(); !r)
            return r;
        if (auto r = m_file->flush(); !r)
            return r;
    }
    return {};
}

Result<void> Driver::attach_backing(std::unique_ptr<BlockDriver> backing)
{
    if (m_backing)
        return fail(fmt::format("qcow2: '{}' already has a backing image", filename()), EEXIST);
    m_backing = std::move(backing);
    return {};
}

Result<void> Driver::reopen(bool read_only)
{
    if (read_only == m_read_only)
        return {};
    if (read_only) {
        // As close(): metadata written back, the image clean, then the file.
        if (auto r = write_back_clean(); !r)
            return r;
        m_dirty_marked = false;
        if (auto r = m_file->reopen(true); !r)
            return r;
        m_read_only = true;
        return {};
    }
    if (m_header.incompatible_features & k_incompat_corrupt)
        return fail(fmt::format("qcow2: '{}' is corrupt; cannot be reopened read/write (repair it with 'emu-img "
                                "check -r all')", filename()), EIO);
    if (m_header.extended_l2())
        return fail(fmt::format("qcow2: '{}' has extended L2 entries; writing to them is not supported yet",
                                filename()), ENOTSUP);
    if (auto r = m_file->reopen(false); !r)
        return r;
    m_read_only = false;
    m_closed = false;
    bool rewrite = m_header.autoclear_features != 0;
    m_header.autoclear_features = 0;
    if (m_header.incompatible_features & k_incompat_dirty) {
        log_warn("qcow2: '{}' was not closed cleanly; rebuilding refcounts", filename());
        auto res = check(CheckRepair::All);
        if (!res)
            return chain("qcow2: cannot repair the dirty image", res.error());
        m_header.incompatible_features &= ~k_incompat_dirty;
        rewrite = true;
    }
    if (rewrite)
        return write_header();
    return {};
}

ImageInfo Driver::info() const
{
    ImageInfo info = BlockDriver::info();
    info.cluster_size = m_cs;
    info.dirty = m_header.incompatible_features & k_incompat_dirty;
    info.backing_filename = m_header.backing_file;
    info.backing_format = m_header.backing_format;
    Qcow2Specific q;
    q.compat = m_header.version >= 3 ? "1.1" : "0.10";
    q.compression_type = m_header.compression_type == CompressionType::Zstd ? "zstd" : "zlib";
    q.lazy_refcounts = m_header.compatible_features & k_compat_lazy_refcounts;
    q.refcount_bits = int(m_refcount_bits);
    q.corrupt = m_header.incompatible_features & k_incompat_corrupt;
    q.extended_l2 = m_header.extended_l2();
    info.qcow2 = q;
    for (const auto& s : m_snapshots) {
        SnapshotInfo si;
        si.id = s.id;
        si.name = s.name;
        si.vm_state_size = s.vm_state_size;
        si.date_sec = s.date_sec;
        si.date_nsec = s.date_nsec;
        si.vm_clock_nsec = s.vm_clock_nsec;
        si.icount = s.icount;
        si.disk_size = s.disk_size;
        info.snapshots.push_back(std::move(si));
    }
    return info;
}

} // namespace emu::storage::qcow2
