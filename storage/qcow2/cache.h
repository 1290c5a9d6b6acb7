// storage/qcow2/cache.h — the L2 / refcount-block metadata cache.
//
// A small LRU of cluster-sized tables keyed by their host offset. Dirty tables
// are written back on flush and on eviction; a cache may depend on another
// (L2 tables depend on refcount blocks), which is flushed first so that a crash
// leaks clusters rather than referencing unaccounted ones. Tables in use (a
// shared_ptr held outside) are never evicted.
#pragma once

#include "storage/error.h"

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <unordered_map>
#include <vector>

namespace emu::storage::qcow2 {

struct Table {
    uint64_t offset = 0;
    std::vector<uint8_t> data;
    bool dirty = false;
    uint64_t last_use = 0;
};
using TableRef = std::shared_ptr<Table>;

class MetadataCache {
public:
    using Reader = std::function<Result<void>(uint64_t offset, std::span<uint8_t> buf)>;
    using Writer = std::function<Result<void>(uint64_t offset, std::span<const uint8_t> buf)>;

    MetadataCache(size_t table_bytes, size_t capacity, Reader reader, Writer writer);

    void set_depends_on(MetadataCache* other) { m_depends_on = other; }
    // Returns the table at `offset`, reading it on a miss.
    Result<TableRef> get(uint64_t offset);
    // Returns a zero-filled table at `offset` without reading (a new allocation).
    Result<TableRef> get_empty(uint64_t offset);
    void mark_dirty(const TableRef& t) { t->dirty = true; }
    Result<void> flush();
    // Forgets a table (its cluster was freed); a dirty table is dropped unwritten.
    void discard(uint64_t offset);
    size_t capacity() const { return m_capacity; }

private:
    Result<void> make_room();
    Result<void> write_back(Table& t);

    size_t m_table_bytes;
    size_t m_capacity;
    Reader m_reader;
    Writer m_writer;
    MetadataCache* m_depends_on = nullptr;
    std::unordered_map<uint64_t, TableRef> m_tables;
    uint64_t m_clock = 0;
};

} // namespace emu::storage::qcow2
