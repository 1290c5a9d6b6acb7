// storage/nbd/uri.cpp — parsing NBD image names.
#include "storage/nbd/uri.h"
#include "common/text.h"

#include "storage/nbd/codec.h"
#include "storage/nbd/protocol.h"

#include <fmt/format.h>

namespace emu::storage::nbd {

namespace {

Result<std::string> percent_decode(std::string_view s, std::string_view whole)
{
    std::string out;
    for (size_t i = 0; i < s.size(); i++) {
        if (s[i] != '%') {
            out += s[i];
            continue;
        }
        int hi = i + 1 < s.size() ? hex_digit_value(s[i + 1]) : -1;
        int lo = i + 2 < s.size() ? hex_digit_value(s[i + 2]) : -1;
        if (hi < 0 || lo < 0)
            return fail(fmt::format("'{}': bad percent escape", whole), EINVAL);
        out += char(hi * 16 + lo);
        i += 2;
    }
    return out;
}

Result<NbdTarget> parse_uri(std::string_view name)
{
    NbdTarget t;
    t.name = std::string(name);
    auto scheme_end = name.find("://");
    std::string_view scheme = name.substr(0, scheme_end);
    std::string_view rest = name.substr(scheme_end + 3);
    bool is_unix = false;
    if (scheme == "nbd" || scheme == "nbd+tcp") {
    } else if (scheme == "nbds" || scheme == "nbds+tcp") {
        t.tls = true;
    } else if (scheme == "nbd+unix") {
        is_unix = true;
    } else if (scheme == "nbds+unix") {
        is_unix = true;
        t.tls = true;
    } else {
        return fail(fmt::format("'{}': unknown NBD URI scheme '{}'", name, scheme), EINVAL);
    }
    std::string_view query;
    if (auto q = rest.find('?'); q != std::string_view::npos) {
        query = rest.substr(q + 1);
        rest = rest.substr(0, q);
    }
    if (auto h = rest.find('#'); h != std::string_view::npos)
        return fail(fmt::format("'{}': fragments are not allowed in NBD URIs", name), EINVAL);
    std::string_view authority = rest.substr(0, rest.find('/'));
    std::string_view path = authority.size() < rest.size() ? rest.substr(authority.size() + 1) : std::string_view();
    auto decoded = percent_decode(path, name);
    if (!decoded)
        return std::unexpected(decoded.error());
    t.export_name = *decoded;
    if (!valid_string(t.export_name))
        return fail(fmt::format("'{}': the export name is too long or contains a NUL byte", name), EINVAL);

    std::string socket_path;
    while (!query.empty()) {
        std::string_view item = query.substr(0, query.find('&'));
        query = item.size() < query.size() ? query.substr(item.size() + 1) : std::string_view();
        auto eq = item.find('=');
        std::string_view key = item.substr(0, eq);
        auto value = percent_decode(eq == std::string_view::npos ? std::string_view() : item.substr(eq + 1), name);
        if (!value)
            return std::unexpected(value.error());
        if (key == "socket") {
            socket_path = *value;
        } else if (key == "tls-creds") {
            t.tls = true;
            t.tls_creds_dir = *value;
        } else if (key == "tls-hostname") {
            t.tls_hostname = *value;
        } else {
            return fail(fmt::format("'{}': unknown NBD URI parameter '{}'", name, key), EINVAL);
        }
    }
    if (is_unix) {
        if (!authority.empty())
            return fail(fmt::format("'{}': a unix NBD URI takes no host", name), EINVAL);
        if (socket_path.empty())
            return fail(fmt::format("'{}': a unix NBD URI needs ?socket=PATH", name), EINVAL);
        t.address.is_unix = true;
        t.address.path = socket_path;
        return t;
    }
    if (!socket_path.empty())
        return fail(fmt::format("'{}': 'socket' is only valid with nbd+unix://", name), EINVAL);
    std::string_view host = authority, port;
    if (authority.starts_with("[")) {
        auto close = authority.find(']');
        if (close == std::string_view::npos)
            return fail(fmt::format("'{}': unterminated [IPv6] host", name), EINVAL);
        host = authority.substr(1, close - 1);
        std::string_view after = authority.substr(close + 1);
        if (!after.empty()) {
            if (after[0] != ':')
                return fail(fmt::format("'{}': bad host", name), EINVAL);
            port = after.substr(1);
        }
    } else if (auto colon = authority.rfind(':'); colon != std::string_view::npos) {
        host = authority.substr(0, colon);
        port = authority.substr(colon + 1);
    }
    t.address.host = host.empty() ? "localhost" : std::string(host);
    t.address.port = port.empty() ? std::to_string(k_default_port) : std::string(port);
    if (t.address.port.find_first_not_of("0123456789") != std::string::npos || t.address.port.size() > 5 ||
        std::stoul(t.address.port) > 65535 || std::stoul(t.address.port) == 0)
        return fail(fmt::format("'{}': '{}' is not a port number", name, t.address.port), EINVAL);
    return t;
}

// nbd:HOST:PORT[:exportname=NAME], nbd:unix:PATH[:exportname=NAME]
Result<NbdTarget> parse_legacy(std::string_view name)
{
    NbdTarget t;
    t.name = std::string(name);
    std::string_view rest = name.substr(4);
    constexpr std::string_view k_export = ":exportname=";
    if (auto e = rest.find(k_export); e != std::string_view::npos) {
        t.export_name = std::string(rest.substr(e + k_export.size()));
        rest = rest.substr(0, e);
        if (!valid_string(t.export_name))
            return fail(fmt::format("'{}': the export name is too long or contains a NUL byte", name), EINVAL);
    }
    if (rest.starts_with("unix:")) {
        t.address.is_unix = true;
        t.address.path = std::string(rest.substr(5));
        if (t.address.path.empty())
            return fail(fmt::format("'{}': the unix socket path is empty", name), EINVAL);
        return t;
    }
    auto a = parse_socket_address(rest);
    if (!a)
        return fail(
            fmt::format("'{}': expected nbd:HOST:PORT[:exportname=NAME] or nbd:unix:PATH[:exportname=NAME]", name),
            EINVAL);
    t.address = *a;
    if (t.address.host.empty())
        t.address.host = "localhost";
    return t;
}

} // namespace

bool is_nbd_filename(std::string_view name)
{
    for (std::string_view p : {"nbd:", "nbd+tcp://", "nbd+unix://", "nbds://", "nbds+tcp://", "nbds+unix://"})
        if (name.starts_with(p))
            return true;
    return false;
}

Result<NbdTarget> parse_nbd_filename(std::string_view name)
{
    if (!is_nbd_filename(name))
        return fail(fmt::format("'{}' is not an NBD name", name), EINVAL);
    if (name.find("://") != std::string_view::npos &&
        name.substr(0, name.find("://")).find(':') == std::string_view::npos)
        return parse_uri(name);
    return parse_legacy(name);
}

} // namespace emu::storage::nbd
