// devices/boot/e820.h — the guest's physical memory map as firmware reports
// it (INT 15h E820, the Linux zero page, the multiboot mmap, PVH's memmap).
//
// E820Map::pc() lays out RAM as a PC does: [0, 0x9fc00) below 640 KiB (the
// last KiB is the EBDA), nothing in 0x9fc00-0x100000 (EBDA, VGA window, option
// ROMs, BIOS), then RAM from 1 MiB up to the start of the PCI hole, and the
// rest of RAM from 4 GiB. The machine then declares its reserved ranges
// (LAPIC, IOAPIC, HPET, BIOS, ACPI tables) with add(); a non-RAM range carves
// RAM it overlaps. Entries are kept sorted, disjoint and merged.
#pragma once

#include "devices/boot/error.h"

#include <cstdint>
#include <vector>

namespace emu::devices::boot {

enum class E820Type : uint32_t { Ram = 1, Reserved = 2, Acpi = 3, Nvs = 4, Unusable = 5, Pmem = 7 };
const char* e820_type_name(E820Type type);

struct E820Entry {
    uint64_t addr = 0, size = 0;
    E820Type type = E820Type::Ram;
    uint64_t end() const { return addr + size; }
    bool operator==(const E820Entry&) const = default;
};

class E820Map {
public:
    static constexpr uint64_t kLowRamEnd = 0x9fc00;     // 639 KiB
    static constexpr uint64_t kHighRamStart = 0x100000; // 1 MiB
    static constexpr uint64_t k4GiB = 1ull << 32;
    static constexpr uint64_t kMinRam = 2ull << 20;

    // The PCI hole start a PC machine uses for ram_size: 3.5 GiB when all RAM
    // fits below it, else 3 GiB (RAM past it moves above 4 GiB).
    static uint64_t default_pci_hole_start(uint64_t ram_size);

    // RAM of ram_size bytes laid out as described above. Refuses less than
    // 2 MiB of RAM and a PCI hole start that is not 1 MiB aligned within
    // [16 MiB, 4 GiB].
    static Result<E820Map> pc(uint64_t ram_size, uint64_t pci_hole_start);

    // Declares [addr, addr+size) as `type`. A non-RAM range takes the place
    // of any RAM under it; it may not overlap a non-RAM range of another
    // type. A RAM range may not overlap anything. Refuses empty or wrapping
    // ranges.
    Result<void> add(uint64_t addr, uint64_t size, E820Type type);

    const std::vector<E820Entry>& entries() const { return m_entries; }
    // Whether every byte of [addr, addr+size) is RAM (size 0: false).
    bool is_ram(uint64_t addr, uint64_t size) const;
    // End of the RAM run that starts at 1 MiB (where kernels go); 1 MiB if none.
    uint64_t high_ram_end() const;
    // Bytes of RAM in the run that starts at 0 (conventional memory).
    uint64_t low_ram_size() const;
    uint64_t ram_size() const;

private:
    void normalize();
    std::vector<E820Entry> m_entries;
};

} // namespace emu::devices::boot
