// daemon/vm_block.cpp — a VM's block graph: monitor-owned nodes, node
// names, and the commit jobs with their events.
#include "daemon/vm.h"

#include "common/log.h"

#include <algorithm>

namespace emu::daemon {

using json = nlohmann::json;

namespace {

// Every layer of a chain and the file child of each.
void collect(storage::BlockDriver* top, std::vector<storage::BlockDriver*>& out)
{
    for (storage::BlockDriver* d = top; d; d = d->backing()) {
        if (std::find(out.begin(), out.end(), d->underlying()) != out.end())
            continue;
        out.push_back(d->underlying());
        storage::BlockDriver* f = d->file();
        if (f && std::find(out.begin(), out.end(), f->underlying()) == out.end())
            out.push_back(f->underlying());
    }
}

} // namespace

qmp::Result<void> Vm::open_blockdevs()
{
    for (const json& options : m_spec.config.value("blockdevs", json::array())) {
        auto node = open_blockdev(normalize_blockdev_options(options), node_env());
        if (!node)
            return qmp::fail("VM '" + name() + "': -blockdev: " + node.error().desc);
        add_node(std::move(*node));
    }
    return {};
}

void Vm::add_node(std::unique_ptr<BlockNode> node)
{
    storage::BlockDriver* file = node->driver->file();
    for (const std::string& child : node->children) {
        BlockNode* c = find_node(child);
        c->parent = node->name;
        c->role = file && file->underlying() == c->driver->underlying() ? "file" : "backing hd";
    }
    name_layers(node->backend->driver());
    m_nodes.push_back(std::move(node));
}

BlockNode* Vm::find_node(const std::string& name) const
{
    for (auto& n : m_nodes)
        if (n->name == name)
            return n.get();
    return nullptr;
}

std::vector<storage::BlockDriver*> Vm::named_drivers() const
{
    std::vector<storage::BlockDriver*> out;
    for (auto& d : m_drives)
        if (d->backend())
            collect(&d->backend()->driver(), out);
    for (auto& n : m_nodes)
        if (n->backend)
            collect(&n->backend->driver(), out);
    out.erase(std::remove_if(out.begin(), out.end(), [](storage::BlockDriver* d) { return d->node_name().empty(); }),
              out.end());
    return out;
}

std::string Vm::node_name_conflict(const std::string& name) const
{
    for (auto& d : m_drives)
        if (d->spec().id == name)
            return "node-name=" + name + " is conflicting with a device id";
    for (auto& d : m_spec.drives)
        if (d.id == name)
            return "node-name=" + name + " is conflicting with a device id";
    if (find_node(name))
        return "Duplicate node name";
    for (storage::BlockDriver* d : named_drivers())
        if (d->node_name() == name)
            return "Duplicate node name";
    for (auto& d : m_drives)
        if (d->spec().node_name == name)
            return "Duplicate node name";
    return {};
}

std::string Vm::auto_node_name()
{
    for (;;) {
        std::string name = "#block" + std::to_string(m_next_node++);
        if (node_name_conflict(name).empty())
            return name;
    }
}

void Vm::name_layers(storage::BlockDriver& top)
{
    for (storage::BlockDriver* d = &top; d; d = d->backing()) {
        if (d->node_name().empty())
            d->set_node_name(auto_node_name());
        if (storage::BlockDriver* f = d->file(); f && f->node_name().empty())
            f->set_node_name(auto_node_name());
    }
}

NodeEnv Vm::node_env()
{
    NodeEnv env;
    env.find = [this](const std::string& n) { return find_node(n); };
    env.name_conflict = [this](const std::string& n) { return node_name_conflict(n); };
    env.auto_name = [this] { return auto_node_name(); };
    return env;
}

void Vm::prune_nodes()
{
    std::vector<storage::BlockDriver*> live;
    for (auto& d : m_drives)
        if (d->backend())
            collect(&d->backend()->driver(), live);
    for (auto it = m_nodes.begin(); it != m_nodes.end();) {
        BlockNode& n = **it;
        bool gone = n.in_drive && std::find(live.begin(), live.end(), n.driver) == live.end();
        if (gone) {
            for (auto& other : m_nodes)
                if (other->parent == n.name)
                    other->parent.clear();
            it = m_nodes.erase(it);
        } else {
            ++it;
        }
    }
}

CommitJob* Vm::job_on(const storage::BlockBackend* backend) const
{
    for (auto& [id, entry] : m_jobs)
        if (entry.backend == backend)
            return entry.job.get();
    return nullptr;
}

CommitJob* Vm::find_job(const std::string& id) const
{
    auto it = m_jobs.find(id);
    return it == m_jobs.end() ? nullptr : it->second.job.get();
}

std::vector<CommitJob*> Vm::jobs() const
{
    std::vector<CommitJob*> out;
    for (auto& [id, entry] : m_jobs)
        out.push_back(entry.job.get());
    return out;
}

qmp::Result<void> Vm::start_commit(CommitJob::Params params, Drive* drive)
{
    const std::string id = params.id;
    const storage::BlockBackend* backend = params.backend;
    auto job = CommitJob::start(std::move(params), [this, id](CommitJob::Outcome outcome, std::string error) {
        on_loop([id, outcome, error](Vm& vm) { vm.job_progress(id, outcome, error); });
    });
    if (!job)
        return std::unexpected(job.error());
    m_jobs[id] = JobEntry{std::move(*job), backend, drive};
    return {};
}

void Vm::job_progress(const std::string& id, CommitJob::Outcome outcome, const std::string& error)
{
    auto it = m_jobs.find(id);
    if (it == m_jobs.end())
        return;
    CommitJob& job = *it->second.job;
    if (outcome == CommitJob::Outcome::Ready) {
        m_events.emit("BLOCK_JOB_READY", job.event_data());
        return;
    }
    const char* event = "BLOCK_JOB_COMPLETED";
    auto ok = job.finish(outcome);
    json data = job.event_data();
    if (outcome == CommitJob::Outcome::Cancelled)
        event = "BLOCK_JOB_CANCELLED";
    else if (outcome == CommitJob::Outcome::Failed)
        data["error"] = error;
    else if (!ok)
        data["error"] = ok.error().desc;
    Drive* drive = it->second.drive;
    m_jobs.erase(it);
    if (drive && drive->backend()) {
        drive->root_changed();
        name_layers(drive->backend()->driver());
    }
    prune_nodes();
    if (data.contains("error"))
        log_warn("{}: block job '{}' failed: {}", name(), id, data["error"].get<std::string>());
    m_events.emit(event, data);
}

void Vm::stop_jobs()
{
    m_jobs.clear(); // each stops its thread and makes its base read-only again
}

} // namespace emu::daemon
