// devices/ide/channel.cpp — the task file, device selection, device control
// and soft reset, INTRQ, the PIO data port and command dispatch of one IDE
// channel (behaviour from the ATA/ATAPI-6 draft, T13/1410D).
#include "devices/ide/channel.h"

#include "common/log.h"
#include "storage/backend.h"

#include <algorithm>
#include <cassert>
#include <cstring>
#include <fmt/format.h>

namespace emu::devices::ide {

IdeChannel::IdeChannel(int index, IdeContext context, std::array<IdeDriveConfig, 2> drives)
    : m_index(index), m_ctx(std::move(context))
{
    for (unsigned unit = 0; unit < 2; ++unit) {
        DriveRuntime& rt = m_rt[unit];
        rt.config = std::move(drives[unit]);
        rt.backend = rt.config.backend;
        bool cd = rt.config.kind == IdeDriveKind::Cdrom;
        rt.id = !rt.config.id.empty() ? rt.config.id : fmt::format("ide{}-{}{}", index, cd ? "cd" : "hd", unit);
        if (rt.config.kind != IdeDriveKind::Disk)
            continue;
        if (rt.config.heads && rt.config.sectors && rt.config.cylinders) {
            rt.cylinders = uint16_t(rt.config.cylinders);
            rt.heads = uint8_t(rt.config.heads);
            rt.sectors = uint8_t(rt.config.sectors);
        } else {
            uint64_t total = rt.backend->size() / kAtaSectorSize;
            rt.heads = 16;
            rt.sectors = 63;
            rt.cylinders = uint16_t(std::clamp<uint64_t>(total / (16 * 63), 1, 16383));
        }
    }
    reset();
}

// ---- reset ---------------------------------------------------------------

void IdeChannel::reset()
{
    m_state.unit = 0;
    m_state.devctl = 0;
    m_state.bm_command = 0;
    m_state.bm_status = 0;
    m_state.bm_prd = 0;
    m_state.prd_table = m_state.prd_index = m_state.prd_offset = 0;
    m_state.prd_end = false;
    m_dma_running = false;
    for (unsigned unit = 0; unit < 2; ++unit) {
        Drive& d = m_state.drives[unit];
        DriveRuntime& rt = m_rt[unit];
        // The tray and what the guest has yet to learn about the medium are
        // physical; everything else is power-on state.
        bool tray_open = d.tray_open;
        uint8_t media_change = d.media_change, media_event = d.media_event;
        d = IdeDriveState{};
        d.tray_open = tray_open;
        d.media_change = media_change;
        d.media_event = media_event;
        d.write_cache = rt.config.write_cache;
        d.cur_cylinders = rt.cylinders;
        d.cur_heads = rt.heads;
        d.cur_sectors = rt.sectors;
        rt.generation++;
        rt.reset_waiting = false;
        set_signature(unit);
        d.error = 0x01; // diagnostics passed
        d.status = present(unit) && !is_cdrom(unit) ? kDrdy | kDsc : 0;
    }
    update_irq();
}

void IdeChannel::set_signature(unsigned unit)
{
    Drive& d = m_state.drives[unit];
    d.select = uint8_t((d.select & kDev) | kObsoleteBits);
    d.nsector = d.sector = 1;
    d.lcyl = is_cdrom(unit) ? 0x14 : 0;
    d.hcyl = is_cdrom(unit) ? 0xeb : 0;
    d.hob_feature = d.hob_nsector = d.hob_sector = d.hob_lcyl = d.hob_hcyl = 0;
}

// Stops what the drive does: its requests in flight belong to an older
// generation from now on, and the drive stays BSY until they are back.
void IdeChannel::soft_reset_begin()
{
    for (unsigned unit = 0; unit < 2; ++unit) {
        if (!present(unit))
            continue;
        Drive& d = m_state.drives[unit];
        m_rt[unit].generation++;
        m_rt[unit].reset_waiting = true;
        if (d.dma_pending)
            m_dma_running = false;
        d.op = Op::None;
        d.dma_pending = false;
        d.io_stopped = false;
        d.irq_pending = false;
        d.status = kBsy;
    }
    update_irq();
}

void IdeChannel::soft_reset_end()
{
    for (unsigned unit = 0; unit < 2; ++unit)
        if (present(unit) && m_rt[unit].reset_waiting && m_rt[unit].in_flight == 0)
            finish_reset(unit);
}

void IdeChannel::finish_reset(unsigned unit)
{
    Drive& d = m_state.drives[unit];
    m_rt[unit].reset_waiting = false;
    d.op = Op::None;
    d.dma_pending = false;
    d.io_stopped = false;
    set_signature(unit);
    d.error = 0x01;
    // ATAPI devices come back with DRDY clear (their signature says what they are).
    d.status = is_cdrom(unit) ? 0 : kDrdy | kDsc;
}

// ---- interrupts ----------------------------------------------------------

void IdeChannel::update_irq()
{
    unsigned unit = m_state.unit;
    bool level = present(unit) && m_state.drives[unit].irq_pending && !(m_state.devctl & kNien);
    m_irq.set(level);
}

void IdeChannel::raise_irq(unsigned unit)
{
    m_state.drives[unit].irq_pending = true;
    if (unit == m_state.unit && !(m_state.devctl & kNien))
        m_state.bm_status |= kBmInterrupt; // the controller saw INTRQ rise
    update_irq();
}

// ---- registers -------------------------------------------------------------

uint64_t IdeChannel::read_command(uint64_t offset, unsigned size)
{
    if (offset == 0)
        return size == 1 ? data_read(2) & 0xff : data_read(size);
    uint64_t v = 0;
    for (unsigned i = 0; i < size && offset + i < 8; ++i)
        v |= uint64_t(read_register(unsigned(offset + i))) << 8 * i;
    return v;
}

uint8_t IdeChannel::read_register(unsigned reg)
{
    unsigned unit = m_state.unit;
    Drive& d = m_state.drives[unit];
    // An absent device reads as zeros (a present device 0 answering for an
    // absent device 1 shows status 0, which is how drivers see it missing).
    bool absent = !present(unit);
    bool hob = m_state.devctl & kHob;
    switch (reg) {
    case 1: return absent ? 0 : d.error;
    case 2: return absent ? 0 : hob ? d.hob_nsector : d.nsector;
    case 3: return absent ? 0 : hob ? d.hob_sector : d.sector;
    case 4: return absent ? 0 : hob ? d.hob_lcyl : d.lcyl;
    case 5: return absent ? 0 : hob ? d.hob_hcyl : d.hcyl;
    case 6: return !present(0) && !present(1) ? 0 : d.select;
    case 7:
        if (absent)
            return 0;
        d.irq_pending = false;
        update_irq();
        return d.status;
    default: return 0;
    }
}

uint8_t IdeChannel::read_alt_status() const
{
    unsigned unit = m_state.unit;
    return present(unit) ? m_state.drives[unit].status : 0;
}

void IdeChannel::write_command(uint64_t offset, uint64_t value, unsigned size)
{
    if (offset == 0) {
        data_write(uint32_t(value), size == 1 ? 2 : size);
        return;
    }
    for (unsigned i = 0; i < size && offset + i < 8; ++i) {
        unsigned reg = unsigned(offset + i);
        auto v = uint8_t(value >> 8 * i);
        if (reg >= 1 && reg <= 5) {
            for (Drive& d : m_state.drives) {
                uint8_t Drive::*cur[] = {&Drive::feature, &Drive::nsector, &Drive::sector, &Drive::lcyl, &Drive::hcyl};
                uint8_t Drive::*hob[] = {&Drive::hob_feature, &Drive::hob_nsector, &Drive::hob_sector, &Drive::hob_lcyl,
                                         &Drive::hob_hcyl};
                d.*hob[reg - 1] = d.*cur[reg - 1];
                d.*cur[reg - 1] = v;
            }
            m_state.devctl &= uint8_t(~kHob);
        } else if (reg == 6) {
            for (Drive& d : m_state.drives)
                d.select = uint8_t(v | kObsoleteBits);
            m_state.unit = (v & kDev) ? 1 : 0;
            update_irq();
        } else if (reg == 7) {
            execute(m_state.unit, v);
        }
    }
}

void IdeChannel::write_device_control(uint8_t value)
{
    uint8_t old = m_state.devctl;
    m_state.devctl = value & (kNien | kSrst | kHob);
    if (!(old & kSrst) && (value & kSrst))
        soft_reset_begin();
    else if ((old & kSrst) && !(value & kSrst))
        soft_reset_end();
    update_irq();
}

// ---- PIO data port ---------------------------------------------------------

namespace {

bool pio_in(Op op) { return op == Op::PioIn || op == Op::AtaRead || op == Op::CdRead; }
bool pio_out(Op op) { return op == Op::AtaWrite || op == Op::Packet; }

} // namespace

uint32_t IdeChannel::data_read(unsigned size)
{
    unsigned unit = m_state.unit;
    Drive& d = m_state.drives[unit];
    // Without DRQ the data port has nothing to give: 0, and nothing moves.
    if (!present(unit) || (d.status & (kBsy | kDrq)) != kDrq || !pio_in(d.op) || d.buf_pos >= d.buf_end)
        return 0;
    assert(d.buf_end <= kBufferSize);
    uint32_t v = 0;
    for (unsigned i = 0; i < size; ++i)
        if (d.buf_pos + i < d.buf_end)
            v |= uint32_t(d.buffer[d.buf_pos + i]) << 8 * i;
    d.buf_pos = std::min(d.buf_pos + size, d.buf_end);
    if (d.buf_pos >= d.buf_end)
        block_done(unit);
    return v;
}

void IdeChannel::data_write(uint32_t value, unsigned size)
{
    unsigned unit = m_state.unit;
    Drive& d = m_state.drives[unit];
    if (!present(unit) || (d.status & (kBsy | kDrq)) != kDrq || !pio_out(d.op) || d.buf_pos >= d.buf_end)
        return;
    assert(d.buf_end <= kBufferSize);
    for (unsigned i = 0; i < size; ++i)
        if (d.buf_pos + i < d.buf_end)
            d.buffer[d.buf_pos + i] = uint8_t(value >> 8 * i);
    d.buf_pos = std::min(d.buf_pos + size, d.buf_end);
    if (d.buf_pos >= d.buf_end)
        block_done(unit);
}

// The host has moved the whole DRQ block.
void IdeChannel::block_done(unsigned unit)
{
    Drive& d = m_state.drives[unit];
    switch (d.op) {
    case Op::PioIn:
        if (d.buf_end < d.buf_fill) {
            d.buf_pos = d.buf_end;
            present_block(unit);
        } else if (d.command == kCmdPacket) {
            atapi_ok(unit);
        } else {
            command_ok(unit, false); // no interrupt after the last block of a PIO data-in command
        }
        break;
    case Op::AtaRead:
        if (d.buf_end < d.buf_fill) {
            d.buf_pos = d.buf_end;
            present_block(unit);
        } else if (d.remaining > 0) {
            ata_read_next(unit);
        } else {
            command_ok(unit, false);
        }
        break;
    case Op::CdRead:
        if (d.buf_end < d.buf_fill) {
            d.buf_pos = d.buf_end;
            present_block(unit);
        } else if (d.remaining > 0) {
            cd_read_next(unit);
        } else {
            atapi_ok(unit);
        }
        break;
    case Op::AtaWrite: ata_write_block(unit); break;
    case Op::Packet: packet_received(unit); break;
    default: break;
    }
}

void IdeChannel::start_pio_in(unsigned unit, uint32_t fill, uint32_t block)
{
    Drive& d = m_state.drives[unit];
    assert(fill > 0 && fill <= kBufferSize && block > 0);
    d.buf_pos = 0;
    d.buf_fill = fill;
    d.drq_block = block;
    present_block(unit);
}

// Offers [buf_pos, buf_pos + drq_block) of the buffer with DRQ and INTRQ.
void IdeChannel::present_block(unsigned unit)
{
    Drive& d = m_state.drives[unit];
    d.buf_end = std::min(d.buf_pos + d.drq_block, d.buf_fill);
    d.status = kDrdy | kDsc | kDrq;
    if (d.command == kCmdPacket) { // ATAPI: the byte count and the direction
        uint32_t bytes = d.buf_end - d.buf_pos;
        d.lcyl = uint8_t(bytes);
        d.hcyl = uint8_t(bytes >> 8);
        d.nsector = kReasonIo;
    }
    raise_irq(unit);
}

void IdeChannel::set_busy(unsigned unit) { m_state.drives[unit].status = kBsy; }

void IdeChannel::command_ok(unsigned unit, bool interrupt)
{
    Drive& d = m_state.drives[unit];
    d.status = kDrdy | kDsc;
    d.op = Op::None;
    d.dma_pending = false;
    if (interrupt)
        raise_irq(unit);
}

void IdeChannel::command_abort(unsigned unit, uint8_t error)
{
    Drive& d = m_state.drives[unit];
    d.status = kDrdy | kErr;
    d.error = error;
    d.op = Op::None;
    d.dma_pending = false;
    raise_irq(unit);
}

// ---- commands ----------------------------------------------------------------

bool IdeChannel::channel_busy() const
{
    for (unsigned unit = 0; unit < 2; ++unit) {
        const Drive& d = m_state.drives[unit];
        if (present(unit) && ((d.status & (kBsy | kDrq)) || d.io_stopped || m_rt[unit].in_flight > 0))
            return true;
    }
    return false;
}

void IdeChannel::execute(unsigned unit, uint8_t command)
{
    if (!present(unit))
        return; // nobody answers
    Drive& d = m_state.drives[unit];
    if (command == kCmdDeviceReset && is_cdrom(unit)) {
        // Accepted in any state; no interrupt.
        DriveRuntime& rt = m_rt[unit];
        rt.generation++;
        rt.reset_waiting = true;
        if (d.dma_pending)
            m_dma_running = false;
        d.op = Op::None;
        d.dma_pending = false;
        d.io_stopped = false;
        d.status = kBsy;
        if (rt.in_flight == 0)
            finish_reset(unit);
        return;
    }
    // A command written while the channel is busy (or held in reset) is
    // lost, as on hardware.
    if (channel_busy() || (m_state.devctl & kSrst)) {
        log_debug("{}: command {:#04x} ignored: the channel is busy", m_rt[unit].id, command);
        return;
    }
    d.irq_pending = false;
    update_irq();
    d.command = command;
    d.error = 0;
    ata_command(unit, command);
}

} // namespace emu::devices::ide
