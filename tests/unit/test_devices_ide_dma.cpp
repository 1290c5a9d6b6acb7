// Device tests of the PIIX3 IDE bus master: READ/WRITE DMA through PRD
// tables in guest RAM, the PRD-longer/shorter-than-transfer cases, bus errors
// (PRDs outside RAM, endless chains, bus mastering off), TRIM, and a DMA
// write stopped by werror=stop and resumed.
#include "ide_bench.h"

using namespace emu;
using namespace emu::test;
using devices::BlockErrorAction;
using devices::PiixIde;

namespace {

const bool g_quiet = (set_log_level(LogLevel::Error), true);

Bytes data(size_t bytes, uint8_t seed)
{
    Bytes b(bytes);
    for (size_t i = 0; i < bytes; ++i)
        b[i] = uint8_t(seed + i * 3 + i / 512);
    return b;
}

void put_ram(Bench& b, uint64_t at, const Bytes& d)
{
    auto l = b.lock();
    std::memcpy(b.ram.ram.data() + at, d.data(), d.size());
}

// Waits for the end of a DMA command: the interrupt, or BSY and DRQ gone.
bool wait_dma_done(Bench& b, int ch)
{
    return b.wait_for([&] { return b.irq_level[size_t(ch)] || !(b.alt_status(ch) & 0x88); });
}

} // namespace

TEST_CASE("ide dma: READ DMA into two PRD regions, exact fit (active 0, interrupt 1)")
{
    Bench b(disk(4096), {}, {}, {});
    b.fill_ram(0, Bench::kRam, 0xcc);
    b.prd(0x1000, {{0x10000, 0x1000}, {0x30000, 0x1000}});
    b.bm_setup(0, 0x1000, true);
    b.lba28(0, 0, 200, 16);
    b.command(0, 0xc8);
    REQUIRE(b.wait_ready(0));
    CHECK(b.alt_status(0) == 0x58); // the device waits for the bus master
    CHECK(!b.irq_level[0]);
    b.bm_start(0, true);
    REQUIRE(wait_dma_done(b, 0));
    CHECK(b.irq_level[0]);
    CHECK((b.bm_status(0) & 0x07) == 0x04);
    b.bm_stop(0);
    CHECK(b.status(0) == 0x50);
    Bytes want = b.drivers[0]->contents(200 * 512, 16 * 512);
    CHECK(b.ram_bytes(0x10000, 0x1000) == Bytes(want.begin(), want.begin() + 0x1000));
    CHECK(b.ram_bytes(0x30000, 0x1000) == Bytes(want.begin() + 0x1000, want.end()));
    CHECK(b.ram_bytes(0x11000, 0x1f000) == Bytes(0x1f000, 0xcc)); // between the regions
    CHECK(b.ram_bytes(0xf000, 0x1000) == Bytes(0x1000, 0xcc));
    CHECK(b.ram_bytes(0x31000, 0x1000) == Bytes(0x1000, 0xcc));
    auto s = b.ide->stats(0);
    CHECK(s.read.operations == 1);
    CHECK(s.read.bytes == 16 * 512);
}

TEST_CASE("ide dma: WRITE DMA EXT from guest RAM, engine started before the command")
{
    Bench b(disk(4096), {}, {}, {});
    Bytes d = data(24 * 512, 5);
    put_ram(b, 0x40000, Bytes(d.begin(), d.begin() + 0x2000));
    put_ram(b, 0x50000, Bytes(d.begin() + 0x2000, d.end()));
    b.prd(0x2000, {{0x40000, 0x2000}, {0x50000, 0x1000}});
    b.bm_setup(0, 0x2000, false);
    b.bm_start(0, false);
    b.lba48(0, 0, 1000, 24);
    b.command(0, 0x35);
    REQUIRE(wait_dma_done(b, 0));
    CHECK((b.bm_status(0) & 0x07) == 0x04);
    b.bm_stop(0);
    CHECK(b.status(0) == 0x50);
    CHECK(b.drivers[0]->contents(1000 * 512, d.size()) == d);
    Bytes before(512);
    for (size_t i = 0; i < before.size(); ++i)
        before[i] = pattern(999 * 512 + i);
    CHECK(b.drivers[0]->contents(999 * 512, 512) == before); // the sector before is untouched
    CHECK(b.ide->stats(0).write.bytes == d.size());
    // Read it back by DMA into a single 64 KiB region (count 0): PRD longer
    // than the transfer leaves the engine active with the interrupt bit.
    b.prd(0x2000, {{0x60000, 0x10000}});
    b.bm_setup(0, 0x2000, true);
    b.lba48(0, 0, 1000, 24);
    b.command(0, 0x25);
    b.bm_start(0, true);
    REQUIRE(wait_dma_done(b, 0));
    CHECK((b.bm_status(0) & 0x07) == 0x05);
    b.bm_stop(0);
    CHECK((b.bm_status(0) & 0x01) == 0);
    CHECK(b.status(0) == 0x50);
    CHECK(b.ram_bytes(0x60000, d.size()) == d);
}

TEST_CASE("ide dma: a PRD table shorter than the transfer stops the engine without interrupt; a new table finishes it")
{
    Bench b(disk(4096), {}, {}, {});
    b.fill_ram(0, Bench::kRam, 0);
    b.prd(0x1000, {{0x10000, 0xa00}}); // 2.5 sectors of 8
    b.bm_setup(0, 0x1000, true);
    b.lba28(0, 0, 64, 8);
    b.command(0, 0xc8);
    b.bm_start(0, true);
    REQUIRE(b.wait_for([&] { return !(b.bm_status(0) & 0x01); }));
    REQUIRE(b.wait_ready(0));
    CHECK((b.bm_status(0) & 0x07) == 0x00); // active 0, interrupt 0: PRD smaller than the transfer
    CHECK(!b.irq_level[0]);
    CHECK(b.alt_status(0) == 0x58); // the device still requests DMA
    Bytes want = b.drivers[0]->contents(64 * 512, 8 * 512);
    CHECK(b.ram_bytes(0x10000, 0xa00) == Bytes(want.begin(), want.begin() + 0xa00));
    CHECK(b.ram_bytes(0x10a00, 0x100) == Bytes(0x100, 0));
    // The driver may go on with a new table for the rest.
    b.bm_stop(0);
    b.prd(0x1000, {{0x20000, 0x600}});
    b.bm_setup(0, 0x1000, true);
    b.bm_start(0, true);
    REQUIRE(wait_dma_done(b, 0));
    CHECK((b.bm_status(0) & 0x07) == 0x04);
    CHECK(b.status(0) == 0x50);
    CHECK(b.ram_bytes(0x20000, 0x600) == Bytes(want.begin() + 0xa00, want.end()));
    CHECK(b.ram_bytes(0x20600, 0x100) == Bytes(0x100, 0));
}

TEST_CASE("ide dma: PRD table or data outside RAM, endless chains, bus mastering off: error status, no stray writes")
{
    Bench b(DriveSpec{.kind = devices::IdeDriveKind::Disk, .size = (uint64_t(1) << 26) * 512}, {}, {}, {});
    b.fill_ram(0, Bench::kRam, 0x5a);
    auto run_read = [&](uint32_t table, uint16_t count) {
        b.bm_setup(0, table, true);
        b.lba48(0, 0, 0, count);
        b.command(0, 0x25);
        b.bm_start(0, true);
        REQUIRE(wait_dma_done(b, 0));
        uint8_t bm = b.bm_status(0);
        b.bm_stop(0);
        return bm;
    };
    auto check_failed = [&](uint8_t bm) {
        CHECK((bm & 0x07) == 0x06); // error + interrupt, not active
        CHECK(b.status(0) == 0x41);
        CHECK(b.reg(0, ERROR) == 0x04);
    };
    SUBCASE("table outside RAM")
    {
        check_failed(run_read(0x7fff0000, 8));
        CHECK(b.drivers[0]->reads == 0);
    }
    SUBCASE("table straddling the end of RAM") { check_failed(run_read(Bench::kRam - 4, 8)); }
    SUBCASE("data region outside RAM")
    {
        b.prd(0x1000, {{0x10000, 0x200}, {0xfff00000u, 0xe00}});
        check_failed(run_read(0x1000, 8));
        CHECK(b.drivers[0]->reads == 0);
    }
    SUBCASE("data region running past the end of RAM")
    {
        b.prd(0x1000, {{uint32_t(Bench::kRam - 0x200), 0x1000}});
        check_failed(run_read(0x1000, 8));
    }
    SUBCASE("an endless chain of 2-byte entries without EOT is cut off")
    {
        // 64 KiB of entries, each 2 bytes at 0x40000 + 2i, none with EOT: the
        // walk stops at kMaxPrdEntries, long before the 32 MiB are covered.
        {
            auto l = b.lock();
            for (uint32_t i = 0; i < 0x2000; ++i) {
                uint32_t entry[2] = {0x40000 + 2 * i, 2};
                std::memcpy(b.ram.ram.data() + 0x80000 + 8 * i, entry, 8);
            }
        }
        check_failed(run_read(0x80000, 0));                         // 65536 sectors
        CHECK(b.ram_bytes(0x40000, 0x4000) == Bytes(0x4000, 0x5a)); // the round failed before any I/O
        CHECK(b.drivers[0]->reads == 0);
    }
    SUBCASE("bus mastering disabled in PCI command")
    {
        b.prd(0x1000, {{0x10000, 0x1000}});
        b.bus.config_write(PiixIde::kDevfn, 0x04, 0x0001, 2);
        check_failed(run_read(0x1000, 8));
        CHECK(b.ram_bytes(0x10000, 0x1000) == Bytes(0x1000, 0x5a));
    }
    // The channel works afterwards.
    b.bus.config_write(PiixIde::kDevfn, 0x04, 0x0005, 2);
    b.bm_clear(0);
    b.prd(0x1000, {{0x10000, 0x1000}});
    CHECK((run_read(0x1000, 8) & 0x07) == 0x04);
    CHECK(b.status(0) == 0x50);
    CHECK(b.ram_bytes(0x10000, 0x1000) == b.drivers[0]->contents(0, 0x1000));
}

TEST_CASE("ide dma: many small PRD entries are walked across rounds")
{
    Bench b(disk(4096), {}, {}, {});
    // 600 entries of 256 bytes scattered every 512 bytes: more segments
    // than one round takes.
    std::vector<std::pair<uint32_t, uint32_t>> entries;
    for (uint32_t i = 0; i < 600; ++i)
        entries.emplace_back(0x20000 + 0x200 * i, 0x100);
    b.prd(0x1000, entries);
    b.bm_setup(0, 0x1000, true);
    b.lba28(0, 0, 10, 0); // 256 sectors: the table is longer
    b.command(0, 0xc8);
    b.bm_start(0, true);
    REQUIRE(wait_dma_done(b, 0));
    CHECK((b.bm_status(0) & 0x07) == 0x05);
    CHECK(b.status(0) == 0x50);
    Bytes want = b.drivers[0]->contents(10 * 512, 256 * 512);
    bool same = true;
    for (uint32_t i = 0; i < 512; ++i)
        same &= b.ram_bytes(0x20000 + 0x200 * i, 0x100) == Bytes(want.begin() + 256 * i, want.begin() + 256 * (i + 1));
    CHECK(b.ram_bytes(0x20100, 0x100) != Bytes(want.begin() + 256, want.begin() + 512)); // the gaps are not written
    CHECK(same);
}

TEST_CASE("ide dma: a 2.5 MiB READ DMA EXT takes several rounds of 64 KiB entries")
{
    Bench b(disk(8192));
    const uint32_t bytes = 5120 * 512;
    std::vector<std::pair<uint32_t, uint32_t>> entries;
    for (uint32_t at = 0; at < bytes; at += 0x10000)
        entries.emplace_back(0x100000 + at, 0x10000); // count 0: 64 KiB each
    b.fill_ram(0x100000 + bytes, 0x1000, 0x33);
    b.prd(0x1000, entries);
    b.bm_setup(0, 0x1000, true);
    b.lba48(0, 0, 1000, 5120);
    b.command(0, 0x25);
    b.bm_start(0, true);
    REQUIRE(wait_dma_done(b, 0));
    CHECK((b.bm_status(0) & 0x07) == 0x04);
    b.bm_stop(0);
    CHECK(b.status(0) == 0x50);
    CHECK(b.ram_bytes(0x100000, bytes) == b.drivers[0]->contents(1000 * 512, bytes));
    CHECK(b.ram_bytes(0x100000 + bytes, 0x1000) == Bytes(0x1000, 0x33));
    // Adjacent entries merge: one backend request per 1 MiB round.
    CHECK(b.drivers[0]->reads == 3);
}

TEST_CASE("ide dma: DATA SET MANAGEMENT trims the ranges, refuses ranges past the end")
{
    Bench b(DriveSpec{.kind = devices::IdeDriveKind::Disk, .size = 1000 * 512, .discard = true}, disk(100), {}, {});
    auto w = b.identify(0, 0);
    CHECK(w[169] == 1);
    CHECK(w[105] == 8);
    CHECK(b.identify(0, 1)[169] == 0);
    auto dsm = [&](const std::vector<std::pair<uint64_t, uint16_t>>& ranges, unsigned unit = 0) {
        Bytes block(512, 0);
        for (size_t i = 0; i < ranges.size(); ++i) {
            uint64_t v = ranges[i].first | uint64_t(ranges[i].second) << 48;
            std::memcpy(block.data() + 8 * i, &v, 8);
        }
        put_ram(b, 0x30000, block);
        b.prd(0x1000, {{0x30000, 0x200}});
        b.bm_setup(0, 0x1000, false);
        b.select(0, unit);
        b.set(0, FEATURE, 0);
        b.set(0, NSECT, 0);
        b.set(0, FEATURE, 1);
        b.set(0, NSECT, 1);
        b.command(0, 0x06);
        b.set(0, NSECT, 0xff); // rewriting the count mid-command changes nothing
        b.set(0, NSECT, 0xff);
        b.bm_start(0, false);
        REQUIRE(wait_dma_done(b, 0));
        b.bm_stop(0);
        return b.status(0);
    };
    CHECK(dsm({{10, 4}, {0, 0}, {500, 100}}) == 0x50);
    CHECK(b.drivers[0]->contents(10 * 512, 4 * 512) == Bytes(4 * 512, 0));
    CHECK(b.drivers[0]->contents(500 * 512, 100 * 512) == Bytes(100 * 512, 0));
    CHECK(b.drivers[0]->contents(14 * 512, 512) != Bytes(512, 0));
    CHECK(b.ide->stats(0).unmap.bytes == 104 * 512);
    size_t discards = b.drivers[0]->discards.size();
    CHECK(dsm({{20, 1}, {999, 2}}) == 0x41); // the second range passes the end: nothing is trimmed
    CHECK(b.drivers[0]->discards.size() == discards);
    CHECK(b.drivers[0]->contents(20 * 512, 512) != Bytes(512, 0));
    // A disk without discard aborts.
    b.select(0, 1);
    b.set(0, FEATURE, 1);
    b.set(0, NSECT, 1);
    b.command(0, 0x06);
    REQUIRE(b.wait_ready(0));
    CHECK(b.status(0) == 0x41);
}

TEST_CASE("ide dma: werror=stop keeps a DMA write and resume_after_error finishes it")
{
    Bench b(DriveSpec{.kind = devices::IdeDriveKind::Disk, .size = 256 * 512, .werror = BlockErrorAction::Stop}, {}, {},
            {});
    Bytes d = data(8 * 512, 77);
    put_ram(b, 0x10000, d);
    b.prd(0x1000, {{0x10000, 0x1000}});
    b.bm_setup(0, 0x1000, false);
    b.drivers[0]->set_failures(0, EIO);
    b.lba28(0, 0, 30, 8);
    b.command(0, 0xca);
    b.bm_start(0, false);
    REQUIRE(b.wait_for([&] { return b.io_stopped(0); }));
    CHECK(!b.irq_level[0]);
    CHECK((b.bm_status(0) & 0x01) == 0x01); // still active
    {
        auto l = b.lock();
        REQUIRE(b.io_errors.size() == 1);
        CHECK(b.io_errors[0].stopping);
        CHECK(!b.io_errors[0].is_read);
    }
    b.drivers[0]->set_failures(0, 0);
    {
        auto l = b.lock();
        b.ide->resume_after_error();
    }
    REQUIRE(wait_dma_done(b, 0));
    CHECK((b.bm_status(0) & 0x07) == 0x04);
    CHECK(b.status(0) == 0x50);
    CHECK(b.drivers[0]->contents(30 * 512, d.size()) == d);
    CHECK(b.ide->stats(0).write.operations == 1);
}

TEST_CASE("ide dma: state dump names the channels and drives")
{
    Bench b(disk(16), {}, cdrom(4), {});
    std::string dump;
    {
        auto l = b.lock();
        dump = b.ide->dump();
    }
    CHECK(dump.find("ide0.unit=0x0") != std::string::npos);
    CHECK(dump.find("ide1.drives[0].lcyl=0x14") != std::string::npos);
    CHECK(dump.find("bar4=io size=0x10") != std::string::npos);
}
