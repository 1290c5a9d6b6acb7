// storage/backend.h — BlockBackend: what devices, emu-img and the NBD server
// use. It owns a driver stack and applies the drive options: cache mode
// (O_DIRECT and flush policy), detect-zeroes, discard, read-only. Requests are
// synchronous, or asynchronous on a worker pool with a completion callback
// (called on a worker thread; a device posts the result to its own thread).
// Calls into the driver stack are serialized by the backend.
#pragma once

#include "storage/image.h"
#include "storage/worker_pool.h"

#include <atomic>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <set>
#include <utility>
#include <vector>

namespace emu::storage {

enum class DetectZeroes { Off, On, Unmap };
enum class DiscardMode { Ignore, Unmap };
enum class AioMode { Threads };

Result<DetectZeroes> parse_detect_zeroes(std::string_view text);
Result<DiscardMode> parse_discard(std::string_view text);
Result<AioMode> parse_aio(std::string_view text);

struct BackendOptions {
    ImageOptions image;
    DetectZeroes detect_zeroes = DetectZeroes::Off;
    DiscardMode discard = DiscardMode::Ignore;
    AioMode aio = AioMode::Threads;
    WorkerPool* pool = nullptr; // nullptr: WorkerPool::shared()
};

class BlockBackend {
public:
    using Completion = std::function<void(Result<void>)>;

    static Result<std::unique_ptr<BlockBackend>> open(const BackendOptions& options);
    // Wraps an already open driver stack (tests, emu-img).
    BlockBackend(std::unique_ptr<BlockDriver> driver, const BackendOptions& options);
    ~BlockBackend(); // drains, then closes (errors are logged)

    // Size and access mode of the root driver, kept apart so that devices may
    // ask from any thread while a graph change replaces the root.
    uint64_t size() const { return m_size.load(std::memory_order_acquire); }
    bool read_only() const { return m_read_only.load(std::memory_order_acquire); }
    BlockDriver& driver() { return *m_driver; }

    Result<void> read(uint64_t offset, std::span<uint8_t> buf);
    Result<void> write(uint64_t offset, std::span<const uint8_t> buf);
    Result<void> write_zeroes(uint64_t offset, uint64_t bytes, bool may_unmap = false);
    Result<void> discard(uint64_t offset, uint64_t bytes);
    Result<void> flush();
    Result<BlockStatus> block_status(uint64_t offset, uint64_t bytes);
    // Grows or shrinks the image (block_resize); callers drain first.
    Result<void> resize(uint64_t size);
    // Through the backing chain (block_status_above()), under the backend's lock.
    Result<BlockStatus> block_status_above(uint64_t offset, uint64_t bytes);

    // The buffer must stay valid until the completion runs.
    void read_async(uint64_t offset, std::span<uint8_t> buf, Completion done);
    void write_async(uint64_t offset, std::span<const uint8_t> buf, Completion done);
    void write_zeroes_async(uint64_t offset, uint64_t bytes, bool may_unmap, Completion done);
    void discard_async(uint64_t offset, uint64_t bytes, Completion done);
    void flush_async(Completion done);
    // Waits until every asynchronous request has completed.
    void drain();
    // Runs fn(driver) serialized with every request: what a block job or a
    // snapshot does to the driver stack while devices keep using it.
    template <class F>
    auto locked(F&& fn)
    {
        std::lock_guard lock(m_io);
        Refresh refresh{*this};
        return fn(*m_driver);
    }
    // Runs fn(root) with the owner of the root driver, serialized with every
    // request: a graph change replaces the root (an external snapshot puts an
    // overlay on top, an active commit makes the base the root). The root
    // must be a driver again when fn returns.
    template <class F>
    auto with_root(F&& fn)
    {
        std::lock_guard lock(m_io);
        Refresh refresh{*this};
        return fn(m_driver);
    }
    // Gives up the driver stack (blockdev-snapshot moves an overlay node
    // into a drive): drained and flushed first; the backend is unusable then.
    Result<std::unique_ptr<BlockDriver>> release_driver();
    // Write tracking (an active commit copies what the guest wrote since it
    // started): every write, write_zeroes and discard marks the chunks of
    // `granularity` bytes it touches; take_written() hands out the marked
    // ranges (merged, in order) and clears them.
    void start_write_tracking(uint64_t granularity);
    std::vector<std::pair<uint64_t, uint64_t>> take_written();
    void stop_write_tracking();
    // Drains, writes back metadata and marks the image clean.
    Result<void> close();

private:
    struct Refresh {
        BlockBackend& b;
        ~Refresh() { b.refresh(); }
    };
    void refresh();
    void submit(std::function<Result<void>()> op, Completion done);
    Result<void> after_write();

    std::unique_ptr<BlockDriver> m_driver;
    BackendOptions m_options;
    WorkerPool* m_pool;
    std::recursive_mutex m_io;
    std::atomic<uint64_t> m_size{0};
    std::atomic<bool> m_read_only{false};
    std::mutex m_inflight_mutex;
    std::condition_variable m_inflight_cv;
    size_t m_inflight = 0;
    bool m_closed = false;
    uint64_t m_track_granularity = 0; // 0: not tracking (m_io)
    std::set<uint64_t> m_written;     // chunk indices (m_io)
    void mark_written(uint64_t offset, uint64_t bytes);
};

} // namespace emu::storage
