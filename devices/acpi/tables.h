// devices/acpi/tables.h — the ACPI tables of the PC machine for direct boot
// (no firmware builds them), as one blob placed at a guest physical address.
//
// Layout from `base` (16-byte aligned): RSDP (revision 2: RSDT and XSDT),
// FACS (64-byte aligned), DSDT, FADT, MADT, HPET (if present), RSDT, XSDT;
// each table 16-byte aligned. Every table says OEM "EMUD".
//  - FADT revision 3 (ACPI 2.0, 244 bytes): the PIIX4 PM blocks (PM1a_EVT,
//    PM1a_CNT, PM_TMR with TMR_VAL_EXT, GPE0 with status and enable halves),
//    SCI_INT 9, SMI_CMD 0 (ACPI is always enabled), flags WBINVD, PROC_C1,
//    SLP_BUTTON (no fixed sleep button), FIX_RTC, TMR_VAL_EXT, RESET_REG_SUP
//    (RESET_REG: port 0xcf9, value 6) and USE_PLATFORM_CLOCK; PWR_BUTTON is
//    clear, so the fixed power button is used. IAPC_BOOT_ARCH: legacy
//    devices, and 8042 when the machine has one. The 32-bit and 64-bit
//    (X_) addresses are both filled and agree.
//  - DSDT: \_S5 = {0, 0, 0, 0} (SLP_TYP 0, what the PM device takes for
//    soft off); \_SB.PCI0 (PNP0A03, _ADR 0, _UID 0, _BBN 0) with _CRS (bus
//    0-255, I/O 0xcf8 consumed, I/O 0-0xcf7 and 0xd00-0xffff, memory
//    0xa0000-0xbffff, the 32-bit PCI hole, and the 64-bit window if any) and
//    _PRT as a method: slot S 1-31, pin P -> PIRQ (S - 1 + P) & 3 (the
//    PIIX3 swizzle), which is GSI 16 + PIRQ in APIC mode and the PIRQ's ISA
//    IRQ in PIC mode (_PIC(0); as firmware_setup programs PIIX3). ISA
//    devices under \_SB.PCI0.ISA: the keyboard controller and mouse (if
//    the machine has an i8042), RTC, and the COM ports.
//  - MADT: local APIC at 0xfee00000, PCAT_COMPAT; one enabled processor
//    local APIC per vCPU (UID = APIC ID = index); the IOAPIC (ID = the
//    number of vCPUs unless given) at GSI base 0; overrides IRQ0 -> GSI2
//    (conforming: ISA edge) and IRQ9 -> GSI9 level, active high (SCI);
//    LINT1 is NMI on every processor.
//  - HPET: event timer block ID (the HPET's capabilities register low 32
//    bits) and base address.
#pragma once

#include <array>
#include <cstdint>
#include <expected>
#include <string>
#include <vector>

namespace emu::devices::acpi {

struct Error {
    std::string message; // "acpi: 300 vCPUs do not fit the MADT's 8-bit APIC IDs"
};
template <class T>
using Result = std::expected<T, Error>;

struct TablesConfig {
    uint64_t base = 0;          // guest physical address of the blob (16-byte aligned)
    unsigned cpus = 1;          // 1..255
    int ioapic_id = -1;         // -1: the number of vCPUs
    uint64_t pci_hole_start = 0xe0000000; // 32-bit PCI window [start, end)
    uint64_t pci_hole_end = 0xfec00000;
    uint64_t pci64_start = 0;   // 64-bit PCI window [start, end); empty: none
    uint64_t pci64_end = 0;
    bool hpet = true;
    uint32_t hpet_block_id = 0x8086a201;
    uint64_t hpet_base = 0xfed00000;
    uint64_t lapic_base = 0xfee00000;
    uint64_t ioapic_base = 0xfec00000;
    uint16_t pm_base = 0x600;
    uint16_t gpe0_base = 0xafe0;
    uint8_t gpe0_length = 8; // status + enable
    uint8_t sci_irq = 9;
    // The ISA IRQs PIRQA-D are routed to in PIC mode (Piix3::firmware_setup).
    std::array<uint8_t, 4> pirq_isa_irqs = {10, 10, 11, 11};
    bool i8042 = true;
    unsigned serial_ports = 1; // COM1 (0x3f8, IRQ 4) .. COM4
};

struct Tables {
    std::vector<uint8_t> blob; // to be written at config.base
    uint64_t rsdp = 0;         // guest physical address of the RSDP
};

Result<Tables> build_tables(const TablesConfig& config);

// The DSDT's AML body (no header), for tests and dumps.
std::vector<uint8_t> build_dsdt_aml(const TablesConfig& config);

} // namespace emu::devices::acpi
