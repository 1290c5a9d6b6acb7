#include "devices/props.h"

#include <charconv>

namespace emu::devices {

std::string DeviceProps::str(const std::string& name, const std::string& fallback) const
{
    auto it = m_device.props.find(name);
    return it == m_device.props.end() ? fallback : it->second;
}

std::string DeviceProps::invalid(const std::string& name, const std::string& why) const
{
    std::string out = m_device.driver + ": property '" + name + "' has an invalid value '" + str(name) + "'";
    return why.empty() ? out : out + " (" + why + ")";
}

std::expected<uint64_t, std::string> DeviceProps::number(const std::string& name, uint64_t fallback,
                                                         uint64_t max) const
{
    auto it = m_device.props.find(name);
    if (it == m_device.props.end())
        return fallback;
    std::string_view text = it->second;
    int base = 10;
    if (text.starts_with("0x") || text.starts_with("0X")) {
        text.remove_prefix(2);
        base = 16;
    }
    uint64_t value = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value, base);
    if (ec != std::errc() || end != text.data() + text.size() || text.empty())
        return std::unexpected(invalid(name));
    if (value > max)
        return std::unexpected(invalid(name, "at most " + std::to_string(max)));
    return value;
}

std::expected<bool, std::string> DeviceProps::boolean(const std::string& name, bool fallback) const
{
    auto it = m_device.props.find(name);
    if (it == m_device.props.end())
        return fallback;
    const std::string& v = it->second;
    if (v == "on" || v == "true" || v == "yes")
        return true;
    if (v == "off" || v == "false" || v == "no")
        return false;
    return std::unexpected(invalid(name, "use on or off"));
}

} // namespace emu::devices
