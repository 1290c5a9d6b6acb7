// engine/memory/ram_block.h — host memory behind a RAM or ROM region.
//
// A RamBlock is an anonymous private mapping with MAP_NORESERVE: guest RAM
// that the guest never touches costs no resident memory and no swap
// reservation. Sizes are whole 4 KiB pages. The block is the "page identity"
// the soft MMU and the accelerators use for dirty tracking: (block, offset).
#pragma once

#include "engine/memory/dirty.h"
#include "engine/memory/error.h"

#include <cstdint>
#include <memory>
#include <string>

namespace emu::mem {

class RamBlock {
public:
    // Fails (naming `name`) on size 0, a size that is not a multiple of 4 KiB,
    // or when the host refuses the mapping.
    static Result<std::unique_ptr<RamBlock>> create(std::string name, uint64_t size);
    ~RamBlock();
    RamBlock(const RamBlock&) = delete;
    RamBlock& operator=(const RamBlock&) = delete;

    const std::string& name() const { return m_name; }
    uint8_t* host() const { return m_host; }
    uint64_t size() const { return m_size; }
    DirtyLog& dirty() { return m_dirty; }
    const DirtyLog& dirty() const { return m_dirty; }

    // Shorthands for dirty().mark_dirty / has_code (DMA and the JIT).
    void mark_dirty(uint64_t offset, uint64_t len) { m_dirty.mark_dirty(offset, len); }
    bool has_code(uint64_t offset) const { return m_dirty.has_code(offset); }

    // Copies into / out of the block, bounds-checked (no wrap on offset+len);
    // write marks the range dirty. False if the range is outside the block.
    bool write(uint64_t offset, const void* data, uint64_t len);
    bool read(uint64_t offset, void* data, uint64_t len) const;

private:
    RamBlock(std::string name, uint8_t* host, uint64_t size);

    std::string m_name;
    uint8_t* m_host;
    uint64_t m_size;
    DirtyLog m_dirty;
};

} // namespace emu::mem
