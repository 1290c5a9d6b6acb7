// devices/ide/io.cpp — backend requests of the IDE model: submission with a
// generation, completion under the device lock, the werror/rerror actions,
// the retry of a stopped request, and the statistics.
#include "common/log.h"
#include "devices/bus_master.h"
#include "devices/ide/channel.h"

#include <cerrno>

namespace emu::devices {

void IdeIoTracker::begin()
{
    std::lock_guard lock(m_mutex);
    m_count++;
}

void IdeIoTracker::end()
{
    std::lock_guard lock(m_mutex);
    if (--m_count == 0)
        m_idle.notify_all();
}

void IdeIoTracker::wait_idle()
{
    std::unique_lock lock(m_mutex);
    m_idle.wait(lock, [this] { return m_count == 0; });
}

size_t IdeIoTracker::in_flight()
{
    std::lock_guard lock(m_mutex);
    return m_count;
}

} // namespace emu::devices

namespace emu::devices::ide {

FanIn::FanIn(size_t count, std::function<void(storage::Result<void>)> done) : m_left(count), m_done(std::move(done)) {}

void FanIn::arrive(storage::Result<void> r)
{
    std::function<void(storage::Result<void>)> done;
    storage::Result<void> result;
    {
        std::lock_guard lock(m_mutex);
        if (!r && m_result)
            m_result = std::move(r);
        if (--m_left != 0)
            return;
        done = std::move(m_done);
        result = std::move(m_result);
    }
    done(std::move(result));
}

// `start` hands a completion to the backend. The completion takes the device
// lock (BusMaster::run_locked) on the worker thread that finished the request,
// so `start` must never complete synchronously (BlockBackend always queues).
void IdeChannel::submit(unsigned unit, const Start& start, Done done)
{
    DriveRuntime& rt = m_rt[unit];
    rt.in_flight++;
    uint32_t generation = rt.generation;
    m_ctx.io.begin();
    start([this, unit, generation, done = std::move(done)](storage::Result<void> r) {
        m_ctx.memory.run_locked([&] { complete(unit, generation, r, done); });
        m_ctx.io.end(); // the last use of the device: drain() may return now
    });
}

void IdeChannel::complete(unsigned unit, uint32_t generation, const storage::Result<void>& r, const Done& done)
{
    DriveRuntime& rt = m_rt[unit];
    rt.in_flight--;
    if (generation != rt.generation) {
        // From before a reset: dropped. A soft reset waiting for it ends now.
        if (rt.in_flight == 0 && rt.reset_waiting && !(m_state.devctl & kSrst))
            finish_reset(unit);
        return;
    }
    done(r);
}

IdeChannel::Verdict IdeChannel::io_error(unsigned unit, bool is_read, const storage::Error& error)
{
    DriveRuntime& rt = m_rt[unit];
    BlockErrorAction action = is_read ? rt.config.rerror : rt.config.werror;
    int err = error.err ? error.err : EIO;
    if (action == BlockErrorAction::Enospc)
        action = err == ENOSPC ? BlockErrorAction::Stop : BlockErrorAction::Report;
    log_debug("{}: {} error ({}): {}", rt.id, is_read ? "read" : "write", int(action), error.message);
    if (action == BlockErrorAction::Ignore)
        return Verdict::Continue;
    bool stopping = action == BlockErrorAction::Stop;
    if (stopping)
        m_state.drives[unit].io_stopped = true;
    if (rt.config.on_io_error)
        rt.config.on_io_error(is_read, err, stopping);
    return stopping ? Verdict::Stopped : Verdict::Fail;
}

// The request a stop kept, once more, from the state it left.
void IdeChannel::restart(unsigned unit)
{
    Drive& d = m_state.drives[unit];
    switch (d.op) {
    case Op::AtaRead: ata_read_next(unit); break;
    case Op::AtaWrite: ata_write_block(unit); break;
    case Op::Flush: flush_submit(unit); break;
    case Op::CdRead: cd_read_next(unit); break;
    case Op::Dsm:
        if (d.dma_pending)
            dma_kick();
        else
            dsm_ranges_received(unit);
        break;
    case Op::AtaDmaRead:
    case Op::AtaDmaWrite:
    case Op::CdDmaRead: dma_kick(); break;
    default: break;
    }
}

void IdeChannel::resume_after_error()
{
    for (unsigned unit = 0; unit < 2; ++unit) {
        Drive& d = m_state.drives[unit];
        if (!present(unit) || !d.io_stopped)
            continue;
        d.io_stopped = false;
        restart(unit);
    }
}

// ---- statistics ------------------------------------------------------------

void IdeChannel::stats_begin(unsigned unit) { m_rt[unit].started = std::chrono::steady_clock::now(); }

void IdeChannel::stats_done(unsigned unit, IdeIoStats IdeBlockStats::*kind, uint64_t bytes)
{
    DriveRuntime& rt = m_rt[unit];
    IdeIoStats& s = rt.stats.*kind;
    s.operations++;
    s.bytes += bytes;
    auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - rt.started);
    s.total_time_ns += uint64_t(ns.count());
}

void IdeChannel::stats_failed(unsigned unit, IdeIoStats IdeBlockStats::*kind) { (m_rt[unit].stats.*kind).failed++; }
void IdeChannel::stats_invalid(unsigned unit, IdeIoStats IdeBlockStats::*kind) { (m_rt[unit].stats.*kind).invalid++; }

} // namespace emu::devices::ide
