// devices/pic/i8259.cpp — the 8259A pair (behaviour from the Intel 8259A
// datasheet and the PIIX ELCR description).
#include "devices/pic/i8259.h"

#include "common/log.h"

#include <cassert>

namespace emu::devices {

namespace {

constexpr int kMaster = 0;
constexpr int kSlave = 1;
// ELCR bits that exist: not IRQ0, 1, 2 (master) nor IRQ8, 13 (slave).
constexpr uint8_t kElcrMask[2] = {0xf8, 0xde};
constexpr int kNoIrq = -1;

// Priority 0 is the highest; the IR after `lowest` has priority 0.
int irq_of_priority(int priority, uint8_t lowest)
{
    return (priority + lowest + 1) & 7;
}

// The priority of the most urgent bit in `mask`, or 8 for none.
int best_priority(uint8_t mask, uint8_t lowest)
{
    for (int p = 0; p < 8; ++p)
        if (mask & (1u << irq_of_priority(p, lowest)))
            return p;
    return 8;
}

mem::MemoryRegion::Ptr make_region(const char* name, uint64_t size, mem::IoOps ops)
{
    auto r = mem::MemoryRegion::io(name, size, std::move(ops));
    assert(r.has_value());
    return std::move(*r);
}

} // namespace

std::span<const FieldDesc> PicChipState::fields()
{
    static const FieldDesc table[] = {
        field<&PicChipState::irr>("irr"),
        field<&PicChipState::isr>("isr"),
        field<&PicChipState::imr>("imr"),
        field<&PicChipState::pins>("pins"),
        field<&PicChipState::elcr>("elcr"),
        field<&PicChipState::irq_base>("irq_base"),
        field<&PicChipState::lowest_priority>("lowest_priority"),
        field<&PicChipState::init_step>("init_step"),
        field<&PicChipState::icw3>("icw3"),
        field<&PicChipState::icw4_expected>("icw4_expected"),
        field<&PicChipState::single>("single"),
        field<&PicChipState::ltim>("ltim"),
        field<&PicChipState::x86_mode>("x86_mode"),
        field<&PicChipState::auto_eoi>("auto_eoi"),
        field<&PicChipState::rotate_in_aeoi>("rotate_in_aeoi"),
        field<&PicChipState::special_nested>("special_nested"),
        field<&PicChipState::special_mask>("special_mask"),
        field<&PicChipState::poll>("poll"),
        field<&PicChipState::read_isr>("read_isr"),
    };
    return table;
}

std::span<const FieldDesc> PicState::fields()
{
    static const FieldDesc table[] = {
        field<&PicState::chip>("chip", PicChipState::fields()),
    };
    return table;
}

I8259Pair::I8259Pair()
{
    for (int c = 0; c < 2; ++c) {
        mem::IoOps ops;
        ops.read = [this, c](uint64_t off, unsigned) { return chip_read(c, off); };
        ops.write = [this, c](uint64_t off, uint64_t v, unsigned) { chip_write(c, off, uint8_t(v)); };
        ops.min_access = ops.max_access = 1;
        m_regions[c] = make_region(c == kMaster ? "pic-master" : "pic-slave", 2, std::move(ops));
    }
    mem::IoOps elcr;
    elcr.read = [this](uint64_t off, unsigned) -> uint64_t { return m_state.chip[off].elcr; };
    elcr.write = [this](uint64_t off, uint64_t v, unsigned) {
        PicChipState& s = m_state.chip[off];
        s.elcr = uint8_t(v) & kElcrMask[off];
        // A level-triggered input requests for as long as it is high.
        uint8_t level = level_mask(int(off));
        s.irr = uint8_t((s.irr & ~level) | (s.pins & level));
        update();
    };
    elcr.min_access = elcr.max_access = 1;
    m_regions[2] = make_region("elcr", 2, std::move(elcr));
    reset();
}

I8259Pair::~I8259Pair() = default;

mem::Result<void> I8259Pair::attach(mem::MemoryRegion& port_root)
{
    if (auto r = port_root.add_subregion(master_region(), kMasterPort); !r)
        return r;
    if (auto r = port_root.add_subregion(slave_region(), kSlavePort); !r)
        return r;
    return port_root.add_subregion(elcr_region(), kElcrPort);
}

void I8259Pair::reset()
{
    for (PicChipState& s : m_state.chip) {
        uint8_t pins = s.pins;
        s = PicChipState{};
        s.pins = pins;
    }
    update();
}

uint8_t I8259Pair::level_mask(int c) const
{
    const PicChipState& s = m_state.chip[c];
    uint8_t mask = s.ltim ? 0xff : s.elcr;
    if (c == kMaster)
        mask |= 1u << kCascadeIrq; // IRR2 follows the slave's INT output
    return mask;
}

void I8259Pair::set_irq(int irq, bool level)
{
    assert(irq >= 0 && irq < 16 && "PIC input out of range: a wiring bug");
    if (irq < 0 || irq >= 16 || irq == kCascadeIrq)
        return; // IR2 carries the slave (ISA's IRQ2 line is wired to IRQ9)
    set_pin(irq < 8 ? kMaster : kSlave, irq & 7, level);
    update();
}

IrqLine::Sink I8259Pair::input(int irq)
{
    return [this, irq](bool level) { set_irq(irq, level); };
}

void I8259Pair::set_pin(int c, int n, bool level)
{
    PicChipState& s = m_state.chip[c];
    uint8_t bit = uint8_t(1u << n);
    if (level_mask(c) & bit) {
        s.irr = level ? (s.irr | bit) : (s.irr & ~bit);
    } else if (level && !(s.pins & bit)) {
        s.irr |= bit; // rising edge; stays latched until INTA even if lowered
    }
    s.pins = level ? (s.pins | bit) : (s.pins & ~bit);
}

// The IR this chip would signal now, or kNoIrq: the most urgent unmasked
// request, if it beats everything in service (fully nested mode).
int I8259Pair::best_irq(int c) const
{
    const PicChipState& s = m_state.chip[c];
    int request = best_priority(uint8_t(s.irr & ~s.imr), s.lowest_priority);
    if (request == 8)
        return kNoIrq;
    // Special mask mode: a masked in-service level no longer holds back
    // others.
    uint8_t in_service = s.special_mask ? uint8_t(s.isr & ~s.imr) : s.isr;
    int current = best_priority(in_service, s.lowest_priority);
    int irq = irq_of_priority(request, s.lowest_priority);
    if (request < current)
        return irq;
    // Special fully nested mode: the master lets a higher-priority slave
    // request through while IR2 is in service.
    if (c == kMaster && s.special_nested && request == current && irq == kCascadeIrq)
        return irq;
    return kNoIrq;
}

void I8259Pair::intack(int c, int irq)
{
    PicChipState& s = m_state.chip[c];
    uint8_t bit = uint8_t(1u << irq);
    if (s.auto_eoi) {
        if (s.rotate_in_aeoi)
            s.lowest_priority = uint8_t(irq);
    } else {
        s.isr |= bit;
    }
    if (!(level_mask(c) & bit))
        s.irr &= ~bit;
}

int I8259Pair::acknowledge()
{
    PicChipState& master = m_state.chip[kMaster];
    PicChipState& slave = m_state.chip[kSlave];
    int vector;
    int irq = best_irq(kMaster);
    if (irq == kNoIrq) {
        vector = master.irq_base + 7; // spurious IRQ7: ISR untouched
    } else {
        intack(kMaster, irq);
        if (irq == kCascadeIrq && !master.single) {
            int irq2 = best_irq(kSlave);
            if (irq2 == kNoIrq) {
                vector = slave.irq_base + 7; // spurious IRQ15
            } else {
                intack(kSlave, irq2);
                vector = slave.irq_base + irq2;
            }
        } else {
            vector = master.irq_base + irq;
        }
    }
    if (!master.x86_mode && !m_warned_8080) {
        m_warned_8080 = true;
        log_warn("pic: MCS-80/85 mode (ICW4 µPM=0) is not supported; delivering 8086 vectors");
    }
    update();
    return vector;
}

uint8_t I8259Pair::poll_read(int c)
{
    PicChipState& s = m_state.chip[c];
    s.poll = false;
    int irq = best_irq(c);
    if (irq == kNoIrq) {
        update();
        return 0;
    }
    intack(c, irq);
    update();
    return uint8_t(0x80 | irq);
}

uint64_t I8259Pair::chip_read(int c, uint64_t offset)
{
    PicChipState& s = m_state.chip[c];
    if (s.poll)
        return poll_read(c);
    if (offset == 0)
        return s.read_isr ? s.isr : s.irr;
    return s.imr;
}

void I8259Pair::chip_write(int c, uint64_t offset, uint8_t value)
{
    if (offset == 0)
        write_command(c, value);
    else
        write_data(c, value);
    update();
}

void I8259Pair::write_command(int c, uint8_t value)
{
    PicChipState& s = m_state.chip[c];
    if (value & 0x10) { // ICW1: start initialisation
        uint8_t pins = s.pins, elcr = s.elcr, base = s.irq_base;
        s = PicChipState{};
        s.pins = pins;
        s.elcr = elcr;
        s.irq_base = base;
        s.icw4_expected = value & 0x01;
        s.single = value & 0x02;
        s.ltim = value & 0x08;
        // Edge sense reset: a high edge input needs a new rising edge;
        // level inputs that are high request at once.
        s.irr = uint8_t(s.pins & level_mask(c));
        s.init_step = 1;
        return;
    }
    if (value & 0x08) { // OCW3
        if (value & 0x40)
            s.special_mask = value & 0x20;
        if (value & 0x04)
            s.poll = true;
        if (value & 0x02)
            s.read_isr = value & 0x01;
        return;
    }
    eoi(c, value); // OCW2
}

void I8259Pair::eoi(int c, uint8_t value)
{
    PicChipState& s = m_state.chip[c];
    int level = value & 7;
    switch (value >> 5) {
    case 0: // rotate in AEOI mode: clear
        s.rotate_in_aeoi = false;
        break;
    case 4: // rotate in AEOI mode: set
        s.rotate_in_aeoi = true;
        break;
    case 1:   // non-specific EOI
    case 5: { // rotate on non-specific EOI
        uint8_t candidates = s.special_mask ? uint8_t(s.isr & ~s.imr) : s.isr;
        int p = best_priority(candidates, s.lowest_priority);
        if (p == 8)
            break;
        int irq = irq_of_priority(p, s.lowest_priority);
        s.isr &= uint8_t(~(1u << irq));
        if (value >> 5 == 5)
            s.lowest_priority = uint8_t(irq);
        break;
    }
    case 3: // specific EOI
        s.isr &= uint8_t(~(1u << level));
        break;
    case 7: // rotate on specific EOI
        s.isr &= uint8_t(~(1u << level));
        s.lowest_priority = uint8_t(level);
        break;
    case 6: // set priority: `level` becomes the lowest
        s.lowest_priority = uint8_t(level);
        break;
    default: // 2: no operation
        break;
    }
}

void I8259Pair::write_data(int c, uint8_t value)
{
    PicChipState& s = m_state.chip[c];
    switch (s.init_step) {
    case 1: // ICW2
        s.irq_base = value & 0xf8;
        s.init_step = s.single ? (s.icw4_expected ? 3 : 0) : 2;
        break;
    case 2: // ICW3 (the cascade is wired on IR2 whatever it says)
        s.icw3 = value;
        s.init_step = s.icw4_expected ? 3 : 0;
        break;
    case 3: // ICW4
        s.x86_mode = value & 0x01;
        s.auto_eoi = value & 0x02;
        s.special_nested = value & 0x10;
        s.init_step = 0;
        break;
    default: // OCW1
        s.imr = value;
        break;
    }
}

void I8259Pair::update()
{
    // The slave's INT output is the master's IR2 input.
    bool slave_int = best_irq(kSlave) != kNoIrq;
    set_pin(kMaster, kCascadeIrq, slave_int);
    bool intr = best_irq(kMaster) != kNoIrq;
    m_intr.store(intr, std::memory_order_release);
    m_int_out.set(intr);
}

std::string I8259Pair::dump() const
{
    return dump_state(PicState::fields(), &m_state);
}

} // namespace emu::devices
