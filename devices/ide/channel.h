// devices/ide/channel.h — one IDE channel: two drive positions sharing the
// task file registers, the INTRQ line and a bus-master DMA engine.
//
// Internal to devices/ide; PiixIde (piix_ide.h) is the public face. The class
// is split by domain over several files:
//   channel.cpp  registers, selection, device control and soft reset, INTRQ,
//                the PIO data port, command dispatch, command endings;
//   ata.cpp      ATA commands of disks (and the few ATAPI devices accept);
//   identify.cpp IDENTIFY (PACKET) DEVICE data;
//   atapi.cpp    PACKET commands, sense, tray and medium;
//   dma.cpp      the bus-master registers, PRD walking and DMA rounds;
//   io.cpp       asynchronous backend requests, error actions, statistics.
#pragma once

#include "devices/ide/defs.h"
#include "devices/ide/piix_ide.h"
#include "devices/ide/state.h"
#include "storage/error.h"

#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <span>
#include <string>
#include <vector>

namespace emu::devices::ide {

// What a channel needs of its controller.
struct IdeContext {
    BusMaster& memory;
    IdeIoTracker& io;
    std::function<bool()> bus_master_enabled; // PCI command bit 2
};

// Joins `count` backend requests: `done` runs once, on the thread of the last
// one, with the first error.
class FanIn {
public:
    FanIn(size_t count, std::function<void(storage::Result<void>)> done);
    void arrive(storage::Result<void> r);

private:
    std::mutex m_mutex;
    size_t m_left;
    storage::Result<void> m_result;
    std::function<void(storage::Result<void>)> m_done;
};

// A drive's host-side, non-migrated part.
struct DriveRuntime {
    IdeDriveConfig config;
    std::string id;
    storage::BlockBackend* backend = nullptr; // disk image or CD medium
    uint16_t cylinders = 0;                   // default geometry (IDENTIFY words 1, 3, 6)
    uint8_t heads = 0, sectors = 0;
    uint32_t generation = 0;    // bumped by resets: older completions are dropped
    int in_flight = 0;          // backend rounds of any generation not back yet
    bool reset_waiting = false; // a soft reset completes when in_flight drops to 0
    IdeBlockStats stats;
    std::chrono::steady_clock::time_point started; // of the command being timed
};

class IdeChannel {
public:
    IdeChannel(int index, IdeContext context, std::array<IdeDriveConfig, 2> drives);
    IdeChannel(const IdeChannel&) = delete;
    IdeChannel& operator=(const IdeChannel&) = delete;

    // Command block (offset 0-7; the data port takes 2- and 4-byte accesses)
    // and control block (alternate status / device control).
    uint64_t read_command(uint64_t offset, unsigned size);
    void write_command(uint64_t offset, uint64_t value, unsigned size);
    uint8_t read_alt_status() const;
    void write_device_control(uint8_t value);

    // Bus-master registers of this channel (offset 0-7 in its half of BAR4).
    uint8_t bm_read(unsigned offset) const;
    void bm_write(unsigned offset, uint8_t value);

    IrqLine& irq() { return m_irq; }
    void reset(); // hard reset (power-on state, keeps tray and medium)

    // Media (unit must be a cdrom; checked by the caller).
    IdeResult<void> open_tray(unsigned unit, bool force);
    IdeResult<void> close_tray(unsigned unit);
    IdeResult<void> set_medium(unsigned unit, storage::BlockBackend* medium);

    void resume_after_error();
    const DriveRuntime& runtime(unsigned unit) const { return m_rt[unit]; }
    const IdeChannelState& state() const { return m_state; }

private:
    using Drive = IdeDriveState;

    // ---- channel.cpp ----
    Drive& selected() { return m_state.drives[m_state.unit]; }
    bool present(unsigned unit) const { return m_rt[unit].config.kind != IdeDriveKind::None; }
    bool is_cdrom(unsigned unit) const { return m_rt[unit].config.kind == IdeDriveKind::Cdrom; }
    unsigned unit_of(const Drive& d) const { return &d == &m_state.drives[0] ? 0 : 1; }
    uint8_t read_register(unsigned reg);
    uint32_t data_read(unsigned size);
    void data_write(uint32_t value, unsigned size);
    void block_done(unsigned unit);
    void execute(unsigned unit, uint8_t command);
    bool channel_busy() const;
    void set_signature(unsigned unit);
    void soft_reset_begin();
    void soft_reset_end();
    void finish_reset(unsigned unit);
    void update_irq();
    void raise_irq(unsigned unit);
    // Command endings.
    void command_ok(unsigned unit, bool interrupt = true);
    void command_abort(unsigned unit, uint8_t error = kAbrt);
    void start_pio_in(unsigned unit, uint32_t fill, uint32_t block);
    void present_block(unsigned unit);
    void set_busy(unsigned unit);

    // ---- ata.cpp ----
    void ata_command(unsigned unit, uint8_t command);
    bool ata_address(unsigned unit, bool lba48, uint64_t& lba, uint32_t& count);
    bool ata_range_ok(unsigned unit, uint64_t lba, uint32_t count, bool write);
    void ata_rw_pio(unsigned unit, bool write, bool lba48, bool multiple);
    void ata_rw_dma(unsigned unit, bool write, bool lba48);
    void ata_verify(unsigned unit, bool lba48);
    void ata_flush(unsigned unit);
    void ata_set_features(unsigned unit);
    void ata_initialize_parameters(unsigned unit);
    void ata_dsm(unsigned unit);
    void ata_read_next(unsigned unit);
    void ata_read_done(unsigned unit, const storage::Result<void>& r, const std::vector<uint8_t>& data);
    void ata_write_block(unsigned unit);
    void ata_write_done(unsigned unit, const storage::Result<void>& r);
    void dsm_ranges_received(unsigned unit);
    void end_write_command(unsigned unit);
    void flush_submit(unsigned unit);
    uint64_t disk_sectors(unsigned unit) const;

    // ---- identify.cpp ----
    void identify_disk(unsigned unit);
    void identify_packet(unsigned unit);

    // ---- atapi.cpp ----
    void packet_command(unsigned unit);
    void packet_received(unsigned unit);
    void atapi_ok(unsigned unit);
    void atapi_check(unsigned unit, uint8_t key, uint8_t asc, uint8_t ascq = 0);
    void atapi_reply(unsigned unit, std::span<const uint8_t> data, uint32_t allocation);
    static uint32_t atapi_block(const Drive& d);
    void atapi_read(unsigned unit, uint64_t lba, uint32_t count);
    void cd_read_next(unsigned unit);
    void cd_read_done(unsigned unit, const storage::Result<void>& r, const std::vector<uint8_t>& data);
    bool medium_present(unsigned unit) const;
    uint64_t cd_sectors(unsigned unit) const;
    void cd_inquiry(unsigned unit);
    void cd_request_sense(unsigned unit);
    void cd_read_capacity(unsigned unit);
    void cd_mode_sense(unsigned unit);
    void cd_start_stop(unsigned unit);
    void cd_read_toc(unsigned unit);
    void cd_get_configuration(unsigned unit);
    void cd_event_status(unsigned unit);
    void cd_mechanism_status(unsigned unit);
    void cd_disc_info(unsigned unit);
    void tray_moved(unsigned unit, bool open);

    // ---- dma.cpp ----
    struct Segment {
        uint64_t gpa;
        uint64_t len;
    };
    void dma_request(unsigned unit, uint64_t offset, uint64_t bytes);
    void dma_kick();
    bool dma_collect(uint64_t want, std::vector<Segment>& out, uint64_t& bytes);
    void dma_round_done(unsigned unit, uint64_t bytes);
    void dma_fail(unsigned unit);
    void dma_rewind();
    void dma_medium_round(unsigned unit, const std::vector<Segment>& segments, uint64_t bytes);
    void dma_medium_done(unsigned unit, uint64_t bytes, const storage::Result<void>& r);

    // ---- io.cpp ----
    using Done = std::function<void(const storage::Result<void>&)>;
    using Start = std::function<void(std::function<void(storage::Result<void>)>)>;
    void submit(unsigned unit, const Start& start, Done done);
    void complete(unsigned unit, uint32_t generation, const storage::Result<void>& r, const Done& done);
    enum class Verdict { Continue, Fail, Stopped };
    Verdict io_error(unsigned unit, bool is_read, const storage::Error& error);
    void restart(unsigned unit);
    void stats_begin(unsigned unit);
    void stats_done(unsigned unit, IdeIoStats IdeBlockStats::*kind, uint64_t bytes);
    void stats_failed(unsigned unit, IdeIoStats IdeBlockStats::*kind);
    void stats_invalid(unsigned unit, IdeIoStats IdeBlockStats::*kind);

    int m_index;
    IdeContext m_ctx;
    IdeChannelState m_state;
    std::array<DriveRuntime, 2> m_rt;
    IrqLine m_irq;
    bool m_dma_running = false; // a DMA round of the current generation is in flight
};

// ATA strings: two characters per word, the first in the high byte, padded
// with spaces.
void put_ata_string(std::span<uint16_t> words, std::string_view text);

} // namespace emu::devices::ide
