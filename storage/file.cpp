// storage/file.cpp — the `file` protocol driver.
#include "storage/file.h"

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <fmt/format.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

namespace emu::storage {

namespace {

constexpr size_t k_direct_align = 4096;

// QEMU's lock bytes: 100 + perm when a user holds the permission, 200 + perm
// when it refuses to share it.
enum Perm { PermConsistentRead = 0, PermWrite = 1, PermWriteUnchanged = 2, PermResize = 3, PermGraphMod = 4 };
constexpr int k_lock_perm_base = 100;
constexpr int k_lock_shared_base = 200;

const char* perm_name(int perm)
{
    switch (perm) {
    case PermConsistentRead: return "consistent read";
    case PermWrite: return "write";
    case PermWriteUnchanged: return "write unchanged";
    case PermResize: return "resize";
    default: return "change children";
    }
}

std::string errno_text(int err)
{
    return std::strerror(err);
}

bool set_lock(int fd, off_t byte)
{
    struct flock fl{};
    fl.l_type = F_RDLCK;
    fl.l_whence = SEEK_SET;
    fl.l_start = byte;
    fl.l_len = 1;
    return fcntl(fd, F_OFD_SETLK, &fl) == 0;
}

// Drops every lock this open file description holds on the image.
void unlock_all(int fd)
{
    struct flock fl{};
    fl.l_type = F_UNLCK;
    fl.l_whence = SEEK_SET;
    fl.l_start = 0;
    fl.l_len = 0; // to the end
    fcntl(fd, F_OFD_SETLK, &fl);
}

// Does another open file description hold a lock on `byte`?
bool held_by_other(int fd, off_t byte)
{
    struct flock fl{};
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    fl.l_start = byte;
    fl.l_len = 1;
    if (fcntl(fd, F_OFD_GETLK, &fl) != 0)
        return false;
    return fl.l_type != F_UNLCK;
}

struct AlignedBuffer {
    uint8_t* data = nullptr;
    explicit AlignedBuffer(size_t len)
    {
        void* p = nullptr;
        if (posix_memalign(&p, k_direct_align, std::max(len, k_direct_align)) == 0)
            data = static_cast<uint8_t*>(p);
    }
    ~AlignedBuffer() { std::free(data); }
    AlignedBuffer(const AlignedBuffer&) = delete;
    AlignedBuffer& operator=(const AlignedBuffer&) = delete;
};

} // namespace

Result<Preallocation> parse_preallocation(std::string_view text)
{
    if (text == "off")
        return Preallocation::Off;
    if (text == "metadata")
        return Preallocation::Metadata;
    if (text == "falloc")
        return Preallocation::Falloc;
    if (text == "full")
        return Preallocation::Full;
    return fail(fmt::format("Parameter 'preallocation' does not accept value '{}'", text));
}

std::string_view preallocation_name(Preallocation mode)
{
    switch (mode) {
    case Preallocation::Off: return "off";
    case Preallocation::Metadata: return "metadata";
    case Preallocation::Falloc: return "falloc";
    case Preallocation::Full: return "full";
    }
    return "off";
}

FileDriver::FileDriver(std::string path, int fd, const FileOptions& options)
    : m_path(std::move(path)), m_fd(fd), m_options(options)
{
}

FileDriver::~FileDriver()
{
    if (m_fd >= 0)
        ::close(m_fd);
}

Result<std::unique_ptr<FileDriver>> FileDriver::open(const std::string& path, const FileOptions& options)
{
    int flags = (options.read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC;
    if (options.direct)
        flags |= O_DIRECT;
    int fd = ::open(path.c_str(), flags);
    if (fd < 0) {
        int err = errno;
        if (err == EINVAL && options.direct)
            return fail(fmt::format("Could not open '{}': the filesystem does not support O_DIRECT (cache=none/directsync)", path), err);
        return fail(fmt::format("Could not open '{}': {}", path, errno_text(err)), err);
    }
    std::unique_ptr<FileDriver> drv(new FileDriver(path, fd, options));
    struct stat st{};
    if (fstat(fd, &st) != 0)
        return fail(fmt::format("Could not stat '{}': {}", path, errno_text(errno)), errno);
    if (S_ISDIR(st.st_mode))
        return fail(fmt::format("Could not open '{}': Is a directory", path), EISDIR);
    drv->m_dev = st.st_dev;
    drv->m_ino = st.st_ino;
    drv->m_is_block_device = S_ISBLK(st.st_mode);
    if (drv->m_is_block_device) {
        uint64_t bytes = 0;
        if (ioctl(fd, BLKGETSIZE64, &bytes) != 0)
            return fail(fmt::format("Could not get the size of '{}': {}", path, errno_text(errno)), errno);
        drv->m_size = bytes;
    } else {
        drv->m_size = uint64_t(st.st_size);
    }
    if (options.locking) {
        if (auto r = drv->lock(); !r)
            return std::unexpected(r.error());
    }
    return drv;
}

Result<void> FileDriver::lock()
{
    std::vector<int> held = {PermConsistentRead};
    std::vector<int> unshared;
    if (!m_options.read_only) {
        held.push_back(PermWrite);
        held.push_back(PermResize);
    }
    if (!m_options.force_share) {
        unshared.push_back(PermWrite);
        unshared.push_back(PermResize);
    }
    for (int p : held)
        set_lock(m_fd, k_lock_perm_base + p);
    for (int p : unshared)
        set_lock(m_fd, k_lock_shared_base + p);
    for (int p : held) {
        if (held_by_other(m_fd, k_lock_shared_base + p))
            return fail(fmt::format("Failed to get \"{}\" lock\nIs another process using the image [{}]?",
                                    perm_name(p), m_path), EAGAIN);
    }
    for (int p : unshared) {
        if (held_by_other(m_fd, k_lock_perm_base + p))
            return fail(fmt::format("Failed to get shared \"{}\" lock\nIs another process using the image [{}]?",
                                    perm_name(p), m_path), EAGAIN);
    }
    return {};
}

Result<void> FileDriver::reopen(bool read_only)
{
    if (read_only == m_options.read_only)
        return {};
    if (!m_options.read_only) {
        if (auto r = flush(); !r)
            return r;
    }
    int flags = (read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC | (m_options.direct ? O_DIRECT : 0);
    int fd = ::open(m_path.c_str(), flags);
    if (fd < 0)
        return fail(fmt::format("Could not reopen '{}' {}: {}", m_path, read_only ? "read-only" : "read-write",
                                errno_text(errno)), errno);
    struct stat st{};
    if (fstat(fd, &st) != 0 || st.st_dev != m_dev || st.st_ino != m_ino) {
        ::close(fd);
        return fail(fmt::format("Could not reopen '{}': the file was replaced since it was opened", m_path), ESTALE);
    }
    // Our own old description holds lock bytes that would conflict with the
    // new ones: drop them first, and take them back if the new ones fail.
    const int old_fd = m_fd;
    const FileOptions old_options = m_options;
    if (m_options.locking)
        unlock_all(old_fd);
    m_fd = fd;
    m_options.read_only = read_only;
    if (m_options.locking) {
        if (auto r = lock(); !r) {
            ::close(fd);
            m_fd = old_fd;
            m_options = old_options;
            if (auto back = lock(); !back)
                return chain(fmt::format("Could not reopen '{}' and its lock is lost", m_path), r.error());
            return r;
        }
    }
    ::close(old_fd);
    return {};
}

Result<void> FileDriver::direct_io(uint64_t offset, uint8_t* buf, size_t len, bool is_write)
{
    // Aligned window around the request, through a bounce buffer.
    uint64_t start = offset & ~uint64_t(k_direct_align - 1);
    uint64_t end = (offset + len + k_direct_align - 1) & ~uint64_t(k_direct_align - 1);
    size_t span = size_t(end - start);
    AlignedBuffer bounce(span);
    if (!bounce.data)
        return fail(fmt::format("{}: cannot allocate a bounce buffer of {} bytes", m_path, span), ENOMEM);
    if (!is_write || start != offset || end != offset + len) {
        size_t done = 0;
        while (done < span) {
            ssize_t n = ::pread(m_fd, bounce.data + done, span - done, off_t(start + done));
            if (n < 0) {
                if (errno == EINTR)
                    continue;
                return fail(fmt::format("{}: read at {} failed: {}", m_path, start + done, errno_text(errno)), errno);
            }
            if (n == 0)
                break;
            done += size_t(n);
        }
        std::memset(bounce.data + done, 0, span - done);
    }
    if (!is_write) {
        std::memcpy(buf, bounce.data + (offset - start), len);
        return {};
    }
    std::memcpy(bounce.data + (offset - start), buf, len);
    size_t done = 0;
    while (done < span) {
        ssize_t n = ::pwrite(m_fd, bounce.data + done, span - done, off_t(start + done));
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return fail(fmt::format("{}: write at {} failed: {}", m_path, start + done, errno_text(errno)), errno);
        }
        done += size_t(n);
    }
    // The aligned write may have extended the file past the request: trim back.
    if (!m_is_block_device && end > m_size && offset + len < end) {
        uint64_t new_size = std::max(m_size, offset + len);
        if (ftruncate(m_fd, off_t(new_size)) != 0)
            return fail(fmt::format("{}: truncate failed: {}", m_path, errno_text(errno)), errno);
    }
    return {};
}

Result<void> FileDriver::read(uint64_t offset, std::span<uint8_t> buf)
{
    if (offset > m_size || buf.size() > m_size - offset)
        return fail(fmt::format("{}: read of {} bytes at {} is beyond the end of the file ({} bytes)", m_path,
                                buf.size(), offset, m_size), EIO);
    return read_zero_fill(offset, buf);
}

Result<void> FileDriver::read_zero_fill(uint64_t offset, std::span<uint8_t> buf)
{
    if (buf.empty())
        return {};
    if (m_options.direct && ((offset | buf.size() | uintptr_t(buf.data())) & (k_direct_align - 1)))
        return direct_io(offset, buf.data(), buf.size(), false);
    size_t done = 0;
    while (done < buf.size()) {
        ssize_t n = ::pread(m_fd, buf.data() + done, buf.size() - done, off_t(offset + done));
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return fail(fmt::format("{}: read at {} failed: {}", m_path, offset + done, errno_text(errno)), errno);
        }
        if (n == 0) {
            std::memset(buf.data() + done, 0, buf.size() - done);
            break;
        }
        done += size_t(n);
    }
    return {};
}

Result<void> FileDriver::write(uint64_t offset, std::span<const uint8_t> buf)
{
    if (m_options.read_only)
        return fail(fmt::format("{}: the image is opened read-only", m_path), EROFS);
    if (buf.empty())
        return {};
    if (m_is_block_device && (offset > m_size || buf.size() > m_size - offset))
        return fail(fmt::format("{}: write beyond the end of the device", m_path), ENOSPC);
    if (m_options.direct && ((offset | buf.size() | uintptr_t(buf.data())) & (k_direct_align - 1))) {
        if (auto r = direct_io(offset, const_cast<uint8_t*>(buf.data()), buf.size(), true); !r)
            return r;
    } else {
        size_t done = 0;
        while (done < buf.size()) {
            ssize_t n = ::pwrite(m_fd, buf.data() + done, buf.size() - done, off_t(offset + done));
            if (n < 0) {
                if (errno == EINTR)
                    continue;
                return fail(fmt::format("{}: write at {} failed: {}", m_path, offset + done, errno_text(errno)),
                            errno);
            }
            done += size_t(n);
        }
    }
    m_size = std::max(m_size, offset + buf.size());
    return {};
}

Result<void> FileDriver::write_zeroes(uint64_t offset, uint64_t bytes, bool may_unmap)
{
    if (m_options.read_only)
        return fail(fmt::format("{}: the image is opened read-only", m_path), EROFS);
    if (bytes == 0)
        return {};
    int mode = may_unmap ? (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE) : FALLOC_FL_ZERO_RANGE;
    bool inside = offset + bytes <= m_size;
    if (!m_is_block_device && inside && fallocate(m_fd, mode, off_t(offset), off_t(bytes)) == 0)
        return {};
    if (!m_is_block_device && !inside && offset >= m_size) {
        // Growing with zeroes: extending the file is enough.
        if (ftruncate(m_fd, off_t(offset + bytes)) == 0) {
            m_size = offset + bytes;
            return {};
        }
    }
    std::vector<uint8_t> zeroes(size_t(std::min<uint64_t>(bytes, 1 << 20)), 0);
    for (uint64_t done = 0; done < bytes;) {
        size_t n = size_t(std::min<uint64_t>(bytes - done, zeroes.size()));
        if (auto r = write(offset + done, std::span<const uint8_t>(zeroes.data(), n)); !r)
            return r;
        done += n;
    }
    return {};
}

Result<void> FileDriver::discard(uint64_t offset, uint64_t bytes)
{
    if (m_options.read_only)
        return fail(fmt::format("{}: the image is opened read-only", m_path), EROFS);
    if (m_is_block_device || bytes == 0 || offset >= m_size)
        return {};
    bytes = std::min(bytes, m_size - offset);
    // Best effort: a filesystem without hole punching keeps the data.
    fallocate(m_fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off_t(offset), off_t(bytes));
    return {};
}

Result<void> FileDriver::flush()
{
    if (m_options.read_only || m_options.no_flush)
        return {};
    if (fdatasync(m_fd) != 0)
        return fail(fmt::format("{}: flush failed: {}", m_path, errno_text(errno)), errno);
    return {};
}

Result<BlockStatus> FileDriver::block_status(uint64_t offset, uint64_t bytes)
{
    BlockStatus st;
    st.allocated = true;
    st.host_offset = offset;
    if (offset >= m_size) {
        st.length = bytes;
        st.zero = true;
        return st;
    }
    bytes = std::min(bytes, m_size - offset);
    off_t data = lseek(m_fd, off_t(offset), SEEK_DATA);
    if (data < 0 && errno == ENXIO) {
        st.length = bytes;
        st.zero = true;
        return st;
    }
    if (data < 0) { // no SEEK_DATA support: all data
        st.length = bytes;
        st.data = true;
        return st;
    }
    if (uint64_t(data) > offset) {
        st.length = std::min<uint64_t>(bytes, uint64_t(data) - offset);
        st.zero = true;
        return st;
    }
    off_t hole = lseek(m_fd, off_t(offset), SEEK_HOLE);
    uint64_t end = hole < 0 ? m_size : uint64_t(hole);
    st.length = std::min<uint64_t>(bytes, end > offset ? end - offset : bytes);
    st.data = true;
    return st;
}

uint64_t FileDriver::allocated_bytes() const
{
    struct stat st{};
    if (fstat(m_fd, &st) != 0)
        return 0;
    return uint64_t(st.st_blocks) * 512;
}

Result<void> FileDriver::truncate(uint64_t size, Preallocation prealloc)
{
    if (m_is_block_device)
        return size <= m_size ? Result<void>{} : fail(fmt::format("{}: cannot grow a block device", m_path));
    uint64_t old = m_size;
    if (ftruncate(m_fd, off_t(size)) != 0)
        return fail(fmt::format("Could not resize file '{}': {}", m_path, errno_text(errno)), errno);
    m_size = size;
    if (size <= old || prealloc == Preallocation::Off || prealloc == Preallocation::Metadata)
        return {};
    if (prealloc == Preallocation::Falloc) {
        int rc = posix_fallocate(m_fd, off_t(old), off_t(size - old));
        if (rc != 0)
            return fail(fmt::format("Could not preallocate data for '{}': {}", m_path, errno_text(rc)), rc);
        return {};
    }
    std::vector<uint8_t> zeroes(1 << 20, 0);
    for (uint64_t pos = old; pos < size;) {
        size_t n = size_t(std::min<uint64_t>(size - pos, zeroes.size()));
        if (auto r = write(pos, std::span<const uint8_t>(zeroes.data(), n)); !r)
            return r;
        pos += n;
    }
    return {};
}

Result<void> FileDriver::create(const std::string& path, uint64_t size, Preallocation prealloc)
{
    int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return fail(fmt::format("Could not create '{}': {}", path, errno_text(errno)), errno);
    ::close(fd);
    FileOptions options;
    auto drv = open(path, options);
    if (!drv)
        return std::unexpected(drv.error());
    if (auto r = (*drv)->truncate(size, prealloc); !r)
        return r;
    return (*drv)->flush();
}

} // namespace emu::storage
