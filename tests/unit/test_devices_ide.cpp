// Device tests of the PIIX3 IDE function, ATA side: PCI identity, IDENTIFY,
// PIO reads and writes (LBA28, LBA48, CHS, multiple), flush, settings, soft
// reset, absent devices, interrupts, error actions, the reset contract.
#include "ide_bench.h"

using namespace emu;
using namespace emu::test;
using devices::BlockErrorAction;
using devices::PiixIde;

namespace {

const bool g_quiet = (set_log_level(LogLevel::Error), true);

std::string ata_string(const std::array<uint16_t, 256>& w, size_t first, size_t words)
{
    std::string s;
    for (size_t i = first; i < first + words; ++i) {
        s += char(w[i] >> 8);
        s += char(w[i] & 0xff);
    }
    while (!s.empty() && s.back() == ' ')
        s.pop_back();
    return s;
}

Bytes expected(TestDriver* d, uint64_t lba, size_t sectors) { return d->contents(lba * 512, sectors * 512); }

Bytes data(size_t bytes, uint8_t seed)
{
    Bytes b(bytes);
    for (size_t i = 0; i < bytes; ++i)
        b[i] = uint8_t(seed + i * 5 + i / 512);
    return b;
}

} // namespace

TEST_CASE("ide: PCI function 8086:7010, class 0x010180, BAR4 and IDETIM")
{
    Bench b(disk(64), {}, {}, {}, false);
    auto cfg = [&](unsigned reg, unsigned size) { return b.bus.config_read(PiixIde::kDevfn, reg, size); };
    CHECK(cfg(0x00, 4) == 0x70108086u);
    CHECK((cfg(0x08, 4) >> 8) == 0x010180u);
    CHECK(cfg(0x3d, 1) == 0); // no INTx: legacy IRQ 14/15
    CHECK(cfg(0x0e, 1) == 0x00);
    // BAR4 sizing: 16 bytes of I/O.
    b.bus.config_write(PiixIde::kDevfn, 0x20, 0xffffffffu, 4);
    CHECK(cfg(0x20, 4) == 0xfffffff1u);
    CHECK(cfg(0x10, 4) == 0); // no BAR0-3 in legacy mode
    // Only I/O and bus master enable are writable in the command register.
    b.bus.config_write(PiixIde::kDevfn, 0x04, 0xffff, 2);
    CHECK(cfg(0x04, 2) == 0x0005);
    // IDETIM: 0 at power-on, the decode enable bits after firmware setup.
    CHECK(cfg(0x40, 4) == 0);
    b.ide->firmware_setup();
    CHECK(cfg(0x40, 2) == 0x8000);
    CHECK(cfg(0x42, 2) == 0x8000);
    b.bus.config_write(PiixIde::kDevfn, 0x40, 0xa307, 2);
    CHECK(cfg(0x40, 2) == 0xa307);
    b.bus.config_write(PiixIde::kDevfn, 0x44, 0x5a, 1);
    CHECK(cfg(0x44, 1) == 0x5a);
    // BAR4 placed and decoded once I/O is enabled.
    b.bus.config_write(PiixIde::kDevfn, 0x20, Bench::kBm, 4);
    CHECK(b.ide->bar_mapped_at(4) == Bench::kBm);
    b.out(Bench::kBm + 4, 0x12345677, 4);
    CHECK(b.in(Bench::kBm + 4, 4) == 0x12345674u); // dword aligned
    b.out(Bench::kBm + 2, 0xff);
    CHECK(b.in(Bench::kBm + 2) == 0x60); // DMA-capable bits stick, active/error/interrupt do not
}

TEST_CASE("ide: IDENTIFY DEVICE describes the disk (LBA28 and LBA48 sizes, modes, strings)")
{
    const uint64_t sectors = 0x12345678ull; // > 2^28: LBA48 only above
    Bench b(DriveSpec{.kind = devices::IdeDriveKind::Disk, .size = sectors * 512}, {}, {}, {});
    CHECK(b.status(0) == 0x50);
    auto w = b.identify(0, 0);
    CHECK(w[0] == 0x0040);
    CHECK(w[1] == 16383);
    CHECK(w[3] == 16);
    CHECK(w[6] == 63);
    CHECK(ata_string(w, 27, 20) == "EMUD HARDDISK");
    CHECK(ata_string(w, 10, 10) == "EM00000");
    CHECK(ata_string(w, 23, 4) == "1.0");
    CHECK((w[47] & 0xff) == 16);
    CHECK((w[49] & 0x0300) == 0x0300);                     // LBA, DMA
    CHECK((w[60] | uint32_t(w[61]) << 16) == 0x0fffffffu); // LBA28 capacity is capped
    CHECK((w[83] & 0xc400) == 0x4400);                     // 48-bit feature set
    CHECK((w[86] & 0x0400) == 0x0400);
    uint64_t lba48 = uint64_t(w[100]) | uint64_t(w[101]) << 16 | uint64_t(w[102]) << 32 | uint64_t(w[103]) << 48;
    CHECK(lba48 == sectors);
    CHECK((w[63] & 0x07) == 0x07);
    CHECK((w[88] & 0x3f) == 0x3f);
    CHECK((w[82] & 0x20) == 0x20);     // write cache supported
    CHECK((w[85] & 0x20) == 0x20);     // and enabled
    CHECK((w[83] & 0x3000) == 0x3000); // FLUSH CACHE and EXT
    CHECK(w[169] == 0);                // no TRIM unless discard is on
    uint8_t sum = 0;
    for (uint16_t v : w)
        sum = uint8_t(sum + (v & 0xff) + (v >> 8));
    CHECK((w[255] & 0xff) == 0xa5);
    CHECK(sum == 0);
    // The data went out; no interrupt after the last word, status back to ready.
    CHECK(b.status(0) == 0x50);
    CHECK(!b.irq_level[0]);
}

TEST_CASE("ide: PIO READ SECTORS, one and several sectors, interrupt per block")
{
    Bench b(disk(1024), {}, {}, {});
    b.lba28(0, 0, 5, 1);
    b.command(0, 0x20);
    REQUIRE(b.wait_ready(0));
    CHECK(b.irq_level[0]);
    Bytes one = b.pio_in(0, 512);
    CHECK(one == expected(b.drivers[0], 5, 1));
    CHECK(b.status(0) == 0x50);

    int raises = b.irq_raises[0];
    b.lba28(0, 0, 100, 40); // more than the 32 sectors the buffer holds: two backend rounds
    b.command(0, 0x20);
    Bytes many = b.pio_in(0, 40 * 512);
    CHECK(many == expected(b.drivers[0], 100, 40));
    CHECK(b.irq_raises[0] - raises == 40);
    CHECK(b.status(0) == 0x50);
    // 32-bit data port accesses (ata_piix uses them).
    b.lba28(0, 0, 7, 2);
    b.command(0, 0x21);
    CHECK(b.pio_in(0, 1024, 512, 4) == expected(b.drivers[0], 7, 2));
    auto s = b.ide->stats(0);
    CHECK(s.read.operations == 3);
    CHECK(s.read.bytes == 43 * 512);
}

TEST_CASE("ide: PIO WRITE SECTORS, read back, first block without interrupt")
{
    Bench b(disk(256), {}, {}, {});
    Bytes d = data(3 * 512, 7);
    b.lba28(0, 0, 9, 3);
    int raises = b.irq_raises[0];
    b.command(0, 0x30);
    REQUIRE(b.wait_ready(0));
    CHECK(b.alt_status(0) == 0x58);
    CHECK(b.irq_raises[0] == raises); // DRQ for the first block comes without INTRQ
    b.pio_out(0, d);
    REQUIRE(b.wait_ready(0));
    CHECK(b.status(0) == 0x50);
    CHECK(b.irq_raises[0] - raises == 3);
    CHECK(b.drivers[0]->contents(9 * 512, d.size()) == d);
    CHECK(b.drivers[0]->contents(8 * 512, 512) == expected(b.drivers[0], 8, 1)); // neighbours untouched
    CHECK(b.drivers[0]->contents(12 * 512, 512) == expected(b.drivers[0], 12, 1));
    b.lba28(0, 0, 9, 3);
    b.command(0, 0x20);
    CHECK(b.pio_in(0, d.size()) == d);
    CHECK(b.ide->stats(0).write.bytes == d.size());
}

TEST_CASE("ide: READ/WRITE MULTIPLE need SET MULTIPLE MODE and move blocks of N sectors")
{
    Bench b(disk(256), {}, {}, {});
    b.lba28(0, 0, 0, 4);
    b.command(0, 0xc4);
    REQUIRE(b.wait_ready(0));
    CHECK(b.status(0) == 0x41); // multiple mode off: ABRT
    CHECK(b.reg(0, ERROR) == 0x04);

    b.select(0, 0);
    b.set(0, NSECT, 3); // not a power of two
    b.command(0, 0xc6);
    REQUIRE(b.wait_ready(0));
    CHECK(b.status(0) == 0x41);

    b.set(0, NSECT, 4);
    b.command(0, 0xc6);
    REQUIRE(b.wait_ready(0));
    CHECK(b.status(0) == 0x50);
    CHECK((b.identify(0, 0)[59]) == 0x0104);

    int raises = b.irq_raises[0];
    b.lba28(0, 0, 20, 10);
    b.command(0, 0xc4);
    CHECK(b.pio_in(0, 10 * 512, 4 * 512) == expected(b.drivers[0], 20, 10));
    CHECK(b.irq_raises[0] - raises == 3); // blocks of 4, 4, 2

    Bytes d = data(6 * 512, 33);
    b.lba48(0, 0, 40, 6);
    b.command(0, 0x39); // WRITE MULTIPLE EXT
    b.pio_out(0, d, 4 * 512);
    REQUIRE(b.wait_ready(0));
    CHECK(b.status(0) == 0x50);
    CHECK(b.drivers[0]->contents(40 * 512, d.size()) == d);
    b.lba48(0, 0, 40, 6);
    b.command(0, 0x29); // READ MULTIPLE EXT
    CHECK(b.pio_in(0, d.size(), 4 * 512) == d);
}

TEST_CASE("ide: LBA48 reads and writes above 2^28 and past 2^32 sectors")
{
    const uint64_t sectors = (uint64_t(1) << 33) + 100;
    Bench b(DriveSpec{.kind = devices::IdeDriveKind::Disk, .size = sectors * 512}, {}, {}, {});
    const uint64_t lba = (uint64_t(1) << 32) + 17;
    Bytes d = data(2 * 512, 99);
    b.lba48(0, 0, lba, 2);
    b.command(0, 0x34);
    b.pio_out(0, d);
    REQUIRE(b.wait_ready(0));
    CHECK(b.status(0) == 0x50);
    CHECK(b.drivers[0]->contents(lba * 512, d.size()) == d);
    b.lba48(0, 0, lba - 1, 4);
    b.command(0, 0x24);
    Bytes back = b.pio_in(0, 4 * 512);
    CHECK(Bytes(back.begin() + 512, back.begin() + 1536) == d);
    CHECK(Bytes(back.begin(), back.begin() + 512) == expected(b.drivers[0], lba - 1, 1));
    // HOB readback: the previous bytes of the LBA registers.
    b.lba48(0, 0, 0x123456789aull, 1);
    b.out(Bench::ctl(0), 0x80);
    CHECK(b.reg(0, LBAL) == 0x34);
    CHECK(b.reg(0, LBAM) == 0x12);
    CHECK(b.reg(0, LBAH) == 0x00);
    b.out(Bench::ctl(0), 0x00);
    CHECK(b.reg(0, LBAL) == 0x9a);
    // A huge count (0 = 65536 sectors) at the end of the disk fails before any I/O.
    int reads = b.drivers[0]->reads;
    b.lba48(0, 0, sectors - 10, 0);
    b.command(0, 0x24);
    REQUIRE(b.wait_ready(0));
    CHECK(b.status(0) == 0x41);
    CHECK(b.reg(0, ERROR) == 0x10); // IDNF
    CHECK(b.drivers[0]->reads == reads);
    CHECK(b.ide->stats(0).read.invalid == 1);
}

TEST_CASE("ide: CHS addressing follows the current geometry; INITIALIZE DEVICE PARAMETERS changes it")
{
    Bench b(disk(20000), {}, {}, {});
    auto chs_read = [&](unsigned c, unsigned h, unsigned s) {
        b.select(0, 0, uint8_t(h));
        b.set(0, NSECT, 1);
        b.set(0, LBAL, uint8_t(s));
        b.set(0, LBAM, uint8_t(c));
        b.set(0, LBAH, uint8_t(c >> 8));
        b.command(0, 0x20);
    };
    chs_read(2, 3, 4); // (2*16 + 3)*63 + 3
    CHECK(b.pio_in(0, 512) == expected(b.drivers[0], (2 * 16 + 3) * 63 + 3, 1));
    chs_read(0, 0, 0); // sector numbers start at 1
    REQUIRE(b.wait_ready(0));
    CHECK(b.status(0) == 0x41);
    CHECK(b.reg(0, ERROR) == 0x10);

    b.select(0, 0, 0x03); // 4 heads
    b.set(0, NSECT, 32);
    b.command(0, 0x91);
    REQUIRE(b.wait_ready(0));
    CHECK(b.status(0) == 0x50);
    auto w = b.identify(0, 0);
    CHECK(w[55] == 4);
    CHECK(w[56] == 32);
    CHECK(w[54] == 20000 / (4 * 32));
    chs_read(2, 3, 4);
    CHECK(b.pio_in(0, 512) == expected(b.drivers[0], (2 * 4 + 3) * 32 + 3, 1));
    chs_read(0, 4, 1); // head 4 of 4
    REQUIRE(b.wait_ready(0));
    CHECK(b.status(0) == 0x41);
}

TEST_CASE("ide: ranges past the end and read-only images fail without touching the disk")
{
    Bench b(disk(100), disk(100, true), {}, {});
    size_t before = b.drivers[0]->written_bytes();
    b.lba28(0, 0, 99, 2);
    b.command(0, 0x30);
    REQUIRE(b.wait_ready(0));
    CHECK(b.status(0) == 0x41);
    CHECK(b.reg(0, ERROR) == 0x10);
    CHECK(b.drivers[0]->writes == 0);
    b.lba28(0, 0, 100, 1);
    b.command(0, 0x20);
    REQUIRE(b.wait_ready(0));
    CHECK(b.status(0) == 0x41);
    b.lba28(0, 0, 0, 0); // 256 sectors
    b.command(0, 0x40);  // READ VERIFY
    REQUIRE(b.wait_ready(0));
    CHECK(b.status(0) == 0x41);
    b.lba28(0, 0, 0, 100);
    b.command(0, 0x40);
    REQUIRE(b.wait_ready(0));
    CHECK(b.status(0) == 0x50);
    CHECK(b.drivers[0]->written_bytes() == before);
    CHECK(b.drivers[0]->reads == 0);

    b.lba28(0, 1, 0, 1);
    b.command(0, 0x30);
    REQUIRE(b.wait_ready(0));
    CHECK(b.status(0) == 0x41);
    CHECK(b.reg(0, ERROR) == 0x04);
    CHECK(b.drivers[1]->writes == 0);
    CHECK(b.ide->stats(1).write.invalid == 1);
}

TEST_CASE("ide: FLUSH CACHE (EXT), SET FEATURES, power modes and unknown commands")
{
    Bench b(disk(64), {}, {}, {});
    b.select(0, 0);
    b.command(0, 0xe7);
    REQUIRE(b.wait_ready(0));
    CHECK(b.status(0) == 0x50);
    b.command(0, 0xea);
    REQUIRE(b.wait_ready(0));
    CHECK(b.status(0) == 0x50);
    CHECK(b.drivers[0]->flushes == 2);
    CHECK(b.ide->stats(0).flush.operations == 2);

    auto set_feature = [&](uint8_t f, uint8_t count = 0) {
        b.set(0, FEATURE, f);
        b.set(0, NSECT, count);
        b.command(0, 0xef);
        REQUIRE(b.wait_ready(0));
        return b.status(0);
    };
    CHECK(set_feature(0x82) == 0x50); // write cache off
    auto w = b.identify(0, 0);
    CHECK((w[85] & 0x20) == 0);
    // With the cache off, a write ends with a flush.
    int flushes = b.drivers[0]->flushes;
    b.lba28(0, 0, 1, 1);
    b.command(0, 0x30);
    b.pio_out(0, data(512, 1));
    REQUIRE(b.wait_ready(0));
    CHECK(b.status(0) == 0x50);
    CHECK(b.drivers[0]->flushes == flushes + 1);
    CHECK(set_feature(0x02) == 0x50);
    CHECK((b.identify(0, 0)[85] & 0x20) == 0x20);

    CHECK(set_feature(0x03, 0x45) == 0x50); // UDMA 5
    CHECK((b.identify(0, 0)[88] & 0xff00) == 0x2000);
    CHECK(set_feature(0x03, 0x22) == 0x50); // multiword DMA 2
    w = b.identify(0, 0);
    CHECK((w[63] & 0xff00) == 0x0400);
    CHECK((w[88] & 0xff00) == 0);
    CHECK(set_feature(0x03, 0x47) == 0x41); // no UDMA 7
    CHECK(set_feature(0x77) == 0x41);

    b.select(0, 0);
    b.command(0, 0xe0); // STANDBY IMMEDIATE
    REQUIRE(b.wait_ready(0));
    b.command(0, 0xe5);
    REQUIRE(b.wait_ready(0));
    CHECK(b.status(0) == 0x50);
    CHECK(b.reg(0, NSECT) == 0x00);
    b.command(0, 0xe1); // IDLE IMMEDIATE
    REQUIRE(b.wait_ready(0));
    b.command(0, 0xe5);
    REQUIRE(b.wait_ready(0));
    CHECK(b.reg(0, NSECT) == 0xff);

    for (uint8_t op : {uint8_t(0x00), uint8_t(0xa0), uint8_t(0xa1), uint8_t(0x08), uint8_t(0xf8), uint8_t(0x60)}) {
        b.command(0, op);
        REQUIRE(b.wait_ready(0));
        CHECK(b.status(0) == 0x41);
        CHECK(b.reg(0, ERROR) == 0x04);
    }
}

TEST_CASE("ide: soft reset gives the signatures; an absent slave reads as zeros")
{
    Bench b(disk(64), {}, disk(64), cdrom(10));
    b.lba28(0, 0, 3, 9);
    b.out(Bench::ctl(0), 0x04); // SRST
    CHECK(b.alt_status(0) == 0x80);
    b.out(Bench::ctl(0), 0x00);
    REQUIRE(b.wait_ready(0));
    b.select(0, 0, 0);
    CHECK(b.status(0) == 0x50);
    CHECK(b.reg(0, ERROR) == 0x01);
    CHECK(b.reg(0, NSECT) == 1);
    CHECK(b.reg(0, LBAL) == 1);
    CHECK(b.reg(0, LBAM) == 0);
    CHECK(b.reg(0, LBAH) == 0);

    // Absent device 1: status and registers read 0, commands are ignored.
    b.select(0, 1, 0);
    b.set(0, NSECT, 0x55);
    CHECK(b.reg(0, NSECT) == 0);
    CHECK(b.status(0) == 0);
    CHECK(b.alt_status(0) == 0);
    int raises = b.irq_raises[0];
    b.command(0, 0xec);
    CHECK(b.status(0) == 0);
    CHECK(b.irq_raises[0] == raises);
    b.select(0, 0, 0);
    CHECK(b.status(0) == 0x50); // device 0 did not take it either

    // Secondary: ATA master and ATAPI slave after SRST.
    b.out(Bench::ctl(1), 0x04);
    b.out(Bench::ctl(1), 0x00);
    REQUIRE(b.wait_ready(1));
    b.select(1, 1, 0);
    CHECK(b.status(1) == 0x00); // ATAPI: DRDY clear
    CHECK(b.reg(1, LBAM) == 0x14);
    CHECK(b.reg(1, LBAH) == 0xeb);
    CHECK(b.reg(1, ERROR) == 0x01);
    b.select(1, 0, 0);
    CHECK(b.reg(1, LBAM) == 0x00);

    // EXECUTE DEVICE DIAGNOSTIC does the same and interrupts.
    b.set(1, LBAM, 0x77);
    b.command(1, 0x90);
    REQUIRE(b.wait_ready(1));
    CHECK(b.irq_level[1]);
    CHECK(b.status(1) == 0x50);
    CHECK(b.reg(1, ERROR) == 0x01);
    CHECK(b.reg(1, LBAM) == 0x00);
}

TEST_CASE("ide: an empty channel reads zeros and never interrupts")
{
    Bench b(disk(64), {}, {}, {});
    for (uint16_t r = 1; r <= 7; ++r)
        CHECK(b.reg(1, r) == 0);
    b.command(1, 0xec);
    CHECK(b.status(1) == 0);
    CHECK(b.irq_raises[1] == 0);
}

TEST_CASE("ide: INTRQ follows nIEN; Status clears it, Alternate Status does not")
{
    Bench b(disk(64), {}, {}, {});
    b.select(0, 0);
    b.command(0, 0xe7);
    REQUIRE(b.wait_ready(0));
    CHECK(b.irq_level[0]);
    CHECK(b.alt_status(0) == 0x50);
    CHECK(b.irq_level[0]);
    CHECK((b.bm_status(0) & 0x04) == 0x04); // the bus master saw it too
    b.bm_clear(0);
    CHECK(b.status(0) == 0x50);
    CHECK(!b.irq_level[0]);

    b.out(Bench::ctl(0), 0x02); // nIEN
    b.command(0, 0xe7);
    REQUIRE(b.wait_ready(0));
    CHECK(!b.irq_level[0]);
    CHECK((b.bm_status(0) & 0x04) == 0);
    b.out(Bench::ctl(0), 0x00); // the pending interrupt shows once enabled
    CHECK(b.irq_level[0]);
    b.status(0);
    CHECK(!b.irq_level[0]);
    // A new command clears a pending interrupt.
    b.command(0, 0xe7);
    REQUIRE(b.wait_ready(0));
    CHECK(b.irq_level[0]);
    b.lba28(0, 0, 0, 1);
    b.command(0, 0x20);
    REQUIRE(b.wait_ready(0));
    b.pio_in(0, 512);
    CHECK(b.status(0) == 0x50);
}

TEST_CASE("ide: the data port without DRQ gives 0 and moves nothing")
{
    Bench b(disk(64), {}, {}, {});
    CHECK(b.in(Bench::base(0), 2) == 0);
    CHECK(b.in(Bench::base(0), 4) == 0);
    b.out(Bench::base(0), 0xabcd, 2);
    CHECK(b.status(0) == 0x50);
    CHECK(b.drivers[0]->writes == 0);
    // Reading past a finished transfer does not read on into the buffer.
    b.lba28(0, 0, 1, 1);
    b.command(0, 0x20);
    b.pio_in(0, 512);
    CHECK(b.in(Bench::base(0), 2) == 0);
    CHECK(b.status(0) == 0x50);
    // A command while DRQ is set is ignored.
    b.lba28(0, 0, 1, 2);
    b.command(0, 0x30);
    REQUIRE(b.wait_ready(0));
    b.command(0, 0xe7);
    CHECK(b.alt_status(0) == 0x58);
    b.pio_out(0, data(1024, 3));
    REQUIRE(b.wait_ready(0));
    CHECK(b.status(0) == 0x50);
    CHECK(b.drivers[0]->flushes == 0);
}

TEST_CASE("ide: rerror=report and werror=enospc/ignore/stop, resume_after_error retries")
{
    Bench b(DriveSpec{.kind = devices::IdeDriveKind::Disk, .size = 64 * 512},
            DriveSpec{.kind = devices::IdeDriveKind::Disk, .size = 64 * 512, .werror = BlockErrorAction::Stop},
            DriveSpec{.kind = devices::IdeDriveKind::Disk, .size = 64 * 512, .werror = BlockErrorAction::Ignore}, {});
    b.drivers[0]->set_failures(EIO, EIO);
    b.lba28(0, 0, 0, 1);
    b.command(0, 0x20);
    REQUIRE(b.wait_ready(0));
    CHECK(b.status(0) == 0x41);
    CHECK(b.reg(0, ERROR) == 0x04);
    {
        auto l = b.lock();
        REQUIRE(b.io_errors.size() == 1);
        CHECK(b.io_errors[0].drive == 0);
        CHECK(b.io_errors[0].is_read);
        CHECK(b.io_errors[0].err == EIO);
        CHECK(!b.io_errors[0].stopping);
    }
    CHECK(b.ide->stats(0).read.failed == 1);
    // enospc reports other errors...
    b.lba28(0, 0, 0, 1);
    b.command(0, 0x30);
    b.pio_out(0, data(512, 1));
    REQUIRE(b.wait_ready(0));
    CHECK(b.status(0) == 0x41);
    // ...and stops on ENOSPC.
    b.drivers[0]->set_failures(0, ENOSPC);
    Bytes d = data(512, 2);
    b.lba28(0, 0, 4, 1);
    b.command(0, 0x30);
    b.pio_out(0, d);
    REQUIRE(b.wait_for([&] {
        auto l = b.lock();
        return b.io_errors.size() == 3;
    }));
    CHECK(b.alt_status(0) == 0x80); // held BSY
    CHECK(b.io_stopped(0));
    {
        auto l = b.lock();
        CHECK(b.io_errors[2].stopping);
        CHECK(b.io_errors[2].err == ENOSPC);
        CHECK(!b.io_errors[2].is_read);
    }
    b.drivers[0]->set_failures(0, 0);
    {
        auto l = b.lock();
        b.ide->resume_after_error();
    }
    REQUIRE(b.wait_ready(0));
    CHECK(b.status(0) == 0x50);
    CHECK(b.drivers[0]->contents(4 * 512, 512) == d);
    CHECK(!b.io_stopped(0));

    // werror=stop on the slave, then a flush retried.
    b.drivers[1]->set_failures(0, 0, EIO);
    b.select(0, 1);
    b.command(0, 0xe7);
    REQUIRE(b.wait_for([&] { return b.io_stopped(1); }));
    CHECK(b.alt_status(0) == 0x80);
    b.drivers[1]->set_failures(0, 0, 0);
    {
        auto l = b.lock();
        b.ide->resume_after_error();
    }
    REQUIRE(b.wait_ready(0));
    CHECK(b.status(0) == 0x50);

    // werror=ignore: the guest sees success.
    b.drivers[2]->set_failures(0, EIO);
    b.lba28(1, 0, 0, 1);
    b.command(1, 0x30);
    b.pio_out(1, data(512, 3));
    REQUIRE(b.wait_ready(1));
    CHECK(b.status(1) == 0x50);
    {
        auto l = b.lock();
        CHECK(b.io_errors.size() == 4); // ignored errors are not reported
    }
}

TEST_CASE("ide: reset contract: soft reset waits for the request in flight; late completions are dropped")
{
    Bench b(disk(64), {}, {}, {});
    TestDriver* drv = b.drivers[0];
    drv->close_gate();
    b.lba28(0, 0, 0, 1);
    b.command(0, 0x20);
    REQUIRE(b.wait_for([&] { return drv->waiting_at_gate(); }));
    b.out(Bench::ctl(0), 0x04);
    b.out(Bench::ctl(0), 0x00);
    CHECK(b.alt_status(0) == 0x80); // still BSY: its read is out
    drv->open_gate();
    REQUIRE(b.wait_ready(0));
    CHECK(b.status(0) == 0x50); // reset done, no data phase from before it
    CHECK(b.reg(0, NSECT) == 1);
    CHECK(b.in(Bench::base(0), 2) == 0);

    // A machine reset with a request out (against the contract): the late
    // completion is dropped; drain() then returns.
    drv->close_gate();
    b.lba28(0, 0, 0, 1);
    b.command(0, 0x20);
    REQUIRE(b.wait_for([&] { return drv->waiting_at_gate(); }));
    {
        auto l = b.lock();
        b.ide->reset();
    }
    CHECK(b.alt_status(0) == 0x50);
    drv->open_gate();
    b.ide->drain();
    CHECK(b.status(0) == 0x50);
    CHECK(b.in(Bench::base(0), 2) == 0);
    // And the drive works afterwards.
    b.lba28(0, 0, 2, 1);
    b.command(0, 0x20);
    CHECK(b.pio_in(0, 512) == expected(drv, 2, 1));
}

TEST_CASE("ide: create() refuses bad configurations")
{
    test::RamBusMaster ram(4096);
    devices::PiixIdeConfig config;
    config.drives[0].kind = devices::IdeDriveKind::Disk;
    auto r = PiixIde::create(ram, config);
    REQUIRE(!r);
    CHECK(r.error().message.find("needs an image") != std::string::npos);
    TestDriver* view = nullptr;
    auto be = make_backend(64 * 512, false, view);
    config.drives[0].backend = be.get();
    config.drives[0].heads = 17;
    config.drives[0].cylinders = 10;
    config.drives[0].sectors = 63;
    r = PiixIde::create(ram, config);
    REQUIRE(!r);
    CHECK(r.error().message.find("geometry") != std::string::npos);
    config.drives[0].heads = 4;
    CHECK(PiixIde::create(ram, config).has_value());
}
