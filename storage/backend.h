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

    uint64_t size() const { return m_driver->size(); }
    bool read_only() const { return m_driver->read_only(); }
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
    // Drains, writes back metadata and marks the image clean.
    Result<void> close();

private:
    void submit(std::function<Result<void>()> op, Completion done);
    Result<void> after_write();

    std::unique_ptr<BlockDriver> m_driver;
    BackendOptions m_options;
    WorkerPool* m_pool;
    std::mutex m_io;
    std::mutex m_inflight_mutex;
    std::condition_variable m_inflight_cv;
    size_t m_inflight = 0;
    bool m_closed = false;
};

} // namespace emu::storage
