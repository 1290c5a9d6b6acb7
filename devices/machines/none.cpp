// devices/machines/none.cpp — machine 'none': no CPU, no devices, as QEMU's
// -machine none that management stacks use to probe the emulator.
#include "devices/machines/none.h"

namespace emu::devices {

namespace {

class NoneMachine final : public Machine {
public:
    void resume() override {}
    void pause() override {}
    void reset() override {}
    void powerdown() override {} // no ACPI: the button press reaches nobody
    std::vector<CpuInfo> cpus() const override { return {}; }
};

} // namespace

MachineClass none_machine_class()
{
    MachineClass mc;
    mc.name = "none";
    mc.description = "empty machine";
    mc.max_cpus = 1;
    mc.create = [](const MachineConfig& config,
                   MachineHost&) -> std::expected<std::unique_ptr<Machine>, std::string> {
        if (!config.props.empty())
            return std::unexpected("Property 'none-machine." + config.props.begin()->first + "' not found");
        if (!config.kernel.empty())
            return std::unexpected("machine 'none' has no firmware and cannot load a kernel");
        if (config.cpus > 1)
            return std::unexpected("Invalid SMP CPUs " + std::to_string(config.cpus) +
                                   ". The max CPUs supported by machine 'none' is 1");
        return std::make_unique<NoneMachine>();
    };
    return mc;
}

} // namespace emu::devices
