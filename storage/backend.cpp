// storage/backend.cpp — BlockBackend.
#include "storage/backend.h"

#include "common/log.h"

#include <algorithm>
#include <fmt/format.h>

namespace emu::storage {

Result<DetectZeroes> parse_detect_zeroes(std::string_view text)
{
    if (text == "off")
        return DetectZeroes::Off;
    if (text == "on")
        return DetectZeroes::On;
    if (text == "unmap")
        return DetectZeroes::Unmap;
    return fail(fmt::format("Parameter 'detect-zeroes' does not accept value '{}'", text));
}

Result<DiscardMode> parse_discard(std::string_view text)
{
    if (text == "ignore" || text == "off")
        return DiscardMode::Ignore;
    if (text == "unmap" || text == "on")
        return DiscardMode::Unmap;
    return fail(fmt::format("Invalid discard option: {}", text));
}

Result<AioMode> parse_aio(std::string_view text)
{
    if (text == "threads")
        return AioMode::Threads;
    if (text == "native" || text == "io_uring")
        return fail(fmt::format("aio={} is not supported (only aio=threads)", text));
    return fail(fmt::format("Parameter 'aio' does not accept value '{}'", text));
}

Result<std::unique_ptr<BlockBackend>> BlockBackend::open(const BackendOptions& options)
{
    auto drv = open_image(options.image);
    if (!drv)
        return std::unexpected(drv.error());
    return std::make_unique<BlockBackend>(std::move(*drv), options);
}

BlockBackend::BlockBackend(std::unique_ptr<BlockDriver> driver, const BackendOptions& options)
    : m_driver(std::move(driver)), m_options(options), m_pool(options.pool ? options.pool : &WorkerPool::shared())
{
    refresh();
}

void BlockBackend::refresh()
{
    if (!m_driver)
        return;
    m_size.store(m_driver->size(), std::memory_order_release);
    m_read_only.store(m_driver->read_only(), std::memory_order_release);
}

Result<std::unique_ptr<BlockDriver>> BlockBackend::release_driver()
{
    drain();
    std::lock_guard lock(m_io);
    if (m_closed || !m_driver)
        return fail("the block backend has no driver any more", EINVAL);
    if (auto r = m_driver->flush(); !r)
        return std::unexpected(r.error());
    m_closed = true;
    return std::move(m_driver);
}

BlockBackend::~BlockBackend()
{
    if (auto r = close(); !r)
        log_error("{}", r.error().message);
}

Result<void> BlockBackend::after_write()
{
    if (cache_writethrough(m_options.image.cache))
        return m_driver->flush();
    return {};
}

Result<void> BlockBackend::resize(uint64_t size)
{
    std::lock_guard lock(m_io);
    Refresh refresh{*this};
    return m_driver->resize(size, Preallocation::Off);
}

Result<void> BlockBackend::read(uint64_t offset, std::span<uint8_t> buf)
{
    std::lock_guard lock(m_io);
    return m_driver->read(offset, buf);
}

Result<void> BlockBackend::write(uint64_t offset, std::span<const uint8_t> buf)
{
    std::lock_guard lock(m_io);
    mark_written(offset, buf.size());
    if (m_options.detect_zeroes != DetectZeroes::Off && !buf.empty() &&
        buffer_is_zero(buf)) {
        bool unmap = m_options.detect_zeroes == DetectZeroes::Unmap && m_options.discard == DiscardMode::Unmap;
        if (auto r = m_driver->write_zeroes(offset, buf.size(), unmap); !r)
            return r;
        return after_write();
    }
    if (auto r = m_driver->write(offset, buf); !r)
        return r;
    return after_write();
}

Result<void> BlockBackend::write_zeroes(uint64_t offset, uint64_t bytes, bool may_unmap)
{
    std::lock_guard lock(m_io);
    mark_written(offset, bytes);
    bool unmap = may_unmap && m_options.discard == DiscardMode::Unmap;
    if (auto r = m_driver->write_zeroes(offset, bytes, unmap); !r)
        return r;
    return after_write();
}

Result<void> BlockBackend::discard(uint64_t offset, uint64_t bytes)
{
    std::lock_guard lock(m_io);
    if (m_options.discard == DiscardMode::Ignore)
        return {};
    if (m_driver->read_only())
        return fail(fmt::format("'{}' is opened read-only", m_driver->filename()), EROFS);
    mark_written(offset, bytes);
    if (auto r = m_driver->discard(offset, bytes); !r)
        return r;
    return after_write();
}

Result<void> BlockBackend::flush()
{
    std::lock_guard lock(m_io);
    if (m_options.image.cache == CacheMode::Unsafe)
        return {};
    return m_driver->flush();
}

Result<BlockStatus> BlockBackend::block_status(uint64_t offset, uint64_t bytes)
{
    std::lock_guard lock(m_io);
    return m_driver->block_status(offset, bytes);
}

Result<BlockStatus> BlockBackend::block_status_above(uint64_t offset, uint64_t bytes)
{
    std::lock_guard lock(m_io);
    return storage::block_status_above(*m_driver, offset, bytes);
}

void BlockBackend::submit(std::function<Result<void>()> op, Completion done)
{
    {
        std::lock_guard lock(m_inflight_mutex);
        m_inflight++;
    }
    m_pool->submit([this, op = std::move(op), done = std::move(done)] {
        Result<void> r = op();
        if (done)
            done(std::move(r));
        std::lock_guard lock(m_inflight_mutex);
        if (--m_inflight == 0)
            m_inflight_cv.notify_all();
    });
}

void BlockBackend::read_async(uint64_t offset, std::span<uint8_t> buf, Completion done)
{
    submit([this, offset, buf] { return read(offset, buf); }, std::move(done));
}

void BlockBackend::write_async(uint64_t offset, std::span<const uint8_t> buf, Completion done)
{
    submit([this, offset, buf] { return write(offset, buf); }, std::move(done));
}

void BlockBackend::write_zeroes_async(uint64_t offset, uint64_t bytes, bool may_unmap, Completion done)
{
    submit([this, offset, bytes, may_unmap] { return write_zeroes(offset, bytes, may_unmap); }, std::move(done));
}

void BlockBackend::discard_async(uint64_t offset, uint64_t bytes, Completion done)
{
    submit([this, offset, bytes] { return discard(offset, bytes); }, std::move(done));
}

void BlockBackend::flush_async(Completion done)
{
    submit([this] { return flush(); }, std::move(done));
}

void BlockBackend::drain()
{
    std::unique_lock lock(m_inflight_mutex);
    m_inflight_cv.wait(lock, [this] { return m_inflight == 0; });
}

void BlockBackend::mark_written(uint64_t offset, uint64_t bytes)
{
    if (!m_track_granularity || bytes == 0)
        return;
    for (uint64_t c = offset / m_track_granularity; c <= (offset + bytes - 1) / m_track_granularity; c++)
        m_written.insert(c);
}

void BlockBackend::start_write_tracking(uint64_t granularity)
{
    std::lock_guard lock(m_io);
    m_track_granularity = std::max<uint64_t>(granularity, 512);
    m_written.clear();
}

std::vector<std::pair<uint64_t, uint64_t>> BlockBackend::take_written()
{
    std::lock_guard lock(m_io);
    std::vector<std::pair<uint64_t, uint64_t>> ranges;
    for (uint64_t c : m_written) {
        uint64_t start = c * m_track_granularity;
        if (!ranges.empty() && ranges.back().first + ranges.back().second == start)
            ranges.back().second += m_track_granularity;
        else
            ranges.emplace_back(start, m_track_granularity);
    }
    m_written.clear();
    return ranges;
}

void BlockBackend::stop_write_tracking()
{
    std::lock_guard lock(m_io);
    m_track_granularity = 0;
    m_written.clear();
}

Result<void> BlockBackend::close()
{
    drain();
    std::lock_guard lock(m_io);
    if (m_closed)
        return {};
    m_closed = true;
    if (!m_driver)
        return {};
    return m_driver->close();
}

} // namespace emu::storage
