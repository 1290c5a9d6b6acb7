// daemon/commands_block_ops.cpp — the block graph commands of a VM's QMP
// endpoint: blockdev-add, blockdev-del, query-named-block-nodes, external
// snapshots (blockdev-snapshot-sync, blockdev-snapshot), internal snapshots
// (blockdev-snapshot-internal-sync, blockdev-snapshot-delete-internal-sync),
// block-commit and the block job commands, and __org.emud_commit (HMP commit).
#include "daemon/dispatcher.h"
#include "daemon/vm.h"
#include "storage/commit.h"
#include "storage/image.h"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>

namespace emu::daemon {

using nlohmann::json;

namespace {

// What a command works on: the backend of a drive or of a standalone node.
struct Target {
    storage::BlockBackend* backend = nullptr;
    Drive* drive = nullptr;
    BlockNode* node = nullptr;
    std::string name; // as the command named it
};

std::string busy_job(storage::BlockBackend& backend)
{
    return "Node '" + backend.driver().node_name() + "' is busy: block device is in use by block job: commit";
}

// A drive by id, or the active layer of a drive or standalone node by node name.
qmp::Result<Target> find_target(Vm& vm, const std::string& device, const std::string& node)
{
    Target t;
    t.name = device.empty() ? node : device;
    if (!device.empty()) {
        for (auto& d : vm.drives()) {
            if (d->spec().id != device)
                continue;
            if (!d->backend())
                return qmp::fail("Device '" + device + "' has no medium");
            t.backend = d->backend();
            t.drive = d.get();
            return t;
        }
    }
    if (!node.empty() || !device.empty()) {
        const std::string& n = node.empty() ? device : node;
        for (auto& d : vm.drives()) {
            if (d->backend() && d->root_node_name() == n) {
                t.backend = d->backend();
                t.drive = d.get();
                return t;
            }
        }
        if (BlockNode* b = vm.find_node(n); b && b->backend) {
            if (!b->parent.empty())
                return qmp::fail("Node '" + n + "' is busy: node is used as " + b->role + " of '" + b->parent + "'");
            t.backend = b->backend.get();
            t.node = b;
            return t;
        }
    }
    return std::unexpected(not_found(device, node));
}

// Puts `overlay` on top of the target's active layer, which becomes its
// backing image (read-only from now on).
qmp::Result<void> put_on_top(Vm& vm, Target& t, std::unique_ptr<storage::BlockDriver> overlay)
{
    auto ok = t.backend->with_root([&](std::unique_ptr<storage::BlockDriver>& root) -> storage::Result<void> {
        if (auto r = root->flush(); !r)
            return r;
        if (auto r = root->reopen(true); !r)
            return r;
        if (auto r = overlay->attach_backing(std::move(root)); !r)
            return r;
        root = std::move(overlay);
        return {};
    });
    if (!ok)
        return qmp::fail(ok.error().message);
    if (t.drive)
        t.drive->root_changed();
    vm.name_layers(t.backend->driver());
    return {};
}

qmp::Result<json> snapshot_sync(Context& ctx, const json& args)
{
    Vm& vm = *ctx.vm;
    auto t = find_target(vm, args.value("device", ""), args.value("node-name", ""));
    if (!t)
        return std::unexpected(t.error());
    if (vm.job_on(t->backend))
        return qmp::fail(busy_job(*t->backend));
    const std::string file = args["snapshot-file"].get<std::string>();
    const std::string format = args.value("format", "qcow2");
    const std::string mode = args.value("mode", "absolute-paths");
    const std::string node_name = args.value("snapshot-node-name", "");
    if (mode != "absolute-paths" && mode != "existing")
        return qmp::fail("Invalid parameter 'mode'");
    if (!node_name.empty() && !vm.node_name_conflict(node_name).empty())
        return qmp::fail("New snapshot node name already in use");
    if (format != "qcow2") {
        if (storage::format_supported(format))
            return qmp::fail("The snapshot does not support backing images");
        return qmp::fail("Unknown driver '" + format + "'");
    }
    storage::BlockDriver& old = t->backend->driver();
    if (mode == "absolute-paths") {
        storage::qcow2::CreateOptions create;
        create.size = old.size();
        create.backing_file = old.filename();
        create.backing_format = std::string(old.format_name());
        if (auto r = storage::create_qcow2(file, create); !r)
            return qmp::fail(r.error().message);
    }
    storage::ImageOptions io;
    io.filename = file;
    io.format = format;
    io.read_only = old.read_only();
    io.cache = t->drive ? t->drive->spec().cache : t->node->cache;
    io.open_backing = false;
    auto overlay = storage::open_image(io);
    if (!overlay)
        return qmp::fail(overlay.error().message);
    (*overlay)->set_node_name(node_name.empty() ? vm.auto_node_name() : node_name);
    if (auto ok = put_on_top(vm, *t, std::move(*overlay)); !ok)
        return std::unexpected(ok.error());
    return json::object();
}

qmp::Result<json> snapshot_ref(Context& ctx, const json& args)
{
    Vm& vm = *ctx.vm;
    const std::string node = args["node"].get<std::string>();
    const std::string overlay_name = args["overlay"].get<std::string>();
    auto t = find_target(vm, "", node);
    if (!t)
        return std::unexpected(t.error());
    if (vm.job_on(t->backend))
        return qmp::fail(busy_job(*t->backend));
    BlockNode* ov = vm.find_node(overlay_name);
    if (!ov)
        return std::unexpected(not_found("", overlay_name));
    if (ov->in_drive || !ov->backend || !ov->parent.empty() || ov->backend.get() == t->backend)
        return qmp::fail("The snapshot is already in use");
    if (ov->driver->backing())
        return qmp::fail("The snapshot already has a backing image");
    if (ov->driver->format_name() != "qcow2")
        return qmp::fail("The snapshot does not support backing images");
    if (ov->driver->size() != t->backend->size())
        return qmp::fail("The snapshot has " + std::to_string(ov->driver->size()) + " bytes, the image below it " +
                         std::to_string(t->backend->size()));
    auto drv = ov->backend->release_driver();
    if (!drv)
        return qmp::fail(drv.error().message);
    ov->backend.reset();
    ov->in_drive = true;
    if (auto ok = put_on_top(vm, *t, std::move(*drv)); !ok)
        return std::unexpected(ok.error());
    return json::object();
}

qmp::Result<json> snapshot_internal(Context& ctx, const json& args)
{
    const std::string device = args["device"].get<std::string>();
    const std::string name = args["name"].get<std::string>();
    auto t = find_target(*ctx.vm, device, device);
    if (!t)
        return std::unexpected(t.error());
    if (name.empty())
        return qmp::fail("Name is empty");
    if (ctx.vm->job_on(t->backend))
        return qmp::fail(busy_job(*t->backend));
    auto ok = t->backend->locked([&](storage::BlockDriver& top) -> qmp::Result<void> {
        if (top.format_name() != "qcow2")
            return qmp::fail("Block format '" + std::string(top.format_name()) + "' used by device '" + device +
                             "' does not support internal snapshots");
        if (top.read_only())
            return qmp::fail("Device '" + device + "' is read only");
        for (const storage::SnapshotInfo& s : top.info().snapshots)
            if (s.name == name)
                return qmp::fail("Snapshot with name '" + name + "' already exists on device '" + device + "'");
        auto now = std::chrono::system_clock::now().time_since_epoch();
        auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(now).count();
        storage::SnapshotInfo s;
        s.name = name;
        s.date_sec = uint32_t(ns / 1000000000);
        s.date_nsec = uint32_t(ns % 1000000000);
        if (auto r = top.flush(); !r)
            return qmp::fail(r.error().message);
        if (auto r = top.snapshot_create(s); !r)
            return qmp::fail("Failed to create snapshot '" + name + "' on device '" + device +
                             "': " + r.error().message);
        return {};
    });
    if (!ok)
        return std::unexpected(ok.error());
    return json::object();
}

qmp::Result<json> snapshot_delete_internal(Context& ctx, const json& args)
{
    const std::string device = args["device"].get<std::string>();
    const bool has_id = args.contains("id"), has_name = args.contains("name");
    const std::string id = args.value("id", ""), name = args.value("name", "");
    auto t = find_target(*ctx.vm, device, device);
    if (!t)
        return std::unexpected(t.error());
    if (!has_id && !has_name)
        return qmp::fail("Name or id must be provided");
    if (ctx.vm->job_on(t->backend))
        return qmp::fail(busy_job(*t->backend));
    return t->backend->locked([&](storage::BlockDriver& top) -> qmp::Result<json> {
        if (top.format_name() != "qcow2")
            return qmp::fail("Block format '" + std::string(top.format_name()) + "' used by device '" + device +
                             "' does not support internal snapshots");
        if (top.read_only())
            return qmp::fail("Device '" + device + "' is read only");
        const storage::SnapshotInfo* found = nullptr;
        auto snapshots = top.info().snapshots;
        for (const storage::SnapshotInfo& s : snapshots)
            if ((!has_id || s.id == id) && (!has_name || s.name == name)) {
                found = &s;
                break;
            }
        if (!found)
            return qmp::fail("Snapshot with id '" + (has_id ? id : "(null)") + "' and name '" +
                             (has_name ? name : "(null)") + "' does not exist on device '" + device + "'");
        json info = snapshot_info(*found);
        if (auto r = top.snapshot_delete(found->id); !r)
            return qmp::fail("Failed to delete snapshot: " + r.error().message);
        return info;
    });
}

// QEMU's block-commit (2.10): top and base are file names of the chain.
qmp::Result<json> block_commit(Context& ctx, const json& args)
{
    Vm& vm = *ctx.vm;
    const std::string device = args["device"].get<std::string>();
    auto t = find_target(vm, device, device);
    if (!t)
        return std::unexpected(t.error());
    if (!t->drive)
        return qmp::fail("Need a root block node");
    std::string job_id = args.value("job-id", device);
    if (args.contains("filter-node-name"))
        return qmp::fail("filter-node-name is not supported yet");
    int64_t speed = args.value("speed", int64_t(0));
    if (speed < 0)
        return qmp::fail("Invalid parameter 'speed'");
    if (vm.find_job(job_id))
        return qmp::fail("Job ID '" + job_id + "' already in use");
    if (vm.job_on(t->backend))
        return qmp::fail(busy_job(*t->backend));
    storage::BlockDriver& root = t->backend->driver();
    storage::BlockDriver* top = &root;
    const std::string top_name = args.value("top", "");
    if (!top_name.empty() && top_name != root.filename())
        top = storage::find_backing_image(root, top_name);
    if (!top)
        return qmp::fail("Top image file " + top_name + " not found");
    storage::BlockDriver* base = nullptr;
    const std::string base_name = args.value("base", "");
    if (!base_name.empty())
        base = storage::find_backing_image(*top, base_name);
    else if (top->backing())
        base = storage::chain_bottom(*top);
    if (!base || base == top)
        return base == top
            ? qmp::fail("cannot commit an image into itself")
            : qmp::fail("Base '" + (base_name.empty() ? std::string("NULL") : base_name) + "' not found");
    const bool active = top == &root;
    if (active && args.contains("backing-file"))
        return qmp::fail("'backing-file' specified, but 'top' is the active layer");
    CommitJob::Params p;
    p.id = job_id;
    p.backend = t->backend;
    p.top = top;
    p.base = base;
    p.active = active;
    p.speed = uint64_t(speed);
    p.backing_file = args.value("backing-file", "");
    if (auto ok = vm.start_commit(std::move(p), t->drive); !ok)
        return std::unexpected(ok.error());
    return json::object();
}

qmp::Result<CommitJob*> named_job(Vm& vm, const json& args)
{
    std::string id = args["device"].get<std::string>();
    CommitJob* job = vm.find_job(id);
    if (!job)
        return qmp::fail("Block job '" + id + "' not found", qmp::ErrorClass::DeviceNotActive);
    return job;
}

// HMP's synchronous commit of the active layer into its backing image,
// which then is empty: QEMU 2.10's bdrv_commit.
qmp::Result<void> commit_now(Vm& vm, Drive& drive, const std::string& name)
{
    if (!drive.backend())
        return qmp::fail("Device '" + name + "' has no medium");
    if (vm.job_on(drive.backend()))
        return qmp::fail("'commit' error for '" + name + "': " + std::strerror(EBUSY));
    auto ok = drive.backend()->locked([&](storage::BlockDriver& top) -> storage::Result<void> {
        storage::BlockDriver* base = top.backing();
        if (!base)
            return storage::fail(std::strerror(ENOTSUP), ENOTSUP);
        if (top.read_only())
            return storage::fail(std::strerror(EACCES), EACCES);
        if (auto r = base->reopen(false); !r)
            return r;
        storage::CommitCopier copier(top, *base);
        storage::Result<void> res = copier.prepare();
        for (uint64_t off = 0; res && off < copier.size();) {
            auto run = copier.step(off);
            if (!run) {
                res = std::unexpected(run.error());
                break;
            }
            if (run->length == 0)
                break;
            off += run->length;
        }
        if (res)
            res = base->flush();
        if (res)
            res = top.make_empty();
        if (auto r = base->reopen(true); res && !r)
            res = r;
        return res;
    });
    if (!ok)
        return qmp::fail("'commit' error for '" + name + "': " + ok.error().message);
    return {};
}

} // namespace

void register_block_op_commands(Dispatcher& d)
{
    d.add("blockdev-add", [](Context& ctx, const json& args) -> qmp::Result<json> {
        Vm& vm = *ctx.vm;
        auto node = open_blockdev(args, vm.node_env());
        if (!node)
            return std::unexpected(node.error());
        vm.add_node(std::move(*node));
        return json::object();
    });
    d.add("blockdev-del", [](Context& ctx, const json& args) -> qmp::Result<json> {
        Vm& vm = *ctx.vm;
        const std::string name = args["node-name"].get<std::string>();
        auto& nodes = vm.nodes();
        auto it = std::find_if(nodes.begin(), nodes.end(), [&](auto& n) { return n->name == name; });
        if (it == nodes.end()) {
            for (storage::BlockDriver* drv : vm.named_drivers())
                if (drv->node_name() == name)
                    return qmp::fail("Node " + name + " is not owned by the monitor");
            return qmp::fail("Failed to find node with node-name='" + name + "'");
        }
        BlockNode& node = **it;
        if (node.in_drive)
            return qmp::fail("Node " + name + " is in use");
        if (!node.parent.empty()) {
            if (node.role == "file")
                return qmp::fail("Block device " + name + " is in use");
            return qmp::fail("Node '" + name + "' is busy: node is used as " + node.role + " of '" + node.parent + "'");
        }
        std::vector<std::string> children = node.children;
        (void)node.backend->close();
        nodes.erase(it);
        for (const std::string& child : children)
            if (BlockNode* c = vm.find_node(child))
                c->parent.clear();
        return json::object();
    });
    d.add("query-named-block-nodes", [](Context& ctx, const json&) -> qmp::Result<json> {
        Vm& vm = *ctx.vm;
        json list = json::array();
        for (storage::BlockDriver* drv : vm.named_drivers()) {
            NodeView view;
            for (auto& dr : vm.drives())
                if (dr->backend() && &dr->backend()->driver() == drv)
                    view = NodeView{dr->spec().cache, dr->spec().detect_zeroes, {}};
            for (auto& n : vm.nodes())
                if (n->driver == drv)
                    view = NodeView{n->cache, n->detect_zeroes, {}};
            list.push_back(node_info(*drv, view));
        }
        return list;
    });
    d.add("blockdev-snapshot-sync", snapshot_sync);
    d.add("blockdev-snapshot", snapshot_ref);
    d.add("blockdev-snapshot-internal-sync", snapshot_internal);
    d.add("blockdev-snapshot-delete-internal-sync", snapshot_delete_internal);
    d.add("block-commit", block_commit);
    d.add("query-block-jobs", [](Context& ctx, const json&) -> qmp::Result<json> {
        json list = json::array();
        for (CommitJob* job : ctx.vm->jobs())
            list.push_back(job->info());
        return list;
    });
    d.add("block-job-cancel", [](Context& ctx, const json& args) -> qmp::Result<json> {
        auto job = named_job(*ctx.vm, args);
        if (!job)
            return std::unexpected(job.error());
        (*job)->cancel(args.value("force", false));
        return json::object();
    });
    d.add("block-job-complete", [](Context& ctx, const json& args) -> qmp::Result<json> {
        auto job = named_job(*ctx.vm, args);
        if (!job)
            return std::unexpected(job.error());
        if (auto ok = (*job)->complete(); !ok)
            return std::unexpected(ok.error());
        return json::object();
    });
    d.add("block-job-set-speed", [](Context& ctx, const json& args) -> qmp::Result<json> {
        auto job = named_job(*ctx.vm, args);
        if (!job)
            return std::unexpected(job.error());
        int64_t speed = args["speed"].get<int64_t>();
        if (speed < 0)
            return qmp::fail("Invalid parameter 'speed'");
        (*job)->set_speed(uint64_t(speed));
        return json::object();
    });
    d.add("__org.emud_commit", [](Context& ctx, const json& args) -> qmp::Result<json> {
        Vm& vm = *ctx.vm;
        const std::string device = args["device"].get<std::string>();
        if (device == "all") {
            for (auto& drive : vm.drives()) {
                if (!drive->backend() || !drive->backend()->driver().backing())
                    continue;
                if (auto ok = commit_now(vm, *drive, drive->spec().id); !ok)
                    return std::unexpected(ok.error());
            }
            return json::object();
        }
        Drive* drive = nullptr;
        for (auto& dr : vm.drives())
            if (dr->spec().id == device)
                drive = dr.get();
        if (!drive)
            return qmp::fail("Device '" + device + "' not found", qmp::ErrorClass::DeviceNotFound);
        if (auto ok = commit_now(vm, *drive, device); !ok)
            return std::unexpected(ok.error());
        return json::object();
    });
}

} // namespace emu::daemon
