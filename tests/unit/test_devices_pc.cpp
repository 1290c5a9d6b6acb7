// Device tests of the PC chipset: PCI bus 0 through ports 0xcf8/0xcfc, the
// i440FX/PIIX3 functions, PIIX4 power management, the AML builder and ACPI
// tables (disassembled with iasl when it is installed), and fw_cfg. Driven
// through real address spaces with a stepped clock.
#include "common/log.h"
#include "devices/acpi/aml.h"
#include "devices/acpi/piix4_pm.h"
#include "devices/acpi/tables.h"
#include "devices/firmware/fw_cfg.h"
#include "devices/pci/i440fx.h"
#include "devices/pci/pci.h"
#include "engine/memory/address_space.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <doctest/doctest.h>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <unistd.h>

using namespace emu;
using namespace emu::devices;

namespace {

const bool g_quiet = (set_log_level(LogLevel::Error), true);

using Bytes = std::vector<uint8_t>;

mem::MemoryRegion::Ptr make_container(const char* name, uint64_t size)
{
    return std::move(*mem::MemoryRegion::container(name, size));
}

// A function with an I/O BAR, a 32-bit memory BAR and a 64-bit prefetchable
// memory BAR, INTA. Its BARs read `tag + offset` bytes.
class TestDevice final : public PciDevice {
public:
    explicit TestDevice(uint8_t tag, uint64_t io_size = 32, uint64_t mem_size = 0x1000, uint64_t mem64_size = 0x100000)
        : PciDevice("test" + std::to_string(tag),
                    PciId{.vendor = 0x1af4, .device = 0x1000, .revision = 1, .class_code = 0x020000})
    {
        auto ops = [tag] {
            mem::IoOps o;
            o.read = [tag](uint64_t off, unsigned size) {
                uint64_t v = 0;
                for (unsigned i = 0; i < size; ++i)
                    v |= uint64_t(uint8_t(tag + off + i)) << 8 * i;
                return v;
            };
            o.min_access = 1;
            o.max_access = 4;
            return o;
        };
        register_bar(0, PciBarKind::Io, std::move(*mem::MemoryRegion::io("io", io_size, ops())));
        register_bar(1, PciBarKind::Mem32, std::move(*mem::MemoryRegion::io("mmio", mem_size, ops())));
        register_bar(2, PciBarKind::Mem64, std::move(*mem::MemoryRegion::io("mmio64", mem64_size, ops())), true);
        set_interrupt_pin(1);
    }
    using PciDevice::add_capability;
};

struct Bench {
    SteppedClock clock;
    mem::MemoryRegion::Ptr io_root = make_container("io", mem::kPortSpaceSize);
    mem::MemoryRegion::Ptr mem_root = make_container("mem", uint64_t(1) << 40);
    mem::AddressSpace io{"io", *io_root};
    mem::AddressSpace mem{"mem", *mem_root};
    PciBus bus{*io_root, *mem_root};
    I440fx host;
    Piix3 piix3{bus};
    Piix4Pm pm{clock};

    Bench()
    {
        REQUIRE(bus.attach(*io_root));
        REQUIRE(bus.plug(host, I440fx::kDevfn));
        REQUIRE(bus.plug(piix3, Piix3::kDevfn));
        REQUIRE(bus.plug(pm, Piix4Pm::kDevfn));
        REQUIRE(pm.attach(*io_root));
    }
    void select(uint8_t devfn, unsigned reg, uint8_t bus_number = 0)
    {
        io.write(0xcf8, 0x80000000u | uint32_t(bus_number) << 16 | uint32_t(devfn) << 8 | (reg & 0xfc), 4);
    }
    uint32_t cfg_read(uint8_t devfn, unsigned reg, unsigned size)
    {
        select(devfn, reg);
        return uint32_t(io.read(0xcfc + (reg & 3), size));
    }
    void cfg_write(uint8_t devfn, unsigned reg, uint32_t value, unsigned size)
    {
        select(devfn, reg);
        io.write(0xcfc + (reg & 3), value, size);
    }
};

uint64_t le(const Bytes& b, size_t off, unsigned width)
{
    REQUIRE(off + width <= b.size());
    uint64_t v = 0;
    for (unsigned i = 0; i < width; ++i)
        v |= uint64_t(b[off + i]) << 8 * i;
    return v;
}

uint8_t sum(const uint8_t* p, size_t n)
{
    uint8_t s = 0;
    for (size_t i = 0; i < n; ++i)
        s = uint8_t(s + p[i]);
    return s;
}

} // namespace

// ---- PCI -------------------------------------------------------------------

TEST_CASE("pci: configuration mechanism #1 at 0xcf8/0xcfc")
{
    Bench b;
    CHECK(b.cfg_read(0x00, 0x00, 4) == 0x12378086);
    CHECK(b.cfg_read(Piix3::kDevfn, 0x00, 4) == 0x70008086);
    CHECK(b.cfg_read(Piix4Pm::kDevfn, 0x00, 4) == 0x71138086);
    CHECK(b.cfg_read(0x00, 0x08, 4) == 0x06000002); // host bridge class, revision 2
    CHECK(b.cfg_read(Piix3::kDevfn, 0x0a, 2) == 0x0601);
    CHECK(b.cfg_read(Piix4Pm::kDevfn, 0x0a, 2) == 0x0680);

    // Any size at any byte offset of the data window.
    CHECK(b.cfg_read(Piix3::kDevfn, 0x01, 1) == 0x80);
    CHECK(b.cfg_read(Piix3::kDevfn, 0x02, 2) == 0x7000);
    CHECK(b.cfg_read(Piix3::kDevfn, 0x03, 1) == 0x70);
    b.select(Piix3::kDevfn, 0x00);
    CHECK(b.io.read(0xcfd, 2) == 0x0080); // unaligned: split by the bus into bytes
    CHECK(b.io.read(0xcfe, 2) == 0x7000);

    // Function 0 of a slot with more functions is multi-function.
    CHECK(b.cfg_read(Piix3::kDevfn, pci::kHeaderType, 1) == 0x80);
    CHECK(b.cfg_read(0x00, pci::kHeaderType, 1) == 0x00);
    CHECK(b.cfg_read(Piix4Pm::kDevfn, pci::kHeaderType, 1) == 0x00);

    // Absent functions, other buses and disabled cycles read all ones.
    CHECK(b.cfg_read(pci::devfn(5, 0), 0x00, 4) == 0xffffffff);
    CHECK(b.cfg_read(pci::devfn(5, 0), 0x02, 2) == 0xffff);
    CHECK(b.cfg_read(pci::devfn(1, 1), 0x00, 1) == 0xff);
    b.select(0x00, 0x00, 1);
    CHECK(b.io.read(0xcfc, 4) == 0xffffffff);
    b.io.write(0xcf8, 0x00000000, 4);
    CHECK(b.io.read(0xcfc, 4) == 0xffffffff);
    b.io.write(0xcfc, 0x1234, 2); // dropped

    // The address register latches dword writes only.
    b.io.write(0xcf8, 0x80000000, 4);
    CHECK(b.io.read(0xcf8, 4) == 0x80000000);
    b.io.write(0xcf8, 0x7f000003, 4); // reserved bits read 0
    CHECK(b.io.read(0xcf8, 4) == 0x00000000);
    b.io.write(0xcf8, 0x80000808, 4);
    b.io.write(0xcfb, 0x01, 1); // Linux's type 1 probe pokes 0xcfb
    CHECK(b.io.read(0xcf8, 4) == 0x80000808);

    // Writes honour the masks: IDs are read-only, the latency timer and
    // interrupt line are not; byte writes at odd offsets land in place.
    b.cfg_write(0x00, 0x00, 0xffffffff, 4);
    CHECK(b.cfg_read(0x00, 0x00, 4) == 0x12378086);
    b.cfg_write(0x00, pci::kLatencyTimer, 0x40, 1);
    CHECK(b.cfg_read(0x00, 0x0c, 4) == 0x00004000);
    b.cfg_write(0x00, pci::kInterruptLine, 0xab, 1);
    CHECK(b.cfg_read(0x00, pci::kInterruptLine, 1) == 0xab);

    // Stored i440FX registers.
    b.cfg_write(0x00, I440fx::kPam0 + 1, 0x33, 1);
    CHECK(b.host.pam(1) == 0x33);
    CHECK(b.host.smram() == 0x02);
    b.cfg_write(0x00, I440fx::kSmram, 0xff, 1);
    CHECK(b.host.smram() == 0x7a);

    // Reset restores the power-on image.
    b.bus.reset();
    CHECK(b.bus.config_address() == 0);
    CHECK(b.cfg_read(0x00, pci::kInterruptLine, 1) == 0);
    CHECK(b.host.pam(1) == 0);
    CHECK(b.cfg_read(Piix3::kDevfn, pci::kHeaderType, 1) == 0x80);
}

TEST_CASE("pci: BAR sizing, mapping and unmapping")
{
    Bench b;
    TestDevice dev(0x40);
    uint8_t df = pci::devfn(3, 0);
    REQUIRE(b.bus.plug(dev, df));
    TestDevice twin(0x41);
    CHECK(!b.bus.plug(twin, df)); // the devfn is taken

    CHECK(b.cfg_read(df, 0x10, 4) == 0x00000001);
    CHECK(b.cfg_read(df, 0x14, 4) == 0x00000000);
    CHECK(b.cfg_read(df, 0x18, 4) == 0x0000000c); // 64-bit, prefetchable
    CHECK(b.cfg_read(df, pci::kInterruptPin, 1) == 1);

    // Sizing: all ones reads back the size mask and the flags.
    for (unsigned reg = 0x10; reg < 0x28; reg += 4)
        b.cfg_write(df, reg, 0xffffffff, 4);
    CHECK(b.cfg_read(df, 0x10, 4) == 0xffffffe1);
    CHECK(b.cfg_read(df, 0x14, 4) == 0xfffff000);
    CHECK(b.cfg_read(df, 0x18, 4) == 0xfff0000c);
    CHECK(b.cfg_read(df, 0x1c, 4) == 0xffffffff);
    CHECK(b.cfg_read(df, 0x20, 4) == 0x00000000); // BAR4/5 unimplemented
    CHECK(b.cfg_read(df, 0x30, 4) == 0x00000000); // no ROM

    // Decoding enabled while the BARs hold the sizing pattern: nothing maps.
    b.cfg_write(df, pci::kCommand, pci::kCommandIo | pci::kCommandMemory, 2);
    for (int i = 0; i < 3; ++i)
        CHECK(dev.bar_mapped_at(i) == PciDevice::kUnmapped);
    b.cfg_write(df, pci::kCommand, 0, 2);

    b.cfg_write(df, 0x10, 0xc100, 4);
    b.cfg_write(df, 0x14, 0xe0001000, 4);
    b.cfg_write(df, 0x18, 0x00000000, 4);
    b.cfg_write(df, 0x1c, 0x00000001, 4); // 4 GiB
    CHECK(dev.bar_address(2) == 0x100000000ull);
    CHECK(b.io.read(0xc101, 1) == 0xff); // decoding off
    CHECK(b.mem.read(0xe0001000, 4) == 0xffffffff);

    b.cfg_write(df, pci::kCommand, pci::kCommandIo, 2);
    CHECK(b.io.read(0xc101, 1) == 0x41);
    CHECK(b.io.read(0xc11c, 4) == 0x5f5e5d5c);
    CHECK(b.mem.read(0xe0001000, 4) == 0xffffffff); // memory still off

    b.cfg_write(df, pci::kCommand, pci::kCommandIo | pci::kCommandMemory, 2);
    CHECK(b.mem.read(0xe0001004, 1) == 0x44);
    CHECK(b.mem.read(0x100000010ull, 1) == 0x50);
    CHECK(dev.bar_mapped_at(1) == 0xe0001000);

    // Moving a BAR moves the mapping; the old address is unassigned.
    b.cfg_write(df, 0x14, 0xe0100000, 4);
    CHECK(b.mem.read(0xe0001004, 1) == 0xff);
    CHECK(b.mem.read(0xe0100004, 1) == 0x44);
    b.cfg_write(df, 0x15, 0x20, 1); // a byte write into the BAR's address bits
    CHECK(dev.bar_address(1) == 0xe0102000);
    CHECK(b.mem.read(0xe0102004, 1) == 0x44);

    // An I/O BAR past the port space or at 0 is not mapped.
    b.cfg_write(df, 0x10, 0x10000, 4);
    CHECK(dev.bar_mapped_at(0) == PciDevice::kUnmapped);
    b.cfg_write(df, 0x10, 0xc200, 4);
    CHECK(b.io.read(0xc200, 1) == 0x40);

    // A BAR over an occupied range is refused by the memory layer: the
    // other device keeps its range, this BAR decodes nothing.
    TestDevice other(0x80);
    uint8_t df2 = pci::devfn(4, 0);
    REQUIRE(b.bus.plug(other, df2));
    b.cfg_write(df2, 0x10, 0xc200, 4);
    b.cfg_write(df2, pci::kCommand, pci::kCommandIo, 2);
    CHECK(other.bar_mapped_at(0) == PciDevice::kUnmapped);
    CHECK(b.io.read(0xc200, 1) == 0x40);

    // Disabling decode unmaps; unplugging unmaps.
    b.cfg_write(df, pci::kCommand, pci::kCommandIo, 2);
    CHECK(b.mem.read(0xe0102004, 1) == 0xff);
    b.bus.unplug(dev);
    CHECK(b.io.read(0xc200, 1) == 0xff);
    CHECK(b.cfg_read(df, 0, 4) == 0xffffffff);
}

TEST_CASE("pci: capability list")
{
    Bench b;
    TestDevice dev(0);
    CHECK(dev.add_capability(0x05, 14) == 0x40);
    CHECK(dev.add_capability(0x09, 6) == 0x50);
    CHECK(dev.add_capability(0x11, 12, 0x80) == 0x80);
    REQUIRE(b.bus.plug(dev, pci::devfn(3, 0)));
    uint8_t df = pci::devfn(3, 0);
    CHECK((b.cfg_read(df, pci::kStatus, 2) & pci::kStatusCapList) != 0);
    CHECK(b.cfg_read(df, pci::kCapabilityList, 1) == 0x40);
    CHECK(b.cfg_read(df, 0x40, 2) == 0x5005);
    CHECK(b.cfg_read(df, 0x50, 2) == 0x8009);
    CHECK(b.cfg_read(df, 0x80, 2) == 0x0011);
    b.cfg_write(df, 0x40, 0xffff, 2); // ID and next are read-only
    CHECK(b.cfg_read(df, 0x40, 2) == 0x5005);
}

TEST_CASE("pci: assign_resources does what firmware would")
{
    Bench b;
    TestDevice a(0x10, 32, 0x1000, 0x100000);
    TestDevice c(0x20, 256, 0x10000, 0x200000);
    REQUIRE(b.bus.plug(a, pci::devfn(3, 0)));
    REQUIRE(b.bus.plug(c, pci::devfn(5, 0)));
    b.piix3.firmware_setup();
    CHECK(b.bus.assign_resources(PciResourceConfig{}) == 0);

    // Larger BARs first, naturally aligned.
    CHECK(c.bar_address(0) == 0xc000);
    CHECK(a.bar_address(0) == 0xc100);
    CHECK(c.bar_address(2) == 0xe0000000);
    CHECK(a.bar_address(2) == 0xe0200000);
    CHECK(c.bar_address(1) == 0xe0300000);
    CHECK(a.bar_address(1) == 0xe0310000);
    CHECK((b.cfg_read(pci::devfn(3, 0), pci::kCommand, 2) & 3) == 3);
    CHECK(b.io.read(0xc100, 1) == 0x10);
    CHECK(b.io.read(0xc0ff, 1) == 0x1f); // c's I/O BAR, last byte
    CHECK(b.mem.read(0xe0310000, 1) == 0x10);
    CHECK(b.mem.read(0xe0000000, 1) == 0x20);

    // Interrupt Line: slot 3 INTA -> PIRQC -> IRQ 11; slot 5 INTA -> PIRQA -> 10.
    CHECK(b.cfg_read(pci::devfn(3, 0), pci::kInterruptLine, 1) == 11);
    CHECK(b.cfg_read(pci::devfn(5, 0), pci::kInterruptLine, 1) == 10);

    // A small 32-bit window: 64-bit BARs go above 4 GiB, what does not fit
    // anywhere stays unprogrammed.
    b.bus.reset();
    PciResourceConfig small;
    small.mem32_start = 0xfe000000;
    small.mem32_end = 0xfe020000;
    small.mem64_start = 0x800000000ull;
    small.mem64_end = 0x900000000ull;
    CHECK(b.bus.assign_resources(small) == 0);
    CHECK(c.bar_address(2) == 0x800000000ull);
    CHECK(a.bar_address(2) == 0x800200000ull);
    CHECK(c.bar_address(1) == 0xfe000000);
    CHECK(a.bar_address(1) == 0xfe010000);
    CHECK(b.mem.read(0x800200001ull, 1) == 0x11);
    b.bus.reset();
    small.mem64_end = 0;
    CHECK(b.bus.assign_resources(small) == 2);
    CHECK(c.bar_address(2) == 0);
}

// ---- PIIX3 -----------------------------------------------------------------

TEST_CASE("piix3: PIRQ routing to ISA IRQs and GSIs, shared lines")
{
    Bench b;
    std::array<int, 16> isa_edges{};
    std::array<int, 4> gsi_edges{};
    for (int i = 0; i < 16; ++i)
        b.piix3.isa_irq(i).connect([&isa_edges, i](bool level) { isa_edges[size_t(i)] += level; });
    for (int i = 0; i < 4; ++i)
        b.piix3.pirq_gsi(i).connect([&gsi_edges, i](bool level) { gsi_edges[size_t(i)] += level; });

    CHECK(Piix3::pirq_of(pci::devfn(1, 0), 0) == 0);
    CHECK(Piix3::pirq_of(pci::devfn(2, 0), 0) == 1);
    CHECK(Piix3::pirq_of(pci::devfn(2, 0), 3) == 0);
    CHECK(Piix3::pirq_of(pci::devfn(0, 0), 0) == 3);
    CHECK(Piix3::pirq_of(pci::devfn(31, 7), 1) == 3);

    TestDevice d3(0), d7(0), d4(0);
    REQUIRE(b.bus.plug(d3, pci::devfn(3, 0))); // PIRQC
    REQUIRE(b.bus.plug(d7, pci::devfn(7, 0))); // PIRQC too
    REQUIRE(b.bus.plug(d4, pci::devfn(4, 0))); // PIRQD

    // Reset: every PIRQ disabled; the GSI lines still follow the PIRQs.
    for (unsigned n = 0; n < 4; ++n)
        CHECK(b.cfg_read(Piix3::kDevfn, 0x60 + n, 1) == 0x80);
    CHECK(b.piix3.pirq_isa_irq(2) == -1);
    d3.set_irq(true);
    CHECK(b.piix3.pirq_gsi(2).level());
    CHECK(gsi_edges[2] == 1);
    for (int i = 0; i < 16; ++i)
        CHECK(!b.piix3.isa_irq(i).level());
    CHECK((b.cfg_read(pci::devfn(3, 0), pci::kStatus, 2) & pci::kStatusIntx) != 0);

    // Enabling the route asserts the ISA IRQ at once.
    b.cfg_write(Piix3::kDevfn, 0x62, 11, 1);
    CHECK(b.piix3.pirq_isa_irq(2) == 11);
    CHECK(b.piix3.isa_irq(11).level());
    CHECK(b.bus.isa_irq_of(pci::devfn(7, 0), 0) == 11);

    // Sharing: the line stays up until the last device lets go.
    d7.set_irq(true);
    CHECK(gsi_edges[2] == 1);
    d3.set_irq(false);
    CHECK(b.piix3.isa_irq(11).level());
    CHECK(b.piix3.pirq_gsi(2).level());
    d7.set_irq(false);
    CHECK(!b.piix3.isa_irq(11).level());
    CHECK(!b.piix3.pirq_gsi(2).level());
    CHECK(isa_edges[11] == 1);

    // Two PIRQs on one ISA IRQ are OR'ed as well.
    b.cfg_write(Piix3::kDevfn, 0x63, 11, 1);
    d4.set_irq(true);
    d3.set_irq(true);
    d4.set_irq(false);
    CHECK(b.piix3.isa_irq(11).level());
    d3.set_irq(false);
    CHECK(!b.piix3.isa_irq(11).level());

    // Rerouting an asserted PIRQ moves the level.
    d3.set_irq(true);
    b.cfg_write(Piix3::kDevfn, 0x60, 0x0a0a0a0a, 4); // all four to IRQ 10 (dword write)
    CHECK(!b.piix3.isa_irq(11).level());
    CHECK(b.piix3.isa_irq(10).level());
    b.cfg_write(Piix3::kDevfn, 0x62, 0x82, 1); // disabled
    CHECK(!b.piix3.isa_irq(10).level());
    b.cfg_write(Piix3::kDevfn, 0x62, 0x02, 1); // IRQ2 is reserved: routes nowhere
    CHECK(b.piix3.pirq_isa_irq(2) == -1);
    b.cfg_write(Piix3::kDevfn, 0x62, 0xfa, 1); // reserved bits 6:4 read 0
    CHECK(b.cfg_read(Piix3::kDevfn, 0x62, 1) == 0x8a);
    b.cfg_write(Piix3::kDevfn, 0x62, 0x05, 1);
    CHECK(b.piix3.isa_irq(5).level());

    // Interrupt Disable masks the device's INTx.
    b.cfg_write(pci::devfn(3, 0), pci::kCommand, pci::kCommandIntxDisable, 2);
    CHECK(!b.piix3.isa_irq(5).level());
    CHECK(!b.piix3.pirq_gsi(2).level());
    CHECK((b.cfg_read(pci::devfn(3, 0), pci::kStatus, 2) & pci::kStatusIntx) != 0); // still pending
    b.cfg_write(pci::devfn(3, 0), pci::kCommand, 0, 2);
    CHECK(b.piix3.isa_irq(5).level());

    // A device reset drops its INTx; unplugging an asserting device too.
    d3.reset();
    CHECK(!b.piix3.isa_irq(5).level());
    d7.set_irq(true);
    CHECK(b.piix3.pirq_gsi(2).level());
    b.bus.unplug(d7);
    CHECK(!b.piix3.pirq_gsi(2).level());

    // System reset disables the routes again.
    d4.set_irq(true);
    b.bus.reset();
    CHECK(b.cfg_read(Piix3::kDevfn, 0x63, 1) == 0x80);
    CHECK(!b.piix3.pirq_gsi(3).level());
}

TEST_CASE("piix3: reset control register at 0xcf9")
{
    Bench b;
    int resets = 0;
    b.piix3.set_reset_handler([&resets] { resets++; });
    CHECK(b.io.read(0xcf9, 1) == 0x00);
    b.io.write(0xcf9, 0x02, 1);
    CHECK(resets == 0);
    CHECK(b.io.read(0xcf9, 1) == 0x02);
    b.io.write(0xcf9, 0x06, 1);
    CHECK(resets == 1);
    b.io.write(0xcf9, 0x04, 1); // soft reset: the same for us
    CHECK(resets == 2);
    // A configuration address whose second byte looks like a reset is not one.
    b.io.write(0xcf8, 0x80000600, 4);
    CHECK(resets == 2);
    CHECK(b.io.read(0xcf8, 4) == 0x80000600);
    b.io.write(0xcf9, 0x02, 1);
    b.bus.reset();
    CHECK(b.io.read(0xcf9, 1) == 0x00);
}

// ---- PIIX4 PM ----------------------------------------------------------------

namespace {

constexpr uint16_t kPm1Sts = 0x600, kPm1En = 0x602, kPm1Cnt = 0x604, kPmTmr = 0x608;

// The first instant the PM timer's bit 31 changes.
int64_t first_toggle_ns()
{
    unsigned __int128 ticks = uint64_t(1) << 31;
    return int64_t((ticks * kNsPerSec + Piix4Pm::kTimerHz - 1) / Piix4Pm::kTimerHz);
}

} // namespace

TEST_CASE("pm: configuration space")
{
    Bench b;
    CHECK(b.cfg_read(Piix4Pm::kDevfn, 0x40, 4) == 0x601);
    b.cfg_write(Piix4Pm::kDevfn, 0x40, 0xb001, 4); // fixed base
    CHECK(b.cfg_read(Piix4Pm::kDevfn, 0x40, 4) == 0x601);
    CHECK(b.cfg_read(Piix4Pm::kDevfn, 0x80, 1) == 0x01);
    CHECK(b.cfg_read(Piix4Pm::kDevfn, 0x08, 1) == 0x03);
}

TEST_CASE("pm: the timer runs at 3.579545 MHz")
{
    Bench b;
    uint32_t t0 = uint32_t(b.io.read(kPmTmr, 4));
    CHECK(t0 == 0);
    b.clock.advance(kNsPerSec);
    CHECK(uint32_t(b.io.read(kPmTmr, 4)) == 3579545);
    b.clock.advance(kNsPerSec);
    CHECK(uint32_t(b.io.read(kPmTmr, 4)) == 2 * 3579545);
    b.clock.advance(1'000);
    CHECK(b.pm.timer_value() == 2 * 3579545 + 3); // 3.58 ticks per microsecond
    CHECK(b.io.read(kPmTmr + 1, 1) == ((b.pm.timer_value() >> 8) & 0xff));
    CHECK(b.io.read(kPmTmr, 2) == (b.pm.timer_value() & 0xffff));
    b.io.write(kPmTmr, 0, 4); // read-only
    CHECK(b.pm.timer_value() == 2 * 3579545 + 3);
}

TEST_CASE("pm: TMR_STS when bit 31 changes, SCI when enabled")
{
    Bench b;
    int sci_edges = 0;
    b.pm.sci().connect([&sci_edges](bool level) { sci_edges += level; });
    int64_t t = first_toggle_ns();
    b.clock.advance_to(t - 1);
    CHECK(b.pm.timer_value() == 0x7fffffff);
    CHECK((b.io.read(kPm1Sts, 2) & 1) == 0);
    b.clock.advance(1);
    CHECK(b.pm.timer_value() == 0x80000000);
    CHECK((b.io.read(kPm1Sts, 2) & 1) == 1);
    CHECK(!b.pm.sci().level()); // TMR_EN clear
    b.io.write(kPm1En, Piix4Pm::kTmrSts, 2);
    CHECK(b.pm.sci().level());
    CHECK(sci_edges == 1);
    b.io.write(kPm1Sts, 0, 2); // writing 0 clears nothing
    CHECK(b.pm.sci().level());
    b.io.write(kPm1Sts, Piix4Pm::kTmrSts, 2);
    CHECK(!b.pm.sci().level());
    CHECK(b.io.read(kPm1Sts, 2) == 0);

    // The next change (bit 31 back to 0, at the 32-bit wrap).
    b.clock.advance_to(2 * t - 2);
    CHECK((b.io.read(kPm1Sts, 2) & 1) == 0);
    b.clock.advance(3);
    CHECK(b.pm.timer_value() < 0x10);
    CHECK((b.io.read(kPm1Sts, 2) & 1) == 1);
    CHECK(b.pm.sci().level());
}

TEST_CASE("pm: power button status, enable and SCI")
{
    Bench b;
    CHECK(b.io.read(kPm1Cnt, 2) == Piix4Pm::kSciEn); // ACPI already enabled
    b.pm.press_power_button();
    CHECK(b.io.read(kPm1Sts, 2) == Piix4Pm::kPwrBtnSts);
    CHECK(!b.pm.sci().level());
    b.io.write(kPm1En + 1, 0x01, 1); // PWRBTN_EN, byte write
    CHECK(b.io.read(kPm1En, 2) == Piix4Pm::kPwrBtnSts);
    CHECK(b.pm.sci().level());

    // SCI_EN clear: events no longer reach the SCI.
    b.io.write(kPm1Cnt, 0, 2);
    CHECK(!b.pm.sci().level());
    b.io.write(kPm1Cnt, Piix4Pm::kSciEn, 2);
    CHECK(b.pm.sci().level());

    // A dword write covers status and enable: clear status, keep enable.
    b.io.write(kPm1Sts, 0x01000100, 4);
    CHECK(b.io.read(kPm1Sts, 4) == 0x01000000);
    CHECK(!b.pm.sci().level());
    b.pm.press_power_button();
    CHECK(b.pm.sci().level());
    b.io.write(kPm1Sts + 1, 0x01, 1);
    CHECK(!b.pm.sci().level());

    // Undefined enable bits do not stick.
    b.io.write(kPm1En, 0xffff, 2);
    CHECK(b.io.read(kPm1En, 2) == 0x0721);

    // GPE0: enables read back, status is write-1-to-clear.
    b.io.write(Piix4Pm::kGpe0Base + 4, 0x0000ff01, 4);
    CHECK(b.io.read(Piix4Pm::kGpe0Base + 4, 4) == 0x0000ff01);
    CHECK(b.io.read(Piix4Pm::kGpe0Base, 4) == 0);
    CHECK(!b.pm.sci().level());

    b.pm.reset();
    CHECK(b.io.read(kPm1En, 2) == 0);
    CHECK(b.io.read(Piix4Pm::kGpe0Base + 4, 4) == 0);
    CHECK(b.io.read(kPm1Cnt, 2) == Piix4Pm::kSciEn);
}

TEST_CASE("pm: SLP_EN with SLP_TYP 0 is soft off")
{
    Bench b;
    int poweroffs = 0;
    b.pm.set_poweroff_handler([&poweroffs] { poweroffs++; });
    // Another sleep type is ignored; SLP_EN reads back 0, SLP_TYP stays.
    b.io.write(kPm1Cnt, Piix4Pm::kSciEn | 1u << 10 | Piix4Pm::kSlpEn, 2);
    CHECK(poweroffs == 0);
    CHECK(b.io.read(kPm1Cnt, 2) == (Piix4Pm::kSciEn | 1u << 10));
    // SLP_TYP without SLP_EN does nothing.
    b.io.write(kPm1Cnt, Piix4Pm::kSciEn, 2);
    CHECK(poweroffs == 0);
    // What Linux does for S5 (\_S5 = 0): one 16-bit write.
    b.io.write(kPm1Cnt, Piix4Pm::kSciEn | Piix4Pm::kSlpEn, 2);
    CHECK(poweroffs == 1);
    // The high byte alone works too.
    b.io.write(kPm1Cnt + 1, 0x20, 1);
    CHECK(poweroffs == 2);
}

// ---- AML ---------------------------------------------------------------------

TEST_CASE("aml: encodings match the specification byte for byte")
{
    using namespace emu::devices::acpi;
    // PkgLength counts its own bytes; 1 byte up to 63, then a lead nibble.
    CHECK(aml::pkg_length(0) == Bytes{0x01});
    CHECK(aml::pkg_length(62) == Bytes{0x3f});
    CHECK(aml::pkg_length(63) == Bytes{0x41, 0x04}); // 65 = 0x041
    CHECK(aml::pkg_length(4093) == Bytes{0x4f, 0xff});
    CHECK(aml::pkg_length(4094) == Bytes{0x81, 0x00, 0x01}); // 4097 = 0x1001
    CHECK(aml::pkg_length(0xffffc) == Bytes{0x8f, 0xff, 0xff});       // 2^20 - 1
    CHECK(aml::pkg_length(0xffffd) == Bytes{0xc1, 0x00, 0x00, 0x01}); // 2^20 + 1

    CHECK(aml::integer(0) == Bytes{0x00});
    CHECK(aml::integer(1) == Bytes{0x01});
    CHECK(aml::integer(2) == Bytes{0x0a, 0x02});
    CHECK(aml::integer(0xff) == Bytes{0x0a, 0xff});
    CHECK(aml::integer(0x100) == Bytes{0x0b, 0x00, 0x01});
    CHECK(aml::integer(0x12345678) == Bytes{0x0c, 0x78, 0x56, 0x34, 0x12});
    CHECK(aml::integer(0x100000000ull) == Bytes{0x0e, 0, 0, 0, 0, 1, 0, 0, 0});
    CHECK(aml::integer(~0ull) == Bytes{0xff});
    CHECK(aml::string("Hi") == Bytes{0x0d, 'H', 'i', 0x00});

    CHECK(aml::name_string("_HID") == Bytes{'_', 'H', 'I', 'D'});
    CHECK(aml::name_string("ISA") == Bytes{'I', 'S', 'A', '_'});
    CHECK(aml::name_string("\\_SB.PCI0") == Bytes{0x5c, 0x2e, '_', 'S', 'B', '_', 'P', 'C', 'I', '0'});
    CHECK(aml::name_string("\\_SB.PCI0.ISA") ==
          Bytes{0x5c, 0x2f, 0x03, '_', 'S', 'B', '_', 'P', 'C', 'I', '0', 'I', 'S', 'A', '_'});
    CHECK(aml::name_string("^^FOO") == Bytes{0x5e, 0x5e, 'F', 'O', 'O', '_'});
    CHECK(aml::name_string("\\") == Bytes{0x5c, 0x00});

    // EisaId ("PNP0A03") is the dword 0x030ad041.
    CHECK(aml::eisa_id("PNP0A03") == Bytes{0x0c, 0x41, 0xd0, 0x0a, 0x03});
    CHECK(aml::eisa_id("PNP0501") == Bytes{0x0c, 0x41, 0xd0, 0x05, 0x01});

    // Name (_S5, Package () {0, 0, 0, 0}) as iasl emits it.
    CHECK(aml::name("_S5", aml::package({aml::integer(0), aml::integer(0), aml::integer(0), aml::integer(0)})) ==
          Bytes{0x08, '_', 'S', '5', '_', 0x12, 0x06, 0x04, 0x00, 0x00, 0x00, 0x00});
    // Method (_PIC, 1) { Store (Arg0, PICF) }
    CHECK(aml::method("_PIC", 1, false, {aml::store(aml::arg(0), aml::name_string("PICF"))}) ==
          Bytes{0x14, 0x0c, '_', 'P', 'I', 'C', 0x01, 0x70, 0x68, 'P', 'I', 'C', 'F'});
    // Device (PCI0) { Name (_HID, EisaId ("PNP0A03")) }
    CHECK(aml::device("PCI0", {aml::name("_HID", aml::eisa_id("PNP0A03"))}) ==
          Bytes{0x5b, 0x82, 0x0f, 'P', 'C', 'I', '0', 0x08, '_', 'H', 'I', 'D', 0x0c, 0x41, 0xd0, 0x0a, 0x03});
    // Scope (\_SB) {}
    CHECK(aml::scope("\\_SB", {}) == Bytes{0x10, 0x06, 0x5c, '_', 'S', 'B', '_'});
    // Method (_STA, 0, Serialized) { Return (0x0F) }
    CHECK(aml::method("_STA", 0, true, {aml::return_value(aml::integer(0x0f))}) ==
          Bytes{0x14, 0x09, '_', 'S', 'T', 'A', 0x08, 0xa4, 0x0a, 0x0f});
    // If (Arg0) { Return (One) } Else { Return (Zero) }
    CHECK(aml::if_then(aml::arg(0), {aml::return_value(aml::integer(1))}) == Bytes{0xa0, 0x04, 0x68, 0xa4, 0x01});
    CHECK(aml::else_then({aml::return_value(aml::integer(0))}) == Bytes{0xa1, 0x03, 0xa4, 0x00});
    CHECK(aml::local(2) == Bytes{0x62});

    // Buffer (3) {1, 2, 3}
    const uint8_t three[] = {1, 2, 3};
    CHECK(aml::buffer(three) == Bytes{0x11, 0x06, 0x0a, 0x03, 1, 2, 3});
    // A package of 300 elements is a VarPackage.
    aml::TermList many(300, aml::integer(0));
    Bytes var = aml::package(many);
    CHECK(var[0] == 0x13);
    CHECK(var.size() == 1 + 2 + 3 + 300);
}

TEST_CASE("aml: resource template descriptors")
{
    using namespace emu::devices::acpi;
    // WordBusNumber (ResourceProducer, MinFixed, MaxFixed, PosDecode, 0, 0, 0xff, 0, 0x100)
    Bytes bus = aml::ResourceTemplate{}.word_bus_number(0, 0xff).bytes();
    CHECK(Bytes(bus.begin(), bus.end() - 1) == Bytes{0x88, 0x0d, 0x00, 0x02, 0x0c, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff,
                                                     0x00, 0x00, 0x00, 0x00, 0x01, 0x79});
    CHECK(sum(bus.data(), bus.size()) == 0);
    Bytes io = aml::ResourceTemplate{}.io(0x0cf8, 0x0cf8, 1, 8).bytes();
    CHECK(Bytes(io.begin(), io.end() - 2) == Bytes{0x47, 0x01, 0xf8, 0x0c, 0xf8, 0x0c, 0x01, 0x08});
    CHECK(io[io.size() - 2] == 0x79);
    CHECK(sum(io.data(), io.size()) == 0); // the end tag's checksum
    Bytes irq = aml::ResourceTemplate{}.irq_no_flags({4}).bytes();
    CHECK(Bytes(irq.begin(), irq.end() - 2) == Bytes{0x22, 0x10, 0x00});
    // WordIO (..., EntireRange) 0xd00-0xffff, length 0xf300
    Bytes wio = aml::ResourceTemplate{}.word_io(0x0d00, 0xffff).bytes();
    CHECK(Bytes(wio.begin(), wio.end() - 2) == Bytes{0x88, 0x0d, 0x00, 0x01, 0x0c, 0x03, 0x00, 0x00, 0x00, 0x0d,
                                                     0xff, 0xff, 0x00, 0x00, 0x00, 0xf3});
    // DWordMemory (..., Cacheable, ReadWrite) 0xa0000-0xbffff
    Bytes dm = aml::ResourceTemplate{}.dword_memory(0xa0000, 0xbffff, true).bytes();
    CHECK(Bytes(dm.begin(), dm.end() - 2) ==
          Bytes{0x87, 0x17, 0x00, 0x00, 0x0c, 0x03, 0, 0, 0, 0, 0x00, 0x00, 0x0a, 0x00, 0xff, 0xff, 0x0b, 0x00,
                0, 0, 0, 0, 0x00, 0x00, 0x02, 0x00});
    Bytes qm = aml::ResourceTemplate{}.qword_memory(0x800000000ull, 0xfffffffffull, false).bytes();
    CHECK(qm.size() == 46 + 2);
    CHECK(qm[0] == 0x8a);
    CHECK(le(qm, 1, 2) == 0x2b);
    CHECK(qm[5] == 0x01); // NonCacheable, ReadWrite
    CHECK(le(qm, 14, 8) == 0x800000000ull);
    CHECK(le(qm, 22, 8) == 0xfffffffffull);
    CHECK(le(qm, 38, 8) == 0x800000000ull); // length
    Bytes dio = aml::ResourceTemplate{}.dword_io(0x1000, 0x1fff).bytes();
    CHECK(dio[0] == 0x87);
    CHECK(dio[3] == 0x01);
    Bytes fixed = aml::ResourceTemplate{}.memory32_fixed(0xfed00000, 0x400).bytes();
    CHECK(Bytes(fixed.begin(), fixed.end() - 2) ==
          Bytes{0x86, 0x09, 0x00, 0x01, 0x00, 0x00, 0xd0, 0xfe, 0x00, 0x04, 0x00, 0x00});
    // As a Buffer object: BufferOp, PkgLength, size, bytes.
    Bytes buf = aml::ResourceTemplate{}.irq_no_flags({1, 12}).buffer();
    CHECK(buf == Bytes{0x11, 0x08, 0x0a, 0x05, 0x22, 0x02, 0x10, 0x79, uint8_t(-(0x22 + 0x02 + 0x10 + 0x79))});
}

// ---- ACPI tables -------------------------------------------------------------

namespace {

struct ParsedTables {
    Bytes blob;
    uint64_t base = 0;
    std::map<std::string, Bytes> tables; // by signature, reached from the XSDT
    Bytes slice(uint64_t addr, uint64_t len) const
    {
        REQUIRE(addr >= base);
        REQUIRE(addr - base + len <= blob.size());
        return Bytes(blob.begin() + long(addr - base), blob.begin() + long(addr - base + len));
    }
    Bytes table_at(uint64_t addr) const
    {
        Bytes head = slice(addr, 8);
        return slice(addr, le(head, 4, 4));
    }
};

void check_header(const Bytes& t, const char* sig)
{
    REQUIRE(t.size() >= 36);
    CHECK(std::string(t.begin(), t.begin() + 4) == sig);
    CHECK(le(t, 4, 4) == t.size());
    CHECK(sum(t.data(), t.size()) == 0);
    CHECK(std::string(t.begin() + 10, t.begin() + 14) == "EMUD");
    CHECK(std::string(t.begin() + 16, t.begin() + 20) == "EMUD");
    CHECK(std::string(t.begin() + 28, t.begin() + 32) == "EMUD");
}

ParsedTables parse(const acpi::TablesConfig& config)
{
    auto built = acpi::build_tables(config);
    REQUIRE(built);
    ParsedTables p{built->blob, config.base, {}};
    CHECK(built->rsdp == config.base);
    Bytes rsdp = p.slice(built->rsdp, 36);
    CHECK(std::string(rsdp.begin(), rsdp.begin() + 8) == "RSD PTR ");
    CHECK(sum(rsdp.data(), 20) == 0);
    CHECK(sum(rsdp.data(), 36) == 0);
    CHECK(rsdp[15] == 2);
    CHECK(le(rsdp, 20, 4) == 36);
    CHECK(std::string(rsdp.begin() + 9, rsdp.begin() + 13) == "EMUD");

    Bytes rsdt = p.table_at(le(rsdp, 16, 4));
    Bytes xsdt = p.table_at(le(rsdp, 24, 8));
    check_header(rsdt, "RSDT");
    check_header(xsdt, "XSDT");
    size_t n = (xsdt.size() - 36) / 8;
    CHECK((rsdt.size() - 36) / 4 == n);
    for (size_t i = 0; i < n; ++i) {
        uint64_t addr = le(xsdt, 36 + 8 * i, 8);
        CHECK(le(rsdt, 36 + 4 * i, 4) == addr);
        Bytes t = p.table_at(addr);
        std::string sig(t.begin(), t.begin() + 4);
        check_header(t, sig.c_str());
        p.tables[sig] = t;
    }
    REQUIRE(p.tables.count("FACP"));
    const Bytes& fadt = p.tables["FACP"];
    uint64_t dsdt_addr = le(fadt, 40, 4);
    CHECK(le(fadt, 140, 8) == dsdt_addr);
    p.tables["DSDT"] = p.table_at(dsdt_addr);
    check_header(p.tables["DSDT"], "DSDT");
    uint64_t facs_addr = le(fadt, 36, 4);
    CHECK(le(fadt, 132, 8) == facs_addr);
    CHECK(facs_addr % 64 == 0);
    p.tables["FACS"] = p.slice(facs_addr, 64);
    CHECK(std::string(p.tables["FACS"].begin(), p.tables["FACS"].begin() + 4) == "FACS");
    return p;
}

bool have_iasl() { return std::system("command -v iasl >/dev/null 2>&1") == 0; }

} // namespace

TEST_CASE("acpi: RSDP -> XSDT -> FADT -> DSDT, checksums, the FADT's fields")
{
    acpi::TablesConfig config;
    config.base = 0x7ff0000;
    ParsedTables p = parse(config);
    CHECK(p.tables.size() == 5); // FACP, APIC, HPET from the XSDT; DSDT, FACS from the FADT
    const Bytes& f = p.tables["FACP"];
    CHECK(f.size() == 244);
    CHECK(f[8] == 3);
    CHECK(le(f, 46, 2) == 9);       // SCI_INT
    CHECK(le(f, 48, 4) == 0);       // SMI_CMD
    CHECK(le(f, 56, 4) == 0x600);   // PM1a_EVT_BLK
    CHECK(le(f, 64, 4) == 0x604);   // PM1a_CNT_BLK
    CHECK(le(f, 76, 4) == 0x608);   // PM_TMR_BLK
    CHECK(le(f, 80, 4) == 0xafe0);  // GPE0_BLK
    CHECK(f[88] == 4);
    CHECK(f[89] == 2);
    CHECK(f[91] == 4);
    CHECK(f[92] == 8);
    uint32_t flags = uint32_t(le(f, 112, 4));
    CHECK((flags & (1u << 4)) == 0); // PWR_BUTTON clear: the fixed power button
    CHECK((flags & (1u << 5)) != 0); // SLP_BUTTON
    CHECK((flags & (1u << 8)) != 0); // TMR_VAL_EXT
    CHECK((flags & (1u << 10)) != 0); // RESET_REG_SUP
    CHECK((flags & 1u) != 0);         // WBINVD
    CHECK((flags & (1u << 2)) != 0);  // PROC_C1
    CHECK((le(f, 109, 2) & 3) == 3);  // legacy devices, 8042
    CHECK(f[116] == 1);               // RESET_REG: system I/O
    CHECK(le(f, 120, 8) == 0xcf9);
    CHECK(f[128] == 0x06);
    CHECK(f[148] == 1);
    CHECK(f[149] == 32);
    CHECK(le(f, 152, 8) == 0x600); // X_PM1a_EVT_BLK
    CHECK(le(f, 176, 8) == 0x604); // X_PM1a_CNT_BLK
    CHECK(f[173] == 16);
    CHECK(le(f, 212, 8) == 0x608); // X_PM_TMR_BLK
    CHECK(le(f, 224, 8) == 0xafe0); // X_GPE0_BLK
    CHECK(f[221] == 64);

    const Bytes& h = p.tables["HPET"];
    CHECK(le(h, 36, 4) == 0x8086a201);
    CHECK(le(h, 44, 8) == 0xfed00000);

    // \_S5 and the PCI root are in the DSDT.
    const Bytes& d = p.tables["DSDT"];
    const uint8_t s5[] = {0x08, '_', 'S', '5', '_', 0x12, 0x06, 0x04, 0x00, 0x00, 0x00, 0x00};
    CHECK(std::search(d.begin(), d.end(), std::begin(s5), std::end(s5)) != d.end());
    const uint8_t hid[] = {0x08, '_', 'H', 'I', 'D', 0x0c, 0x41, 0xd0, 0x0a, 0x03};
    CHECK(std::search(d.begin(), d.end(), std::begin(hid), std::end(hid)) != d.end());

    config.hpet = false;
    ParsedTables q = parse(config);
    CHECK(q.tables.count("HPET") == 0);
}

TEST_CASE("acpi: MADT entries for N vCPUs")
{
    for (unsigned cpus : {1u, 4u, 16u, 255u}) {
        CAPTURE(cpus);
        acpi::TablesConfig config;
        config.base = 0xe0000;
        config.cpus = cpus;
        ParsedTables p = parse(config);
        const Bytes& m = p.tables["APIC"];
        CHECK(le(m, 36, 4) == 0xfee00000);
        CHECK(le(m, 40, 4) == 1);
        std::map<int, int> count;
        size_t off = 44;
        unsigned next_id = 0;
        while (off < m.size()) {
            REQUIRE(off + 2 <= m.size());
            uint8_t type = m[off], len = m[off + 1];
            REQUIRE(len >= 2);
            REQUIRE(off + len <= m.size());
            count[type]++;
            if (type == 0) {
                CHECK(len == 8);
                CHECK(m[off + 3] == next_id++);
                CHECK(le(m, off + 4, 4) == 1);
            } else if (type == 1) {
                CHECK(m[off + 2] == (cpus < 16 ? cpus : 0));
                CHECK(le(m, off + 4, 4) == 0xfec00000);
                CHECK(le(m, off + 8, 4) == 0);
            } else if (type == 2 && m[off + 3] == 0) {
                CHECK(le(m, off + 4, 4) == 2);
            } else if (type == 2 && m[off + 3] == 9) {
                CHECK(le(m, off + 4, 4) == 9);
                CHECK(le(m, off + 8, 2) == 0x000d);
            } else if (type == 4) {
                CHECK(m[off + 2] == 0xff);
                CHECK(m[off + 5] == 1);
            }
            off += len;
        }
        CHECK(off == m.size());
        CHECK(count[0] == int(cpus));
        CHECK(count[1] == 1);
        CHECK(count[2] == 2);
        CHECK(count[4] == 1);
    }
}

TEST_CASE("acpi: configuration errors")
{
    acpi::TablesConfig config;
    config.cpus = 0;
    CHECK(!acpi::build_tables(config));
    config.cpus = 256;
    CHECK(!acpi::build_tables(config));
    config.cpus = 2;
    config.base = 0x1008;
    CHECK(!acpi::build_tables(config));
    config.base = 0xfffff000;
    auto r = acpi::build_tables(config);
    REQUIRE(!r);
    CHECK(r.error().message.find("4 GiB") != std::string::npos);
    config.base = 0x1000;
    config.ioapic_id = 16;
    CHECK(!acpi::build_tables(config));
}

TEST_CASE("acpi: iasl disassembles every table without errors")
{
    if (!have_iasl()) {
        MESSAGE("iasl not installed (Debian package acpica-tools): skipped");
        return;
    }
    acpi::TablesConfig config;
    config.base = 0x7ff0000;
    config.cpus = 4;
    config.serial_ports = 2;
    config.pci64_start = 0x800000000ull;
    config.pci64_end = 0x1000000000ull;
    ParsedTables p = parse(config);

    char tmpl[] = "/tmp/emud-acpi-XXXXXX";
    REQUIRE(mkdtemp(tmpl) != nullptr);
    std::filesystem::path dir = tmpl;
    for (const auto& [sig, bytes] : p.tables) {
        if (sig == "FACS")
            continue; // iasl wants the FACS only next to its FADT
        CAPTURE(sig);
        std::filesystem::path file = dir / (sig + ".dat");
        std::ofstream(file, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()), long(bytes.size()));
        std::string log = (dir / (sig + ".log")).string();
        std::string cmd = "cd " + dir.string() + " && iasl -d " + file.filename().string() + " >" + log + " 2>&1";
        int rc = std::system(cmd.c_str());
        std::ifstream in(log);
        std::string out((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        CAPTURE(out);
        CHECK(rc == 0);
        CHECK(out.find("Error") == std::string::npos);
        CHECK(out.find("Warning") == std::string::npos);
        CHECK(out.find("Invalid") == std::string::npos);
        CHECK(std::filesystem::exists(dir / (sig + ".dsl")));
    }
    // The DSDT's source recompiles (so the AML is the same thing iasl means).
    std::string dsl;
    {
        std::ifstream in(dir / "DSDT.dsl");
        dsl.assign((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    }
    CHECK(dsl.find("PNP0A03") != std::string::npos);
    CHECK(dsl.find("Name (_S5, Package") != std::string::npos);
    CHECK(dsl.find("WordBusNumber") != std::string::npos);
    CHECK(dsl.find("QWordMemory") != std::string::npos);
    CHECK(dsl.find("PNP0501") != std::string::npos);
    std::string log = (dir / "recompile.log").string();
    std::string cmd = "cd " + dir.string() + " && iasl -p recompiled DSDT.dsl >" + log + " 2>&1";
    int rc = std::system(cmd.c_str());
    std::ifstream in(log);
    std::string out((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    CAPTURE(out);
    CHECK(rc == 0);
    CHECK(out.find("0 Errors") != std::string::npos);
    std::filesystem::remove_all(dir);
}

// ---- fw_cfg ------------------------------------------------------------------

namespace {

struct CfgBench {
    mem::MemoryRegion::Ptr io_root = make_container("io", mem::kPortSpaceSize);
    mem::MemoryRegion::Ptr mem_root = make_container("mem", uint64_t(1) << 40);
    mem::MemoryRegion::Ptr ram = std::move(*mem::MemoryRegion::ram("ram", 1 << 20));
    mem::AddressSpace io{"io", *io_root};
    mem::AddressSpace mem{"mem", *mem_root};
    FwCfg cfg{mem};

    CfgBench()
    {
        REQUIRE(mem_root->add_subregion(*ram, 0));
        REQUIRE(cfg.attach(*io_root));
    }
    void select(uint16_t key) { io.write(0x510, key, 2); }
    Bytes read(size_t n)
    {
        Bytes out;
        for (size_t i = 0; i < n; ++i)
            out.push_back(uint8_t(io.read(0x511, 1)));
        return out;
    }
    void put_be(uint64_t addr, uint64_t v, unsigned width)
    {
        for (unsigned i = 0; i < width; ++i)
            mem.write(addr + i, uint8_t(v >> 8 * (width - 1 - i)), 1);
    }
    uint32_t get_be32(uint64_t addr)
    {
        uint32_t v = 0;
        for (unsigned i = 0; i < 4; ++i)
            v = v << 8 | uint32_t(mem.read(addr + i, 1));
        return v;
    }
    // Writes a control structure at `desc` and starts the transfer.
    uint32_t dma(uint64_t desc, uint32_t control, uint32_t length, uint64_t target)
    {
        put_be(desc, control, 4);
        put_be(desc + 4, length, 4);
        put_be(desc + 8, target, 8);
        kick(desc);
        return get_be32(desc);
    }
    void kick(uint64_t desc)
    {
        io.write(0x514, __builtin_bswap32(uint32_t(desc >> 32)), 4);
        io.write(0x518, __builtin_bswap32(uint32_t(desc)), 4);
    }
};

} // namespace

TEST_CASE("fw_cfg: signature, ID and numbers through the data port")
{
    CfgBench b;
    b.cfg.set_ram_size(512ull << 20);
    b.cfg.set_cpus(2, 4);
    b.cfg.set_nographic(true);
    std::array<uint8_t, 16> uuid{};
    uuid[0] = 0xaa;
    uuid[15] = 0x55;
    b.cfg.set_uuid(uuid);

    b.select(FwCfg::kSignature);
    CHECK(b.read(4) == Bytes{'Q', 'E', 'M', 'U'});
    CHECK(b.read(2) == Bytes{0, 0}); // past the end
    b.select(FwCfg::kSignature);     // selecting rewinds
    CHECK(b.read(1) == Bytes{'Q'});
    b.select(FwCfg::kId);
    CHECK(le(b.read(4), 0, 4) == 3); // traditional + DMA
    b.select(FwCfg::kRamSize);
    CHECK(le(b.read(8), 0, 8) == 512ull << 20);
    b.select(FwCfg::kNbCpus);
    CHECK(le(b.read(2), 0, 2) == 2);
    b.select(FwCfg::kMaxCpus);
    CHECK(le(b.read(2), 0, 2) == 4);
    b.select(FwCfg::kNoGraphic);
    CHECK(le(b.read(2), 0, 2) == 1);
    b.select(FwCfg::kUuid);
    Bytes u = b.read(16);
    CHECK(u[0] == 0xaa);
    CHECK(u[15] == 0x55);
    b.select(0x0006); // no such item
    CHECK(b.read(2) == Bytes{0, 0});
    b.select(0x8003); // arch-local: none
    CHECK(b.read(2) == Bytes{0, 0});
    b.io.write(0x510, 0x01, 1); // a byte write to the selector is ignored
    CHECK(b.cfg.state().selector == 0x8003);
    // The DMA register reads its signature.
    CHECK(b.io.read(0x514, 4) == 0x554d4551); // "QEMU"
    CHECK(b.io.read(0x518, 4) == 0x47464320); // " CFG"
}

TEST_CASE("fw_cfg: files are sorted and listed in FILE_DIR")
{
    CfgBench b;
    Bytes e820 = FwCfg::e820_file(std::vector<boot::E820Entry>{
        {0, 0x9fc00, boot::E820Type::Ram}, {0x100000, 0x7f00000, boot::E820Type::Ram}});
    CHECK(e820.size() == 40);
    CHECK(le(e820, 20, 8) == 0x100000);
    CHECK(le(e820, 28, 8) == 0x7f00000);
    CHECK(le(e820, 36, 4) == 1);
    REQUIRE(b.cfg.add_file("etc/e820", e820));
    REQUIRE(b.cfg.add_file("zzz", {1, 2, 3}));
    REQUIRE(b.cfg.add_file("bootorder", {'/', 0}));
    CHECK(!b.cfg.add_file("zzz", {}));
    CHECK(!b.cfg.add_file(std::string(56, 'x'), {}));
    CHECK(b.cfg.add_file(std::string(55, 'x'), {}));
    CHECK(b.cfg.file_select("bootorder") == 0x20);
    CHECK(b.cfg.file_select("etc/e820") == 0x21);
    CHECK(b.cfg.file_select("zzz") == 0x23);
    CHECK(b.cfg.file_select("nope") == -1);

    b.select(FwCfg::kFileDir);
    Bytes count = b.read(4);
    CHECK(count == Bytes{0, 0, 0, 4}); // big-endian
    Bytes entry = b.read(64);
    CHECK(entry[3] == 2);                     // size, big-endian
    CHECK(entry[4] == 0x00);
    CHECK(entry[5] == 0x20);                  // select, big-endian
    CHECK(std::string(reinterpret_cast<const char*>(entry.data() + 8)) == "bootorder");
    entry = b.read(64);
    CHECK(entry[3] == 40);
    CHECK(entry[5] == 0x21);
    CHECK(std::string(reinterpret_cast<const char*>(entry.data() + 8)) == "etc/e820");

    b.select(0x23);
    CHECK(b.read(4) == Bytes{1, 2, 3, 0});
    b.select(0x21);
    CHECK(b.read(40) == e820);
}

TEST_CASE("fw_cfg: DMA select, skip, read; zero fill past the end")
{
    CfgBench b;
    REQUIRE(b.cfg.add_file("etc/table", {10, 11, 12, 13, 14, 15}));
    uint16_t sel = uint16_t(b.cfg.file_select("etc/table"));
    for (uint64_t a = 0x2000; a < 0x2010; ++a)
        b.mem.write(a, 0xaa, 1);

    uint32_t status = b.dma(0x1000, uint32_t(sel) << 16 | FwCfg::kDmaSelect | FwCfg::kDmaRead, 4, 0x2000);
    CHECK(status == 0);
    CHECK(b.mem.read(0x2000, 4) == 0x0d0c0b0a);
    CHECK(b.mem.read(0x2004, 1) == 0xaa);
    // Continue where the last transfer stopped: skip 1, then read past the end.
    CHECK(b.dma(0x1000, FwCfg::kDmaSkip, 1, 0) == 0);
    CHECK(b.dma(0x1000, FwCfg::kDmaRead, 6, 0x2008) == 0);
    CHECK(b.mem.read(0x2008, 1) == 15);
    CHECK(b.mem.read(0x2009, 4) == 0);          // zero-filled
    CHECK(b.mem.read(0x200e, 1) == 0xaa);
    // The data port continues from the DMA's offset too.
    b.dma(0x1000, uint32_t(sel) << 16 | FwCfg::kDmaSelect | FwCfg::kDmaSkip, 2, 0);
    CHECK(b.read(2) == Bytes{12, 13});

    // One 64-bit write of the address works as well.
    b.put_be(0x1100, uint32_t(FwCfg::kSignature) << 16 | FwCfg::kDmaSelect | FwCfg::kDmaRead, 4);
    b.put_be(0x1104, 4, 4);
    b.put_be(0x1108, 0x3000, 8);
    b.io.write(0x514, __builtin_bswap64(0x1100), 8);
    CHECK(b.get_be32(0x1100) == 0);
    CHECK(b.mem.read(0x3000, 4) == 0x554d4551);

    // No operation bits: nothing moves, no error.
    CHECK(b.dma(0x1000, 0, 100, 0x2000) == 0);
}

TEST_CASE("fw_cfg: hostile DMA addresses")
{
    CfgBench b;
    REQUIRE(b.cfg.add_file("f", Bytes(100, 7)));
    uint32_t sel = uint32_t(b.cfg.file_select("f")) << 16 | FwCfg::kDmaSelect;

    // Target outside RAM: the error bit.
    CHECK(b.dma(0x1000, sel | FwCfg::kDmaRead, 16, 0x80000000) == FwCfg::kDmaError);
    // Target running off the end of RAM: the bytes up to the end land, error.
    CHECK(b.dma(0x1000, sel | FwCfg::kDmaRead, 16, 0xffff8) == FwCfg::kDmaError);
    CHECK(b.mem.read(0xffff8, 1) == 7);
    // A target that would wrap around 2^64.
    CHECK(b.dma(0x1000, sel | FwCfg::kDmaRead, 16, ~0ull - 4) == FwCfg::kDmaError);
    // A huge zero fill stops at the end of RAM.
    CHECK(b.dma(0x1000, sel | FwCfg::kDmaRead, 0xffffffff, 0xf0000) == FwCfg::kDmaError);
    // Writes: nothing is writable.
    CHECK(b.dma(0x1000, sel | FwCfg::kDmaWrite, 4, 0x2000) == FwCfg::kDmaError);
    // A control structure outside RAM, or straddling its end: dropped, no crash.
    b.kick(0x40000000);
    b.kick(0xffffc);
    b.kick(~0ull - 3);
    b.io.write(0x514, ~0ull, 8);
    // The device still works.
    CHECK(b.dma(0x1000, sel | FwCfg::kDmaRead, 2, 0x2000) == 0);
    CHECK(b.mem.read(0x2000, 2) == 0x0707);
    b.cfg.reset();
    CHECK(b.cfg.state().selector == 0);
}
