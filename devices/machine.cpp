#include "devices/machine.h"

#include "devices/machines/none.h"
#include "devices/machines/pc.h"

namespace emu::devices {

const char* shutdown_cause_name(ShutdownCause cause)
{
    switch (cause) {
    case ShutdownCause::None:
        return "none";
    case ShutdownCause::HostError:
        return "host-error";
    case ShutdownCause::HostQmpQuit:
        return "host-qmp-quit";
    case ShutdownCause::HostQmpSystemReset:
        return "host-qmp-system-reset";
    case ShutdownCause::HostSignal:
        return "host-signal";
    case ShutdownCause::HostUi:
        return "host-ui";
    case ShutdownCause::GuestShutdown:
        return "guest-shutdown";
    case ShutdownCause::GuestReset:
        return "guest-reset";
    case ShutdownCause::GuestPanic:
        return "guest-panic";
    case ShutdownCause::SubsystemReset:
        return "subsystem-reset";
    case ShutdownCause::SnapshotLoad:
        return "snapshot-load";
    }
    return "none";
}

const std::vector<MachineClass>& machine_classes()
{
    static const std::vector<MachineClass> classes = [] {
        std::vector<MachineClass> list;
        list.push_back(pc_machine_class());
        list.push_back(none_machine_class());
        return list;
    }();
    return classes;
}

const std::vector<DeviceTypeInfo>& device_types()
{
    static const std::vector<DeviceTypeInfo> types = {
        {"isa-debug-exit", "isa-device", "exits the emulator with (value << 1) | 1 when the guest writes value",
         {{"iobase", "uint32", "first I/O port", "1281"}, {"iosize", "uint32", "number of I/O ports", "2"}}},
        {"isa-debugcon", "isa-device", "debug console: bytes written to the port go to a chardev",
         {{"iobase", "uint32", "the I/O port", "233"},
          {"chardev", "str", "ID of a chardev to use as a backend", ""},
          {"readback", "uint32", "what a read of the port returns", "233"}}},
        {"virtio-blk-pci", "pci-device", "virtio block device (modern and transitional)",
         {{"drive", "str", "ID of a drive to use as the backend", ""},
          {"num-queues", "uint16", "number of request queues", "1"},
          {"queue-size", "uint16", "entries per queue (a power of two)", "256"},
          {"serial", "str", "serial number the guest reads (GET_ID)", ""},
          {"logical_block_size", "uint32", "logical block size in bytes", "512"},
          {"physical_block_size", "uint32", "physical block size in bytes", "512"},
          {"min_io_size", "uint16", "minimum I/O size in bytes", "0"},
          {"opt_io_size", "uint32", "optimal I/O size in bytes", "0"},
          {"discard_granularity", "uint32", "discard granularity in bytes", "512"},
          {"discard", "bool", "offer DISCARD", "on"},
          {"write-zeroes", "bool", "offer WRITE_ZEROES", "on"},
          {"write-cache", "bool", "writeback cache at reset", "on"},
          {"config-wce", "bool", "let the guest switch the write cache", "on"},
          {"disable-legacy", "bool", "no legacy (0.9) interface", "off"},
          {"disable-modern", "bool", "no modern (1.0) interface", "off"},
          {"event_idx", "bool", "VIRTIO_RING_F_EVENT_IDX", "on"},
          {"indirect_desc", "bool", "VIRTIO_RING_F_INDIRECT_DESC", "on"},
          {"vectors", "uint32", "MSI-X vectors (0: INTx only)", "num-queues + 1"},
          {"addr", "str", "PCI slot[.function] in hex", ""}}},
        {"ide-hd", "ide-device", "IDE disk on the PIIX3 controller",
         {{"drive", "str", "ID of a drive to use as the backend", ""},
          {"bus", "str", "ide.0 or ide.1", ""},
          {"unit", "uint32", "0 (master) or 1 (slave)", ""},
          {"serial", "str", "serial number (IDENTIFY)", ""}}},
        {"ide-cd", "ide-device", "IDE (ATAPI) CD-ROM on the PIIX3 controller",
         {{"drive", "str", "ID of a drive to use as the backend (may have no medium)", ""},
          {"bus", "str", "ide.0 or ide.1", ""},
          {"unit", "uint32", "0 (master) or 1 (slave)", ""},
          {"serial", "str", "serial number (IDENTIFY PACKET)", ""}}},
        {"pc-testdev", "isa-device",
         "test device of bare-metal test suites: scratch register at 0xe0, page flush at 0xe4, IRQ lines at "
         "0x2000, 64 KiB of scratch MMIO at 0xff000000",
         {}},
    };
    return types;
}

const DeviceTypeInfo* find_device_type(const std::string& name)
{
    for (auto& t : device_types())
        if (t.name == name)
            return &t;
    return nullptr;
}

const MachineClass* find_machine_class(const std::string& name_or_alias)
{
    for (auto& mc : machine_classes())
        if (mc.name == name_or_alias || (!mc.alias.empty() && mc.alias == name_or_alias))
            return &mc;
    return nullptr;
}

} // namespace emu::devices
