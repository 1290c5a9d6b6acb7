// storage/nbd/transmission.cpp — the server side of the transmission phase:
// requests validated and served against the export, simple or structured
// replies (sparse reads as data and hole chunks, base:allocation extents),
// and the reply writer thread.
#include "storage/nbd/session.h"

#include "common/log.h"

#include <algorithm>
#include <fmt/format.h>

namespace emu::storage::nbd {

namespace {

// A structured read is split into data and hole chunks along the export's
// allocation; zero runs shorter than this are sent as data.
constexpr uint64_t k_min_hole = 4096;
constexpr size_t k_max_read_runs = 64;
constexpr size_t k_max_extents = 1024;
constexpr size_t k_cache_chunk = 1u << 20;
// Recycled data buffers: sizes rounded up to 64 KiB; at most 48 of them and
// 64 MiB kept per client.
constexpr size_t k_buffer_granule = 64u << 10;
constexpr size_t k_pool_buffers = 48;
constexpr size_t k_pool_bytes = 64u << 20;

struct Run {
    uint64_t start = 0; // relative to the request's offset
    uint64_t length = 0;
    bool zero = false;
};

void add_run(std::vector<Run>& runs, uint64_t start, uint64_t length, bool zero)
{
    if (!runs.empty() && runs.back().zero == zero)
        runs.back().length += length;
    else
        runs.push_back({start, length, zero});
}

} // namespace

Result<void> ServerSession::transmit()
{
    if (m_channel->duplex())
        m_writer = std::thread([this] { writer_loop(); });
    Result<void> result;
    while (true) {
        auto more = serve_one();
        if (!more) {
            result = std::unexpected(more.error());
            break;
        }
        if (!*more)
            break;
    }
    // NBD_CMD_DISC: the replies still queued go out first. Otherwise the
    // client is gone or broke the protocol: they are dropped.
    stop_writer(bool(result));
    if (result && m_write_failed)
        result = std::unexpected(m_write_error);
    return result;
}

Result<bool> ServerSession::serve_one()
{
    uint8_t hb[k_request_size];
    if (auto r = m_channel->read(hb); !r) {
        if (r.error().err == k_peer_closed)
            return fail("the client closed the connection without NBD_CMD_DISC", k_peer_closed);
        return std::unexpected(r.error());
    }
    auto req = decode_request(std::span<const uint8_t, k_request_size>(hb));
    if (!req)
        return std::unexpected(req.error());
    if (Cmd(req->type) == Cmd::Disc)
        return false;
    std::unique_ptr<uint8_t[]> payload;
    if (Cmd(req->type) == Cmd::Write) {
        // The payload must be consumed to stay in step; one the protocol does
        // not oblige us to take ends the session instead.
        if (req->length > k_max_payload)
            return fail(
                fmt::format("NBD_CMD_WRITE of {} bytes is larger than the {} byte limit", req->length, k_max_payload),
                EPROTO);
        size_t capacity = 0;
        payload = take_buffer(std::max<uint32_t>(req->length, 1), capacity);
        if (auto r = m_channel->read(std::span<uint8_t>(payload.get(), req->length)); !r)
            return std::unexpected(r.error());
        auto r = serve(*req, payload.get());
        give_buffer(std::move(payload), capacity);
        if (!r)
            return std::unexpected(r.error());
        return true;
    }
    if (auto r = serve(*req, nullptr); !r)
        return std::unexpected(r.error());
    return true;
}

uint32_t ServerSession::check(const Request& req, std::string& why) const
{
    const Cmd cmd = Cmd(req.type);
    const std::string_view name = cmd_name(req.type);
    uint16_t allowed = k_cmd_fua;
    switch (cmd) {
    case Cmd::Read: allowed |= m_structured ? k_cmd_df : 0; break;
    case Cmd::Write:
    case Cmd::Flush:
    case Cmd::Trim:
    case Cmd::Cache: break;
    case Cmd::WriteZeroes: allowed |= k_cmd_no_hole | k_cmd_fast_zero; break;
    case Cmd::BlockStatus: allowed |= k_cmd_req_one; break;
    default: why = fmt::format("unknown command {}", req.type); return k_einval;
    }
    if (req.flags & ~allowed) {
        why = fmt::format("{} does not take flags 0x{:x}", name, req.flags & ~allowed);
        return k_einval;
    }
    if (cmd == Cmd::Flush) {
        if (req.offset != 0 || req.length != 0) {
            why = "NBD_CMD_FLUSH with a nonzero offset or length";
            return k_einval;
        }
        return 0;
    }
    const bool writes = cmd == Cmd::Write || cmd == Cmd::WriteZeroes || cmd == Cmd::Trim;
    if (writes && !m_export->writable()) {
        why = fmt::format("{} on read-only export '{}'", name, m_export->name());
        return k_eperm;
    }
    const uint64_t size = m_export->size();
    if (req.offset > size || req.length > size - req.offset) {
        why = fmt::format("{} of {} bytes at offset {} runs past the end of export '{}' ({} bytes)", name, req.length,
                          req.offset, m_export->name(), size);
        return cmd == Cmd::Write || cmd == Cmd::WriteZeroes ? k_enospc : k_einval;
    }
    if ((cmd == Cmd::Read || cmd == Cmd::Cache) && req.length > k_max_payload) {
        why = fmt::format("{} of {} bytes is larger than the {} byte limit", name, req.length, k_max_payload);
        return k_einval;
    }
    if (cmd == Cmd::BlockStatus && !m_meta_selected) {
        why = "NBD_CMD_BLOCK_STATUS without a selected meta context";
        return k_einval;
    }
    if (cmd == Cmd::BlockStatus && req.length == 0) {
        why = "NBD_CMD_BLOCK_STATUS of 0 bytes";
        return k_einval;
    }
    return 0;
}

Result<void> ServerSession::serve(const Request& req, const uint8_t* payload)
{
    std::string why;
    if (uint32_t error = check(req, why))
        return reply_error(req, error, why);
    const bool fua = req.flags & k_cmd_fua;
    auto then_flush = [&](Result<void> r) {
        if (r && fua)
            r = m_export->flush();
        return r;
    };
    switch (Cmd(req.type)) {
    case Cmd::Read: return serve_read(req);
    case Cmd::Write:
        if (req.length == 0)
            return reply_ok(req);
        return reply_result(req, then_flush(m_export->write(req.offset, {payload, req.length})));
    case Cmd::Flush: return reply_result(req, m_export->flush());
    case Cmd::Trim:
        if (req.length == 0)
            return reply_ok(req);
        return reply_result(req, then_flush(m_export->discard(req.offset, req.length)));
    case Cmd::Cache: return serve_cache(req);
    case Cmd::WriteZeroes: return serve_write_zeroes(req);
    case Cmd::BlockStatus: return serve_block_status(req);
    default: break;
    }
    return reply_error(req, k_einval, "unknown command");
}

Result<void> ServerSession::serve_read(const Request& req)
{
    OutMessage m;
    if (req.length == 0) {
        if (m_structured)
            m.add_meta(encode_chunk_header(k_reply_flag_done, Chunk::None, req.cookie, 0));
        else
            m.add_meta(encode_simple_reply(0, req.cookie));
        return send(std::move(m));
    }
    m.data = take_buffer(req.length, m.data_capacity);
    m.data_size = req.length;
    uint8_t* data = m.data.get();
    if (!m_structured) {
        if (auto r = m_export->read(req.offset, {data, req.length}); !r)
            return reply_result(req, r);
        m.add_meta(encode_simple_reply(0, req.cookie));
        m.add_data(0, req.length);
        return send(std::move(m));
    }
    // Data and hole runs along the allocation (DF: one data chunk).
    std::vector<Run> runs;
    uint64_t pos = 0;
    if (m_export->known_data(req.offset, req.length)) {
        pos = req.length; // inside the data run found last time: no holes to look for
        runs.push_back({0, req.length, false});
    } else if (!(req.flags & k_cmd_df)) {
        while (pos < req.length && runs.size() < k_max_read_runs) {
            // Asked to the end of the export: a long data run is remembered for the next reads.
            auto st = m_export->status(req.offset + pos, m_export->size() - (req.offset + pos));
            if (!st || st->length == 0)
                break;
            uint64_t n = std::min<uint64_t>(st->length, req.length - pos);
            add_run(runs, pos, n, st->zero && n >= k_min_hole);
            pos += n;
        }
    }
    if (pos < req.length)
        add_run(runs, pos, req.length - pos, false);
    for (const Run& run : runs) {
        if (run.zero)
            continue;
        if (auto r = m_export->read(req.offset + run.start, {data + run.start, size_t(run.length)}); !r)
            return reply_result(req, r);
    }
    for (size_t i = 0; i < runs.size(); i++) {
        const Run& run = runs[i];
        const uint16_t flags = i + 1 == runs.size() ? k_reply_flag_done : 0;
        ByteWriter w;
        w.u64(req.offset + run.start);
        if (run.zero) {
            w.u32(uint32_t(run.length));
            m.add_meta(encode_chunk_header(flags, Chunk::OffsetHole, req.cookie, 12));
            m.add_meta(w.data());
        } else {
            m.add_meta(encode_chunk_header(flags, Chunk::OffsetData, req.cookie, uint32_t(8 + run.length)));
            m.add_meta(w.data());
            m.add_data(size_t(run.start), size_t(run.length));
        }
    }
    return send(std::move(m));
}

Result<void> ServerSession::serve_write_zeroes(const Request& req)
{
    if (req.length == 0)
        return reply_ok(req);
    if (req.flags & k_cmd_fast_zero) {
        // Fast only when nothing has to be written: the range already reads
        // as zeroes (and may stay a hole). Anything else fails at once.
        if (req.flags & k_cmd_no_hole)
            return reply_error(req, k_enotsup, "fast zeroing cannot allocate the range");
        uint64_t pos = 0;
        for (size_t step = 0; pos < req.length && step < k_max_read_runs; step++) {
            auto st = m_export->status(req.offset + pos, req.length - pos);
            if (!st || st->length == 0 || !st->zero)
                break;
            pos += std::min<uint64_t>(st->length, req.length - pos);
        }
        if (pos < req.length)
            return reply_error(req, k_enotsup, "zeroing this range is not faster than writing it");
        return reply_ok(req);
    }
    auto r = m_export->write_zeroes(req.offset, req.length, !(req.flags & k_cmd_no_hole));
    if (r && (req.flags & k_cmd_fua))
        r = m_export->flush();
    return reply_result(req, r);
}

Result<void> ServerSession::serve_block_status(const Request& req)
{
    const size_t max = (req.flags & k_cmd_req_one) ? 1 : k_max_extents;
    std::vector<Extent> extents;
    uint64_t pos = 0;
    while (pos < req.length) {
        auto st = m_export->status(req.offset + pos, req.length - pos);
        if (!st)
            return reply_result(req, std::unexpected(st.error()));
        uint64_t n = std::min<uint64_t>(st->length, req.length - pos);
        if (n == 0)
            break;
        uint32_t flags = (st->data ? 0 : k_state_hole) | (st->zero ? k_state_zero : 0);
        if (!extents.empty() && extents.back().flags == flags) {
            extents.back().length += uint32_t(n);
        } else {
            if (extents.size() == max)
                break;
            extents.push_back({uint32_t(n), flags});
        }
        pos += n;
    }
    if (extents.empty())
        return reply_error(req, k_eio, "no block status available");
    ByteWriter w;
    w.u32(k_meta_id);
    for (const Extent& e : extents)
        w.u32(e.length).u32(e.flags);
    OutMessage m;
    m.add_meta(encode_chunk_header(k_reply_flag_done, Chunk::BlockStatus, req.cookie, uint32_t(w.data().size())));
    m.add_meta(w.data());
    return send(std::move(m));
}

Result<void> ServerSession::serve_cache(const Request& req)
{
    // Reading the range warms the host's cache (and a copy-on-read layer, if any).
    std::vector<uint8_t> scratch(std::min<size_t>(req.length, k_cache_chunk));
    for (uint64_t pos = 0; pos < req.length;) {
        size_t n = size_t(std::min<uint64_t>(req.length - pos, scratch.size()));
        if (auto r = m_export->read(req.offset + pos, {scratch.data(), n}); !r)
            return reply_result(req, r);
        pos += n;
    }
    return reply_ok(req);
}

Result<void> ServerSession::reply_ok(const Request& req)
{
    OutMessage m;
    m.add_meta(encode_simple_reply(0, req.cookie));
    return send(std::move(m));
}

Result<void> ServerSession::reply_error(const Request& req, uint32_t error, const std::string& message)
{
    OutMessage m;
    if (m_structured) {
        auto payload = encode_error_chunk(error, message);
        m.add_meta(encode_chunk_header(k_reply_flag_done, Chunk::Error, req.cookie, uint32_t(payload.size())));
        m.add_meta(payload);
    } else {
        m.add_meta(encode_simple_reply(error, req.cookie));
    }
    return send(std::move(m));
}

Result<void> ServerSession::reply_result(const Request& req, const Result<void>& r)
{
    if (r)
        return reply_ok(req);
    // The client learns the error class; the details (host paths) stay here.
    const uint32_t error = errno_to_nbd(r.error().err);
    log_debug("nbd: {}: {} failed: {}", m_peer, cmd_name(req.type), r.error().message);
    return reply_error(req, error, fmt::format("{} failed: {}", cmd_name(req.type), nbd_error_text(error)));
}

std::unique_ptr<uint8_t[]> ServerSession::take_buffer(size_t size, size_t& capacity)
{
    {
        // The buffer given back last is the likeliest to be in the CPU's cache.
        std::lock_guard lock(m_pool_mutex);
        for (size_t i = m_pool.size(); i-- > 0;) {
            if (m_pool[i].second >= size) {
                auto buffer = std::move(m_pool[i].first);
                capacity = m_pool[i].second;
                m_pool_bytes -= capacity;
                m_pool.erase(m_pool.begin() + ptrdiff_t(i));
                return buffer;
            }
        }
    }
    capacity = (size + k_buffer_granule - 1) / k_buffer_granule * k_buffer_granule;
    return std::unique_ptr<uint8_t[]>(new uint8_t[capacity]);
}

void ServerSession::give_buffer(std::unique_ptr<uint8_t[]> buffer, size_t capacity)
{
    std::lock_guard lock(m_pool_mutex);
    if (m_pool.size() >= k_pool_buffers || m_pool_bytes + capacity > k_pool_bytes)
        return; // freed
    m_pool_bytes += capacity;
    m_pool.emplace_back(std::move(buffer), capacity);
}

Result<void> ServerSession::write_now(const OutMessage& msg)
{
    std::vector<std::span<const uint8_t>> spans;
    spans.reserve(msg.pieces.size());
    for (const auto& p : msg.pieces) {
        const uint8_t* base = p.from_data ? msg.data.get() : msg.meta.data();
        spans.emplace_back(base + p.offset, p.length);
    }
    return m_channel->write(std::span<const std::span<const uint8_t>>(spans));
}

Result<void> ServerSession::send(OutMessage msg)
{
    if (!m_writer.joinable())
        return write_now(msg);
    std::unique_lock lock(m_queue_mutex);
    const size_t bytes = msg.bytes();
    m_queue_cv.wait(lock, [&] {
        return m_write_failed || m_shutdown || m_queued_bytes == 0 ||
            m_queued_bytes + bytes <= m_config.max_queued_bytes;
    });
    if (m_write_failed)
        return std::unexpected(m_write_error);
    if (m_shutdown)
        return fail("the session was shut down", ESHUTDOWN);
    m_queued_bytes += bytes;
    m_queue.push_back(std::move(msg));
    m_queue_cv.notify_all();
    return {};
}

void ServerSession::writer_loop()
{
    std::unique_lock lock(m_queue_mutex);
    while (true) {
        m_queue_cv.wait(lock, [this] { return !m_queue.empty() || m_queue_closed; });
        if (m_queue.empty())
            break;
        OutMessage msg = std::move(m_queue.front());
        m_queue.pop_front();
        lock.unlock();
        auto r = write_now(msg);
        if (msg.data)
            give_buffer(std::move(msg.data), msg.data_capacity);
        lock.lock();
        m_queued_bytes -= msg.bytes();
        if (!r) {
            m_write_failed = true;
            m_write_error = r.error();
            m_queue.clear();
            m_queued_bytes = 0;
            m_channel->shutdown(); // the reader stops too
            break;
        }
        m_queue_cv.notify_all();
    }
    m_writer_done = true;
    m_queue_cv.notify_all();
}

void ServerSession::stop_writer(bool graceful)
{
    if (!m_writer.joinable())
        return;
    {
        std::unique_lock lock(m_queue_mutex);
        m_queue_closed = true;
        m_queue_cv.notify_all();
        // A client that stops reading cannot hold the session forever.
        if (!graceful || !m_queue_cv.wait_for(lock, std::chrono::seconds(30), [this] { return m_writer_done; }))
            m_channel->shutdown();
    }
    m_writer.join();
}

} // namespace emu::storage::nbd
