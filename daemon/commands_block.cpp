// daemon/commands_block.cpp — the block commands of a VM's QMP endpoint:
// query-block, query-blockstats, block_resize, eject, blockdev-change-medium
// and change (the 2.10 command, for block devices).
#include "daemon/dispatcher.h"
#include "daemon/vm.h"
#include "storage/image.h"

namespace emu::daemon {

using nlohmann::json;

namespace {

json stats_json(const devices::BlockStats& s)
{
    return {{"rd_bytes", s.rd_bytes},
            {"wr_bytes", s.wr_bytes},
            {"unmap_bytes", s.unmap_bytes},
            {"rd_operations", s.rd_operations},
            {"wr_operations", s.wr_operations},
            {"flush_operations", s.flush_operations},
            {"unmap_operations", s.unmap_operations},
            {"rd_total_time_ns", s.rd_total_time_ns},
            {"wr_total_time_ns", s.wr_total_time_ns},
            {"flush_total_time_ns", s.flush_total_time_ns},
            {"unmap_total_time_ns", s.unmap_total_time_ns},
            {"wr_highest_offset", s.wr_highest_offset},
            {"rd_merged", 0},
            {"wr_merged", 0},
            {"unmap_merged", 0},
            {"failed_rd_operations", s.failed_rd_operations},
            {"failed_wr_operations", s.failed_wr_operations},
            {"failed_flush_operations", s.failed_flush_operations},
            {"failed_unmap_operations", s.failed_unmap_operations},
            {"invalid_rd_operations", s.invalid_rd_operations},
            {"invalid_wr_operations", s.invalid_wr_operations},
            {"invalid_flush_operations", s.invalid_flush_operations},
            {"invalid_unmap_operations", s.invalid_unmap_operations},
            {"account_invalid", true},
            {"account_failed", true},
            {"timed_stats", json::array()}};
}

// The device a command names: 'device' (the drive id) or 'id' (the device's).
qmp::Result<Drive*> named_drive(Context& ctx, const json& args)
{
    std::string name = args.value("device", args.value("id", ""));
    if (name.empty())
        return qmp::fail("Need exactly one of 'device' and 'id'");
    if (Drive* d = ctx.vm->find_drive(name))
        return d;
    for (auto& info : ctx.vm->machine().block_devices())
        if (info.qdev == name)
            if (Drive* d = ctx.vm->find_drive(info.drive))
                return d;
    return qmp::fail("Device '" + name + "' not found", qmp::ErrorClass::DeviceNotFound);
}

} // namespace

void register_block_commands(Dispatcher& d)
{
    d.add("query-block", [](Context& ctx, const json&) -> qmp::Result<json> {
        auto devices = ctx.vm->machine().block_devices();
        json list = json::array();
        for (auto& drive : ctx.vm->drives()) {
            const DriveSpec& spec = drive->spec();
            json info = {{"device", spec.id}, {"locked", false}, {"removable", spec.cdrom}, {"io-status", "ok"}};
            for (auto& dev : devices) {
                if (dev.drive != drive->key())
                    continue;
                info["qdev"] = dev.qdev;
                info["locked"] = dev.locked;
                info["removable"] = dev.removable;
                info["io-status"] = dev.io_status;
                if (dev.has_tray)
                    info["tray_open"] = dev.tray_open;
            }
            if (drive->backend())
                info["inserted"] = drive->inserted();
            list.push_back(std::move(info));
        }
        return list;
    });
    d.add("query-blockstats", [](Context& ctx, const json&) -> qmp::Result<json> {
        auto devices = ctx.vm->machine().block_devices();
        json list = json::array();
        for (auto& drive : ctx.vm->drives()) {
            const DriveSpec& spec = drive->spec();
            devices::BlockStats stats;
            json entry = {{"device", spec.id}};
            for (auto& dev : devices)
                if (dev.drive == drive->key()) {
                    stats = dev.stats;
                    entry["qdev"] = dev.qdev;
                }
            if (drive->backend())
                entry["node-name"] = drive->root_node_name();
            entry["stats"] = stats_json(stats);
            list.push_back(std::move(entry));
        }
        return list;
    });
    d.add("block_resize", [](Context& ctx, const json& args) -> qmp::Result<json> {
        std::string name = args.value("device", args.value("node-name", ""));
        Drive* drive = name.empty() ? nullptr : ctx.vm->find_drive(name);
        if (!drive)
            return qmp::fail("Cannot find device='" + args.value("device", "") + "' nor node-name='" +
                             args.value("node-name", "") + "'");
        int64_t size = args["size"].get<int64_t>();
        if (size < 0)
            return qmp::fail("Parameter 'size' expects a >0 size");
        if (!drive->backend())
            return qmp::fail("Device '" + name + "' has no medium");
        if (drive->backend()->read_only())
            return qmp::fail("Block node is read-only");
        if (uint64_t(size) < drive->backend()->size())
            return qmp::fail("Shrinking images is currently not supported with block_resize; the guest would lose "
                             "data");
        if (uint64_t(size) == drive->backend()->size())
            return json::object();
        ctx.vm->machine().drain_block_devices();
        if (auto ok = drive->backend()->resize(uint64_t(size)); !ok)
            return qmp::fail("Device '" + drive->spec().id + "': " + ok.error().message);
        ctx.vm->machine().drive_resized(drive->key());
        return json::object();
    });
    d.add("eject", [](Context& ctx, const json& args) -> qmp::Result<json> {
        auto drive = named_drive(ctx, args);
        if (!drive)
            return std::unexpected(drive.error());
        if (auto ok = ctx.vm->machine().eject_medium((*drive)->key(), args.value("force", false)); !ok)
            return qmp::fail(ok.error());
        ctx.vm->machine().drain_block_devices();
        ctx.vm->nbd().medium_removed((*drive)->spec().id);
        (*drive)->remove_medium();
        return json::object();
    });
    auto change_medium = [](Context& ctx, Drive& drive, const std::string& file,
                            const std::string& format) -> qmp::Result<json> {
        if (!drive.spec().cdrom)
            return qmp::fail("Device '" + drive.spec().id + "' is not removable");
        auto medium = drive.open_medium(file, format);
        if (!medium)
            return std::unexpected(medium.error());
        storage::BlockBackend* raw = medium->get();
        if (auto ok = ctx.vm->machine().change_medium(drive.key(), raw); !ok)
            return qmp::fail(ok.error());
        ctx.vm->machine().drain_block_devices();
        ctx.vm->nbd().medium_removed(drive.spec().id);
        drive.set_medium(std::move(*medium), file, format);
        return json::object();
    };
    d.add("blockdev-change-medium", [change_medium](Context& ctx, const json& args) -> qmp::Result<json> {
        auto drive = named_drive(ctx, args);
        if (!drive)
            return std::unexpected(drive.error());
        std::string mode = args.value("read-only-mode", "retain");
        if (mode != "retain" && mode != "read-only")
            return qmp::fail("read-only-mode '" + mode + "' is not supported for CD-ROMs (use retain or read-only)");
        return change_medium(ctx, **drive, args["filename"].get<std::string>(), args.value("format", ""));
    });
    d.add("change", [change_medium](Context& ctx, const json& args) -> qmp::Result<json> {
        std::string device = args["device"].get<std::string>();
        if (device == "vnc")
            return qmp::fail("change vnc: the VNC server is not supported yet");
        Drive* drive = ctx.vm->find_drive(device);
        if (!drive)
            return qmp::fail("Device '" + device + "' not found", qmp::ErrorClass::DeviceNotFound);
        return change_medium(ctx, *drive, args["target"].get<std::string>(), args.value("arg", ""));
    });
}

} // namespace emu::daemon
