// devices/ide/state.h — the IDE model's migratable state, declared once as
// field tables (devices/state.h): per drive the task file, the command in
// progress with its PIO buffer and DMA position, the ATA settings and the
// ATAPI sense/tray state; per channel the selection, device control, the
// bus-master registers and the PRD cursor.
#pragma once

#include "devices/state.h"

#include <array>
#include <cstdint>
#include <span>

namespace emu::devices::ide {

inline constexpr uint32_t kBufferSize = 16 * 1024; // PIO data of one drive

// What the command in progress is doing (IdeDriveState::op).
enum class Op : uint8_t {
    None,
    PioIn,       // the buffer goes to the host, nothing more to fetch (IDENTIFY, ATAPI replies)
    AtaRead,     // READ SECTORS / MULTIPLE
    AtaWrite,    // WRITE SECTORS / MULTIPLE
    AtaDmaRead,  // READ DMA (EXT)
    AtaDmaWrite, // WRITE DMA (EXT)
    Dsm,         // DATA SET MANAGEMENT: ranges by DMA, then discards
    Flush,       // FLUSH CACHE, or the flush ending a write with the cache off
    Packet,      // ATAPI: receiving the 12-byte packet
    CdRead,      // ATAPI READ(10)/(12) by PIO
    CdDmaRead,   // ATAPI READ(10)/(12) by DMA
    CdDmaReply,  // ATAPI: the buffer goes to the host by DMA
};

struct IdeDriveState {
    // Task file: both devices of a channel latch every register write.
    uint8_t feature = 0, nsector = 0, sector = 0, lcyl = 0, hcyl = 0;
    uint8_t hob_feature = 0, hob_nsector = 0, hob_sector = 0, hob_lcyl = 0, hob_hcyl = 0;
    uint8_t select = kSelectReset;
    uint8_t status = 0;
    uint8_t error = 0;
    bool irq_pending = false;
    // The command in progress.
    uint8_t command = 0;
    Op op = Op::None;
    bool io_stopped = false; // a failed request waits for resume_after_error()
    uint64_t lba = 0;        // next sector (512 bytes for ATA, 2048 for ATAPI)
    uint32_t remaining = 0;  // sectors still to move
    uint32_t chunk = 0;      // sectors fetched into / taken from the buffer
    // PIO: the buffer holds `fill` bytes; the host moves [pos, end) now.
    uint32_t buf_pos = 0, buf_end = 0, buf_fill = 0, drq_block = 0;
    // DMA: the device requests a transfer of `dma_left` more bytes at medium
    // offset `dma_offset` (or buffer offset, for replies and DSM ranges).
    bool dma_pending = false;
    uint64_t dma_offset = 0;
    uint64_t dma_left = 0;
    uint64_t dma_moved = 0; // bytes moved for this command
    // ATA settings.
    uint8_t mult_sectors = 0; // 0: multiple mode off
    uint16_t cur_cylinders = 0;
    uint8_t cur_heads = 0, cur_sectors = 0;
    bool write_cache = true;
    uint8_t power_mode = 0xff; // CHECK POWER MODE: 0xff active/idle, 0x00 standby
    uint8_t xfer_mode = 0;     // SET FEATURES 03h value
    // ATAPI.
    uint8_t sense_key = 0, asc = 0, ascq = 0;
    std::array<uint8_t, 12> packet{};
    uint16_t byte_limit = 0; // PIO bytes per DRQ block, from the PACKET command
    bool tray_open = false;
    bool locked = false;
    uint8_t media_change = 0; // 1: next command gets NOT READY, 2: then UNIT ATTENTION
    uint8_t media_event = 0;  // GET EVENT STATUS NOTIFICATION media event pending
    std::array<uint8_t, kBufferSize> buffer{};

    static constexpr uint8_t kSelectReset = 0xa0;
    static std::span<const FieldDesc> fields();
};

struct IdeChannelState {
    uint8_t unit = 0;   // selected device
    uint8_t devctl = 0; // device control: nIEN, SRST, HOB
    uint8_t bm_command = 0, bm_status = 0;
    uint32_t bm_prd = 0; // PRD table address register
    // Bus-master cursor, latched at start: entry index and bytes used of it;
    // `prd_end` once the entry with EOT is used up. `chunk_*`: the cursor at
    // the start of the round in flight (a stopped round starts again there).
    uint32_t prd_table = 0, prd_index = 0, prd_offset = 0;
    bool prd_end = false;
    uint32_t chunk_index = 0, chunk_offset = 0;
    bool chunk_end = false;
    std::array<IdeDriveState, 2> drives{};

    static std::span<const FieldDesc> fields();
};

} // namespace emu::devices::ide
