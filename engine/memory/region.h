// engine/memory/region.h — the building blocks of a guest address space.
//
// A MemoryRegion is one of:
//  - RAM: host memory (a RamBlock: anonymous NORESERVE mmap, whole pages);
//  - ROM: the same, but guest writes are ignored; loaders fill it with
//    `load` (or AddressSpace::load_rom);
//  - I/O: a device's callbacks plus the access sizes it accepts (MMIO and
//    port I/O alike; see the access policy at `io_read`);
//  - alias: a window [alias_offset, alias_offset+size) onto another region
//    (which may itself be an alias or a container);
//  - container: subregions at offsets with integer priorities. Where they
//    overlap the higher priority wins; equal priorities may not overlap
//    (refused at insertion). Holes let lower-priority siblings of the
//    container show through.
// Any change of topology (add/remove, enable/disable, move, read-only,
// alias offset) rebuilds the flat view of every AddressSpace that reaches
// the region, at once or when the enclosing TopologyBatch ends.
//
// Lifetime and threads:
//  - Regions are owned by their creators (devices, the machine). Topology
//    changes for one region graph are serialised by the caller (the control
//    thread, or the VM's device lock); vCPU threads only read the published
//    flat views, so they may still call into a region just removed.
//  - Hence a region may be destroyed only when no access can be in flight
//    (vCPUs paused or gone). Destroying a region still attached to a
//    container detaches it (a topology change); a container's destruction
//    frees its children. An alias must be destroyed before its target and an
//    AddressSpace before its root (asserted).
#pragma once

#include "engine/memory/error.h"
#include "engine/memory/ram_block.h"

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace emu::mem {

class AddressSpace;

enum class RegionKind : uint8_t { Ram, Rom, Io, Alias, Container };
const char* region_kind_name(RegionKind kind);

// A device's side of an I/O region. Offsets are relative to the region.
// A callback always sees a naturally aligned access (offset % size == 0)
// with min_access <= size <= max_access. Missing callbacks read all ones and
// ignore writes.
struct IoOps {
    std::function<uint64_t(uint64_t offset, unsigned size)> read;
    std::function<void(uint64_t offset, uint64_t value, unsigned size)> write;
    unsigned min_access = 1; // 1, 2, 4 or 8; the region size must be a multiple
    unsigned max_access = 8; // 1, 2, 4 or 8, >= min_access
};

class MemoryRegion {
public:
    using Ptr = std::unique_ptr<MemoryRegion>;

    static Result<Ptr> ram(std::string name, uint64_t size);
    static Result<Ptr> rom(std::string name, uint64_t size);
    static Result<Ptr> io(std::string name, uint64_t size, IoOps ops);
    static Result<Ptr> alias(std::string name, MemoryRegion& target, uint64_t offset, uint64_t size);
    static Result<Ptr> container(std::string name, uint64_t size);
    ~MemoryRegion();
    MemoryRegion(const MemoryRegion&) = delete;
    MemoryRegion& operator=(const MemoryRegion&) = delete;

    const std::string& name() const { return m_name; }
    RegionKind kind() const { return m_kind; }
    uint64_t size() const { return m_size; }

    bool enabled() const { return m_enabled; }
    void set_enabled(bool enabled);
    // ROM is always read-only; RAM and aliases can be made read-only (e.g.
    // shadow-RAM control). Asserts for I/O and containers.
    bool readonly() const { return m_readonly; }
    void set_readonly(bool readonly);

    // RAM and ROM.
    RamBlock* ram_block() const { return m_block.get(); }
    uint8_t* host() const { return m_block ? m_block->host() : nullptr; }
    // Copies a loader's bytes into RAM/ROM at `offset` (marks them dirty).
    Result<void> load(uint64_t offset, const void* data, uint64_t len);

    // I/O: `len` bytes (1..8, any alignment, inside the region) through the
    // device callbacks. Access policy, so devices never see odd accesses:
    //  - the range is covered by naturally aligned pieces, each as wide as
    //    possible up to max_access: an 8-byte access to a 4-byte device is
    //    two 4-byte accesses, recombined little-endian; an unaligned one is
    //    split into aligned pieces (4 bytes at offset 2, max 8 -> 2+2);
    //  - a piece narrower than min_access is widened to the aligned
    //    min_access word: reads extract the bytes asked for; writes are
    //    read-modify-write (the device's read of that word runs first).
    //    Devices whose registers have read side effects should accept
    //    narrow accesses (min_access = 1) and handle them themselves.
    uint64_t io_read(uint64_t offset, unsigned len);
    void io_write(uint64_t offset, uint64_t value, unsigned len);
    const IoOps& io_ops() const { return m_ops; }

    // Alias.
    MemoryRegion* alias_target() const { return m_alias_target; }
    uint64_t alias_offset() const { return m_alias_offset; }
    Result<void> set_alias_offset(uint64_t offset); // moves the window (bank switching)

    // Container. Errors: not a container, child already attached, a cycle,
    // offset+size past 2^64, equal-priority overlap. A child may extend past
    // the container's end: it is clipped.
    Result<void> add_subregion(MemoryRegion& child, uint64_t offset, int priority = 0);
    void remove_subregion(MemoryRegion& child); // asserts child is ours
    std::span<MemoryRegion* const> children() const { return m_children; } // priority order, highest first

    // As a subregion.
    MemoryRegion* parent() const { return m_parent; }
    uint64_t offset() const { return m_offset; }
    int priority() const { return m_priority; }
    Result<void> set_offset(uint64_t offset); // moves within the parent (PCI BARs)

    // `info mtree`-style text of this region's tree, this region starting at
    // `base`; aliased regions are listed after the tree.
    std::string dump_tree(uint64_t base = 0) const;

private:
    friend class AddressSpace;
    MemoryRegion(std::string name, RegionKind kind, uint64_t size);

    Result<void> check_placement(const MemoryRegion& child, uint64_t offset, int priority) const;
    void topology_changed();
    void dump(std::string& out, uint64_t start, int depth, std::vector<const MemoryRegion*>& aliased) const;

    std::string m_name;
    RegionKind m_kind;
    uint64_t m_size;
    bool m_enabled = true;
    bool m_readonly = false;
    std::unique_ptr<RamBlock> m_block; // RAM, ROM
    IoOps m_ops;                       // I/O
    MemoryRegion* m_alias_target = nullptr;
    uint64_t m_alias_offset = 0;
    std::vector<MemoryRegion*> m_children; // container
    MemoryRegion* m_parent = nullptr;
    uint64_t m_offset = 0;
    int m_priority = 0;
    std::vector<MemoryRegion*> m_alias_users; // aliases whose target we are
    std::vector<AddressSpace*> m_spaces;      // address spaces whose root we are
};

} // namespace emu::mem
