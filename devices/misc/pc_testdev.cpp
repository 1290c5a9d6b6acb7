#include "devices/misc/pc_testdev.h"

#include <cstring>

namespace emu::devices {

std::span<const FieldDesc> PcTestdevState::fields()
{
    static const FieldDesc table[] = {
        field<&PcTestdevState::data>("data"),
        field<&PcTestdevState::iomem>("iomem"),
    };
    return table;
}

namespace {

mem::MemoryRegion::Ptr make_io(const char* name, uint64_t size, mem::IoOps ops)
{
    auto r = mem::MemoryRegion::io(name, size, std::move(ops));
    return r ? std::move(*r) : nullptr;
}

} // namespace

uint64_t PcTestdev::data_read(uint64_t offset, unsigned size) const
{
    unsigned shift = unsigned(offset & 3) * 8;
    uint64_t mask = size >= 4 ? 0xffffffffull : (1ull << (8 * size)) - 1;
    return (m_state.data >> shift) & mask;
}

void PcTestdev::data_write(uint64_t offset, uint64_t value, unsigned size)
{
    unsigned shift = unsigned(offset & 3) * 8;
    uint64_t mask = (size >= 4 ? 0xffffffffull : (1ull << (8 * size)) - 1) << shift;
    m_state.data = uint32_t((m_state.data & ~mask) | ((value << shift) & mask));
}

PcTestdev::PcTestdev(Hooks hooks) : m_hooks(std::move(hooks))
{
    mem::IoOps data;
    data.read = [this](uint64_t offset, unsigned size) { return data_read(offset, size); };
    data.write = [this](uint64_t offset, uint64_t value, unsigned size) { data_write(offset, value, size); };
    data.min_access = 1;
    data.max_access = 4;
    m_data = make_io("pc-testdev-ioport", 4, data);
    data.max_access = 1; // the bus splits wider accesses into bytes
    m_data_bytes = make_io("pc-testdev-ioport-byte", 4, data);

    mem::IoOps flush;
    flush.read = [](uint64_t, unsigned) -> uint64_t { return ~0ull; };
    flush.write = [this](uint64_t, uint64_t value, unsigned) {
        if (m_hooks.flush_page)
            m_hooks.flush_page(value & ~0xfffull);
    };
    flush.min_access = 4;
    flush.max_access = 4;
    m_flush = make_io("pc-testdev-flush-page", 4, flush);

    mem::IoOps irq;
    irq.read = [](uint64_t, unsigned) -> uint64_t { return ~0ull; };
    irq.write = [this](uint64_t offset, uint64_t value, unsigned) {
        if (m_hooks.set_irq && offset < kIrqLines)
            m_hooks.set_irq(int(offset), (value & 0xff) != 0);
    };
    irq.min_access = 1;
    irq.max_access = 1;
    m_irq = make_io("pc-testdev-irq-line", kIrqLines, irq);

    mem::IoOps iomem;
    iomem.read = [this](uint64_t offset, unsigned size) -> uint64_t {
        uint64_t v = 0;
        std::memcpy(&v, m_state.iomem.data() + offset, size);
        return v;
    };
    iomem.write = [this](uint64_t offset, uint64_t value, unsigned size) {
        std::memcpy(m_state.iomem.data() + offset, &value, size);
    };
    iomem.min_access = 1;
    iomem.max_access = 8;
    m_iomem = make_io("pc-testdev-iomem", m_state.iomem.size(), iomem);
}

mem::Result<void> PcTestdev::attach(mem::MemoryRegion& port_root, mem::MemoryRegion& memory)
{
    for (auto [region, port] : {std::pair{m_data.get(), 0xe0}, std::pair{m_flush.get(), 0xe4},
                                std::pair{m_irq.get(), 0x2000}})
        if (auto ok = port_root.add_subregion(*region, uint64_t(port)); !ok)
            return ok;
    // Below other devices: isa-debugcon's 0xe9 sits inside the window.
    if (auto ok = port_root.add_subregion(*m_data_bytes, 0xe8, -1); !ok)
        return ok;
    return memory.add_subregion(*m_iomem, kIomemBase, -1);
}

} // namespace emu::devices
