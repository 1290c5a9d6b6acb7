// devices/acpi/tables.cpp — RSDP, RSDT, XSDT, FADT, FACS, DSDT, MADT and HPET
// (layouts from the ACPI specification, "ACPI Software Programming Model",
// and the IA-PC HPET specification).
#include "devices/acpi/tables.h"

#include "devices/acpi/aml.h"

#include <cassert>
#include <cstring>
#include <fmt/format.h>
#include <string_view>

namespace emu::devices::acpi {

namespace {

using Bytes = std::vector<uint8_t>;

constexpr size_t kHeaderSize = 36;
constexpr char kOemId[] = "EMUD  ";      // 6 bytes
constexpr char kOemTableId[] = "EMUD    "; // 8 bytes
constexpr char kCreatorId[] = "EMUD";
constexpr uint32_t kOemRevision = 1, kCreatorRevision = 1;

// FADT flags.
constexpr uint32_t kWbinvd = 1u << 0, kProcC1 = 1u << 2, kSlpButton = 1u << 5, kFixRtc = 1u << 6,
                   kTmrValExt = 1u << 8, kResetRegSup = 1u << 10, kUsePlatformClock = 1u << 15;
// IAPC_BOOT_ARCH.
constexpr uint16_t kLegacyDevices = 1u << 0, k8042 = 1u << 1;
// Generic address structure address spaces and access sizes.
constexpr uint8_t kSystemMemory = 0, kSystemIo = 1;
constexpr uint8_t kAccessByte = 1, kAccessWord = 2, kAccessDword = 3;

void put(Bytes& b, size_t off, uint64_t value, unsigned width)
{
    assert(off + width <= b.size());
    for (unsigned i = 0; i < width; ++i)
        b[off + i] = uint8_t(value >> 8 * i);
}

void put_text(Bytes& b, size_t off, std::string_view text)
{
    assert(off + text.size() <= b.size());
    std::memcpy(b.data() + off, text.data(), text.size());
}

uint8_t sum(const uint8_t* p, size_t n)
{
    uint8_t s = 0;
    for (size_t i = 0; i < n; ++i)
        s = uint8_t(s + p[i]);
    return s;
}

// A table of `length` bytes with its header filled (checksum later).
Bytes table(std::string_view signature, size_t length, uint8_t revision)
{
    assert(signature.size() == 4 && length >= kHeaderSize);
    Bytes t(length, 0);
    put_text(t, 0, signature);
    put(t, 4, length, 4);
    t[8] = revision;
    put_text(t, 10, std::string_view(kOemId, 6));
    put_text(t, 16, std::string_view(kOemTableId, 8));
    put(t, 24, kOemRevision, 4);
    put_text(t, 28, std::string_view(kCreatorId, 4));
    put(t, 32, kCreatorRevision, 4);
    return t;
}

void seal(Bytes& t)
{
    t[9] = 0;
    t[9] = uint8_t(-sum(t.data(), t.size()));
}

void put_gas(Bytes& b, size_t off, uint8_t space, uint8_t bit_width, uint8_t access, uint64_t address)
{
    b[off] = space;
    b[off + 1] = bit_width;
    b[off + 2] = 0; // bit offset
    b[off + 3] = access;
    put(b, off + 4, address, 8);
}

// The blob under construction: tables appended at aligned offsets.
struct Blob {
    uint64_t base;
    Bytes data;
    uint64_t place(const Bytes& bytes, size_t align)
    {
        size_t off = (data.size() + align - 1) & ~(align - 1);
        data.resize(off, 0);
        data.insert(data.end(), bytes.begin(), bytes.end());
        return base + off;
    }
};

// ---- DSDT ----------------------------------------------------------------

aml::Bytes prt_package(const TablesConfig& config, bool apic)
{
    aml::TermList entries;
    for (unsigned slot = 1; slot < 32; ++slot) {
        for (unsigned pin = 0; pin < 4; ++pin) {
            unsigned pirq = (slot - 1 + pin) & 3; // the PIIX3 swizzle
            uint64_t gsi = apic ? 16 + pirq : config.pirq_isa_irqs[pirq];
            entries.push_back(aml::package({aml::integer(uint64_t(slot) << 16 | 0xffff), aml::integer(pin),
                                            aml::integer(0), aml::integer(gsi)}));
        }
    }
    return aml::package(entries);
}

aml::Bytes isa_bridge(const TablesConfig& config)
{
    aml::TermList body{aml::name("_ADR", aml::integer(0x00010000))};
    if (config.i8042) {
        body.push_back(aml::device(
            "KBD", {aml::name("_HID", aml::eisa_id("PNP0303")),
                    aml::name("_CRS", aml::ResourceTemplate{}.io(0x60, 0x60, 1, 1).io(0x64, 0x64, 1, 1).irq_no_flags({1}).buffer())}));
        body.push_back(aml::device("MOU", {aml::name("_HID", aml::eisa_id("PNP0F13")),
                                           aml::name("_CRS", aml::ResourceTemplate{}.irq_no_flags({12}).buffer())}));
    }
    body.push_back(aml::device(
        "RTC", {aml::name("_HID", aml::eisa_id("PNP0B00")),
                aml::name("_CRS", aml::ResourceTemplate{}.io(0x70, 0x70, 1, 2).irq_no_flags({8}).buffer())}));
    static constexpr struct {
        uint16_t port;
        unsigned irq;
    } kCom[] = {{0x3f8, 4}, {0x2f8, 3}, {0x3e8, 4}, {0x2e8, 3}};
    for (unsigned n = 0; n < config.serial_ports && n < 4; ++n) {
        body.push_back(aml::device(
            fmt::format("COM{}", n + 1),
            {aml::name("_HID", aml::eisa_id("PNP0501")), aml::name("_UID", aml::integer(n + 1)),
             aml::name("_CRS",
                       aml::ResourceTemplate{}.io(kCom[n].port, kCom[n].port, 0, 8).irq_no_flags({kCom[n].irq}).buffer())}));
    }
    return aml::device("ISA", body);
}

aml::Bytes pci_root(const TablesConfig& config)
{
    aml::ResourceTemplate crs;
    crs.word_bus_number(0x00, 0xff)
        .io(0x0cf8, 0x0cf8, 1, 8)
        .word_io(0x0000, 0x0cf7)
        .word_io(0x0d00, 0xffff)
        .dword_memory(0x000a0000, 0x000bffff, true)
        .dword_memory(uint32_t(config.pci_hole_start), uint32_t(config.pci_hole_end - 1), false);
    if (config.pci64_end > config.pci64_start)
        crs.qword_memory(config.pci64_start, config.pci64_end - 1, false);
    return aml::device(
        "PCI0",
        {aml::name("_HID", aml::eisa_id("PNP0A03")), aml::name("_ADR", aml::integer(0)),
         aml::name("_UID", aml::integer(0)), aml::name("_BBN", aml::integer(0)), aml::name("_CRS", crs.buffer()),
         aml::name("PRTA", prt_package(config, true)), aml::name("PRTP", prt_package(config, false)),
         aml::method("_PRT", 0, false,
                     {aml::if_then(aml::name_string("\\PICF"), {aml::return_value(aml::name_string("PRTA"))}),
                      aml::return_value(aml::name_string("PRTP"))}),
         isa_bridge(config)});
}

// ---- fixed tables --------------------------------------------------------

Bytes facs()
{
    Bytes t(64, 0);
    put_text(t, 0, "FACS");
    put(t, 4, 64, 4);
    t[32] = 1; // version (ACPI 2.0)
    return t;
}

Bytes fadt(const TablesConfig& c, uint64_t facs_addr, uint64_t dsdt_addr)
{
    Bytes t = table("FACP", 244, 3);
    uint64_t pm1_evt = c.pm_base, pm1_cnt = c.pm_base + 4u, pm_tmr = c.pm_base + 8u;
    put(t, 36, facs_addr, 4);
    put(t, 40, dsdt_addr, 4);
    put(t, 46, c.sci_irq, 2);
    put(t, 48, 0, 4); // SMI_CMD: no SMM handshake, ACPI is always enabled
    put(t, 56, pm1_evt, 4);
    put(t, 64, pm1_cnt, 4);
    put(t, 76, pm_tmr, 4);
    put(t, 80, c.gpe0_base, 4);
    t[88] = 4;              // PM1_EVT_LEN
    t[89] = 2;              // PM1_CNT_LEN
    t[91] = 4;              // PM_TMR_LEN
    t[92] = c.gpe0_length;  // GPE0_BLK_LEN
    put(t, 96, 0x0fff, 2);  // P_LVL2_LAT: no C2
    put(t, 98, 0x0fff, 2);  // P_LVL3_LAT: no C3
    t[108] = 0x32;          // CENTURY: CMOS index
    put(t, 109, kLegacyDevices | (c.i8042 ? k8042 : 0), 2);
    put(t, 112, kWbinvd | kProcC1 | kSlpButton | kFixRtc | kTmrValExt | kResetRegSup | kUsePlatformClock, 4);
    put_gas(t, 116, kSystemIo, 8, kAccessByte, 0xcf9); // RESET_REG
    t[128] = 0x06;                                     // RESET_VALUE: hard reset
    put(t, 132, facs_addr, 8);
    put(t, 140, dsdt_addr, 8);
    put_gas(t, 148, kSystemIo, 32, kAccessWord, pm1_evt);
    put_gas(t, 172, kSystemIo, 16, kAccessWord, pm1_cnt);
    put_gas(t, 208, kSystemIo, 32, kAccessDword, pm_tmr);
    put_gas(t, 220, kSystemIo, uint8_t(c.gpe0_length * 8), kAccessByte, c.gpe0_base);
    seal(t);
    return t;
}

Bytes madt(const TablesConfig& c, uint8_t ioapic_id)
{
    Bytes entries;
    auto add = [&entries](std::initializer_list<uint8_t> e) { entries.insert(entries.end(), e); };
    for (unsigned i = 0; i < c.cpus; ++i)
        add({0, 8, uint8_t(i), uint8_t(i), 1, 0, 0, 0}); // processor local APIC: UID, APIC ID, enabled
    uint32_t io = uint32_t(c.ioapic_base);
    add({1, 12, ioapic_id, 0, uint8_t(io), uint8_t(io >> 8), uint8_t(io >> 16), uint8_t(io >> 24), 0, 0, 0, 0});
    add({2, 10, 0, 0, 2, 0, 0, 0, 0x00, 0x00});               // IRQ0 -> GSI2, conforming (ISA: edge, high)
    add({2, 10, 0, c.sci_irq, c.sci_irq, 0, 0, 0, 0x0d, 0x00}); // SCI: level, active high
    add({4, 6, 0xff, 0x00, 0x00, 1});                          // all processors: LINT1 is NMI
    Bytes t = table("APIC", 44 + entries.size(), 1);
    put(t, 36, c.lapic_base, 4);
    put(t, 40, 1, 4); // PCAT_COMPAT: the 8259s are there
    std::memcpy(t.data() + 44, entries.data(), entries.size());
    seal(t);
    return t;
}

Bytes hpet(const TablesConfig& c)
{
    Bytes t = table("HPET", 56, 1);
    put(t, 36, c.hpet_block_id, 4);
    put_gas(t, 40, kSystemMemory, 64, 0, c.hpet_base);
    t[52] = 0;           // HPET number
    put(t, 53, 0, 2);    // minimum periodic tick: no restriction
    t[55] = 0;           // no page protection
    seal(t);
    return t;
}

} // namespace

std::vector<uint8_t> build_dsdt_aml(const TablesConfig& config)
{
    aml::TermList body{
        aml::name("PICF", aml::integer(0)),
        aml::method("_PIC", 1, false, {aml::store(aml::arg(0), aml::name_string("PICF"))}),
        aml::scope("\\_SB", {pci_root(config)}),
        aml::name("_S5", aml::package({aml::integer(0), aml::integer(0), aml::integer(0), aml::integer(0)})),
    };
    aml::Bytes out;
    for (const auto& t : body)
        out.insert(out.end(), t.begin(), t.end());
    return out;
}

Result<Tables> build_tables(const TablesConfig& c)
{
    if (c.cpus == 0 || c.cpus > 255)
        return std::unexpected(Error{fmt::format("acpi: {} vCPUs do not fit the MADT's 8-bit APIC IDs", c.cpus)});
    if (c.base % 16)
        return std::unexpected(Error{fmt::format("acpi: table address {:#x} is not 16-byte aligned", c.base)});
    if (c.pci_hole_start >= c.pci_hole_end || c.pci_hole_end > (uint64_t(1) << 32))
        return std::unexpected(Error{fmt::format("acpi: PCI hole [{:#x}, {:#x}) is not a 32-bit window",
                                                 c.pci_hole_start, c.pci_hole_end)});
    if (c.serial_ports > 4)
        return std::unexpected(Error{fmt::format("acpi: {} serial ports; at most 4", c.serial_ports)});
    if (c.gpe0_length == 0 || c.gpe0_length % 2)
        return std::unexpected(Error{fmt::format("acpi: GPE0 block length {} is not even", c.gpe0_length)});
    int ioapic_id = c.ioapic_id >= 0 ? c.ioapic_id : (c.cpus < 16 ? int(c.cpus) : 0);
    if (ioapic_id > 15)
        return std::unexpected(Error{fmt::format("acpi: IOAPIC ID {} does not fit 4 bits", ioapic_id)});

    Blob blob{c.base, {}};
    blob.data.resize(36, 0); // the RSDP, filled last
    uint64_t facs_addr = blob.place(facs(), 64);

    aml::Bytes aml = build_dsdt_aml(c);
    Bytes dsdt = table("DSDT", kHeaderSize + aml.size(), 2); // revision 2: 64-bit integers
    std::memcpy(dsdt.data() + kHeaderSize, aml.data(), aml.size());
    seal(dsdt);
    uint64_t dsdt_addr = blob.place(dsdt, 16);

    std::vector<uint64_t> pointers;
    pointers.push_back(blob.place(fadt(c, facs_addr, dsdt_addr), 16));
    pointers.push_back(blob.place(madt(c, uint8_t(ioapic_id)), 16));
    if (c.hpet)
        pointers.push_back(blob.place(hpet(c), 16));

    Bytes rsdt = table("RSDT", kHeaderSize + 4 * pointers.size(), 1);
    Bytes xsdt = table("XSDT", kHeaderSize + 8 * pointers.size(), 1);
    for (size_t i = 0; i < pointers.size(); ++i) {
        put(rsdt, kHeaderSize + 4 * i, pointers[i], 4);
        put(xsdt, kHeaderSize + 8 * i, pointers[i], 8);
    }
    seal(rsdt);
    seal(xsdt);
    uint64_t rsdt_addr = blob.place(rsdt, 16);
    uint64_t xsdt_addr = blob.place(xsdt, 16);

    if (c.base + blob.data.size() > (uint64_t(1) << 32))
        return std::unexpected(Error{fmt::format("acpi: tables at {:#x} ({} bytes) cross 4 GiB; the RSDT needs "
                                                 "32-bit addresses", c.base, blob.data.size())});

    Bytes& d = blob.data;
    put_text(d, 0, "RSD PTR ");
    put_text(d, 9, std::string_view(kOemId, 6));
    d[15] = 2; // revision: ACPI 2.0+, with the XSDT
    put(d, 16, rsdt_addr, 4);
    put(d, 20, 36, 4);
    put(d, 24, xsdt_addr, 8);
    d[8] = uint8_t(-sum(d.data(), 20));
    d[32] = uint8_t(-sum(d.data(), 36));
    return Tables{std::move(blob.data), c.base};
}

} // namespace emu::devices::acpi
