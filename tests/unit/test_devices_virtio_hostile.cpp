// Device tests of virtio-pci and virtio-blk against hostile drivers (loops,
// indices out of range, bad indirect tables, memory outside RAM, requests
// outside the disk, bad queue sizes, stray notifications), and of reset,
// drain and the werror/rerror policies. Each hostile input gives the
// documented status (IOERR/UNSUPP) or DEVICE_NEEDS_RESET — never a crash —
// and the disk outside the request's range does not change.
#include "common/log.h"
#include "tests/unit/virtio_driver.h"

#include <cerrno>
#include <cstdio>
#include <functional>
#include <thread>
#include <unistd.h>
#include <utility>

using namespace emu;
using namespace emu::test;
using namespace emu::devices::virtio;

namespace {

const bool g_quiet = (set_log_level(LogLevel::Error), true);

constexpr uint64_t kAllFeatures = ~uint64_t(0);

// Captures what the log writes to stderr (at warning level) while alive.
class LogCapture {
public:
    LogCapture()
    {
        std::fflush(stderr);
        m_saved = dup(2);
        m_file = std::tmpfile();
        dup2(fileno(m_file), 2);
        set_log_level(LogLevel::Warn);
    }
    ~LogCapture()
    {
        set_log_level(LogLevel::Error);
        std::fflush(stderr);
        dup2(m_saved, 2);
        close(m_saved);
        std::fclose(m_file);
    }
    std::string text()
    {
        std::fflush(stderr);
        std::string out;
        std::rewind(m_file);
        char buf[4096];
        size_t n;
        while ((n = std::fread(buf, 1, sizeof buf, m_file)) > 0)
            out.append(buf, n);
        return out;
    }

private:
    int m_saved;
    std::FILE* m_file;
};

bool wait_for(const std::function<bool()>& done, int timeout_ms = 5000)
{
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    while (!done()) {
        if (std::chrono::steady_clock::now() > deadline)
            return false;
        std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    return true;
}

std::vector<uint8_t> disk_copy(Bench& b)
{
    auto l = b.locked();
    return b.disk->m_data;
}

// DEVICE_NEEDS_RESET set, the config vector (0) signalled once, no buffer used.
void check_broken(Bench& b, Driver& d, size_t msis_before = 0)
{
    CHECK((d.read_status() & kStatusNeedsReset) != 0);
    CHECK(b.dev->broken());
    CHECK(b.msi_count() == msis_before + 1);
    if (b.msi_count() == msis_before + 1) {
        auto l = b.locked();
        CHECK(b.msis.back().second == 0x40);
    }
    CHECK(d.used_idx(0) == d.queues[0].seen_used);
}

} // namespace

TEST_CASE("virtio hostile: a descriptor loop breaks the device until it is reset")
{
    Bench b;
    Driver d(b, false);
    d.init(kAllFeatures, 1, true);
    auto before = disk_copy(b);
    uint64_t header = d.alloc(16), data = d.alloc(512), status = d.alloc(1);
    b.poke<uint32_t>(header, vblk::kTypeOut);
    d.put_desc(0, 0, header, 16, kDescNext, 1);
    d.put_desc(0, 1, data, 512, kDescNext, 2);
    d.put_desc(0, 2, status, 1, kDescNext, 0); // back to the head
    LogCapture log;
    d.make_available(0, 0);
    check_broken(b, d);
    CHECK(log.text().find("virtio-blk0: queue 0: chain from descriptor 0 is longer than queue size 256 (a loop?)") !=
          std::string::npos);
    CHECK(disk_copy(b) == before);

    // Broken: a good request is not served until the driver resets.
    d.queues[0].next_desc = 3;
    d.request(0, vblk::kTypeIn, 0, {{data, 512, true}});
    CHECK(!d.wait_used(0, 1, 100));
    CHECK(b.disk->writes == 0);

    Driver d2(b, false);
    d2.init(kAllFeatures, 1, true);
    CHECK(!b.dev->broken());
    d2.fill(data, 512, 5);
    CHECK(d2.run(0, vblk::kTypeOut, 3, {{data, 512, false}}) == vblk::kStatusOk);
    CHECK(b.disk->writes == 1);
}

TEST_CASE("virtio hostile: indices outside the queue")
{
    Bench b;
    Driver d(b, false);
    d.setup_pci();
    d.enable_msix();
    REQUIRE(d.negotiate(kAllFeatures) != 0);
    d.cc_write(common::kMsixConfig, 0, 2);
    d.setup_queue(0, 8, 1);
    d.driver_ok();
    uint64_t header = d.alloc(16);

    SUBCASE("next beyond the queue size")
    {
        d.put_desc(0, 5, header, 16, kDescNext, 9);
        LogCapture log;
        d.make_available(0, 5);
        check_broken(b, d);
        CHECK(log.text().find("virtio-blk0: queue 0: descriptor 5 next 9 beyond queue size 8") != std::string::npos);
    }
    SUBCASE("an available entry naming a descriptor beyond the queue")
    {
        LogCapture log;
        d.make_available(0, 300);
        check_broken(b, d);
        CHECK(log.text().find("available entry 0 names descriptor 300, beyond queue size 8") != std::string::npos);
    }
    SUBCASE("the available index jumps more than the queue size")
    {
        b.poke<uint16_t>(d.queues[0].avail + 2, 9);
        d.notify(0);
        check_broken(b, d);
    }
}

TEST_CASE("virtio hostile: chain shape")
{
    Bench b;
    Driver d(b, false);
    uint64_t wanted = kAllFeatures;
    bool no_indirect = false;
    SUBCASE("indirect without the feature") { no_indirect = true; }
    if (no_indirect)
        wanted &= ~bit(kFeatureIndirectDesc);
    d.init(wanted, 1, true);
    uint64_t header = d.alloc(16), data = d.alloc(512), status = d.alloc(1), table = d.alloc(16 * 300);
    b.poke<uint32_t>(header, vblk::kTypeIn);
    auto entry = [&](uint64_t tbl, unsigned i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next) {
        b.poke(tbl + 16 * i, addr);
        b.poke(tbl + 16 * i + 8, len);
        b.poke(tbl + 16 * i + 12, flags);
        b.poke(tbl + 16 * i + 14, next);
    };
    entry(table, 0, header, 16, kDescNext, 1);
    entry(table, 1, data, 512, kDescNext | kDescWrite, 2);
    entry(table, 2, status, 1, kDescWrite, 0);
    std::string expect;

    if (no_indirect) {
        d.put_desc(0, 0, table, 48, kDescIndirect, 0);
        expect = "descriptor 0 is indirect, a feature not negotiated";
    }
    SUBCASE("indirect table length not a multiple of 16")
    {
        d.put_desc(0, 0, table, 40, kDescIndirect, 0);
        expect = "indirect table of descriptor 0 has length 40, not a multiple of 16";
    }
    SUBCASE("indirect table longer than the queue")
    {
        d.put_desc(0, 0, table, 16 * 257, kDescIndirect, 0);
        expect = "indirect table of descriptor 0 has 257 entries, more than queue size 256";
    }
    SUBCASE("nested indirect")
    {
        entry(table, 2, table, 48, kDescIndirect, 0);
        d.put_desc(0, 0, table, 48, kDescIndirect, 0);
        expect = "indirect descriptor 2 inside an indirect table";
    }
    SUBCASE("indirect and chained")
    {
        d.put_desc(0, 0, table, 48, kDescIndirect | kDescNext, 1);
        expect = "descriptor 0 is both indirect and chained";
    }
    SUBCASE("a loop inside an indirect table")
    {
        entry(table, 2, status, 1, kDescWrite | kDescNext, 1);
        d.put_desc(0, 0, table, 48, kDescIndirect, 0);
        expect = "indirect chain from descriptor 0 is longer than its table of 3 (a loop?)";
    }
    SUBCASE("indirect next beyond its table")
    {
        entry(table, 2, status, 1, kDescWrite | kDescNext, 3);
        d.put_desc(0, 0, table, 48, kDescIndirect, 0);
        expect = "indirect descriptor 2 next 3 beyond its table of 3";
    }
    SUBCASE("readable after writable")
    {
        d.put_desc(0, 0, header, 16, kDescNext, 1);
        d.put_desc(0, 1, status, 1, kDescNext | kDescWrite, 2);
        d.put_desc(0, 2, data, 512, 0, 0);
        expect = "has a device-readable descriptor 2 after a device-writable one";
    }
    SUBCASE("header too short")
    {
        d.put_desc(0, 0, header, 8, kDescNext, 1);
        d.put_desc(0, 1, status, 1, kDescWrite, 0);
        expect = "request at descriptor 0: 8 bytes of header, 16 needed";
    }
    SUBCASE("no status byte")
    {
        d.put_desc(0, 0, header, 16, 0, 0);
        expect = "request at descriptor 0: no status byte";
    }
    if (expect.empty())
        return; // the parent run of the subcases
    LogCapture log;
    d.make_available(0, 0);
    check_broken(b, d);
    CHECK_MESSAGE(log.text().find(expect) != std::string::npos, log.text());
    CHECK(b.peek<uint8_t>(status) == 0);
}

TEST_CASE("virtio hostile: guest addresses outside RAM")
{
    Bench b;
    Driver d(b, false);
    d.init(kAllFeatures, 1, true);
    auto before = disk_copy(b);
    std::string expect;
    SUBCASE("write data past the end of RAM")
    {
        d.request(0, vblk::kTypeOut, 0, {{kRamSize - 256, 512, false}}, false);
        expect = "write buffers (512 bytes) not in guest RAM";
    }
    SUBCASE("read data wrapping around 2^64")
    {
        d.request(0, vblk::kTypeIn, 0, {{~uint64_t(0) - 100, 512, true}}, false);
        expect = "read buffers (512 bytes) not in guest RAM";
    }
    SUBCASE("the header far away")
    {
        d.add_chain(0, {{0xffff000000000000ull, 16, false}, {d.alloc(1), 1, true}}, false);
        expect = "the header is not in guest RAM";
    }
    SUBCASE("the status byte outside RAM")
    {
        uint64_t h = d.alloc(16);
        b.poke<uint32_t>(h, vblk::kTypeFlush);
        d.add_chain(0, {{h, 16, false}, {kRamSize + 5, 1, true}}, false);
        expect = "status byte of request 0 at 0x1000005 is not in guest RAM";
    }
    SUBCASE("an indirect table outside RAM")
    {
        d.put_desc(0, 0, kRamSize, 32, kDescIndirect, 0);
        d.make_available(0, 0, false);
        expect = "cannot read indirect descriptor 0 at 0x1000000";
    }
    LogCapture log;
    d.notify(0);
    REQUIRE(wait_for([&] { return b.dev->broken(); })); // the status byte is written at completion
    check_broken(b, d);
    CHECK_MESSAGE(log.text().find(expect) != std::string::npos, log.text());
    CHECK(disk_copy(b) == before);
}

TEST_CASE("virtio hostile: rings outside RAM or misaligned, queue sizes that are not powers of two")
{
    Bench b;
    Driver d(b, false);
    d.setup_pci();
    d.enable_msix();
    REQUIRE(d.negotiate(kAllFeatures) != 0);
    d.cc_write(common::kMsixConfig, 0, 2);
    d.cc_write(common::kQueueSelect, 0, 2);
    d.cc_write(common::kQueueDesc, kRingBase, 4);
    d.cc_write(common::kQueueDriver, kRingBase + 0x4000, 4);
    d.cc_write(common::kQueueDevice, kRingBase + 0x8000, 4);
    std::string expect;
    SUBCASE("size 100")
    {
        d.cc_write(common::kQueueSize, 100, 2);
        expect = "queue 0: size 100 is not a power of two in 1..256";
    }
    SUBCASE("size 0")
    {
        d.cc_write(common::kQueueSize, 0, 2);
        expect = "queue 0: size 0 is not a power of two";
    }
    SUBCASE("size 512, more than the maximum")
    {
        d.cc_write(common::kQueueSize, 512, 2);
        expect = "queue 0: size 512 is not a power of two in 1..256";
    }
    SUBCASE("used ring outside RAM")
    {
        d.cc_write(common::kQueueDevice, kRamSize - 16, 4);
        expect = "used ring at 0xfffff0 (2054 bytes) is not in guest RAM";
    }
    SUBCASE("misaligned descriptor table")
    {
        d.cc_write(common::kQueueDesc, kRingBase + 8, 4);
        expect = "misaligned rings";
    }
    d.driver_ok(); // config interrupts need DRIVER_OK
    LogCapture log;
    d.cc_write(common::kQueueEnable, 1, 2);
    CHECK(d.cc_read(common::kQueueEnable, 2) == 0);
    CHECK((d.read_status() & kStatusNeedsReset) != 0);
    CHECK(b.msi_count() == 1);
    CHECK_MESSAGE(log.text().find(expect) != std::string::npos, log.text());
}

TEST_CASE("virtio hostile: requests outside the disk fail with IOERR and change nothing")
{
    VirtioBlkConfig config;
    bool big_blocks = false;
    SUBCASE("512-byte blocks") {}
    SUBCASE("4096-byte blocks")
    {
        config.logical_block_size = 4096;
        big_blocks = true;
    }
    Bench b(config);
    Driver d(b, false);
    d.init(kAllFeatures, 1, true);
    auto before = disk_copy(b);
    uint64_t buf = d.alloc(8192);
    d.fill(buf, 8192, 0x5a);
    CHECK(d.run(0, vblk::kTypeOut, 2048, {{buf, 512, false}}) == vblk::kStatusIoErr);              // just past the end
    CHECK(d.run(0, vblk::kTypeOut, 2040, {{buf, 8192, false}}) == vblk::kStatusIoErr);             // runs past it
    CHECK(d.run(0, vblk::kTypeOut, uint64_t(1) << 55, {{buf, 512, false}}) == vblk::kStatusIoErr); // *512 overflows
    CHECK(d.run(0, vblk::kTypeOut, ~uint64_t(0), {{buf, 512, false}}) == vblk::kStatusIoErr);
    CHECK(d.run(0, vblk::kTypeOut, 0, {{buf, 100, false}}) == vblk::kStatusIoErr);          // not whole sectors
    CHECK(d.run(0, vblk::kTypeIn, 2047, {{buf, 0xfffffe00u, true}}) == vblk::kStatusIoErr); // a 4 GiB buffer
    if (big_blocks) {
        CHECK(d.run(0, vblk::kTypeOut, 1, {{buf, 4096, false}}) == vblk::kStatusIoErr); // misaligned sector
        CHECK(d.run(0, vblk::kTypeOut, 0, {{buf, 1024, false}}) == vblk::kStatusIoErr); // part of a block
        CHECK(d.config_read(vblk::kCfgBlkSize, 4) == 4096);
    }
    CHECK(b.disk->writes == 0);
    CHECK(disk_copy(b) == before);
    CHECK(!b.dev->broken());

    // A good write changes exactly its sectors.
    CHECK(d.run(0, vblk::kTypeOut, 8, {{buf, 4096, false}}) == vblk::kStatusOk);
    auto after = disk_copy(b);
    CHECK(std::equal(after.begin(), after.begin() + 8 * 512, before.begin()));
    CHECK(std::equal(after.begin() + 16 * 512, after.end(), before.begin() + 16 * 512));
    auto l = b.locked();
    CHECK(b.dev->stats().invalid_wr_operations == (big_blocks ? 7 : 5));
    CHECK(b.dev->stats().invalid_rd_operations == 1);
}

TEST_CASE("virtio hostile: notifications of disabled or missing queues do nothing")
{
    VirtioBlkConfig config;
    config.num_queues = 2;
    Bench b(config);
    Driver d(b, false);
    d.setup_pci();
    d.enable_msix();
    REQUIRE(d.negotiate(kAllFeatures) != 0);
    d.cc_write(common::kMsixConfig, 0, 2);
    d.setup_queue(0, 0, 1);
    uint64_t buf = d.alloc(512);
    // Before DRIVER_OK: the device does not consume buffers.
    auto r = d.request(0, vblk::kTypeIn, 0, {{buf, 512, true}});
    CHECK(d.used_idx(0) == 0);
    // Queue 1 is not enabled; queue 7 does not exist.
    d.notify(1);
    {
        auto l = b.locked();
        b.mem.write(d.notify_base + 7 * d.notify_multiplier, 7, 2);
    }
    CHECK(!b.dev->broken());
    CHECK(b.disk->writes == 0);
    // DRIVER_OK takes up what was made available.
    d.driver_ok();
    REQUIRE(d.wait_used(0));
    CHECK(b.peek<uint8_t>(r.status) == vblk::kStatusOk);
    // Writes to an enabled queue's layout are ignored.
    d.cc_write(common::kQueueSelect, 0, 2);
    d.cc_write(common::kQueueDesc, 0x4000, 4);
    d.cc_write(common::kQueueSize, 16, 2);
    CHECK(d.cc_read(common::kQueueDesc, 4) == kRingBase);
    CHECK(d.cc_read(common::kQueueSize, 2) == 256);
    CHECK(!b.dev->broken());
}

TEST_CASE("virtio hostile: a head made available again while in flight")
{
    Bench b;
    Driver d(b, false);
    d.init(kAllFeatures, 1, true);
    uint64_t buf = d.alloc(512);
    b.disk->hold();
    auto r = d.request(0, vblk::kTypeIn, 0, {{buf, 512, true}});
    REQUIRE(b.disk->wait_waiting(1));
    LogCapture log;
    d.make_available(0, r.head);
    CHECK(b.dev->broken());
    CHECK(log.text().find("descriptor 0 made available again while in flight") != std::string::npos);
    b.disk->release();
    b.dev->drain();
    CHECK(d.used_idx(0) == 0); // a broken device leaves the rings alone
    CHECK(b.peek<uint8_t>(r.status) == 0xff);
}

TEST_CASE("virtio reset: requests in flight hold the status at NEEDS_RESET and complete into nothing")
{
    Bench b;
    Driver d(b, false);
    d.init(kAllFeatures, 1, true);
    uint64_t buf = d.alloc(512);
    b.disk->hold();
    auto r = d.request(0, vblk::kTypeIn, 0, {{buf, 512, true}});
    REQUIRE(b.disk->wait_waiting(1));
    uint64_t generation = b.dev->generation();
    d.write_status(0);
    CHECK(b.dev->generation() == generation + 1);
    CHECK(d.read_status() == kStatusNeedsReset); // not 0 until the request is done
    CHECK(b.dev->requests_in_flight() == 1);
    b.disk->release();
    REQUIRE(wait_for([&] { return d.read_status() == 0; }));
    b.dev->drain();
    CHECK(d.used_idx(0) == 0);
    CHECK(b.peek<uint8_t>(r.status) == 0xff);
    CHECK(b.msi_count() == 0);
    {
        auto l = b.locked();
        CHECK(b.dev->stats().rd_operations == 1); // still accounted
    }

    // The device works again after the driver's new initialisation.
    Driver d2(b, false);
    d2.init(kAllFeatures, 1, true);
    CHECK(d2.run(0, vblk::kTypeIn, 0, {{buf, 512, true}}) == vblk::kStatusOk);
    CHECK(d2.used_elem(0, 0).first == 0);
}

TEST_CASE("virtio reset: drain() waits for every request without the device lock; PCI reset after it")
{
    Bench b;
    Driver d(b, false);
    d.init(kAllFeatures, 1, true);
    uint64_t buf = d.alloc(3 * 512);
    b.disk->hold();
    for (int i = 0; i < 3; ++i)
        d.request(0, vblk::kTypeIn, uint64_t(i), {{buf + 512u * unsigned(i), 512, true}});
    REQUIRE(b.disk->wait_waiting(1));
    CHECK(b.dev->requests_in_flight() == 3);
    auto started = std::chrono::steady_clock::now();
    std::thread releaser([&] {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        b.disk->release();
    });
    b.dev->drain();
    releaser.join();
    CHECK(std::chrono::steady_clock::now() - started >= std::chrono::milliseconds(90));
    CHECK(b.dev->requests_in_flight() == 0);
    CHECK(d.used_idx(0) == 3);

    // The machine's reset, after drain(): power-on state.
    {
        auto l = b.locked();
        b.bus.reset();
    }
    CHECK(b.status() == 0);
    CHECK(!std::as_const(*b.dev).queue(0).ready());
    CHECK((b.cfg_read(d.msix_cap + 2, 2) & Msix::kEnable) == 0);
    CHECK(b.dev->bar_mapped_at(4) == PciDevice::kUnmapped);
    Driver d2(b, false);
    d2.init(kAllFeatures, 1, true);
    CHECK(d2.run(0, vblk::kTypeIn, 0, {{buf, 512, true}}) == vblk::kStatusOk);
}

TEST_CASE("virtio-blk error policy: report, ignore, stop, enospc")
{
    VirtioBlkConfig config;
    SUBCASE("report")
    {
        config.werror = BlockErrorAction::Report;
        Bench b(config);
        Driver d(b, false);
        d.init(kAllFeatures, 1, true);
        uint64_t buf = d.alloc(512);
        b.disk->fail_errno = EIO;
        CHECK(d.run(0, vblk::kTypeOut, 0, {{buf, 512, false}}) == vblk::kStatusIoErr);
        auto l = b.locked();
        REQUIRE(b.io_errors.size() == 1);
        CHECK(b.io_errors[0] == std::tuple<bool, int, bool>{false, EIO, false});
        CHECK(b.dev->stats().failed_wr_operations == 1);
        CHECK(b.dev->stats().wr_operations == 0);
    }
    SUBCASE("ignore")
    {
        config.rerror = BlockErrorAction::Ignore;
        Bench b(config);
        Driver d(b, false);
        d.init(kAllFeatures, 1, true);
        uint64_t buf = d.alloc(512);
        b.disk->fail_errno = EIO;
        CHECK(d.run(0, vblk::kTypeIn, 0, {{buf, 512, true}}) == vblk::kStatusOk);
        auto l = b.locked();
        REQUIRE(b.io_errors.size() == 1);
        CHECK(b.io_errors[0] == std::tuple<bool, int, bool>{true, EIO, false});
    }
    SUBCASE("stop: parked, then retried on resume")
    {
        config.werror = BlockErrorAction::Stop;
        Bench b(config);
        Driver d(b, false);
        d.init(kAllFeatures, 1, true);
        uint64_t buf = d.alloc(512);
        d.fill(buf, 512, 0x77);
        b.disk->fail_errno = EIO;
        auto r = d.request(0, vblk::kTypeOut, 9, {{buf, 512, false}});
        REQUIRE(wait_for([&] {
            auto l = b.locked();
            return b.dev->parked_requests() == 1;
        }));
        CHECK(d.used_idx(0) == 0);
        {
            auto l = b.locked();
            REQUIRE(b.io_errors.size() == 1);
            CHECK(b.io_errors[0] == std::tuple<bool, int, bool>{false, EIO, true});
        }
        CHECK(wait_for([&] { return b.dev->requests_in_flight() == 0; })); // parked is not in flight
        b.disk->fail_errno = 0;
        {
            auto l = b.locked();
            b.dev->resume_after_error();
        }
        REQUIRE(d.wait_used(0));
        CHECK(b.peek<uint8_t>(r.status) == vblk::kStatusOk);
        auto l = b.locked();
        CHECK(std::equal(b.disk->m_data.begin() + 9 * 512, b.disk->m_data.begin() + 10 * 512,
                         b.ram.ram.begin() + long(buf)));
        CHECK(b.dev->parked_requests() == 0);
    }
    SUBCASE("enospc (the default werror): stop on ENOSPC, report otherwise; reset drops parked requests")
    {
        Bench b(config);
        Driver d(b, false);
        d.init(kAllFeatures, 1, true);
        uint64_t buf = d.alloc(512);
        b.disk->fail_errno = EIO;
        CHECK(d.run(0, vblk::kTypeOut, 0, {{buf, 512, false}}) == vblk::kStatusIoErr);
        b.disk->fail_errno = ENOSPC;
        d.request(0, vblk::kTypeOut, 0, {{buf, 512, false}});
        REQUIRE(wait_for([&] {
            auto l = b.locked();
            return b.dev->parked_requests() == 1;
        }));
        {
            auto l = b.locked();
            REQUIRE(b.io_errors.size() == 2);
            CHECK(b.io_errors[1] == std::tuple<bool, int, bool>{false, ENOSPC, true});
        }
        d.write_status(0);
        CHECK(d.read_status() == 0);
        auto l = b.locked();
        CHECK(b.dev->parked_requests() == 0);
        b.dev->resume_after_error(); // nothing to resume
    }
    SUBCASE("rerror=stop parks reads")
    {
        config.rerror = BlockErrorAction::Stop;
        Bench b(config);
        Driver d(b, false);
        d.init(kAllFeatures, 1, true);
        uint64_t buf = d.alloc(512);
        b.disk->fail_errno = EIO;
        d.request(0, vblk::kTypeIn, 4, {{buf, 512, true}});
        REQUIRE(wait_for([&] {
            auto l = b.locked();
            return b.dev->parked_requests() == 1;
        }));
        b.disk->fail_errno = 0;
        {
            auto l = b.locked();
            b.dev->resume_after_error();
        }
        REQUIRE(d.wait_used(0));
        auto l = b.locked();
        CHECK(std::equal(b.disk->m_data.begin() + 4 * 512, b.disk->m_data.begin() + 5 * 512,
                         b.ram.ram.begin() + long(buf)));
    }
}
