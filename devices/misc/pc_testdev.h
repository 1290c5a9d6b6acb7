// devices/misc/pc_testdev.h — -device pc-testdev, the ISA test device that
// kvm-unit-tests and similar bare-metal suites script against:
//   ports 0xe0-0xe3  a 32-bit register, readable and writable at any width
//                    and byte offset;
//   port  0xe4       a dword write names a guest page whose translations are
//                    dropped (the guest's "flush this page");
//   ports 0xe8-0xeb  the same register as 0xe0, accessed byte by byte (under
//                    other devices: isa-debugcon at 0xe9 shadows its byte 1);
//   ports 0x2000-0x2017  a byte write sets ISA/IOAPIC line N (0-23) to !!value;
//   memory 0xff000000    64 KiB of scratch memory-mapped I/O.
// The register and the scratch area are device state (reset clears them).
#pragma once

#include "devices/state.h"
#include "engine/memory/region.h"

#include <array>
#include <cstdint>
#include <functional>

namespace emu::devices {

struct PcTestdevState {
    uint32_t data = 0;
    std::array<uint8_t, 0x10000> iomem{};
    static std::span<const FieldDesc> fields();
};

class PcTestdev {
public:
    static constexpr uint64_t kIomemBase = 0xff000000;
    static constexpr int kIrqLines = 24;

    struct Hooks {
        std::function<void(int line, bool level)> set_irq; // line 0-23
        std::function<void(uint64_t page)> flush_page;
    };
    explicit PcTestdev(Hooks hooks);
    // Maps the ports into `port_root` and the scratch area into `memory`.
    mem::Result<void> attach(mem::MemoryRegion& port_root, mem::MemoryRegion& memory);
    void reset() { m_state = {}; }
    const PcTestdevState& state() const { return m_state; }

private:
    uint64_t data_read(uint64_t offset, unsigned size) const;
    void data_write(uint64_t offset, uint64_t value, unsigned size);

    Hooks m_hooks;
    PcTestdevState m_state;
    mem::MemoryRegion::Ptr m_data, m_flush, m_data_bytes, m_irq, m_iomem;
};

} // namespace emu::devices
