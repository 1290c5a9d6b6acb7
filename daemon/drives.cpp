#include "daemon/drives.h"

#include "daemon/block_nodes.h"
#include "common/log.h"
#include "storage/image.h"

#include <cerrno>
#include <charconv>
#include <cstring>
#include <unistd.h>

namespace emu::daemon {

using json = nlohmann::json;

namespace {

constexpr int k_ide_buses = 2, k_ide_units = 2;

// The image layer reports a missing file as qemu-img does, "Could not open
// 'f': Could not open 'f': No such file or directory"; a VM's drive names
// the file once, as qemu-system does.
std::string open_error(const std::string& message)
{
    constexpr std::string_view lead = "Could not open '";
    if (!message.starts_with(lead))
        return message;
    size_t end = message.find("': ", lead.size());
    if (end == std::string::npos)
        return message;
    std::string_view prefix(message.data(), end + 3);
    std::string_view rest = std::string_view(message).substr(prefix.size());
    return rest.starts_with(prefix) ? std::string(rest) : message;
}

// -drive keys emud reads; anything else is refused by name.
constexpr std::string_view k_drive_keys[] = {"file", "if", "index", "bus", "unit", "media", "format", "cache",
                                             "aio", "discard", "detect-zeroes", "readonly", "read-only",
                                             "snapshot", "werror", "rerror", "id", "serial", "node-name"};

qmp::Result<bool> on_off(const json& o, const char* key, bool fallback, const std::string& where)
{
    if (!o.contains(key))
        return fallback;
    std::string v = o[key].get<std::string>();
    if (v == "on" || v == "true" || v == "yes")
        return true;
    if (v == "off" || v == "false" || v == "no")
        return false;
    return qmp::fail(where + ": parameter '" + key + "' expects 'on' or 'off'");
}

qmp::Result<int> small_number(const json& o, const char* key, const std::string& where)
{
    if (!o.contains(key))
        return -1;
    std::string v = o[key].get<std::string>();
    int n = 0;
    auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
    if (ec != std::errc() || end != v.data() + v.size() || n < 0 || n > 1000)
        return qmp::fail(where + ": parameter '" + key + "' expects a small number, not '" + v + "'");
    return n;
}

qmp::Result<DriveSpec> parse_one(const json& o, bool snapshot_all)
{
    DriveSpec d;
    std::string where = "drive";
    if (o.contains("id"))
        where = "drive '" + o["id"].get<std::string>() + "'";
    for (auto& [key, value] : o.items()) {
        if (std::find(std::begin(k_drive_keys), std::end(k_drive_keys), key) == std::end(k_drive_keys))
            return qmp::fail(where + ": option '" + key + "' is not supported yet");
        if (!value.is_string())
            return qmp::fail(where + ": option '" + key + "' must be a string");
    }
    d.file = o.value("file", "");
    d.format = o.value("format", "");
    if (!d.format.empty() && !storage::format_supported(d.format))
        return qmp::fail(where + ": format '" + d.format + "' is not supported" +
                         (storage::format_known(d.format) ? " yet (supported: raw, qcow2)" : ""));
    d.interface = o.value("if", "ide");
    if (d.interface != "ide" && d.interface != "virtio" && d.interface != "none")
        return qmp::fail(where + ": if=" + d.interface + " is not supported yet (supported: ide, virtio, none)");
    std::string media = o.value("media", "disk");
    if (media != "disk" && media != "cdrom")
        return qmp::fail(where + ": invalid media '" + media + "'");
    d.cdrom = media == "cdrom";
    auto index = small_number(o, "index", where);
    auto bus = small_number(o, "bus", where);
    auto unit = small_number(o, "unit", where);
    for (auto* r : {&index, &bus, &unit})
        if (!*r)
            return std::unexpected(r->error());
    d.index = *index;
    d.bus = *bus;
    d.unit = *unit;
    if (o.contains("cache")) {
        auto c = storage::parse_cache_mode(o["cache"].get<std::string>());
        if (!c)
            return qmp::fail(where + ": " + c.error().message);
        d.cache = *c;
    }
    if (o.contains("aio")) {
        if (auto a = storage::parse_aio(o["aio"].get<std::string>()); !a)
            return qmp::fail(where + ": " + a.error().message);
    }
    if (o.contains("discard")) {
        auto m = storage::parse_discard(o["discard"].get<std::string>());
        if (!m)
            return qmp::fail(where + ": " + m.error().message);
        d.discard = *m;
    }
    if (o.contains("detect-zeroes")) {
        auto z = storage::parse_detect_zeroes(o["detect-zeroes"].get<std::string>());
        if (!z)
            return qmp::fail(where + ": " + z.error().message);
        if (*z == storage::DetectZeroes::Unmap && d.discard != storage::DiscardMode::Unmap)
            return qmp::fail(where + ": setting detect-zeroes to unmap is not allowed without setting discard "
                                     "operation to unmap");
        d.detect_zeroes = *z;
    }
    auto ro = on_off(o, o.contains("read-only") ? "read-only" : "readonly", d.cdrom, where);
    auto snap = on_off(o, "snapshot", snapshot_all, where);
    if (!ro)
        return std::unexpected(ro.error());
    if (!snap)
        return std::unexpected(snap.error());
    d.read_only = *ro;
    d.snapshot = *snap && !d.read_only && !d.file.empty();
    for (auto [key, action] : {std::pair{"werror", &d.werror}, std::pair{"rerror", &d.rerror}}) {
        if (!o.contains(key))
            continue;
        std::string v = o[key].get<std::string>();
        if (!devices::parse_block_error_action(v, *action) || (*action == devices::BlockErrorAction::Enospc &&
                                                               std::string_view(key) == "rerror"))
            return qmp::fail(where + ": '" + v + "' invalid " + (std::string_view(key) == "werror" ? "write" : "read") +
                             " error action");
    }
    d.serial = o.value("serial", "");
    if (d.serial.size() > 20)
        return qmp::fail(where + ": serial '" + d.serial + "' is longer than 20 characters");
    if (d.cdrom && d.interface == "virtio")
        return qmp::fail(where + ": media=cdrom is not supported on if=virtio");
    if (d.file.empty() && !d.cdrom)
        return qmp::fail(where + ": a disk needs a file (only a cdrom may be empty)");
    d.id = o.value("id", "");
    d.node_name = o.value("node-name", "");
    return d;
}

} // namespace

qmp::Result<std::vector<DriveSpec>> parse_drives(const json& config, bool snapshot,
                                                 std::vector<devices::DeviceConfig>& devices)
{
    std::vector<DriveSpec> drives;
    int next_virtio = 0, next_none = 0, next_node = 100;
    bool ide_taken[k_ide_buses][k_ide_units] = {};
    for (const json& o : config.value("drives", json::array())) {
        if (!o.is_object())
            return qmp::fail("drives: each drive is an object of option strings");
        auto parsed = parse_one(o, snapshot);
        if (!parsed)
            return std::unexpected(parsed.error());
        DriveSpec d = std::move(*parsed);
        if (d.interface == "ide") {
            if (d.index >= 0) {
                d.bus = d.index / k_ide_units;
                d.unit = d.index % k_ide_units;
            } else if (d.unit < 0) { // the first free place, as QEMU: bus 0 unit 0, bus 0 unit 1, bus 1 ...
                int first = std::max(d.bus, 0) * k_ide_units, last = d.bus < 0 ? k_ide_buses * k_ide_units
                                                                              : first + k_ide_units;
                int place = first;
                while (place < last && ide_taken[place / k_ide_units][place % k_ide_units])
                    place++;
                d.bus = place / k_ide_units;
                d.unit = place % k_ide_units;
            } else if (d.bus < 0) {
                d.bus = 0;
            }
            if (d.bus >= k_ide_buses || d.unit >= k_ide_units)
                return qmp::fail("drive: IDE bus " + std::to_string(d.bus) + " unit " + std::to_string(d.unit) +
                                 " does not exist (2 buses of 2 units: index 0-3)");
            if (ide_taken[d.bus][d.unit])
                return qmp::fail("drive: IDE bus " + std::to_string(d.bus) + " unit " + std::to_string(d.unit) +
                                 " is already in use");
            ide_taken[d.bus][d.unit] = true;
            if (d.id.empty())
                d.id = "ide" + std::to_string(d.bus) + (d.cdrom ? "-cd" : "-hd") + std::to_string(d.unit);
        } else if (d.interface == "virtio") {
            int n = d.index >= 0 ? d.index : next_virtio;
            next_virtio = std::max(next_virtio, n + 1);
            if (d.id.empty())
                d.id = "virtio" + std::to_string(n);
        } else if (d.id.empty()) {
            d.id = "none" + std::to_string(d.index >= 0 ? d.index : next_none++);
        }
        for (auto& other : drives)
            if (other.id == d.id)
                return qmp::fail("drive: Duplicate ID '" + d.id + "' for drive");
        if (d.node_name.empty())
            d.node_name = "#block" + std::to_string(next_node++);
        if (d.interface == "virtio") {
            devices::DeviceConfig dev;
            dev.driver = "virtio-blk-pci";
            dev.props["drive"] = d.id;
            devices.push_back(std::move(dev));
        } else if (d.interface == "ide") {
            devices::DeviceConfig dev;
            dev.driver = d.cdrom ? "ide-cd" : "ide-hd";
            dev.props["drive"] = d.id;
            dev.props["bus"] = "ide." + std::to_string(d.bus);
            dev.props["unit"] = std::to_string(d.unit);
            devices.push_back(std::move(dev));
        }
        drives.push_back(std::move(d));
    }
    return drives;
}

qmp::Result<std::unique_ptr<Drive>> Drive::open(DriveSpec spec, const std::string& dir, const std::string& vm)
{
    std::unique_ptr<Drive> drive(new Drive(std::move(spec)));
    const DriveSpec& d = drive->m_spec;
    if (d.file.empty())
        return drive;
    storage::BackendOptions options;
    options.image.filename = d.file;
    options.image.format = d.format;
    options.image.read_only = d.read_only;
    options.image.cache = d.cache;
    options.detect_zeroes = d.detect_zeroes;
    options.discard = d.discard;
    std::string where = "drive '" + d.id + "'";
    if (d.snapshot) {
        // A temporary overlay over the image, which itself stays untouched.
        storage::ImageOptions base = options.image;
        base.read_only = true;
        base.open_backing = false;
        auto probe = storage::open_image(base);
        if (!probe)
            return qmp::fail(where + ": " + open_error(probe.error().message));
        std::string format(probe->get()->format_name());
        uint64_t size = probe->get()->size();
        probe->reset();
        std::string overlay = dir + "/snapshot-" + vm + "-" + d.id + ".qcow2";
        storage::qcow2::CreateOptions create;
        create.size = size;
        create.backing_file = d.file;
        create.backing_format = format;
        if (auto ok = storage::create_qcow2(overlay, create); !ok)
            return qmp::fail(where + ": cannot create the temporary snapshot overlay: " + ok.error().message);
        options.image.filename = overlay;
        options.image.format = "qcow2";
        auto backend = storage::BlockBackend::open(options);
        unlink(overlay.c_str()); // open: it lives as long as the drive
        if (!backend)
            return qmp::fail(where + ": " + open_error(backend.error().message));
        drive->m_backend = std::move(*backend);
        drive->m_backend->driver().set_node_name(d.node_name);
        return drive;
    }
    auto backend = storage::BlockBackend::open(options);
    if (!backend)
        return qmp::fail(where + ": " + open_error(backend.error().message));
    drive->m_backend = std::move(*backend);
    drive->m_backend->driver().set_node_name(d.node_name);
    return drive;
}

std::unique_ptr<Drive> Drive::adopt(DriveSpec spec, std::unique_ptr<storage::BlockBackend> backend)
{
    std::unique_ptr<Drive> drive(new Drive(std::move(spec)));
    drive->m_backend = std::move(backend);
    drive->root_changed();
    return drive;
}

std::string Drive::root_node_name() const
{
    return m_backend ? m_backend->driver().node_name() : m_spec.node_name;
}

void Drive::root_changed()
{
    if (!m_backend)
        return;
    m_spec.file = m_backend->driver().filename();
    m_spec.format = std::string(m_backend->driver().format_name());
}

Drive::~Drive() { close(); }

void Drive::close()
{
    if (!m_backend)
        return;
    // An export that still holds the backend closes it when it lets it go.
    if (m_backend.use_count() == 1)
        if (auto ok = m_backend->close(); !ok)
            log_error("drive '{}': {}", m_spec.id, ok.error().message);
    m_backend.reset();
}

void Drive::remove_medium()
{
    close();
    m_spec.file.clear();
}

qmp::Result<std::unique_ptr<storage::BlockBackend>> Drive::open_medium(const std::string& file,
                                                                      const std::string& format) const
{
    if (!format.empty() && !storage::format_supported(format))
        return qmp::fail("drive '" + m_spec.id + "': format '" + format + "' is not supported");
    storage::BackendOptions options;
    options.image.filename = file;
    options.image.format = format;
    options.image.read_only = m_spec.read_only;
    options.image.cache = m_spec.cache;
    options.detect_zeroes = m_spec.detect_zeroes;
    options.discard = m_spec.discard;
    auto backend = storage::BlockBackend::open(options);
    if (!backend)
        return qmp::fail(open_error(backend.error().message));
    return std::move(*backend);
}

void Drive::set_medium(std::unique_ptr<storage::BlockBackend> medium, const std::string& file,
                       const std::string& format)
{
    close();
    m_backend = std::move(medium);
    if (m_backend)
        m_backend->driver().set_node_name(m_spec.node_name);
    m_spec.file = file;
    m_spec.format = format;
}

devices::DriveConfig Drive::device_config() const
{
    devices::DriveConfig c;
    c.backend = m_backend.get();
    c.read_only = m_spec.read_only || (m_backend && m_backend->read_only());
    c.rerror = m_spec.rerror;
    c.werror = m_spec.werror;
    c.serial = m_spec.serial;
    return c;
}

json Drive::inserted() const
{
    if (!m_backend)
        return nullptr;
    storage::BlockDriver& top = m_backend->driver();
    NodeView view{m_spec.cache, m_spec.detect_zeroes, m_spec.snapshot ? top.filename() : m_spec.file};
    return node_info(top, view);
}

} // namespace emu::daemon
