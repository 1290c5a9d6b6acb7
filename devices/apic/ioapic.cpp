// devices/apic/ioapic.cpp — the I/O APIC (behaviour from the Intel 82093AA
// datasheet).
#include "devices/apic/ioapic.h"

#include "common/log.h"

#include <cassert>

namespace emu::devices {

namespace {

constexpr uint64_t kRegSel = 0x00, kRegWin = 0x10;
constexpr uint32_t kIndexId = 0x00, kIndexVersion = 0x01, kIndexArbitration = 0x02, kIndexRedir = 0x10;

// Redirection entry bits.
constexpr uint64_t kMasked = 1u << 16, kLevel = 1u << 15, kRemoteIrr = 1u << 14;
constexpr uint64_t kWritableLow = 0x1afff; // vector, mode, dest mode, polarity, trigger, mask
constexpr uint64_t kWritableHigh = 0xff000000ull << 32;

} // namespace

std::span<const FieldDesc> IoApicState::fields()
{
    static const FieldDesc table[] = {
        field<&IoApicState::id>("id"),
        field<&IoApicState::ioregsel>("ioregsel"),
        field<&IoApicState::pins>("pins"),
        field<&IoApicState::redirection>("redirection"),
    };
    return table;
}

IoApic::IoApic(LapicBus& bus, uint8_t id) : m_bus(bus), m_reset_id(id)
{
    mem::IoOps ops;
    ops.read = [this](uint64_t off, unsigned) -> uint64_t {
        if (off == kRegSel)
            return m_state.ioregsel;
        if (off == kRegWin)
            return read_window();
        return 0;
    };
    ops.write = [this](uint64_t off, uint64_t v, unsigned) {
        if (off == kRegSel)
            m_state.ioregsel = uint32_t(v) & 0xff;
        else if (off == kRegWin)
            write_window(uint32_t(v));
    };
    ops.min_access = ops.max_access = 4;
    auto r = mem::MemoryRegion::io("ioapic", kSize, std::move(ops));
    assert(r.has_value());
    m_region = std::move(*r);
    reset();
}

IoApic::~IoApic() = default;

mem::Result<void> IoApic::attach(mem::MemoryRegion& mmio_root, uint64_t base)
{
    return mmio_root.add_subregion(*m_region, base);
}

void IoApic::reset()
{
    uint32_t pins = m_state.pins;
    m_state = IoApicState{};
    m_state.pins = pins;
    m_state.id = uint32_t(m_reset_id & 0x0f) << 24;
    m_state.redirection.fill(kMasked);
}

uint32_t IoApic::read_window() const
{
    uint32_t index = m_state.ioregsel;
    switch (index) {
    case kIndexId:
        return m_state.id;
    case kIndexVersion:
        return kVersion;
    case kIndexArbitration:
        return m_state.id & 0x0f000000;
    default:
        break;
    }
    if (index >= kIndexRedir && index < kIndexRedir + 2 * kPins) {
        uint64_t e = m_state.redirection[(index - kIndexRedir) / 2];
        return (index & 1) ? uint32_t(e >> 32) : uint32_t(e);
    }
    return 0; // unimplemented register
}

void IoApic::write_window(uint32_t value)
{
    uint32_t index = m_state.ioregsel;
    if (index == kIndexId) {
        m_state.id = value & 0x0f000000;
        return;
    }
    if (index < kIndexRedir || index >= kIndexRedir + 2 * kPins)
        return; // read-only or unimplemented
    int pin = int(index - kIndexRedir) / 2;
    uint64_t& e = m_state.redirection[size_t(pin)];
    if (index & 1) {
        e = (e & ~kWritableHigh) | ((uint64_t(value) << 32) & kWritableHigh);
        return;
    }
    e = (e & ~kWritableLow) | (value & kWritableLow);
    if (!(e & kLevel))
        e &= ~kRemoteIrr; // an edge entry has no remote IRR
    else
        service(pin); // a level input held high is sent once unmasked
}

void IoApic::set_irq(int pin, bool level)
{
    assert(pin >= 0 && pin < kPins && "IOAPIC input out of range: a wiring bug");
    if (pin < 0 || pin >= kPins)
        return;
    uint32_t bit = 1u << pin;
    bool old = m_state.pins & bit;
    m_state.pins = level ? (m_state.pins | bit) : (m_state.pins & ~bit);
    uint64_t e = m_state.redirection[size_t(pin)];
    if (e & kLevel) {
        if (level)
            service(pin);
    } else if (level && !old && !(e & kMasked)) {
        service(pin); // rising edge
    }
}

IrqLine::Sink IoApic::input(int pin)
{
    return [this, pin](bool level) { set_irq(pin, level); };
}

// Sends pin's message if its entry allows it now.
void IoApic::service(int pin)
{
    uint64_t& e = m_state.redirection[size_t(pin)];
    if (e & kMasked)
        return;
    bool level = e & kLevel;
    if (level && (!(m_state.pins & (1u << pin)) || (e & kRemoteIrr)))
        return;
    unsigned mode = unsigned(e >> 8) & 7;
    if (mode == 3 || mode == 6) {
        log_debug("ioapic: pin {} has reserved delivery mode {}: dropped", pin, mode);
        return;
    }
    ApicMessage msg;
    msg.dest = uint8_t(e >> 56);
    msg.logical = e & (1u << 11);
    msg.mode = ApicDelivery(mode);
    msg.vector = uint8_t(e);
    msg.level_trigger = level;
    msg.source = -1;
    if (!level) {
        m_bus.deliver(msg);
        return;
    }
    bool fixed = msg.mode == ApicDelivery::Fixed || msg.mode == ApicDelivery::LowestPriority;
    // Remote IRR before delivery: an EOI cannot come back during it, but
    // set it first anyway so that any re-entry sees the entry busy.
    if (fixed)
        e |= kRemoteIrr;
    if (m_bus.deliver(msg) == 0 && fixed)
        e &= ~kRemoteIrr; // nobody took it: no EOI will come
}

void IoApic::eoi(uint8_t vector)
{
    for (int pin = 0; pin < kPins; ++pin) {
        uint64_t& e = m_state.redirection[size_t(pin)];
        if ((e & kRemoteIrr) && uint8_t(e) == vector) {
            e &= ~kRemoteIrr;
            service(pin); // still asserted: again
        }
    }
}

std::string IoApic::dump() const
{
    return dump_state(IoApicState::fields(), &m_state);
}

} // namespace emu::devices
