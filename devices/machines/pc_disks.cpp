#include "devices/machines/pc_disks.h"

#include "devices/ide/piix_ide.h"
#include "devices/pci/pci.h"
#include "devices/props.h"
#include "devices/virtio/virtio_blk.h"
#include "storage/backend.h"

#include <cerrno>
#include <cstdio>

namespace emu::devices {

PcDisks::PcDisks(Wiring wiring) : m_wiring(std::move(wiring)) {}

PcDisks::~PcDisks() = default;

bool PcDisks::handles(const std::string& driver) const
{
    return driver == "virtio-blk-pci" || driver == "ide-hd" || driver == "ide-cd";
}

std::expected<void, std::string> PcDisks::add(const DeviceConfig& device)
{
    if (device.driver == "virtio-blk-pci")
        return add_virtio_blk(device);
    if (device.driver == "ide-hd" || device.driver == "ide-cd")
        return add_ide(device);
    return std::unexpected("'" + device.driver + "' is not a disk device");
}

PcDisks::Disk* PcDisks::find(const std::string& drive) const
{
    for (auto& d : m_disks)
        if (d->drive == drive)
            return d.get();
    return nullptr;
}

// The checks every disk device makes of its drive property.
std::expected<PcDisks::Disk*, std::string> PcDisks::new_disk(const DeviceConfig& device, DriveConfig& drive)
{
    DeviceProps props(device);
    std::string drive_id = props.str("drive");
    if (drive_id.empty())
        return std::unexpected(device.driver + ": drive property not set");
    auto it = m_wiring.drives.find(drive_id);
    if (it == m_wiring.drives.end())
        return std::unexpected(device.driver + ": drive '" + drive_id + "' not found");
    if (Disk* other = find(drive_id))
        return std::unexpected(device.driver + ": drive '" + drive_id + "' is already in use by '" + other->qdev +
                               "'");
    drive = it->second;
    auto disk = std::make_unique<Disk>();
    disk->drive = drive_id;
    disk->qdev = props.id("/machine/peripheral-anon/device[" + std::to_string(m_anonymous++) + "]");
    m_disks.push_back(std::move(disk));
    return m_disks.back().get();
}

void PcDisks::report_error(Disk& disk, BlockErrorAction action, bool is_read, int error, bool stopping)
{
    BlockIoError e;
    e.drive = disk.drive;
    e.qdev = disk.qdev;
    e.is_read = is_read;
    e.error = error;
    e.stopping = stopping;
    e.action = action;
    if (stopping) { // QEMU's io-status tracks the errors that stop the VM
        disk.failed = true;
        disk.nospace = error == ENOSPC;
    }
    m_wiring.host.block_io_error(e);
}

// ide-hd / ide-cd: bus=ide.0|ide.1, unit=0|1 (else the first free place).
std::expected<void, std::string> PcDisks::add_ide(const DeviceConfig& device)
{
    DeviceProps props(device);
    if (m_ide)
        return std::unexpected(device.driver + ": the IDE controller is complete already");
    int bus = -1;
    if (props.has("bus")) {
        std::string b = props.str("bus");
        if (b != "ide.0" && b != "ide.1")
            return std::unexpected(device.driver + ": Bus '" + b + "' not found (IDE buses: ide.0, ide.1)");
        bus = b[4] - '0';
    }
    auto unit = props.number("unit", ~0ull, 1);
    if (!unit)
        return std::unexpected(unit.error());
    int slot = -1;
    for (int b = 0; b < 2 && slot < 0; b++)
        for (int u = 0; u < 2 && slot < 0; u++)
            if ((bus < 0 || b == bus) && (*unit == ~0ull || int(*unit) == u) && !m_ide_disks[size_t(b * 2 + u)])
                slot = b * 2 + u;
    if (slot < 0)
        return std::unexpected(device.driver + ": no free IDE unit" +
                               (bus >= 0 ? " on ide." + std::to_string(bus) : std::string()));
    DriveConfig drive;
    auto disk = new_disk(device, drive);
    if (!disk)
        return std::unexpected(disk.error());
    bool cdrom = device.driver == "ide-cd";
    if (!cdrom && !drive.backend)
        return std::unexpected("ide-hd: drive '" + (*disk)->drive + "' has no medium (only ide-cd may be empty)");
    (*disk)->ide = slot;
    (*disk)->cdrom = cdrom;
    m_ide_disks[size_t(slot)] = *disk;
    m_ide_drives[size_t(slot)] = drive;
    auto serial = props.str("serial", drive.serial);
    m_ide_drives[size_t(slot)].serial = serial;
    return {};
}

std::expected<void, std::string> PcDisks::finish(mem::MemoryRegion& port_root)
{
    PiixIdeConfig cfg;
    for (size_t i = 0; i < 4; i++) {
        Disk* disk = m_ide_disks[i];
        if (!disk)
            continue;
        const DriveConfig& drive = m_ide_drives[i];
        IdeDriveConfig& d = cfg.drives[i];
        d.kind = disk->cdrom ? IdeDriveKind::Cdrom : IdeDriveKind::Disk;
        d.backend = drive.backend;
        d.id = disk->drive;
        d.serial = drive.serial;
        d.rerror = drive.rerror;
        d.werror = drive.werror;
        d.on_io_error = [this, disk, rerror = drive.rerror, werror = drive.werror](bool is_read, int err,
                                                                                  bool stopping) {
            report_error(*disk, is_read ? rerror : werror, is_read, err, stopping);
        };
        d.on_tray_moved = [this, disk](bool open) { m_wiring.host.tray_moved(disk->drive, disk->qdev, open); };
    }
    auto ide = PiixIde::create(m_wiring.memory, std::move(cfg));
    if (!ide)
        return std::unexpected("piix3-ide: " + ide.error().message);
    if (auto ok = m_wiring.pci.plug(**ide, PiixIde::kDevfn); !ok)
        return std::unexpected("piix3-ide: " + ok.error().message);
    if (auto ok = (*ide)->attach(port_root); !ok)
        return std::unexpected("piix3-ide: " + ok.error().message);
    for (int channel = 0; channel < PiixIde::kChannels; channel++)
        (*ide)->irq(channel).connect(m_wiring.isa_irq(PiixIde::kIsaIrqs[channel]));
    m_ide = std::move(*ide);
    return {};
}

void PcDisks::firmware_setup()
{
    if (m_ide)
        m_ide->firmware_setup();
}

std::expected<void, std::string> PcDisks::eject(const std::string& drive, bool force)
{
    Disk* disk = find(drive);
    if (!disk)
        return std::unexpected("Device '" + drive + "' not found");
    if (!disk->cdrom)
        return std::unexpected("Device '" + drive + "' is not removable");
    if (auto ok = m_ide->eject(unsigned(disk->ide), force); !ok)
        return std::unexpected(ok.error().message);
    return {};
}

std::expected<void, std::string> PcDisks::change(const std::string& drive, storage::BlockBackend* medium)
{
    Disk* disk = find(drive);
    if (!disk)
        return std::unexpected("Device '" + drive + "' not found");
    if (!disk->cdrom)
        return std::unexpected("Device '" + drive + "' is not removable");
    if (auto ok = m_ide->insert(unsigned(disk->ide), medium); !ok)
        return std::unexpected(ok.error().message);
    return {};
}

// `addr=SLOT[.FN]` (hex, as QEMU), else the first free slot from 2.
std::expected<uint8_t, std::string> PcDisks::pci_slot(const DeviceConfig& device, const std::string& what) const
{
    DeviceProps props(device);
    if (props.has("addr")) {
        std::string text = props.str("addr");
        unsigned slot = 0, fn = 0;
        char dot = 0;
        int n = std::sscanf(text.c_str(), "%x%c%x", &slot, &dot, &fn);
        if ((n != 1 && !(n == 3 && dot == '.')) || slot > 31 || fn > 7)
            return std::unexpected(props.invalid("addr", "use SLOT or SLOT.FUNCTION in hex"));
        uint8_t devfn = pci::devfn(slot, fn);
        if (m_wiring.pci.device(devfn))
            return std::unexpected(what + ": PCI address " + text + " is in use");
        return devfn;
    }
    for (unsigned slot = 2; slot < 32; slot++)
        if (!m_wiring.pci.device(pci::devfn(slot, 0)))
            return pci::devfn(slot, 0);
    return std::unexpected(what + ": no free PCI slot");
}

std::expected<void, std::string> PcDisks::add_virtio_blk(const DeviceConfig& device)
{
    DeviceProps props(device);
    std::string drive_id = props.str("drive");
    if (drive_id.empty())
        return std::unexpected("virtio-blk-pci: drive property not set");
    DriveConfig drive;
    auto made = new_disk(device, drive);
    if (!made)
        return std::unexpected(made.error());
    Disk* disk = *made;
    auto forget = [&](std::string error) -> std::expected<void, std::string> {
        m_disks.pop_back();
        return std::unexpected(std::move(error));
    };
    if (!drive.backend)
        return forget("virtio-blk-pci: drive '" + drive_id + "' has no medium (virtio-blk is not removable)");

    VirtioBlkConfig cfg;
    cfg.id = props.id(drive_id);
    cfg.drive = drive.backend;
    cfg.read_only = drive.read_only;
    cfg.rerror = drive.rerror;
    cfg.werror = drive.werror;
    cfg.serial = props.str("serial", drive.serial);
    struct Num {
        const char* name;
        uint64_t max;
        uint64_t* out;
    };
    uint64_t queues = cfg.num_queues, qsize = cfg.queue_size, lbs = cfg.logical_block_size,
             pbs = cfg.physical_block_size, min_io = cfg.min_io_size, opt_io = cfg.opt_io_size,
             granularity = cfg.discard_granularity, vectors = ~0ull;
    for (Num n : {Num{"num-queues", VirtioBlkConfig::kMaxQueues, &queues},
                  Num{"queue-size", VirtioBlkConfig::kMaxQueueSize, &qsize}, Num{"logical_block_size", 32768, &lbs},
                  Num{"physical_block_size", 32768, &pbs}, Num{"min_io_size", 0xffff, &min_io},
                  Num{"opt_io_size", 0xffffffff, &opt_io}, Num{"discard_granularity", 0xffffffff, &granularity},
                  Num{"vectors", 2048, &vectors}}) {
        auto v = props.number(n.name, *n.out, n.max);
        if (!v)
            return forget(v.error());
        *n.out = *v;
    }
    cfg.num_queues = uint16_t(queues);
    cfg.queue_size = uint16_t(qsize);
    cfg.logical_block_size = uint32_t(lbs);
    cfg.physical_block_size = uint32_t(pbs);
    cfg.min_io_size = uint32_t(min_io);
    cfg.opt_io_size = uint32_t(opt_io);
    cfg.discard_granularity = uint32_t(granularity);
    if (vectors != ~0ull)
        cfg.vectors = unsigned(vectors);
    struct Flag {
        const char* name;
        bool* out;
    };
    for (Flag f : {Flag{"write-cache", &cfg.write_cache}, Flag{"config-wce", &cfg.config_wce},
                   Flag{"disable-legacy", &cfg.disable_legacy}, Flag{"disable-modern", &cfg.disable_modern},
                   Flag{"event_idx", &cfg.event_idx}, Flag{"indirect_desc", &cfg.indirect_desc},
                   Flag{"discard", &cfg.discard}, Flag{"write-zeroes", &cfg.write_zeroes}}) {
        auto v = props.boolean(f.name, *f.out);
        if (!v)
            return forget(v.error());
        *f.out = *v;
    }
    auto devfn = pci_slot(device, "virtio-blk-pci");
    if (!devfn)
        return forget(devfn.error());
    auto dev = VirtioBlk::create(cfg, m_wiring.memory);
    if (!dev)
        return forget(dev.error().message);
    if (auto ok = m_wiring.pci.plug(**dev, *devfn); !ok)
        return forget("virtio-blk-pci: " + ok.error().message);
    (*dev)->set_msi_sink(m_wiring.msi);
    (*dev)->set_io_error_handler([this, disk, rerror = cfg.rerror, werror = cfg.werror](bool is_read, int error,
                                                                                       bool stopping) {
        report_error(*disk, is_read ? rerror : werror, is_read, error, stopping);
    });
    disk->virtio = std::move(*dev);
    return {};
}

std::vector<BlockDeviceInfo> PcDisks::infos() const
{
    std::vector<BlockDeviceInfo> out;
    for (auto& d : m_disks) {
        BlockDeviceInfo info;
        info.drive = d->drive;
        info.qdev = d->qdev;
        info.io_status = d->nospace ? "nospace" : d->failed ? "failed" : "ok";
        if (d->virtio)
            info.stats = d->virtio->stats();
        if (d->ide >= 0 && m_ide) {
            IdeBlockStats st = m_ide->stats(unsigned(d->ide));
            BlockStats& b = info.stats;
            auto copy = [](const IdeIoStats& from, uint64_t& ops, uint64_t& bytes, uint64_t& ns, uint64_t& failed,
                           uint64_t& invalid) {
                ops = from.operations;
                bytes = from.bytes;
                ns = from.total_time_ns;
                failed = from.failed;
                invalid = from.invalid;
            };
            uint64_t flush_bytes = 0;
            copy(st.read, b.rd_operations, b.rd_bytes, b.rd_total_time_ns, b.failed_rd_operations,
                 b.invalid_rd_operations);
            copy(st.write, b.wr_operations, b.wr_bytes, b.wr_total_time_ns, b.failed_wr_operations,
                 b.invalid_wr_operations);
            copy(st.flush, b.flush_operations, flush_bytes, b.flush_total_time_ns, b.failed_flush_operations,
                 b.invalid_flush_operations);
            copy(st.unmap, b.unmap_operations, b.unmap_bytes, b.unmap_total_time_ns, b.failed_unmap_operations,
                 b.invalid_unmap_operations);
            if (d->cdrom) {
                info.removable = info.has_tray = true;
                info.tray_open = m_ide->tray_open(unsigned(d->ide));
                info.locked = m_ide->tray_locked(unsigned(d->ide));
            }
        }
        out.push_back(std::move(info));
    }
    return out;
}

void PcDisks::resume_parked()
{
    for (auto& d : m_disks) {
        d->failed = d->nospace = false;
        if (d->virtio)
            d->virtio->resume_after_error();
    }
    if (m_ide)
        m_ide->resume_after_error();
}

void PcDisks::resized(const std::string& drive)
{
    for (auto& d : m_disks)
        if (d->drive == drive && d->virtio)
            d->virtio->capacity_changed();
}

void PcDisks::drain()
{
    for (auto& d : m_disks)
        if (d->virtio)
            d->virtio->drain();
    if (m_ide)
        m_ide->drain();
}

} // namespace emu::devices
