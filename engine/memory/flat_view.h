// engine/memory/flat_view.h — an address space flattened to sorted,
// non-overlapping ranges, each naming the effective RAM/ROM/I/O region and
// the offset into it. Built once per topology change, immutable afterwards
// and shared by readers (see AddressSpace for how it is published).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace emu::mem {

class MemoryRegion;
class RamBlock;

struct FlatRange {
    uint64_t start = 0;
    uint64_t end = 0;              // exclusive; ranges never include 2^64 - 1
    MemoryRegion* region = nullptr; // RAM, ROM or I/O (never alias/container)
    uint64_t offset = 0;           // offset into `region` at `start`
    uint8_t* host = nullptr;       // RAM/ROM: host address of `start`
    RamBlock* block = nullptr;     // RAM/ROM: region->ram_block() (ram offset == offset)
    bool readonly = false;         // ROM, or read-only RAM/alias on the path
};

// What a memory listener (the KVM accelerator's slots) sees of the view.
struct RamRange {
    uint64_t gpa = 0;
    uint64_t size = 0;
    uint8_t* host = nullptr; // host address of gpa
    bool readonly = false;
    RamBlock* block = nullptr;
    uint64_t ram_offset = 0; // offset of gpa into block
};

class FlatView {
public:
    // Renders the tree under `root` (addresses 0..root.size()-1).
    static std::shared_ptr<const FlatView> build(const MemoryRegion& root, uint64_t generation);

    uint64_t generation() const { return m_generation; }
    std::span<const FlatRange> ranges() const { return m_ranges; }
    std::span<const RamRange> ram_ranges() const { return m_ram; }

    // The range holding `addr`, or nullptr (unassigned).
    const FlatRange* find(uint64_t addr) const
    {
        const FlatRange* r = find_from(addr);
        return r && r->start <= addr ? r : nullptr;
    }
    // The first range ending above `addr` (holding it, or the next one).
    const FlatRange* find_from(uint64_t addr) const;

    // `info mtree -f`-style text.
    std::string dump(std::string_view name) const;

    FlatView(std::vector<FlatRange> ranges, uint64_t generation);

private:
    std::vector<FlatRange> m_ranges;
    std::vector<RamRange> m_ram;
    uint64_t m_generation;
};

} // namespace emu::mem
