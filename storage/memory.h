// storage/memory.h — the `memory` protocol driver: an image held in a byte
// vector. The fuzz target opens its inputs through it; tests use it for
// images that need no file. Reads past the end fail as the file driver's do;
// writes may grow the buffer up to a limit (so a hostile image cannot make
// it allocate without bound).
#pragma once

#include "storage/block_driver.h"

namespace emu::storage {

class MemoryDriver final : public BlockDriver {
public:
    MemoryDriver(std::string name, std::vector<uint8_t> data, bool read_only, uint64_t max_size = 1ull << 30);

    std::string_view format_name() const override { return "memory"; }
    const std::string& filename() const override { return m_name; }
    uint64_t size() const override { return m_data.size(); }
    bool read_only() const override { return m_read_only; }

    Result<void> read(uint64_t offset, std::span<uint8_t> buf) override;
    Result<void> write(uint64_t offset, std::span<const uint8_t> buf) override;
    Result<void> write_zeroes(uint64_t offset, uint64_t bytes, bool may_unmap) override;
    Result<void> discard(uint64_t offset, uint64_t bytes) override;
    Result<void> flush() override { return {}; }
    Result<BlockStatus> block_status(uint64_t offset, uint64_t bytes) override;
    Result<void> resize(uint64_t size, Preallocation prealloc) override;
    uint64_t allocated_bytes() const override { return m_data.size(); }

    const std::vector<uint8_t>& data() const { return m_data; }

private:
    Result<void> grow_to(uint64_t end);

    std::string m_name;
    std::vector<uint8_t> m_data;
    bool m_read_only;
    uint64_t m_max_size;
};

} // namespace emu::storage
