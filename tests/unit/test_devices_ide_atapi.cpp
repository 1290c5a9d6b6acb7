// Device tests of the PIIX3 IDE function, ATAPI side: the CD-ROM's identity,
// packet commands, sense, media change and unit attention, tray and lock.
#include "ide_bench.h"

using namespace emu;
using namespace emu::test;
using devices::PiixIde;

namespace {

const bool g_quiet = (set_log_level(LogLevel::Error), true);

// Secondary master is the CD-ROM in these benches (drive 2).
constexpr int kCh = 1;
constexpr unsigned kCd = 2;

uint32_t be32(const Bytes& b, size_t at)
{
    return uint32_t(b[at]) << 24 | uint32_t(b[at + 1]) << 16 | uint32_t(b[at + 2]) << 8 | b[at + 3];
}
uint32_t be16(const Bytes& b, size_t at) { return uint32_t(b[at]) << 8 | b[at + 1]; }

Bytes read10(uint32_t lba, uint16_t count)
{
    return {0x28,         0, uint8_t(lba >> 24),  uint8_t(lba >> 16), uint8_t(lba >> 8),
            uint8_t(lba), 0, uint8_t(count >> 8), uint8_t(count)};
}

const Bytes kTur = {0x00};

// Gets past the NOT READY / UNIT ATTENTION pair of a fresh medium.
void settle(Bench& b)
{
    for (int i = 0; i < 3; ++i)
        if (b.atapi(kCh, 0, kTur).ok())
            return;
    FAIL("the drive did not become ready");
}

} // namespace

TEST_CASE("atapi: signature, IDENTIFY DEVICE aborts, IDENTIFY PACKET DEVICE")
{
    Bench b(disk(64), {}, cdrom(100), {});
    b.select(kCh, 0, 0);
    CHECK(b.reg(kCh, LBAM) == 0x14);
    CHECK(b.reg(kCh, LBAH) == 0xeb);
    b.command(kCh, 0xec);
    REQUIRE(b.wait_ready(kCh));
    CHECK((b.status(kCh) & 0x01) == 0x01);
    CHECK(b.reg(kCh, ERROR) == 0x04);
    CHECK(b.reg(kCh, LBAM) == 0x14);
    CHECK(b.reg(kCh, LBAH) == 0xeb);
    auto w = b.identify(kCh, 0, 0xa1);
    CHECK(w[0] == 0x85c0);
    std::string model;
    for (size_t i = 27; i < 47; ++i) {
        model += char(w[i] >> 8);
        model += char(w[i] & 0xff);
    }
    CHECK(model.rfind("EMUD DVD-ROM", 0) == 0);
    CHECK((w[49] & 0x0300) == 0x0300);
    CHECK((w[82] & 0x10) == 0x10);
    CHECK(b.status(kCh) == 0x50);
    // DEVICE RESET: signature, no interrupt.
    b.status(kCh);
    b.command(kCh, 0x08);
    REQUIRE(b.wait_ready(kCh));
    CHECK(!b.irq_level[kCh]);
    CHECK(b.reg(kCh, LBAH) == 0xeb);
}

TEST_CASE("atapi: without media NOT READY; insert gives NOT READY then UNIT ATTENTION once; tray events")
{
    Bench b({}, {}, cdrom(0), {});
    Bench::Reply r = b.atapi(kCh, 0, kTur);
    CHECK(!r.ok());
    CHECK(r.sense_key() == 0x02);
    CHECK(r.reason == 0x03);
    Bytes sense = b.request_sense(kCh, 0);
    REQUIRE(sense.size() == 18);
    CHECK(sense[0] == 0x70);
    CHECK(sense[2] == 0x02);
    CHECK(sense[12] == 0x3a);
    CHECK(sense[13] == 0x01);               // tray closed
    CHECK(b.request_sense(kCh, 0)[2] == 0); // REQUEST SENSE cleared it
    // READ CAPACITY needs a medium too.
    CHECK(b.atapi(kCh, 0, {0x25}).sense_key() == 0x02);

    TestDriver* view = nullptr;
    auto medium = make_backend(300 * 2048, true, view);
    {
        auto l = b.lock();
        REQUIRE(b.ide->insert(kCd, medium.get()));
        CHECK(b.tray_events == std::vector<std::pair<unsigned, bool>>{{kCd, true}, {kCd, false}});
    }
    CHECK(!b.ide->tray_open(kCd));
    CHECK(b.ide->medium(kCd) == medium.get());
    // GET EVENT STATUS NOTIFICATION reports the new medium (allowed during unit attention).
    r = b.atapi(kCh, 0, {0x4a, 0x01, 0, 0, 0x10, 0, 0, 0, 8});
    REQUIRE(r.ok());
    REQUIRE(r.data.size() == 8);
    CHECK(be16(r.data, 0) == 6);
    CHECK(r.data[2] == 0x04);
    CHECK(r.data[4] == 0x02); // new media
    CHECK(r.data[5] == 0x02); // present, tray closed
    r = b.atapi(kCh, 0, {0x4a, 0x01, 0, 0, 0x10, 0, 0, 0, 8});
    CHECK(r.data[4] == 0x00); // reported once
    r = b.atapi(kCh, 0, kTur);
    CHECK(r.sense_key() == 0x02);
    CHECK(b.request_sense(kCh, 0)[12] == 0x3a);
    r = b.atapi(kCh, 0, kTur);
    CHECK(r.sense_key() == 0x06);
    CHECK(b.request_sense(kCh, 0)[12] == 0x28);
    CHECK(b.atapi(kCh, 0, kTur).ok());
    CHECK(b.atapi(kCh, 0, kTur).ok());

    r = b.atapi(kCh, 0, {0x25});
    REQUIRE(r.ok());
    REQUIRE(r.data.size() == 8);
    CHECK(be32(r.data, 0) == 299);
    CHECK(be32(r.data, 4) == 2048);
    {
        auto l = b.lock();
        REQUIRE(b.ide->eject(kCd, false));
    }
    r = b.atapi(kCh, 0, kTur);
    CHECK(r.sense_key() == 0x02);
    CHECK(b.request_sense(kCh, 0)[13] == 0x02); // tray open
    b.ide->drain();
}

TEST_CASE("atapi: READ(10) by PIO in blocks of the byte count limit, READ(12) range check")
{
    Bench b({}, {}, cdrom(64), {});
    settle(b);
    TestDriver* d = b.drivers[kCd];
    Bench::Reply r = b.atapi(kCh, 0, read10(3, 5), 4096);
    REQUIRE(r.ok());
    CHECK(r.reason == 0x03);
    CHECK(r.data == d->contents(3 * 2048, 5 * 2048));
    // 16 KiB of buffer: 8 sectors per round; blocks of 4096 within it.
    CHECK(r.blocks == std::vector<size_t>{4096, 4096, 2048});
    r = b.atapi(kCh, 0, read10(0, 20), 0xfffe);
    REQUIRE(r.ok());
    CHECK(r.data == d->contents(0, 20 * 2048));
    CHECK(r.blocks == std::vector<size_t>{16384, 16384, 8192});
    // An odd byte count limit is rounded down; 0 means the most.
    r = b.atapi(kCh, 0, read10(1, 1), 1001);
    REQUIRE(r.ok());
    CHECK(r.blocks == std::vector<size_t>{1000, 1000, 48});
    CHECK(r.data == d->contents(2048, 2048));
    r = b.atapi(kCh, 0, read10(1, 1), 0);
    REQUIRE(r.ok());
    CHECK(r.blocks == std::vector<size_t>{2048});
    // Zero sectors: nothing to move.
    r = b.atapi(kCh, 0, read10(1, 0));
    CHECK(r.ok());
    CHECK(r.data.empty());

    int reads = d->reads;
    r = b.atapi(kCh, 0, read10(60, 5));
    CHECK(r.sense_key() == 0x05);
    CHECK(b.request_sense(kCh, 0)[12] == 0x21);
    r = b.atapi(kCh, 0, {0xa8, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff}); // READ(12), 2^32-1 sectors
    CHECK(r.sense_key() == 0x05);
    r = b.atapi(kCh, 0, {0xa8, 0, 0, 0, 0, 10, 0, 0, 0, 2});
    REQUIRE(r.ok());
    CHECK(r.data == d->contents(10 * 2048, 2 * 2048));
    CHECK(d->reads == reads + 1);
    CHECK(b.ide->stats(kCd).read.invalid == 2);
}

TEST_CASE("atapi: READ(10) by DMA")
{
    Bench b({}, {}, cdrom(64), {});
    settle(b);
    b.fill_ram(0x10000, 0x8000, 0xee);
    b.prd(0x1000, {{0x10000, 0x1000}, {0x12000, 0x2000}});
    b.bm_setup(kCh, 0x1000, true);
    Bench::Reply r = b.atapi(kCh, 0, read10(7, 6), 0xfffe, true);
    REQUIRE(r.ok());
    CHECK(r.reason == 0x03);
    TestDriver* d = b.drivers[kCd];
    Bytes got = b.ram_bytes(0x10000, 0x1000);
    Bytes tail = b.ram_bytes(0x12000, 0x2000);
    got.insert(got.end(), tail.begin(), tail.end());
    CHECK(got == d->contents(7 * 2048, 6 * 2048));
    CHECK(b.ram_bytes(0x11000, 0x1000) == Bytes(0x1000, 0xee)); // the gap between the entries
    CHECK(b.ram_bytes(0x14000, 0x100) == Bytes(0x100, 0xee));
    CHECK((b.bm_status(kCh) & 0x07) == 0x04);
    // INQUIRY by DMA, into a 64 KiB PRD (larger than the reply).
    b.prd(0x1000, {{0x20000, 0x10000}});
    b.bm_setup(kCh, 0x1000, true);
    r = b.atapi(kCh, 0, {0x12, 0, 0, 0, 36}, 0xfffe, true);
    REQUIRE(r.ok());
    Bytes inq = b.ram_bytes(0x20000, 36);
    CHECK(inq[0] == 0x05);
    CHECK(std::string(inq.begin() + 8, inq.begin() + 12) == "EMUD");
}

TEST_CASE("atapi: INQUIRY, MODE SENSE(10), READ TOC, GET CONFIGURATION, MECHANISM STATUS, READ DISC INFORMATION")
{
    Bench b({}, {}, cdrom(1000), {});
    settle(b);
    Bench::Reply r = b.atapi(kCh, 0, {0x12, 0, 0, 0xff, 0xff}); // allocation 65535
    REQUIRE(r.ok());
    REQUIRE(r.data.size() == 36);
    CHECK(r.data[0] == 0x05);
    CHECK(r.data[1] == 0x80);
    CHECK(std::string(r.data.begin() + 16, r.data.begin() + 28) == "EMUD DVD-ROM");
    r = b.atapi(kCh, 0, {0x12, 0, 0, 0, 5});
    CHECK(r.data.size() == 5);
    CHECK(b.atapi(kCh, 0, {0x12, 1, 0x80, 0, 36}).sense_key() == 0x05); // no VPD

    r = b.atapi(kCh, 0, {0x5a, 0, 0x2a, 0, 0, 0, 0, 0xff, 0xff});
    REQUIRE(r.ok());
    REQUIRE(r.data.size() == 8 + 22);
    CHECK(be16(r.data, 0) == r.data.size() - 2);
    CHECK(r.data[8] == 0x2a);
    CHECK(r.data[9] == 0x14);
    CHECK((r.data[8 + 6] & 0x0b) == 0x09); // lockable, eject, not locked
    r = b.atapi(kCh, 0, {0x5a, 0, 0x3f, 0, 0, 0, 0, 0xff, 0xff});
    REQUIRE(r.ok());
    CHECK(r.data.size() == 8 + 8 + 22);
    CHECK(r.data[8] == 0x01);
    CHECK(b.atapi(kCh, 0, {0x5a, 0, 0x05, 0, 0, 0, 0, 0xff, 0xff}).sense_key() == 0x05);
    CHECK(b.atapi(kCh, 0, {0x5a, 0, 0xea, 0, 0, 0, 0, 0xff, 0xff}).sense_key() == 0x05); // saved values

    r = b.atapi(kCh, 0, {0x43, 0, 0, 0, 0, 0, 0, 0xff, 0xff});
    REQUIRE(r.ok());
    REQUIRE(r.data.size() == 20);
    CHECK(be16(r.data, 0) == 18);
    CHECK(r.data[2] == 1);
    CHECK(r.data[3] == 1);
    CHECK(r.data[5] == 0x14);
    CHECK(r.data[6] == 1);
    CHECK(be32(r.data, 8) == 0);
    CHECK(r.data[14] == 0xaa);
    CHECK(be32(r.data, 16) == 1000);
    r = b.atapi(kCh, 0, {0x43, 0x02, 0, 0, 0, 0, 0, 0xff, 0xff}); // MSF
    REQUIRE(r.ok());
    CHECK(be32(r.data, 8) == 0x00000200u);                       // 00:02:00
    CHECK(be32(r.data, 16) == uint32_t(0 << 16 | 15 << 8 | 25)); // 1150 frames = 00:15:25
    r = b.atapi(kCh, 0, {0x43, 0, 1, 0, 0, 0, 0, 0, 12});        // session info
    REQUIRE(r.ok());
    CHECK(r.data.size() == 12);
    CHECK(be16(r.data, 0) == 10);
    CHECK(b.atapi(kCh, 0, {0x43, 0, 5, 0, 0, 0, 0, 0, 12}).sense_key() == 0x05);
    CHECK(b.atapi(kCh, 0, {0x43, 0, 0, 0, 0, 0, 2, 0, 12}).sense_key() == 0x05); // no track 2

    r = b.atapi(kCh, 0, {0x46, 0, 0, 0, 0, 0, 0, 0xff, 0xff});
    REQUIRE(r.ok());
    CHECK(be32(r.data, 0) == r.data.size() - 4);
    CHECK(be16(r.data, 6) == 0x0008);                          // CD-ROM
    CHECK(be16(r.data, 8) == 0x0000);                          // profile list first
    r = b.atapi(kCh, 0, {0x46, 2, 0, 3, 0, 0, 0, 0xff, 0xff}); // just feature 3
    REQUIRE(r.ok());
    CHECK(r.data.size() == 8 + 8);
    CHECK(be16(r.data, 8) == 0x0003);

    r = b.atapi(kCh, 0, {0xbd, 0, 0, 0, 0, 0, 0, 0, 0, 8});
    REQUIRE(r.ok());
    CHECK(r.data.size() == 8);
    CHECK(r.data[1] == 0);
    r = b.atapi(kCh, 0, {0x51, 0, 0, 0, 0, 0, 0, 0xff, 0xff});
    REQUIRE(r.ok());
    CHECK(r.data.size() == 34);
    CHECK(r.data[2] == 0x0e);

    r = b.atapi(kCh, 0, {0xd9});
    CHECK(r.sense_key() == 0x05);
    CHECK(b.request_sense(kCh, 0)[12] == 0x20);
    r = b.atapi(kCh, 0, {0x1a, 0, 0x2a, 0, 0xff}); // MODE SENSE(6) is not an ATAPI command
    CHECK(r.sense_key() == 0x05);
}

TEST_CASE("atapi: the lock refuses ejects unless forced; guest START STOP UNIT moves the tray")
{
    Bench b({}, {}, cdrom(100), {});
    settle(b);
    CHECK(b.atapi(kCh, 0, {0x1e, 0, 0, 0, 1}).ok()); // PREVENT
    {
        auto l = b.lock();
        CHECK(b.ide->tray_locked(kCd));
        auto r = b.ide->eject(kCd, false);
        REQUIRE(!r);
        CHECK(r.error().message.find("ide1-cd0") != std::string::npos);
        CHECK(b.tray_events.empty());
    }
    CHECK(!b.ide->tray_open(kCd));
    // The guest hears an eject request.
    Bench::Reply r = b.atapi(kCh, 0, {0x4a, 0x01, 0, 0, 0x10, 0, 0, 0, 8});
    CHECK(r.data[4] == 0x01);
    // Its own eject is refused while it holds the lock.
    r = b.atapi(kCh, 0, {0x1b, 0, 0, 0, 0x02});
    CHECK(r.sense_key() == 0x05);
    Bytes sense = b.request_sense(kCh, 0);
    CHECK(sense[12] == 0x53);
    CHECK(sense[13] == 0x02);
    r = b.atapi(kCh, 0, {0x5a, 0, 0x2a, 0, 0, 0, 0, 0, 30});
    CHECK((r.data[8 + 6] & 0x02) == 0x02); // the capabilities page shows the lock

    // Unlock, eject, load: the tray callback both ways, the medium stays.
    CHECK(b.atapi(kCh, 0, {0x1e, 0, 0, 0, 0}).ok());
    CHECK(b.atapi(kCh, 0, {0x1b, 0, 0, 0, 0x02}).ok());
    CHECK(b.ide->tray_open(kCd));
    CHECK(b.atapi(kCh, 0, kTur).sense_key() == 0x02);
    r = b.atapi(kCh, 0, {0xbd, 0, 0, 0, 0, 0, 0, 0, 0, 8});
    CHECK(r.data[1] == 0x10); // door open
    CHECK(b.atapi(kCh, 0, {0x1b, 0, 0, 0, 0x03}).ok());
    {
        auto l = b.lock();
        CHECK(b.tray_events == std::vector<std::pair<unsigned, bool>>{{kCd, true}, {kCd, false}});
    }
    settle(b);
    CHECK(b.ide->medium(kCd) == b.backends[kCd].get());

    // Locked again: a forced eject opens the tray and takes the medium.
    CHECK(b.atapi(kCh, 0, {0x1e, 0, 0, 0, 1}).ok());
    {
        auto l = b.lock();
        REQUIRE(b.ide->eject(kCd, true));
        CHECK(b.ide->tray_open(kCd));
        CHECK(!b.ide->tray_locked(kCd));
        CHECK(b.ide->medium(kCd) == nullptr);
        CHECK(b.tray_events.back() == std::pair<unsigned, bool>{kCd, true});
        // Media calls on a disk or a missing drive fail.
        CHECK(!b.ide->eject(0, true));
        CHECK(!b.ide->insert(7, nullptr));
        CHECK(!b.ide->close_tray(0));
        REQUIRE(b.ide->close_tray(kCd));
        CHECK(!b.ide->set_medium(kCd, b.backends[kCd].get())); // the tray is closed
    }
    CHECK(b.atapi(kCh, 0, kTur).sense_key() == 0x02);
    CHECK(b.request_sense(kCh, 0)[13] == 0x01);
}

TEST_CASE("atapi: soft reset of the channel keeps the medium; a packet without media needs no I/O")
{
    Bench b(disk(16), {}, cdrom(10), {});
    settle(b);
    b.out(Bench::ctl(kCh), 0x04);
    b.out(Bench::ctl(kCh), 0x00);
    REQUIRE(b.wait_ready(kCh));
    b.select(kCh, 0, 0);
    CHECK(b.reg(kCh, LBAH) == 0xeb);
    CHECK(b.atapi(kCh, 0, kTur).ok());
    CHECK(b.atapi(kCh, 0, read10(9, 1)).ok());
    CHECK(b.atapi(kCh, 0, read10(10, 1)).sense_key() == 0x05);
}
