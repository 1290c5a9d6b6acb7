// devices/virtio/virtio_blk.h — virtio-blk (VIRTIO 1.x, "Block Device") over a
// storage::BlockBackend, on the virtio PCI transport (virtio_pci.h).
//
// Requests: IN, OUT, FLUSH, GET_ID (the `serial`, NUL-padded to 20 bytes),
// DISCARD, WRITE_ZEROES (UNMAP flag honoured as "may unmap"; the backend's
// discard option decides). Anything else completes with UNSUPP, as do
// DISCARD/WRITE_ZEROES without the negotiated feature, with unknown flags, with
// UNMAP on a discard, or with more segments than max_*_seg. A request outside
// the disk (sector past the end, length running past it, not a multiple of the
// logical block size or misaligned to it), and a write to a read-only device
// (VIRTIO_BLK_F_RO), completes with IOERR without touching the disk. A chain
// with no 16-byte header or no status byte, or data buffers outside guest RAM,
// break the device (DEVICE_NEEDS_RESET, see virtio_pci.h).
//
// I/O is asynchronous (BlockBackend *_async) and zero-copy: data buffers are
// mapped into guest RAM (BusMaster::map) and each host-contiguous piece is one
// backend request; the request completes when the last piece does, under the
// device lock (BusMaster::run_locked): status byte, used element, interrupt
// (EVENT_IDX / NO_INTERRUPT respected). A queue has at most `queue_size`
// requests in flight: a head made available again while in flight breaks the
// device.
//
// Cache: VIRTIO_BLK_F_FLUSH is always offered (the backend's cache mode decides
// what a flush does: nothing with cache=unsafe). The cache starts in writeback
// mode if `write_cache` is set. With VIRTIO_BLK_F_CONFIG_WCE (`config_wce`) the
// driver may switch it through `writeback`; a driver that negotiates neither
// FLUSH nor CONFIG_WCE (or CONFIG_WCE without FLUSH) gets writethrough, as the
// specification requires. In writethrough mode every OUT / WRITE_ZEROES /
// DISCARD is followed by a backend flush before it completes.
//
// Errors: a backend failure goes through the error policy — `rerror` for
// reads, `werror` for everything else: Report completes with IOERR, Ignore
// with OK; Stop keeps the request (parked) until resume_after_error(); Enospc
// is Stop for ENOSPC and Report otherwise. on_io_error (set_io_error_handler)
// is told of every such failure, with `stopping` true when the request was
// parked: the integrator emits BLOCK_IO_ERROR and, when stopping, stops the VM.
//
// Lifetime and reset contract (no one may wait for block I/O while holding
// the device lock, since completions take it):
//   - drain() waits, WITHOUT the device lock, until no request of this device
//     is in flight (parked ones are not in flight). The machine calls it
//     before a system reset, before pausing for migration or savevm, and
//     before destroying the device; the destructor drains too, so it must
//     not run under the device lock either.
//   - reset (status 0 from the driver, or PciBus::reset() under the lock)
//     never waits: it bumps the generation; requests of older generations
//     complete into nothing (no status byte, no used element, no interrupt;
//     statistics still count them) and parked ones are dropped. While such
//     requests are in flight the status reads DEVICE_NEEDS_RESET instead of
//     0, so a modern driver waits for them. Data of a read in flight at a
//     guest-initiated reset may still land in the buffers the driver gave
//     (a legacy driver does not wait); after drain() nothing does.
//
// Threads: everything except drain() and the destructor runs under the VM's
// device lock; on_io_error and the MSI sink are called with it held.
#pragma once

#include "devices/block_device.h"
#include "devices/virtio/virtio_pci.h"
#include "storage/backend.h"

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

namespace emu::devices {

namespace virtio_blk {

inline constexpr uint16_t kVirtioId = 2;
// Feature bits.
inline constexpr unsigned kFeatureSizeMax = 1, kFeatureSegMax = 2, kFeatureRo = 5, kFeatureBlkSize = 6,
                          kFeatureFlush = 9, kFeatureTopology = 10, kFeatureConfigWce = 11, kFeatureMq = 12,
                          kFeatureDiscard = 13, kFeatureWriteZeroes = 14;
// Request types and status values.
inline constexpr uint32_t kTypeIn = 0, kTypeOut = 1, kTypeFlush = 4, kTypeGetId = 8, kTypeDiscard = 11,
                          kTypeWriteZeroes = 13, kTypeBarrier = 0x80000000u;
inline constexpr uint8_t kStatusOk = 0, kStatusIoErr = 1, kStatusUnsupp = 2;
inline constexpr uint32_t kWriteZeroesUnmap = 1;
inline constexpr unsigned kIdBytes = 20;
// Configuration layout.
inline constexpr unsigned kCfgCapacity = 0x00, kCfgSizeMax = 0x08, kCfgSegMax = 0x0c, kCfgBlkSize = 0x14,
                          kCfgPhysicalBlockExp = 0x18, kCfgAlignmentOffset = 0x19, kCfgMinIoSize = 0x1a,
                          kCfgOptIoSize = 0x1c, kCfgWriteback = 0x20, kCfgNumQueues = 0x22,
                          kCfgMaxDiscardSectors = 0x24, kCfgMaxDiscardSeg = 0x28, kCfgDiscardAlignment = 0x2c,
                          kCfgMaxWriteZeroesSectors = 0x30, kCfgMaxWriteZeroesSeg = 0x34,
                          kCfgWriteZeroesMayUnmap = 0x38, kConfigSize = 0x3c;

} // namespace virtio_blk

// -drive werror= / rerror= values.

// Properties (what -device virtio-blk-pci,... sets).
struct VirtioBlkConfig {
    static constexpr unsigned kAutoVectors = ~0u;
    static constexpr uint16_t kMaxQueues = 64;
    static constexpr uint16_t kMaxQueueSize = 1024;
    static constexpr uint32_t kMaxSegments = 32; // max_discard_seg / max_write_zeroes_seg

    std::string id = "virtio-blk0";         // names the device in logs and errors
    storage::BlockBackend* drive = nullptr; // required; outlives the device
    bool read_only = false;                 // also read-only when the drive is
    bool disable_legacy = false;            // modern-only (device 0x1042)
    bool disable_modern = false;            // legacy-only
    uint16_t num_queues = 1;                // `num-queues`, 1..64 (MQ offered when > 1)
    uint16_t queue_size = 256;              // `queue-size`, a power of two in 4..1024
    std::string serial;                     // GET_ID, at most 20 bytes
    uint32_t logical_block_size = 512;      // power of two, 512..32768
    uint32_t physical_block_size = 0;       // power of two >= logical; 0: the logical size
    uint32_t min_io_size = 0;               // bytes (topology; multiple of logical)
    uint32_t opt_io_size = 0;
    uint32_t discard_granularity = 0; // bytes; 0: the logical block size
    bool discard = true;              // offer VIRTIO_BLK_F_DISCARD
    bool write_zeroes = true;         // offer VIRTIO_BLK_F_WRITE_ZEROES
    uint32_t max_discard_sectors = 0x3fffff;
    uint32_t max_write_zeroes_sectors = 0x3fffff;
    uint32_t max_segments = 1; // per DISCARD / WRITE_ZEROES request, 1..kMaxSegments
    bool write_cache = true;   // `write-cache`: writeback at reset
    bool config_wce = true;    // `config-wce`: offer VIRTIO_BLK_F_CONFIG_WCE
    bool event_idx = true;
    bool indirect_desc = true;
    unsigned vectors = kAutoVectors; // MSI-X vectors; auto: num_queues + 1; 0: INTx only
    BlockErrorAction rerror = BlockErrorAction::Report;
    BlockErrorAction werror = BlockErrorAction::Enospc;
};

// For query-blockstats (names as there).
using VirtioBlkStats = BlockStats;

struct VirtioBlkState {
    uint8_t writeback = 0; // the cache mode the driver sees
    static std::span<const FieldDesc> fields();
};

class VirtioBlk final : public VirtioPciDevice {
public:
    using IoErrorHandler = std::function<void(bool is_read, int error, bool stopping)>;

    // Checks the properties ("virtio-blk0: queue-size 100 is not a power of
    // two in 4..1024"). The device's DMA goes through `memory`.
    static mem::Result<std::unique_ptr<VirtioBlk>> create(const VirtioBlkConfig& config, BusMaster& memory);
    ~VirtioBlk() override; // drains: not under the device lock
    VirtioBlk(const VirtioBlk&) = delete;
    VirtioBlk& operator=(const VirtioBlk&) = delete;

    void set_io_error_handler(IoErrorHandler handler) { m_on_io_error = std::move(handler); }
    // Resubmits the requests parked by the Stop policy (after `cont`).
    void resume_after_error();
    // Waits for every request in flight; never under the device lock.
    void drain();
    // The drive changed size (block_resize): new capacity, configuration
    // interrupt.
    void capacity_changed();

    VirtioBlkStats stats() const { return m_stats; }
    const VirtioBlkConfig& config() const { return m_cfg; }
    bool read_only() const { return m_read_only; }
    size_t parked_requests() const { return m_parked.size(); }
    unsigned requests_in_flight() const { return m_inflight_total.load(); }
    const VirtioBlkState& blk_state() const { return m_blk; }
    std::string dump() const;

    struct Request; // one request from its chain to its completion (virtio_blk_request.cpp)

private:
    VirtioBlk(const VirtioBlkConfig& config, BusMaster& memory, uint64_t features, uint16_t queues, unsigned vectors);

    // VirtioPciDevice hooks.
    void queue_notified(unsigned i) override;
    void features_accepted() override;
    void virtio_reset() override;
    void config_space_write(unsigned offset, uint64_t value, unsigned size) override;
    bool reset_pending() const override { return m_stale > 0; }

    void fill_config();
    bool writethrough() const;

    // Requests (virtio_blk_request.cpp).
    void handle_chain(unsigned queue, virtio::VirtqChain& chain);
    void start(const std::shared_ptr<Request>& req);
    void piece_done(const std::shared_ptr<Request>& req, const storage::Result<void>& result);
    bool complete_locked(const std::shared_ptr<Request>& req);
    void finish(const std::shared_ptr<Request>& req, uint8_t status);
    void account(const Request& req, bool failed);
    void end_inflight();

    VirtioBlkConfig m_cfg;
    storage::BlockBackend& m_drive;
    bool m_read_only;
    VirtioBlkState m_blk;
    VirtioBlkStats m_stats;
    IoErrorHandler m_on_io_error;
    std::vector<std::vector<bool>> m_busy;   // per queue, per head: in flight or parked
    virtio::VirtqChain m_chain;              // scratch of queue_notified()
    std::vector<std::span<uint8_t>> m_spans; // scratch of handle_chain()
    std::deque<std::shared_ptr<Request>> m_parked;
    unsigned m_current = 0; // requests in flight of this generation (device lock)
    unsigned m_stale = 0;   // of older generations (device lock)
    std::atomic<unsigned> m_inflight_total{0};
    std::mutex m_drain_mutex;
    std::condition_variable m_drain_cv;
};

} // namespace emu::devices
