// storage/memory.cpp — the `memory` protocol driver.
#include "storage/memory.h"

#include <algorithm>
#include <cstring>
#include <fmt/format.h>

namespace emu::storage {

MemoryDriver::MemoryDriver(std::string name, std::vector<uint8_t> data, bool read_only, uint64_t max_size)
    : m_name(std::move(name)), m_data(std::move(data)), m_read_only(read_only), m_max_size(max_size)
{
}

Result<void> MemoryDriver::grow_to(uint64_t end)
{
    if (end <= m_data.size())
        return {};
    if (end > m_max_size)
        return fail(fmt::format("{}: growing to {} bytes would pass the limit of {} bytes", m_name, end, m_max_size),
                    ENOSPC);
    m_data.resize(size_t(end), 0);
    return {};
}

Result<void> MemoryDriver::read(uint64_t offset, std::span<uint8_t> buf)
{
    if (offset > m_data.size() || buf.size() > m_data.size() - offset)
        return fail(fmt::format("{}: read of {} bytes at {} is beyond the end ({} bytes)", m_name, buf.size(), offset,
                                m_data.size()), EIO);
    if (!buf.empty())
        std::memcpy(buf.data(), m_data.data() + offset, buf.size());
    return {};
}

Result<void> MemoryDriver::write(uint64_t offset, std::span<const uint8_t> buf)
{
    if (m_read_only)
        return fail(fmt::format("{}: the image is opened read-only", m_name), EROFS);
    if (offset > m_max_size || buf.size() > m_max_size - offset)
        return fail(fmt::format("{}: write of {} bytes at {} passes the limit", m_name, buf.size(), offset), ENOSPC);
    if (buf.empty())
        return {};
    if (auto r = grow_to(offset + buf.size()); !r)
        return r;
    std::memcpy(m_data.data() + offset, buf.data(), buf.size());
    return {};
}

Result<void> MemoryDriver::write_zeroes(uint64_t offset, uint64_t bytes, bool)
{
    if (m_read_only)
        return fail(fmt::format("{}: the image is opened read-only", m_name), EROFS);
    if (offset > m_max_size || bytes > m_max_size - offset)
        return fail(fmt::format("{}: write of {} bytes at {} passes the limit", m_name, bytes, offset), ENOSPC);
    const uint64_t old = m_data.size();
    if (auto r = grow_to(offset + bytes); !r)
        return r;
    if (offset < old && bytes)
        std::memset(m_data.data() + offset, 0, size_t(std::min(bytes, old - offset)));
    return {};
}

Result<void> MemoryDriver::discard(uint64_t offset, uint64_t bytes)
{
    if (m_read_only)
        return fail(fmt::format("{}: the image is opened read-only", m_name), EROFS);
    if (offset < m_data.size() && bytes)
        std::memset(m_data.data() + offset, 0, size_t(std::min<uint64_t>(bytes, m_data.size() - offset)));
    return {};
}

Result<BlockStatus> MemoryDriver::block_status(uint64_t offset, uint64_t bytes)
{
    BlockStatus st;
    st.allocated = true;
    st.length = bytes;
    st.host_offset = offset;
    st.data = offset < m_data.size();
    st.zero = !st.data;
    if (st.data)
        st.length = std::min<uint64_t>(bytes, m_data.size() - offset);
    return st;
}

Result<void> MemoryDriver::resize(uint64_t size, Preallocation)
{
    if (m_read_only)
        return fail(fmt::format("{}: the image is opened read-only", m_name), EROFS);
    if (size > m_max_size)
        return fail(fmt::format("{}: {} bytes passes the limit", m_name, size), ENOSPC);
    m_data.resize(size_t(size), 0);
    return {};
}

} // namespace emu::storage
