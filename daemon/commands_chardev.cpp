// daemon/commands_chardev.cpp — the character device commands of a VM's
// QMP endpoint: query-chardev, ringbuf-write, ringbuf-read.
#include "daemon/dispatcher.h"
#include "daemon/vm.h"

#include <cstring>

namespace emu::daemon {

using nlohmann::json;

namespace {

constexpr char k_base64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

std::string base64_encode(std::string_view in)
{
    std::string out;
    out.reserve((in.size() + 2) / 3 * 4);
    size_t i = 0;
    for (; i + 2 < in.size(); i += 3) {
        uint32_t v = uint32_t(uint8_t(in[i])) << 16 | uint32_t(uint8_t(in[i + 1])) << 8 | uint8_t(in[i + 2]);
        for (int shift : {18, 12, 6, 0})
            out.push_back(k_base64[(v >> shift) & 63]);
    }
    if (i < in.size()) {
        uint32_t v = uint32_t(uint8_t(in[i])) << 16;
        if (i + 1 < in.size())
            v |= uint32_t(uint8_t(in[i + 1])) << 8;
        out.push_back(k_base64[(v >> 18) & 63]);
        out.push_back(k_base64[(v >> 12) & 63]);
        out.push_back(i + 1 < in.size() ? k_base64[(v >> 6) & 63] : '=');
        out.push_back('=');
    }
    return out;
}

// Strict RFC 4648 (whitespace and line breaks tolerated, as QEMU's decoder).
qmp::Result<std::string> base64_decode(std::string_view in)
{
    std::string out;
    uint32_t acc = 0;
    int bits = 0, pad = 0;
    for (char c : in) {
        if (c == ' ' || c == '\n' || c == '\r' || c == '\t')
            continue;
        if (c == '=') {
            pad++;
            continue;
        }
        const char* p = c ? strchr(k_base64, c) : nullptr;
        if (!p || pad)
            return qmp::fail("Base64 data is invalid");
        acc = acc << 6 | uint32_t(p - k_base64);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out.push_back(char((acc >> bits) & 0xff));
        }
    }
    if (pad > 2 || bits >= 6)
        return qmp::fail("Base64 data is invalid");
    return out;
}

qmp::Result<RingbufBackend*> find_ringbuf(Context& ctx, const std::string& device)
{
    Chardev* chardev = ctx.vm->find_chardev(device);
    bool listed = false;
    for (auto& c : ctx.vm->chardev_info())
        listed |= c["label"] == device;
    if (!chardev && !listed)
        return qmp::fail("Device '" + device + "' not found", qmp::ErrorClass::DeviceNotFound);
    auto* ring = dynamic_cast<RingbufBackend*>(chardev);
    if (!ring)
        return qmp::fail(device + " is not a ringbuf device");
    return ring;
}

} // namespace

void register_chardev_commands(Dispatcher& d)
{
    d.add("query-chardev", [](Context& ctx, const json&) -> qmp::Result<json> { return ctx.vm->chardev_info(); });
    d.add("ringbuf-write", [](Context& ctx, const json& args) -> qmp::Result<json> {
        auto ring = find_ringbuf(ctx, args["device"].get<std::string>());
        if (!ring)
            return std::unexpected(ring.error());
        std::string data = args["data"].get<std::string>();
        if (args.value("format", "utf8") == "base64") {
            auto decoded = base64_decode(data);
            if (!decoded)
                return std::unexpected(decoded.error());
            data = std::move(*decoded);
        }
        (*ring)->input(data);
        return json::object();
    });
    d.add("ringbuf-read", [](Context& ctx, const json& args) -> qmp::Result<json> {
        auto ring = find_ringbuf(ctx, args["device"].get<std::string>());
        if (!ring)
            return std::unexpected(ring.error());
        int64_t size = args["size"].get<int64_t>();
        if (size <= 0)
            return qmp::fail("size must be greater than zero");
        std::string data = (*ring)->read(size_t(size));
        if (args.value("format", "utf8") == "base64")
            return base64_encode(data);
        return data;
    });
}

} // namespace emu::daemon
