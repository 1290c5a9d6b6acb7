// devices/machines/pc_disks.h — the disk devices of machine 'pc': the
// controllers and disks the daemon's drives attach to, created from -device
// entries: virtio-blk-pci,drive=ID (one PCI function each) and
// ide-hd/ide-cd,drive=ID,bus=ide.N,unit=M (drives of the PIIX3 IDE function
// at 00:01.1, which a 'pc' always has, as QEMU's).
//
// PcDisks owns the devices and knows which drive each one serves, so that the
// machine can answer query-block/query-blockstats, pass a resize on, retry
// requests parked by werror/rerror=stop, and drain I/O before a reset or its
// own destruction. Everything but drain() runs under the machine's device
// lock; drain() must run without it (completions take that lock).
#pragma once

#include "devices/block_device.h"
#include "devices/bus_master.h"
#include "devices/machine.h"
#include "engine/irq.h"
#include "engine/memory/region.h"

#include <array>
#include <expected>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace emu::devices {

class PciBus;
class PiixIde;
class VirtioBlk;

class PcDisks {
public:
    struct Wiring {
        PciBus& pci;
        BusMaster& memory;
        std::function<void(uint64_t address, uint32_t data)> msi;
        MachineHost& host;
        const std::map<std::string, DriveConfig>& drives;
        std::function<IrqLine::Sink(int isa_irq)> isa_irq;
    };
    explicit PcDisks(Wiring wiring);
    ~PcDisks(); // the devices drain: not under the device lock

    // -device virtio-blk-pci,… / ide-hd,… / ide-cd,…
    bool handles(const std::string& driver) const;
    std::expected<void, std::string> add(const DeviceConfig& device);
    // After the last add(): creates the IDE function with its drives and
    // maps its ports into `port_root`.
    std::expected<void, std::string> finish(mem::MemoryRegion& port_root);
    // On every reset, after the PCI bus's: what firmware sets up.
    void firmware_setup();

    // Removable media (ide-cd), by drive id.
    std::expected<void, std::string> eject(const std::string& drive, bool force);
    std::expected<void, std::string> change(const std::string& drive, storage::BlockBackend* medium);

    std::vector<BlockDeviceInfo> infos() const;
    void resume_parked();
    void resized(const std::string& drive);
    void drain();

private:
    struct Disk {
        std::string drive;
        std::string qdev;
        std::unique_ptr<VirtioBlk> virtio;
        int ide = -1; // IDE drive 0-3 (primary master .. secondary slave)
        bool cdrom = false;
        bool failed = false; // the last request failed (io-status)
        bool nospace = false;
    };
    std::expected<void, std::string> add_virtio_blk(const DeviceConfig& device);
    std::expected<void, std::string> add_ide(const DeviceConfig& device);
    std::expected<Disk*, std::string> new_disk(const DeviceConfig& device, DriveConfig& drive);
    Disk* find(const std::string& drive) const;
    void report_error(Disk& disk, BlockErrorAction action, bool is_read, int error, bool stopping);
    std::expected<uint8_t, std::string> pci_slot(const DeviceConfig& device, const std::string& what) const;

    Wiring m_wiring;
    std::vector<std::unique_ptr<Disk>> m_disks;
    std::array<Disk*, 4> m_ide_disks{};
    std::array<DriveConfig, 4> m_ide_drives{};
    std::unique_ptr<PiixIde> m_ide; // after the disks: destroyed (drained) first
    int m_anonymous = 0; // for QOM-like names of devices without an id
};

} // namespace emu::devices
