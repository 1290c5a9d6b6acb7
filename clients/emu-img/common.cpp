// clients/emu-img/common.cpp — helpers shared by the subcommands.
#include "clients/emu-img/common.h"

#include <cmath>
#include <cstdio>
#include <ctime>
#include <fmt/format.h>

namespace emu::img {

void error(const std::string& message)
{
    std::fflush(stdout);
    std::fprintf(stderr, "emu-img: %s\n", message.c_str());
}

std::optional<uint64_t> parse_size(const std::string& text)
{
    if (text.empty() || text[0] == '-' || text[0] == '+' || std::isspace(static_cast<unsigned char>(text[0])))
        return std::nullopt;
    size_t pos = 0;
    while (pos < text.size() && (std::isdigit(static_cast<unsigned char>(text[pos])) || text[pos] == '.'))
        pos++;
    std::string number = text.substr(0, pos);
    std::string suffix = text.substr(pos);
    if (number.empty() || std::count(number.begin(), number.end(), '.') > 1)
        return std::nullopt;
    int shift = 0;
    if (suffix.size() > 1)
        return std::nullopt;
    if (!suffix.empty()) {
        switch (suffix[0]) {
        case 'b': case 'B': shift = 0; break;
        case 'k': case 'K': shift = 10; break;
        case 'm': case 'M': shift = 20; break;
        case 'g': case 'G': shift = 30; break;
        case 't': case 'T': shift = 40; break;
        case 'p': case 'P': shift = 50; break;
        case 'e': case 'E': shift = 60; break;
        default: return std::nullopt;
        }
    }
    bool fraction = number.find('.') != std::string::npos;
    if (fraction && shift == 0)
        return std::nullopt;
    long double value = std::strtold(number.c_str(), nullptr);
    long double bytes = value * std::pow(2.0L, shift);
    if (bytes >= 18446744073709551616.0L)
        return std::nullopt;
    if (!fraction) {
        // Exact integer arithmetic where possible.
        errno = 0;
        unsigned long long n = std::strtoull(number.c_str(), nullptr, 10);
        if (errno == ERANGE || (shift && n > (UINT64_MAX >> shift)))
            return std::nullopt;
        return uint64_t(n) << shift;
    }
    return uint64_t(bytes);
}

std::string human_size(uint64_t bytes)
{
    static const char* units[] = {"", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"};
    int i = 0;
    // The largest unit that keeps the value at or above ~0.98 (1000/1024).
    while (i < 6 && double(bytes) / std::pow(1024.0, i + 1) >= 1000.0 / 1024.0)
        i++;
    double v = double(bytes) / std::pow(1024.0, i);
    return fmt::format("{:.3g} {}B", v, units[i]);
}

void Progress::show(uint64_t done, uint64_t total)
{
    if (!on)
        return;
    double pct = total ? double(done) * 100.0 / double(total) : 100.0;
    if (pct - last < 1.0 && pct < 100.0)
        return;
    last = pct;
    std::printf("    (%.2f/100%%)\r", pct);
    std::fflush(stdout);
}

void Progress::finish()
{
    if (on)
        std::printf("    (100.00/100%%)\n");
}

namespace {
std::string clock_text(uint64_t nsec)
{
    uint64_t ms = nsec / 1000000;
    return fmt::format("{:02}:{:02}:{:02}.{:03}", ms / 3600000, ms / 60000 % 60, ms / 1000 % 60, ms % 1000);
}
} // namespace

std::string snapshot_list_text(const std::vector<storage::SnapshotInfo>& snapshots)
{
    std::string out = "Snapshot list:\n";
    out += fmt::format("{:<10}{:<17}{:>8}{:>20}{:>13}{:>11}\n", "ID", "TAG", "VM SIZE", "DATE", "VM CLOCK", "ICOUNT");
    for (const auto& s : snapshots) {
        time_t t = time_t(s.date_sec);
        struct tm tm{};
        localtime_r(&t, &tm);
        char date[64];
        strftime(date, sizeof date, "%Y-%m-%d %H:%M:%S", &tm);
        out += fmt::format("{:<9} {:<16} {:>8}{:>20}{:>13}{:>11}\n", s.id, s.name, human_size(s.vm_state_size), date,
                           clock_text(s.vm_clock_nsec), s.icount ? std::to_string(*s.icount) : "");
    }
    return out;
}

bool parse_option_list(const std::string& text, OptionList& out, std::string& err)
{
    size_t pos = 0;
    while (pos <= text.size()) {
        std::string item;
        while (pos < text.size()) {
            if (text[pos] == ',') {
                if (pos + 1 < text.size() && text[pos + 1] == ',') {
                    item += ',';
                    pos += 2;
                    continue;
                }
                break;
            }
            item += text[pos++];
        }
        pos++;
        if (item.empty())
            continue;
        if (item == "help" || item == "?") {
            out.help = true;
            continue;
        }
        auto eq = item.find('=');
        if (eq == std::string::npos) {
            err = fmt::format("Invalid parameter '{}'", item);
            return false;
        }
        out.items.emplace_back(item.substr(0, eq), item.substr(eq + 1));
    }
    return true;
}

std::optional<bool> parse_bool(const std::string& text)
{
    if (text == "on" || text == "yes" || text == "true")
        return true;
    if (text == "off" || text == "no" || text == "false")
        return false;
    return std::nullopt;
}

storage::Result<std::unique_ptr<storage::BlockBackend>> open_backend(const std::string& filename, const OpenFlags& flags)
{
    storage::BackendOptions o;
    o.image.filename = filename;
    o.image.format = flags.format;
    o.image.read_only = flags.read_only;
    o.image.force_share = flags.force_share;
    o.image.open_backing = flags.open_backing;
    o.image.cache = flags.cache;
    return storage::BlockBackend::open(o);
}

storage::Result<ChainStatus> chain_status(storage::BlockDriver& top, uint64_t offset, uint64_t bytes)
{
    ChainStatus cs;
    storage::BlockDriver* layer = &top;
    int depth = 0;
    uint64_t len = bytes;
    while (true) {
        storage::BlockStatus st;
        if (offset >= layer->size()) {
            st.length = len;
            st.zero = true;
            st.allocated = false;
        } else {
            auto r = layer->block_status(offset, len);
            if (!r)
                return std::unexpected(r.error());
            st = *r;
            if (st.length == 0)
                st.length = len;
        }
        len = std::min(len, st.length);
        st.length = len;
        storage::BlockDriver* below = layer->backing();
        if (st.allocated || !below) {
            cs.status = st;
            cs.depth = depth;
            cs.layer = layer;
            return cs;
        }
        layer = below;
        depth++;
    }
}

} // namespace emu::img
