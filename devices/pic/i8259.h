// devices/pic/i8259.h — the PC's pair of 8259A programmable interrupt
// controllers: the master at ports 0x20/0x21 (IRQ0-7), the slave at
// 0xa0/0xa1 (IRQ8-15) cascaded into the master's IR2, and the PIIX edge/level
// control registers (ELCR) at 0x4d0/0x4d1.
//
// Supported: ICW1-ICW4 (LTIM, single mode, AEOI, special fully nested mode),
// OCW1 (IMR), OCW2 (non-specific/specific EOI, rotate on EOI, rotate in AEOI,
// set priority), OCW3 (IRR/ISR read select, poll, special mask mode),
// edge vs level per input through LTIM or ELCR (ELCR bits 0-2 and 8/13 are
// fixed edge, as on PIIX), spurious IRQ7/IRQ15 vectors when a request goes
// away before INTA.
// The cascade input (master IR2) follows the slave's INT output as a level,
// so a slave request can never be lost behind an edge the master did not
// see; the price is that a slave request withdrawn before INTA shows as the
// master's spurious IRQ7 (the slave's spurious IRQ15 vector exists but the
// master never acknowledges IR2 without a slave request).
// Omitted: MCS-80/85 mode (ICW4 µPM=0, or no ICW4) — a PC CPU is always in
// 8086 mode, so vectors are base+irq regardless (logged once); buffered mode
// bits are stored and ignored. The cascade is fixed on IR2: ICW3 is stored.
//
// The master's INT output is `pending()` (an atomic: the vCPU may look at it
// without the device lock) and `int_output()` (an IrqLine the machine uses to
// wake a halted vCPU); `acknowledge()` is the INTA cycle and runs under the
// device lock, like port accesses.
#pragma once

#include "devices/state.h"
#include "engine/irq.h"
#include "engine/memory/region.h"
#include "engine/x86/vcpu.h"

#include <array>
#include <atomic>
#include <cstdint>
#include <span>
#include <string>

namespace emu::devices {

struct PicChipState {
    uint8_t irr = 0;
    uint8_t isr = 0;
    uint8_t imr = 0;
    uint8_t pins = 0; // input levels as last driven
    uint8_t elcr = 0; // 1 = level-triggered (when LTIM is clear)
    uint8_t irq_base = 0;
    uint8_t lowest_priority = 7; // the IR with the lowest priority (rotation)
    uint8_t init_step = 0;       // 0 ready; 1, 2, 3: ICW2, ICW3, ICW4 expected
    uint8_t icw3 = 0;
    bool icw4_expected = false;
    bool single = false;
    bool ltim = false;
    bool x86_mode = false;
    bool auto_eoi = false;
    bool rotate_in_aeoi = false;
    bool special_nested = false;
    bool special_mask = false;
    bool poll = false;
    bool read_isr = false;
    static std::span<const FieldDesc> fields();
};

struct PicState {
    std::array<PicChipState, 2> chip{}; // master, slave
    static std::span<const FieldDesc> fields();
};

class I8259Pair final : public x86::InterruptSource {
public:
    static constexpr uint16_t kMasterPort = 0x20;
    static constexpr uint16_t kSlavePort = 0xa0;
    static constexpr uint16_t kElcrPort = 0x4d0;
    static constexpr int kCascadeIrq = 2;

    I8259Pair();
    ~I8259Pair() override;

    // Maps the three port regions into a port-I/O root at the PC addresses.
    mem::Result<void> attach(mem::MemoryRegion& port_root);
    mem::MemoryRegion& master_region() { return *m_regions[0]; }
    mem::MemoryRegion& slave_region() { return *m_regions[1]; }
    mem::MemoryRegion& elcr_region() { return *m_regions[2]; }

    // Input pins: IRQ0-15. The machine wires device lines here. IRQ2 is the
    // cascade and ignores set_irq (ISA's IRQ2 pin is wired to IRQ9 on a PC).
    void set_irq(int irq, bool level);
    IrqLine::Sink input(int irq);

    // InterruptSource: the master's INT pin, and the INTA cycle (the vector;
    // spurious IRQ7/15 give base+7 without touching ISR).
    bool pending() override { return m_intr.load(std::memory_order_acquire); }
    int acknowledge() override;
    IrqLine& int_output() { return m_int_out; }

    // System reset: both chips uninitialised, ELCR edge, pins kept.
    void reset();

    const PicState& state() const { return m_state; }
    std::string dump() const; // `info pic`-style state dump

private:
    uint64_t chip_read(int c, uint64_t offset);
    void chip_write(int c, uint64_t offset, uint8_t value);
    void write_command(int c, uint8_t value);
    void write_data(int c, uint8_t value);
    void set_pin(int c, int n, bool level);
    uint8_t level_mask(int c) const;
    int best_irq(int c) const;
    void intack(int c, int irq);
    void eoi(int c, uint8_t value);
    uint8_t poll_read(int c);
    void update();

    PicState m_state;
    std::atomic<bool> m_intr{false};
    IrqLine m_int_out;
    std::array<mem::MemoryRegion::Ptr, 3> m_regions;
    bool m_warned_8080 = false;
};

} // namespace emu::devices
