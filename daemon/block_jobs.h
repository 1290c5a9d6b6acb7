// daemon/block_jobs.h — block jobs (QEMU's BlockJob, 2.10 flavour): for now
// the commit job behind block-commit.
//
// The copy runs on a thread of its own, one run at a time under the drive's
// BlockBackend lock, so the guest's I/O goes on between runs. An active
// commit (top is the active layer) tracks what the guest writes
// (BlockBackend write tracking) and copies it again until top and base
// agree: then BLOCK_JOB_READY, and it keeps them in step until
// block-job-complete (the base becomes the active layer) or block-job-cancel
// (the base keeps what it had then, the active layer stays). Graph changes
// and events happen on the loop thread: the job thread posts them there.
#pragma once

#include "protocol/qmp/error.h"
#include "storage/backend.h"
#include "storage/commit.h"

#include <atomic>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

namespace emu::daemon {

class CommitJob {
public:
    struct Params {
        std::string id;                           // the job's id ("device" in its events)
        storage::BlockBackend* backend = nullptr; // the drive's
        storage::BlockDriver* top = nullptr;
        storage::BlockDriver* base = nullptr;
        bool active = false;      // top is the active layer
        uint64_t speed = 0;       // bytes per second, 0: no limit
        std::string backing_file; // intermediate: the name to record in top's overlay
    };
    // What the job thread tells the loop (through `post`).
    enum class Outcome { Ready, Copied, Cancelled, Failed };
    using Post = std::function<void(Outcome, std::string error)>;

    // Makes the base writable and large enough, starts write tracking for an
    // active commit; errors come back before any thread starts.
    static qmp::Result<std::unique_ptr<CommitJob>> start(Params params, Post post);
    ~CommitJob(); // stops the thread (as a forced cancel) if it still runs

    const std::string& id() const { return m_p.id; }
    nlohmann::json info() const;       // BlockJobInfo
    nlohmann::json event_data() const; // type, device, len, offset, speed
    bool ready() const { return m_ready.load(); }
    bool cancelling() const { return m_cancel.load(); }
    bool completing() const { return m_complete.load(); }
    void set_speed(uint64_t speed) { m_speed.store(speed); }
    void cancel(bool force);
    qmp::Result<void> complete();

    // On the loop thread, after the job thread said Ready and was asked to
    // complete or cancel, or said Copied: the last copy and the graph change,
    // then the base goes back to read-only unless it became the active layer.
    // Returns the layers that left the chain.
    qmp::Result<void> finish(Outcome outcome);
    // After a failure or a cancel before READY: base read-only again.
    void abandon();
    void join();

private:
    explicit CommitJob(Params params, Post post);
    void run();
    bool wait(std::chrono::milliseconds d); // false when asked to stop
    void throttle(uint64_t copied, std::chrono::steady_clock::time_point since);
    qmp::Result<void> copy_written();

    Params m_p;
    Post m_post;
    storage::CommitCopier m_copier;
    std::thread m_thread;
    std::mutex m_mutex;
    std::condition_variable m_cv;
    std::atomic<bool> m_cancel{false}, m_force{false}, m_complete{false}, m_ready{false};
    std::atomic<uint64_t> m_offset{0}, m_len{0}, m_speed{0};
};

} // namespace emu::daemon
