#include "engine/memory/dirty.h"

#include <algorithm>
#include <bit>
#include <cassert>
#include <cerrno>
#include <cstring>
#include <fmt/format.h>
#include <sys/mman.h>

namespace emu::mem {

namespace {

// Mask of bits [lo, hi] (inclusive, 0..63) of one word.
uint64_t bit_mask(unsigned lo, unsigned hi)
{
    uint64_t upper = hi == 63 ? ~uint64_t{0} : (uint64_t{1} << (hi + 1)) - 1;
    return upper & ~((uint64_t{1} << lo) - 1);
}

// Calls fn(word_index, mask) for each bitmap word covering pages [first, last].
template <class Fn>
void for_each_word(uint64_t first, uint64_t last, Fn&& fn)
{
    for (uint64_t w = first / 64; w <= last / 64; ++w) {
        unsigned lo = w == first / 64 ? unsigned(first % 64) : 0;
        unsigned hi = w == last / 64 ? unsigned(last % 64) : 63;
        if (!fn(w, bit_mask(lo, hi)))
            return;
    }
}

} // namespace

const char* dirty_client_name(DirtyClient client)
{
    switch (client) {
    case DirtyClient::Migration: return "migration";
    case DirtyClient::Code: return "code";
    case DirtyClient::Display: return "display";
    }
    return "?";
}

DirtyLog::~DirtyLog()
{
    if (m_bits)
        munmap(m_bits, m_map_bytes);
}

Result<void> DirtyLog::init(std::string_view owner, uint64_t size)
{
    assert(!m_bits && size % kPageSize == 0 && size > 0);
    m_size = size;
    m_pages = size >> kPageShift;
    m_words = (m_pages + 63) / 64;
    m_map_bytes = (m_words * 8 * kMapCount + kPageSize - 1) & ~(kPageSize - 1);
    void* p = mmap(nullptr, m_map_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED)
        return fail(fmt::format("{}: cannot allocate dirty bitmaps ({} bytes): {}", owner, m_map_bytes, strerror(errno)));
    m_bits = static_cast<uint64_t*>(p);
    return {};
}

void DirtyLog::enable(DirtyClient client)
{
    m_enabled.fetch_or(1u << unsigned(client), std::memory_order_relaxed);
}

void DirtyLog::disable(DirtyClient client)
{
    m_enabled.fetch_and(~(1u << unsigned(client)), std::memory_order_relaxed);
}

bool DirtyLog::page_span(uint64_t offset, uint64_t len, uint64_t& first, uint64_t& last) const
{
    if (len == 0 || offset >= m_size)
        return false;
    uint64_t end_incl = len - 1 > m_size - 1 - offset ? m_size - 1 : offset + len - 1;
    first = offset >> kPageShift;
    last = end_incl >> kPageShift;
    return true;
}

void DirtyLog::set_bits(unsigned map, uint64_t first, uint64_t last)
{
    for_each_word(first, last, [&](uint64_t w, uint64_t mask) {
        auto ref = word(map, w);
        // Skip the locked RMW when the bits are already set: keeps the cache
        // line shared between vCPUs writing the same hot page.
        if ((ref.load(std::memory_order_relaxed) & mask) != mask)
            ref.fetch_or(mask, std::memory_order_release);
        return true;
    });
}

bool DirtyLog::any_bits(unsigned map, uint64_t first, uint64_t last) const
{
    bool any = false;
    for_each_word(first, last, [&](uint64_t w, uint64_t mask) {
        any = (word(map, w).load(std::memory_order_acquire) & mask) != 0;
        return !any;
    });
    return any;
}

void DirtyLog::mark_dirty(uint64_t offset, uint64_t len)
{
    uint64_t first, last;
    if (!page_span(offset, len, first, last))
        return;
    unsigned mask = enabled_mask();
    for (unsigned c = 0; mask; ++c, mask >>= 1)
        if (mask & 1)
            set_bits(c, first, last);
    if (m_code_handler && any_bits(kCodeMap, first, last))
        m_code_handler(offset, std::min(len, m_size - offset));
}

bool DirtyLog::test_and_clear(DirtyClient client, uint64_t offset, uint64_t len)
{
    uint64_t first, last;
    if (!page_span(offset, len, first, last))
        return false;
    bool any = false;
    for_each_word(first, last, [&](uint64_t w, uint64_t mask) {
        auto ref = word(unsigned(client), w);
        if (ref.load(std::memory_order_relaxed) & mask)
            any |= (ref.fetch_and(~mask, std::memory_order_acq_rel) & mask) != 0;
        return true;
    });
    return any;
}

bool DirtyLog::is_dirty(DirtyClient client, uint64_t offset) const
{
    if (offset >= m_size)
        return false;
    uint64_t page = offset >> kPageShift;
    return (word(unsigned(client), page / 64).load(std::memory_order_acquire) >> (page % 64)) & 1;
}

std::vector<uint64_t> DirtyLog::snapshot_and_clear(DirtyClient client, uint64_t offset, uint64_t len)
{
    uint64_t first, last;
    if (!page_span(offset, len, first, last))
        return {};
    uint64_t npages = last - first + 1;
    std::vector<uint64_t> out((npages + 63) / 64, 0);
    for_each_word(first, last, [&](uint64_t w, uint64_t mask) {
        auto ref = word(unsigned(client), w);
        uint64_t bits = 0;
        if (ref.load(std::memory_order_relaxed) & mask)
            bits = (mask == ~uint64_t{0} ? ref.exchange(0, std::memory_order_acq_rel)
                                         : ref.fetch_and(~mask, std::memory_order_acq_rel)) &
                   mask;
        if (!bits)
            return true;
        // Global page w*64+b goes to output bit (w*64+b - first).
        int64_t shift = int64_t(w * 64) - int64_t(first);
        if (shift < 0) {
            out[0] |= bits >> -shift;
        } else {
            uint64_t k = uint64_t(shift) / 64;
            unsigned r = unsigned(shift % 64);
            out[k] |= bits << r;
            if (r && k + 1 < out.size())
                out[k + 1] |= bits >> (64 - r);
        }
        return true;
    });
    return out;
}

void DirtyLog::set_all(DirtyClient client)
{
    set_bits(unsigned(client), 0, m_pages - 1);
}

void DirtyLog::clear_all(DirtyClient client)
{
    for (uint64_t w = 0; w < m_words; ++w) {
        auto ref = word(unsigned(client), w);
        if (ref.load(std::memory_order_relaxed))
            ref.store(0, std::memory_order_release);
    }
}

uint64_t DirtyLog::count(DirtyClient client) const
{
    uint64_t n = 0;
    for (uint64_t w = 0; w < m_words; ++w)
        n += std::popcount(word(unsigned(client), w).load(std::memory_order_relaxed));
    return n;
}

void DirtyLog::set_code(uint64_t offset)
{
    if (offset < m_size)
        set_bits(kCodeMap, offset >> kPageShift, offset >> kPageShift);
}

void DirtyLog::clear_code(uint64_t offset)
{
    if (offset >= m_size)
        return;
    uint64_t page = offset >> kPageShift;
    word(kCodeMap, page / 64).fetch_and(~(uint64_t{1} << (page % 64)), std::memory_order_release);
}

bool DirtyLog::has_code(uint64_t offset) const
{
    if (offset >= m_size)
        return false;
    uint64_t page = offset >> kPageShift;
    return (word(kCodeMap, page / 64).load(std::memory_order_acquire) >> (page % 64)) & 1;
}

bool DirtyLog::has_code(uint64_t offset, uint64_t len) const
{
    uint64_t first, last;
    return page_span(offset, len, first, last) && any_bits(kCodeMap, first, last);
}

} // namespace emu::mem
