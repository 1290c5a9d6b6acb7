// Device tests of virtio-pci and virtio-blk, driven as Linux's drivers drive
// them (virtio_driver.h): identity and capabilities, feature negotiation, the
// modern and legacy interfaces, MSI-X and INTx, multi-queue, every request
// type, read-only drives, cache modes, EVENT_IDX, indirect descriptors, a
// qcow2 drive. Hostile drivers, reset and error policies are in
// test_devices_virtio_hostile.cpp.
#include "common/log.h"
#include "tests/unit/virtio_driver.h"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <functional>

using namespace emu;
using namespace emu::test;
using namespace emu::devices::virtio;

namespace {

const bool g_quiet = (set_log_level(LogLevel::Error), true);

constexpr uint64_t kAllFeatures = ~uint64_t(0);

// VirtioBlkConfig with a few properties changed (designated initializers of a
// struct with strings warn with -Wextra).
VirtioBlkConfig props(const std::function<void(VirtioBlkConfig&)>& set)
{
    VirtioBlkConfig c;
    set(c);
    return c;
}

std::vector<uint8_t> guest_bytes(Bench& b, uint64_t addr, uint64_t len)
{
    auto l = b.locked();
    return {b.ram.ram.begin() + long(addr), b.ram.ram.begin() + long(addr + len)};
}

std::vector<uint8_t> disk_bytes(Bench& b, uint64_t offset, uint64_t len)
{
    auto l = b.locked();
    return {b.disk->m_data.begin() + long(offset), b.disk->m_data.begin() + long(offset + len)};
}

} // namespace

TEST_CASE("virtio-blk: PCI identity, BARs and capabilities")
{
    SUBCASE("transitional")
    {
        Bench b;
        CHECK(b.cfg_read(pci::kVendorId, 2) == 0x1af4);
        CHECK(b.cfg_read(pci::kDeviceId, 2) == 0x1001);
        CHECK(b.cfg_read(pci::kRevision, 1) == 0);
        CHECK(b.cfg_read(pci::kSubsystemVendorId, 2) == 0x1af4);
        CHECK(b.cfg_read(pci::kSubsystemId, 2) == vblk::kVirtioId);
        CHECK((b.cfg_read(pci::kRevision, 4) >> 8) == 0x010000); // class, sub-class, prog-if
        CHECK(b.cfg_read(pci::kInterruptPin, 1) == 1);
        CHECK(b.dev->bar_kind(0) == PciBarKind::Io);
        CHECK(b.dev->bar_kind(1) == PciBarKind::Mem32);
        CHECK(b.dev->bar_kind(4) == PciBarKind::Mem64);
        CHECK(b.dev->bar_size(4) == 0x4000);
        CHECK(b.dev->bar_size(1) == 0x1000);
        // Sizing the I/O BAR as firmware does.
        b.cfg_write(pci::kBar0, 0xffffffff, 4);
        CHECK(b.cfg_read(pci::kBar0, 4) == (~uint32_t(b.dev->bar_size(0) - 1) | 1));

        Driver d(b, false);
        d.setup_pci();
        CHECK(d.common == kModernBar + VirtioPciDevice::kCommonOffset);
        CHECK(d.common_len >= common::kSize);
        CHECK(d.isr == kModernBar + VirtioPciDevice::kIsrOffset);
        CHECK(d.device_len == vblk::kConfigSize);
        CHECK(d.notify_multiplier == 4);
        CHECK(d.notify_len == 4);
        CHECK(d.msix_cap != 0);
        CHECK(b.cfg_read(d.msix_cap + 2, 2) == 1); // table size - 1: config + 1 queue
        CHECK(b.dev->bar_mapped_at(4) == kModernBar);
        CHECK(b.dev->bar_mapped_at(0) == kIoBar);
        CHECK(d.cc_read(common::kNumQueues, 2) == 1);
        CHECK(d.cc_read(common::kQueueSize, 2) == 256);
        CHECK(d.cc_read(common::kQueueNotifyOff, 2) == 0);
    }
    SUBCASE("modern only")
    {
        Bench b(props([](auto& c) { c.disable_legacy = true; }));
        CHECK(b.cfg_read(pci::kDeviceId, 2) == 0x1042);
        CHECK(b.cfg_read(pci::kRevision, 1) == 1);
        CHECK(b.cfg_read(pci::kSubsystemId, 2) >= 0x40);
        CHECK(b.dev->bar_kind(0) == PciBarKind::None);
        CHECK(!b.dev->legacy_interface());
    }
    SUBCASE("legacy only, no MSI-X")
    {
        Bench b(props([](auto& c) {
            c.disable_modern = true;
            c.vectors = 0;
        }));
        CHECK(b.cfg_read(pci::kDeviceId, 2) == 0x1001);
        CHECK(b.dev->bar_kind(4) == PciBarKind::None);
        CHECK(b.dev->bar_kind(1) == PciBarKind::None);
        Driver d(b, true);
        d.setup_pci();
        CHECK(d.common == 0);
        CHECK(d.msix_cap == 0);
        CHECK((b.dev->offered_features() & bit(kFeatureVersion1)) == 0);
    }
}

TEST_CASE("virtio-blk: configuration errors name the device and the cause")
{
    storage::WorkerPool pool(1);
    storage::BackendOptions options;
    options.pool = &pool;
    storage::BlockBackend backend(std::make_unique<TestDisk>(1 << 20, false), options);
    RamBusMaster ram(1 << 20);
    auto error = [&](const std::function<void(VirtioBlkConfig&)>& set) {
        VirtioBlkConfig c;
        c.id = "vd9";
        c.drive = &backend;
        set(c);
        auto r = VirtioBlk::create(c, ram);
        REQUIRE(!r.has_value());
        return r.error().message;
    };
    CHECK(error([](auto& c) { c.drive = nullptr; }) == "vd9: a drive is required (virtio-blk has no removable medium)");
    CHECK(error([](auto& c) { c.queue_size = 100; }) == "vd9: queue-size 100 is not a power of two in 4..1024");
    CHECK(error([](auto& c) { c.num_queues = 65; }) == "vd9: num-queues 65 is out of range (1..64)");
    CHECK(error([](auto& c) {
              c.disable_legacy = true;
              c.disable_modern = true;
          }) == "vd9: disable-legacy and disable-modern leave no interface");
    CHECK(error([](auto& c) { c.serial = std::string(21, 'x'); }).find("longer than 20") != std::string::npos);
    CHECK(error([](auto& c) { c.logical_block_size = 1000; }).find("logical_block_size 1000") != std::string::npos);
    CHECK(error([](auto& c) { c.physical_block_size = 256; }).find("physical_block_size 256") != std::string::npos);
    CHECK(error([](auto& c) { c.vectors = 500; }) == "vd9: vectors 500 is more than 128");
    VirtioBlkConfig good;
    good.drive = &backend;
    CHECK(VirtioBlk::create(good, ram).has_value());
}

TEST_CASE("virtio-blk modern: features, write and read through MSI-X")
{
    Bench b;
    Driver d(b, false);
    uint64_t f = d.init(kAllFeatures, 1, true);
    CHECK((f & bit(kFeatureVersion1)) != 0);
    CHECK((f & bit(kFeatureIndirectDesc)) != 0);
    CHECK((f & bit(kFeatureEventIdx)) != 0);
    for (unsigned feature : {vblk::kFeatureFlush, vblk::kFeatureSegMax, vblk::kFeatureBlkSize, vblk::kFeatureDiscard,
                             vblk::kFeatureWriteZeroes, vblk::kFeatureConfigWce, vblk::kFeatureTopology})
        CHECK((f >> feature & 1) == 1);
    CHECK((f & bit(vblk::kFeatureRo)) == 0);
    CHECK((f & bit(vblk::kFeatureMq)) == 0);
    CHECK(b.status() == (kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk | kStatusDriverOk));

    CHECK(d.config_read(vblk::kCfgCapacity, 4) == 2048);
    CHECK(d.config_read(vblk::kCfgCapacity + 4, 4) == 0);
    CHECK(d.config_read(vblk::kCfgSegMax, 4) == 254);
    CHECK(d.config_read(vblk::kCfgBlkSize, 4) == 512);
    CHECK(d.config_read(vblk::kCfgWriteback, 1) == 1);
    CHECK(d.config_read(vblk::kCfgNumQueues, 2) == 1);
    CHECK(d.config_read(vblk::kCfgMaxDiscardSeg, 4) == 1);

    // A write from two buffers (1024 + 512 bytes) at sector 10.
    uint64_t a = d.alloc(1024), c = d.alloc(512);
    d.fill(a, 1024, 0x10);
    d.fill(c, 512, 0x90);
    auto w = d.request(0, vblk::kTypeOut, 10, {{a, 1024, false}, {c, 512, false}});
    REQUIRE(d.wait_used(0));
    CHECK(b.peek<uint8_t>(w.status) == vblk::kStatusOk);
    CHECK(d.used_elem(0, 0) == std::pair<uint32_t, uint32_t>{w.head, 1});
    CHECK(disk_bytes(b, 10 * 512, 1024) == guest_bytes(b, a, 1024));
    CHECK(disk_bytes(b, 12 * 512, 512) == guest_bytes(b, c, 512));
    CHECK(b.msi_count() == 1);
    CHECK(b.msis[0] == std::pair<uint64_t, uint32_t>{kMsiAddress, 0x41});

    // Read it back into three buffers.
    uint64_t r1 = d.alloc(512), r2 = d.alloc(512), r3 = d.alloc(512);
    auto r = d.request(0, vblk::kTypeIn, 10, {{r1, 512, true}, {r2, 512, true}, {r3, 512, true}});
    REQUIRE(d.wait_used(0));
    CHECK(b.peek<uint8_t>(r.status) == vblk::kStatusOk);
    CHECK(d.used_elem(0, 1) == std::pair<uint32_t, uint32_t>{r.head, 1537});
    CHECK(guest_bytes(b, r1, 512) == guest_bytes(b, a, 512));
    CHECK(guest_bytes(b, r2, 512) == guest_bytes(b, a + 512, 512));
    CHECK(guest_bytes(b, r3, 512) == guest_bytes(b, c, 512));
    CHECK(b.ram.written_bytes >= 1536);
    CHECK(b.msi_count() == 2);

    auto l = b.locked();
    VirtioBlkStats s = b.dev->stats();
    CHECK(s.wr_operations == 1);
    CHECK(s.wr_bytes == 1536);
    CHECK(s.rd_operations == 1);
    CHECK(s.rd_bytes == 1536);
    CHECK(s.wr_highest_offset == 13 * 512);
    CHECK(s.failed_rd_operations + s.failed_wr_operations == 0);
}

TEST_CASE("virtio-blk: block sizes and topology")
{
    Bench b(props([](auto& c) {
        c.logical_block_size = 4096;
        c.physical_block_size = 16384;
        c.min_io_size = 8192;
        c.opt_io_size = 65536;
        c.discard_granularity = 65536;
    }));
    Driver d(b, false);
    d.init(kAllFeatures);
    CHECK(d.config_read(vblk::kCfgBlkSize, 4) == 4096);
    CHECK(d.config_read(vblk::kCfgPhysicalBlockExp, 1) == 2);
    CHECK(d.config_read(vblk::kCfgMinIoSize, 2) == 2);
    CHECK(d.config_read(vblk::kCfgOptIoSize, 4) == 16);
    CHECK(d.config_read(vblk::kCfgDiscardAlignment, 4) == 128);
    CHECK(d.config_read(vblk::kCfgCapacity, 4) == 2048); // always 512-byte sectors
}

TEST_CASE("virtio modern: FEATURES_OK is refused for features never offered or without VERSION_1")
{
    Bench b;
    Driver d(b, false);
    d.setup_pci();
    CHECK(d.negotiate(bit(vblk::kFeatureFlush)) == 0); // no VERSION_1
    CHECK((d.read_status() & kStatusFeaturesOk) == 0);
    // DRIVER_OK without FEATURES_OK does not stick either.
    d.write_status(kStatusAcknowledge | kStatusDriver | kStatusDriverOk);
    CHECK((d.read_status() & kStatusDriverOk) == 0);

    d.write_status(0);
    d.write_status(kStatusAcknowledge | kStatusDriver);
    d.write_features(bit(kFeatureVersion1) | bit(40));
    d.write_status(kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk);
    CHECK((d.read_status() & kStatusFeaturesOk) == 0);

    // Feature writes after FEATURES_OK are ignored.
    CHECK(d.negotiate(bit(kFeatureVersion1) | bit(vblk::kFeatureFlush)) != 0);
    d.write_features(bit(kFeatureVersion1));
    CHECK(b.dev->driver_features() == (bit(kFeatureVersion1) | bit(vblk::kFeatureFlush)));
}

TEST_CASE("virtio-blk legacy: PFN rings, INTx and ISR read-to-clear")
{
    Bench b(props([](auto& c) { c.vectors = 0; }));
    Driver d(b, true);
    d.setup_pci();
    uint64_t host = d.device_features();
    CHECK((host >> 32) == 0);
    CHECK((host & bit(kFeatureAnyLayout)) != 0);
    d.init(kAllFeatures & 0xffffffff);
    CHECK(d.io_read(legacy::kQueueSize, 2) == 256);
    CHECK(d.io_read(legacy::kQueuePfn, 4) == (kRingBase >> 12));
    CHECK(d.config_read(vblk::kCfgCapacity, 4) == 2048); // at 0x14 without MSI-X
    CHECK(!b.intx_level());

    uint64_t a = d.alloc(512);
    d.fill(a, 512, 0x33);
    CHECK(d.run(0, vblk::kTypeOut, 7, {{a, 512, false}}) == vblk::kStatusOk);
    CHECK(disk_bytes(b, 7 * 512, 512) == guest_bytes(b, a, 512));
    CHECK(b.intx_level());
    CHECK((b.cfg_read(pci::kStatus, 2) & pci::kStatusIntx) != 0);
    CHECK(d.read_isr() == kIsrQueue);
    CHECK(!b.intx_level());
    CHECK(d.read_isr() == 0);

    // Interrupt Disable masks the line, not the ISR.
    uint64_t r = d.alloc(512);
    b.cfg_write(pci::kCommand, pci::kCommandIo | pci::kCommandMemory | pci::kCommandMaster | pci::kCommandIntxDisable,
                2);
    CHECK(d.run(0, vblk::kTypeIn, 7, {{r, 512, true}}) == vblk::kStatusOk);
    CHECK(guest_bytes(b, r, 512) == guest_bytes(b, a, 512));
    CHECK(!b.intx_level());
    b.cfg_write(pci::kCommand, pci::kCommandIo | pci::kCommandMemory | pci::kCommandMaster, 2);
    CHECK(b.intx_level());
    CHECK(d.read_isr() == kIsrQueue);
    CHECK(!b.intx_level());

    // PFN 0 disables the queue: notifications are ignored.
    d.io_write(legacy::kQueuePfn, 0, 4);
    CHECK(d.io_read(legacy::kQueuePfn, 4) == 0);
    uint16_t used = d.used_idx(0);
    d.notify(0);
    CHECK(d.used_idx(0) == used);
}

TEST_CASE("virtio-blk legacy with MSI-X: vector registers, configuration after them")
{
    Bench b;
    Driver d(b, true);
    d.init(kAllFeatures & 0xffffffff, 1, true);
    CHECK(d.io_read(legacy::kConfigVector, 2) == 0);
    CHECK(d.io_read(legacy::kQueueVector, 2) == 1);
    d.io_write(legacy::kQueueVector, 7, 2); // past the table
    CHECK(d.io_read(legacy::kQueueVector, 2) == kNoVector);
    d.io_write(legacy::kQueueVector, 1, 2);
    CHECK(d.config_read(vblk::kCfgCapacity, 4) == 2048); // at 0x18
    CHECK(d.io_read(0x14, 2) == 0);                      // the config vector, not the capacity
    uint64_t a = d.alloc(512);
    CHECK(d.run(0, vblk::kTypeIn, 0, {{a, 512, true}}) == vblk::kStatusOk);
    CHECK(b.msi_count() == 1);
    CHECK(!b.intx_level());
    CHECK(d.read_isr() == 0);
}

TEST_CASE("virtio MSI-X: masking, pending bits, function mask, bus mastering")
{
    Bench b;
    Driver d(b, false);
    d.init(kAllFeatures, 1, true);
    uint64_t a = d.alloc(512);
    auto pba = [&] {
        auto l = b.locked();
        return b.mem.read(kMsixBar + Msix::pba_offset(2), 4);
    };
    // Vector 1 masked: the message waits in the PBA.
    {
        auto l = b.locked();
        b.mem.write(kMsixBar + 16 + 12, 1, 4);
    }
    CHECK(d.run(0, vblk::kTypeIn, 0, {{a, 512, true}}) == vblk::kStatusOk);
    CHECK(b.msi_count() == 0);
    CHECK(pba() == 2);
    {
        auto l = b.locked();
        b.mem.write(kMsixBar + 16 + 12, 0, 4);
    }
    CHECK(b.msi_count() == 1);
    CHECK(pba() == 0);

    // Function mask.
    b.cfg_write(d.msix_cap + 2, Msix::kEnable | Msix::kFunctionMask, 2);
    CHECK(d.run(0, vblk::kTypeIn, 0, {{a, 512, true}}) == vblk::kStatusOk);
    CHECK(b.msi_count() == 1);
    b.cfg_write(d.msix_cap + 2, Msix::kEnable, 2);
    CHECK(b.msi_count() == 2);

    // Without bus mastering the message cannot be sent.
    b.cfg_write(pci::kCommand, pci::kCommandIo | pci::kCommandMemory, 2);
    CHECK(d.run(0, vblk::kTypeIn, 0, {{a, 512, true}}) == vblk::kStatusOk);
    CHECK(b.msi_count() == 2);
    b.cfg_write(pci::kCommand, pci::kCommandIo | pci::kCommandMemory | pci::kCommandMaster, 2);

    // A vector past the table reads back NO_VECTOR.
    d.cc_write(common::kQueueSelect, 0, 2);
    d.cc_write(common::kQueueMsixVector, 5, 2);
    CHECK(d.cc_read(common::kQueueMsixVector, 2) == kNoVector);
    d.cc_write(common::kMsixConfig, 2, 2);
    CHECK(d.cc_read(common::kMsixConfig, 2) == kNoVector);
    // MSI-X enabled: no INTx, no ISR.
    CHECK(!b.intx_level());
    CHECK(d.read_isr() == 0);
}

TEST_CASE("virtio-blk: multi-queue")
{
    Bench b(props([](auto& c) { c.num_queues = 4; }));
    Driver d(b, false);
    uint64_t f = d.init(kAllFeatures, 4, true);
    CHECK((f & bit(vblk::kFeatureMq)) != 0);
    CHECK(d.config_read(vblk::kCfgNumQueues, 2) == 4);
    CHECK(d.cc_read(common::kNumQueues, 2) == 4);
    CHECK(b.dev->msix()->vectors() == 5);
    for (unsigned q = 0; q < 4; ++q) {
        d.cc_write(common::kQueueSelect, q, 2);
        CHECK(d.cc_read(common::kQueueNotifyOff, 2) == q);
    }
    std::vector<uint64_t> bufs;
    for (unsigned q = 0; q < 4; ++q) {
        bufs.push_back(d.alloc(512));
        d.fill(bufs[q], 512, uint8_t(q * 40));
        d.request(q, vblk::kTypeOut, 100 + q, {{bufs[q], 512, false}});
    }
    for (unsigned q = 0; q < 4; ++q)
        REQUIRE(d.wait_used(q));
    for (unsigned q = 0; q < 4; ++q) {
        CHECK(disk_bytes(b, (100 + q) * 512, 512) == guest_bytes(b, bufs[q], 512));
        CHECK(d.used_idx(q) == 1);
    }
    auto l = b.locked();
    REQUIRE(b.msis.size() == 4);
    std::vector<uint32_t> data;
    for (auto& m : b.msis)
        data.push_back(m.second);
    std::sort(data.begin(), data.end());
    CHECK(data == std::vector<uint32_t>{0x41, 0x42, 0x43, 0x44});
}

TEST_CASE("virtio-blk: flush, discard, write zeroes, get-id, unsupported requests")
{
    Bench b(props([](auto& c) {
        c.serial = "emud-serial-123";
        c.max_segments = 2;
    }));
    Driver d(b, false);
    d.init(kAllFeatures, 1, false);
    auto seg = [&](std::vector<std::tuple<uint64_t, uint32_t, uint32_t>> segs) {
        uint64_t at = d.alloc(16 * segs.size());
        for (size_t i = 0; i < segs.size(); ++i) {
            b.poke<uint64_t>(at + 16 * i, std::get<0>(segs[i]));
            b.poke<uint32_t>(at + 16 * i + 8, std::get<1>(segs[i]));
            b.poke<uint32_t>(at + 16 * i + 12, std::get<2>(segs[i]));
        }
        return Buf{at, uint32_t(16 * segs.size()), false};
    };

    int flushes = b.disk->flushes;
    CHECK(d.run(0, vblk::kTypeFlush, 0, {}) == vblk::kStatusOk);
    CHECK(b.disk->flushes == flushes + 1);

    CHECK(d.run(0, vblk::kTypeDiscard, 0, {seg({{4, 4, 0}, {20, 2, 0}})}) == vblk::kStatusOk);
    CHECK(disk_bytes(b, 4 * 512, 2048) == std::vector<uint8_t>(2048, 0xdd));
    CHECK(disk_bytes(b, 20 * 512, 1024) == std::vector<uint8_t>(1024, 0xdd));
    CHECK(disk_bytes(b, 8 * 512, 1)[0] != 0xdd);

    CHECK(d.run(0, vblk::kTypeWriteZeroes, 0, {seg({{30, 3, vblk::kWriteZeroesUnmap}})}) == vblk::kStatusOk);
    CHECK(disk_bytes(b, 30 * 512, 1536) == std::vector<uint8_t>(1536, 0));
    CHECK(b.disk->unmaps_allowed == 1);
    CHECK(disk_bytes(b, 33 * 512, 1)[0] != 0);

    // Refused before touching the disk.
    int discards = b.disk->discards, zeroes = b.disk->zeroes;
    CHECK(d.run(0, vblk::kTypeDiscard, 0, {seg({{40, 1, vblk::kWriteZeroesUnmap}})}) == vblk::kStatusUnsupp);
    CHECK(d.run(0, vblk::kTypeWriteZeroes, 0, {seg({{40, 1, 2}})}) == vblk::kStatusUnsupp);
    CHECK(d.run(0, vblk::kTypeDiscard, 0, {seg({{40, 1, 0}, {41, 1, 0}, {42, 1, 0}})}) == vblk::kStatusUnsupp);
    CHECK(d.run(0, vblk::kTypeDiscard, 0, {seg({{2047, 2, 0}})}) == vblk::kStatusIoErr);
    CHECK(d.run(0, vblk::kTypeWriteZeroes, 0, {seg({{0, 0x400000, 0}})}) == vblk::kStatusIoErr); // > max sectors
    CHECK(d.run(0, vblk::kTypeDiscard, 0, {Buf{d.alloc(8), 8, false}}) == vblk::kStatusIoErr);
    CHECK(b.disk->discards == discards);
    CHECK(b.disk->zeroes == zeroes);

    // GET_ID: 20 bytes, NUL-padded; a short buffer gets a prefix.
    uint64_t id = d.alloc(20);
    d.fill(id, 20, 0xee);
    auto r = d.request(0, vblk::kTypeGetId, 0, {{id, 20, true}});
    REQUIRE(d.wait_used(0));
    CHECK(b.peek<uint8_t>(r.status) == vblk::kStatusOk);
    std::vector<uint8_t> want(20, 0);
    std::memcpy(want.data(), "emud-serial-123", 15);
    CHECK(guest_bytes(b, id, 20) == want);
    CHECK(d.used_elem(0, uint16_t(d.used_idx(0) - 1)).second == 21);
    uint64_t short_id = d.alloc(8);
    CHECK(d.run(0, vblk::kTypeGetId, 0, {{short_id, 8, true}}) == vblk::kStatusOk);
    CHECK(guest_bytes(b, short_id, 8) == std::vector<uint8_t>(want.begin(), want.begin() + 8));

    uint64_t any = d.alloc(512);
    CHECK(d.run(0, 10, 0, {{any, 512, true}}) == vblk::kStatusUnsupp); // GET_LIFETIME
    CHECK(d.run(0, 2, 0, {{any, 512, true}}) == vblk::kStatusUnsupp);  // SCSI_CMD
    CHECK(d.run(0, 14, 0, {seg({{0, 1, 0}})}) == vblk::kStatusUnsupp); // SECURE_ERASE

    auto l = b.locked();
    VirtioBlkStats s = b.dev->stats();
    CHECK(s.flush_operations == 1);
    CHECK(s.unmap_operations == 1);
    CHECK(s.unmap_bytes == 6 * 512);
    CHECK(s.wr_operations == 1); // write zeroes counts as a write
    CHECK(s.invalid_unmap_operations == 2);
    CHECK(s.invalid_wr_operations == 1);
}

TEST_CASE("virtio-blk: DISCARD and WRITE_ZEROES not negotiated are unsupported")
{
    Bench b;
    Driver d(b, false);
    d.init(bit(kFeatureVersion1) | bit(vblk::kFeatureFlush));
    uint64_t s = d.alloc(16);
    b.poke<uint64_t>(s, 0);
    b.poke<uint32_t>(s + 8, 1);
    CHECK(d.run(0, vblk::kTypeDiscard, 0, {{s, 16, false}}) == vblk::kStatusUnsupp);
    CHECK(d.run(0, vblk::kTypeWriteZeroes, 0, {{s, 16, false}}) == vblk::kStatusUnsupp);
    CHECK(b.disk->discards + b.disk->zeroes == 0);
}

TEST_CASE("virtio-blk: a read-only drive offers RO and refuses writes")
{
    Bench b({}, 1 << 20, true);
    Driver d(b, false);
    uint64_t f = d.init(kAllFeatures);
    CHECK((f & bit(vblk::kFeatureRo)) != 0);
    CHECK((f & bit(vblk::kFeatureDiscard)) == 0);
    CHECK((f & bit(vblk::kFeatureWriteZeroes)) == 0);
    auto before = disk_bytes(b, 0, 4096);
    uint64_t a = d.alloc(4096);
    d.fill(a, 4096, 1);
    CHECK(d.run(0, vblk::kTypeOut, 0, {{a, 4096, false}}) == vblk::kStatusIoErr);
    CHECK(disk_bytes(b, 0, 4096) == before);
    CHECK(b.disk->writes == 0);
    CHECK(d.run(0, vblk::kTypeIn, 0, {{a, 4096, true}}) == vblk::kStatusOk);
    CHECK(guest_bytes(b, a, 4096) == before);
    auto l = b.locked();
    CHECK(b.dev->stats().invalid_wr_operations == 1);
}

TEST_CASE("virtio-blk: writethrough flushes after every write")
{
    SUBCASE("FLUSH not negotiated")
    {
        Bench b;
        Driver d(b, false);
        d.init(bit(kFeatureVersion1));
        CHECK(b.dev->blk_state().writeback == 0);
        uint64_t a = d.alloc(512);
        CHECK(d.run(0, vblk::kTypeOut, 1, {{a, 512, false}}) == vblk::kStatusOk);
        CHECK(b.disk->flushes == 1);
    }
    SUBCASE("CONFIG_WCE: the driver switches the cache")
    {
        Bench b;
        Driver d(b, false);
        d.init(bit(kFeatureVersion1) | bit(vblk::kFeatureFlush) | bit(vblk::kFeatureConfigWce));
        CHECK(d.config_read(vblk::kCfgWriteback, 1) == 1);
        uint64_t a = d.alloc(512);
        CHECK(d.run(0, vblk::kTypeOut, 1, {{a, 512, false}}) == vblk::kStatusOk);
        CHECK(b.disk->flushes == 0);
        d.config_write(vblk::kCfgWriteback, 0, 1);
        CHECK(d.config_read(vblk::kCfgWriteback, 1) == 0);
        CHECK(d.run(0, vblk::kTypeOut, 1, {{a, 512, false}}) == vblk::kStatusOk);
        CHECK(b.disk->flushes == 1);
        d.config_write(vblk::kCfgCapacity, 0, 4); // read-only
        CHECK(d.config_read(vblk::kCfgCapacity, 4) == 2048);
    }
    SUBCASE("write-cache=off")
    {
        Bench b(props([](auto& c) { c.write_cache = false; }));
        Driver d(b, false);
        d.init(kAllFeatures);
        CHECK(d.config_read(vblk::kCfgWriteback, 1) == 0);
        uint64_t a = d.alloc(512);
        CHECK(d.run(0, vblk::kTypeOut, 1, {{a, 512, false}}) == vblk::kStatusOk);
        CHECK(b.disk->flushes == 1);
    }
}

TEST_CASE("virtio-blk: EVENT_IDX and NO_INTERRUPT suppress interrupts")
{
    SUBCASE("EVENT_IDX")
    {
        Bench b;
        Driver d(b, false);
        d.init(kAllFeatures, 1, true);
        Driver::Queue& q = d.queues[0];
        d.update_used_event = false;
        b.poke<uint16_t>(q.avail + 4 + 2u * q.size, 4); // used_event: interrupt when entry 4 is used
        uint64_t a = d.alloc(512);
        std::vector<size_t> msis;
        for (int i = 0; i < 6; ++i) {
            CHECK(d.run(0, vblk::kTypeIn, 0, {{a, 512, true}}) == vblk::kStatusOk);
            msis.push_back(b.msi_count());
            // The device asked to be notified for the next entry.
            CHECK(b.peek<uint16_t>(q.used + 4 + 8u * q.size) == q.avail_idx);
        }
        // The first completion always interrupts; then only crossing 4 -> 5.
        CHECK(msis == std::vector<size_t>{1, 1, 1, 1, 2, 2});
    }
    SUBCASE("NO_INTERRUPT")
    {
        Bench b;
        Driver d(b, false);
        d.init(kAllFeatures & ~bit(kFeatureEventIdx), 1, true);
        b.poke<uint16_t>(d.queues[0].avail, kAvailNoInterrupt);
        uint64_t a = d.alloc(512);
        CHECK(d.run(0, vblk::kTypeIn, 0, {{a, 512, true}}) == vblk::kStatusOk);
        CHECK(b.msi_count() == 0);
        b.poke<uint16_t>(d.queues[0].avail, 0);
        CHECK(d.run(0, vblk::kTypeIn, 0, {{a, 512, true}}) == vblk::kStatusOk);
        CHECK(b.msi_count() == 1);
    }
}

TEST_CASE("virtio-blk: indirect descriptors")
{
    Bench b;
    Driver d(b, false);
    d.init(kAllFeatures, 1, true);
    uint64_t header = d.alloc(16), data = d.alloc(1024), status = d.alloc(1), table = d.alloc(64);
    b.poke<uint32_t>(header, vblk::kTypeIn);
    b.poke<uint64_t>(header + 8, 2);
    auto entry = [&](unsigned i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next) {
        b.poke(table + 16 * i, addr);
        b.poke(table + 16 * i + 8, len);
        b.poke(table + 16 * i + 12, flags);
        b.poke(table + 16 * i + 14, next);
    };
    entry(0, header, 16, kDescNext, 1);
    entry(1, data, 512, kDescNext | kDescWrite, 3); // entries out of order
    entry(3, data + 512, 512, kDescNext | kDescWrite, 2);
    entry(2, status, 1, kDescWrite, 0);
    d.put_desc(0, 0, table, 64, kDescIndirect, 0);
    d.queues[0].next_desc = 1;
    d.make_available(0, 0);
    REQUIRE(d.wait_used(0));
    CHECK(b.peek<uint8_t>(status) == vblk::kStatusOk);
    CHECK(guest_bytes(b, data, 1024) == disk_bytes(b, 1024, 1024));
    CHECK(d.used_elem(0, 0) == std::pair<uint32_t, uint32_t>{0, 1025});
}

TEST_CASE("virtio-blk: config changes interrupt on the config vector")
{
    Bench b;
    Driver d(b, false);
    d.init(kAllFeatures, 1, true);
    uint8_t generation = uint8_t(d.cc_read(common::kConfigGeneration, 1));
    {
        auto l = b.locked();
        b.dev->capacity_changed();
    }
    CHECK(d.cc_read(common::kConfigGeneration, 1) == uint8_t(generation + 1));
    REQUIRE(b.msi_count() == 1);
    CHECK(b.msis[0].second == 0x40);
}

TEST_CASE("virtio-blk: a qcow2 drive")
{
    std::string tmpl = "/tmp/emu-virtio-XXXXXX";
    std::filesystem::path dir = mkdtemp(tmpl.data());
    std::string path = (dir / "disk.qcow2").string();
    storage::qcow2::CreateOptions create;
    create.size = 8 << 20;
    REQUIRE(storage::create_qcow2(path, create).has_value());
    storage::WorkerPool pool(2);
    {
        storage::BackendOptions options;
        options.image.filename = path;
        options.pool = &pool;
        auto backend = storage::BlockBackend::open(options);
        REQUIRE(backend.has_value());
        storage::BlockBackend* raw_backend = backend->get();
        Bench b(VirtioBlkConfig{}, std::move(*backend));
        Driver d(b, false);
        d.init(kAllFeatures, 1, true);
        CHECK(d.config_read(vblk::kCfgCapacity, 4) == 16384);
        // 8 scattered 4 KiB pieces in one request, across a cluster boundary.
        std::vector<Buf> bufs;
        for (int i = 0; i < 8; ++i) {
            bufs.push_back({d.alloc(4096, 4096), 4096, false});
            d.fill(bufs.back().addr, 4096, uint8_t(i * 31));
            d.alloc(4096); // a hole between pieces
        }
        CHECK(d.run(0, vblk::kTypeOut, 120, bufs) == vblk::kStatusOk);
        uint64_t back = d.alloc(32768);
        CHECK(d.run(0, vblk::kTypeIn, 120, {{back, 32768, true}}) == vblk::kStatusOk);
        for (int i = 0; i < 8; ++i)
            CHECK(guest_bytes(b, back + 4096u * unsigned(i), 4096) == guest_bytes(b, bufs[size_t(i)].addr, 4096));
        CHECK(d.run(0, vblk::kTypeFlush, 0, {}) == vblk::kStatusOk);
        b.dev->drain();
        std::vector<uint8_t> sync(4096);
        REQUIRE(raw_backend->read(120 * 512 + 3 * 4096, sync).has_value());
        CHECK(sync == guest_bytes(b, bufs[3].addr, 4096));
    }
    std::filesystem::remove_all(dir);
}

TEST_CASE("virtio-blk: state dump")
{
    Bench b;
    Driver d(b, false);
    d.init(kAllFeatures, 1, true);
    auto l = b.locked();
    std::string dump = b.dev->dump();
    CHECK(dump.find("status=0xf\n") != std::string::npos);
    CHECK(dump.find("queue[0].size=0x100\n") != std::string::npos);
    CHECK(dump.find("queue[0].enabled=1\n") != std::string::npos);
    CHECK(dump.find("queue[0].msix_vector=0x1\n") != std::string::npos);
    CHECK(dump.find("writeback=0x1\n") != std::string::npos);
    CHECK(dump.find("msix.table=") != std::string::npos);
    CHECK(dump.find("bar4=mem64 size=0x4000") != std::string::npos);
}
