// devices/misc/isa_debug.h — small ISA devices guests and test suites use:
// isa-debug-exit (a write ends the VM with status (value << 1) | 1, as QEMU),
// isa-debugcon (the 0xe9 debug console), and port 0x92 (fast A20 gate and
// fast reset, "system control port A").
#pragma once

#include "engine/memory/region.h"

#include <cstdint>
#include <functional>

namespace emu::devices {

// -device isa-debug-exit,iobase=…,iosize=…
class IsaDebugExit {
public:
    // 'exit' receives the VM's exit status: (value << 1) | 1.
    IsaDebugExit(uint16_t iobase, uint16_t iosize, std::function<void(int status)> exit);
    mem::Result<void> attach(mem::MemoryRegion& port_root);

private:
    uint16_t m_base;
    std::function<void(int)> m_exit;
    mem::MemoryRegion::Ptr m_region;
};

// -device isa-debugcon,iobase=…,readback=… / -debugcon
class IsaDebugcon {
public:
    IsaDebugcon(uint16_t iobase, uint8_t readback, std::function<void(uint8_t)> output);
    mem::Result<void> attach(mem::MemoryRegion& port_root);

private:
    uint16_t m_base;
    uint8_t m_readback;
    std::function<void(uint8_t)> m_output;
    mem::MemoryRegion::Ptr m_region;
};

// Port 0x92: bit 1 the A20 gate, bit 0 a fast reset on a 0 -> 1 write.
class Port92 {
public:
    Port92(std::function<void(bool enabled)> set_a20, std::function<void()> reset);
    mem::Result<void> attach(mem::MemoryRegion& port_root);
    bool a20() const { return m_value & 2; }
    void reset_state() { m_value = 0; }

private:
    uint8_t m_value = 0;
    std::function<void(bool)> m_set_a20;
    std::function<void()> m_reset;
    mem::MemoryRegion::Ptr m_region;
};

} // namespace emu::devices
