// devices/ide/piix_ide.cpp — the PIIX3 IDE PCI function: configuration
// space (82371SB datasheet, function 1), legacy ports, BAR4 bus-master
// registers, and the media API forwarded to the channels.
#include "devices/ide/piix_ide.h"

#include "devices/bus_master.h"
#include "devices/ide/channel.h"
#include "storage/backend.h"

#include <cassert>
#include <fmt/format.h>

namespace emu::devices {

namespace {

std::unexpected<IdeError> ide_fail(std::string message) { return std::unexpected(IdeError{std::move(message)}); }

} // namespace

IdeResult<std::unique_ptr<PiixIde>> PiixIde::create(BusMaster& memory, PiixIdeConfig config)
{
    for (unsigned i = 0; i < kDrives; ++i) {
        const IdeDriveConfig& d = config.drives[i];
        std::string name = d.id.empty() ? fmt::format("IDE drive {} (bus {}, unit {})", i, i / 2, i % 2) : d.id;
        if (d.kind != IdeDriveKind::Disk)
            continue;
        if (!d.backend)
            return ide_fail(fmt::format("{}: a disk needs an image", name));
        if (d.backend->size() < 512)
            return ide_fail(fmt::format("{}: the image has {} bytes, less than one sector", name, d.backend->size()));
        bool any = d.cylinders || d.heads || d.sectors;
        if (any &&
            (d.cylinders < 1 || d.cylinders > 65535 || d.heads < 1 || d.heads > 16 || d.sectors < 1 || d.sectors > 255))
            return ide_fail(fmt::format("{}: geometry {}/{}/{} is not cylinders 1-65535, heads 1-16, sectors 1-255",
                                        name, d.cylinders, d.heads, d.sectors));
    }
    return std::unique_ptr<PiixIde>(new PiixIde(memory, std::move(config)));
}

PiixIde::PiixIde(BusMaster& memory, PiixIdeConfig config)
    : PciDevice("piix3-ide", PciId{.vendor = 0x8086, .device = 0x7010, .revision = 0x00, .class_code = 0x010180}),
      m_memory(memory)
{
    init_config16(pci::kCommand, 0, pci::kCommandIo | pci::kCommandMaster);
    init_config16(pci::kStatus, 0x0280, 0, 0x3800); // fast back-to-back, DEVSEL medium; aborts are write-1-to-clear
    init_config16(kIdetim, 0, 0xf3ff);
    init_config16(kIdetim + 2, 0, 0xf3ff);
    init_config8(kSidetim, 0, 0xff);

    mem::IoOps bm;
    bm.read = [this](uint64_t off, unsigned size) { return bm_read(off, size); };
    bm.write = [this](uint64_t off, uint64_t v, unsigned size) { bm_write(off, v, size); };
    bm.min_access = 1;
    bm.max_access = 4;
    auto region = mem::MemoryRegion::io("piix3-ide-bmdma", 16, std::move(bm));
    assert(region.has_value());
    register_bar(kBmBar, PciBarKind::Io, std::move(*region));

    for (int c = 0; c < kChannels; ++c) {
        ide::IdeContext context{m_memory, m_io, [this] { return config16(pci::kCommand) & pci::kCommandMaster; }};
        std::array<IdeDriveConfig, 2> drives{std::move(config.drives[size_t(2 * c)]),
                                             std::move(config.drives[size_t(2 * c + 1)])};
        m_channels[size_t(c)] = std::make_unique<ide::IdeChannel>(c, std::move(context), std::move(drives));
        ide::IdeChannel* channel = m_channels[size_t(c)].get();

        mem::IoOps cmd;
        cmd.read = [channel](uint64_t off, unsigned size) { return channel->read_command(off, size); };
        cmd.write = [channel](uint64_t off, uint64_t v, unsigned size) { channel->write_command(off, v, size); };
        cmd.min_access = 1;
        cmd.max_access = 4;
        auto cr = mem::MemoryRegion::io(fmt::format("ide{}-cmd", c), 8, std::move(cmd));
        assert(cr.has_value());
        m_command_regions[size_t(c)] = std::move(*cr);

        mem::IoOps ctl;
        ctl.read = [channel](uint64_t, unsigned) { return uint64_t(channel->read_alt_status()); };
        ctl.write = [channel](uint64_t, uint64_t v, unsigned) { channel->write_device_control(uint8_t(v)); };
        ctl.min_access = ctl.max_access = 1;
        auto ctlr = mem::MemoryRegion::io(fmt::format("ide{}-ctl", c), 1, std::move(ctl));
        assert(ctlr.has_value());
        m_control_regions[size_t(c)] = std::move(*ctlr);
    }
}

PiixIde::~PiixIde()
{
    // Completions still to come would run into a destroyed device.
    m_io.wait_idle();
}

mem::Result<void> PiixIde::attach(mem::MemoryRegion& port_root)
{
    for (int c = 0; c < kChannels; ++c) {
        if (auto r = port_root.add_subregion(*m_command_regions[size_t(c)], kCommandPorts[c]); !r)
            return r;
        if (auto r = port_root.add_subregion(*m_control_regions[size_t(c)], kControlPorts[c]); !r)
            return r;
    }
    return {};
}

IrqLine& PiixIde::irq(int channel) { return m_channels[size_t(channel) & 1]->irq(); }

void PiixIde::firmware_setup()
{
    config_write(kIdetim, 0x8000, 2);
    config_write(kIdetim + 2, 0x8000, 2);
}

uint64_t PiixIde::bm_read(uint64_t offset, unsigned size)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < size; ++i) {
        uint64_t at = offset + i;
        v |= uint64_t(m_channels[(at >> 3) & 1]->bm_read(unsigned(at & 7))) << 8 * i;
    }
    return v;
}

void PiixIde::bm_write(uint64_t offset, uint64_t value, unsigned size)
{
    // PRD address bytes first, so that a dword write never starts the engine
    // on a half-written table address.
    for (unsigned i = size; i-- > 0;) {
        uint64_t at = offset + i;
        m_channels[(at >> 3) & 1]->bm_write(unsigned(at & 7), uint8_t(value >> 8 * i));
    }
}

void PiixIde::device_reset()
{
    for (auto& channel : m_channels)
        channel->reset();
}

// ---- media -----------------------------------------------------------------

IdeResult<ide::IdeChannel*> PiixIde::cdrom(unsigned drive) const
{
    if (drive >= unsigned(kDrives))
        return ide_fail(fmt::format("piix3-ide: there is no IDE drive {}", drive));
    ide::IdeChannel* channel = m_channels[drive / 2].get();
    const ide::DriveRuntime& rt = channel->runtime(drive % 2);
    if (rt.config.kind != IdeDriveKind::Cdrom)
        return ide_fail(fmt::format("{}: not a CD-ROM drive (no removable medium)", rt.id));
    return channel;
}

IdeResult<void> PiixIde::open_tray(unsigned drive, bool force)
{
    auto c = cdrom(drive);
    if (!c)
        return std::unexpected(c.error());
    return (*c)->open_tray(drive % 2, force);
}

IdeResult<void> PiixIde::close_tray(unsigned drive)
{
    auto c = cdrom(drive);
    if (!c)
        return std::unexpected(c.error());
    return (*c)->close_tray(drive % 2);
}

IdeResult<void> PiixIde::set_medium(unsigned drive, storage::BlockBackend* medium)
{
    auto c = cdrom(drive);
    if (!c)
        return std::unexpected(c.error());
    return (*c)->set_medium(drive % 2, medium);
}

IdeResult<void> PiixIde::eject(unsigned drive, bool force)
{
    if (auto r = open_tray(drive, force); !r)
        return r;
    return set_medium(drive, nullptr);
}

IdeResult<void> PiixIde::insert(unsigned drive, storage::BlockBackend* medium)
{
    if (auto r = open_tray(drive, false); !r)
        return r;
    if (auto r = set_medium(drive, medium); !r)
        return r;
    return close_tray(drive);
}

bool PiixIde::tray_open(unsigned drive) const
{
    return drive < unsigned(kDrives) && m_channels[drive / 2]->state().drives[drive % 2].tray_open;
}

bool PiixIde::tray_locked(unsigned drive) const
{
    return drive < unsigned(kDrives) && m_channels[drive / 2]->state().drives[drive % 2].locked;
}

storage::BlockBackend* PiixIde::medium(unsigned drive) const
{
    return drive < unsigned(kDrives) ? m_channels[drive / 2]->runtime(drive % 2).backend : nullptr;
}

// ---- errors, statistics, drain -----------------------------------------------------

void PiixIde::resume_after_error()
{
    for (auto& channel : m_channels)
        channel->resume_after_error();
}

bool PiixIde::io_stopped(unsigned drive) const
{
    return drive < unsigned(kDrives) && m_channels[drive / 2]->state().drives[drive % 2].io_stopped;
}

IdeBlockStats PiixIde::stats(unsigned drive) const
{
    return drive < unsigned(kDrives) ? m_channels[drive / 2]->runtime(drive % 2).stats : IdeBlockStats{};
}

void PiixIde::drain() { m_io.wait_idle(); }

std::string PiixIde::dump() const
{
    std::string out = PciDevice::dump();
    for (int c = 0; c < kChannels; ++c)
        out += dump_state(ide::IdeChannelState::fields(), &m_channels[size_t(c)]->state(), fmt::format("ide{}.", c));
    return out;
}

} // namespace emu::devices
