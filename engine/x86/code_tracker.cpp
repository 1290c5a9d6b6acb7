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
        auto& mask = m_pages[page];
        fresh = mask.none();
        mask.set(slot);
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
    std::bitset<k_max_vcpus> mask;
    {
        std::lock_guard lock(m_mutex);
        auto it = m_pages.find(page);
        if (it == m_pages.end())
            return false;
        mask = it->second;
        m_pages.erase(it);
    }
    unsigned n = m_next.load();
    for (unsigned i = 0; i < n; i++) {
        if (!mask.test(i) || i == writer)
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
        it->second.reset(slot);
        it = it->second.any() ? std::next(it) : m_pages.erase(it);
    }
}

} // namespace emu::x86
