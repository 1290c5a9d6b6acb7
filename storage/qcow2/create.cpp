// storage/qcow2/create.cpp — new images: a minimal layout (header, refcount
// table, one refcount block), then the driver itself grows the L1 table to
// the virtual size and preallocates.
#include "storage/endian.h"
#include "storage/qcow2/qcow2.h"

#include <fmt/format.h>

namespace emu::storage::qcow2 {

Result<void> Driver::create(std::unique_ptr<BlockDriver> file, const CreateOptions& o)
{
    const uint64_t cs = o.cluster_size;
    if (cs < 512 || cs > (2u << 20) || (cs & (cs - 1)))
        return fail("Cluster size must be a power of two between 512 and 2048k");
    if (o.version != 2 && o.version != 3)
        return fail(fmt::format("qcow2: unsupported version {}", o.version));
    if (o.version < 3) {
        if (o.lazy_refcounts)
            return fail("Lazy refcounts only supported with compatibility level 1.1 and above (use compat=1.1 or "
                        "greater)");
        if (o.refcount_bits != 16)
            return fail("Different refcount widths than 16 bits require compatibility level 1.1 or above (use "
                        "compat=1.1 or greater)");
        if (o.compression_type != CompressionType::Zlib)
            return fail("Non-zlib compression type is only supported with compatibility level 1.1 and above (use "
                        "compat=1.1 or greater)");
        if (o.extended_l2)
            return fail("Extended L2 entries are only supported with compatibility level 1.1 and above (use "
                        "compat=1.1 or greater)");
    }
    if (o.extended_l2)
        return fail("qcow2: creating images with extended L2 entries is not supported yet");
    if (o.refcount_bits < 1 || o.refcount_bits > 64 || (o.refcount_bits & (o.refcount_bits - 1)))
        return fail("Refcount width must be a power of two and may not exceed 64 bits");
    if (!o.backing_format.empty() && o.backing_file.empty())
        return fail("Backing format cannot be used without backing file");
    if (o.backing_file.size() > k_max_backing_name)
        return fail(fmt::format("qcow2: backing file name '{}' is too long", o.backing_file));
    if (o.size > (1ull << 62))
        return fail("qcow2: image size too large");

    Header h;
    h.version = uint32_t(o.version);
    h.cluster_bits = uint32_t(__builtin_ctzll(cs));
    h.size = 0;
    h.refcount_order = uint32_t(__builtin_ctz(unsigned(o.refcount_bits)));
    h.refcount_table_offset = cs;
    h.refcount_table_clusters = 1;
    h.compression_type = o.compression_type;
    if (o.compression_type != CompressionType::Zlib)
        h.incompatible_features |= k_incompat_compression;
    if (o.lazy_refcounts)
        h.compatible_features |= k_compat_lazy_refcounts;
    h.backing_file = o.backing_file;
    h.backing_format = o.backing_format;
    auto header = serialize_header(h);
    if (!header)
        return std::unexpected(header.error());

    std::vector<uint8_t> image(3 * cs, 0);
    std::copy(header->begin(), header->end(), image.begin());
    store_be64(image.data() + cs, 2 * cs); // refcount table entry 0 → block at cluster 2
    // Refcount 1 for clusters 0..2 in block 0.
    for (uint64_t c = 0; c < 3; c++)
        refcount_set(image.data() + 2 * cs, uint32_t(o.refcount_bits), c, 1);

    if (auto r = file->write(0, image); !r)
        return chain("qcow2: cannot write the new image", r.error());
    if (auto r = file->flush(); !r)
        return r;

    OpenOptions open_options;
    auto drv = open(std::move(file), open_options);
    if (!drv)
        return std::unexpected(drv.error());
    Driver& d = **drv;
    const uint64_t clusters = (o.size + cs - 1) / cs;
    const uint64_t l1_entries = (clusters + d.m_l2_entries - 1) / d.m_l2_entries;
    if (auto r = d.grow_l1(l1_entries); !r)
        return r;
    d.m_header.size = o.size;
    if (auto r = d.write_header(); !r)
        return r;
    if (auto r = d.preallocate(o.preallocation, 0, o.size); !r)
        return r;
    return d.close();
}

} // namespace emu::storage::qcow2

namespace emu::storage::qcow2 {

Result<Measurement> measure(const CreateOptions& o, uint64_t data_bytes)
{
    const uint64_t cs = o.cluster_size;
    if (cs < 512 || cs > (2u << 20) || (cs & (cs - 1)))
        return fail("Cluster size must be a power of two between 512 and 2048k");
    if (o.refcount_bits < 1 || o.refcount_bits > 64 || (o.refcount_bits & (o.refcount_bits - 1)))
        return fail("Refcount width must be a power of two and may not exceed 64 bits");
    const uint64_t size = (o.size + 511) & ~uint64_t(511);
    const uint64_t l2_entries = cs / (o.extended_l2 ? 16 : 8);
    const uint64_t data = (size + cs - 1) / cs;
    const uint64_t l2_tables = (data + l2_entries - 1) / l2_entries;
    const uint64_t l1_clusters = (l2_tables * 8 + cs - 1) / cs;
    const uint64_t rest = data + 1 + l2_tables + l1_clusters; // data, header, L2 and L1 tables
    // The fewest refcount blocks (and table clusters) that also describe themselves.
    const uint64_t per_block = cs * 8 / uint64_t(o.refcount_bits);
    uint64_t blocks = (rest + per_block - 1) / per_block, table = 0;
    while (true) {
        table = (blocks * 8 + cs - 1) / cs;
        if (blocks * per_block >= rest + blocks + table)
            break;
        blocks++;
    }
    Measurement m;
    m.fully_allocated = (rest + blocks + table) * cs;
    const uint64_t data_clusters = std::min(data, (data_bytes + cs - 1) / cs);
    m.required = m.fully_allocated - data * cs + data_clusters * cs;
    if (o.preallocation == Preallocation::Falloc || o.preallocation == Preallocation::Full)
        m.required = m.fully_allocated;
    return m;
}

} // namespace emu::storage::qcow2
