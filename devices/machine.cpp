#include "devices/machine.h"

#include "devices/machines/none.h"

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
        list.push_back(none_machine_class());
        // With no other machine yet, 'none' is the default.
        list.back().is_default = true;
        return list;
    }();
    return classes;
}

const MachineClass* find_machine_class(const std::string& name_or_alias)
{
    for (auto& mc : machine_classes())
        if (mc.name == name_or_alias || (!mc.alias.empty() && mc.alias == name_or_alias))
            return &mc;
    return nullptr;
}

} // namespace emu::devices
