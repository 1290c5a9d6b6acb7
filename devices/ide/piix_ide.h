// devices/ide/piix_ide.h — the PIIX3 IDE function (00:01.1, 8086:7010, class
// 0x010180): two legacy-mode channels with a master and a slave each, ATA
// disks over a storage::BlockBackend, ATAPI CD-ROMs with a removable medium,
// and SFF-8038i bus-master DMA through the machine's BusMaster.
//
// Ports: primary 0x1f0-0x1f7 + 0x3f6 (ISA IRQ 14), secondary 0x170-0x177 +
// 0x376 (IRQ 15), mapped by attach() and decoded whatever the command
// register and IDETIM say (as QEMU does). BAR4: 16 bytes of I/O, per channel
// the bus-master command (start, direction), status (active, error and
// interrupt write-1-to-clear, drive DMA-capable bits) and PRD table address.
// IDETIM/SIDETIM (0x40-0x44) are stored; firmware_setup() sets the decode
// enable bits SeaBIOS sets (Linux's ata_piix skips a channel without them).
//
// Drives (IdeDriveConfig per position 0-3 = channel * 2 + unit):
//  - disk: IDENTIFY DEVICE (LBA28/LBA48, CHS, multiword DMA 0-2, UDMA 0-5,
//    write cache, FLUSH CACHE (EXT), TRIM when `discard`), READ/WRITE SECTORS
//    / MULTIPLE / DMA and their EXT forms, READ VERIFY, SET MULTIPLE MODE,
//    SET FEATURES, INITIALIZE DEVICE PARAMETERS, power commands, DATA SET
//    MANAGEMENT (TRIM, by DMA), SEEK, RECALIBRATE; anything else aborts.
//  - cdrom: IDENTIFY PACKET DEVICE, DEVICE RESET and PACKET with TEST UNIT
//    READY, REQUEST SENSE, INQUIRY, READ CAPACITY, READ(10)/READ(12) (PIO or
//    DMA), MODE SENSE(10) (pages 0x01, 0x2a, 0x3f), START STOP UNIT, PREVENT
//    ALLOW MEDIUM REMOVAL, READ TOC (formats 0 and 1), GET CONFIGURATION,
//    GET EVENT STATUS NOTIFICATION (media class), MECHANISM STATUS, READ DISC
//    INFORMATION, SEEK, SET CD SPEED; others are CHECK CONDITION with ILLEGAL
//    REQUEST / INVALID COMMAND OPERATION CODE.
// Out-of-range addresses fail (IDNF, or LBA OUT OF RANGE) before any I/O;
// writes to a read-only backend abort. Guest values never size an allocation:
// PIO goes through a fixed 16 KiB buffer per drive, DMA moves at most 1 MiB
// per backend round and walks at most kMaxPrdEntries PRD entries per start.
//
// Interrupts: irq(0) and irq(1) are the channels' INTRQ (ISA IRQ 14 and 15,
// wired by the machine). The selected device's pending interrupt drives the
// line unless nIEN is set; reading Status or writing a command clears it.
//
// Threads and locks: ports run under the VM's device lock. Block I/O (PIO and
// DMA alike) is asynchronous: a command sets BSY, the request runs on a
// storage worker, and its completion comes back under the device lock
// through BusMaster::run_locked(). Every API here is called under the device
// lock, except drain().
//
// Reset contract (machine reset, device removal, backend replacement):
//   1. drain() WITHOUT the device lock: waits until no request of this
//      function is in flight (their completions take the lock);
//   2. reset() (PciDevice::reset, or PciBus::reset) under the lock.
// Each drive has a generation counter, bumped by reset, soft reset (SRST) and
// DEVICE RESET: a completion of an older generation is dropped (it only
// writes into a buffer of its own, or guest RAM a DMA was given). A soft
// reset that finds a request in flight keeps the drive BSY until it is back,
// so a guest never sees a request from before its reset land after it.
// An ejected or replaced medium may still have a request in flight: call
// drain() before destroying its BlockBackend.
#pragma once

#include "devices/block_device.h"
#include "devices/pci/pci.h"
#include "devices/state.h"
#include "engine/irq.h"
#include "engine/memory/region.h"

#include <array>
#include <condition_variable>
#include <cstdint>
#include <expected>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

namespace emu::storage {
class BlockBackend;
}

namespace emu::devices {

class BusMaster;
namespace ide {
class IdeChannel;
}

struct IdeError {
    std::string message; // "ide1-cd0: the tray is locked and force was not given"
};
template <class T>
using IdeResult = std::expected<T, IdeError>;

enum class IdeDriveKind : uint8_t { None, Disk, Cdrom };

struct IdeDriveConfig {
    IdeDriveKind kind = IdeDriveKind::None;
    // Disk: the image (required). Cdrom: the initial medium (nullptr: empty).
    // Not owned; must outlive the device or be removed (and drained) first.
    storage::BlockBackend* backend = nullptr;
    std::string id;       // error messages; default "ide<channel>-hd<unit>" / "-cd<unit>"
    std::string model;    // default "EMUD HARDDISK" / "EMUD DVD-ROM"
    std::string serial;   // default "EM0000<position>"
    std::string firmware; // default "1.0"
    // Disk geometry; 0 = derived from the size (16 heads, 63 sectors).
    uint32_t cylinders = 0, heads = 0, sectors = 0;
    bool write_cache = true; // the power-on setting of SET FEATURES 02h/82h
    bool discard = false;    // advertise and implement TRIM
    BlockErrorAction rerror = BlockErrorAction::Report;
    BlockErrorAction werror = BlockErrorAction::Enospc;
    // Called under the device lock. on_io_error: for every failed request
    // whose action is not Ignore; `stopping` when the request is kept for
    // resume_after_error() (the VM should be stopped: post that to the control
    // thread, never wait for vCPUs or drain from here).
    std::function<void(bool is_read, int err, bool stopping)> on_io_error;
    // The tray opened or closed (QMP DEVICE_TRAY_MOVED), from the API or the
    // guest (START STOP UNIT).
    std::function<void(bool open)> on_tray_moved;
};

struct PiixIdeConfig {
    std::array<IdeDriveConfig, 4> drives; // primary master, primary slave, secondary master, secondary slave
};

// query-blockstats figures of one drive.
struct IdeIoStats {
    uint64_t operations = 0; // completed successfully
    uint64_t bytes = 0;
    uint64_t total_time_ns = 0;
    uint64_t failed = 0;  // I/O errors
    uint64_t invalid = 0; // refused before any I/O (out of range, read-only)
};
struct IdeBlockStats {
    IdeIoStats read, write, flush, unmap;
};

// Tracks this function's requests in flight, for drain().
class IdeIoTracker {
public:
    void begin();
    void end();
    void wait_idle();
    size_t in_flight();

private:
    std::mutex m_mutex;
    std::condition_variable m_idle;
    size_t m_count = 0;
};

class PiixIde final : public PciDevice {
public:
    static constexpr uint8_t kDevfn = pci::devfn(1, 1);
    static constexpr int kChannels = 2;
    static constexpr int kDrives = 4;
    static constexpr uint16_t kCommandPorts[2] = {0x1f0, 0x170};
    static constexpr uint16_t kControlPorts[2] = {0x3f6, 0x376};
    static constexpr int kIsaIrqs[2] = {14, 15};
    static constexpr int kBmBar = 4;
    static constexpr unsigned kIdetim = 0x40, kSidetim = 0x44;

    // Validates the configuration (a disk needs a backend of at least one
    // sector, a drive kind other than None at unit 1 of an empty channel is
    // fine).
    static IdeResult<std::unique_ptr<PiixIde>> create(BusMaster& memory, PiixIdeConfig config);
    ~PiixIde() override;

    // Maps the legacy command and control ports of both channels.
    mem::Result<void> attach(mem::MemoryRegion& port_root);
    IrqLine& irq(int channel);
    // What SeaBIOS does: IDETIM decode enable on both channels.
    void firmware_setup();

    // ---- removable media (cdrom drives; `drive` is 0-3) ----
    // QMP eject: opens the tray and removes the medium. A locked tray
    // (PREVENT ALLOW MEDIUM REMOVAL) refuses unless `force`, and the guest
    // gets an eject request event instead.
    IdeResult<void> eject(unsigned drive, bool force);
    // QMP change / blockdev-change-medium: opens the tray if needed (refused
    // while locked), puts `medium` in and closes the tray. The guest sees
    // NOT READY, then UNIT ATTENTION (MEDIUM MAY HAVE CHANGED), and a new-media
    // event.
    IdeResult<void> insert(unsigned drive, storage::BlockBackend* medium);
    // blockdev-open-tray / -close-tray / -remove-medium / -insert-medium.
    IdeResult<void> open_tray(unsigned drive, bool force);
    IdeResult<void> close_tray(unsigned drive);
    IdeResult<void> set_medium(unsigned drive, storage::BlockBackend* medium); // tray must be open
    bool tray_open(unsigned drive) const;
    bool tray_locked(unsigned drive) const;
    storage::BlockBackend* medium(unsigned drive) const;

    // ---- errors and statistics ----
    // Retries every request stopped by werror/rerror=stop.
    void resume_after_error();
    bool io_stopped(unsigned drive) const;
    IdeBlockStats stats(unsigned drive) const;

    // Without the device lock: waits until no request is in flight.
    void drain();

    std::string dump() const;

protected:
    void device_reset() override;

private:
    PiixIde(BusMaster& memory, PiixIdeConfig config);
    uint64_t bm_read(uint64_t offset, unsigned size);
    void bm_write(uint64_t offset, uint64_t value, unsigned size);
    IdeResult<ide::IdeChannel*> cdrom(unsigned drive) const;

    BusMaster& m_memory;
    IdeIoTracker m_io;
    std::array<std::unique_ptr<ide::IdeChannel>, kChannels> m_channels;
    std::array<mem::MemoryRegion::Ptr, kChannels> m_command_regions;
    std::array<mem::MemoryRegion::Ptr, kChannels> m_control_regions;
};

} // namespace emu::devices
