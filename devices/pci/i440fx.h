// devices/pci/i440fx.h — the PC's chipset functions on PCI bus 0: the
// i440FX host bridge (00:00.0, 8086:1237) and the PIIX3 PCI-to-ISA bridge
// (00:01.0, 8086:7000) with its PIRQ router and reset control register.
//
// I440fx: the PAM registers (0x59-0x5f) and SMRAM (0x72) are stored for
// firmware to read back; nothing is remapped yet (no shadow RAM, no SMM).
//
// Piix3: PIRQRC[A-D] (0x60-0x63, reset 0x80 = disabled) route PIRQ n to the
// ISA IRQ in bits 3:0 while bit 7 is clear; IRQs 0-2, 8 and 13 are reserved
// and route nowhere. The PCI swizzle is QEMU's pc one: slot S, pin P (INTA =
// 0) drives PIRQ (S - 1 + P) & 3, so slot 1 INTA is PIRQA. The bus counts
// asserted devices per PIRQ; this bridge drives, per ISA IRQ, the OR of the
// PIRQs routed there (`isa_irq`, for the 8259 and the IOAPIC's ISA pins) and
// each PIRQ's level as is (`pirq_gsi`, for IOAPIC inputs 16-19, which the
// ACPI _PRT names in APIC mode).
// The reset control register (0xcf9, bus hook): bit 1 selects a hard reset,
// bit 2 starts one. Any write with bit 2 set calls the reset handler (soft and
// hard resets are the same thing for an emulated machine, as in QEMU); bit 1
// reads back.
// The ELCR (0x4d0/0x4d1) belongs to the 8259 model.
#pragma once

#include "devices/pci/pci.h"
#include "engine/irq.h"

#include <array>
#include <cstdint>
#include <functional>
#include <span>
#include <string>

namespace emu::devices {

class I440fx final : public PciDevice {
public:
    static constexpr uint8_t kDevfn = pci::devfn(0, 0);
    static constexpr unsigned kPam0 = 0x59, kPamCount = 7, kSmram = 0x72;

    I440fx();

    uint8_t pam(unsigned n) const { return config8(kPam0 + n); }
    uint8_t smram() const { return config8(kSmram); }
};

struct Piix3State {
    std::array<bool, 4> pirq{}; // PIRQ levels from the bus
    uint8_t reset_control = 0;  // 0xcf9, bit 1 kept
    static std::span<const FieldDesc> fields();
};

class Piix3 final : public PciDevice {
public:
    static constexpr uint8_t kDevfn = pci::devfn(1, 0);
    static constexpr int kPirqs = 4;
    static constexpr unsigned kPirqRouteControl = 0x60;
    static constexpr int kIsaIrqs = 16;
    static constexpr int kFirstPirqGsi = 16;

    // Installs the INTx router and the 0xcf9 handler on `bus`; the machine
    // still plugs the device (at kDevfn).
    explicit Piix3(PciBus& bus);
    ~Piix3() override;

    // QEMU's pc swizzle.
    static int pirq_of(uint8_t devfn, int pin) { return int((pci::slot_of(devfn) + 3 + unsigned(pin)) & 3); }
    // The ISA IRQ PIRQ n is routed to, or -1.
    int pirq_isa_irq(int pirq) const;

    IrqLine& isa_irq(int irq) { return m_isa[size_t(irq) % kIsaIrqs]; }
    IrqLine& pirq_gsi(int pirq) { return m_gsi[size_t(pirq) % kPirqs]; }

    void set_reset_handler(std::function<void()> handler) { m_reset_handler = std::move(handler); }

    // What SeaBIOS programs: PIRQA-D to `irqs` (its defaults 10, 10, 11, 11).
    // The machine sets those IRQs level-triggered in the ELCR.
    void firmware_setup(std::array<uint8_t, 4> irqs = {10, 10, 11, 11});

    const Piix3State& piix_state() const { return m_piix; }
    std::string dump() const;

private:
    void config_written(unsigned offset, unsigned size) override;
    void device_reset() override;
    void pirq_changed(int pirq, bool level);
    void update_isa();

    PciBus& m_pci;
    Piix3State m_piix;
    std::array<IrqLine, kIsaIrqs> m_isa;
    std::array<IrqLine, kPirqs> m_gsi;
    std::function<void()> m_reset_handler;
};

} // namespace emu::devices
