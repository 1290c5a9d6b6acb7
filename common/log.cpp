#include "common/log.h"

#include <atomic>
#include <cstdio>
#include <mutex>
#include <string>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

namespace emu {

namespace {
std::atomic<int> g_level{static_cast<int>(LogLevel::Warn)};
std::mutex g_mutex;

const char* level_name(LogLevel level)
{
    switch (level) {
    case LogLevel::Error:
        return "error";
    case LogLevel::Warn:
        return "warning";
    case LogLevel::Info:
        return "info";
    case LogLevel::Debug:
        return "debug";
    }
    return "?";
}
} // namespace

void set_log_level(LogLevel level) { g_level = static_cast<int>(level); }

LogLevel log_level() { return static_cast<LogLevel>(g_level.load(std::memory_order_relaxed)); }

bool parse_log_level(std::string_view text, LogLevel& out)
{
    static constexpr std::pair<std::string_view, LogLevel> names[] = {
        {"error", LogLevel::Error}, {"warn", LogLevel::Warn}, {"warning", LogLevel::Warn},
        {"info", LogLevel::Info},   {"debug", LogLevel::Debug},
    };
    for (auto& [name, level] : names) {
        if (text == name) {
            out = level;
            return true;
        }
    }
    return false;
}

void log_write(LogLevel level, std::string_view message)
{
    struct timeval tv;
    gettimeofday(&tv, nullptr);
    struct tm tm;
    localtime_r(&tv.tv_sec, &tm);
    char stamp[32];
    strftime(stamp, sizeof stamp, "%H:%M:%S", &tm);
    std::string line = fmt::format("{}.{:03d} emud[{}] {}: {}\n", stamp, int(tv.tv_usec / 1000),
                                   getpid(), level_name(level), message);
    std::lock_guard lock(g_mutex);
    fwrite(line.data(), 1, line.size(), stderr);
}

} // namespace emu
