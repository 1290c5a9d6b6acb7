// devices/ide/dma.cpp — SFF-8038i bus-master DMA as the PIIX3 has it: the
// command/status/PRD registers, the PRD walk and the transfer rounds.
//
// A drive that wants DMA sets dma_pending with its byte count; the engine
// moves data while the start bit is set, in rounds of at most kMaxDmaChunk
// bytes / kMaxDmaSegments guest segments, each round one set of backend
// requests (zero-copy into or out of guest RAM) or a copy to/from the drive's
// buffer (ATAPI replies, DSM ranges). PRD entries: 32-bit address (bit 0
// ignored), byte count in bits 15:1 (0 = 64 KiB), EOT in bit 31.
// Endings (status register after the device's interrupt):
//  - transfer done and the PRD table used up exactly: active 0, interrupt 1;
//  - transfer done, PRDs left (table larger than the transfer): active 1,
//    interrupt 1;
//  - PRD table used up first (smaller than the transfer): active 0,
//    interrupt 0, and the device keeps requesting DMA (DRQ): a new start
//    with a new table continues the transfer, a reset ends it;
//  - a PRD or data address that is not RAM, more than kMaxPrdEntries
//    entries, or bus mastering disabled in PCI command: error 1, active 0,
//    and the command ends with ABRT (ATAPI: ABORTED COMMAND).
// Clearing the start bit stops the engine after the round in flight.
#include "devices/bus_master.h"
#include "devices/ide/channel.h"

#include "storage/backend.h"

#include <algorithm>
#include <cassert>
#include <cstring>
#include <memory>

namespace emu::devices::ide {

// ---- registers -------------------------------------------------------------

uint8_t IdeChannel::bm_read(unsigned offset) const
{
    switch (offset) {
    case 0: return m_state.bm_command;
    case 2: return m_state.bm_status;
    case 4:
    case 5:
    case 6:
    case 7: return uint8_t(m_state.bm_prd >> 8 * (offset - 4));
    default: return 0;
    }
}

void IdeChannel::bm_write(unsigned offset, uint8_t value)
{
    switch (offset) {
    case 0: {
        uint8_t old = m_state.bm_command;
        m_state.bm_command = value & (kBmStart | kBmToMemory);
        if (!(old & kBmStart) && (value & kBmStart)) {
            m_state.bm_status |= kBmActive;
            m_state.prd_table = m_state.bm_prd;
            m_state.prd_index = m_state.prd_offset = 0;
            m_state.prd_end = false;
            dma_kick();
        } else if ((old & kBmStart) && !(value & kBmStart)) {
            m_state.bm_status &= uint8_t(~kBmActive);
        }
        break;
    }
    case 2:
        m_state.bm_status = uint8_t((m_state.bm_status & ~(value & (kBmError | kBmInterrupt)) & ~kBmDmaCapable) |
                                    (value & kBmDmaCapable));
        break;
    case 4:
    case 5:
    case 6:
    case 7: {
        unsigned shift = 8 * (offset - 4);
        m_state.bm_prd = (m_state.bm_prd & ~(0xffu << shift)) | uint32_t(value) << shift;
        m_state.bm_prd &= ~3u; // dword aligned
        break;
    }
    default: break;
    }
}

// ---- the engine ------------------------------------------------------------

void IdeChannel::dma_request(unsigned unit, uint64_t offset, uint64_t bytes)
{
    Drive& d = m_state.drives[unit];
    d.dma_pending = true;
    d.dma_offset = offset;
    d.dma_left = bytes;
    d.status = kDrdy | kDsc | kDrq;
    dma_kick();
}

// Walks PRD entries from the cursor until `want` bytes, the end of the table
// or the segment limit. False on a PRD that cannot be read or too many entries.
bool IdeChannel::dma_collect(uint64_t want, std::vector<Segment>& out, uint64_t& bytes)
{
    IdeChannelState& s = m_state;
    bytes = 0;
    while (bytes < want && !s.prd_end && out.size() < kMaxDmaSegments) {
        if (s.prd_index >= kMaxPrdEntries)
            return false;
        uint8_t entry[8];
        if (!m_ctx.memory.read(uint64_t(s.prd_table) + 8ull * s.prd_index, entry, sizeof entry))
            return false;
        uint32_t address =
            uint32_t(entry[0]) | uint32_t(entry[1]) << 8 | uint32_t(entry[2]) << 16 | uint32_t(entry[3]) << 24;
        uint32_t count = (uint32_t(entry[4]) | uint32_t(entry[5]) << 8) & 0xfffe;
        bool eot = entry[7] & 0x80;
        uint64_t len = count ? count : 0x10000;
        address &= ~1u;
        if (s.prd_offset < len) {
            uint64_t take = std::min<uint64_t>(len - s.prd_offset, want - bytes);
            uint64_t gpa = uint64_t(address) + s.prd_offset;
            if (!out.empty() && out.back().gpa + out.back().len == gpa)
                out.back().len += take;
            else
                out.push_back({gpa, take});
            bytes += take;
            s.prd_offset += uint32_t(take);
        }
        if (s.prd_offset >= len) { // (the guest may have shortened an entry under us)
            if (eot) {
                s.prd_end = true;
            } else {
                s.prd_index++;
                s.prd_offset = 0;
            }
        }
    }
    return true;
}

void IdeChannel::dma_kick()
{
    IdeChannelState& s = m_state;
    while (!m_dma_running && (s.bm_command & kBmStart) && (s.bm_status & kBmActive)) {
        unsigned unit = 2;
        for (unsigned u = 0; u < 2; ++u)
            if (present(u) && s.drives[u].dma_pending && !s.drives[u].io_stopped)
                unit = u;
        if (unit == 2)
            return;
        Drive& d = s.drives[unit];
        if (!m_ctx.bus_master_enabled())
            return dma_fail(unit);
        s.chunk_index = s.prd_index;
        s.chunk_offset = s.prd_offset;
        s.chunk_end = s.prd_end;
        std::vector<Segment> segments;
        uint64_t bytes = 0;
        if (!dma_collect(std::min(d.dma_left, kMaxDmaChunk), segments, bytes))
            return dma_fail(unit);
        if (bytes == 0) {
            // The table ended before the transfer: the engine stops without
            // an interrupt; the device still requests DMA.
            s.bm_status &= uint8_t(~kBmActive);
            return;
        }
        if (d.op == Op::CdDmaReply || d.op == Op::Dsm) {
            assert(d.dma_offset + d.dma_left <= kBufferSize);
            uint64_t at = d.dma_offset;
            for (const Segment& seg : segments) {
                bool ok = d.op == Op::CdDmaReply ? m_ctx.memory.write(seg.gpa, d.buffer.data() + at, seg.len)
                                                 : m_ctx.memory.read(seg.gpa, d.buffer.data() + at, seg.len);
                if (!ok)
                    return dma_fail(unit);
                at += seg.len;
            }
            dma_round_done(unit, bytes);
            continue;
        }
        return dma_medium_round(unit, segments, bytes);
    }
}

// One round between the medium and guest RAM: the segments are mapped and
// each mapped span is one backend request at its place in the medium.
void IdeChannel::dma_medium_round(unsigned unit, const std::vector<Segment>& segments, uint64_t bytes)
{
    Drive& d = m_state.drives[unit];
    storage::BlockBackend* be = m_rt[unit].backend;
    if (!be || (is_cdrom(unit) && !medium_present(unit))) { // the medium went away mid-command
        m_state.bm_status &= uint8_t(~kBmActive);
        stats_failed(unit, &IdeBlockStats::read);
        return atapi_check(unit, kSenseNotReady, kAscMediumNotPresent, d.tray_open ? 0x02 : 0x01);
    }
    bool to_memory = d.op != Op::AtaDmaWrite;
    auto spans = std::make_shared<std::vector<std::span<uint8_t>>>();
    for (const Segment& seg : segments)
        if (!m_ctx.memory.map(seg.gpa, seg.len, to_memory, *spans))
            return dma_fail(unit);
    m_dma_running = true;
    uint64_t offset = d.dma_offset;
    BusMaster* memory = &m_ctx.memory;
    auto touched = std::make_shared<std::vector<Segment>>(segments);
    submit(
        unit,
        [be, spans, offset, to_memory, memory, touched](auto cb) {
            // Code translated from pages a read filled is dropped even when
            // the completion itself is dropped (it landed all the same).
            auto fan = std::make_shared<FanIn>(
                spans->size(), [cb = std::move(cb), to_memory, memory, touched](storage::Result<void> r) {
                    if (to_memory)
                        for (const Segment& seg : *touched)
                            memory->written(seg.gpa, seg.len);
                    cb(std::move(r));
                });
            uint64_t at = offset;
            for (std::span<uint8_t> span : *spans) {
                auto arrive = [fan](storage::Result<void> r) { fan->arrive(std::move(r)); };
                if (to_memory)
                    be->read_async(at, span, arrive);
                else
                    be->write_async(at, span, arrive);
                at += span.size();
            }
        },
        [this, unit, bytes](const storage::Result<void>& r) { dma_medium_done(unit, bytes, r); });
}

void IdeChannel::dma_medium_done(unsigned unit, uint64_t bytes, const storage::Result<void>& r)
{
    Drive& d = m_state.drives[unit];
    m_dma_running = false;
    if (!r) {
        bool is_read = d.op != Op::AtaDmaWrite;
        Verdict v = io_error(unit, is_read, r.error());
        if (v == Verdict::Stopped) {
            dma_rewind();
            return;
        }
        if (v == Verdict::Fail) {
            stats_failed(unit, is_read ? &IdeBlockStats::read : &IdeBlockStats::write);
            m_state.bm_status &= uint8_t(~kBmActive);
            if (is_cdrom(unit))
                return atapi_check(unit, kSenseMediumError, kAscUnrecoveredRead);
            return command_abort(unit);
        }
    }
    dma_round_done(unit, bytes);
    dma_kick();
}

// A stopped round starts again from the cursor it started at.
void IdeChannel::dma_rewind()
{
    m_state.prd_index = m_state.chunk_index;
    m_state.prd_offset = m_state.chunk_offset;
    m_state.prd_end = m_state.chunk_end;
}

void IdeChannel::dma_round_done(unsigned unit, uint64_t bytes)
{
    Drive& d = m_state.drives[unit];
    d.dma_offset += bytes;
    d.dma_left -= bytes;
    d.dma_moved += bytes;
    if (d.dma_left > 0)
        return;
    d.dma_pending = false;
    if (m_state.prd_end)
        m_state.bm_status &= uint8_t(~kBmActive); // the table was used up exactly
    switch (d.op) {
    case Op::AtaDmaRead:
        stats_done(unit, &IdeBlockStats::read, d.dma_moved);
        command_ok(unit);
        break;
    case Op::AtaDmaWrite: end_write_command(unit); break;
    case Op::CdDmaRead:
        stats_done(unit, &IdeBlockStats::read, d.dma_moved);
        atapi_ok(unit);
        break;
    case Op::CdDmaReply: atapi_ok(unit); break;
    case Op::Dsm: dsm_ranges_received(unit); break;
    default: break;
    }
}

// A bus error: the engine stops with the error bit and the command fails.
void IdeChannel::dma_fail(unsigned unit)
{
    Drive& d = m_state.drives[unit];
    m_state.bm_status = uint8_t((m_state.bm_status | kBmError) & ~kBmActive);
    m_dma_running = false;
    switch (d.op) {
    case Op::AtaDmaRead:
    case Op::CdDmaRead: stats_failed(unit, &IdeBlockStats::read); break;
    case Op::AtaDmaWrite: stats_failed(unit, &IdeBlockStats::write); break;
    case Op::Dsm: stats_failed(unit, &IdeBlockStats::unmap); break;
    default: break;
    }
    if (is_cdrom(unit))
        return atapi_check(unit, kSenseAbortedCommand, 0);
    command_abort(unit);
}

} // namespace emu::devices::ide
