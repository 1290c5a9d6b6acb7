#include "engine/memory/region.h"

#include "engine/memory/address_space.h"

#include <algorithm>
#include <cassert>
#include <fmt/format.h>

namespace emu::mem {

namespace {

uint64_t byte_mask(unsigned bytes)
{
    return bytes >= 8 ? ~uint64_t{0} : (uint64_t{1} << (8 * bytes)) - 1;
}

bool valid_access_size(unsigned n)
{
    return n == 1 || n == 2 || n == 4 || n == 8;
}

// Inclusive last byte of [offset, offset+size), or false on wrap past 2^64.
bool last_byte(uint64_t offset, uint64_t size, uint64_t& last)
{
    if (size - 1 > UINT64_MAX - offset)
        return false;
    last = offset + size - 1;
    return true;
}

// One device access of the I/O access policy: the device sees
// (chunk, width); the bytes [skip, skip+used) of it are the ones asked for.
struct Piece {
    uint64_t chunk;
    unsigned width;
    unsigned skip;
    unsigned used;
};

Piece next_piece(uint64_t pos, uint64_t end, unsigned min, unsigned max)
{
    unsigned w = max;
    while (w > min && (pos % w || end - pos < w))
        w >>= 1;
    if (pos % w == 0 && end - pos >= w)
        return {pos, w, 0, w};
    uint64_t chunk = pos & ~uint64_t(min - 1); // widen to the aligned min_access word
    return {chunk, min, unsigned(pos - chunk), unsigned(std::min<uint64_t>(end, chunk + min) - pos)};
}

// Is `target` reachable from `from` going down (children, alias targets)?
bool reaches(const MemoryRegion* from, const MemoryRegion* target)
{
    if (from == target)
        return true;
    if (from->alias_target() && reaches(from->alias_target(), target))
        return true;
    for (const MemoryRegion* c : from->children())
        if (reaches(c, target))
            return true;
    return false;
}

} // namespace

const char* region_kind_name(RegionKind kind)
{
    switch (kind) {
    case RegionKind::Ram: return "ram";
    case RegionKind::Rom: return "rom";
    case RegionKind::Io: return "i/o";
    case RegionKind::Alias: return "alias";
    case RegionKind::Container: return "container";
    }
    return "?";
}

MemoryRegion::MemoryRegion(std::string name, RegionKind kind, uint64_t size)
    : m_name(std::move(name)), m_kind(kind), m_size(size)
{
}

MemoryRegion::~MemoryRegion()
{
    assert(m_spaces.empty() && "an AddressSpace outlives its root region");
    assert(m_alias_users.empty() && "an alias outlives its target region");
    if (m_parent)
        m_parent->remove_subregion(*this);
    for (MemoryRegion* c : m_children)
        c->m_parent = nullptr;
    if (m_alias_target)
        std::erase(m_alias_target->m_alias_users, this);
}

Result<MemoryRegion::Ptr> MemoryRegion::ram(std::string name, uint64_t size)
{
    auto block = RamBlock::create(name, size);
    if (!block)
        return std::unexpected(block.error());
    Ptr r(new MemoryRegion(std::move(name), RegionKind::Ram, size));
    r->m_block = std::move(*block);
    return r;
}

Result<MemoryRegion::Ptr> MemoryRegion::rom(std::string name, uint64_t size)
{
    auto r = ram(std::move(name), size);
    if (r) {
        (*r)->m_kind = RegionKind::Rom;
        (*r)->m_readonly = true;
    }
    return r;
}

Result<MemoryRegion::Ptr> MemoryRegion::io(std::string name, uint64_t size, IoOps ops)
{
    if (size == 0)
        return fail(fmt::format("{}: I/O region size is 0", name));
    if (!valid_access_size(ops.min_access) || !valid_access_size(ops.max_access) || ops.min_access > ops.max_access)
        return fail(fmt::format("{}: access sizes {}..{} are not 1, 2, 4 or 8 bytes with min <= max", name,
                                ops.min_access, ops.max_access));
    if (size % ops.min_access)
        return fail(fmt::format("{}: size {:#x} is not a multiple of the minimum access size {}", name, size,
                                ops.min_access));
    Ptr r(new MemoryRegion(std::move(name), RegionKind::Io, size));
    r->m_ops = std::move(ops);
    return r;
}

Result<MemoryRegion::Ptr> MemoryRegion::alias(std::string name, MemoryRegion& target, uint64_t offset, uint64_t size)
{
    uint64_t last;
    if (size == 0)
        return fail(fmt::format("{}: alias size is 0", name));
    if (!last_byte(offset, size, last) || last >= target.m_size)
        return fail(fmt::format("{}: alias window {:#x}+{:#x} exceeds '{}' (size {:#x})", name, offset, size,
                                target.m_name, target.m_size));
    Ptr r(new MemoryRegion(std::move(name), RegionKind::Alias, size));
    r->m_alias_target = &target;
    r->m_alias_offset = offset;
    target.m_alias_users.push_back(r.get());
    return r;
}

Result<MemoryRegion::Ptr> MemoryRegion::container(std::string name, uint64_t size)
{
    if (size == 0)
        return fail(fmt::format("{}: container size is 0", name));
    return Ptr(new MemoryRegion(std::move(name), RegionKind::Container, size));
}

void MemoryRegion::set_enabled(bool enabled)
{
    if (m_enabled == enabled)
        return;
    m_enabled = enabled;
    topology_changed();
}

void MemoryRegion::set_readonly(bool readonly)
{
    assert((m_kind == RegionKind::Ram || m_kind == RegionKind::Alias) && "only RAM and aliases toggle read-only");
    if (m_readonly == readonly)
        return;
    m_readonly = readonly;
    topology_changed();
}

Result<void> MemoryRegion::load(uint64_t offset, const void* data, uint64_t len)
{
    if (!m_block)
        return fail(fmt::format("{}: cannot load data into a {} region", m_name, region_kind_name(m_kind)));
    if (!m_block->write(offset, data, len))
        return fail(fmt::format("{}: loading {:#x} bytes at {:#x} exceeds the region size {:#x}", m_name, len, offset,
                                m_size));
    return {};
}

uint64_t MemoryRegion::io_read(uint64_t offset, unsigned len)
{
    assert(m_kind == RegionKind::Io && len >= 1 && len <= 8 && offset < m_size && len <= m_size - offset);
    const unsigned min = m_ops.min_access, max = m_ops.max_access;
    if (len >= min && len <= max && offset % len == 0 && valid_access_size(len))
        return m_ops.read ? m_ops.read(offset, len) & byte_mask(len) : byte_mask(len);
    uint64_t result = 0;
    for (uint64_t pos = offset, end = offset + len; pos < end;) {
        Piece p = next_piece(pos, end, min, max);
        uint64_t v = m_ops.read ? m_ops.read(p.chunk, p.width) : ~uint64_t{0};
        result |= ((v >> (8 * p.skip)) & byte_mask(p.used)) << (8 * (pos - offset));
        pos += p.used;
    }
    return result;
}

void MemoryRegion::io_write(uint64_t offset, uint64_t value, unsigned len)
{
    assert(m_kind == RegionKind::Io && len >= 1 && len <= 8 && offset < m_size && len <= m_size - offset);
    if (!m_ops.write)
        return;
    const unsigned min = m_ops.min_access, max = m_ops.max_access;
    if (len >= min && len <= max && offset % len == 0 && valid_access_size(len)) {
        m_ops.write(offset, value & byte_mask(len), len);
        return;
    }
    for (uint64_t pos = offset, end = offset + len; pos < end;) {
        Piece p = next_piece(pos, end, min, max);
        uint64_t bytes = (value >> (8 * (pos - offset))) & byte_mask(p.used);
        if (p.used == p.width) {
            m_ops.write(p.chunk, bytes, p.width);
        } else {
            uint64_t old = m_ops.read ? m_ops.read(p.chunk, p.width) : ~uint64_t{0};
            uint64_t keep = ~(byte_mask(p.used) << (8 * p.skip));
            m_ops.write(p.chunk, ((old & keep) | (bytes << (8 * p.skip))) & byte_mask(p.width), p.width);
        }
        pos += p.used;
    }
}

Result<void> MemoryRegion::set_alias_offset(uint64_t offset)
{
    assert(m_kind == RegionKind::Alias);
    uint64_t last;
    if (!last_byte(offset, m_size, last) || last >= m_alias_target->m_size)
        return fail(fmt::format("{}: alias window {:#x}+{:#x} exceeds '{}' (size {:#x})", m_name, offset, m_size,
                                m_alias_target->m_name, m_alias_target->m_size));
    if (offset != m_alias_offset) {
        m_alias_offset = offset;
        topology_changed();
    }
    return {};
}

Result<void> MemoryRegion::check_placement(const MemoryRegion& child, uint64_t offset, int priority) const
{
    uint64_t last;
    if (!last_byte(offset, child.m_size, last))
        return fail(fmt::format("{}: subregion '{}' at {:#x} (size {:#x}) extends past the end of the 64-bit space",
                                m_name, child.m_name, offset, child.m_size));
    for (const MemoryRegion* s : m_children) {
        if (s == &child || s->m_priority != priority)
            continue;
        uint64_t s_last = s->m_offset + s->m_size - 1;
        if (offset <= s_last && s->m_offset <= last)
            return fail(fmt::format("{}: subregion '{}' at {:#x} overlaps '{}' at {:#x}-{:#x} at equal priority {}",
                                    m_name, child.m_name, offset, s->m_name, s->m_offset, s_last, priority));
    }
    return {};
}

Result<void> MemoryRegion::add_subregion(MemoryRegion& child, uint64_t offset, int priority)
{
    if (m_kind != RegionKind::Container)
        return fail(fmt::format("{}: cannot add subregion '{}' to a {} region", m_name, child.m_name,
                                region_kind_name(m_kind)));
    if (child.m_parent)
        return fail(fmt::format("{}: subregion '{}' is already in '{}'", m_name, child.m_name, child.m_parent->m_name));
    if (reaches(&child, this))
        return fail(fmt::format("{}: adding subregion '{}' would make a cycle", m_name, child.m_name));
    if (auto r = check_placement(child, offset, priority); !r)
        return r;
    child.m_parent = this;
    child.m_offset = offset;
    child.m_priority = priority;
    // Keep children sorted by priority, highest first (rendering order).
    auto at = std::find_if(m_children.begin(), m_children.end(),
                           [&](const MemoryRegion* s) { return s->m_priority < priority; });
    m_children.insert(at, &child);
    topology_changed();
    return {};
}

void MemoryRegion::remove_subregion(MemoryRegion& child)
{
    assert(child.m_parent == this && "removing a region that is not a subregion of this container");
    std::erase(m_children, &child);
    child.m_parent = nullptr;
    topology_changed();
}

Result<void> MemoryRegion::set_offset(uint64_t offset)
{
    if (!m_parent) {
        m_offset = offset;
        return {};
    }
    if (offset == m_offset)
        return {};
    if (auto r = m_parent->check_placement(*this, offset, m_priority); !r)
        return r;
    m_offset = offset;
    m_parent->topology_changed();
    return {};
}

void MemoryRegion::topology_changed()
{
    // Every address space whose root reaches this region (through parents
    // and aliases) needs a new flat view; the batch rebuilds each once.
    TopologyBatch batch;
    std::vector<const MemoryRegion*> seen;
    std::vector<const MemoryRegion*> todo{this};
    while (!todo.empty()) {
        const MemoryRegion* r = todo.back();
        todo.pop_back();
        if (std::find(seen.begin(), seen.end(), r) != seen.end())
            continue;
        seen.push_back(r);
        for (AddressSpace* as : r->m_spaces)
            as->schedule_rebuild();
        if (r->m_parent)
            todo.push_back(r->m_parent);
        todo.insert(todo.end(), r->m_alias_users.begin(), r->m_alias_users.end());
    }
}

std::string MemoryRegion::dump_tree(uint64_t base) const
{
    std::string out;
    std::vector<const MemoryRegion*> aliased;
    dump(out, base, 0, aliased);
    // Aliased regions, as `info mtree` lists them (their own aliases too).
    for (size_t i = 0; i < aliased.size(); ++i) {
        out += fmt::format("\nmemory-region: {}\n", aliased[i]->m_name);
        aliased[i]->dump(out, 0, 1, aliased);
    }
    return out;
}

void MemoryRegion::dump(std::string& out, uint64_t start, int depth, std::vector<const MemoryRegion*>& aliased) const
{
    out += fmt::format("{:{}}{:016x}-{:016x} (prio {}, {}{}): ", "", 2 * depth, start, start + m_size - 1, m_priority,
                       m_kind == RegionKind::Alias && m_alias_target ? region_kind_name(m_alias_target->m_kind)
                                                                     : region_kind_name(m_kind),
                       m_readonly && m_kind != RegionKind::Rom ? ", readonly" : "");
    if (m_kind == RegionKind::Alias) {
        out += fmt::format("alias {} @{} {:016x}-{:016x}", m_name, m_alias_target->m_name, m_alias_offset,
                           m_alias_offset + m_size - 1);
        if (std::find(aliased.begin(), aliased.end(), m_alias_target) == aliased.end())
            aliased.push_back(m_alias_target);
    } else {
        out += m_name;
    }
    out += m_enabled ? "\n" : " [disabled]\n";
    for (const MemoryRegion* c : m_children)
        c->dump(out, start + c->m_offset, depth + 1, aliased);
}

} // namespace emu::mem
