// storage/raw.h — the raw format driver: the guest sees its file's bytes.
#pragma once

#include "storage/block_driver.h"

#include <memory>

namespace emu::storage {

class RawDriver final : public BlockDriver {
public:
    explicit RawDriver(std::unique_ptr<BlockDriver> file) : m_file(std::move(file)) {}

    std::string_view format_name() const override { return "raw"; }
    const std::string& filename() const override { return m_file->filename(); }
    // As QEMU: the file size rounded up to whole 512-byte sectors; the tail reads as zeroes.
    uint64_t size() const override { return (m_file->size() + 511) & ~uint64_t(511); }
    bool read_only() const override { return m_file->read_only(); }

    Result<void> read(uint64_t offset, std::span<uint8_t> buf) override;
    Result<void> write(uint64_t offset, std::span<const uint8_t> buf) override;
    Result<void> write_zeroes(uint64_t offset, uint64_t bytes, bool may_unmap) override;
    Result<void> discard(uint64_t offset, uint64_t bytes) override { return m_file->discard(offset, bytes); }
    Result<void> flush() override { return m_file->flush(); }
    Result<BlockStatus> block_status(uint64_t offset, uint64_t bytes) override;
    Result<void> close() override { return m_file->close(); }
    Result<void> resize(uint64_t size, Preallocation prealloc) override;
    BlockDriver* file() override { return m_file.get(); }
    Result<void> reopen(bool read_only) override { return m_file->reopen(read_only); }
    uint64_t allocated_bytes() const override { return m_file->allocated_bytes(); }

private:
    Result<void> in_bounds(uint64_t offset, uint64_t bytes) const;
    std::unique_ptr<BlockDriver> m_file;
};

} // namespace emu::storage
