// clients/emuctl/qemu_opts.h — QemuOpts-style option strings ("key=value,...").
//
// The syntax is QEMU 2.10's:
//   - items are separated by ',', and ",," is a literal comma inside an item;
//   - "key=value" sets key; a repeated key keeps its first position and the
//     last value wins;
//   - the first item may omit "key=" when the caller names an implied key
//     (-device virtio-blk,... → driver=virtio-blk);
//   - any other bare item is a flag: "server" means server=on and "nowait"
//     means wait=off (the "no" prefix negates), as QEMU 2.10 did for every key;
//   - a trailing ',' is ignored.
// Values stay strings; typed accessors (get_bool, get_number, get_size)
// validate them on use, with QEMU's wording ("Parameter 'cpus' expects a
// number"). Errors are returned as values.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <expected>
#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace emu::emuctl {

struct OptsError {
    std::string message;
};

inline constexpr uint64_t k_kib = uint64_t{1} << 10;
inline constexpr uint64_t k_mib = uint64_t{1} << 20;
inline constexpr uint64_t k_gib = uint64_t{1} << 30;

// Splits at single commas; ",," becomes a literal comma. A trailing comma
// does not make an empty last item. "" gives no items.
std::vector<std::string> split_opt_items(std::string_view text);
// Doubles every comma, so split_opt_items() gives back one item.
std::string escape_opt_value(std::string_view text);

// on/off, yes/no, true/false.
std::expected<bool, OptsError> parse_bool(std::string_view text);
// A non-negative integer: decimal, or hexadecimal with 0x.
std::expected<uint64_t, OptsError> parse_number(std::string_view text);
// A byte count like QEMU's qemu_strtosz: "512", "512M", "1.5G". Suffixes
// (either case) B, K, M, G, T, P, E are powers of 1024; without a suffix
// the number counts default_unit bytes (1 for bytes, k_mib for -m). A
// fraction needs an explicit suffix, as in QEMU.
std::expected<uint64_t, OptsError> parse_size(std::string_view text, uint64_t default_unit = 1);

class QemuOpts {
public:
    using Entry = std::pair<std::string, std::string>;

    void set(std::string_view key, std::string value);
    bool erase(std::string_view key);
    bool has(std::string_view key) const { return find(key) != nullptr; }
    // nullptr when absent.
    const std::string* find(std::string_view key) const;
    std::string get(std::string_view key, std::string_view fallback = {}) const;

    std::expected<bool, OptsError> get_bool(std::string_view key, bool fallback) const;
    std::expected<uint64_t, OptsError> get_number(std::string_view key, uint64_t fallback) const;
    std::expected<uint64_t, OptsError> get_size(std::string_view key, uint64_t fallback,
                                                uint64_t default_unit = 1) const;

    // Fails with "Invalid parameter 'KEY'" on the first key not in allowed.
    std::expected<void, OptsError> check_keys(std::initializer_list<std::string_view> allowed) const;

    const std::vector<Entry>& entries() const { return m_entries; }
    bool empty() const { return m_entries.empty(); }
    size_t size() const { return m_entries.size(); }
    // An object with one string member per key.
    nlohmann::json to_json() const;

private:
    std::vector<Entry> m_entries;
};

// Parses TEXT; implied_key (may be empty) names the first item when it has
// no '='. Fails on an item with an empty key ("=x").
std::expected<QemuOpts, OptsError> parse_opts(std::string_view text, std::string_view implied_key = {});

// A character device in QEMU's legacy -serial/-monitor/-qmp syntax, as the
// -chardev backend and options it stands for (QEMU's qemu_chr_parse_compat):
//   stdio null pty msmouse braille testdev     → that backend
//   vc, vc:WxH, vc:COLSCxROWSC                 → vc (width/height, cols/rows)
//   file:PATH, pipe:PATH                       → file/pipe, path
//   tcp:[HOST]:PORT[,OPTS], telnet:...         → socket, host, port (+ telnet=on)
//   udp:[HOST]:PORT[@[LOCALADDR]:LOCALPORT]    → udp, host, port, localaddr, localport
//   unix:PATH[,OPTS]                           → socket, path
//   /dev/parport*, /dev/ppi*; other /dev/*     → parallel; serial, path
// A "mon:" prefix adds mux=on. Paths stay as written. "none" and
// "chardev:ID" are not devices: the callers handle them.
struct LegacyChardev {
    std::string backend;
    QemuOpts props;
};
std::expected<LegacyChardev, OptsError> parse_legacy_chardev(std::string_view spec);

} // namespace emu::emuctl
