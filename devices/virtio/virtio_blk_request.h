// devices/virtio/virtio_blk_request.h — one virtio-blk request from its chain to
// its completion (internal to virtio_blk*.cpp).
//
// A request is shared between the device (in flight or parked) and the
// backend completions of its pieces, so it outlives a reset that forgets it.
// The fields below `pending` are written by storage workers; everything else
// only under the device lock.
#pragma once

#include "devices/virtio/virtio_blk.h"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <span>
#include <utility>
#include <vector>

namespace emu::devices {

struct VirtioBlk::Request {
    enum class Kind : uint8_t { Read, Write, Flush, Discard, WriteZeroes };
    // One backend call: a host-contiguous piece of guest RAM at a disk
    // offset (reads, writes), or a range (discard, write zeroes).
    struct Piece {
        uint64_t offset;
        std::span<uint8_t> buf;
        uint64_t bytes;
        bool unmap;
    };

    uint64_t generation = 0;
    uint16_t queue = 0;
    uint16_t head = 0;
    Kind kind = Kind::Read;
    uint64_t status_gpa = 0;
    uint32_t used_len = 1;    // bytes written into the chain on success (status included)
    uint64_t bytes = 0;       // data bytes (statistics)
    uint64_t end_offset = 0;  // where the last written byte ends (wr_highest_offset)
    bool flush_phase = false; // writethrough: the flush after the data
    std::vector<Piece> pieces;
    std::vector<std::pair<uint64_t, uint64_t>> written; // guest ranges a read fills
    std::chrono::steady_clock::time_point started;

    std::atomic<unsigned> pending{0}; // backend calls not completed yet
    std::atomic<int> error{0};        // the first failure's errno (EIO if it had none)
};

} // namespace emu::devices
