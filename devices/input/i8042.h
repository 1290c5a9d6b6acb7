// devices/input/i8042.h — the PC keyboard controller (ports 0x60 and 0x64)
// with a PS/2 keyboard on its first port and a PS/2 mouse on its second.
//
// Controller: status register, command byte (interrupt enables, port
// disables, translation), the commands Linux and SeaBIOS use (read/write
// command byte 0x20/0x60, self test 0xaa, port tests 0xab/0xa9, port
// enable/disable 0xad/0xae/0xa7/0xa8, output port 0xd0/0xd1 (A20), write to
// the mouse 0xd4, echo to the output buffer 0xd2/0xd3, pulse reset 0xfe).
// Keyboard: reset 0xff (0xaa), identify 0xf2, scan code set 0xf0, LEDs 0xed,
// typematic 0xf3, enable/disable 0xf4/0xf5, defaults 0xf6, echo 0xee.
// Mouse: reset, identify (0x00, or 0x03 after the IntelliMouse knock),
// sample rate, resolution, scaling, stream/remote modes, enable/disable,
// status request, and movement packets. IRQ1 and IRQ12 through IrqLines.
// Host input (the display issue's VNC) arrives through key(), with the key's
// bytes in scan code set 1 and set 2 (the guest gets set 1 when the
// controller translates, else the keyboard's own set), and mouse_event().
#pragma once

#include "devices/state.h"
#include "engine/irq.h"
#include "engine/memory/region.h"

#include <cstdint>
#include <deque>
#include <functional>
#include <span>
#include <string>

namespace emu::devices {

class I8042 {
public:
    // 'reset' pulses the CPU reset line; 'a20' follows output port bit 1.
    I8042(std::function<void()> reset, std::function<void(bool)> a20);
    mem::Result<void> attach(mem::MemoryRegion& port_root); // 0x60 and 0x64

    IrqLine& irq1() { return m_irq1; }
    IrqLine& irq12() { return m_irq12; }

    // Host input: one key event as set-1 and set-2 byte sequences (e.g. 'a'
    // pressed: {0x1e} and {0x1c}; released: {0x9e} and {0xf0, 0x1c}).
    void key(std::span<const uint8_t> set1, std::span<const uint8_t> set2);
    void mouse_event(int dx, int dy, int dz, unsigned buttons);

    void reset();
    std::string dump() const;

private:
    uint64_t read_port(uint64_t port);
    void write_port(uint64_t port, uint8_t value);
    void controller_command(uint8_t cmd);
    void keyboard_byte(uint8_t b);
    void mouse_byte(uint8_t b);
    void queue_kbd(uint8_t b);
    void queue_aux(uint8_t b);
    void queue_controller(uint8_t b);
    void update();

    struct Queued {
        uint8_t value;
        enum Source : uint8_t { Controller, Keyboard, Mouse } source;
    };

    std::function<void()> m_reset;
    std::function<void(bool)> m_a20;
    IrqLine m_irq1, m_irq12;
    mem::MemoryRegion::Ptr m_data, m_command;

    // Controller.
    uint8_t m_command_byte = 0x45; // IRQ1 on, system flag, translation on
    uint8_t m_output_port = 0x03;  // A20 on, reset line released (active low)
    uint8_t m_pending_command = 0;  // a command waiting for its data byte
    bool m_last_was_command = false;
    bool m_out_full = false;
    Queued m_out{0, Queued::Controller};
    std::deque<Queued> m_queue; // bytes waiting behind the output buffer

    // Keyboard.
    uint8_t m_kbd_pending = 0; // a keyboard command waiting for its argument
    bool m_kbd_enabled = true;
    uint8_t m_scan_set = 2;
    bool m_release_prefix = false;

    // Mouse.
    uint8_t m_aux_pending = 0;
    bool m_aux_enabled = false;
    bool m_aux_remote = false;
    uint8_t m_aux_rate = 100, m_aux_resolution = 2, m_aux_scaling = 1;
    uint8_t m_aux_id = 0;
    uint8_t m_knock[3] = {}; // the last sample rates (IntelliMouse knock 200, 100, 80)
    unsigned m_aux_buttons = 0;
};

} // namespace emu::devices
