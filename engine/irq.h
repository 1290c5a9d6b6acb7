// engine/irq.h — an interrupt line between a device and an interrupt
// controller, wired by the machine.
//
// A device owns its output lines and drives them; the machine connects each
// to a sink (the PIC's input, an IOAPIC pin, a mux), so devices never find
// each other. The line is level-triggered: it has a level and tells the sink
// only when the level changes. An unconnected line keeps its level and goes
// nowhere. Edge-triggered inputs (the ISA PIC) see a rising edge on raise().
//
// Threads: a line is driven under the VM's device lock (devices run there),
// and its sink runs synchronously on the driving thread.
#pragma once

#include <functional>
#include <utility>

namespace emu {

class IrqLine {
public:
    using Sink = std::function<void(bool level)>;

    IrqLine() = default;
    explicit IrqLine(Sink sink) : m_sink(std::move(sink)) {}
    IrqLine(const IrqLine&) = delete;
    IrqLine& operator=(const IrqLine&) = delete;

    // The machine wires the line. The sink is told the current level if it
    // is high, so a late connection does not lose an asserted interrupt.
    void connect(Sink sink)
    {
        m_sink = std::move(sink);
        if (m_level && m_sink)
            m_sink(true);
    }
    void disconnect() { m_sink = nullptr; }
    bool connected() const { return static_cast<bool>(m_sink); }

    void set(bool level)
    {
        if (level == m_level)
            return;
        m_level = level;
        if (m_sink)
            m_sink(level);
    }
    void raise() { set(true); }
    void lower() { set(false); }
    // A rising then a falling edge (an edge-triggered interrupt). If the line
    // is already high it is first lowered, so the sink always sees an edge.
    void pulse()
    {
        set(false);
        set(true);
        set(false);
    }
    bool level() const { return m_level; }

private:
    Sink m_sink;
    bool m_level = false;
};

} // namespace emu
