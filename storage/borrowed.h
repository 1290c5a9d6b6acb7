// storage/borrowed.h — BorrowedDriver: a driver that stands for another one
// it does not own, so that one node of a block graph can be the `file` or
// `backing` child of another (blockdev-add with a node reference, the image
// an external snapshot puts below its overlay).
//
// Every call goes to the target, so chain walks (backing(), block status
// through the chain, commit) see through it as if the target were there.
// close() and destruction leave the target alone: its owner closes it. The
// owner must keep the target alive as long as the borrower exists, and must
// not use it for I/O meanwhile (the borrower's BlockBackend serializes the
// whole chain; a second user of the target would bypass that lock).
#pragma once

#include "storage/block_driver.h"

namespace emu::storage {

class BorrowedDriver final : public BlockDriver {
public:
    explicit BorrowedDriver(BlockDriver& target) : m_target(target) {}

    BlockDriver& target() const { return m_target; }

    std::string_view format_name() const override { return m_target.format_name(); }
    const std::string& filename() const override { return m_target.filename(); }
    uint64_t size() const override { return m_target.size(); }
    bool read_only() const override { return m_target.read_only(); }

    Result<void> read(uint64_t offset, std::span<uint8_t> buf) override { return m_target.read(offset, buf); }
    Result<void> write(uint64_t offset, std::span<const uint8_t> buf) override { return m_target.write(offset, buf); }
    Result<void> write_zeroes(uint64_t offset, uint64_t bytes, bool may_unmap) override
    {
        return m_target.write_zeroes(offset, bytes, may_unmap);
    }
    Result<void> discard(uint64_t offset, uint64_t bytes) override { return m_target.discard(offset, bytes); }
    Result<void> flush() override { return m_target.flush(); }
    Result<BlockStatus> block_status(uint64_t offset, uint64_t bytes) override
    {
        return m_target.block_status(offset, bytes);
    }
    Result<void> close() override { return m_target.flush(); }

    const std::string& node_name() const override { return m_target.node_name(); }
    void set_node_name(std::string name) override { m_target.set_node_name(std::move(name)); }
    BlockDriver* backing() override { return m_target.backing(); }
    BlockDriver* file() override { return m_target.file(); }
    BlockDriver* underlying() override { return m_target.underlying(); }
    uint64_t allocated_bytes() const override { return m_target.allocated_bytes(); }
    ImageInfo info() const override { return m_target.info(); }
    Result<CheckResult> check(CheckRepair repair) override { return m_target.check(repair); }
    Result<void> resize(uint64_t size, Preallocation prealloc) override { return m_target.resize(size, prealloc); }
    Result<void> make_empty() override { return m_target.make_empty(); }
    Result<void> set_backing_file(const std::string& name, const std::string& format) override
    {
        return m_target.set_backing_file(name, format);
    }
    Result<void> reopen(bool read_only) override { return m_target.reopen(read_only); }
    std::unique_ptr<BlockDriver> take_backing() override { return m_target.take_backing(); }
    Result<void> attach_backing(std::unique_ptr<BlockDriver> backing) override
    {
        return m_target.attach_backing(std::move(backing));
    }
    Result<void> snapshot_create(const SnapshotInfo& snapshot) override { return m_target.snapshot_create(snapshot); }
    Result<void> snapshot_goto(std::string_view id_or_name) override { return m_target.snapshot_goto(id_or_name); }
    Result<void> snapshot_delete(std::string_view id_or_name) override { return m_target.snapshot_delete(id_or_name); }
    Result<void> vmstate_write(uint64_t pos, std::span<const uint8_t> buf) override
    {
        return m_target.vmstate_write(pos, buf);
    }
    Result<void> vmstate_read(uint64_t pos, std::span<uint8_t> buf) override { return m_target.vmstate_read(pos, buf); }

private:
    BlockDriver& m_target;
};

} // namespace emu::storage
