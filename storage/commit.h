// storage/commit.h — committing an image into a backing image below it: what
// `emu-img commit`, the daemon's block-commit job and HMP `commit` share.
//
// The copy goes run by run (commit_step), so that a caller can interleave it
// with other I/O (the daemon holds the BlockBackend's lock for one run at a
// time), rate-limit it and report progress. Only runs that a layer above the
// base decides are written; a layer that stores zeroes gives a write_zeroes.
#pragma once

#include "storage/block_driver.h"

#include <string>
#include <vector>

namespace emu::storage {

struct CommitRun {
    uint64_t length = 0; // bytes from the offset that were looked at
    bool copied = false; // a layer above the base held them: they were written into it
};

class CommitCopier {
public:
    // `base` is a layer of top's backing chain (as backing() walks it).
    CommitCopier(BlockDriver& top, BlockDriver& base, uint64_t chunk = uint64_t(1) << 20);

    // The base must be as large as the top: grows it if it is smaller.
    Result<void> prepare();
    // One run at `offset` (at most one chunk).
    Result<CommitRun> step(uint64_t offset);
    // [offset, offset+len) as the top reads it, written into the base
    // whatever decides it (the ranges the guest wrote during an active commit).
    Result<void> copy(uint64_t offset, uint64_t len);
    uint64_t size() const { return m_top.size(); }

private:
    Result<bool> above_base(uint64_t offset, uint64_t* len, bool* zero);

    BlockDriver& m_top;
    BlockDriver& m_base;
    std::vector<uint8_t> m_buf;
};

// Do both names lead to the same host file (device and inode)?
bool same_file(const std::string& a, const std::string& b);

// The image `name` in the backing chain below `top` (not top itself): by the
// file name it was opened with, the name its overlay records, or the same
// host file; nullptr if none is.
BlockDriver* find_backing_image(BlockDriver& top, const std::string& name);
// The last image of top's backing chain (top itself if it has none).
BlockDriver* chain_bottom(BlockDriver& top);
// The layer whose backing() is `image` in top's chain (nullptr if none).
BlockDriver* overlay_of(BlockDriver& top, BlockDriver& image);

// Graph changes after a commit, in memory only (the caller records a new
// backing file name with set_backing_file() and closes what it gets back).
//
// unlink_layers: the layers strictly between `overlay` and `base` leave the
// chain, so that overlay's backing is base (an intermediate commit). Returns
// the top of the removed layers.
Result<std::unique_ptr<BlockDriver>> unlink_layers(BlockDriver& overlay, BlockDriver& base);
// make_root: `base`, a layer below `root`, becomes the root (an active
// commit's pivot). Returns the old root with the layers that were above base.
Result<std::unique_ptr<BlockDriver>> make_root(std::unique_ptr<BlockDriver>& root, BlockDriver& base);

} // namespace emu::storage
