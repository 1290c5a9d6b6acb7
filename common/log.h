// common/log.h — leveled logging shared by every layer.
//
// Messages name the object and the cause ("vm0: machine 'foo' is unknown").
// The sink is stderr (journald picks it up under systemd) and is thread-safe.
#pragma once

#include <fmt/format.h>
#include <string_view>

namespace emu {

enum class LogLevel { Error = 0, Warn = 1, Info = 2, Debug = 3 };

void set_log_level(LogLevel level);
LogLevel log_level();
// Parses "error", "warn", "info", "debug"; returns false on anything else.
bool parse_log_level(std::string_view text, LogLevel& out);
void log_write(LogLevel level, std::string_view message);

template <class... Args>
void log(LogLevel level, fmt::format_string<Args...> fmt, Args&&... args)
{
    if (level > log_level())
        return;
    log_write(level, fmt::format(fmt, std::forward<Args>(args)...));
}

template <class... Args>
void log_error(fmt::format_string<Args...> fmt, Args&&... args)
{
    log(LogLevel::Error, fmt, std::forward<Args>(args)...);
}
template <class... Args>
void log_warn(fmt::format_string<Args...> fmt, Args&&... args)
{
    log(LogLevel::Warn, fmt, std::forward<Args>(args)...);
}
template <class... Args>
void log_info(fmt::format_string<Args...> fmt, Args&&... args)
{
    log(LogLevel::Info, fmt, std::forward<Args>(args)...);
}
template <class... Args>
void log_debug(fmt::format_string<Args...> fmt, Args&&... args)
{
    log(LogLevel::Debug, fmt, std::forward<Args>(args)...);
}

} // namespace emu
