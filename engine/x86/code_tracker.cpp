#include "engine/x86/code_tracker.h"

#include <cstdlib>

namespace emu::x86 {

unsigned CodeTracker::attach()
{
    unsigned slot = m_next++;
    if (slot >= k_max_vcpus)
        abort(); // more vCPUs than the machine allows: a bug in the caller
    return slot;
}

bool CodeTracker::has_code(uint64_t page)
{
    std::lock_guard lock(m_mutex);
    return m_pages.count(page) != 0;
}

void CodeTracker::add(uint64_t page, unsigned slot)
{
    bool fresh;
    {
        std::lock_guard lock(m_mutex);
        uint64_t& mask = m_pages[page];
        fresh = mask == 0;
        mask |= 1ull << slot;
    }
    if (fresh) {
        // Other vCPUs may map the page writable: they drop those entries.
        unsigned n = m_next.load();
        for (unsigned i = 0; i < n; i++)
            if (i != slot)
                m_inboxes[i].flush_tlb.store(true, std::memory_order_release);
    }
}

bool CodeTracker::written(uint64_t page, unsigned writer)
{
    uint64_t mask;
    {
        std::lock_guard lock(m_mutex);
        auto it = m_pages.find(page);
        if (it == m_pages.end())
            return false;
        mask = it->second;
        m_pages.erase(it);
    }
    for (unsigned i = 0; i < k_max_vcpus; i++) {
        if (!(mask & (1ull << i)) || i == writer)
            continue;
        Inbox& box = m_inboxes[i];
        std::lock_guard lock(box.mutex);
        box.pages.push_back(page);
        box.dirty.store(true, std::memory_order_release);
    }
    return true;
}

void CodeTracker::forget(unsigned slot)
{
    std::lock_guard lock(m_mutex);
    for (auto it = m_pages.begin(); it != m_pages.end();) {
        it->second &= ~(1ull << slot);
        it = it->second ? std::next(it) : m_pages.erase(it);
    }
}

} // namespace emu::x86
