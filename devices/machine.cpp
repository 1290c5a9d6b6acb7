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
