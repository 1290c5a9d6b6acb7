// tests/unit/virtio_driver.h — a virtio-blk PCI device on a PCI bus with guest
// RAM in a RamBusMaster, a test disk, and a small driver that does what
// Linux's virtio_pci (modern and legacy) and virtio_blk drivers do: program the
// BARs, find the capabilities, negotiate features, lay out split rings in RAM,
// submit requests and wait (with a timeout) for the used ring.
//
// Locking: the device runs its completions under RamBusMaster's mutex (the
// "device lock"); every driver access takes it too, as a vCPU would.
#pragma once

#include "devices/pci/pci.h"
#include "devices/virtio/virtio_blk.h"
#include "engine/memory/address_space.h"
#include "storage/backend.h"
#include "tests/unit/ram_bus_master.h"

#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <thread>

namespace emu::test {

using namespace emu::devices;
namespace vblk = emu::devices::virtio_blk;

// A disk for the tests: bytes in memory; requests can be held at a gate
// (to keep them in flight) or fail with an errno; calls are counted.
class TestDisk final : public storage::BlockDriver {
public:
    TestDisk(uint64_t size, bool read_only) : m_data(size), m_read_only(read_only)
    {
        for (size_t i = 0; i < m_data.size(); ++i)
            m_data[i] = uint8_t(i * 7 + i / 512);
    }
    std::string_view format_name() const override { return "test"; }
    const std::string& filename() const override { return m_name; }
    uint64_t size() const override { return m_data.size(); }
    bool read_only() const override { return m_read_only; }

    storage::Result<void> read(uint64_t offset, std::span<uint8_t> buf) override
    {
        if (auto r = enter(); !r)
            return r;
        std::memcpy(buf.data(), m_data.data() + offset, buf.size());
        return {};
    }
    storage::Result<void> write(uint64_t offset, std::span<const uint8_t> buf) override
    {
        if (auto r = enter(); !r)
            return r;
        writes++;
        std::memcpy(m_data.data() + offset, buf.data(), buf.size());
        return {};
    }
    storage::Result<void> write_zeroes(uint64_t offset, uint64_t bytes, bool may_unmap) override
    {
        if (auto r = enter(); !r)
            return r;
        zeroes++;
        unmaps_allowed += may_unmap;
        std::memset(m_data.data() + offset, 0, bytes);
        return {};
    }
    storage::Result<void> discard(uint64_t offset, uint64_t bytes) override
    {
        if (auto r = enter(); !r)
            return r;
        discards++;
        std::memset(m_data.data() + offset, 0xdd, bytes); // visible in tests
        return {};
    }
    storage::Result<void> flush() override
    {
        if (auto r = enter(); !r)
            return r;
        flushes++;
        return {};
    }
    storage::Result<void> close() override { return {}; } // no flush through the gate
    storage::Result<storage::BlockStatus> block_status(uint64_t offset, uint64_t bytes) override
    {
        storage::BlockStatus status;
        status.length = bytes;
        status.allocated = status.data = true;
        return status;
    }

    // Requests wait at the gate while it is held.
    void hold()
    {
        std::lock_guard lock(m_gate_mutex);
        m_held = true;
    }
    void release()
    {
        std::lock_guard lock(m_gate_mutex);
        m_held = false;
        m_gate_cv.notify_all();
    }
    bool wait_waiting(unsigned n)
    {
        auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
        while (m_waiting.load() < n) {
            if (std::chrono::steady_clock::now() > deadline)
                return false;
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
        return true;
    }

    std::vector<uint8_t> m_data; // read by the test only while nothing is in flight
    std::atomic<int> fail_errno{0};
    std::atomic<int> writes{0}, zeroes{0}, discards{0}, flushes{0}, unmaps_allowed{0};

private:
    storage::Result<void> enter()
    {
        {
            std::unique_lock lock(m_gate_mutex);
            m_waiting++;
            m_gate_cv.wait(lock, [this] { return !m_held; });
            m_waiting--;
        }
        if (int e = fail_errno.load())
            return storage::fail("test: injected failure", e);
        return {};
    }

    std::string m_name = "test-disk";
    bool m_read_only;
    std::mutex m_gate_mutex;
    std::condition_variable m_gate_cv;
    bool m_held = false;
    std::atomic<unsigned> m_waiting{0};
};

// Guest RAM map of the tests.
inline constexpr uint64_t kRamSize = 16 << 20;
inline constexpr uint64_t kRingBase = 0x100000; // queue q at kRingBase + q * 0x10000
inline constexpr uint64_t kScratch = 0x800000;  // headers, status bytes, data
inline constexpr uint64_t kIoBar = 0xc000, kMsixBar = 0xfebf0000, kModernBar = 0x800000000ull;
inline constexpr uint8_t kDevfn = pci::devfn(4, 0);
inline constexpr uint64_t kMsiAddress = 0xfee00000;

struct Bench {
    mem::MemoryRegion::Ptr io_root = std::move(*mem::MemoryRegion::container("io", mem::kPortSpaceSize));
    mem::MemoryRegion::Ptr mem_root = std::move(*mem::MemoryRegion::container("mem", uint64_t(1) << 40));
    mem::AddressSpace io{"io", *io_root};
    mem::AddressSpace mem{"mem", *mem_root};
    PciBus bus{*io_root, *mem_root};
    RamBusMaster ram{kRamSize};
    storage::WorkerPool pool{2};
    TestDisk* disk = nullptr;
    std::unique_ptr<storage::BlockBackend> backend;
    std::unique_ptr<VirtioBlk> dev;
    // Under ram's mutex (the sink and the router run with the device lock).
    std::vector<std::pair<uint64_t, uint32_t>> msis;
    bool intx = false;
    std::vector<std::tuple<bool, int, bool>> io_errors;

    explicit Bench(VirtioBlkConfig config = {}, uint64_t disk_size = 1 << 20, bool read_only = false)
    {
        auto driver = std::make_unique<TestDisk>(disk_size, read_only);
        disk = driver.get();
        storage::BackendOptions options;
        options.pool = &pool;
        options.discard = storage::DiscardMode::Unmap;
        backend = std::make_unique<storage::BlockBackend>(std::move(driver), options);
        init(config);
    }
    // Over an existing backend (qcow2 tests).
    Bench(VirtioBlkConfig config, std::unique_ptr<storage::BlockBackend> existing)
    {
        backend = std::move(existing);
        init(config);
    }
    ~Bench()
    {
        if (dev)
            dev->drain();
        dev.reset();
    }

    void init(VirtioBlkConfig config)
    {
        config.drive = backend.get();
        auto made = VirtioBlk::create(config, ram);
        REQUIRE_MESSAGE(made.has_value(), (made ? "" : made.error().message));
        dev = std::move(*made);
        REQUIRE(bus.plug(*dev, kDevfn));
        bus.set_intx_router(PciIntxRouter{
            .pirqs = 4,
            .map_pirq = [](uint8_t, int) { return 0; },
            .set_pirq = [this](int, bool level) { intx = level; },
            .isa_irq = [](int) { return 11; },
        });
        dev->set_msi_sink([this](uint64_t address, uint32_t data) { msis.emplace_back(address, data); });
        dev->set_io_error_handler(
            [this](bool is_read, int err, bool stopping) { io_errors.emplace_back(is_read, err, stopping); });
    }

    auto locked() { return ram.locked(); }
    uint32_t cfg_read(unsigned off, unsigned size)
    {
        auto l = locked();
        return bus.config_read(kDevfn, off, size);
    }
    void cfg_write(unsigned off, uint32_t v, unsigned size)
    {
        auto l = locked();
        bus.config_write(kDevfn, off, v, size);
    }
    size_t msi_count()
    {
        auto l = locked();
        return msis.size();
    }
    bool intx_level()
    {
        auto l = locked();
        return intx;
    }
    uint8_t status()
    {
        auto l = locked();
        return dev->device_status();
    }
    template <class T>
    T peek(uint64_t gpa)
    {
        auto l = locked();
        T v;
        std::memcpy(&v, ram.ram.data() + gpa, sizeof v);
        return v;
    }
    template <class T>
    void poke(uint64_t gpa, T v)
    {
        auto l = locked();
        std::memcpy(ram.ram.data() + gpa, &v, sizeof v);
    }
};

struct Buf {
    uint64_t addr;
    uint32_t len;
    bool write;
};

// The driver side, modern (VERSION_1) or legacy.
class Driver {
public:
    struct Queue {
        uint16_t size = 0;
        uint64_t desc = 0, avail = 0, used = 0;
        uint16_t next_desc = 0;
        uint16_t avail_idx = 0;
        uint16_t seen_used = 0;
    };

    Driver(Bench& bench, bool legacy) : b(bench), m_legacy(legacy) {}

    // BARs where firmware would put them, decoding and bus mastering on,
    // capabilities found as Linux's virtio_pci_modern finds them.
    void setup_pci()
    {
        if (b.dev->legacy_interface())
            b.cfg_write(pci::kBar0 + 4 * VirtioPciDevice::kLegacyBar, uint32_t(kIoBar), 4);
        if (b.dev->msix())
            b.cfg_write(pci::kBar0 + 4 * VirtioPciDevice::kMsixBar, uint32_t(kMsixBar), 4);
        if (b.dev->modern_interface()) {
            b.cfg_write(pci::kBar0 + 4 * VirtioPciDevice::kModernBar, uint32_t(kModernBar), 4);
            b.cfg_write(pci::kBar0 + 4 * VirtioPciDevice::kModernBar + 4, uint32_t(kModernBar >> 32), 4);
        }
        b.cfg_write(pci::kCommand, pci::kCommandIo | pci::kCommandMemory | pci::kCommandMaster, 2);
        for (unsigned cap = b.cfg_read(pci::kCapabilityList, 1); cap; cap = b.cfg_read(cap + 1, 1)) {
            unsigned id = b.cfg_read(cap, 1);
            if (id == Msix::kCapId) {
                msix_cap = cap;
                continue;
            }
            if (id != 0x09)
                continue;
            unsigned type = b.cfg_read(cap + 3, 1), bar = b.cfg_read(cap + 4, 1);
            uint32_t offset = b.cfg_read(cap + 8, 4), length = b.cfg_read(cap + 12, 4);
            REQUIRE(bar == unsigned(VirtioPciDevice::kModernBar));
            switch (type) {
            case virtio::kCapCommon: common = kModernBar + offset, common_len = length; break;
            case virtio::kCapIsr: isr = kModernBar + offset; break;
            case virtio::kCapDevice: device = kModernBar + offset, device_len = length; break;
            case virtio::kCapNotify:
                notify_base = kModernBar + offset, notify_len = length;
                notify_multiplier = b.cfg_read(cap + 16, 4);
                break;
            }
        }
    }

    // Modern common configuration.
    uint64_t cc_read(unsigned reg, unsigned size)
    {
        auto l = b.locked();
        return b.mem.read(common + reg, size);
    }
    void cc_write(unsigned reg, uint64_t v, unsigned size)
    {
        auto l = b.locked();
        b.mem.write(common + reg, v, size);
    }
    // Legacy registers.
    uint64_t io_read(unsigned reg, unsigned size)
    {
        auto l = b.locked();
        return b.io.read(kIoBar + reg, size);
    }
    void io_write(unsigned reg, uint64_t v, unsigned size)
    {
        auto l = b.locked();
        b.io.write(kIoBar + reg, v, size);
    }
    uint8_t read_status()
    {
        return uint8_t(m_legacy ? io_read(virtio::legacy::kStatus, 1) : cc_read(virtio::common::kDeviceStatus, 1));
    }
    void write_status(uint8_t s)
    {
        if (m_legacy)
            io_write(virtio::legacy::kStatus, s, 1);
        else
            cc_write(virtio::common::kDeviceStatus, s, 1);
    }
    uint8_t read_isr()
    {
        auto l = b.locked();
        return uint8_t(m_legacy ? b.io.read(kIoBar + virtio::legacy::kIsr, 1) : b.mem.read(isr, 1));
    }
    uint64_t config_read(unsigned off, unsigned size)
    {
        auto l = b.locked();
        if (m_legacy) {
            bool msix = msix_cap && (b.bus.config_read(kDevfn, msix_cap + 2, 2) & Msix::kEnable);
            return b.io.read(kIoBar + (msix ? 0x18 : 0x14) + off, size);
        }
        return b.mem.read(device + off, size);
    }
    void config_write(unsigned off, uint64_t v, unsigned size)
    {
        auto l = b.locked();
        if (m_legacy) {
            bool msix = msix_cap && (b.bus.config_read(kDevfn, msix_cap + 2, 2) & Msix::kEnable);
            b.io.write(kIoBar + (msix ? 0x18 : 0x14) + off, v, size);
        } else {
            b.mem.write(device + off, v, size);
        }
    }

    uint64_t device_features()
    {
        if (m_legacy)
            return io_read(virtio::legacy::kHostFeatures, 4);
        cc_write(virtio::common::kDeviceFeatureSelect, 0, 4);
        uint64_t lo = cc_read(virtio::common::kDeviceFeature, 4);
        cc_write(virtio::common::kDeviceFeatureSelect, 1, 4);
        return lo | cc_read(virtio::common::kDeviceFeature, 4) << 32;
    }
    void write_features(uint64_t f)
    {
        if (m_legacy) {
            io_write(virtio::legacy::kGuestFeatures, uint32_t(f), 4);
            return;
        }
        cc_write(virtio::common::kDriverFeatureSelect, 0, 4);
        cc_write(virtio::common::kDriverFeature, uint32_t(f), 4);
        cc_write(virtio::common::kDriverFeatureSelect, 1, 4);
        cc_write(virtio::common::kDriverFeature, uint32_t(f >> 32), 4);
    }

    // MSI-X: entry v sends (kMsiAddress, 0x40 + v), unmasked; enabled.
    void enable_msix()
    {
        REQUIRE(msix_cap);
        for (unsigned v = 0; v < b.dev->msix()->vectors(); ++v) {
            auto l = b.locked();
            b.mem.write(kMsixBar + 16 * v, kMsiAddress, 4);
            b.mem.write(kMsixBar + 16 * v + 4, 0, 4);
            b.mem.write(kMsixBar + 16 * v + 8, 0x40 + v, 4);
            b.mem.write(kMsixBar + 16 * v + 12, 0, 4);
        }
        b.cfg_write(msix_cap + 2, Msix::kEnable, 2);
    }

    // Reset, ACKNOWLEDGE, DRIVER, features (`wanted` & offered), FEATURES_OK.
    // Returns the negotiated features, 0 if FEATURES_OK did not stick.
    uint64_t negotiate(uint64_t wanted)
    {
        write_status(0);
        for (int i = 0; i < 5000 && read_status() != 0; ++i) // Linux's vp_reset waits
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
        REQUIRE(read_status() == 0);
        write_status(virtio::kStatusAcknowledge);
        write_status(virtio::kStatusAcknowledge | virtio::kStatusDriver);
        uint64_t f = device_features() & wanted;
        write_features(f);
        if (m_legacy)
            return f;
        write_status(virtio::kStatusAcknowledge | virtio::kStatusDriver | virtio::kStatusFeaturesOk);
        return (read_status() & virtio::kStatusFeaturesOk) ? f : 0;
    }

    // Queue q with `size` entries (0: the device's) and MSI-X vector.
    void setup_queue(unsigned q, uint16_t size = 0, uint16_t vector = virtio::kNoVector)
    {
        Queue& vq = queues[q];
        vq = Queue{};
        uint64_t base = kRingBase + q * 0x10000ull;
        {
            auto l = b.locked(); // rings start zeroed, as Linux allocates them
            std::memset(b.ram.ram.data() + base, 0, 0x10000);
        }
        if (m_legacy) {
            io_write(virtio::legacy::kQueueSelect, q, 2);
            vq.size = uint16_t(io_read(virtio::legacy::kQueueSize, 2));
            REQUIRE(vq.size != 0);
            vq.desc = base;
            vq.avail = base + 16u * vq.size;
            vq.used = (vq.avail + 6 + 2u * vq.size + 4095) & ~uint64_t(4095);
            io_write(virtio::legacy::kQueuePfn, base >> 12, 4);
            if (vector != virtio::kNoVector) {
                io_write(virtio::legacy::kQueueVector, vector, 2);
                REQUIRE(io_read(virtio::legacy::kQueueVector, 2) == vector);
            }
            return;
        }
        cc_write(virtio::common::kQueueSelect, q, 2);
        uint16_t max = uint16_t(cc_read(virtio::common::kQueueSize, 2));
        REQUIRE(max != 0);
        vq.size = size ? size : max;
        vq.desc = base;
        vq.avail = base + 0x4000;
        vq.used = base + 0x8000;
        cc_write(virtio::common::kQueueSize, vq.size, 2);
        cc_write(virtio::common::kQueueDesc, vq.desc, 4);
        cc_write(virtio::common::kQueueDesc + 4, vq.desc >> 32, 4);
        cc_write(virtio::common::kQueueDriver, vq.avail, 4);
        cc_write(virtio::common::kQueueDriver + 4, vq.avail >> 32, 4);
        cc_write(virtio::common::kQueueDevice, vq.used, 4);
        cc_write(virtio::common::kQueueDevice + 4, vq.used >> 32, 4);
        cc_write(virtio::common::kQueueMsixVector, vector, 2);
        cc_write(virtio::common::kQueueEnable, 1, 2);
    }

    void driver_ok()
    {
        uint8_t s = virtio::kStatusAcknowledge | virtio::kStatusDriver | virtio::kStatusDriverOk;
        write_status(m_legacy ? s : uint8_t(s | virtio::kStatusFeaturesOk));
    }

    // The whole sequence: features, `nq` queues (MSI-X vectors 1.. when
    // `msix`, config vector 0), DRIVER_OK.
    uint64_t init(uint64_t wanted, unsigned nq = 1, bool msix = false)
    {
        setup_pci();
        if (msix)
            enable_msix();
        uint64_t f = negotiate(wanted);
        REQUIRE(f != 0);
        if (msix) {
            if (m_legacy)
                io_write(virtio::legacy::kConfigVector, 0, 2);
            else
                cc_write(virtio::common::kMsixConfig, 0, 2);
        }
        for (unsigned q = 0; q < nq; ++q)
            setup_queue(q, 0, msix ? uint16_t(q + 1) : virtio::kNoVector);
        driver_ok();
        return f;
    }

    // Scratch guest memory.
    uint64_t alloc(uint64_t bytes, uint64_t align = 16)
    {
        m_scratch = (m_scratch + align - 1) & ~(align - 1);
        uint64_t at = m_scratch;
        m_scratch += bytes;
        REQUIRE(m_scratch <= kRamSize);
        return at;
    }

    // Descriptor `i` of queue q, raw.
    void put_desc(unsigned q, uint16_t i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next)
    {
        uint64_t at = queues[q].desc + 16u * i;
        b.poke(at, addr);
        b.poke(at + 8, len);
        b.poke(at + 12, flags);
        b.poke(at + 14, next);
    }
    // Makes `head` available and (unless `kick` is false) notifies.
    void make_available(unsigned q, uint16_t head, bool kick = true)
    {
        Queue& vq = queues[q];
        b.poke<uint16_t>(vq.avail + 4 + 2u * (vq.avail_idx % vq.size), head);
        vq.avail_idx++;
        b.poke<uint16_t>(vq.avail + 2, vq.avail_idx);
        if (kick)
            notify(q);
    }
    void notify(unsigned q)
    {
        if (m_legacy) {
            io_write(virtio::legacy::kQueueNotify, q, 2);
            return;
        }
        auto l = b.locked();
        b.mem.write(notify_base + uint64_t(q) * notify_multiplier, q, 2);
    }
    // A chain of `bufs` from the queue's next free descriptors; returns the head.
    uint16_t add_chain(unsigned q, const std::vector<Buf>& bufs, bool kick = true)
    {
        Queue& vq = queues[q];
        uint16_t head = vq.next_desc;
        for (size_t i = 0; i < bufs.size(); ++i) {
            uint16_t idx = uint16_t((head + i) % vq.size), next = uint16_t((head + i + 1) % vq.size);
            uint16_t flags =
                uint16_t((bufs[i].write ? virtio::kDescWrite : 0) | (i + 1 < bufs.size() ? virtio::kDescNext : 0));
            put_desc(q, idx, bufs[i].addr, bufs[i].len, flags, next);
        }
        vq.next_desc = uint16_t((head + bufs.size()) % vq.size);
        make_available(q, head, kick);
        return head;
    }

    struct Request {
        uint16_t head;
        uint64_t header, status;
    };
    // A block request: header, data buffers (written by the device for
    // IN/GET_ID), status byte (preset to 0xff).
    Request request(unsigned q, uint32_t type, uint64_t sector, const std::vector<Buf>& data, bool kick = true)
    {
        Request r;
        r.header = alloc(16);
        r.status = alloc(1, 1);
        b.poke<uint32_t>(r.header, type);
        b.poke<uint32_t>(r.header + 4, 0);
        b.poke<uint64_t>(r.header + 8, sector);
        b.poke<uint8_t>(r.status, 0xff);
        std::vector<Buf> chain{{r.header, 16, false}};
        chain.insert(chain.end(), data.begin(), data.end());
        chain.push_back({r.status, 1, true});
        r.head = add_chain(q, chain, kick);
        return r;
    }

    uint16_t used_idx(unsigned q) { return b.peek<uint16_t>(queues[q].used + 2); }
    // Waits until the used index reaches seen + n; false on timeout.
    bool wait_used(unsigned q, unsigned n = 1, int timeout_ms = 5000)
    {
        Queue& vq = queues[q];
        uint16_t want = uint16_t(vq.seen_used + n);
        auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
        while (used_idx(q) != want) {
            if (std::chrono::steady_clock::now() > deadline)
                return false;
            std::this_thread::sleep_for(std::chrono::microseconds(200));
        }
        vq.seen_used = want;
        if (update_used_event) // as Linux's virtqueue_enable_cb does with EVENT_IDX
            b.poke<uint16_t>(vq.avail + 4 + 2u * vq.size, want);
        return true;
    }
    // Used element `k` (0-based, in ring order).
    std::pair<uint32_t, uint32_t> used_elem(unsigned q, uint16_t k)
    {
        Queue& vq = queues[q];
        uint64_t at = vq.used + 4 + 8u * (k % vq.size);
        return {b.peek<uint32_t>(at), b.peek<uint32_t>(at + 4)};
    }
    // Submits and waits; returns the status byte (0xff: no completion).
    uint8_t run(unsigned q, uint32_t type, uint64_t sector, const std::vector<Buf>& data)
    {
        Request r = request(q, type, sector, data);
        if (!wait_used(q))
            return 0xff;
        return b.peek<uint8_t>(r.status);
    }
    // Fills guest memory [addr, addr+len) with `pattern + i`.
    void fill(uint64_t addr, uint64_t len, uint8_t pattern)
    {
        auto l = b.locked();
        for (uint64_t i = 0; i < len; ++i)
            b.ram.ram[addr + i] = uint8_t(pattern + i);
    }

    Bench& b;
    Queue queues[VirtioBlkConfig::kMaxQueues];
    bool update_used_event = true;
    unsigned msix_cap = 0;
    uint64_t common = 0, isr = 0, device = 0, notify_base = 0;
    uint32_t common_len = 0, device_len = 0, notify_len = 0, notify_multiplier = 0;

private:
    bool m_legacy;
    uint64_t m_scratch = kScratch;
};

inline uint64_t bit(unsigned n) { return uint64_t(1) << n; }

} // namespace emu::test
