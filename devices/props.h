// devices/props.h — typed reading of a -device entry's properties (strings,
// as the command line and device_add give them), with QEMU's spellings:
// numbers in decimal or 0x-hex, booleans as on/off/true/false/yes/no.
// Errors name the device and the property:
//   "virtio-blk-pci: property 'num-queues' has an invalid value 'x'".
#pragma once

#include "devices/machine.h"

#include <cstdint>
#include <expected>
#include <string>

namespace emu::devices {

class DeviceProps {
public:
    explicit DeviceProps(const DeviceConfig& device) : m_device(device) {}

    bool has(const std::string& name) const { return m_device.props.count(name) != 0; }
    std::string str(const std::string& name, const std::string& fallback = {}) const;
    std::expected<uint64_t, std::string> number(const std::string& name, uint64_t fallback, uint64_t max) const;
    std::expected<bool, std::string> boolean(const std::string& name, bool fallback) const;
    // The device's id, or `fallback`.
    std::string id(const std::string& fallback) const { return str("id", fallback); }
    std::string invalid(const std::string& name, const std::string& why = {}) const;

private:
    const DeviceConfig& m_device;
};

} // namespace emu::devices
