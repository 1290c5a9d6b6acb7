// daemon/block_nodes.cpp — blockdev option sets to driver stacks.
#include "daemon/block_nodes.h"

#include "storage/borrowed.h"
#include "storage/image.h"
#include "storage/nbd/client.h"

#include <algorithm>
#include <cctype>
#include <span>

namespace emu::daemon {

using json = nlohmann::json;

namespace {

// Members each driver takes (besides the common ones).
constexpr std::string_view k_common_keys[] = {"driver",    "node-name",   "discard",      "cache",
                                              "read-only", "force-share", "detect-zeroes"};
constexpr std::string_view k_file_keys[] = {"filename", "locking", "aio"};
constexpr std::string_view k_nbd_keys[] = {"server", "export", "tls-creds"};
constexpr std::string_view k_format_keys[] = {"file", "backing"};

bool listed(std::string_view key, std::span<const std::string_view> keys)
{
    return std::find(keys.begin(), keys.end(), key) != keys.end();
}

// QEMU's id_wellformed(): a letter, then letters, digits, '-', '.', '_'.
bool valid_node_name(const std::string& name)
{
    if (name.empty() || name.size() > 31 || !std::isalpha(static_cast<unsigned char>(name[0])))
        return false;
    return std::all_of(name.begin(), name.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.' || c == '_';
    });
}

qmp::Result<bool> get_bool(const json& o, const char* key, bool fallback)
{
    auto it = o.find(key);
    if (it == o.end())
        return fallback;
    if (!it->is_boolean())
        return qmp::fail(std::string("Invalid parameter type for '") + key + "', expected: boolean");
    return it->get<bool>();
}

qmp::Result<std::string> get_string(const json& o, const char* key, const std::string& fallback)
{
    auto it = o.find(key);
    if (it == o.end())
        return fallback;
    if (!it->is_string())
        return qmp::fail(std::string("Invalid parameter type for '") + key + "', expected: string");
    return it->get<std::string>();
}

// Common options, inherited by inline children.
struct Common {
    bool read_only = false;
    bool force_share = false;
    storage::CacheMode cache = storage::CacheMode::Writeback;
    storage::DetectZeroes detect_zeroes = storage::DetectZeroes::Off;
    storage::DiscardMode discard = storage::DiscardMode::Ignore;
};

qmp::Result<Common> parse_common(const json& o, const Common& inherited)
{
    Common c = inherited;
    auto ro = get_bool(o, "read-only", inherited.read_only);
    auto fs = get_bool(o, "force-share", inherited.force_share);
    if (!ro)
        return std::unexpected(ro.error());
    if (!fs)
        return std::unexpected(fs.error());
    c.read_only = *ro;
    c.force_share = *fs;
    if (c.force_share && !c.read_only)
        return qmp::fail("force-share=on can only be used with read-only images");
    if (auto it = o.find("cache"); it != o.end()) {
        if (!it->is_object())
            return qmp::fail("Invalid parameter type for 'cache', expected: object");
        for (auto& [k, v] : it->items())
            if (k != "direct" && k != "no-flush")
                return qmp::fail("Parameter 'cache." + k + "' is unexpected");
        auto direct = get_bool(*it, "direct", storage::cache_direct(inherited.cache));
        auto no_flush = get_bool(*it, "no-flush", inherited.cache == storage::CacheMode::Unsafe);
        if (!direct)
            return std::unexpected(direct.error());
        if (!no_flush)
            return std::unexpected(no_flush.error());
        c.cache = *no_flush ? storage::CacheMode::Unsafe
            : *direct       ? storage::CacheMode::None
                            : storage::CacheMode::Writeback;
    }
    auto discard = get_string(o, "discard", "");
    if (!discard)
        return std::unexpected(discard.error());
    if (!discard->empty()) {
        auto d = storage::parse_discard(*discard);
        if (!d)
            return qmp::fail(d.error().message);
        c.discard = *d;
    }
    auto zeroes = get_string(o, "detect-zeroes", "");
    if (!zeroes)
        return std::unexpected(zeroes.error());
    if (!zeroes->empty()) {
        auto z = storage::parse_detect_zeroes(*zeroes);
        if (!z)
            return qmp::fail(z.error().message);
        if (*z == storage::DetectZeroes::Unmap && c.discard != storage::DiscardMode::Unmap)
            return qmp::fail("setting detect-zeroes to unmap is not allowed without setting discard operation to "
                             "unmap");
        c.detect_zeroes = *z;
    }
    return c;
}

// SocketAddress (inet or unix) and export to the nbd:// name the storage layer opens.
qmp::Result<std::string> nbd_name(const json& o)
{
    auto server = o.find("server");
    if (server == o.end())
        return qmp::fail("Parameter 'server' is missing");
    if (!server->is_object())
        return qmp::fail("Invalid parameter type for 'server', expected: object");
    auto type = get_string(*server, "type", "");
    auto exp = get_string(o, "export", "");
    if (!type)
        return std::unexpected(type.error());
    if (!exp)
        return std::unexpected(exp.error());
    if (o.contains("tls-creds"))
        return qmp::fail("nbd: tls-creds needs a TLS credentials object, which emud does not have yet");
    if (*type == "inet") {
        auto host = get_string(*server, "host", "");
        auto port = get_string(*server, "port", "10809");
        if (!host)
            return std::unexpected(host.error());
        if (!port)
            return std::unexpected(port.error());
        if (host->empty())
            return qmp::fail("Parameter 'server.host' is missing");
        std::string h = host->find(':') != std::string::npos ? "[" + *host + "]" : *host;
        return "nbd://" + h + ":" + *port + "/" + *exp;
    }
    if (*type == "unix") {
        auto path = get_string(*server, "path", "");
        if (!path)
            return std::unexpected(path.error());
        if (path->empty())
            return qmp::fail("Parameter 'server.path' is missing");
        return "nbd+unix:///" + *exp + "?socket=" + *path;
    }
    if (type->empty())
        return qmp::fail("Parameter 'server.type' is missing");
    return qmp::fail("nbd: server type '" + *type + "' is not supported (inet, unix)");
}

struct Opened {
    std::unique_ptr<storage::BlockDriver> driver;
    std::vector<std::string> children; // borrowed nodes
};

qmp::Result<Opened> open_options(const json& o, const Common& inherited, const NodeEnv& env, bool root);

// A child given as a node name (borrowed) or as an inline option set.
qmp::Result<Opened> open_child(const json& ref, const Common& inherited, const NodeEnv& env, const char* what)
{
    if (ref.is_string()) {
        std::string name = ref.get<std::string>();
        BlockNode* node = env.find(name);
        if (!node)
            return qmp::fail("Cannot find device= nor node_name=" + name);
        if (node->in_drive || !node->parent.empty() || !node->backend)
            return qmp::fail("Node '" + name + "' is busy: node is already in use");
        Opened out;
        out.driver = std::make_unique<storage::BorrowedDriver>(*node->driver);
        out.children.push_back(name);
        return out;
    }
    if (!ref.is_object())
        return qmp::fail(std::string("Invalid parameter type for '") + what + "', expected: object or string");
    return open_options(ref, inherited, env, false);
}

qmp::Result<Opened> open_options(const json& o, const Common& inherited, const NodeEnv& env, bool root)
{
    if (!o.is_object())
        return qmp::fail("Invalid parameter type, expected: object");
    auto driver = get_string(o, "driver", "");
    if (!driver)
        return std::unexpected(driver.error());
    if (driver->empty())
        return qmp::fail("Parameter 'driver' is missing");
    const std::string& drv = *driver;
    bool is_format = drv == "qcow2" || drv == "raw";
    if (!is_format && drv != "file" && drv != "nbd") {
        if (storage::format_known(drv) || drv == "host_device" || drv == "null-co")
            return qmp::fail("Driver '" + drv + "' is not supported yet (qcow2, raw, file, nbd)");
        return qmp::fail("Invalid parameter '" + drv + "'");
    }
    for (auto& [key, value] : o.items()) {
        std::string_view k = key;
        bool ok = listed(k, k_common_keys) || (drv == "file" && listed(k, k_file_keys)) ||
            (drv == "nbd" && listed(k, k_nbd_keys)) || (is_format && listed(k, k_format_keys));
        if (!ok)
            return qmp::fail("Parameter '" + key + "' is unexpected");
    }
    auto common = parse_common(o, inherited);
    if (!common)
        return std::unexpected(common.error());
    auto name = get_string(o, "node-name", "");
    if (!name)
        return std::unexpected(name.error());
    if (root && name->empty())
        return qmp::fail("'node-name' must be specified for the root node");
    if (!name->empty()) {
        if (!valid_node_name(*name))
            return qmp::fail("Invalid node name");
        if (std::string why = env.name_conflict(*name); !why.empty())
            return qmp::fail(why);
    }
    Opened out;
    if (drv == "file") {
        auto filename = get_string(o, "filename", "");
        auto locking = get_string(o, "locking", "auto");
        auto aio = get_string(o, "aio", "threads");
        for (auto* r : {&filename, &locking, &aio})
            if (!*r)
                return std::unexpected(r->error());
        if (filename->empty())
            return qmp::fail("Parameter 'filename' is missing");
        if (*locking != "auto" && *locking != "on" && *locking != "off")
            return qmp::fail("Parameter 'locking' does not accept value '" + *locking + "'");
        if (auto a = storage::parse_aio(*aio); !a)
            return qmp::fail(a.error().message);
        storage::FileOptions fo;
        fo.read_only = common->read_only;
        fo.force_share = common->force_share;
        fo.direct = storage::cache_direct(common->cache);
        fo.no_flush = common->cache == storage::CacheMode::Unsafe;
        fo.locking = *locking != "off";
        auto file = storage::FileDriver::open(*filename, fo);
        if (!file) {
            if (file.error().message.starts_with("Could not "))
                return qmp::fail(file.error().message);
            return qmp::fail("Could not open '" + *filename + "': " + file.error().message);
        }
        out.driver = std::move(*file);
    } else if (drv == "nbd") {
        auto uri = nbd_name(o);
        if (!uri)
            return std::unexpected(uri.error());
        auto nbd = storage::nbd::NbdDriver::open(*uri, common->read_only);
        if (!nbd)
            return qmp::fail(nbd.error().message);
        out.driver = std::move(*nbd);
    } else {
        auto file_ref = o.find("file");
        if (file_ref == o.end())
            return qmp::fail("Parameter 'file' is missing");
        auto file = open_child(*file_ref, *common, env, "file");
        if (!file)
            return std::unexpected(file.error());
        out.children = std::move(file->children);
        std::string file_name = file->driver->filename();
        auto fmt = storage::open_format(std::move(file->driver), drv, common->read_only);
        if (!fmt)
            return qmp::fail(fmt.error().message);
        out.driver = std::move(*fmt);
        auto backing = o.find("backing");
        if (backing != o.end() && drv == "raw")
            return qmp::fail("Parameter 'backing' is unexpected");
        if (backing != o.end() && !backing->is_null()) {
            auto child = open_child(*backing, Common{.read_only = true, .cache = common->cache}, env, "backing");
            if (!child)
                return std::unexpected(child.error());
            if (auto r = out.driver->attach_backing(std::move(child->driver)); !r)
                return qmp::fail(r.error().message);
            out.children.insert(out.children.end(), child->children.begin(), child->children.end());
        } else if (backing == o.end() && drv == "qcow2") {
            // The image's own backing file, as its header names it.
            storage::ImageInfo info = out.driver->info();
            if (!info.backing_filename.empty()) {
                storage::ImageOptions bo;
                bo.filename = storage::resolve_backing_path(file_name, info.backing_filename);
                bo.format = info.backing_format;
                bo.read_only = true;
                bo.cache = common->cache;
                auto chain = storage::open_image(bo);
                if (!chain)
                    return qmp::fail("Could not open backing file of '" + file_name + "': " + chain.error().message);
                if (auto r = out.driver->attach_backing(std::move(*chain)); !r)
                    return qmp::fail(r.error().message);
            }
        }
        if (storage::BlockDriver* f = out.driver->file(); f && f->node_name().empty())
            f->set_node_name(env.auto_name());
    }
    if (!name->empty())
        out.driver->set_node_name(*name);
    else if (out.driver->node_name().empty())
        out.driver->set_node_name(env.auto_name());
    return out;
}

} // namespace

json normalize_blockdev_options(json options)
{
    if (!options.is_object())
        return options;
    static constexpr std::string_view bools[] = {"read-only", "force-share", "direct", "no-flush"};
    for (auto& [key, value] : options.items()) {
        if (value.is_object()) {
            value = normalize_blockdev_options(std::move(value));
        } else if (value.is_string() && listed(key, bools)) {
            std::string v = value.get<std::string>();
            if (v == "on" || v == "true" || v == "yes")
                value = true;
            else if (v == "off" || v == "false" || v == "no")
                value = false;
        } else if (key == "backing" && value.is_string() && value.get<std::string>().empty()) {
            value = nullptr; // backing= (empty) is QEMU's way to say null on the command line
        }
    }
    return options;
}

qmp::Result<std::unique_ptr<BlockNode>> open_blockdev(const json& options, const NodeEnv& env)
{
    auto common = parse_common(options, Common{});
    if (!common)
        return std::unexpected(common.error());
    auto opened = open_options(options, Common{}, env, true);
    if (!opened)
        return std::unexpected(opened.error());
    auto node = std::make_unique<BlockNode>();
    node->name = opened->driver->node_name();
    node->driver = opened->driver.get();
    node->children = std::move(opened->children);
    node->cache = common->cache;
    node->detect_zeroes = common->detect_zeroes;
    node->discard = common->discard;
    storage::BackendOptions bo;
    bo.image.cache = common->cache;
    bo.image.read_only = common->read_only;
    bo.detect_zeroes = common->detect_zeroes;
    bo.discard = common->discard;
    node->backend = std::make_unique<storage::BlockBackend>(std::move(opened->driver), bo);
    return node;
}

json node_info(storage::BlockDriver& top, const NodeView& view)
{
    storage::ImageInfo info = top.info();
    int depth = 0;
    for (storage::BlockDriver* b = top.backing(); b; b = b->backing())
        depth++;
    const std::string file = view.file.empty() ? top.filename() : view.file;
    json image = {{"filename", file},
                  {"format", info.format},
                  {"virtual-size", info.virtual_size},
                  {"actual-size", top.allocated_bytes()},
                  {"dirty-flag", info.dirty}};
    if (info.cluster_size)
        image["cluster-size"] = *info.cluster_size;
    if (!info.backing_filename.empty()) {
        image["backing-filename"] = info.backing_filename;
        image["full-backing-filename"] = info.full_backing_filename;
        if (!info.backing_format.empty())
            image["backing-filename-format"] = info.backing_format;
    }
    if (!info.snapshots.empty()) {
        json list = json::array();
        for (const storage::SnapshotInfo& s : info.snapshots)
            list.push_back(snapshot_info(s));
        image["snapshots"] = list;
    }
    if (info.qcow2) {
        image["format-specific"] = {{"type", "qcow2"},
                                    {"data",
                                     {{"compat", info.qcow2->compat},
                                      {"compression-type", info.qcow2->compression_type},
                                      {"lazy-refcounts", info.qcow2->lazy_refcounts},
                                      {"refcount-bits", info.qcow2->refcount_bits},
                                      {"corrupt", info.qcow2->corrupt},
                                      {"extended-l2", info.qcow2->extended_l2}}}};
    }
    bool direct = storage::cache_direct(view.cache);
    bool no_flush = view.cache == storage::CacheMode::Unsafe;
    bool writeback = !storage::cache_writethrough(view.cache);
    static const char* const zeroes[] = {"off", "on", "unmap"};
    json out = {{"file", file},
                {"node-name", top.node_name()},
                {"ro", top.read_only()},
                {"drv", std::string(top.format_name())},
                {"encrypted", false},
                {"encryption_key_missing", false},
                {"backing_file_depth", depth},
                {"bps", 0},
                {"bps_rd", 0},
                {"bps_wr", 0},
                {"iops", 0},
                {"iops_rd", 0},
                {"iops_wr", 0},
                {"detect_zeroes", zeroes[int(view.detect_zeroes)]},
                {"write_threshold", 0},
                {"cache", {{"writeback", writeback}, {"direct", direct}, {"no-flush", no_flush}}},
                {"image", image}};
    if (!info.backing_filename.empty())
        out["backing_file"] = info.backing_filename;
    return out;
}

json snapshot_info(const storage::SnapshotInfo& s)
{
    return {{"id", s.id},
            {"name", s.name},
            {"vm-state-size", s.vm_state_size},
            {"date-sec", s.date_sec},
            {"date-nsec", s.date_nsec},
            {"vm-clock-sec", s.vm_clock_nsec / 1000000000},
            {"vm-clock-nsec", s.vm_clock_nsec % 1000000000}};
}

qmp::Error not_found(const std::string& device, const std::string& node)
{
    return qmp::Error{qmp::ErrorClass::GenericError, "Cannot find device=" + device + " nor node_name=" + node};
}

} // namespace emu::daemon
