#include "engine/memory/ram_block.h"

#include <cerrno>
#include <cstring>
#include <fmt/format.h>
#include <sys/mman.h>

namespace emu::mem {

Result<std::unique_ptr<RamBlock>> RamBlock::create(std::string name, uint64_t size)
{
    if (size == 0)
        return fail(fmt::format("{}: size is 0", name));
    if (size % kPageSize)
        return fail(fmt::format("{}: size {:#x} is not a multiple of the 4 KiB page size", name, size));
    void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED)
        return fail(fmt::format("{}: cannot map {:#x} bytes of RAM: {}", name, size, strerror(errno)));
    std::unique_ptr<RamBlock> block(new RamBlock(std::move(name), static_cast<uint8_t*>(p), size));
    if (auto r = block->m_dirty.init(block->m_name, size); !r)
        return std::unexpected(r.error());
    return block;
}

RamBlock::RamBlock(std::string name, uint8_t* host, uint64_t size) : m_name(std::move(name)), m_host(host), m_size(size) {}

RamBlock::~RamBlock()
{
    munmap(m_host, m_size);
}

bool RamBlock::write(uint64_t offset, const void* data, uint64_t len)
{
    if (offset > m_size || len > m_size - offset)
        return false;
    if (len) {
        memcpy(m_host + offset, data, len);
        m_dirty.mark_dirty(offset, len);
    }
    return true;
}

bool RamBlock::read(uint64_t offset, void* data, uint64_t len) const
{
    if (offset > m_size || len > m_size - offset)
        return false;
    if (len)
        memcpy(data, m_host + offset, len);
    return true;
}

} // namespace emu::mem
