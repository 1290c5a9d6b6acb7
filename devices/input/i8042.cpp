#include "devices/input/i8042.h"

#include <algorithm>
#include <fmt/format.h>

namespace emu::devices {

namespace {

constexpr uint8_t ACK = 0xfa, RESEND = 0xfe;
// Status register bits.
constexpr uint8_t ST_OBF = 0x01, ST_SYS = 0x04, ST_CMD = 0x08, ST_UNLOCKED = 0x10, ST_AUX = 0x20;
// Command byte bits.
constexpr uint8_t CB_IRQ1 = 0x01, CB_IRQ12 = 0x02, CB_SYS = 0x04, CB_KBD_OFF = 0x10, CB_AUX_OFF = 0x20,
                  CB_XLATE = 0x40;
// A bounded queue: a guest that never reads cannot make us grow.
constexpr size_t k_max_queue = 256;

} // namespace

I8042::I8042(std::function<void()> reset, std::function<void(bool)> a20)
    : m_reset(std::move(reset)), m_a20(std::move(a20))
{
    mem::IoOps data;
    data.read = [this](uint64_t, unsigned) -> uint64_t { return read_port(0x60); };
    data.write = [this](uint64_t, uint64_t v, unsigned) { write_port(0x60, uint8_t(v)); };
    data.min_access = data.max_access = 1;
    mem::IoOps cmd;
    cmd.read = [this](uint64_t, unsigned) -> uint64_t { return read_port(0x64); };
    cmd.write = [this](uint64_t, uint64_t v, unsigned) { write_port(0x64, uint8_t(v)); };
    cmd.min_access = cmd.max_access = 1;
    if (auto r = mem::MemoryRegion::io("i8042-data", 1, std::move(data)))
        m_data = std::move(*r);
    if (auto r = mem::MemoryRegion::io("i8042-cmd", 1, std::move(cmd)))
        m_command = std::move(*r);
}

mem::Result<void> I8042::attach(mem::MemoryRegion& port_root)
{
    if (auto ok = port_root.add_subregion(*m_data, 0x60); !ok)
        return ok;
    return port_root.add_subregion(*m_command, 0x64);
}

void I8042::reset()
{
    m_command_byte = CB_IRQ1 | CB_SYS | CB_XLATE;
    m_output_port = 0x03;
    m_pending_command = 0;
    m_out_full = false;
    m_queue.clear();
    m_kbd_pending = m_aux_pending = 0;
    m_kbd_enabled = true;
    m_scan_set = 2;
    m_aux_enabled = m_aux_remote = false;
    m_aux_rate = 100;
    m_aux_resolution = 2;
    m_aux_scaling = 1;
    m_aux_id = 0;
    update();
}

// --- output buffer and interrupts ------------------------------------------------

void I8042::update()
{
    if (!m_out_full && !m_queue.empty()) {
        // A disabled port holds its bytes back (the controller's own replies pass).
        auto it = std::find_if(m_queue.begin(), m_queue.end(), [&](const Queued& q) {
            return q.source == Queued::Controller ||
                   (q.source == Queued::Keyboard && !(m_command_byte & CB_KBD_OFF)) ||
                   (q.source == Queued::Mouse && !(m_command_byte & CB_AUX_OFF));
        });
        if (it != m_queue.end()) {
            m_out = *it;
            m_queue.erase(it);
            m_out_full = true;
        }
    }
    bool aux = m_out_full && m_out.source == Queued::Mouse;
    m_irq1.set(m_out_full && !aux && (m_command_byte & CB_IRQ1));
    m_irq12.set(aux && (m_command_byte & CB_IRQ12));
}

void I8042::queue_controller(uint8_t b)
{
    if (m_queue.size() < k_max_queue)
        m_queue.push_back({b, Queued::Controller});
    update();
}

void I8042::queue_kbd(uint8_t b)
{
    if (m_queue.size() < k_max_queue)
        m_queue.push_back({b, Queued::Keyboard});
    update();
}

void I8042::queue_aux(uint8_t b)
{
    if (m_queue.size() < k_max_queue)
        m_queue.push_back({b, Queued::Mouse});
    update();
}

uint64_t I8042::read_port(uint64_t port)
{
    if (port == 0x64) {
        uint8_t st = ST_UNLOCKED | (m_command_byte & CB_SYS ? ST_SYS : 0) | (m_last_was_command ? ST_CMD : 0);
        if (m_out_full)
            st |= ST_OBF | (m_out.source == Queued::Mouse ? ST_AUX : 0);
        return st;
    }
    uint8_t v = m_out.value; // reading an empty buffer returns the last byte again
    m_out_full = false;
    // Reading the buffer drops IRQ1/IRQ12; the next byte raises it again.
    // The lines are edge-triggered ISA interrupts and Linux takes one byte
    // per interrupt: without the drop, a queue of replies (ACK, then the ID
    // bytes) would hold the line high and only its first byte would ever
    // interrupt.
    m_irq1.set(false);
    m_irq12.set(false);
    update();
    return v;
}

void I8042::write_port(uint64_t port, uint8_t value)
{
    if (port == 0x64) {
        m_last_was_command = true;
        controller_command(value);
        return;
    }
    m_last_was_command = false;
    uint8_t pending = m_pending_command;
    m_pending_command = 0;
    switch (pending) {
    case 0x60: // write command byte
        m_command_byte = value;
        update();
        return;
    case 0xd1: // write output port
        if ((m_output_port ^ value) & 2)
            m_a20(value & 2);
        m_output_port = value;
        if (!(value & 1))
            m_reset();
        return;
    case 0xd2:
        queue_kbd(value);
        return;
    case 0xd3:
        queue_aux(value);
        return;
    case 0xd4:
        mouse_byte(value);
        return;
    default:
        // Data for the keyboard, which also wakes its port.
        m_command_byte &= ~CB_KBD_OFF;
        keyboard_byte(value);
        return;
    }
}

void I8042::controller_command(uint8_t cmd)
{
    switch (cmd) {
    case 0x20:
        queue_controller(m_command_byte);
        break;
    case 0x60:
    case 0xd1:
    case 0xd2:
    case 0xd3:
    case 0xd4:
        m_pending_command = cmd;
        break;
    case 0xa7:
        m_command_byte |= CB_AUX_OFF;
        update();
        break;
    case 0xa8:
        m_command_byte &= ~CB_AUX_OFF;
        update();
        break;
    case 0xa9: // test the mouse port: no error
    case 0xab: // test the keyboard port
        queue_controller(0x00);
        break;
    case 0xaa: // self test
        m_command_byte |= CB_KBD_OFF | CB_AUX_OFF;
        queue_controller(0x55);
        break;
    case 0xad:
        m_command_byte |= CB_KBD_OFF;
        update();
        break;
    case 0xae:
        m_command_byte &= ~CB_KBD_OFF;
        update();
        break;
    case 0xc0: // input port: keyboard not locked
        queue_controller(0x80);
        break;
    case 0xd0: { // output port, with the buffer flags in bits 4-5
        uint8_t v = (m_output_port & 0xcf) | (m_out_full && m_out.source != Queued::Mouse ? 0x10 : 0) |
                    (m_out_full && m_out.source == Queued::Mouse ? 0x20 : 0);
        queue_controller(v);
        break;
    }
    case 0xdd:
    case 0xdf: // A20 off/on (an older interface some BIOSes use)
        m_output_port = (m_output_port & ~2) | (cmd == 0xdf ? 2 : 0);
        m_a20(cmd == 0xdf);
        break;
    default:
        if (cmd >= 0xf0 && !(cmd & 1))
            m_reset(); // pulse output port bit 0: the CPU reset line
        break;
    }
}

void I8042::keyboard_byte(uint8_t b)
{
    if (m_kbd_pending) {
        uint8_t cmd = m_kbd_pending;
        m_kbd_pending = 0;
        if (cmd == 0xf0) {
            queue_kbd(ACK);
            if (b == 0)
                queue_kbd(m_scan_set);
            else if (b >= 1 && b <= 3)
                m_scan_set = b;
            return;
        }
        queue_kbd(ACK); // 0xed LEDs, 0xf3 typematic: accepted
        return;
    }
    switch (b) {
    case 0xed:
    case 0xf3:
    case 0xf0:
        m_kbd_pending = b;
        queue_kbd(ACK);
        break;
    case 0xee:
        queue_kbd(0xee);
        break;
    case 0xf2: // identify: MF2 keyboard (0x41 as the translating controller shows it)
        queue_kbd(ACK);
        queue_kbd(0xab);
        queue_kbd((m_command_byte & CB_XLATE) ? 0x41 : 0x83);
        break;
    case 0xf4:
        m_kbd_enabled = true;
        queue_kbd(ACK);
        break;
    case 0xf5:
        m_kbd_enabled = false;
        queue_kbd(ACK);
        break;
    case 0xf6:
        m_scan_set = 2;
        queue_kbd(ACK);
        break;
    case 0xff:
        m_scan_set = 2;
        m_kbd_enabled = true;
        queue_kbd(ACK);
        queue_kbd(0xaa);
        break;
    default:
        queue_kbd(RESEND);
        break;
    }
}

void I8042::mouse_byte(uint8_t b)
{
    if (m_aux_pending) {
        uint8_t cmd = m_aux_pending;
        m_aux_pending = 0;
        queue_aux(ACK);
        if (cmd == 0xf3) {
            m_aux_rate = b;
            m_knock[0] = m_knock[1];
            m_knock[1] = m_knock[2];
            m_knock[2] = b;
            if (m_knock[0] == 200 && m_knock[1] == 100 && m_knock[2] == 80)
                m_aux_id = 3; // IntelliMouse: a wheel
        } else if (cmd == 0xe8) {
            m_aux_resolution = b & 3;
        }
        return;
    }
    switch (b) {
    case 0xf3:
    case 0xe8:
        m_aux_pending = b;
        queue_aux(ACK);
        break;
    case 0xe6:
    case 0xe7:
        m_aux_scaling = b == 0xe7 ? 2 : 1;
        queue_aux(ACK);
        break;
    case 0xea:
        m_aux_remote = false;
        queue_aux(ACK);
        break;
    case 0xf0:
        m_aux_remote = true;
        queue_aux(ACK);
        break;
    case 0xe9: // status request
        queue_aux(ACK);
        queue_aux(uint8_t((m_aux_remote ? 0x40 : 0) | (m_aux_enabled ? 0x20 : 0) | (m_aux_scaling == 2 ? 0x10 : 0) |
                          (m_aux_buttons & 7)));
        queue_aux(m_aux_resolution);
        queue_aux(m_aux_rate);
        break;
    case 0xeb: // read data: an empty movement packet
        queue_aux(ACK);
        queue_aux(uint8_t(0x08 | (m_aux_buttons & 7)));
        queue_aux(0);
        queue_aux(0);
        if (m_aux_id == 3)
            queue_aux(0);
        break;
    case 0xf2:
        queue_aux(ACK);
        queue_aux(m_aux_id);
        break;
    case 0xf4:
        m_aux_enabled = true;
        queue_aux(ACK);
        break;
    case 0xf5:
        m_aux_enabled = false;
        queue_aux(ACK);
        break;
    case 0xf6:
        m_aux_rate = 100;
        m_aux_resolution = 2;
        m_aux_scaling = 1;
        queue_aux(ACK);
        break;
    case 0xff:
        m_aux_enabled = m_aux_remote = false;
        m_aux_rate = 100;
        m_aux_resolution = 2;
        m_aux_scaling = 1;
        m_aux_id = 0;
        queue_aux(ACK);
        queue_aux(0xaa);
        queue_aux(0x00);
        break;
    default:
        queue_aux(RESEND);
        break;
    }
}

void I8042::key(std::span<const uint8_t> set1, std::span<const uint8_t> set2)
{
    if (!m_kbd_enabled)
        return;
    for (uint8_t b : (m_command_byte & CB_XLATE) ? set1 : set2)
        queue_kbd(b);
}

void I8042::mouse_event(int dx, int dy, int dz, unsigned buttons)
{
    m_aux_buttons = buttons & 7;
    if (!m_aux_enabled || m_aux_remote)
        return;
    dx = std::clamp(dx, -256, 255);
    dy = std::clamp(-dy, -256, 255); // PS/2: up is positive
    uint8_t head = uint8_t(0x08 | (buttons & 7) | (dx < 0 ? 0x10 : 0) | (dy < 0 ? 0x20 : 0));
    queue_aux(head);
    queue_aux(uint8_t(dx));
    queue_aux(uint8_t(dy));
    if (m_aux_id == 3)
        queue_aux(uint8_t(std::clamp(dz, -8, 7)));
}

std::string I8042::dump() const
{
    return fmt::format("command_byte={:#04x} output_port={:#04x} out={} queued={} scan_set={} aux_enabled={} aux_id={}",
                       m_command_byte, m_output_port, m_out_full ? int(m_out.value) : -1, m_queue.size(), m_scan_set,
                       m_aux_enabled, m_aux_id);
}

} // namespace emu::devices
