// devices/ide/identify.cpp — IDENTIFY DEVICE and IDENTIFY PACKET DEVICE data
// (word layout from ATA/ATAPI-6, T13/1410D, and ACS-2 for words 105 and 169).
#include "devices/ide/channel.h"

#include <algorithm>

namespace emu::devices::ide {

void put_ata_string(std::span<uint16_t> words, std::string_view text)
{
    for (size_t i = 0; i < words.size(); ++i) {
        auto at = [&](size_t n) { return n < text.size() ? uint8_t(text[n]) : uint8_t(' '); };
        words[i] = uint16_t(at(2 * i) << 8 | at(2 * i + 1));
    }
}

namespace {

using Words = std::array<uint16_t, 256>;

std::string_view or_default(const std::string& value, std::string_view fallback)
{
    return value.empty() ? fallback : std::string_view(value);
}

// The selected-mode bits of words 63 and 88 from the SET FEATURES value.
uint16_t mwdma_selected(uint8_t mode) { return (mode & 0xf8) == 0x20 ? uint16_t(0x100 << (mode & 7)) : 0; }
uint16_t udma_selected(uint8_t mode) { return (mode & 0xf8) == 0x40 ? uint16_t(0x100 << (mode & 7)) : 0; }

// Word 255: signature 0xa5 and a checksum making the 512 bytes sum to 0.
void seal(Words& w)
{
    w[255] = 0x00a5;
    uint8_t sum = 0;
    for (size_t i = 0; i < 255; ++i)
        sum = uint8_t(sum + (w[i] & 0xff) + (w[i] >> 8));
    sum = uint8_t(sum + 0xa5);
    w[255] = uint16_t(uint8_t(-sum) << 8 | 0xa5);
}

void put_strings(Words& w, const IdeDriveConfig& config, unsigned position, std::string_view model)
{
    std::string serial = config.serial.empty() ? "EM0000" + std::to_string(position) : config.serial;
    put_ata_string(std::span(w).subspan(10, 10), serial);
    put_ata_string(std::span(w).subspan(23, 4), or_default(config.firmware, "1.0"));
    put_ata_string(std::span(w).subspan(27, 20), or_default(config.model, model));
}

} // namespace

void IdeChannel::identify_disk(unsigned unit)
{
    Drive& d = m_state.drives[unit];
    const DriveRuntime& rt = m_rt[unit];
    uint64_t total = disk_sectors(unit);
    Words w{};
    w[0] = 0x0040; // fixed device
    w[1] = rt.cylinders;
    w[3] = rt.heads;
    w[6] = rt.sectors;
    put_strings(w, rt.config, unsigned(m_index * 2) + unit, "EMUD HARDDISK");
    w[47] = 0x8000 | kMaxMultipleSectors;
    w[49] = 1 << 11 | 1 << 9 | 1 << 8; // IORDY, LBA, DMA
    w[50] = 0x4000;
    w[51] = w[52] = 0x0200; // obsolete PIO/DMA timing: mode 2
    w[53] = 0x0007;         // words 54-58, 64-70 and 88 are valid
    uint32_t current = uint32_t(d.cur_cylinders) * d.cur_heads * d.cur_sectors;
    w[54] = d.cur_cylinders;
    w[55] = d.cur_heads;
    w[56] = d.cur_sectors;
    w[57] = uint16_t(current);
    w[58] = uint16_t(current >> 16);
    if (d.mult_sectors)
        w[59] = 0x0100 | d.mult_sectors;
    uint64_t lba28 = std::min(total, kLba28Limit);
    w[60] = uint16_t(lba28);
    w[61] = uint16_t(lba28 >> 16);
    w[63] = 0x0007 | mwdma_selected(d.xfer_mode); // multiword DMA 0-2
    w[64] = 0x0003;                               // PIO 3 and 4
    w[65] = w[66] = w[67] = w[68] = 120;          // cycle times (ns)
    w[80] = 0x00f0;                               // ATA-4 to ATA/ATAPI-7
    w[82] = 1 << 5 | 1 << 3;                      // write cache, power management
    w[83] = 0x4000 | 1 << 13 | 1 << 12 | 1 << 10; // FLUSH CACHE EXT, FLUSH CACHE, 48-bit
    w[84] = 0x4000;
    w[85] = uint16_t((d.write_cache ? 1 << 5 : 0) | 1 << 3);
    w[86] = 1 << 13 | 1 << 12 | 1 << 10;
    w[87] = 0x4000;
    w[88] = 0x003f | udma_selected(d.xfer_mode); // UDMA 0-5
    w[93] = 0x6001;                              // reset results valid, 80-conductor cable
    for (unsigned i = 0; i < 4; ++i)
        w[100 + i] = uint16_t(total >> 16 * i);
    if (rt.config.discard) {
        w[105] = kDsmMaxBlocks;
        w[169] = 0x0001; // TRIM
    }
    w[106] = 0x4000; // one 512-byte logical sector per physical sector
    seal(w);
    for (size_t i = 0; i < w.size(); ++i) {
        d.buffer[2 * i] = uint8_t(w[i]);
        d.buffer[2 * i + 1] = uint8_t(w[i] >> 8);
    }
    d.op = Op::PioIn;
    start_pio_in(unit, 512, 512);
}

void IdeChannel::identify_packet(unsigned unit)
{
    Drive& d = m_state.drives[unit];
    const DriveRuntime& rt = m_rt[unit];
    Words w{};
    // ATAPI, CD-ROM, removable, 50 us DRQ (no interrupt for the packet), 12-byte packets.
    w[0] = 2 << 14 | 5 << 8 | 1 << 7 | 2 << 5;
    put_strings(w, rt.config, unsigned(m_index * 2) + unit, "EMUD DVD-ROM");
    w[49] = 1 << 9 | 1 << 8; // LBA, DMA
    w[53] = 0x0007;
    w[63] = 0x0007 | mwdma_selected(d.xfer_mode);
    w[64] = 0x0003;
    w[65] = w[66] = w[68] = 180;
    w[67] = 300;
    w[80] = 0x001e; // ATA/ATAPI-1 to -4
    w[82] = 1 << 4; // PACKET
    w[83] = w[84] = w[87] = 0x4000;
    w[85] = 1 << 4;
    w[88] = 0x003f | udma_selected(d.xfer_mode);
    w[93] = 0x6001;
    seal(w);
    for (size_t i = 0; i < w.size(); ++i) {
        d.buffer[2 * i] = uint8_t(w[i]);
        d.buffer[2 * i + 1] = uint8_t(w[i] >> 8);
    }
    d.op = Op::PioIn;
    start_pio_in(unit, 512, 512);
}

} // namespace emu::devices::ide
