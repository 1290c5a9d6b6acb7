// devices/apic/ioapic.h — the I/O APIC (82093AA, version 0x11): 24 inputs
// turned into APIC bus messages. MMIO at 0xfec00000: IOREGSEL (offset 0x00)
// selects a register that IOWIN (offset 0x10) reads and writes.
//
// Supported: ID (bits 24-27), version 0x00170011 (24 redirection entries),
// arbitration ID (reads the ID), 24 redirection entries (vector, delivery
// mode fixed/lowest priority/SMI/NMI/INIT/ExtINT, physical or logical
// destination, polarity, remote IRR, trigger mode, mask, 8-bit destination).
// Inputs come from `set_irq(pin, level)` (IrqLines the machine wires, like the
// 8259's). An edge entry sends a message on each rising edge while unmasked
// (an edge on a masked pin is lost, as the datasheet says); a level entry
// sends while the input is high, unmasked and its remote IRR is clear, sets
// remote IRR when a local APIC accepted the message, and is serviced again
// when a level EOI for its vector (LapicBus::broadcast_eoi -> eoi()) clears
// remote IRR with the input still high, or when it is unmasked while high.
// Rewriting a level entry as edge clears its remote IRR (Linux does this to
// unstick an IOAPIC without an EOI register).
// Choices: input levels are logical ("asserted"), so the polarity bit is
// stored and ignored (the machine's wiring already means asserted-high, as
// in QEMU); delivery status always reads idle (delivery is synchronous);
// reserved delivery modes (3, 6) are logged and dropped. No EOI register
// (that is version 0x20).
#pragma once

#include "devices/apic/lapic.h"
#include "devices/state.h"
#include "engine/irq.h"
#include "engine/memory/region.h"

#include <array>
#include <cstdint>
#include <span>
#include <string>

namespace emu::devices {

struct IoApicState {
    uint32_t id = 0; // register value: ID in bits 24-27
    uint32_t ioregsel = 0;
    uint32_t pins = 0; // input levels as last driven
    std::array<uint64_t, 24> redirection{};
    static std::span<const FieldDesc> fields();
};

class IoApic {
public:
    static constexpr uint64_t kBase = 0xfec00000;
    static constexpr uint64_t kSize = 0x1000;
    static constexpr int kPins = 24;
    static constexpr uint32_t kVersion = 0x00170011;

    explicit IoApic(LapicBus& bus, uint8_t id = 0);
    ~IoApic();

    mem::MemoryRegion& region() { return *m_region; }
    mem::Result<void> attach(mem::MemoryRegion& mmio_root, uint64_t base = kBase);

    void set_irq(int pin, bool level);
    IrqLine::Sink input(int pin);
    // A level-triggered EOI broadcast by a local APIC.
    void eoi(uint8_t vector);

    uint64_t redirection(int pin) const { return m_state.redirection[size_t(pin)]; }
    void reset();
    const IoApicState& state() const { return m_state; }
    std::string dump() const;

private:
    uint32_t read_window() const;
    void write_window(uint32_t value);
    void service(int pin);

    LapicBus& m_bus;
    uint8_t m_reset_id;
    IoApicState m_state;
    mem::MemoryRegion::Ptr m_region;
};

} // namespace emu::devices
