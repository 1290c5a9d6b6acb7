// storage/file.h — the `file` protocol driver: a host file or block device.
//
// pread/pwrite/fallocate/fdatasync. O_DIRECT (cache=none, directsync) goes
// through an aligned bounce buffer when a request is not aligned. Image
// locking uses OFD byte-range locks at QEMU's lock bytes, so emud, emu-img and
// QEMU's tools all see each other's locks: a writer excludes other writers and
// readers that refuse to share writes; force_share (-U) takes no exclusive
// claim.
#pragma once

#include "storage/block_driver.h"

#include <memory>

namespace emu::storage {

struct FileOptions {
    bool read_only = false;
    bool direct = false;      // O_DIRECT
    bool force_share = false; // -U: share every permission with other users
    bool locking = true;
    bool no_flush = false;    // cache=unsafe: flushes are not passed to the host
};

class FileDriver final : public BlockDriver {
public:
    static Result<std::unique_ptr<FileDriver>> open(const std::string& path, const FileOptions& options);
    // Creates (or truncates) a file of `size` bytes.
    static Result<void> create(const std::string& path, uint64_t size, Preallocation prealloc);
    ~FileDriver() override;

    std::string_view format_name() const override { return "file"; }
    const std::string& filename() const override { return m_path; }
    uint64_t size() const override { return m_size; }
    bool read_only() const override { return m_options.read_only; }

    Result<void> read(uint64_t offset, std::span<uint8_t> buf) override;
    Result<void> write(uint64_t offset, std::span<const uint8_t> buf) override;
    Result<void> write_zeroes(uint64_t offset, uint64_t bytes, bool may_unmap) override;
    Result<void> discard(uint64_t offset, uint64_t bytes) override;
    Result<void> flush() override;
    Result<BlockStatus> block_status(uint64_t offset, uint64_t bytes) override;
    uint64_t allocated_bytes() const override;
    // A new descriptor with the other access mode; the lock bytes move with it.
    Result<void> reopen(bool read_only) override;

    Result<void> truncate(uint64_t size, Preallocation prealloc = Preallocation::Off);
    Result<void> resize(uint64_t size, Preallocation prealloc) override { return truncate(size, prealloc); }
    // Reads that run past the end of the file are zero-filled instead of failing.
    Result<void> read_zero_fill(uint64_t offset, std::span<uint8_t> buf);
    uint64_t device() const { return m_dev; }
    uint64_t inode() const { return m_ino; }
    bool direct() const { return m_options.direct; }

private:
    FileDriver(std::string path, int fd, const FileOptions& options);
    Result<void> lock();
    Result<void> direct_io(uint64_t offset, uint8_t* buf, size_t len, bool is_write);

    std::string m_path;
    int m_fd;
    FileOptions m_options;
    uint64_t m_size = 0;
    uint64_t m_dev = 0;
    uint64_t m_ino = 0;
    bool m_is_block_device = false;
};

} // namespace emu::storage
