// devices/virtio/virtio_blk_request.cpp — virtio-blk requests: parsing a chain,
// checking it against the disk, submitting it to the backend and completing
// it into the used ring (VIRTIO 1.x, "Block Device: Device Operation").
#include "devices/virtio/virtio_blk_request.h"

#include "common/log.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fmt/format.h>

namespace emu::devices {

using namespace virtio_blk;
using virtio::VirtqChain;
using Kind = VirtioBlk::Request::Kind;

namespace {

constexpr uint64_t kHeaderBytes = 16;
constexpr uint64_t kSegmentBytes = 16;
constexpr uint64_t kSector = 512;

// Calls fn(gpa, length, position) for the bytes [skip, skip+len) of the
// chain's readable (or writable) side; false if the side is shorter or fn
// fails.
template <class Fn>
bool for_chain_bytes(const VirtqChain& chain, bool writable, uint64_t skip, uint64_t len, Fn&& fn)
{
    uint64_t pos = 0;
    for (const virtio::VirtqDesc& d : chain.descs) {
        if (len == 0)
            break;
        if (d.write != writable)
            continue;
        if (skip >= d.len) {
            skip -= d.len;
            continue;
        }
        uint64_t n = std::min<uint64_t>(d.len - skip, len);
        if (!fn(d.addr + skip, n, pos))
            return false;
        pos += n;
        len -= n;
        skip = 0;
    }
    return len == 0;
}

struct Segment {
    uint64_t sector;
    uint32_t sectors;
    uint32_t flags;
};

} // namespace

// ---- parsing ---------------------------------------------------------------

void VirtioBlk::queue_notified(unsigned i)
{
    virtio::Virtqueue& q = vq(i);
    // A driver re-filling the ring from another vCPU as fast as requests
    // complete could keep this loop going; it yields after a few rounds.
    unsigned budget = 4u * q.state().size;
    for (;;) {
        std::string error;
        for (;;) {
            auto r = q.pop(m_chain, error);
            if (r == virtio::Virtqueue::Pop::Empty)
                break;
            if (r == virtio::Virtqueue::Pop::Broken) {
                set_broken(error);
                return;
            }
            handle_chain(i, m_chain);
            if (broken() || --budget == 0)
                return;
        }
        if (!q.publish_avail_event(error)) {
            set_broken(error);
            return;
        }
        if (!q.more_available())
            return;
    }
}

void VirtioBlk::handle_chain(unsigned qi, VirtqChain& chain)
{
    auto fail = [&](const std::string& why) {
        set_broken(fmt::format("queue {}: request at descriptor {}: {}", qi, chain.head, why));
    };
    if (chain.readable < kHeaderBytes)
        return fail(fmt::format("{} bytes of header, 16 needed", chain.readable));
    if (chain.writable < 1)
        return fail("no status byte");
    uint8_t header[kHeaderBytes];
    bool ok = for_chain_bytes(chain, false, 0, kHeaderBytes, [&](uint64_t gpa, uint64_t n, uint64_t pos) {
        return memory().read(gpa, header + pos, n);
    });
    if (!ok)
        return fail("the header is not in guest RAM");
    uint32_t type;
    uint64_t sector;
    std::memcpy(&type, header, 4);
    std::memcpy(&sector, header + 8, 8);
    if (m_busy[qi][chain.head])
        return fail(fmt::format("descriptor {} made available again while in flight", chain.head));

    auto req = std::make_shared<Request>();
    req->generation = generation();
    req->queue = uint16_t(qi);
    req->head = chain.head;
    req->started = std::chrono::steady_clock::now();
    for (auto it = chain.descs.rbegin(); it != chain.descs.rend(); ++it) {
        if (it->write) {
            req->status_gpa = it->addr + it->len - 1;
            break;
        }
    }
    const uint64_t readable_data = chain.readable - kHeaderBytes; // after the header
    const uint64_t writable_data = chain.writable - 1;            // before the status byte
    const uint64_t disk = m_drive.size();
    const uint64_t block = m_cfg.logical_block_size;
    // In range and in whole logical blocks (no overflow: sector is checked first).
    auto range_ok = [&](uint64_t first, uint64_t bytes) {
        return first <= disk / kSector && bytes <= disk - first * kSector && (first * kSector) % block == 0 &&
               bytes % block == 0;
    };
    auto invalid = [&](Kind kind, uint8_t status) {
        req->kind = kind;
        if (status == kStatusIoErr) {
            uint64_t& counter = kind == Kind::Read      ? m_stats.invalid_rd_operations
                                : kind == Kind::Flush   ? m_stats.invalid_flush_operations
                                : kind == Kind::Discard ? m_stats.invalid_unmap_operations
                                                        : m_stats.invalid_wr_operations;
            ++counter;
        }
        finish(req, status);
    };
    // Maps the data bytes [skip, skip+len) of one side as backend pieces.
    auto map_data = [&](bool writable, uint64_t skip, uint64_t len, uint64_t offset) {
        return for_chain_bytes(chain, writable, skip, len, [&](uint64_t gpa, uint64_t n, uint64_t) {
            m_spans.clear();
            if (!memory().map(gpa, n, writable, m_spans))
                return false;
            for (std::span<uint8_t> s : m_spans) {
                Request::Piece* last = req->pieces.empty() ? nullptr : &req->pieces.back();
                if (last && last->buf.data() + last->buf.size() == s.data())
                    last->buf = std::span<uint8_t>(last->buf.data(), last->buf.size() + s.size());
                else
                    req->pieces.push_back({offset, s, 0, false});
                offset += s.size();
            }
            if (writable)
                req->written.emplace_back(gpa, n);
            return true;
        });
    };

    switch (type & ~kTypeBarrier) {
    case kTypeIn:
        if (!range_ok(sector, writable_data))
            return invalid(Kind::Read, kStatusIoErr);
        req->kind = Kind::Read;
        req->bytes = writable_data;
        req->used_len = uint32_t(std::min<uint64_t>(writable_data + 1, UINT32_MAX));
        if (!map_data(true, 0, writable_data, sector * kSector))
            return fail(fmt::format("read buffers ({} bytes) not in guest RAM", writable_data));
        break;
    case kTypeOut:
        if (m_read_only || !range_ok(sector, readable_data))
            return invalid(Kind::Write, kStatusIoErr);
        req->kind = Kind::Write;
        req->bytes = readable_data;
        req->end_offset = sector * kSector + readable_data;
        if (!map_data(false, kHeaderBytes, readable_data, sector * kSector))
            return fail(fmt::format("write buffers ({} bytes) not in guest RAM", readable_data));
        break;
    case kTypeFlush:
        req->kind = Kind::Flush;
        req->flush_phase = true;
        break;
    case kTypeGetId: {
        uint8_t id[kIdBytes] = {};
        std::memcpy(id, m_cfg.serial.data(), std::min<size_t>(m_cfg.serial.size(), kIdBytes));
        uint64_t n = std::min<uint64_t>(writable_data, kIdBytes);
        ok = for_chain_bytes(chain, true, 0, n, [&](uint64_t gpa, uint64_t len, uint64_t pos) {
            return memory().write(gpa, id + pos, len);
        });
        if (!ok)
            return fail("the ID buffer is not in guest RAM");
        req->kind = Kind::Flush; // not counted
        req->used_len = uint32_t(n + 1);
        return finish(req, kStatusOk);
    }
    case kTypeDiscard:
    case kTypeWriteZeroes: {
        bool zeroes = (type & ~kTypeBarrier) == kTypeWriteZeroes;
        Kind kind = zeroes ? Kind::WriteZeroes : Kind::Discard;
        if (!negotiated(zeroes ? kFeatureWriteZeroes : kFeatureDiscard))
            return invalid(kind, kStatusUnsupp);
        if (readable_data == 0 || readable_data % kSegmentBytes)
            return invalid(kind, kStatusIoErr);
        if (readable_data / kSegmentBytes > m_cfg.max_segments)
            return invalid(kind, kStatusUnsupp);
        Segment segs[VirtioBlkConfig::kMaxSegments];
        unsigned count = unsigned(readable_data / kSegmentBytes);
        uint8_t raw[kSegmentBytes * VirtioBlkConfig::kMaxSegments];
        ok = for_chain_bytes(chain, false, kHeaderBytes, readable_data,
                             [&](uint64_t gpa, uint64_t n, uint64_t pos) { return memory().read(gpa, raw + pos, n); });
        if (!ok)
            return fail("the segments are not in guest RAM");
        uint32_t max_sectors = zeroes ? m_cfg.max_write_zeroes_sectors : m_cfg.max_discard_sectors;
        uint32_t known_flags = zeroes ? kWriteZeroesUnmap : 0;
        for (unsigned s = 0; s < count; ++s) {
            std::memcpy(&segs[s].sector, raw + s * kSegmentBytes, 8);
            std::memcpy(&segs[s].sectors, raw + s * kSegmentBytes + 8, 4);
            std::memcpy(&segs[s].flags, raw + s * kSegmentBytes + 12, 4);
            if (segs[s].flags & ~known_flags)
                return invalid(kind, kStatusUnsupp);
        }
        if (m_read_only)
            return invalid(kind, kStatusIoErr);
        req->kind = kind;
        for (unsigned s = 0; s < count; ++s) {
            uint64_t bytes = uint64_t(segs[s].sectors) * kSector;
            if (segs[s].sectors > max_sectors || !range_ok(segs[s].sector, bytes))
                return invalid(kind, kStatusIoErr);
            if (bytes)
                req->pieces.push_back({segs[s].sector * kSector, {}, bytes, (segs[s].flags & kWriteZeroesUnmap) != 0});
            req->bytes += bytes;
            req->end_offset = std::max(req->end_offset, segs[s].sector * kSector + bytes);
        }
        break;
    }
    default: return invalid(Kind::Flush, kStatusUnsupp);
    }
    if (!req->flush_phase && req->pieces.empty()) { // nothing to transfer
        account(*req, false);
        return finish(req, kStatusOk);
    }
    m_busy[qi][chain.head] = true;
    start(req);
}

// ---- submission and completion ---------------------------------------------

void VirtioBlk::start(const std::shared_ptr<Request>& req)
{
    ++m_current;
    m_inflight_total.fetch_add(1);
    req->error = 0;
    auto done = [this, req](storage::Result<void> r) { piece_done(req, r); };
    if (req->flush_phase) {
        req->pending = 1;
        m_drive.flush_async(done);
        return;
    }
    req->pending = unsigned(req->pieces.size());
    for (const Request::Piece& p : req->pieces) {
        switch (req->kind) {
        case Kind::Read: m_drive.read_async(p.offset, p.buf, done); break;
        case Kind::Write: m_drive.write_async(p.offset, p.buf, done); break;
        case Kind::Discard: m_drive.discard_async(p.offset, p.bytes, done); break;
        case Kind::WriteZeroes: m_drive.write_zeroes_async(p.offset, p.bytes, p.unmap, done); break;
        case Kind::Flush: break; // flush_phase above
        }
    }
}

void VirtioBlk::piece_done(const std::shared_ptr<Request>& req, const storage::Result<void>& result)
{
    // On a storage worker.
    if (!result) {
        int expected = 0;
        req->error.compare_exchange_strong(expected, result.error().err ? result.error().err : EIO);
        log_debug("{}: {}", name(), result.error().message);
    }
    if (req->pending.fetch_sub(1) != 1)
        return;
    bool finished = false;
    memory().run_locked([&] { finished = complete_locked(req); });
    if (finished)
        end_inflight();
}

bool VirtioBlk::complete_locked(const std::shared_ptr<Request>& req)
{
    int err = req->error;
    if (req->generation != generation()) { // reset since: nobody waits for it
        --m_stale;
        account(*req, err != 0);
        return true;
    }
    --m_current;
    bool data_phase = !req->flush_phase;
    if (!err && data_phase && req->kind != Kind::Read && writethrough()) {
        req->flush_phase = true; // writethrough: stable before completion
        start(req);
        return true;
    }
    if (err) {
        bool is_read = req->kind == Kind::Read;
        BlockErrorAction action = is_read ? m_cfg.rerror : m_cfg.werror;
        if (action == BlockErrorAction::Enospc)
            action = err == ENOSPC ? BlockErrorAction::Stop : BlockErrorAction::Report;
        if (action == BlockErrorAction::Stop) {
            req->flush_phase = req->kind == Kind::Flush; // retried from the start
            m_parked.push_back(req);
            if (m_on_io_error)
                m_on_io_error(is_read, err, true);
            return true;
        }
        if (m_on_io_error)
            m_on_io_error(is_read, err, false);
        account(*req, true);
        finish(req, action == BlockErrorAction::Ignore ? kStatusOk : kStatusIoErr);
        return true;
    }
    account(*req, false);
    finish(req, kStatusOk);
    return true;
}

void VirtioBlk::finish(const std::shared_ptr<Request>& req, uint8_t status)
{
    m_busy[req->queue][req->head] = false;
    for (auto [gpa, len] : req->written) // a read filled these pages
        memory().written(gpa, len);
    if (broken())
        return; // the driver must reset; the rings are left alone
    if (!memory().write_obj(req->status_gpa, status))
        return set_broken(fmt::format("queue {}: status byte of request {} at {:#x} is not in guest RAM", req->queue,
                                      req->head, req->status_gpa));
    std::string error;
    if (!vq(req->queue).push(req->head, status == kStatusOk ? req->used_len : 1, error))
        return set_broken(error);
    notify_queue(req->queue);
}

void VirtioBlk::account(const Request& req, bool failed)
{
    uint64_t ns = uint64_t(
        std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - req.started).count());
    VirtioBlkStats& s = m_stats;
    switch (req.kind) {
    case Kind::Read:
        s.rd_total_time_ns += ns;
        if (failed) {
            ++s.failed_rd_operations;
        } else {
            ++s.rd_operations;
            s.rd_bytes += req.bytes;
        }
        break;
    case Kind::Write:
    case Kind::WriteZeroes:
        s.wr_total_time_ns += ns;
        if (failed) {
            ++s.failed_wr_operations;
        } else {
            ++s.wr_operations;
            s.wr_bytes += req.bytes;
            s.wr_highest_offset = std::max(s.wr_highest_offset, req.end_offset);
        }
        break;
    case Kind::Flush:
        s.flush_total_time_ns += ns;
        ++(failed ? s.failed_flush_operations : s.flush_operations);
        break;
    case Kind::Discard:
        s.unmap_total_time_ns += ns;
        if (failed) {
            ++s.failed_unmap_operations;
        } else {
            ++s.unmap_operations;
            s.unmap_bytes += req.bytes;
        }
        break;
    }
}

} // namespace emu::devices
