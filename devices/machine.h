// devices/machine.h — machine types and the interface a running machine
// offers to the VM that hosts it.
//
// The daemon knows machines only through this header: it creates one from a
// MachineConfig, drives it with start/pause/reset/powerdown, and receives
// guest-initiated requests through MachineHost.
#pragma once

#include "devices/block_device.h"

#include <cstdint>
#include <expected>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace emu::storage {
class BlockBackend;
}

namespace emu::devices {

// Why a machine asks to be shut down or reset (QMP ShutdownCause).
enum class ShutdownCause { None, HostError, HostQmpQuit, HostQmpSystemReset, HostSignal, HostUi,
                           GuestShutdown, GuestReset, GuestPanic, SubsystemReset, SnapshotLoad };
const char* shutdown_cause_name(ShutdownCause cause);

// Implemented by the VM; may be called from any of the machine's threads.
class MachineHost {
public:
    virtual ~MachineHost() = default;
    virtual void request_shutdown(ShutdownCause cause) = 0;
    virtual void request_reset(ShutdownCause cause) = 0;
    // The machine cannot go on (an emulation failure, a broken invariant in
    // guest-reachable state): the VM stops in 'internal-error'.
    virtual void report_internal_error(const std::string& reason) = 0;
    // The guest asked the emulator to exit with a status (isa-debug-exit):
    // the VM ends and whoever started it sees `status`.
    virtual void request_exit(int status) = 0;
    // A disk device's request failed (BLOCK_IO_ERROR); with `stopping` the
    // request is parked and the VM should stop until `cont`.
    virtual void block_io_error(const BlockIoError& error) {}
    // A removable drive's tray opened or closed (DEVICE_TRAY_MOVED).
    virtual void tray_moved(const std::string& drive, const std::string& qdev, bool open) {}
};

class CharBackend;

// One -device: the driver and its properties ("isa-debug-exit", {iobase: 0xf4}).
struct DeviceConfig {
    std::string driver;
    std::map<std::string, std::string> props;
};

struct MachineConfig {
    std::string type;
    std::map<std::string, std::string> props;
    std::string accel;   // "tcg" or "kvm", already chosen
    bool tcg_single_thread = false; // -accel tcg,thread=single: one vCPU runs at a time
    std::string cpu_model;
    int cpus = 1;
    uint64_t ram_size = 128ull << 20;
    std::string kernel, initrd, append;
    // Serial ports COM1.. in order; nullptr: the port exists, unconnected.
    std::vector<CharBackend*> serials;
    // The VM's character backends by chardev id, for devices with a
    // 'chardev' property (isa-debugcon).
    std::map<std::string, CharBackend*> chardevs;
    // The VM's drives by id, for devices with a 'drive' property.
    std::map<std::string, DriveConfig> drives;
    std::vector<DeviceConfig> devices;
    std::string rtc_base = "utc", rtc_clock = "host";
};

struct CpuInfo {
    int index = 0;
    int64_t thread_id = 0; // host tid of the vCPU thread
    std::string qom_path;
    int socket_id = 0, core_id = 0, thread_index = 0;
};

// One vCPU's state at a moment (query-cpus, `info registers`).
struct CpuDump {
    uint64_t pc = 0;      // CS base + RIP: the linear address of the next instruction
    bool halted = false;  // in HLT (or waiting for a start-up IPI)
    std::string registers; // `info registers` text
};

class Machine {
public:
    virtual ~Machine() = default;
    // Starts or resumes the vCPUs.
    virtual void resume() = 0;
    // Stops the vCPUs; returns once none runs guest code.
    virtual void pause() = 0;
    // Resets every device and vCPU to its power-on state.
    virtual void reset() = 0;
    // Presses the ACPI power button (the guest decides what to do).
    virtual void powerdown() = 0;
    virtual std::vector<CpuInfo> cpus() const = 0;
    // Stops vCPU `index` for a moment (if it runs) and reads its state;
    // nullopt if there is no such vCPU.
    virtual std::optional<CpuDump> dump_cpu(int index) { return std::nullopt; }
    // Guest physical memory for pmemsave and `xp`: RAM and ROM only (device
    // registers are not read behind the guest's back); false where none.
    virtual bool read_physical(uint64_t gpa, void* buf, uint64_t len) { return false; }
    // `info lapic`: the local APIC of vCPU `index` and its thread's state.
    virtual std::optional<std::string> dump_lapic(int index) { return std::nullopt; }
    // Runs `fn` with the machine's device lock held (chardev input reaching
    // a device from the daemon's loop).
    virtual void with_devices(const std::function<void()>& fn) { fn(); }

    // Disk devices, for query-block and query-blockstats.
    virtual std::vector<BlockDeviceInfo> block_devices() { return {}; }
    // After `cont`: requests parked by werror/rerror=stop are retried.
    virtual void resume_block_requests() {}
    // The drive's image changed size (block_resize): the device tells the guest.
    virtual void drive_resized(const std::string& drive) {}
    // Waits for the disks' requests in flight (before the drives are closed).
    virtual void drain_block_devices() {}
    // Removable drives (ide-cd): eject the medium (a tray the guest locked
    // refuses unless forced), or insert another one (nullptr: none).
    virtual std::expected<void, std::string> eject_medium(const std::string& drive, bool force)
    {
        return std::unexpected("Device '" + drive + "' not found");
    }
    virtual std::expected<void, std::string> change_medium(const std::string& drive, storage::BlockBackend* medium)
    {
        return std::unexpected("Device '" + drive + "' not found");
    }
};

struct MachineClass {
    std::string name;
    std::string alias;
    std::string description;
    int max_cpus = 1;
    bool is_default = false;
    bool hotpluggable_cpus = false;
    bool acpi = false;
    std::string default_cpu_type;
    std::function<std::expected<std::unique_ptr<Machine>, std::string>(const MachineConfig&, MachineHost&)> create;
};

// A device model -device accepts, with its properties (-device NAME,help).
struct DevicePropertyInfo {
    std::string name, type, description, default_value; // default_value empty: none
};
struct DeviceTypeInfo {
    std::string name;
    std::string parent; // "isa-device", "pci-device"
    std::string description;
    std::vector<DevicePropertyInfo> props;
};
const std::vector<DeviceTypeInfo>& device_types();
const DeviceTypeInfo* find_device_type(const std::string& name);

// Every machine type, in the order -machine help lists them.
const std::vector<MachineClass>& machine_classes();
const MachineClass* find_machine_class(const std::string& name_or_alias);

} // namespace emu::devices
