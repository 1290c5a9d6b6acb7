// daemon/block_jobs.cpp — the commit job.
#include "daemon/block_jobs.h"

#include "common/log.h"

#include <cerrno>

namespace emu::daemon {

using json = nlohmann::json;
using namespace std::chrono_literals;

namespace {

constexpr uint64_t k_chunk = uint64_t(1) << 20; // one run of the first pass
constexpr uint64_t k_granularity = 64 * 1024;   // write tracking of an active commit

} // namespace

CommitJob::CommitJob(Params params, Post post)
    : m_p(std::move(params)), m_post(std::move(post)), m_copier(*m_p.top, *m_p.base, k_chunk)
{
    m_speed = m_p.speed;
}

qmp::Result<std::unique_ptr<CommitJob>> CommitJob::start(Params params, Post post)
{
    std::unique_ptr<CommitJob> job(new CommitJob(std::move(params), std::move(post)));
    CommitJob& j = *job;
    auto ok = j.m_p.backend->locked([&](storage::BlockDriver&) -> storage::Result<void> {
        if (auto r = j.m_p.base->reopen(false); !r)
            return r;
        if (auto r = j.m_copier.prepare(); !r) {
            (void)j.m_p.base->reopen(true);
            return r;
        }
        if (j.m_p.active)
            j.m_p.backend->start_write_tracking(k_granularity);
        return {};
    });
    if (!ok)
        return qmp::fail(ok.error().message);
    j.m_len = j.m_copier.size();
    j.m_thread = std::thread([&j] { j.run(); });
    return job;
}

CommitJob::~CommitJob()
{
    if (m_thread.joinable()) {
        m_force = true;
        cancel(true);
        join();
        abandon();
    }
}

void CommitJob::join()
{
    if (m_thread.joinable())
        m_thread.join();
}

json CommitJob::event_data() const
{
    return {{"type", "commit"},
            {"device", m_p.id},
            {"len", m_len.load()},
            {"offset", m_offset.load()},
            {"speed", m_speed.load()}};
}

json CommitJob::info() const
{
    json j = event_data();
    j["busy"] = !m_ready.load();
    j["paused"] = false;
    j["io-status"] = "ok";
    j["ready"] = m_ready.load();
    return j;
}

void CommitJob::cancel(bool force)
{
    if (force)
        m_force = true;
    m_cancel = true;
    std::lock_guard lock(m_mutex);
    m_cv.notify_all();
}

qmp::Result<void> CommitJob::complete()
{
    if (!m_p.active || !m_ready)
        return qmp::fail("The active block job '" + m_p.id + "' cannot be completed");
    if (m_cancel)
        return qmp::fail("Block job '" + m_p.id + "' is being cancelled");
    m_complete = true;
    std::lock_guard lock(m_mutex);
    m_cv.notify_all();
    return {};
}

bool CommitJob::wait(std::chrono::milliseconds d)
{
    std::unique_lock lock(m_mutex);
    m_cv.wait_for(lock, d, [this] { return m_cancel.load() || m_complete.load(); });
    return !m_cancel && !m_complete;
}

void CommitJob::throttle(uint64_t copied, std::chrono::steady_clock::time_point since)
{
    uint64_t speed = m_speed;
    if (!speed)
        return;
    auto due = since +
        std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                   std::chrono::duration<double>(double(copied) / double(speed)));
    while (std::chrono::steady_clock::now() < due && !m_cancel) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(due - std::chrono::steady_clock::now());
        std::unique_lock lock(m_mutex);
        m_cv.wait_for(lock, std::min<std::chrono::milliseconds>(left + 1ms, 100ms), [this] { return m_cancel.load(); });
    }
}

qmp::Result<void> CommitJob::copy_written()
{
    for (auto [offset, len] : m_p.backend->take_written()) {
        m_len += len;
        auto r = m_p.backend->locked([&](storage::BlockDriver&) { return m_copier.copy(offset, len); });
        if (!r)
            return qmp::fail(r.error().message);
        m_offset += len;
    }
    return {};
}

void CommitJob::run()
{
    const uint64_t size = m_copier.size();
    const auto since = std::chrono::steady_clock::now();
    uint64_t copied = 0;
    for (uint64_t off = 0; off < size;) {
        if (m_cancel) {
            m_post(Outcome::Cancelled, {});
            return;
        }
        auto run = m_p.backend->locked([&](storage::BlockDriver&) { return m_copier.step(off); });
        if (!run) {
            m_post(Outcome::Failed, run.error().message);
            return;
        }
        if (run->length == 0)
            break;
        off += run->length;
        m_offset = off;
        if (run->copied) {
            copied += run->length;
            throttle(copied, since);
        }
    }
    if (!m_p.active) {
        if (m_cancel)
            m_post(Outcome::Cancelled, {});
        else
            m_post(Outcome::Copied, {});
        return;
    }
    // Active commit: copy what the guest wrote meanwhile until caught up.
    for (;;) {
        if (m_cancel && (!m_ready || m_force)) {
            m_post(Outcome::Cancelled, {});
            return;
        }
        if (auto r = copy_written(); !r) {
            m_post(Outcome::Failed, r.error().desc);
            return;
        }
        if (!m_ready) {
            m_ready = true;
            m_post(Outcome::Ready, {});
        }
        if (m_complete || m_cancel) {
            // The loop copies the rest and changes the graph with the guest held off.
            m_post(Outcome::Copied, {});
            return;
        }
        wait(50ms);
    }
}

qmp::Result<void> CommitJob::finish(Outcome outcome)
{
    join();
    if (outcome != Outcome::Copied) {
        abandon();
        return {};
    }
    storage::BlockDriver* base = m_p.base;
    storage::Result<void> ok;
    if (m_p.active) {
        ok = m_p.backend->with_root([&](std::unique_ptr<storage::BlockDriver>& root) -> storage::Result<void> {
            for (auto [offset, len] : m_p.backend->take_written()) {
                m_len += len;
                if (auto r = m_copier.copy(offset, len); !r)
                    return r;
                m_offset += len;
            }
            m_p.backend->stop_write_tracking();
            if (auto r = base->flush(); !r)
                return r;
            if (!m_complete)
                return base->reopen(true); // cancelled once ready: base keeps a point-in-time copy
            auto old = storage::make_root(root, *base);
            if (!old)
                return std::unexpected(old.error());
            if (auto r = (*old)->close(); !r)
                log_warn("commit '{}': closing the committed layers: {}", m_p.id, r.error().message);
            return {};
        });
    } else {
        ok = m_p.backend->locked([&](storage::BlockDriver& root) -> storage::Result<void> {
            if (auto r = base->flush(); !r)
                return r;
            storage::BlockDriver* overlay = storage::overlay_of(root, *m_p.top);
            if (!overlay)
                return storage::fail("the committed image left the chain", EINVAL);
            std::string name = m_p.backing_file.empty() ? base->filename() : m_p.backing_file;
            bool was_ro = overlay->read_only();
            if (was_ro) {
                if (auto r = overlay->reopen(false); !r)
                    return r;
            }
            auto r = overlay->set_backing_file(name, std::string(base->format_name()));
            if (was_ro)
                (void)overlay->reopen(true);
            if (!r)
                return r;
            auto removed = storage::unlink_layers(*overlay, *base);
            if (!removed)
                return std::unexpected(removed.error());
            (void)(*removed)->close();
            return base->reopen(true);
        });
    }
    m_offset = m_len.load();
    if (!ok) {
        abandon();
        return qmp::fail(ok.error().message);
    }
    return {};
}

void CommitJob::abandon()
{
    auto ok = m_p.backend->locked([&](storage::BlockDriver&) -> storage::Result<void> {
        m_p.backend->stop_write_tracking();
        if (m_p.base->read_only())
            return {};
        if (auto r = m_p.base->flush(); !r)
            return r;
        return m_p.base->reopen(true);
    });
    if (!ok)
        log_warn("commit '{}': {}", m_p.id, ok.error().message);
}

} // namespace emu::daemon
