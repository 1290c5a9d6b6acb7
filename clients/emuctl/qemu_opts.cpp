// clients/emuctl/qemu_opts.cpp — QemuOpts-style option strings; see qemu_opts.h.
#include "clients/emuctl/qemu_opts.h"
#include "common/text.h"

#include <algorithm>
#include <cmath>

namespace emu::emuctl {

namespace {

bool is_digit(char c) { return c >= '0' && c <= '9'; }

// The multiplier for a size suffix, or 0 when C is not one.
uint64_t suffix_multiplier(char c)
{
    switch (c) {
    case 'b': case 'B': return 1;
    case 'k': case 'K': return uint64_t{1} << 10;
    case 'm': case 'M': return uint64_t{1} << 20;
    case 'g': case 'G': return uint64_t{1} << 30;
    case 't': case 'T': return uint64_t{1} << 40;
    case 'p': case 'P': return uint64_t{1} << 50;
    case 'e': case 'E': return uint64_t{1} << 60;
    default: return 0;
    }
}

} // namespace

std::vector<std::string> split_opt_items(std::string_view text)
{
    std::vector<std::string> items;
    std::string current;
    bool pending = false; // current holds an item that must be emitted
    for (size_t i = 0; i < text.size(); ++i) {
        char c = text[i];
        if (c != ',') {
            current += c;
            pending = true;
            continue;
        }
        if (i + 1 < text.size() && text[i + 1] == ',') {
            current += ',';
            pending = true;
            ++i;
            continue;
        }
        items.push_back(std::move(current));
        current.clear();
        pending = false;
    }
    if (pending)
        items.push_back(std::move(current));
    return items;
}

std::string escape_opt_value(std::string_view text)
{
    std::string out;
    out.reserve(text.size());
    for (char c : text) {
        out += c;
        if (c == ',')
            out += ',';
    }
    return out;
}

std::expected<bool, OptsError> parse_bool(std::string_view text)
{
    if (text == "on" || text == "yes" || text == "true")
        return true;
    if (text == "off" || text == "no" || text == "false")
        return false;
    return std::unexpected(OptsError{"'" + std::string(text) +
                                     "' is not a boolean (use on/off, yes/no or true/false)"});
}

std::expected<uint64_t, OptsError> parse_number(std::string_view text)
{
    auto invalid = [&] { return std::unexpected(OptsError{"invalid number '" + std::string(text) + "'"}); };
    uint64_t base = 10;
    std::string_view digits = text;
    if (digits.size() > 2 && digits[0] == '0' && (digits[1] == 'x' || digits[1] == 'X')) {
        base = 16;
        digits.remove_prefix(2);
    }
    if (digits.empty())
        return invalid();
    uint64_t value = 0;
    for (char c : digits) {
        int d = base == 16 ? hex_digit_value(c) : (is_digit(c) ? c - '0' : -1);
        if (d < 0)
            return invalid();
        if (__builtin_mul_overflow(value, base, &value) ||
            __builtin_add_overflow(value, static_cast<uint64_t>(d), &value))
            return std::unexpected(OptsError{"number '" + std::string(text) + "' is too large"});
    }
    return value;
}

std::expected<uint64_t, OptsError> parse_size(std::string_view text, uint64_t default_unit)
{
    auto invalid = [] { return std::unexpected(OptsError{"invalid size"}); };
    size_t pos = 0;
    uint64_t integral = 0;
    bool any_digit = false;
    while (pos < text.size() && is_digit(text[pos])) {
        if (__builtin_mul_overflow(integral, uint64_t{10}, &integral) ||
            __builtin_add_overflow(integral, static_cast<uint64_t>(text[pos] - '0'), &integral))
            return std::unexpected(OptsError{"size too large"});
        any_digit = true;
        ++pos;
    }
    long double fraction = 0;
    bool has_fraction = false;
    if (pos < text.size() && text[pos] == '.') {
        ++pos;
        long double scale = 0.1L;
        while (pos < text.size() && is_digit(text[pos])) {
            fraction += scale * (text[pos] - '0');
            scale /= 10;
            has_fraction = has_fraction || text[pos] != '0';
            any_digit = true;
            ++pos;
        }
    }
    if (!any_digit)
        return invalid();
    uint64_t unit = default_unit;
    if (pos < text.size()) {
        unit = suffix_multiplier(text[pos]);
        if (unit == 0 || pos + 1 != text.size())
            return invalid();
    } else if (has_fraction) {
        return invalid(); // "1.5" is ambiguous without a unit, as in QEMU
    }
    uint64_t bytes = 0;
    if (__builtin_mul_overflow(integral, unit, &bytes))
        return std::unexpected(OptsError{"size too large"});
    long double extra = std::floor(fraction * static_cast<long double>(unit));
    if (__builtin_add_overflow(bytes, static_cast<uint64_t>(extra), &bytes))
        return std::unexpected(OptsError{"size too large"});
    return bytes;
}

void QemuOpts::set(std::string_view key, std::string value)
{
    for (auto& entry : m_entries) {
        if (entry.first == key) {
            entry.second = std::move(value);
            return;
        }
    }
    m_entries.emplace_back(std::string(key), std::move(value));
}

bool QemuOpts::erase(std::string_view key)
{
    auto it = std::find_if(m_entries.begin(), m_entries.end(),
                           [&](const Entry& entry) { return entry.first == key; });
    if (it == m_entries.end())
        return false;
    m_entries.erase(it);
    return true;
}

const std::string* QemuOpts::find(std::string_view key) const
{
    for (const auto& entry : m_entries) {
        if (entry.first == key)
            return &entry.second;
    }
    return nullptr;
}

std::string QemuOpts::get(std::string_view key, std::string_view fallback) const
{
    const std::string* value = find(key);
    return value ? *value : std::string(fallback);
}

std::expected<bool, OptsError> QemuOpts::get_bool(std::string_view key, bool fallback) const
{
    const std::string* value = find(key);
    if (!value)
        return fallback;
    auto parsed = parse_bool(*value);
    if (!parsed)
        return std::unexpected(OptsError{"Parameter '" + std::string(key) + "' expects 'on' or 'off'"});
    return *parsed;
}

std::expected<uint64_t, OptsError> QemuOpts::get_number(std::string_view key, uint64_t fallback) const
{
    const std::string* value = find(key);
    if (!value)
        return fallback;
    auto parsed = parse_number(*value);
    if (!parsed)
        return std::unexpected(OptsError{"Parameter '" + std::string(key) + "' expects a number"});
    return *parsed;
}

std::expected<uint64_t, OptsError> QemuOpts::get_size(std::string_view key, uint64_t fallback,
                                                      uint64_t default_unit) const
{
    const std::string* value = find(key);
    if (!value)
        return fallback;
    auto parsed = parse_size(*value, default_unit);
    if (!parsed)
        return std::unexpected(OptsError{"Parameter '" + std::string(key) +
                                         "' expects a size (a number with an optional suffix "
                                         "K, M, G, T, P or E)"});
    return *parsed;
}

std::expected<void, OptsError> QemuOpts::check_keys(std::initializer_list<std::string_view> allowed) const
{
    for (const auto& entry : m_entries) {
        if (std::find(allowed.begin(), allowed.end(), entry.first) == allowed.end())
            return std::unexpected(OptsError{"Invalid parameter '" + entry.first + "'"});
    }
    return {};
}

nlohmann::json QemuOpts::to_json() const
{
    nlohmann::json out = nlohmann::json::object();
    for (const auto& [key, value] : m_entries)
        out[key] = value;
    return out;
}

std::expected<QemuOpts, OptsError> parse_opts(std::string_view text, std::string_view implied_key)
{
    QemuOpts opts;
    std::vector<std::string> items = split_opt_items(text);
    for (size_t i = 0; i < items.size(); ++i) {
        const std::string& item = items[i];
        size_t eq = item.find('=');
        if (eq == std::string::npos) {
            if (i == 0 && !implied_key.empty() && !item.empty()) {
                opts.set(implied_key, item);
            } else if (item.empty()) {
                return std::unexpected(OptsError{"empty parameter (a stray ',')"});
            } else if (item.starts_with("no") && item.size() > 2) {
                opts.set(std::string_view(item).substr(2), "off");
            } else {
                opts.set(item, "on");
            }
            continue;
        }
        if (eq == 0)
            return std::unexpected(OptsError{"Invalid parameter '' (an item starts with '=')"});
        opts.set(std::string_view(item).substr(0, eq), item.substr(eq + 1));
    }
    return opts;
}

namespace {

// "HOST:PORT", ":PORT" or "[V6HOST]:PORT"; the host may be empty, the port not.
bool split_host_port(std::string_view addr, std::string& host, std::string& port)
{
    size_t colon;
    if (addr.starts_with('[')) {
        size_t close = addr.find("]:");
        if (close == std::string_view::npos)
            return false;
        host = std::string(addr.substr(1, close - 1));
        colon = close + 1;
    } else {
        colon = addr.find(':');
        if (colon == std::string_view::npos)
            return false;
        host = std::string(addr.substr(0, colon));
    }
    port = std::string(addr.substr(colon + 1));
    return !port.empty();
}

bool all_digits(std::string_view text)
{
    return !text.empty() && std::all_of(text.begin(), text.end(), [](char c) { return is_digit(c); });
}

} // namespace

std::expected<LegacyChardev, OptsError> parse_legacy_chardev(std::string_view spec)
{
    auto invalid = [&] { return std::unexpected(OptsError{"'" + std::string(spec) + "' is not a valid char driver"}); };
    auto merge = [](LegacyChardev& out, std::string_view text, std::string_view implied) -> std::expected<void, OptsError> {
        auto parsed = parse_opts(text, implied);
        if (!parsed)
            return std::unexpected(parsed.error());
        for (const auto& [key, value] : parsed->entries())
            out.props.set(key, value);
        return {};
    };
    LegacyChardev out;
    std::string_view rest = spec;
    if (rest.starts_with("mon:")) {
        rest.remove_prefix(4);
        out.props.set("mux", "on");
    }
    static constexpr std::string_view simple[] = {"stdio", "null", "pty", "msmouse", "braille", "testdev"};
    if (std::find(std::begin(simple), std::end(simple), rest) != std::end(simple)) {
        out.backend = std::string(rest);
        return out;
    }
    if (rest == "vc" || rest.starts_with("vc:")) {
        out.backend = "vc";
        if (rest == "vc")
            return out;
        std::string_view dims = rest.substr(3);
        size_t x = dims.find('x');
        if (x == std::string_view::npos)
            return invalid();
        std::string_view w = dims.substr(0, x), h = dims.substr(x + 1);
        bool chars = w.ends_with('C') && h.ends_with('C');
        if (chars) {
            w.remove_suffix(1);
            h.remove_suffix(1);
        }
        if (!all_digits(w) || !all_digits(h))
            return invalid();
        out.props.set(chars ? "cols" : "width", std::string(w));
        out.props.set(chars ? "rows" : "height", std::string(h));
        return out;
    }
    for (std::string_view backend : {"file", "pipe"}) {
        if (rest.starts_with(backend) && rest.substr(backend.size()).starts_with(':')) {
            if (rest.size() == backend.size() + 1)
                return std::unexpected(OptsError{"'" + std::string(spec) + "' needs a path"});
            out.backend = std::string(backend);
            out.props.set("path", std::string(rest.substr(backend.size() + 1)));
            return out;
        }
    }
    bool telnet = rest.starts_with("telnet:");
    if (telnet || rest.starts_with("tcp:")) {
        std::string_view body = rest.substr(telnet ? 7 : 4);
        size_t comma = body.find(',');
        std::string host, port;
        if (!split_host_port(body.substr(0, comma), host, port))
            return invalid();
        out.backend = "socket";
        out.props.set("host", host);
        out.props.set("port", port);
        if (comma != std::string_view::npos) {
            if (auto r = merge(out, body.substr(comma + 1), {}); !r)
                return std::unexpected(r.error());
        }
        if (telnet)
            out.props.set("telnet", "on");
        return out;
    }
    if (rest.starts_with("udp:")) {
        std::string_view body = rest.substr(4);
        size_t at = body.find('@');
        std::string host, port;
        if (!split_host_port(body.substr(0, at), host, port))
            return invalid();
        out.backend = "udp";
        out.props.set("host", host);
        out.props.set("port", port);
        if (at != std::string_view::npos) {
            if (!split_host_port(body.substr(at + 1), host, port))
                return invalid();
            out.props.set("localaddr", host);
            out.props.set("localport", port);
        }
        return out;
    }
    if (rest.starts_with("unix:")) {
        out.backend = "socket";
        if (auto r = merge(out, rest.substr(5), "path"); !r)
            return std::unexpected(r.error());
        if (out.props.get("path").empty())
            return std::unexpected(OptsError{"'" + std::string(spec) + "' needs a path"});
        return out;
    }
    if (rest.starts_with("/dev/") && rest.size() > 5) {
        bool parallel = rest.starts_with("/dev/parport") || rest.starts_with("/dev/ppi");
        out.backend = parallel ? "parallel" : "serial";
        out.props.set("path", std::string(rest));
        return out;
    }
    return invalid();
}

} // namespace emu::emuctl
