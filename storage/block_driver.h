// storage/block_driver.h — the interface every driver implements.
//
// Drivers stack: a format driver (raw, qcow2) reads and writes its image
// through a protocol driver (file; nbd later), and a qcow2 image may have a
// backing driver below it. Offsets and sizes are in bytes of the driver's own
// address space (the guest view for a format driver, the file for a protocol
// driver). Drivers are not thread-safe: BlockBackend serializes calls.
#pragma once

#include "storage/error.h"
#include "storage/preallocation.h"

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace emu::storage {

// What one run of bytes starting at a queried offset looks like.
struct BlockStatus {
    uint64_t length = 0;     // bytes from the queried offset sharing this status
    bool allocated = false;  // this layer decides the contents (false: its backing does)
    bool zero = false;       // reads as zeroes
    bool data = false;       // stored as data in a file
    std::optional<uint64_t> host_offset; // where, in file(), when stored uncompressed
};

// An internal snapshot as listed, and what snapshot_create() records (an
// empty id asks the driver for the next free one).
struct SnapshotInfo {
    std::string id;
    std::string name;
    uint64_t vm_state_size = 0;
    uint32_t date_sec = 0;
    uint32_t date_nsec = 0;
    uint64_t vm_clock_nsec = 0;
    std::optional<uint64_t> icount;
    uint64_t disk_size = 0;
};

struct Qcow2Specific {
    std::string compat;           // "0.10" or "1.1"
    std::string compression_type; // "zlib" or "zstd"
    bool lazy_refcounts = false;
    int refcount_bits = 16;
    bool corrupt = false;
    bool extended_l2 = false;
};

struct ImageInfo {
    std::string format;
    uint64_t virtual_size = 0;
    std::optional<uint64_t> cluster_size;
    bool dirty = false;
    std::string backing_filename;      // as written in the image
    std::string full_backing_filename; // resolved against the image's directory
    std::string backing_format;        // from the image, if recorded
    std::optional<Qcow2Specific> qcow2;
    std::vector<SnapshotInfo> snapshots;
};

enum class CheckRepair { None, Leaks, All };

struct CheckResult {
    uint64_t corruptions = 0;
    uint64_t leaks = 0;
    uint64_t check_errors = 0;
    uint64_t corruptions_fixed = 0;
    uint64_t leaks_fixed = 0;
    uint64_t image_end_offset = 0;
    uint64_t total_clusters = 0;
    uint64_t allocated_clusters = 0;
    uint64_t fragmented_clusters = 0;
    uint64_t compressed_clusters = 0;
    std::vector<std::string> messages; // one line per finding, qemu-img's wording
};

class BlockDriver {
public:
    virtual ~BlockDriver() = default;

    virtual std::string_view format_name() const = 0; // "file", "raw", "qcow2"
    virtual const std::string& filename() const = 0;
    virtual uint64_t size() const = 0;
    virtual bool read_only() const = 0;

    virtual Result<void> read(uint64_t offset, std::span<uint8_t> buf) = 0;
    virtual Result<void> write(uint64_t offset, std::span<const uint8_t> buf) = 0;
    // may_unmap: the range may be deallocated instead of written.
    virtual Result<void> write_zeroes(uint64_t offset, uint64_t bytes, bool may_unmap) = 0;
    // Contents of discarded ranges are unspecified afterwards (zero or backing data).
    virtual Result<void> discard(uint64_t offset, uint64_t bytes) = 0;
    virtual Result<void> flush() = 0;
    // Status of [offset, offset+bytes); the answer may cover a shorter prefix.
    virtual Result<BlockStatus> block_status(uint64_t offset, uint64_t bytes) = 0;
    // Writes back metadata and marks the image clean. Called by the owner before
    // destruction; the destructor only does best effort.
    virtual Result<void> close() { return flush(); }

    // The name of this node in a block graph (QEMU's node-name: the daemon
    // names the layers of a VM's drives); empty when unnamed.
    virtual const std::string& node_name() const { return m_node_name; }
    virtual void set_node_name(std::string name) { m_node_name = std::move(name); }

    virtual BlockDriver* backing() { return nullptr; }
    virtual BlockDriver* file() { return nullptr; }
    // The driver that does the work: itself, or for a BorrowedDriver the one
    // it stands for (identity checks across a block graph).
    virtual BlockDriver* underlying() { return this; }
    // Switches between read-only and read-write in place (a backing image a
    // commit writes into; an image an external snapshot put below an
    // overlay). Going read-only writes metadata back and marks the image
    // clean; the image lock follows (QEMU's lock bytes are taken or dropped).
    virtual Result<void> reopen(bool read_only);
    // The backing image in memory: taken out of this layer (the caller owns
    // it), or put in place of none (the header is not changed: see
    // set_backing_file()).
    virtual std::unique_ptr<BlockDriver> take_backing() { return nullptr; }
    virtual Result<void> attach_backing(std::unique_ptr<BlockDriver> backing);
    // Bytes the image takes on the host ("disk size" of qemu-img info).
    virtual uint64_t allocated_bytes() const;
    virtual ImageInfo info() const;
    virtual Result<CheckResult> check(CheckRepair repair)
    {
        return fail("This image format does not support checks");
    }

    // Changes the virtual size. Growing: the new area reads as zeroes and is
    // preallocated as asked; shrinking drops what lies past the new end.
    virtual Result<void> resize(uint64_t size, Preallocation prealloc);
    // Drops every allocation of this layer so that it reads from its backing
    // image again (after a commit).
    virtual Result<void> make_empty();
    // Records another backing file name and format in the image (the caller
    // reopens the chain); an empty name removes the backing file.
    virtual Result<void> set_backing_file(const std::string& name, const std::string& format);

    // Internal snapshots (qcow2). Snapshots are found by ID first, then by
    // name; a missing one fails with ENOENT, a driver without snapshots with
    // ENOTSUP.
    virtual Result<void> snapshot_create(const SnapshotInfo& snapshot);
    virtual Result<void> snapshot_goto(std::string_view id_or_name);
    virtual Result<void> snapshot_delete(std::string_view id_or_name);
    // The VM state area (saved device and RAM state of a snapshot): bytes at
    // `pos` of the state being saved, before snapshot_create() records it with
    // its size, or of the state of the snapshot last applied.
    virtual Result<void> vmstate_write(uint64_t pos, std::span<const uint8_t> buf);
    virtual Result<void> vmstate_read(uint64_t pos, std::span<uint8_t> buf);

private:
    std::string m_node_name;
};

// Does the buffer hold only zero bytes? (Word at a time: it runs over every
// byte convert and detect-zeroes look at.)
bool buffer_is_zero(std::span<const uint8_t> buf);

// Reads through the chain: zeroes beyond a driver's size (a backing image may
// be shorter than its overlay).
Result<void> read_clamped(BlockDriver& drv, uint64_t offset, std::span<uint8_t> buf);

// The status of [offset, offset+bytes) as a reader of `top` sees it: from the
// first layer of the backing chain that decides it (a range no layer holds
// reads as zeroes, and so does the part of a backing image past its end).
// `allocated` tells whether any layer holds the range.
Result<BlockStatus> block_status_above(BlockDriver& top, uint64_t offset, uint64_t bytes);

} // namespace emu::storage
