// engine/memory/dirty.h — per-page dirty bitmaps of one RAM block.
//
// Every RAM/ROM block has one `DirtyLog`: a bitmap per client (Migration,
// Code, Display) plus a bitmap of the pages that hold translated code. A bit
// covers one 4 KiB page of the block. Offsets are byte offsets into the block
// ("ram offsets"); ranges are clipped to the block, so a caller passing a
// guest-derived range can never touch memory outside the bitmaps.
//
// Concurrency: vCPU threads set bits (`mark_dirty`) while the migration or
// display thread clears them (`test_and_clear`, `snapshot_and_clear`); all bit
// operations are atomic read-modify-writes through std::atomic_ref, with
// acquire/release so that a thread that clears a bit and then copies the page
// sees every byte written before the bit was set (writers store the data
// first, then mark it dirty). `enable`/`disable` and the code-write handler
// are configuration: change them from the control thread.
//
// Storage is an anonymous NORESERVE mapping: a bitmap that is never set costs
// no resident memory (1 GiB of guest RAM needs 32 KiB per bitmap).
#pragma once

#include "engine/memory/error.h"

#include <atomic>
#include <cstdint>
#include <functional>
#include <span>
#include <string_view>
#include <vector>

namespace emu::mem {

inline constexpr unsigned kPageShift = 12;
inline constexpr uint64_t kPageSize = uint64_t{1} << kPageShift;

enum class DirtyClient : unsigned { Migration = 0, Code = 1, Display = 2 };
inline constexpr unsigned kDirtyClientCount = 3;
const char* dirty_client_name(DirtyClient client);

class DirtyLog {
public:
    // Called (on the writing thread, after the bytes are stored) once per
    // write that touches at least one page marked with `set_code`, with the
    // whole written range: this is how self-modifying code is invalidated.
    using CodeWriteHandler = std::function<void(uint64_t ram_offset, uint64_t len)>;

    DirtyLog() = default;
    ~DirtyLog();
    DirtyLog(const DirtyLog&) = delete;
    DirtyLog& operator=(const DirtyLog&) = delete;

    // Allocates the bitmaps for `size` bytes of RAM; `owner` names errors.
    Result<void> init(std::string_view owner, uint64_t size);

    uint64_t pages() const { return m_pages; }

    // Clients. A disabled client's bits are not set by writes; enabling or
    // disabling leaves the bits as they are (use clear/set_all to reset).
    void enable(DirtyClient client);
    void disable(DirtyClient client);
    bool enabled(DirtyClient client) const { return (enabled_mask() >> unsigned(client)) & 1; }
    unsigned enabled_mask() const { return m_enabled.load(std::memory_order_relaxed); }

    // A write of [offset, offset+len) happened: sets the bits of every enabled
    // client and calls the code-write handler once if a code page is touched.
    // Used by the AddressSpace accessors, the JIT's store fast path and DMA.
    void mark_dirty(uint64_t offset, uint64_t len);

    // True if any page of the range was dirty for `client`; clears them.
    bool test_and_clear(DirtyClient client, uint64_t offset, uint64_t len);
    bool is_dirty(DirtyClient client, uint64_t offset) const;
    // Bit i of the result is page (offset >> 12) + i of the range's pages;
    // the returned pages are cleared atomically word by word.
    std::vector<uint64_t> snapshot_and_clear(DirtyClient client, uint64_t offset, uint64_t len);
    void set_all(DirtyClient client);   // e.g. migration's first pass
    void clear_all(DirtyClient client);
    uint64_t count(DirtyClient client) const; // dirty pages

    // Pages holding translated code. Whoever sets a code mark must also drop
    // any writable fast-path TLB entry for that page on every vCPU.
    void set_code(uint64_t offset);
    void clear_code(uint64_t offset);
    bool has_code(uint64_t offset) const; // the page of `offset`; cheap (one load)
    bool has_code(uint64_t offset, uint64_t len) const;
    // Set before vCPUs run (not synchronised with concurrent writes).
    void set_code_write_handler(CodeWriteHandler handler) { m_code_handler = std::move(handler); }

private:
    static constexpr unsigned kCodeMap = kDirtyClientCount; // index of the code-page bitmap
    static constexpr unsigned kMapCount = kDirtyClientCount + 1;

    std::atomic_ref<uint64_t> word(unsigned map, uint64_t index) const
    {
        return std::atomic_ref<uint64_t>(m_bits[map * m_words + index]);
    }
    // Clips [offset, offset+len) to the block; false if nothing is left.
    bool page_span(uint64_t offset, uint64_t len, uint64_t& first, uint64_t& last) const;
    void set_bits(unsigned map, uint64_t first, uint64_t last);
    bool any_bits(unsigned map, uint64_t first, uint64_t last) const;

    uint64_t* m_bits = nullptr;
    uint64_t m_map_bytes = 0;
    uint64_t m_words = 0; // per bitmap
    uint64_t m_pages = 0;
    uint64_t m_size = 0;
    std::atomic<unsigned> m_enabled{0};
    CodeWriteHandler m_code_handler;
};

} // namespace emu::mem
