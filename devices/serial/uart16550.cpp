// devices/serial/uart16550.cpp — the 16550A UART (behaviour from the
// National Semiconductor PC16550D datasheet).
#include "devices/serial/uart16550.h"

#include <algorithm>
#include <cassert>

namespace emu::devices {

namespace {

enum : uint8_t { kRbr = 0, kIer = 1, kIir = 2, kLcr = 3, kMcr = 4, kLsr = 5, kMsr = 6, kScr = 7 };

// IER
constexpr uint8_t kErbfi = 0x01, kEtbei = 0x02, kElsi = 0x04, kEdssi = 0x08;
// IIR identifications
constexpr uint8_t kIirNone = 0x01, kIirLineStatus = 0x06, kIirRxData = 0x04, kIirTimeout = 0x0c, kIirThre = 0x02,
                  kIirModem = 0x00;
// LSR
constexpr uint8_t kDr = 0x01, kOe = 0x02, kPe = 0x04, kFe = 0x08, kBi = 0x10, kThre = 0x20, kTemt = 0x40,
                  kRxFifoError = 0x80;
constexpr uint8_t kLineErrors = kOe | kPe | kFe | kBi;
// LCR
constexpr uint8_t kBreak = 0x40, kDlab = 0x80;
// MCR
constexpr uint8_t kDtr = 0x01, kRts = 0x02, kOut1 = 0x04, kOut2 = 0x08, kLoop = 0x10;
// MSR lines
constexpr uint8_t kCts = 0x10, kDsr = 0x20, kRi = 0x40, kDcd = 0x80;

} // namespace

std::span<const FieldDesc> UartState::fields()
{
    static const FieldDesc table[] = {
        field<&UartState::divisor>("divisor"),
        field<&UartState::ier>("ier"),
        field<&UartState::lcr>("lcr"),
        field<&UartState::mcr>("mcr"),
        field<&UartState::fcr>("fcr"),
        field<&UartState::scr>("scr"),
        field<&UartState::lsr_errors>("lsr_errors"),
        field<&UartState::msr_delta>("msr_delta"),
        field<&UartState::modem_inputs>("modem_inputs"),
        field<&UartState::msr_lines>("msr_lines"),
        field<&UartState::rx>("rx"),
        field<&UartState::rx_head>("rx_head"),
        field<&UartState::rx_count>("rx_count"),
        field<&UartState::thre_pending>("thre_pending"),
        field<&UartState::timeout_pending>("timeout_pending"),
    };
    return table;
}

Uart16550::Uart16550(Clock& clock, UartConfig config)
    : m_clock(clock), m_config(config), m_timeout(clock, [this] {
          if (fifo_enabled() && m_state.rx_count > 0) {
              m_state.timeout_pending = true;
              update_irq();
          }
      })
{
    mem::IoOps ops;
    ops.read = [this](uint64_t off, unsigned) { return read_register(off); };
    ops.write = [this](uint64_t off, uint64_t v, unsigned) { write_register(off, uint8_t(v)); };
    ops.min_access = ops.max_access = 1;
    auto r = mem::MemoryRegion::io("serial", 8, std::move(ops));
    assert(r.has_value());
    m_region = std::move(*r);
    reset();
}

Uart16550::~Uart16550()
{
    if (m_backend)
        m_backend->set_frontend(nullptr);
}

mem::Result<void> Uart16550::attach(mem::MemoryRegion& port_root, uint16_t base)
{
    return port_root.add_subregion(*m_region, base);
}

void Uart16550::set_backend(CharBackend* backend)
{
    if (m_backend)
        m_backend->set_frontend(nullptr);
    m_backend = backend;
    if (m_backend)
        m_backend->set_frontend(this);
}

void Uart16550::reset()
{
    // Master reset: everything but the divisor latch, RBR/THR and SCR.
    uint16_t divisor = m_state.divisor;
    uint8_t scr = m_state.scr, inputs = m_state.modem_inputs;
    bool was_break = m_state.lcr & kBreak;
    m_state = UartState{};
    m_state.divisor = divisor;
    m_state.scr = scr;
    m_state.modem_inputs = inputs;
    m_state.msr_lines = inputs;
    m_timeout.cancel();
    if (was_break && m_backend)
        m_backend->set_break(false);
    update_irq();
}

// ---- receive side ------------------------------------------------------

size_t Uart16550::rx_trigger() const
{
    static constexpr size_t levels[4] = {1, 4, 8, 14};
    return levels[m_state.fcr >> 6];
}

int64_t Uart16550::char_time_ns() const
{
    uint8_t lcr = m_state.lcr;
    int64_t bits = 1 + 5 + (lcr & 3) + ((lcr & 0x08) ? 1 : 0) + ((lcr & 0x04) ? 2 : 1);
    int64_t divisor = m_state.divisor ? m_state.divisor : 1;
    return bits * divisor * 16 * kNsPerSec / kInputClockHz;
}

void Uart16550::restart_timeout()
{
    if (fifo_enabled() && m_state.rx_count > 0)
        m_timeout.arm_in(4 * char_time_ns());
    else
        m_timeout.cancel();
}

void Uart16550::push_rx(uint8_t byte, uint8_t errors)
{
    auto& s = m_state;
    uint16_t entry = uint16_t(byte | errors << 8);
    if (s.rx_count >= rx_capacity()) {
        s.lsr_errors |= kOe;
        if (!fifo_enabled()) { // 16450: the new character overwrites RBR
            s.rx[s.rx_head] = entry;
            s.lsr_errors |= errors;
        }
        return; // FIFO: the character in the shift register is lost
    }
    s.rx[(s.rx_head + s.rx_count) % s.rx.size()] = entry;
    if (s.rx_count++ == 0)
        s.lsr_errors |= errors; // errors show when the byte reaches the top
}

void Uart16550::clear_rx()
{
    m_state.rx_head = 0;
    m_state.rx_count = 0;
    m_state.timeout_pending = false;
    m_timeout.cancel();
}

size_t Uart16550::can_receive()
{
    if (loopback())
        return 0; // the receiver listens to the transmitter only
    return rx_capacity() - std::min<size_t>(m_state.rx_count, rx_capacity());
}

void Uart16550::receive(std::span<const uint8_t> bytes)
{
    if (loopback())
        return;
    for (uint8_t b : bytes)
        push_rx(b, 0);
    m_state.timeout_pending = false;
    restart_timeout();
    update_irq();
}

void Uart16550::receive_break()
{
    if (loopback())
        return;
    push_rx(0, kBi | kFe);
    m_state.timeout_pending = false;
    restart_timeout();
    update_irq();
}

uint8_t Uart16550::read_rbr()
{
    auto& s = m_state;
    if (s.rx_count == 0)
        return uint8_t(s.rx[s.rx_head]); // the last byte, again
    uint8_t byte = uint8_t(s.rx[s.rx_head]);
    s.rx_head = uint8_t((s.rx_head + 1) % s.rx.size());
    s.rx_count--;
    if (s.rx_count > 0)
        s.lsr_errors |= uint8_t(s.rx[s.rx_head] >> 8);
    if (!fifo_enabled())
        s.rx_head = 0;
    s.timeout_pending = false;
    restart_timeout();
    update_irq();
    if (m_backend && can_receive() > 0)
        m_backend->accept_input(); // last: the backend may push at once
    return byte;
}

// ---- registers -------------------------------------------------------------

uint8_t Uart16550::interrupt_id() const
{
    const auto& s = m_state;
    if ((s.ier & kElsi) && (s.lsr_errors & kLineErrors))
        return kIirLineStatus;
    if (s.ier & kErbfi) {
        size_t level = fifo_enabled() ? rx_trigger() : 1;
        if (s.rx_count >= level)
            return kIirRxData;
        if (s.timeout_pending)
            return kIirTimeout;
    }
    if ((s.ier & kEtbei) && s.thre_pending)
        return kIirThre;
    if ((s.ier & kEdssi) && (s.msr_delta & 0x0f))
        return kIirModem;
    return kIirNone;
}

void Uart16550::update_irq()
{
    bool active = interrupt_id() != kIirNone;
    if (m_config.out2_gates_irq && !(m_state.mcr & kOut2))
        active = false;
    m_irq.set(active);
}

uint8_t Uart16550::read_iir()
{
    uint8_t id = interrupt_id();
    if (id == kIirThre) {
        m_state.thre_pending = false; // reading IIR acknowledges THRE
        update_irq();
    }
    return uint8_t(id | (fifo_enabled() ? 0xc0 : 0));
}

uint8_t Uart16550::read_lsr()
{
    auto& s = m_state;
    uint8_t value = uint8_t(s.lsr_errors | kThre | kTemt | (s.rx_count ? kDr : 0));
    if (fifo_enabled()) {
        for (size_t i = 0; i < s.rx_count; ++i)
            if (s.rx[(s.rx_head + i) % s.rx.size()] >> 8)
                value |= kRxFifoError;
    }
    s.lsr_errors = 0;
    update_irq();
    return value;
}

uint8_t Uart16550::read_msr()
{
    uint8_t value = uint8_t(m_state.msr_lines | m_state.msr_delta);
    m_state.msr_delta = 0;
    update_irq();
    return value;
}

void Uart16550::update_msr_lines()
{
    auto& s = m_state;
    uint8_t lines = s.modem_inputs;
    if (loopback()) {
        lines = uint8_t(((s.mcr & kRts) ? kCts : 0) | ((s.mcr & kDtr) ? kDsr : 0) | ((s.mcr & kOut1) ? kRi : 0) |
                        ((s.mcr & kOut2) ? kDcd : 0));
    }
    uint8_t changed = lines ^ s.msr_lines;
    if (changed & kCts)
        s.msr_delta |= 0x01;
    if (changed & kDsr)
        s.msr_delta |= 0x02;
    if ((changed & kRi) && !(lines & kRi))
        s.msr_delta |= 0x04; // trailing edge of RI
    if (changed & kDcd)
        s.msr_delta |= 0x08;
    s.msr_lines = lines;
}

void Uart16550::set_modem_inputs(bool cts, bool dsr, bool ri, bool dcd)
{
    m_state.modem_inputs = uint8_t((cts ? kCts : 0) | (dsr ? kDsr : 0) | (ri ? kRi : 0) | (dcd ? kDcd : 0));
    update_msr_lines();
    update_irq();
}

void Uart16550::write_thr(uint8_t value)
{
    if (loopback()) {
        push_rx(value, 0);
        m_state.timeout_pending = false;
        restart_timeout();
    } else if (m_backend) {
        m_backend->write(std::span<const uint8_t>(&value, 1));
    }
    // Sent at once: the holding register is empty again.
    m_state.thre_pending = true;
    update_irq();
}

void Uart16550::write_fcr(uint8_t value)
{
    bool enable = value & 1;
    if (enable != fifo_enabled())
        clear_rx(); // changing the FIFO mode empties both FIFOs
    if (!enable) {
        m_state.fcr = 0;
    } else {
        if (value & 0x02)
            clear_rx();
        m_state.fcr = uint8_t(value & 0xc1); // bits 1-2 self-clear; DMA mode ignored
    }
    update_irq();
}

void Uart16550::write_lcr(uint8_t value)
{
    bool was_break = m_state.lcr & kBreak;
    bool is_break = value & kBreak;
    m_state.lcr = value;
    if (was_break != is_break) {
        if (loopback()) {
            if (is_break) {
                push_rx(0, kBi | kFe);
                restart_timeout();
            }
        } else if (m_backend) {
            m_backend->set_break(is_break);
        }
    }
    update_irq();
}

void Uart16550::write_mcr(uint8_t value)
{
    bool was_loop = loopback();
    m_state.mcr = value & 0x1f;
    if (was_loop != loopback() && (m_state.lcr & kBreak) && m_backend)
        m_backend->set_break(!loopback()); // the line is disconnected in loopback
    update_msr_lines();
    update_irq();
    if (was_loop && !loopback() && m_backend && can_receive() > 0)
        m_backend->accept_input();
}

uint64_t Uart16550::read_register(uint64_t offset)
{
    auto& s = m_state;
    bool dlab = s.lcr & kDlab;
    switch (offset) {
    case kRbr:
        return dlab ? uint8_t(s.divisor) : read_rbr();
    case kIer:
        return dlab ? uint8_t(s.divisor >> 8) : s.ier;
    case kIir:
        return read_iir();
    case kLcr:
        return s.lcr;
    case kMcr:
        return s.mcr;
    case kLsr:
        return read_lsr();
    case kMsr:
        return read_msr();
    default:
        return s.scr;
    }
}

void Uart16550::write_register(uint64_t offset, uint8_t value)
{
    auto& s = m_state;
    bool dlab = s.lcr & kDlab;
    switch (offset) {
    case kRbr:
        if (dlab)
            s.divisor = uint16_t((s.divisor & 0xff00) | value);
        else
            write_thr(value);
        break;
    case kIer:
        if (dlab) {
            s.divisor = uint16_t((s.divisor & 0x00ff) | value << 8);
        } else {
            // Enabling ETBEI while the holding register is empty interrupts.
            if ((value & kEtbei) && !(s.ier & kEtbei))
                s.thre_pending = true;
            s.ier = value & 0x0f;
            update_irq();
        }
        break;
    case kIir:
        write_fcr(value);
        break;
    case kLcr:
        write_lcr(value);
        break;
    case kMcr:
        write_mcr(value);
        break;
    case kLsr:
    case kMsr:
        break; // read-only (factory test writes ignored)
    default:
        s.scr = value;
        break;
    }
}

std::string Uart16550::dump() const
{
    return dump_state(UartState::fields(), &m_state);
}

} // namespace emu::devices
