// devices/ide/atapi.cpp — the ATAPI CD-ROM: PACKET commands (MMC-3, SPC-3),
// sense data, unit attention after a medium change, the tray and the medium.
#include "devices/ide/channel.h"

#include "storage/backend.h"

#include <algorithm>
#include <cstring>
#include <fmt/format.h>
#include <memory>

namespace emu::devices::ide {

namespace {

constexpr uint8_t kNeedsMedium = 1, kAllowAttention = 2;
// More sectors than a CD holds (99 minutes): the medium is a DVD.
constexpr uint64_t kCdMaxSectors = 99 * 60 * 75;

uint32_t be16(const uint8_t* p) { return uint32_t(p[0]) << 8 | p[1]; }
uint32_t be32(const uint8_t* p) { return uint32_t(p[0]) << 24 | uint32_t(p[1]) << 16 | uint32_t(p[2]) << 8 | p[3]; }
void put16(uint8_t* p, uint32_t v)
{
    p[0] = uint8_t(v >> 8);
    p[1] = uint8_t(v);
}
void put32(uint8_t* p, uint32_t v)
{
    put16(p, v >> 16);
    put16(p + 2, v);
}
void put_padded(uint8_t* p, size_t n, std::string_view text)
{
    for (size_t i = 0; i < n; ++i)
        p[i] = i < text.size() ? uint8_t(text[i]) : uint8_t(' ');
}
// A TOC address: LBA, or MSF with the 2-second lead-in.
void put_address(uint8_t* p, uint64_t lba, bool msf)
{
    if (!msf)
        return put32(p, uint32_t(lba));
    lba += 150;
    p[0] = 0;
    p[1] = uint8_t(std::min<uint64_t>(lba / (60 * 75), 255));
    p[2] = uint8_t(lba / 75 % 60);
    p[3] = uint8_t(lba % 75);
}

struct PacketRow {
    uint8_t opcode;
    uint8_t flags;
    void (*run)(IdeChannel&, unsigned unit);
};

} // namespace

// ---- the packet ----------------------------------------------------------------

void IdeChannel::packet_command(unsigned unit)
{
    Drive& d = m_state.drives[unit];
    d.op = Op::Packet;
    d.byte_limit = uint16_t(d.lcyl | d.hcyl << 8);
    d.buf_pos = 0;
    d.buf_fill = d.buf_end = 12;
    d.nsector = kReasonCoD;
    d.status = kDrdy | kDsc | kDrq; // no interrupt: IDENTIFY PACKET word 0 says 50 us DRQ
}

void IdeChannel::packet_received(unsigned unit)
{
    using C = IdeChannel;
    static const PacketRow rows[] = {
        {kScsiTestUnitReady, kNeedsMedium, [](C& c, unsigned u) { c.atapi_ok(u); }},
        {kScsiRequestSense, kAllowAttention, [](C& c, unsigned u) { c.cd_request_sense(u); }},
        {kScsiInquiry, kAllowAttention, [](C& c, unsigned u) { c.cd_inquiry(u); }},
        {kScsiStartStopUnit, 0, [](C& c, unsigned u) { c.cd_start_stop(u); }},
        {kScsiPreventAllow, 0,
         [](C& c, unsigned u) {
             Drive& d = c.m_state.drives[u];
             d.locked = d.packet[4] & 0x01;
             c.atapi_ok(u);
         }},
        {kScsiReadCapacity, kNeedsMedium, [](C& c, unsigned u) { c.cd_read_capacity(u); }},
        {kScsiRead10, kNeedsMedium,
         [](C& c, unsigned u) {
             const uint8_t* p = c.m_state.drives[u].packet.data();
             c.atapi_read(u, be32(p + 2), be16(p + 7));
         }},
        {kScsiRead12, kNeedsMedium,
         [](C& c, unsigned u) {
             const uint8_t* p = c.m_state.drives[u].packet.data();
             c.atapi_read(u, be32(p + 2), be32(p + 6));
         }},
        {kScsiSeek10, kNeedsMedium,
         [](C& c, unsigned u) {
             if (be32(c.m_state.drives[u].packet.data() + 2) >= c.cd_sectors(u))
                 return c.atapi_check(u, kSenseIllegalRequest, kAscLbaOutOfRange);
             c.atapi_ok(u);
         }},
        {kScsiReadToc, kNeedsMedium, [](C& c, unsigned u) { c.cd_read_toc(u); }},
        {kScsiGetConfiguration, kAllowAttention, [](C& c, unsigned u) { c.cd_get_configuration(u); }},
        {kScsiGetEventStatus, kAllowAttention, [](C& c, unsigned u) { c.cd_event_status(u); }},
        {kScsiReadDiscInfo, kNeedsMedium, [](C& c, unsigned u) { c.cd_disc_info(u); }},
        {kScsiModeSense10, 0, [](C& c, unsigned u) { c.cd_mode_sense(u); }},
        {kScsiSetCdSpeed, 0, [](C& c, unsigned u) { c.atapi_ok(u); }},
        {kScsiMechanismStatus, 0, [](C& c, unsigned u) { c.cd_mechanism_status(u); }},
    };
    static const auto table = [] {
        std::array<const PacketRow*, 256> t{};
        for (const PacketRow& r : rows)
            t[r.opcode] = &r;
        return t;
    }();

    Drive& d = m_state.drives[unit];
    std::memcpy(d.packet.data(), d.buffer.data(), d.packet.size());
    const PacketRow* row = table[d.packet[0]];
    uint8_t flags = row ? row->flags : 0;
    // After a medium change, as a drive that loads a disc: NOT READY once,
    // then UNIT ATTENTION once (guests that do not poll events see the
    // tray go and come back).
    if (!(flags & kAllowAttention) && d.media_change && medium_present(unit)) {
        if (d.media_change == 1) {
            d.media_change = 2;
            return atapi_check(unit, kSenseNotReady, kAscMediumNotPresent);
        }
        d.media_change = 0;
        return atapi_check(unit, kSenseUnitAttention, kAscMediumMayHaveChanged);
    }
    if (!row)
        return atapi_check(unit, kSenseIllegalRequest, kAscInvalidOpcode);
    if ((flags & kNeedsMedium) && !medium_present(unit))
        return atapi_check(unit, kSenseNotReady, kAscMediumNotPresent, d.tray_open ? 0x02 : 0x01);
    row->run(*this, unit);
}

void IdeChannel::atapi_ok(unsigned unit)
{
    Drive& d = m_state.drives[unit];
    d.status = kDrdy | kDsc;
    d.error = 0;
    d.nsector = kReasonIo | kReasonCoD;
    d.sense_key = d.asc = d.ascq = 0;
    d.op = Op::None;
    d.dma_pending = false;
    raise_irq(unit);
}

void IdeChannel::atapi_check(unsigned unit, uint8_t key, uint8_t asc, uint8_t ascq)
{
    Drive& d = m_state.drives[unit];
    d.status = kDrdy | kErr;
    d.error = uint8_t(key << 4);
    d.nsector = kReasonIo | kReasonCoD;
    d.sense_key = key;
    d.asc = asc;
    d.ascq = ascq;
    d.op = Op::None;
    d.dma_pending = false;
    raise_irq(unit);
}

// Sends min(data, allocation) bytes: by DMA if the PACKET command asked for
// it, else in DRQ blocks of the byte count limit.
void IdeChannel::atapi_reply(unsigned unit, std::span<const uint8_t> data, uint32_t allocation)
{
    Drive& d = m_state.drives[unit];
    uint32_t n = uint32_t(std::min<size_t>({data.size(), allocation, kBufferSize}));
    if (n == 0)
        return atapi_ok(unit);
    std::memcpy(d.buffer.data(), data.data(), n);
    if (d.feature & 0x01) {
        d.op = Op::CdDmaReply;
        return dma_request(unit, 0, n);
    }
    d.op = Op::PioIn;
    start_pio_in(unit, n, atapi_block(d));
}

// PIO bytes per DRQ block: the byte count limit, even, 0 meaning the most.
uint32_t IdeChannel::atapi_block(const Drive& d)
{
    uint32_t limit = d.byte_limit & 0xfffe;
    return limit ? limit : 0xfffe;
}

// ---- READ(10) / READ(12) -----------------------------------------------------------

bool IdeChannel::medium_present(unsigned unit) const { return m_rt[unit].backend && !m_state.drives[unit].tray_open; }

uint64_t IdeChannel::cd_sectors(unsigned unit) const
{
    const storage::BlockBackend* be = m_rt[unit].backend;
    return be ? be->size() / kCdSectorSize : 0;
}

void IdeChannel::atapi_read(unsigned unit, uint64_t lba, uint32_t count)
{
    Drive& d = m_state.drives[unit];
    uint64_t total = cd_sectors(unit);
    if (lba > total || count > total - lba) {
        stats_invalid(unit, &IdeBlockStats::read);
        return atapi_check(unit, kSenseIllegalRequest, kAscLbaOutOfRange);
    }
    if (count == 0)
        return atapi_ok(unit);
    d.lba = lba;
    d.remaining = count;
    d.dma_moved = 0;
    stats_begin(unit);
    if (d.feature & 0x01) {
        d.op = Op::CdDmaRead;
        return dma_request(unit, lba * kCdSectorSize, uint64_t(count) * kCdSectorSize);
    }
    d.op = Op::CdRead;
    cd_read_next(unit);
}

void IdeChannel::cd_read_next(unsigned unit)
{
    Drive& d = m_state.drives[unit];
    if (!medium_present(unit)) {
        stats_failed(unit, &IdeBlockStats::read);
        return atapi_check(unit, kSenseNotReady, kAscMediumNotPresent, d.tray_open ? 0x02 : 0x01);
    }
    d.chunk = std::min(d.remaining, kBufferSize / kCdSectorSize);
    set_busy(unit);
    auto data = std::make_shared<std::vector<uint8_t>>(size_t(d.chunk) * kCdSectorSize);
    storage::BlockBackend* be = m_rt[unit].backend;
    uint64_t offset = d.lba * kCdSectorSize;
    submit(
        unit, [be, offset, data](auto cb) { be->read_async(offset, *data, std::move(cb)); },
        [this, unit, data](const storage::Result<void>& r) { cd_read_done(unit, r, *data); });
}

void IdeChannel::cd_read_done(unsigned unit, const storage::Result<void>& r, const std::vector<uint8_t>& data)
{
    Drive& d = m_state.drives[unit];
    if (!r) {
        Verdict v = io_error(unit, true, r.error());
        if (v == Verdict::Stopped)
            return;
        if (v == Verdict::Fail) {
            stats_failed(unit, &IdeBlockStats::read);
            return atapi_check(unit, kSenseMediumError, kAscUnrecoveredRead);
        }
    }
    std::memcpy(d.buffer.data(), data.data(), data.size());
    d.lba += d.chunk;
    d.remaining -= d.chunk;
    d.dma_moved += data.size();
    if (d.remaining == 0)
        stats_done(unit, &IdeBlockStats::read, d.dma_moved);
    start_pio_in(unit, uint32_t(data.size()), atapi_block(d));
}

// ---- replies -------------------------------------------------------------------

void IdeChannel::cd_inquiry(unsigned unit)
{
    const Drive& d = m_state.drives[unit];
    const IdeDriveConfig& config = m_rt[unit].config;
    if ((d.packet[1] & 0x01) || d.packet[2] != 0) // vital product data pages: none
        return atapi_check(unit, kSenseIllegalRequest, kAscInvalidField);
    uint8_t r[36] = {};
    r[0] = 0x05; // CD/DVD device
    r[1] = 0x80; // removable
    r[3] = 0x21; // ATAPI, response format 1
    r[4] = sizeof r - 5;
    put_padded(r + 8, 8, "EMUD");
    put_padded(r + 16, 16, config.model.empty() ? "EMUD DVD-ROM" : config.model);
    put_padded(r + 32, 4, config.firmware.empty() ? "1.0" : config.firmware);
    atapi_reply(unit, r, be16(d.packet.data() + 3));
}

void IdeChannel::cd_request_sense(unsigned unit)
{
    const Drive& d = m_state.drives[unit];
    uint8_t r[18] = {};
    r[0] = 0x70; // current error, fixed format
    r[2] = d.sense_key;
    r[7] = sizeof r - 8;
    r[12] = d.asc;
    r[13] = d.ascq;
    atapi_reply(unit, r, d.packet[4]); // the reply ends with atapi_ok, which clears the sense
}

void IdeChannel::cd_read_capacity(unsigned unit)
{
    uint8_t r[8];
    put32(r, uint32_t(std::min<uint64_t>(std::max<uint64_t>(cd_sectors(unit), 1) - 1, 0xffffffffu)));
    put32(r + 4, kCdSectorSize);
    atapi_reply(unit, r, sizeof r);
}

void IdeChannel::cd_mode_sense(unsigned unit)
{
    const Drive& d = m_state.drives[unit];
    unsigned control = d.packet[2] >> 6, page = d.packet[2] & 0x3f;
    if (control == 3)
        return atapi_check(unit, kSenseIllegalRequest, kAscSavingNotSupported);
    uint8_t r[8 + 8 + 22] = {};
    size_t n = 8;
    if (page == 0x01 || page == 0x3f) { // read error recovery
        uint8_t* p = r + n;
        p[0] = 0x01;
        p[1] = 6;
        p[3] = control == 1 ? 0 : 5; // read retry count
        n += 8;
    }
    if (page == 0x2a || page == 0x3f) { // capabilities and mechanical status
        uint8_t* p = r + n;
        p[0] = 0x2a;
        p[1] = 0x14;
        if (control != 1) {
            p[2] = 0x3b; // reads CD-R, CD-RW, DVD-ROM, DVD-R, DVD-RAM
            p[4] = 0x71; // audio play, mode 2 form 1 and 2, multi-session
            p[5] = 0x60;
            p[6] = uint8_t(1 << 5 | 1 << 3 | (d.locked ? 0x02 : 0) | 0x01); // tray, eject, lock state, lockable
            put16(p + 8, 2816);                                             // maximum speed (kB/s), obsolete
            put16(p + 10, 256);                                             // volume levels
            put16(p + 12, 512);                                             // buffer (KiB)
            put16(p + 14, 2816);                                            // current speed, obsolete
        }
        n += 22;
    }
    if (n == 8)
        return atapi_check(unit, kSenseIllegalRequest, kAscInvalidField);
    put16(r, uint32_t(n - 2));
    r[2] = medium_present(unit) ? 0x01 : d.tray_open ? 0x71 : 0x70; // data CD, or door open/closed without disc
    atapi_reply(unit, std::span(r, n), be16(d.packet.data() + 7));
}

void IdeChannel::cd_start_stop(unsigned unit)
{
    Drive& d = m_state.drives[unit];
    bool start = d.packet[4] & 0x01, load_eject = d.packet[4] & 0x02;
    if (!load_eject)
        return atapi_ok(unit);
    if (!start) {
        if (d.locked)
            return atapi_check(unit, kSenseIllegalRequest, kAscRemovalPrevented, 0x02);
        if (!d.tray_open) {
            d.tray_open = true;
            if (m_rt[unit].backend)
                d.media_event = kMediaEventRemoval;
            tray_moved(unit, true);
        }
        return atapi_ok(unit);
    }
    if (d.tray_open) {
        d.tray_open = false;
        if (m_rt[unit].backend) {
            d.media_change = 1;
            d.media_event = kMediaEventNewMedia;
        }
        tray_moved(unit, false);
    }
    atapi_ok(unit);
}

void IdeChannel::cd_read_toc(unsigned unit)
{
    const Drive& d = m_state.drives[unit];
    bool msf = d.packet[1] & 0x02;
    unsigned format = d.packet[2] & 0x0f;
    if (format == 0)
        format = d.packet[9] >> 6; // the older place of the format
    unsigned track = d.packet[6];
    uint64_t total = cd_sectors(unit);
    uint8_t r[4 + 2 * 8] = {};
    size_t n = 4;
    if (format == 0) { // TOC: track 1 (data), then the lead-out
        if (track > 1 && track != 0xaa)
            return atapi_check(unit, kSenseIllegalRequest, kAscInvalidField);
        if (track <= 1) {
            r[n + 1] = 0x14;
            r[n + 2] = 1;
            put_address(r + n + 4, 0, msf);
            n += 8;
        }
        r[n + 1] = 0x14;
        r[n + 2] = 0xaa;
        put_address(r + n + 4, total, msf);
        n += 8;
    } else if (format == 1) { // session information: one session
        r[n + 1] = 0x14;
        r[n + 2] = 1;
        put_address(r + n + 4, 0, msf);
        n += 8;
    } else {
        return atapi_check(unit, kSenseIllegalRequest, kAscInvalidField);
    }
    put16(r, uint32_t(n - 2));
    r[2] = r[3] = 1; // first and last track (session)
    atapi_reply(unit, std::span(r, n), be16(d.packet.data() + 7));
}

void IdeChannel::cd_get_configuration(unsigned unit)
{
    const Drive& d = m_state.drives[unit];
    unsigned request = d.packet[1] & 0x03, first = be16(d.packet.data() + 2);
    if (request == 3)
        return atapi_check(unit, kSenseIllegalRequest, kAscInvalidField);
    uint16_t profile = 0;
    if (medium_present(unit))
        profile = cd_sectors(unit) > kCdMaxSectors ? 0x0010 : 0x0008; // DVD-ROM or CD-ROM
    uint8_t lockable = uint8_t(1 << 5 | 1 << 3 | 0x01);               // tray, eject, lock
    // Features, each: code, version/persistent/current, additional length, data.
    const uint8_t profiles[] = {0x00, 0x00, 0x03, 8, 0x00, 0x10, profile == 0x10, 0, 0x00, 0x08, profile == 0x08, 0};
    const uint8_t core[] = {0x00, 0x01, 0x0b, 8, 0, 0, 0, 2 /* ATAPI */, 0, 0, 0, 0};
    const uint8_t removable[] = {0x00, 0x03, 0x03, 4, lockable, 0, 0, 0};
    const std::span<const uint8_t> features[] = {profiles, core, removable};
    uint8_t r[8 + sizeof profiles + sizeof core + sizeof removable] = {};
    size_t n = 8;
    for (auto f : features) {
        unsigned code = be16(f.data());
        bool current = f[2] & 0x01;
        bool wanted = request == 2 ? code == first : code >= first && (request == 0 || current);
        if (!wanted)
            continue;
        std::memcpy(r + n, f.data(), f.size());
        n += f.size();
    }
    put32(r, uint32_t(n - 4));
    put16(r + 6, profile);
    atapi_reply(unit, std::span(r, n), be16(d.packet.data() + 7));
}

void IdeChannel::cd_event_status(unsigned unit)
{
    Drive& d = m_state.drives[unit];
    if (!(d.packet[1] & 0x01)) // only polled operation
        return atapi_check(unit, kSenseIllegalRequest, kAscInvalidField);
    uint8_t r[8] = {};
    size_t n = 4;
    r[3] = 0x10; // supported classes: media
    if (d.packet[4] & 0x10) {
        put16(r, 6);
        r[2] = 0x04; // media class
        r[4] = d.media_event;
        r[5] = d.tray_open ? 0x01 : m_rt[unit].backend ? 0x02 : 0x00;
        d.media_event = kMediaEventNone;
        n = 8;
    } else {
        put16(r, 2);
        r[2] = 0x80; // no event available
    }
    atapi_reply(unit, std::span(r, n), be16(d.packet.data() + 7));
}

void IdeChannel::cd_mechanism_status(unsigned unit)
{
    const Drive& d = m_state.drives[unit];
    uint8_t r[8] = {};
    r[1] = d.tray_open ? 0x10 : 0x00;
    atapi_reply(unit, r, be16(d.packet.data() + 8));
}

void IdeChannel::cd_disc_info(unsigned unit)
{
    const Drive& d = m_state.drives[unit];
    if (d.packet[1] & 0x07) // only standard disc information
        return atapi_check(unit, kSenseIllegalRequest, kAscInvalidField);
    uint8_t r[34] = {};
    put16(r, sizeof r - 2);
    r[2] = 0x0e;                   // last session complete, disc finalized
    r[3] = r[4] = r[5] = r[6] = 1; // first track, sessions, first and last track of the last session
    std::memset(r + 16, 0xff, 8);  // no lead-in / lead-out addresses
    atapi_reply(unit, r, be16(d.packet.data() + 7));
}

// ---- tray and medium ---------------------------------------------------------

void IdeChannel::tray_moved(unsigned unit, bool open)
{
    if (m_rt[unit].config.on_tray_moved)
        m_rt[unit].config.on_tray_moved(open);
}

IdeResult<void> IdeChannel::open_tray(unsigned unit, bool force)
{
    Drive& d = m_state.drives[unit];
    if (d.tray_open)
        return {};
    if (d.locked && !force) {
        d.media_event = kMediaEventEjectRequest; // the guest may unlock and eject
        return std::unexpected(
            IdeError{fmt::format("{}: the tray is locked by the guest and force was not given", m_rt[unit].id)});
    }
    d.locked = false;
    d.tray_open = true;
    if (m_rt[unit].backend)
        d.media_event = kMediaEventRemoval;
    tray_moved(unit, true);
    return {};
}

IdeResult<void> IdeChannel::close_tray(unsigned unit)
{
    Drive& d = m_state.drives[unit];
    if (!d.tray_open)
        return {};
    d.tray_open = false;
    if (m_rt[unit].backend) {
        d.media_change = 1;
        d.media_event = kMediaEventNewMedia;
    }
    tray_moved(unit, false);
    return {};
}

IdeResult<void> IdeChannel::set_medium(unsigned unit, storage::BlockBackend* medium)
{
    if (!m_state.drives[unit].tray_open)
        return std::unexpected(IdeError{fmt::format("{}: the tray is closed", m_rt[unit].id)});
    m_rt[unit].backend = medium;
    return {};
}

} // namespace emu::devices::ide
