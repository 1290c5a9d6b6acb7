// devices/serial/uart16550.h — a 16550A UART (the PC's COM1-COM4), eight
// registers at a base port, output and input through a CharBackend, its
// interrupt on an IrqLine.
//
// Supported: RBR/THR/IER/IIR/FCR/LCR/MCR/LSR/MSR/SCR and the divisor latch
// (DLAB); 16-byte receive FIFO with trigger levels 1/4/8/14 and per-byte
// error flags (LSR bit 7), 16450 mode when FIFOs are off (one holding byte,
// overrun overwrites); interrupt priorities line status > received data /
// character timeout (4 character times at the programmed baud rate and frame,
// on the Clock) > THR empty (also on enabling ETBEI while empty; cleared by
// reading IIR or writing THR) > modem status; loopback (TX to RX, MCR outputs
// to MSR inputs: RTS->CTS, DTR->DSR, OUT1->RI, OUT2->DCD) with external input
// refused; modem input lines with delta bits and trailing-edge RI; break in
// (a zero byte with BI|FE) and out (LCR bit 6 forwarded to the backend, or
// received as a break in loopback).
// Simplifications: transmission is instant (THRE/TEMT are set again at once:
// no baud-rate pacing of output, no TX FIFO to observe); parity and frame
// errors only arrive from backends, which have none; DMA mode bits are
// ignored; no 16750 64-byte FIFO or autoflow (IIR bit 5 reads 0, as Linux's
// 16550A probe expects).
// Interrupt gating: on a real PC, MCR OUT2 enables the IRQ driver. QEMU does
// not gate, and guests written against it may leave OUT2 clear, so gating is
// a property (`out2_gates_irq`), off by default.
#pragma once

#include "devices/chardev.h"
#include "devices/state.h"
#include "engine/clock.h"
#include "engine/irq.h"
#include "engine/memory/region.h"

#include <array>
#include <cstdint>
#include <span>
#include <string>

namespace emu::devices {

struct UartConfig {
    bool out2_gates_irq = false;
};

struct UartState {
    uint16_t divisor = 12; // 9600 baud
    uint8_t ier = 0;
    uint8_t lcr = 0;
    uint8_t mcr = 0;
    uint8_t fcr = 0; // bit 0 enable, bits 6-7 trigger
    uint8_t scr = 0;
    uint8_t lsr_errors = 0;    // OE, PE, FE, BI: cleared by reading LSR
    uint8_t msr_delta = 0;     // MSR bits 0-3: cleared by reading MSR
    uint8_t modem_inputs = 0xb0; // DCD, RI, DSR, CTS as in MSR bits 4-7 (external)
    uint8_t msr_lines = 0xb0;  // the lines MSR shows (inputs, or MCR in loopback)
    std::array<uint16_t, 16> rx{}; // byte | LSR error bits << 8
    uint8_t rx_head = 0;
    uint8_t rx_count = 0;
    bool thre_pending = false;
    bool timeout_pending = false;
    static std::span<const FieldDesc> fields();
};

class Uart16550 final : public CharFrontend {
public:
    static constexpr uint16_t kComPorts[4] = {0x3f8, 0x2f8, 0x3e8, 0x2e8};
    static constexpr int kComIrqs[4] = {4, 3, 4, 3};
    static constexpr int64_t kInputClockHz = 1843200;

    explicit Uart16550(Clock& clock, UartConfig config = {});
    ~Uart16550() override;

    mem::MemoryRegion& region() { return *m_region; }
    mem::Result<void> attach(mem::MemoryRegion& port_root, uint16_t base);

    IrqLine& irq() { return m_irq; }
    // Attaches a backend (nullptr detaches); the UART becomes its frontend.
    void set_backend(CharBackend* backend);
    // External modem inputs (CTS, DSR, RI, DCD): a backend that knows them.
    void set_modem_inputs(bool cts, bool dsr, bool ri, bool dcd);

    // CharFrontend
    size_t can_receive() override;
    void receive(std::span<const uint8_t> bytes) override;
    void receive_break() override;

    void reset();
    const UartState& state() const { return m_state; }
    std::string dump() const;

private:
    uint64_t read_register(uint64_t offset);
    void write_register(uint64_t offset, uint8_t value);
    uint8_t read_rbr();
    uint8_t read_iir();
    uint8_t read_lsr();
    uint8_t read_msr();
    void write_thr(uint8_t value);
    void write_fcr(uint8_t value);
    void write_lcr(uint8_t value);
    void write_mcr(uint8_t value);

    bool fifo_enabled() const { return m_state.fcr & 1; }
    bool loopback() const { return m_state.mcr & 0x10; }
    size_t rx_capacity() const { return fifo_enabled() ? m_state.rx.size() : 1; }
    size_t rx_trigger() const;
    void push_rx(uint8_t byte, uint8_t errors);
    void clear_rx();
    uint8_t interrupt_id() const;
    void update_irq();
    void update_msr_lines();
    int64_t char_time_ns() const;
    void restart_timeout();

    Clock& m_clock;
    UartConfig m_config;
    UartState m_state;
    IrqLine m_irq;
    Timer m_timeout;
    CharBackend* m_backend = nullptr;
    mem::MemoryRegion::Ptr m_region;
};

} // namespace emu::devices
