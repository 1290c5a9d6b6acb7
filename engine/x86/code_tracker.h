// engine/x86/code_tracker.h — which guest pages hold translated code, for
// all the vCPUs of one machine.
//
// A page that any vCPU has translated is never mapped writable in any vCPU's
// TLB, so every store to it reaches the bus slow path and comes here; the
// writer invalidates its own blocks at once and the other vCPUs that
// translated the page get it in their inbox, checked before each block.
// (Cross-modifying code between processors needs the executing processor to
// synchronise with the writer anyway; the inbox is read at its next block.)
#pragma once

#include <atomic>
#include <bitset>
#include <cstdint>
#include <mutex>
#include <unordered_map>
#include <vector>

namespace emu::x86 {

class CodeTracker {
public:
    static constexpr unsigned k_max_vcpus = 256; // machine 'pc' allows 255

    struct Inbox {
        std::atomic<bool> dirty{false};      // pages to invalidate are waiting
        std::atomic<bool> flush_tlb{false};  // a page became a code page: drop writable entries
        std::mutex mutex;
        std::vector<uint64_t> pages;
    };

    // Registers a vCPU; returns its slot.
    unsigned attach();
    Inbox& inbox(unsigned slot) { return m_inboxes[slot]; }

    bool has_code(uint64_t page);
    // The vCPU in 'slot' translated code on 'page'.
    void add(uint64_t page, unsigned slot);
    // A store reached a code page: every vCPU that translated it must drop its
    // blocks. Returns true if the page held code (the writer's own blocks too).
    // A writer that is no vCPU (DMA) passes k_max_vcpus.
    bool written(uint64_t page, unsigned writer);
    // The vCPU in 'slot' dropped all its blocks (flush_code).
    void forget(unsigned slot);

private:
    std::mutex m_mutex;
    std::unordered_map<uint64_t, std::bitset<k_max_vcpus>> m_pages; // page -> vCPU slots
    Inbox m_inboxes[k_max_vcpus];
    std::atomic<unsigned> m_next{0};
};

} // namespace emu::x86
