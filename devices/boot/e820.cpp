// devices/boot/e820.cpp — the E820 map builder.
#include "devices/boot/e820.h"

#include <fmt/format.h>

#include <algorithm>

namespace emu::devices::boot {

const char* e820_type_name(E820Type type)
{
    switch (type) {
    case E820Type::Ram: return "ram";
    case E820Type::Reserved: return "reserved";
    case E820Type::Acpi: return "acpi";
    case E820Type::Nvs: return "nvs";
    case E820Type::Unusable: return "unusable";
    case E820Type::Pmem: return "pmem";
    }
    return "unknown";
}

uint64_t E820Map::default_pci_hole_start(uint64_t ram_size)
{
    return ram_size <= 0xe0000000ull ? 0xe0000000ull : 0xc0000000ull;
}

Result<E820Map> E820Map::pc(uint64_t ram_size, uint64_t pci_hole_start)
{
    if (ram_size < kMinRam)
        return fail(fmt::format("e820: {} bytes of RAM is less than the {} MiB a direct kernel boot needs",
                                ram_size, kMinRam >> 20));
    if (pci_hole_start < (16ull << 20) || pci_hole_start > k4GiB || pci_hole_start % (1ull << 20))
        return fail(fmt::format("e820: PCI hole start {:#x} is not a 1 MiB boundary in 16 MiB..4 GiB",
                                pci_hole_start));
    if (ram_size > (1ull << 52))
        return fail(fmt::format("e820: {} bytes of RAM exceeds the 52-bit physical address space", ram_size));
    E820Map map;
    map.m_entries.push_back({0, kLowRamEnd, E820Type::Ram});
    uint64_t below = std::min(ram_size, pci_hole_start);
    if (below > kHighRamStart)
        map.m_entries.push_back({kHighRamStart, below - kHighRamStart, E820Type::Ram});
    if (ram_size > below)
        map.m_entries.push_back({k4GiB, ram_size - below, E820Type::Ram});
    return map;
}

Result<void> E820Map::add(uint64_t addr, uint64_t size, E820Type type)
{
    if (size == 0 || addr + size < addr)
        return fail(fmt::format("e820: range {:#x}+{:#x} ({}) is empty or wraps", addr, size, e820_type_name(type)));
    uint64_t end = addr + size;
    for (const E820Entry& e : m_entries) {
        if (e.addr >= end || e.end() <= addr)
            continue;
        bool conflict = type == E820Type::Ram || (e.type != E820Type::Ram && e.type != type);
        if (conflict)
            return fail(fmt::format("e820: {:#x}-{:#x} ({}) overlaps {:#x}-{:#x} ({})", addr, end - 1,
                                    e820_type_name(type), e.addr, e.end() - 1, e820_type_name(e.type)));
    }
    // Carve the new range out of whatever RAM lies under it.
    std::vector<E820Entry> out;
    for (const E820Entry& e : m_entries) {
        if (e.addr >= end || e.end() <= addr || e.type != E820Type::Ram) {
            out.push_back(e);
            continue;
        }
        if (e.addr < addr)
            out.push_back({e.addr, addr - e.addr, e.type});
        if (e.end() > end)
            out.push_back({end, e.end() - end, e.type});
    }
    out.push_back({addr, size, type});
    m_entries = std::move(out);
    normalize();
    return {};
}

void E820Map::normalize()
{
    std::sort(m_entries.begin(), m_entries.end(),
              [](const E820Entry& a, const E820Entry& b) { return a.addr < b.addr; });
    std::vector<E820Entry> merged;
    for (const E820Entry& e : m_entries) {
        if (!merged.empty() && merged.back().type == e.type && merged.back().end() >= e.addr) {
            merged.back().size = std::max(merged.back().end(), e.end()) - merged.back().addr;
            continue;
        }
        merged.push_back(e);
    }
    m_entries = std::move(merged);
}

bool E820Map::is_ram(uint64_t addr, uint64_t size) const
{
    if (size == 0 || addr + size < addr)
        return false;
    // Entries are merged, so a RAM range lies within a single entry.
    for (const E820Entry& e : m_entries)
        if (e.type == E820Type::Ram && e.addr <= addr && addr + size <= e.end())
            return true;
    return false;
}

uint64_t E820Map::high_ram_end() const
{
    for (const E820Entry& e : m_entries)
        if (e.type == E820Type::Ram && e.addr <= kHighRamStart && e.end() > kHighRamStart)
            return e.end();
    return kHighRamStart;
}

uint64_t E820Map::low_ram_size() const
{
    for (const E820Entry& e : m_entries)
        if (e.type == E820Type::Ram && e.addr == 0)
            return e.size;
    return 0;
}

uint64_t E820Map::ram_size() const
{
    uint64_t total = 0;
    for (const E820Entry& e : m_entries)
        if (e.type == E820Type::Ram)
            total += e.size;
    return total;
}

} // namespace emu::devices::boot
