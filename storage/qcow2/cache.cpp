// storage/qcow2/cache.cpp — LRU metadata cache with dependent write-back.
#include "storage/qcow2/cache.h"

#include <algorithm>

namespace emu::storage::qcow2 {

MetadataCache::MetadataCache(size_t table_bytes, size_t capacity, Reader reader, Writer writer)
    : m_table_bytes(table_bytes), m_capacity(std::max<size_t>(capacity, 4)), m_reader(std::move(reader)),
      m_writer(std::move(writer))
{
}

Result<void> MetadataCache::write_back(Table& t)
{
    if (!t.dirty)
        return {};
    if (m_depends_on) {
        if (auto r = m_depends_on->flush(); !r)
            return r;
    }
    if (auto r = m_writer(t.offset, t.data); !r)
        return r;
    t.dirty = false;
    return {};
}

Result<void> MetadataCache::make_room()
{
    while (m_tables.size() >= m_capacity) {
        auto victim = m_tables.end();
        for (auto it = m_tables.begin(); it != m_tables.end(); ++it) {
            if (it->second.use_count() > 1)
                continue;
            if (victim == m_tables.end() || it->second->last_use < victim->second->last_use)
                victim = it;
        }
        if (victim == m_tables.end())
            return {}; // everything is in use: grow past the capacity for now
        if (auto r = write_back(*victim->second); !r)
            return r;
        m_tables.erase(victim);
    }
    return {};
}

Result<TableRef> MetadataCache::get(uint64_t offset)
{
    if (auto it = m_tables.find(offset); it != m_tables.end()) {
        it->second->last_use = ++m_clock;
        return it->second;
    }
    if (auto r = make_room(); !r)
        return std::unexpected(r.error());
    auto t = std::make_shared<Table>();
    t->offset = offset;
    t->data.resize(m_table_bytes);
    if (auto r = m_reader(offset, t->data); !r)
        return std::unexpected(r.error());
    t->last_use = ++m_clock;
    m_tables.emplace(offset, t);
    return t;
}

Result<TableRef> MetadataCache::get_empty(uint64_t offset)
{
    if (auto it = m_tables.find(offset); it != m_tables.end()) {
        std::fill(it->second->data.begin(), it->second->data.end(), 0);
        it->second->last_use = ++m_clock;
        return it->second;
    }
    if (auto r = make_room(); !r)
        return std::unexpected(r.error());
    auto t = std::make_shared<Table>();
    t->offset = offset;
    t->data.assign(m_table_bytes, 0);
    t->last_use = ++m_clock;
    m_tables.emplace(offset, t);
    return t;
}

Result<void> MetadataCache::flush()
{
    bool any = false;
    for (auto& [off, t] : m_tables)
        any |= t->dirty;
    if (!any)
        return {};
    // Write in offset order: sequential for the disk.
    std::vector<Table*> dirty;
    for (auto& [off, t] : m_tables)
        if (t->dirty)
            dirty.push_back(t.get());
    std::sort(dirty.begin(), dirty.end(), [](Table* a, Table* b) { return a->offset < b->offset; });
    for (Table* t : dirty) {
        if (auto r = write_back(*t); !r)
            return r;
    }
    return {};
}

void MetadataCache::discard(uint64_t offset)
{
    m_tables.erase(offset);
}

} // namespace emu::storage::qcow2
