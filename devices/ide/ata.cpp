// devices/ide/ata.cpp — ATA commands: the dispatch table, addressing (CHS,
// LBA28, LBA48), PIO and DMA reads and writes, flush, SET FEATURES, the
// power commands and DATA SET MANAGEMENT (TRIM). Command set from the
// ATA/ATAPI-6 draft (T13/1410D) and ACS-2 for DATA SET MANAGEMENT.
#include "devices/ide/channel.h"

#include "storage/backend.h"

#include <algorithm>
#include <cstring>
#include <memory>

namespace emu::devices::ide {

namespace {

constexpr uint8_t kForDisk = 1, kForCdrom = 2;

struct AtaRow {
    uint8_t opcode;
    uint8_t who; // kForDisk | kForCdrom
    void (*run)(IdeChannel&, unsigned unit);
};

} // namespace

void IdeChannel::ata_command(unsigned unit, uint8_t command)
{
    using C = IdeChannel;
    // One row per opcode: which drives take it, and what it does.
    static const AtaRow rows[] = {
        {kCmdReadSectors, kForDisk, [](C& c, unsigned u) { c.ata_rw_pio(u, false, false, false); }},
        {kCmdReadSectorsNoRetry, kForDisk, [](C& c, unsigned u) { c.ata_rw_pio(u, false, false, false); }},
        {kCmdReadSectorsExt, kForDisk, [](C& c, unsigned u) { c.ata_rw_pio(u, false, true, false); }},
        {kCmdReadMultiple, kForDisk, [](C& c, unsigned u) { c.ata_rw_pio(u, false, false, true); }},
        {kCmdReadMultipleExt, kForDisk, [](C& c, unsigned u) { c.ata_rw_pio(u, false, true, true); }},
        {kCmdWriteSectors, kForDisk, [](C& c, unsigned u) { c.ata_rw_pio(u, true, false, false); }},
        {kCmdWriteSectorsNoRetry, kForDisk, [](C& c, unsigned u) { c.ata_rw_pio(u, true, false, false); }},
        {kCmdWriteSectorsExt, kForDisk, [](C& c, unsigned u) { c.ata_rw_pio(u, true, true, false); }},
        {kCmdWriteMultiple, kForDisk, [](C& c, unsigned u) { c.ata_rw_pio(u, true, false, true); }},
        {kCmdWriteMultipleExt, kForDisk, [](C& c, unsigned u) { c.ata_rw_pio(u, true, true, true); }},
        {kCmdReadDma, kForDisk, [](C& c, unsigned u) { c.ata_rw_dma(u, false, false); }},
        {kCmdReadDmaNoRetry, kForDisk, [](C& c, unsigned u) { c.ata_rw_dma(u, false, false); }},
        {kCmdReadDmaExt, kForDisk, [](C& c, unsigned u) { c.ata_rw_dma(u, false, true); }},
        {kCmdWriteDma, kForDisk, [](C& c, unsigned u) { c.ata_rw_dma(u, true, false); }},
        {kCmdWriteDmaNoRetry, kForDisk, [](C& c, unsigned u) { c.ata_rw_dma(u, true, false); }},
        {kCmdWriteDmaExt, kForDisk, [](C& c, unsigned u) { c.ata_rw_dma(u, true, true); }},
        {kCmdReadVerify, kForDisk, [](C& c, unsigned u) { c.ata_verify(u, false); }},
        {kCmdReadVerifyNoRetry, kForDisk, [](C& c, unsigned u) { c.ata_verify(u, false); }},
        {kCmdReadVerifyExt, kForDisk, [](C& c, unsigned u) { c.ata_verify(u, true); }},
        {kCmdFlushCache, kForDisk, [](C& c, unsigned u) { c.ata_flush(u); }},
        {kCmdFlushCacheExt, kForDisk, [](C& c, unsigned u) { c.ata_flush(u); }},
        {kCmdDataSetManagement, kForDisk, [](C& c, unsigned u) { c.ata_dsm(u); }},
        {kCmdIdentify, kForDisk, [](C& c, unsigned u) { c.identify_disk(u); }},
        {kCmdIdentifyPacket, kForCdrom, [](C& c, unsigned u) { c.identify_packet(u); }},
        {kCmdPacket, kForCdrom, [](C& c, unsigned u) { c.packet_command(u); }},
        {kCmdSetFeatures, kForDisk | kForCdrom, [](C& c, unsigned u) { c.ata_set_features(u); }},
        {kCmdInitializeParameters, kForDisk, [](C& c, unsigned u) { c.ata_initialize_parameters(u); }},
        {kCmdSetMultiple, kForDisk,
         [](C& c, unsigned u) {
             Drive& d = c.m_state.drives[u];
             unsigned n = d.nsector;
             if (n > kMaxMultipleSectors || (n & (n - 1)) != 0)
                 return c.command_abort(u);
             d.mult_sectors = uint8_t(n);
             c.command_ok(u);
         }},
        {kCmdSeek, kForDisk, [](C& c, unsigned u) { c.command_ok(u); }},
        {kCmdExecuteDiagnostic, kForDisk | kForCdrom,
         [](C& c, unsigned u) {
             for (unsigned other = 0; other < 2; ++other)
                 if (c.present(other))
                     c.finish_reset(other);
             c.raise_irq(u);
         }},
        {kCmdIdle, kForDisk,
         [](C& c, unsigned u) {
             c.m_state.drives[u].power_mode = 0xff;
             c.command_ok(u);
         }},
        {kCmdIdleImmediate, kForDisk | kForCdrom,
         [](C& c, unsigned u) {
             c.m_state.drives[u].power_mode = 0xff;
             c.command_ok(u);
         }},
        {kCmdStandby, kForDisk,
         [](C& c, unsigned u) {
             c.m_state.drives[u].power_mode = 0x00;
             c.command_ok(u);
         }},
        {kCmdStandbyImmediate, kForDisk | kForCdrom,
         [](C& c, unsigned u) {
             c.m_state.drives[u].power_mode = 0x00;
             c.command_ok(u);
         }},
        {kCmdSleep, kForDisk | kForCdrom,
         [](C& c, unsigned u) {
             c.m_state.drives[u].power_mode = 0x00;
             c.command_ok(u);
         }},
        {kCmdCheckPowerMode, kForDisk | kForCdrom,
         [](C& c, unsigned u) {
             Drive& d = c.m_state.drives[u];
             d.nsector = d.power_mode;
             c.command_ok(u);
         }},
    };
    static const auto table = [] {
        std::array<const AtaRow*, 256> t{};
        for (const AtaRow& r : rows)
            t[r.opcode] = &r;
        return t;
    }();

    uint8_t who = is_cdrom(unit) ? kForCdrom : kForDisk;
    if (command >= kCmdRecalibrate && command <= kCmdRecalibrate + 0x0f && who == kForDisk) {
        command_ok(unit);
        return;
    }
    const AtaRow* row = table[command];
    if (!row || !(row->who & who)) {
        // Unknown, NOP, or not for this kind of device. An ATAPI device
        // leaves its signature so that IDENTIFY DEVICE tells what it is.
        if (is_cdrom(unit))
            set_signature(unit);
        command_abort(unit);
        return;
    }
    row->run(*this, unit);
}

// ---- addressing ------------------------------------------------------------

uint64_t IdeChannel::disk_sectors(unsigned unit) const
{
    const storage::BlockBackend* be = m_rt[unit].backend;
    return be ? be->size() / kAtaSectorSize : 0;
}

// The command's first sector and count from the task file; false if a CHS
// address names no sector of the current geometry.
bool IdeChannel::ata_address(unsigned unit, bool lba48, uint64_t& lba, uint32_t& count)
{
    const Drive& d = m_state.drives[unit];
    if (lba48) {
        lba = uint64_t(d.sector) | uint64_t(d.lcyl) << 8 | uint64_t(d.hcyl) << 16 | uint64_t(d.hob_sector) << 24 |
              uint64_t(d.hob_lcyl) << 32 | uint64_t(d.hob_hcyl) << 40;
        count = uint32_t(d.nsector) | uint32_t(d.hob_nsector) << 8;
        if (count == 0)
            count = 65536;
        return true;
    }
    count = d.nsector ? d.nsector : 256;
    if (d.select & kLbaMode) {
        lba = uint64_t(d.sector) | uint64_t(d.lcyl) << 8 | uint64_t(d.hcyl) << 16 | uint64_t(d.select & 0x0f) << 24;
        return true;
    }
    unsigned head = d.select & 0x0f;
    unsigned cylinder = unsigned(d.lcyl) | unsigned(d.hcyl) << 8;
    if (d.cur_heads == 0 || d.cur_sectors == 0 || d.sector == 0 || d.sector > d.cur_sectors || head >= d.cur_heads)
        return false;
    lba = (uint64_t(cylinder) * d.cur_heads + head) * d.cur_sectors + d.sector - 1;
    return true;
}

// Ends the command (IDNF, or ABRT for a write to a read-only image) when the
// range is not all on the disk.
bool IdeChannel::ata_range_ok(unsigned unit, uint64_t lba, uint32_t count, bool write)
{
    auto kind = write ? &IdeBlockStats::write : &IdeBlockStats::read;
    uint64_t total = disk_sectors(unit);
    if (lba > total || count > total - lba) {
        stats_invalid(unit, kind);
        command_abort(unit, kIdnf);
        return false;
    }
    if (write && m_rt[unit].backend->read_only()) {
        stats_invalid(unit, kind);
        command_abort(unit, kAbrt);
        return false;
    }
    return true;
}

// ---- PIO -------------------------------------------------------------------

void IdeChannel::ata_rw_pio(unsigned unit, bool write, bool lba48, bool multiple)
{
    Drive& d = m_state.drives[unit];
    if (multiple && d.mult_sectors == 0)
        return command_abort(unit);
    uint64_t lba = 0;
    uint32_t count = 0;
    if (!ata_address(unit, lba48, lba, count))
        return command_abort(unit, kIdnf);
    if (!ata_range_ok(unit, lba, count, write))
        return;
    d.lba = lba;
    d.remaining = count;
    d.dma_moved = 0;
    d.power_mode = 0xff;
    d.drq_block = (multiple ? d.mult_sectors : 1) * kAtaSectorSize;
    stats_begin(unit);
    if (!write) {
        d.op = Op::AtaRead;
        ata_read_next(unit);
        return;
    }
    // The first block is asked for without an interrupt.
    d.op = Op::AtaWrite;
    d.chunk = std::min(d.remaining, d.drq_block / kAtaSectorSize);
    d.buf_pos = 0;
    d.buf_fill = d.buf_end = d.chunk * kAtaSectorSize;
    d.status = kDrdy | kDsc | kDrq;
}

// Fetches as many whole DRQ blocks as the buffer holds.
void IdeChannel::ata_read_next(unsigned unit)
{
    Drive& d = m_state.drives[unit];
    uint32_t block = d.drq_block / kAtaSectorSize;
    uint32_t fits = (kBufferSize / kAtaSectorSize) / block * block;
    d.chunk = std::min(d.remaining, fits);
    set_busy(unit);
    auto data = std::make_shared<std::vector<uint8_t>>(size_t(d.chunk) * kAtaSectorSize);
    storage::BlockBackend* be = m_rt[unit].backend;
    uint64_t offset = d.lba * kAtaSectorSize;
    submit(
        unit, [be, offset, data](auto cb) { be->read_async(offset, *data, std::move(cb)); },
        [this, unit, data](const storage::Result<void>& r) { ata_read_done(unit, r, *data); });
}

void IdeChannel::ata_read_done(unsigned unit, const storage::Result<void>& r, const std::vector<uint8_t>& data)
{
    Drive& d = m_state.drives[unit];
    if (!r) {
        Verdict v = io_error(unit, true, r.error());
        if (v == Verdict::Stopped)
            return;
        if (v == Verdict::Fail) {
            stats_failed(unit, &IdeBlockStats::read);
            return command_abort(unit);
        }
    }
    std::memcpy(d.buffer.data(), data.data(), data.size());
    d.lba += d.chunk;
    d.remaining -= d.chunk;
    d.dma_moved += data.size();
    if (d.remaining == 0)
        stats_done(unit, &IdeBlockStats::read, d.dma_moved);
    start_pio_in(unit, uint32_t(data.size()), d.drq_block);
}

void IdeChannel::ata_write_block(unsigned unit)
{
    Drive& d = m_state.drives[unit];
    set_busy(unit);
    auto data = std::make_shared<std::vector<uint8_t>>(d.buffer.begin(), d.buffer.begin() + d.chunk * kAtaSectorSize);
    storage::BlockBackend* be = m_rt[unit].backend;
    uint64_t offset = d.lba * kAtaSectorSize;
    submit(
        unit, [be, offset, data](auto cb) { be->write_async(offset, *data, std::move(cb)); },
        [this, unit, data](const storage::Result<void>& r) { ata_write_done(unit, r); });
}

void IdeChannel::ata_write_done(unsigned unit, const storage::Result<void>& r)
{
    Drive& d = m_state.drives[unit];
    if (!r) {
        Verdict v = io_error(unit, false, r.error());
        if (v == Verdict::Stopped)
            return;
        if (v == Verdict::Fail) {
            stats_failed(unit, &IdeBlockStats::write);
            return command_abort(unit);
        }
    }
    d.lba += d.chunk;
    d.remaining -= d.chunk;
    d.dma_moved += uint64_t(d.chunk) * kAtaSectorSize;
    if (d.remaining == 0)
        return end_write_command(unit);
    d.chunk = std::min(d.remaining, d.drq_block / kAtaSectorSize);
    d.buf_pos = 0;
    d.buf_fill = d.buf_end = d.chunk * kAtaSectorSize;
    d.status = kDrdy | kDsc | kDrq;
    raise_irq(unit);
}

// With the write cache off, data is on stable storage before the command ends.
void IdeChannel::end_write_command(unsigned unit)
{
    Drive& d = m_state.drives[unit];
    stats_done(unit, &IdeBlockStats::write, d.dma_moved);
    if (d.write_cache)
        return command_ok(unit);
    d.op = Op::Flush;
    set_busy(unit);
    flush_submit(unit);
}

// ---- DMA, verify, flush ----------------------------------------------------------

void IdeChannel::ata_rw_dma(unsigned unit, bool write, bool lba48)
{
    Drive& d = m_state.drives[unit];
    uint64_t lba = 0;
    uint32_t count = 0;
    if (!ata_address(unit, lba48, lba, count))
        return command_abort(unit, kIdnf);
    if (!ata_range_ok(unit, lba, count, write))
        return;
    d.lba = lba;
    d.remaining = count;
    d.dma_moved = 0;
    d.power_mode = 0xff;
    d.op = write ? Op::AtaDmaWrite : Op::AtaDmaRead;
    stats_begin(unit);
    dma_request(unit, lba * kAtaSectorSize, uint64_t(count) * kAtaSectorSize);
}

void IdeChannel::ata_verify(unsigned unit, bool lba48)
{
    uint64_t lba = 0;
    uint32_t count = 0;
    if (!ata_address(unit, lba48, lba, count))
        return command_abort(unit, kIdnf);
    if (!ata_range_ok(unit, lba, count, false))
        return;
    command_ok(unit);
}

void IdeChannel::ata_flush(unsigned unit)
{
    Drive& d = m_state.drives[unit];
    d.op = Op::Flush;
    stats_begin(unit);
    set_busy(unit);
    flush_submit(unit);
}

void IdeChannel::flush_submit(unsigned unit)
{
    storage::BlockBackend* be = m_rt[unit].backend;
    submit(
        unit, [be](auto cb) { be->flush_async(std::move(cb)); },
        [this, unit](const storage::Result<void>& r) {
            Drive& d = m_state.drives[unit];
            bool explicit_flush = d.command == kCmdFlushCache || d.command == kCmdFlushCacheExt;
            if (!r) {
                Verdict v = io_error(unit, false, r.error());
                if (v == Verdict::Stopped)
                    return;
                if (v == Verdict::Fail) {
                    if (explicit_flush)
                        stats_failed(unit, &IdeBlockStats::flush);
                    return command_abort(unit);
                }
            }
            if (explicit_flush)
                stats_done(unit, &IdeBlockStats::flush, 0);
            command_ok(unit);
        });
}

// ---- settings --------------------------------------------------------------

void IdeChannel::ata_set_features(unsigned unit)
{
    Drive& d = m_state.drives[unit];
    bool disk = !is_cdrom(unit);
    switch (d.feature) {
    case kFeatureEnableWriteCache:
    case kFeatureDisableWriteCache:
        if (!disk)
            return command_abort(unit);
        d.write_cache = d.feature == kFeatureEnableWriteCache;
        return command_ok(unit);
    case kFeatureTransferMode: {
        uint8_t mode = d.nsector;
        bool valid = mode <= 0x01 || (mode >= 0x08 && mode <= 0x0c) || (mode >= 0x20 && mode <= 0x22) ||
                     (mode >= 0x40 && mode <= 0x45);
        if (!valid)
            return command_abort(unit);
        d.xfer_mode = mode;
        return command_ok(unit);
    }
    case kFeatureEnableLookAhead:
    case kFeatureDisableLookAhead:
    case kFeatureRevertDefaults:
    case kFeatureKeepSettings: return command_ok(unit);
    default: return command_abort(unit);
    }
}

void IdeChannel::ata_initialize_parameters(unsigned unit)
{
    Drive& d = m_state.drives[unit];
    unsigned heads = (d.select & 0x0f) + 1u;
    unsigned sectors = d.nsector;
    if (sectors == 0)
        return command_abort(unit);
    d.cur_heads = uint8_t(heads);
    d.cur_sectors = uint8_t(sectors);
    d.cur_cylinders = uint16_t(std::min<uint64_t>(65535, disk_sectors(unit) / (heads * sectors)));
    command_ok(unit);
}

// ---- DATA SET MANAGEMENT ---------------------------------------------------------

// The range blocks come by DMA into the buffer, then each range is discarded.
void IdeChannel::ata_dsm(unsigned unit)
{
    Drive& d = m_state.drives[unit];
    uint32_t blocks = uint32_t(d.nsector) | uint32_t(d.hob_nsector) << 8;
    if (!m_rt[unit].config.discard || !(d.feature & 0x01) || blocks == 0 || blocks > kDsmMaxBlocks)
        return command_abort(unit);
    if (m_rt[unit].backend->read_only()) {
        stats_invalid(unit, &IdeBlockStats::unmap);
        return command_abort(unit);
    }
    d.op = Op::Dsm;
    d.remaining = blocks; // the guest may rewrite the task file while the ranges come
    d.dma_moved = 0;
    stats_begin(unit);
    dma_request(unit, 0, uint64_t(blocks) * kAtaSectorSize);
}

void IdeChannel::dsm_ranges_received(unsigned unit)
{
    Drive& d = m_state.drives[unit];
    uint64_t total = disk_sectors(unit);
    uint32_t entries = std::min(d.remaining, kDsmMaxBlocks) * kAtaSectorSize / 8;
    auto ranges = std::make_shared<std::vector<std::pair<uint64_t, uint64_t>>>();
    uint64_t bytes = 0;
    for (uint32_t i = 0; i < entries; ++i) {
        uint64_t v = 0;
        for (unsigned b = 0; b < 8; ++b)
            v |= uint64_t(d.buffer[i * 8 + b]) << 8 * b;
        uint64_t lba = v & 0xffffffffffffull, count = v >> 48;
        if (count == 0)
            continue;
        if (lba > total || count > total - lba) {
            stats_invalid(unit, &IdeBlockStats::unmap);
            return command_abort(unit);
        }
        ranges->emplace_back(lba * kAtaSectorSize, count * kAtaSectorSize);
        bytes += count * kAtaSectorSize;
    }
    if (ranges->empty()) {
        stats_done(unit, &IdeBlockStats::unmap, 0);
        return command_ok(unit);
    }
    set_busy(unit);
    storage::BlockBackend* be = m_rt[unit].backend;
    submit(
        unit,
        [be, ranges](auto cb) {
            auto fan = std::make_shared<FanIn>(ranges->size(), std::move(cb));
            for (auto [offset, len] : *ranges)
                be->discard_async(offset, len, [fan](storage::Result<void> r) { fan->arrive(std::move(r)); });
        },
        [this, unit, bytes](const storage::Result<void>& r) {
            if (!r) {
                Verdict v = io_error(unit, false, r.error());
                if (v == Verdict::Stopped)
                    return;
                if (v == Verdict::Fail) {
                    stats_failed(unit, &IdeBlockStats::unmap);
                    return command_abort(unit);
                }
            }
            stats_done(unit, &IdeBlockStats::unmap, bytes);
            command_ok(unit);
        });
}

} // namespace emu::devices::ide
