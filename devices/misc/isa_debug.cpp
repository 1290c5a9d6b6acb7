#include "devices/misc/isa_debug.h"

#include <fmt/format.h>

namespace emu::devices {

namespace {

mem::MemoryRegion::Ptr make_io(const std::string& name, uint64_t size, mem::IoOps ops)
{
    auto r = mem::MemoryRegion::io(name, size, std::move(ops));
    return r ? std::move(*r) : nullptr;
}

} // namespace

IsaDebugExit::IsaDebugExit(uint16_t iobase, uint16_t iosize, std::function<void(int)> exit)
    : m_base(iobase), m_exit(std::move(exit))
{
    mem::IoOps ops;
    ops.read = [](uint64_t, unsigned) -> uint64_t { return ~0ull; };
    ops.write = [this](uint64_t, uint64_t value, unsigned size) {
        uint64_t v = size >= 8 ? value : value & ((1ull << (8 * size)) - 1);
        m_exit(int((v << 1) | 1));
    };
    ops.min_access = 1;
    ops.max_access = 4;
    m_region = make_io("isa-debug-exit", iosize ? iosize : 1, std::move(ops));
}

mem::Result<void> IsaDebugExit::attach(mem::MemoryRegion& port_root)
{
    return port_root.add_subregion(*m_region, m_base);
}

IsaDebugcon::IsaDebugcon(uint16_t iobase, uint8_t readback, std::function<void(uint8_t)> output)
    : m_base(iobase), m_readback(readback), m_output(std::move(output))
{
    mem::IoOps ops;
    ops.read = [this](uint64_t, unsigned) -> uint64_t { return m_readback; };
    ops.write = [this](uint64_t, uint64_t value, unsigned) { m_output(uint8_t(value)); };
    ops.min_access = 1;
    ops.max_access = 1;
    m_region = make_io("isa-debugcon", 1, std::move(ops));
}

mem::Result<void> IsaDebugcon::attach(mem::MemoryRegion& port_root)
{
    return port_root.add_subregion(*m_region, m_base);
}

Port92::Port92(std::function<void(bool)> set_a20, std::function<void()> reset)
    : m_set_a20(std::move(set_a20)), m_reset(std::move(reset))
{
    mem::IoOps ops;
    ops.read = [this](uint64_t, unsigned) -> uint64_t { return m_value; };
    ops.write = [this](uint64_t, uint64_t value, unsigned) {
        uint8_t old = m_value;
        m_value = uint8_t(value) & 0x02; // bit 0 does not stay set
        if ((old ^ m_value) & 2)
            m_set_a20(m_value & 2);
        if (value & 1)
            m_reset();
    };
    ops.min_access = 1;
    ops.max_access = 1;
    m_region = make_io("port92", 1, std::move(ops));
}

mem::Result<void> Port92::attach(mem::MemoryRegion& port_root) { return port_root.add_subregion(*m_region, 0x92); }

} // namespace emu::devices
