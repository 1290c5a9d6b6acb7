// clients/emu-nbd/image.cpp — --object tls-creds-x509, --image-opts, and
// opening the exported image (-f, --cache, --discard, --detect-zeroes, -r,
// -s temporary overlay, -l internal snapshot).
#include "clients/emu-nbd/emu_nbd.h"

#include "storage/nbd/uri.h"
#include "storage/qcow2/qcow2.h"

#include <climits>
#include <cstdlib>
#include <fmt/format.h>
#include <unistd.h>

namespace emu::nbdtool {

namespace st = emu::storage;

namespace {

// "a=1,b=2" with ",," for a literal comma; a first item without '=' is
// named by `implied` (--object's type).
st::Result<std::vector<std::pair<std::string, std::string>>> split_options(const std::string& text, const char* implied)
{
    std::vector<std::pair<std::string, std::string>> out;
    std::string item;
    auto flush = [&]() -> st::Result<void> {
        if (item.empty())
            return {};
        auto eq = item.find('=');
        if (eq == std::string::npos) {
            if (implied && out.empty()) {
                out.emplace_back(implied, item);
            } else {
                return st::fail(fmt::format("Invalid parameter '{}'", item), EINVAL);
            }
        } else {
            out.emplace_back(item.substr(0, eq), item.substr(eq + 1));
        }
        item.clear();
        return {};
    };
    for (size_t i = 0; i < text.size(); i++) {
        if (text[i] == ',') {
            if (i + 1 < text.size() && text[i + 1] == ',') {
                item += ',';
                i++;
                continue;
            }
            if (auto r = flush(); !r)
                return std::unexpected(r.error());
            continue;
        }
        item += text[i];
    }
    if (auto r = flush(); !r)
        return std::unexpected(r.error());
    return out;
}

std::optional<bool> parse_on_off(const std::string& v)
{
    if (v == "on" || v == "yes" || v == "true")
        return true;
    if (v == "off" || v == "no" || v == "false")
        return false;
    return std::nullopt;
}

} // namespace

st::Result<std::map<std::string, TlsObject>> parse_objects(const std::vector<std::string>& specs)
{
    std::map<std::string, TlsObject> out;
    for (const auto& spec : specs) {
        auto items = split_options(spec, "qom-type");
        if (!items)
            return std::unexpected(items.error());
        std::string type;
        TlsObject obj;
        obj.options.endpoint = st::nbd::TlsEndpoint::Client; // QEMU's default
        bool have_dir = false;
        for (const auto& [key, value] : *items) {
            if (key == "qom-type") {
                type = value;
            } else if (key == "id") {
                obj.id = value;
            } else if (key == "dir") {
                obj.options.dir = value;
                have_dir = true;
            } else if (key == "endpoint") {
                if (value == "server")
                    obj.options.endpoint = st::nbd::TlsEndpoint::Server;
                else if (value == "client")
                    obj.options.endpoint = st::nbd::TlsEndpoint::Client;
                else
                    return st::fail(fmt::format("Parameter 'endpoint' does not accept value '{}'", value), EINVAL);
            } else if (key == "verify-peer") {
                auto b = parse_on_off(value);
                if (!b)
                    return st::fail(fmt::format("Parameter 'verify-peer' expects 'on' or 'off'"), EINVAL);
                obj.options.verify_peer = *b;
            } else if (type == "tls-creds-x509") {
                return st::fail(fmt::format("tls-creds-x509: property '{}' is not supported", key), ENOTSUP);
            }
        }
        if (type.empty())
            return st::fail(fmt::format("--object '{}': the object type is missing", spec), EINVAL);
        if (type != "tls-creds-x509")
            return st::fail(fmt::format("--object: object type '{}' is not supported (only tls-creds-x509)", type),
                            ENOTSUP);
        if (obj.id.empty())
            return st::fail("Parameter 'id' is missing", EINVAL);
        if (!have_dir)
            return st::fail(fmt::format("tls-creds-x509 '{}': Parameter 'dir' is missing", obj.id), EINVAL);
        if (out.count(obj.id))
            return st::fail(fmt::format("attempt to add duplicate property '{}'", obj.id), EEXIST);
        out[obj.id] = obj;
    }
    return out;
}

namespace {

st::Result<void> apply_image_opts(const std::string& text, Options& o, st::BackendOptions& b)
{
    auto items = split_options(text, nullptr);
    if (!items)
        return std::unexpected(items.error());
    bool direct = st::cache_direct(b.image.cache), no_flush = b.image.cache == st::CacheMode::Unsafe;
    for (const auto& [key, value] : *items) {
        if (key == "driver") {
            b.image.format = value;
        } else if (key == "file" || key == "file.filename" || key == "filename") {
            b.image.filename = value;
        } else if (key == "file.driver") {
            if (value != "file" && value != "nbd")
                return st::fail(fmt::format("--image-opts: protocol driver '{}' is not supported", value), ENOTSUP);
        } else if (key == "read-only") {
            auto v = parse_on_off(value);
            if (!v)
                return st::fail("Parameter 'read-only' expects 'on' or 'off'", EINVAL);
            b.image.read_only = b.image.read_only || *v;
        } else if (key == "cache.direct") {
            auto v = parse_on_off(value);
            if (!v)
                return st::fail("Parameter 'cache.direct' expects 'on' or 'off'", EINVAL);
            direct = *v;
        } else if (key == "cache.no-flush") {
            auto v = parse_on_off(value);
            if (!v)
                return st::fail("Parameter 'cache.no-flush' expects 'on' or 'off'", EINVAL);
            no_flush = *v;
        } else if (key == "discard") {
            auto d = st::parse_discard(value);
            if (!d)
                return std::unexpected(d.error());
            b.discard = *d;
        } else if (key == "detect-zeroes") {
            auto d = st::parse_detect_zeroes(value);
            if (!d)
                return std::unexpected(d.error());
            b.detect_zeroes = *d;
        } else {
            return st::fail(fmt::format("--image-opts: option '{}' is not supported", key), ENOTSUP);
        }
    }
    if (direct)
        b.image.cache = st::CacheMode::None;
    else if (no_flush)
        b.image.cache = st::CacheMode::Unsafe;
    if (b.image.filename.empty())
        return st::fail("--image-opts: the image file name is missing (file.filename=…)", EINVAL);
    o.filename = b.image.filename;
    return {};
}

// -s: a temporary qcow2 overlay on the image, unlinked once open, so the
// clients' writes never reach the image.
st::Result<std::unique_ptr<st::BlockBackend>> open_overlay(const st::BackendOptions& base)
{
    st::ImageOptions probe = base.image;
    probe.read_only = true;
    probe.open_backing = false;
    auto drv = st::open_image(probe);
    if (!drv)
        return std::unexpected(drv.error());
    const uint64_t size = (*drv)->size();
    const std::string format((*drv)->format_name());
    drv->reset();
    std::string backing = base.image.filename;
    if (!backing.starts_with("/") && !st::nbd::is_nbd_filename(backing)) {
        char resolved[PATH_MAX];
        if (realpath(backing.c_str(), resolved))
            backing = resolved;
    }
    const char* tmpdir = getenv("TMPDIR");
    std::string path = fmt::format("{}/emu-nbd-snapshot.XXXXXX", tmpdir && *tmpdir ? tmpdir : "/var/tmp");
    int fd = mkstemp(path.data());
    if (fd < 0)
        return st::fail(fmt::format("Could not create a temporary overlay in '{}': {}", path, std::strerror(errno)),
                        errno);
    close(fd);
    st::qcow2::CreateOptions co;
    co.size = size;
    co.backing_file = backing;
    co.backing_format = format;
    if (auto r = st::create_qcow2(path, co); !r) {
        unlink(path.c_str());
        return std::unexpected(r.error());
    }
    st::BackendOptions overlay = base;
    overlay.image.filename = path;
    overlay.image.format = "qcow2";
    overlay.image.read_only = false;
    auto backend = st::BlockBackend::open(overlay);
    unlink(path.c_str());
    return backend;
}

} // namespace

st::Result<std::shared_ptr<st::BlockBackend>> open_image(const Options& o)
{
    st::BackendOptions b;
    auto cache = st::parse_cache_mode(o.cache);
    if (!cache)
        return st::fail(fmt::format("Invalid cache mode '{}'", o.cache), EINVAL);
    b.image.cache = *cache;
    auto aio = st::parse_aio(o.aio);
    if (!aio)
        return std::unexpected(aio.error());
    auto discard = st::parse_discard(o.discard);
    if (!discard)
        return st::fail(fmt::format("Invalid discard mode '{}'", o.discard), EINVAL);
    b.discard = *discard;
    auto dz = st::parse_detect_zeroes(o.detect_zeroes);
    if (!dz)
        return st::fail(fmt::format("Invalid detect-zeroes mode '{}'", o.detect_zeroes), EINVAL);
    b.detect_zeroes = *dz;
    b.image.filename = o.filename;
    b.image.format = o.format;
    b.image.read_only = o.read_only || !o.load_snapshot.empty();
    Options copy = o;
    if (o.image_opts) {
        if (!o.format.empty())
            return st::fail("--image-opts and --format are mutually exclusive", EINVAL);
        if (auto r = apply_image_opts(o.filename, copy, b); !r)
            return std::unexpected(r.error());
    }
    if (b.detect_zeroes == st::DetectZeroes::Unmap && b.discard != st::DiscardMode::Unmap)
        return st::fail("setting detect-zeroes to unmap is not allowed without setting discard operation to unmap",
                        EINVAL);

    st::Result<std::unique_ptr<st::BlockBackend>> backend;
    if (o.snapshot && !b.image.read_only)
        backend = open_overlay(b);
    else
        backend = st::BlockBackend::open(b);
    if (!backend)
        return st::fail(fmt::format("Failed to open '{}': {}", copy.filename, backend.error().message),
                        backend.error().err);
    if (!o.load_snapshot.empty()) {
        // 'snapshot.id=ID,snapshot.name=NAME' or 'ID_OR_NAME'
        std::string which = o.load_snapshot;
        if (which.starts_with("snapshot.")) {
            auto items = split_options(which, nullptr);
            if (!items)
                return std::unexpected(items.error());
            std::string id, name;
            for (const auto& [key, value] : *items) {
                if (key == "snapshot.id")
                    id = value;
                else if (key == "snapshot.name")
                    name = value;
                else
                    return st::fail(fmt::format("Invalid snapshot parameter '{}'", key), EINVAL);
            }
            which = id.empty() ? name : id;
        }
        auto* q = dynamic_cast<st::qcow2::Driver*>(&(*backend)->driver());
        if (!q)
            return st::fail(fmt::format("Failed to load snapshot: image format '{}' does not support internal "
                                        "snapshots",
                                        (*backend)->driver().format_name()),
                            ENOTSUP);
        if (auto r = q->snapshot_load_tmp(which); !r)
            return st::fail("Failed to load snapshot: " + r.error().message, r.error().err);
    }
    return std::shared_ptr<st::BlockBackend>(std::move(*backend));
}

} // namespace emu::nbdtool
