// storage/raw.cpp — the raw format driver.
#include "storage/raw.h"

#include <fmt/format.h>

namespace emu::storage {

Result<void> RawDriver::in_bounds(uint64_t offset, uint64_t bytes) const
{
    uint64_t size = this->size();
    if (offset > size || bytes > size - offset)
        return fail(fmt::format("raw: access of {} bytes at {} is beyond the end of '{}' ({} bytes)", bytes, offset,
                                filename(), size), EINVAL);
    return {};
}

Result<void> RawDriver::read(uint64_t offset, std::span<uint8_t> buf)
{
    if (auto r = in_bounds(offset, buf.size()); !r)
        return r;
    return read_clamped(*m_file, offset, buf);
}

Result<void> RawDriver::write(uint64_t offset, std::span<const uint8_t> buf)
{
    if (auto r = in_bounds(offset, buf.size()); !r)
        return r;
    return m_file->write(offset, buf);
}

Result<void> RawDriver::write_zeroes(uint64_t offset, uint64_t bytes, bool may_unmap)
{
    if (auto r = in_bounds(offset, bytes); !r)
        return r;
    return m_file->write_zeroes(offset, bytes, may_unmap);
}

Result<void> RawDriver::resize(uint64_t size, Preallocation prealloc)
{
    if (prealloc == Preallocation::Metadata)
        return fail("Unsupported preallocation mode: metadata", ENOTSUP);
    if (size < m_file->size() && prealloc != Preallocation::Off)
        return fail("Preallocation can only be used for growing images", EINVAL);
    return m_file->resize(size, prealloc);
}

Result<BlockStatus> RawDriver::block_status(uint64_t offset, uint64_t bytes)
{
    return m_file->block_status(offset, bytes);
}

} // namespace emu::storage
