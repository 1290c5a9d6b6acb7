// devices/virtio/virtio_blk.cpp — virtio-blk: properties, features, the
// configuration space, cache mode, reset and drain (requests are in
// virtio_blk_request.cpp).
#include "devices/virtio/virtio_blk.h"

#include "devices/virtio/virtio_blk_request.h"

#include <bit>
#include <fmt/format.h>

namespace emu::devices {

using namespace virtio_blk;

namespace {

constexpr uint32_t kSizeMax = 1u << 20; // advertised largest segment (not enforced)
constexpr uint32_t kPciClassStorageScsi = 0x010000;

uint64_t bit(unsigned n) { return uint64_t(1) << n; }

} // namespace

std::span<const FieldDesc> VirtioBlkState::fields()
{
    static const FieldDesc table[] = {
        field<&VirtioBlkState::writeback>("writeback"),
    };
    return table;
}

mem::Result<std::unique_ptr<VirtioBlk>> VirtioBlk::create(const VirtioBlkConfig& c, BusMaster& memory)
{
    const std::string& id = c.id;
    auto pow2_in = [](uint64_t v, uint64_t lo, uint64_t hi) { return v >= lo && v <= hi && std::has_single_bit(v); };
    if (!c.drive)
        return mem::fail(fmt::format("{}: a drive is required (virtio-blk has no removable medium)", id));
    if (c.disable_legacy && c.disable_modern)
        return mem::fail(fmt::format("{}: disable-legacy and disable-modern leave no interface", id));
    if (c.num_queues < 1 || c.num_queues > VirtioBlkConfig::kMaxQueues)
        return mem::fail(
            fmt::format("{}: num-queues {} is out of range (1..{})", id, c.num_queues, VirtioBlkConfig::kMaxQueues));
    if (!pow2_in(c.queue_size, 4, VirtioBlkConfig::kMaxQueueSize))
        return mem::fail(fmt::format("{}: queue-size {} is not a power of two in 4..{}", id, c.queue_size,
                                     VirtioBlkConfig::kMaxQueueSize));
    if (c.serial.size() > kIdBytes)
        return mem::fail(fmt::format("{}: serial '{}' is longer than {} bytes", id, c.serial, kIdBytes));
    if (!pow2_in(c.logical_block_size, 512, 32768))
        return mem::fail(
            fmt::format("{}: logical_block_size {} is not a power of two in 512..32768", id, c.logical_block_size));
    if (c.physical_block_size &&
        !pow2_in(c.physical_block_size, c.logical_block_size, uint64_t(c.logical_block_size) << 15))
        return mem::fail(fmt::format("{}: physical_block_size {} is not a power of two >= logical_block_size {}", id,
                                     c.physical_block_size, c.logical_block_size));
    if (c.min_io_size % c.logical_block_size || c.opt_io_size % c.logical_block_size ||
        c.min_io_size / c.logical_block_size > 0xffff)
        return mem::fail(fmt::format("{}: min_io_size {} / opt_io_size {} are not multiples of the logical block "
                                     "size {} (or min_io_size is too large)",
                                     id, c.min_io_size, c.opt_io_size, c.logical_block_size));
    if (c.discard_granularity % c.logical_block_size)
        return mem::fail(fmt::format("{}: discard_granularity {} is not a multiple of the logical block size {}", id,
                                     c.discard_granularity, c.logical_block_size));
    if (c.max_segments < 1 || c.max_segments > VirtioBlkConfig::kMaxSegments)
        return mem::fail(fmt::format("{}: max-segments {} is out of range (1..{})", id, c.max_segments,
                                     VirtioBlkConfig::kMaxSegments));
    uint32_t sectors_per_block = c.logical_block_size / 512;
    if (c.max_discard_sectors < sectors_per_block || c.max_write_zeroes_sectors < sectors_per_block)
        return mem::fail(fmt::format("{}: max-discard-sectors / max-write-zeroes-sectors below one logical block", id));
    unsigned vectors = c.vectors == VirtioBlkConfig::kAutoVectors ? c.num_queues + 1u : c.vectors;
    if (vectors > Msix::kMaxVectors)
        return mem::fail(fmt::format("{}: vectors {} is more than {}", id, vectors, Msix::kMaxVectors));

    bool read_only = c.read_only || c.drive->read_only();
    uint64_t features =
        bit(kFeatureSizeMax) | bit(kFeatureSegMax) | bit(kFeatureBlkSize) | bit(kFeatureFlush) | bit(kFeatureTopology);
    if (c.config_wce)
        features |= bit(kFeatureConfigWce);
    if (c.num_queues > 1)
        features |= bit(kFeatureMq);
    if (read_only)
        features |= bit(kFeatureRo);
    if (c.discard && !read_only)
        features |= bit(kFeatureDiscard);
    if (c.write_zeroes && !read_only)
        features |= bit(kFeatureWriteZeroes);
    return std::unique_ptr<VirtioBlk>(new VirtioBlk(c, memory, features, c.num_queues, vectors));
}

VirtioBlk::VirtioBlk(const VirtioBlkConfig& config, BusMaster& memory, uint64_t features, uint16_t queues,
                     unsigned vectors)
    : VirtioPciDevice(config.id, kVirtioId, kPciClassStorageScsi, memory,
                      VirtioPciOptions{.disable_legacy = config.disable_legacy,
                                       .disable_modern = config.disable_modern,
                                       .msix_vectors = vectors,
                                       .indirect_desc = config.indirect_desc,
                                       .event_idx = config.event_idx},
                      features, queues, config.queue_size, kConfigSize),
      m_cfg(config), m_drive(*config.drive), m_read_only(config.read_only || config.drive->read_only())
{
    m_busy.assign(queues, std::vector<bool>(config.queue_size, false));
    m_blk.writeback = config.write_cache ? 1 : 0;
    fill_config();
}

VirtioBlk::~VirtioBlk() { drain(); }

void VirtioBlk::fill_config()
{
    const VirtioBlkConfig& c = m_cfg;
    uint32_t lbs = c.logical_block_size;
    store_config(kCfgCapacity, m_drive.size() / 512, 8);
    store_config(kCfgSizeMax, kSizeMax, 4);
    store_config(kCfgSegMax, c.queue_size - 2u, 4); // header and status take two descriptors
    store_config(kCfgBlkSize, lbs, 4);
    uint32_t pbs = c.physical_block_size ? c.physical_block_size : lbs;
    store_config(kCfgPhysicalBlockExp, unsigned(std::countr_zero(pbs / lbs)), 1);
    store_config(kCfgAlignmentOffset, 0, 1);
    store_config(kCfgMinIoSize, c.min_io_size / lbs, 2);
    store_config(kCfgOptIoSize, c.opt_io_size / lbs, 4);
    store_config(kCfgWriteback, m_blk.writeback, 1);
    store_config(kCfgNumQueues, num_queues(), 2);
    store_config(kCfgMaxDiscardSectors, c.max_discard_sectors, 4);
    store_config(kCfgMaxDiscardSeg, c.max_segments, 4);
    store_config(kCfgDiscardAlignment, (c.discard_granularity ? c.discard_granularity : lbs) / 512, 4);
    store_config(kCfgMaxWriteZeroesSectors, c.max_write_zeroes_sectors, 4);
    store_config(kCfgMaxWriteZeroesSeg, c.max_segments, 4);
    store_config(kCfgWriteZeroesMayUnmap, 1, 1);
}

bool VirtioBlk::writethrough() const { return m_blk.writeback == 0; }

void VirtioBlk::features_accepted()
{
    // The cache mode the specification implies for what was negotiated.
    if (negotiated(kFeatureConfigWce)) {
        if (!negotiated(kFeatureFlush))
            m_blk.writeback = 0;
    } else {
        m_blk.writeback = negotiated(kFeatureFlush) && m_cfg.write_cache ? 1 : 0;
    }
    store_config(kCfgWriteback, m_blk.writeback, 1);
}

void VirtioBlk::config_space_write(unsigned offset, uint64_t value, unsigned size)
{
    // Only `writeback` is writable, and only with CONFIG_WCE (which a legacy
    // driver may have written before DRIVER_OK).
    if (!negotiated(kFeatureConfigWce) || kCfgWriteback < offset || kCfgWriteback >= offset + size)
        return;
    m_blk.writeback = (value >> 8 * (kCfgWriteback - offset) & 0xff) ? 1 : 0;
    store_config(kCfgWriteback, m_blk.writeback, 1);
}

void VirtioBlk::virtio_reset()
{
    // Requests in flight belong to the old generation now: their completions
    // are dropped (complete_locked) and counted down in m_stale.
    m_stale += m_current;
    m_current = 0;
    m_parked.clear();
    for (auto& busy : m_busy)
        std::fill(busy.begin(), busy.end(), false);
    m_blk.writeback = m_cfg.write_cache ? 1 : 0;
    fill_config();
}

void VirtioBlk::capacity_changed()
{
    store_config(kCfgCapacity, m_drive.size() / 512, 8);
    config_changed();
}

void VirtioBlk::drain()
{
    std::unique_lock lock(m_drain_mutex);
    m_drain_cv.wait(lock, [this] { return m_inflight_total.load() == 0; });
}

void VirtioBlk::end_inflight()
{
    std::lock_guard lock(m_drain_mutex);
    if (m_inflight_total.fetch_sub(1) == 1)
        m_drain_cv.notify_all();
}

void VirtioBlk::resume_after_error()
{
    std::deque<std::shared_ptr<Request>> parked;
    parked.swap(m_parked);
    for (auto& req : parked)
        if (req->generation == generation())
            start(req);
}

std::string VirtioBlk::dump() const
{
    std::string out = VirtioPciDevice::dump();
    out += dump_state(VirtioBlkState::fields(), &m_blk);
    return out;
}

} // namespace emu::devices
