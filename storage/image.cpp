// storage/image.cpp — probing, driver stacking and backing chains.
#include "storage/image.h"

#include "storage/endian.h"
#include "storage/nbd/client.h"
#include "storage/raw.h"

#include <cstring>
#include <fmt/format.h>
#include <set>

namespace emu::storage {

namespace {

constexpr int k_max_chain_depth = 64;

bool starts_with(std::span<const uint8_t> data, std::string_view magic, size_t at = 0)
{
    return data.size() >= at + magic.size() && std::memcmp(data.data() + at, magic.data(), magic.size()) == 0;
}

// The protocol layer: an NBD export for nbd://… names, else a host file.
Result<std::unique_ptr<BlockDriver>> open_protocol(const ImageOptions& o)
{
    if (nbd::is_nbd_filename(o.filename)) {
        // O_DIRECT has no meaning here: the server decides how it caches.
        auto drv = nbd::NbdDriver::open(o.filename, o.read_only);
        if (!drv)
            return std::unexpected(drv.error());
        return std::unique_ptr<BlockDriver>(std::move(*drv));
    }
    FileOptions fo;
    fo.read_only = o.read_only;
    fo.direct = cache_direct(o.cache);
    fo.force_share = o.force_share;
    fo.no_flush = o.cache == CacheMode::Unsafe;
    auto file = FileDriver::open(o.filename, fo);
    if (!file)
        return chain(fmt::format("Could not open '{}'", o.filename), file.error());
    return std::unique_ptr<BlockDriver>(std::move(*file));
}

Result<std::unique_ptr<BlockDriver>> open_chain(const ImageOptions& o, std::set<std::pair<uint64_t, uint64_t>>& seen,
                                                int depth)
{
    if (depth > k_max_chain_depth)
        return fail(fmt::format("Could not open '{}': backing chain is deeper than {} images", o.filename,
                                k_max_chain_depth));
    if (!o.format.empty() && !format_supported(o.format)) {
        if (format_known(o.format))
            return fail(fmt::format("Could not open '{}': image format '{}' is not supported yet (supported: raw, "
                                    "qcow2)", o.filename, o.format));
        return fail(fmt::format("Unknown driver '{}'", o.format));
    }
    auto file = open_protocol(o);
    if (!file)
        return std::unexpected(file.error());
    if (auto* f = dynamic_cast<FileDriver*>(file->get())) {
        auto key = std::make_pair(f->device(), f->inode());
        if (!seen.insert(key).second)
            return fail(fmt::format("Could not open '{}': backing chain loop: the image is already in the chain",
                                    o.filename), ELOOP);
    }
    std::string format = o.format;
    if (format.empty()) {
        auto probed = probe_format(**file);
        if (!probed)
            return chain(fmt::format("Could not open '{}'", o.filename), probed.error());
        format = *probed;
    }
    if (format == "raw")
        return std::unique_ptr<BlockDriver>(new RawDriver(std::move(*file)));

    qcow2::OpenOptions qo;
    qo.read_only = o.read_only;
    qo.l2_cache_bytes = o.l2_cache_bytes;
    qo.refcount_cache_bytes = o.refcount_cache_bytes;
    auto drv = qcow2::Driver::open(std::move(*file), qo);
    if (!drv)
        return chain(fmt::format("Could not open '{}'", o.filename), drv.error());
    const auto& h = (*drv)->header();
    if (o.open_backing && !h.backing_file.empty()) {
        ImageOptions bo = o;
        bo.filename = resolve_backing_path(o.filename, h.backing_file);
        bo.format = h.backing_format;
        bo.read_only = !(o.writable_backing && o.writable_backing(bo.filename));
        auto backing = open_chain(bo, seen, depth + 1);
        if (!backing)
            return chain(fmt::format("Could not open backing file of '{}'", o.filename), backing.error());
        (*drv)->set_backing(std::move(*backing));
    }
    return std::unique_ptr<BlockDriver>(std::move(*drv));
}

} // namespace

Result<CacheMode> parse_cache_mode(std::string_view text)
{
    if (text == "writeback")
        return CacheMode::Writeback;
    if (text == "none" || text == "off")
        return CacheMode::None;
    if (text == "writethrough")
        return CacheMode::Writethrough;
    if (text == "directsync")
        return CacheMode::Directsync;
    if (text == "unsafe")
        return CacheMode::Unsafe;
    return fail(fmt::format("Invalid cache option: {}", text));
}

std::string_view cache_mode_name(CacheMode mode)
{
    switch (mode) {
    case CacheMode::Writeback: return "writeback";
    case CacheMode::None: return "none";
    case CacheMode::Writethrough: return "writethrough";
    case CacheMode::Directsync: return "directsync";
    case CacheMode::Unsafe: return "unsafe";
    }
    return "writeback";
}

bool format_supported(std::string_view format)
{
    return format == "raw" || format == "qcow2";
}

bool format_known(std::string_view format)
{
    for (std::string_view f : {"qcow", "qed", "vdi", "vmdk", "vpc", "vhdx", "luks", "bochs", "cloop", "dmg",
                               "parallels", "vvfat"})
        if (f == format)
            return true;
    return false;
}

Result<std::string> probe_format(BlockDriver& file)
{
    std::vector<uint8_t> head(size_t(std::min<uint64_t>(file.size(), 1024)));
    if (auto r = file.read(0, head); !r)
        return std::unexpected(r.error());
    std::string refused;
    if (head.size() >= 8 && load_be32(head.data()) == 0x514649fb) {
        uint32_t version = load_be32(head.data() + 4);
        if (version <= 1)
            refused = "qcow";
        else
            return std::string("qcow2");
    } else if (starts_with(head, std::string_view("QED\0", 4))) {
        refused = "qed";
    } else if (head.size() >= 0x44 && head[0x40] == 0x7f && head[0x41] == 0x10 && head[0x42] == 0xda &&
               head[0x43] == 0xbe) {
        refused = "vdi";
    } else if (starts_with(head, "KDMV") || starts_with(head, "COWD") || starts_with(head, "# Disk DescriptorFile")) {
        refused = "vmdk";
    } else if (starts_with(head, "conectix")) {
        refused = "vpc";
    } else if (starts_with(head, "vhdxfile")) {
        refused = "vhdx";
    } else if (starts_with(head, "LUKS\xba\xbe")) {
        refused = "luks";
    } else if (starts_with(head, "Bochs Virtual HD Image")) {
        refused = "bochs";
    } else if (starts_with(head, "#!/bin/sh\n#V2.0 Format\n")) {
        refused = "cloop";
    } else if (starts_with(head, "WithoutFreeSpace") || starts_with(head, "WithouFreSpacExt")) {
        refused = "parallels";
    } else if (file.size() >= 512) {
        uint8_t tail[4];
        if (file.read(file.size() - 512, tail) && std::memcmp(tail, "koly", 4) == 0)
            refused = "dmg";
    }
    if (!refused.empty())
        return fail(fmt::format("image format '{}' is not supported yet (supported: raw, qcow2)", refused));
    return std::string("raw");
}

std::string resolve_backing_path(const std::string& image, const std::string& backing)
{
    if (backing.empty() || backing[0] == '/')
        return backing;
    auto slash = image.rfind('/');
    if (slash == std::string::npos)
        return backing;
    return image.substr(0, slash + 1) + backing;
}

Result<std::unique_ptr<BlockDriver>> open_format(std::unique_ptr<BlockDriver> file, const std::string& format,
                                                 bool read_only)
{
    std::string name = file->filename();
    std::string fmt_name = format;
    if (fmt_name.empty()) {
        auto probed = probe_format(*file);
        if (!probed)
            return chain(fmt::format("Could not open '{}'", name), probed.error());
        fmt_name = *probed;
    }
    if (!format_supported(fmt_name))
        return fail(fmt::format("Could not open '{}': image format '{}' is not supported", name, fmt_name));
    if (fmt_name == "raw")
        return std::unique_ptr<BlockDriver>(new RawDriver(std::move(file)));
    qcow2::OpenOptions qo;
    qo.read_only = read_only;
    auto drv = qcow2::Driver::open(std::move(file), qo);
    if (!drv)
        return chain(fmt::format("Could not open '{}'", name), drv.error());
    return std::unique_ptr<BlockDriver>(std::move(*drv));
}

Result<std::unique_ptr<BlockDriver>> open_image(const ImageOptions& options)
{
    std::set<std::pair<uint64_t, uint64_t>> seen;
    return open_chain(options, seen, 0);
}

namespace {

// An NBD export cannot be created or grown: "creating" an image on one opens
// it, checks that it is large enough and zeroes its first sector, so that no
// stale format header is probed there later.
Result<std::unique_ptr<BlockDriver>> claim_nbd_export(const std::string& name, uint64_t size)
{
    auto drv = nbd::NbdDriver::open(name, false);
    if (!drv)
        return std::unexpected(drv.error());
    if ((*drv)->read_only())
        return fail("the export is read-only", EROFS);
    if ((*drv)->size() < size)
        return fail(fmt::format("Cannot grow NBD nodes (the export has {} bytes, the image needs {})", (*drv)->size(),
                                size),
                    ENOSPC);
    if (auto r = (*drv)->write_zeroes(0, std::min<uint64_t>(512, (*drv)->size()), false); !r)
        return std::unexpected(r.error());
    return std::unique_ptr<BlockDriver>(std::move(*drv));
}

} // namespace

Result<void> create_raw(const std::string& path, uint64_t size, Preallocation prealloc)
{
    if (prealloc == Preallocation::Metadata)
        return fail("Unsupported preallocation mode 'metadata'");
    if (nbd::is_nbd_filename(path)) {
        auto drv = claim_nbd_export(path, size);
        if (!drv)
            return std::unexpected(drv.error());
        return (*drv)->close();
    }
    return FileDriver::create(path, (size + 511) & ~uint64_t(511), prealloc);
}

Result<void> create_qcow2(const std::string& path, const qcow2::CreateOptions& options)
{
    qcow2::CreateOptions o = options;
    o.size = (o.size + 511) & ~uint64_t(511);
    if (nbd::is_nbd_filename(path)) {
        auto drv = claim_nbd_export(path, 0);
        if (!drv)
            return std::unexpected(drv.error());
        return qcow2::Driver::create(std::move(*drv), o);
    }
    if (auto r = FileDriver::create(path, 0, Preallocation::Off); !r)
        return r;
    FileOptions fo;
    auto file = FileDriver::open(path, fo);
    if (!file)
        return std::unexpected(file.error());
    return qcow2::Driver::create(std::move(*file), o);
}

} // namespace emu::storage
