// storage/block_driver.cpp — defaults shared by every driver.
#include "storage/block_driver.h"

#include <algorithm>
#include <cstring>
#include <fmt/format.h>

namespace emu::storage {

uint64_t BlockDriver::allocated_bytes() const
{
    return 0;
}

ImageInfo BlockDriver::info() const
{
    ImageInfo info;
    info.format = std::string(format_name());
    info.virtual_size = size();
    return info;
}

namespace {
std::unexpected<Error> no_snapshots(const BlockDriver& drv)
{
    return fail(fmt::format("'{}' ({}) does not support internal snapshots", drv.filename(), drv.format_name()),
                ENOTSUP);
}
} // namespace

Result<void> BlockDriver::resize(uint64_t, Preallocation)
{
    return fail(fmt::format("'{}' ({}) cannot be resized", filename(), format_name()), ENOTSUP);
}

Result<void> BlockDriver::make_empty()
{
    return fail(fmt::format("'{}' ({}) cannot be emptied", filename(), format_name()), ENOTSUP);
}

Result<void> BlockDriver::set_backing_file(const std::string&, const std::string&)
{
    return fail(fmt::format("'{}' ({}) cannot have a backing file", filename(), format_name()), ENOTSUP);
}

Result<void> BlockDriver::reopen(bool read_only)
{
    if (read_only == this->read_only())
        return {};
    return fail(fmt::format("'{}' ({}) cannot be reopened {}", filename(), format_name(),
                            read_only ? "read-only" : "read-write"), ENOTSUP);
}

Result<void> BlockDriver::attach_backing(std::unique_ptr<BlockDriver>)
{
    return fail(fmt::format("'{}' ({}) does not support backing images", filename(), format_name()), ENOTSUP);
}

Result<void> BlockDriver::snapshot_create(const SnapshotInfo&)
{
    return no_snapshots(*this);
}
Result<void> BlockDriver::snapshot_goto(std::string_view)
{
    return no_snapshots(*this);
}
Result<void> BlockDriver::snapshot_delete(std::string_view)
{
    return no_snapshots(*this);
}
Result<void> BlockDriver::vmstate_write(uint64_t, std::span<const uint8_t>)
{
    return no_snapshots(*this);
}
Result<void> BlockDriver::vmstate_read(uint64_t, std::span<uint8_t>)
{
    return no_snapshots(*this);
}

bool buffer_is_zero(std::span<const uint8_t> buf)
{
    const uint8_t* p = buf.data();
    size_t n = buf.size();
    // Bytes up to an 8-byte boundary, then 64 bytes at a time, then the rest.
    while (n && (reinterpret_cast<uintptr_t>(p) & 7)) {
        if (*p++)
            return false;
        n--;
    }
    while (n >= 64) {
        uint64_t w[8];
        std::memcpy(w, p, 64);
        if ((w[0] | w[1] | w[2] | w[3] | w[4] | w[5] | w[6] | w[7]) != 0)
            return false;
        p += 64;
        n -= 64;
    }
    while (n) {
        if (*p++)
            return false;
        n--;
    }
    return true;
}

Result<void> read_clamped(BlockDriver& drv, uint64_t offset, std::span<uint8_t> buf)
{
    uint64_t size = drv.size();
    size_t inside = offset >= size ? 0 : size_t(std::min<uint64_t>(buf.size(), size - offset));
    if (inside > 0) {
        if (auto r = drv.read(offset, buf.first(inside)); !r)
            return r;
    }
    if (inside < buf.size())
        std::memset(buf.data() + inside, 0, buf.size() - inside);
    return {};
}

Result<BlockStatus> block_status_above(BlockDriver& top, uint64_t offset, uint64_t bytes)
{
    BlockDriver* layer = &top;
    while (true) {
        if (offset >= layer->size()) {
            BlockStatus st;
            st.length = bytes;
            st.zero = true;
            return st;
        }
        auto r = layer->block_status(offset, std::min(bytes, layer->size() - offset));
        if (!r)
            return r;
        BlockStatus st = *r;
        if (st.length == 0 || st.length > bytes)
            st.length = std::min(bytes, layer->size() - offset);
        bytes = st.length;
        BlockDriver* below = layer->backing();
        if (st.allocated || !below) {
            if (!st.allocated && !below)
                st.zero = true; // nothing below: the range reads as zeroes
            return st;
        }
        layer = below;
    }
}

} // namespace emu::storage
