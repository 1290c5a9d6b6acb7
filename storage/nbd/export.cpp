// storage/nbd/export.cpp — exports and the export table.
#include "storage/nbd/export.h"

#include "storage/nbd/codec.h"
#include "storage/nbd/protocol.h"

#include <fmt/format.h>

namespace emu::storage::nbd {

Result<std::shared_ptr<Export>> Export::create(std::string name, std::string description,
                                               std::shared_ptr<BlockBackend> backend, bool writable,
                                               const ExportOptions& options)
{
    if (!backend)
        return fail(fmt::format("export '{}': no block backend", name), EINVAL);
    if (!valid_string(name))
        return fail(fmt::format("export name is longer than {} bytes or contains a NUL byte", k_max_string), EINVAL);
    if (!valid_string(description))
        return fail(fmt::format("export '{}': the description is longer than {} bytes or contains a NUL byte", name,
                                k_max_string),
                    EINVAL);
    const uint64_t backend_size = backend->size();
    if (options.offset > backend_size)
        return fail(fmt::format("export '{}': offset {} is beyond the end of the image ({} bytes)", name,
                                options.offset, backend_size),
                    EINVAL);
    uint64_t size = options.size.value_or(backend_size - options.offset);
    if (size > backend_size - options.offset)
        return fail(fmt::format("export '{}': {} bytes from offset {} run past the end of the image ({} bytes)", name,
                                size, options.offset, backend_size),
                    EINVAL);
    if (writable && backend->read_only())
        return fail(fmt::format("export '{}': the image is opened read-only, it cannot be exported writable", name),
                    EROFS);
    std::shared_ptr<Export> ex(new Export());
    ex->m_name = std::move(name);
    ex->m_description = std::move(description);
    ex->m_backend = std::move(backend);
    ex->m_writable = writable;
    ex->m_offset = options.offset;
    ex->m_size = size;
    ex->m_multi_conn = options.multi_conn;
    return ex;
}

uint16_t Export::transmission_flags(bool structured, bool server_multi_conn) const
{
    uint16_t f = k_has_flags | k_send_flush | k_send_fua | k_send_cache;
    if (m_writable)
        f |= k_send_trim | k_send_write_zeroes | k_send_fast_zero;
    else
        f |= k_read_only;
    if (structured)
        f |= k_send_df;
    // Every session goes through the same BlockBackend (one cache, one file):
    // a flush on one connection covers the writes of all of them.
    if (m_multi_conn.value_or(server_multi_conn))
        f |= k_can_multi_conn;
    return f;
}

Result<void> Export::read(uint64_t offset, std::span<uint8_t> buf)
{
    return m_backend->read(m_offset + offset, buf);
}

Result<void> Export::write(uint64_t offset, std::span<const uint8_t> buf)
{
    return m_backend->write(m_offset + offset, buf);
}

Result<void> Export::write_zeroes(uint64_t offset, uint64_t bytes, bool may_unmap)
{
    forget_data();
    return m_backend->write_zeroes(m_offset + offset, bytes, may_unmap);
}

Result<void> Export::discard(uint64_t offset, uint64_t bytes)
{
    forget_data();
    return m_backend->discard(m_offset + offset, bytes);
}

void Export::forget_data()
{
    std::lock_guard lock(m_cache_mutex);
    m_data_start = m_data_end = 0;
}

bool Export::known_data(uint64_t offset, uint64_t bytes) const
{
    std::lock_guard lock(m_cache_mutex);
    return offset >= m_data_start && offset <= m_data_end && bytes <= m_data_end - offset;
}

Result<void> Export::flush()
{
    return m_backend->flush();
}

Result<BlockStatus> Export::status(uint64_t offset, uint64_t bytes)
{
    auto st = m_backend->block_status_above(m_offset + offset, bytes);
    if (st && st->data && !st->zero && st->length > 0) {
        std::lock_guard lock(m_cache_mutex);
        m_data_start = offset;
        m_data_end = offset + std::min(st->length, m_size - offset);
    }
    return st;
}

bool Export::attach()
{
    std::lock_guard lock(m_mutex);
    if (m_retired)
        return false;
    m_sessions++;
    return true;
}

void Export::detach()
{
    std::lock_guard lock(m_mutex);
    if (m_sessions > 0 && --m_sessions == 0)
        m_idle.notify_all();
}

size_t Export::sessions() const
{
    std::lock_guard lock(m_mutex);
    return m_sessions;
}

void Export::retire()
{
    std::lock_guard lock(m_mutex);
    m_retired = true;
}

void Export::unretire()
{
    std::lock_guard lock(m_mutex);
    m_retired = false;
}

void Export::wait_idle()
{
    std::unique_lock lock(m_mutex);
    m_idle.wait(lock, [this] { return m_sessions == 0; });
}

Result<void> ExportTable::add(std::shared_ptr<Export> ex)
{
    std::lock_guard lock(m_mutex);
    if (m_exports.count(ex->name()))
        return fail(fmt::format("export '{}' already exists", ex->name()), EEXIST);
    m_exports.emplace(ex->name(), std::move(ex));
    return {};
}

std::shared_ptr<Export> ExportTable::find(std::string_view name) const
{
    std::lock_guard lock(m_mutex);
    auto it = m_exports.find(name);
    return it == m_exports.end() ? nullptr : it->second;
}

std::vector<std::shared_ptr<Export>> ExportTable::list() const
{
    std::lock_guard lock(m_mutex);
    std::vector<std::shared_ptr<Export>> out;
    for (const auto& [name, ex] : m_exports)
        out.push_back(ex);
    return out;
}

std::shared_ptr<Export> ExportTable::remove(std::string_view name)
{
    std::lock_guard lock(m_mutex);
    auto it = m_exports.find(name);
    if (it == m_exports.end())
        return nullptr;
    auto ex = it->second;
    m_exports.erase(it);
    return ex;
}

} // namespace emu::storage::nbd
