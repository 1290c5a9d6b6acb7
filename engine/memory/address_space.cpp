#include "engine/memory/address_space.h"

#include "common/log.h"

#include <algorithm>
#include <array>
#include <bit>
#include <cassert>
#include <cstring>

namespace emu::mem {

static_assert(std::endian::native == std::endian::little, "guest and host are little-endian x86");

namespace {

// Per-thread cache of published views, keyed by AddressSpace id.
struct CachedView {
    uint64_t space = 0;
    std::shared_ptr<const FlatView> view;
};
struct ThreadViews {
    std::array<CachedView, 4> slots; // memory + port I/O of a VM, with room to spare
    unsigned next = 0;
    unsigned depth = 0; // accesses in progress on this thread (device callbacks nest)
    // Views replaced while an outer access may still use them; freed when
    // the outermost access ends.
    std::vector<std::shared_ptr<const FlatView>> retired;
};
thread_local ThreadViews t_views;

std::atomic<uint64_t> g_next_space_id{1};

thread_local unsigned t_batch_depth = 0;
thread_local std::vector<AddressSpace*> t_batch_pending;

constexpr uint64_t kLoggedUnassigned = 8;

[[maybe_unused]] bool valid_size(unsigned size)
{
    return size == 1 || size == 2 || size == 4 || size == 8;
}

// I/O part of a block transfer: aligned pieces of up to 8 bytes.
void io_read_bytes(MemoryRegion& r, uint64_t off, uint8_t* dst, uint64_t n)
{
    while (n) {
        unsigned c = unsigned(std::min<uint64_t>(n, 8 - off % 8));
        uint64_t v = r.io_read(off, c);
        memcpy(dst, &v, c);
        off += c, dst += c, n -= c;
    }
}

void io_write_bytes(MemoryRegion& r, uint64_t off, const uint8_t* src, uint64_t n)
{
    while (n) {
        unsigned c = unsigned(std::min<uint64_t>(n, 8 - off % 8));
        uint64_t v = 0;
        memcpy(&v, src, c);
        r.io_write(off, v, c);
        off += c, src += c, n -= c;
    }
}

} // namespace

// Keeps the calling thread's view of an address space alive for the
// duration of one access (see the header comment).
class ViewPin {
public:
    explicit ViewPin(const AddressSpace& as)
    {
        ++t_views.depth;
        m_view = &as.cached_view();
    }
    ~ViewPin()
    {
        if (--t_views.depth == 0 && !t_views.retired.empty())
            t_views.retired.clear();
    }
    ViewPin(const ViewPin&) = delete;
    ViewPin& operator=(const ViewPin&) = delete;
    const FlatView& view() const { return *m_view; }

private:
    const FlatView* m_view;
};

std::string describe(const BufStatus& status)
{
    switch (status.cause) {
    case BufStatus::Cause::Ok: return "ok";
    case BufStatus::Cause::Unassigned: return fmt::format("{:#x}: unassigned", status.addr);
    case BufStatus::Cause::ReadOnly: return fmt::format("{:#x}: read-only", status.addr);
    case BufStatus::Cause::NotMemory: return fmt::format("{:#x}: not RAM or ROM", status.addr);
    case BufStatus::Cause::Wrap: return fmt::format("{:#x}: range wraps past the end of the address space", status.addr);
    }
    return "?";
}

AddressSpace::AddressSpace(std::string name, MemoryRegion& root)
    : m_name(std::move(name)), m_root(root), m_id(g_next_space_id.fetch_add(1, std::memory_order_relaxed))
{
    m_root.m_spaces.push_back(this);
    rebuild();
}

AddressSpace::~AddressSpace()
{
    std::erase(m_root.m_spaces, this);
    if (m_pending)
        std::erase(t_batch_pending, this);
}

void AddressSpace::schedule_rebuild()
{
    if (t_batch_depth == 0) {
        rebuild();
    } else if (!m_pending) {
        m_pending = true;
        t_batch_pending.push_back(this);
    }
}

void AddressSpace::rebuild()
{
    uint64_t gen = m_generation.load(std::memory_order_relaxed) + 1;
    std::shared_ptr<const FlatView> v = FlatView::build(m_root, gen);
    // View first, then the generation: a reader that sees the new generation
    // (acquire) also sees the new view.
    {
        std::lock_guard lock(m_view_lock);
        m_view = v;
    }
    m_generation.store(gen, std::memory_order_release);
    for (size_t i = 0; i < m_listeners.size(); ++i)
        m_listeners[i].second(v->ram_ranges());
}

TopologyBatch::TopologyBatch()
{
    ++t_batch_depth;
}

TopologyBatch::~TopologyBatch()
{
    if (--t_batch_depth)
        return;
    while (!t_batch_pending.empty()) {
        std::vector<AddressSpace*> list;
        list.swap(t_batch_pending);
        for (AddressSpace* as : list) {
            as->m_pending = false;
            as->rebuild();
        }
    }
}

const FlatView& AddressSpace::cached_view() const
{
    ThreadViews& tv = t_views;
    uint64_t gen = m_generation.load(std::memory_order_acquire);
    CachedView* slot = nullptr;
    for (CachedView& s : tv.slots) {
        if (s.space == m_id) {
            if (s.view->generation() == gen)
                return *s.view;
            slot = &s;
            break;
        }
    }
    if (!slot) {
        slot = &tv.slots[tv.next++ % tv.slots.size()];
        slot->space = m_id;
    }
    if (tv.depth > 1 && slot->view)
        tv.retired.push_back(std::move(slot->view));
    slot->view = view();
    return *slot->view;
}

std::shared_ptr<const FlatView> AddressSpace::view() const
{
    std::lock_guard lock(m_view_lock);
    return m_view;
}

Lookup AddressSpace::lookup(uint64_t gpa) const
{
    ViewPin pin(*this);
    Lookup l;
    const FlatRange* r = pin.view().find_from(gpa);
    if (!r || r->start > gpa) {
        uint64_t top = r ? r->start : 0; // 0: the end of the 64-bit space
        l.length = top - gpa ? top - gpa : UINT64_MAX;
        return l;
    }
    l.length = r->end - gpa;
    l.region = r->region;
    l.offset = r->offset + (gpa - r->start);
    if (r->block) {
        l.kind = Lookup::Kind::Ram;
        l.writable = !r->readonly;
        l.host = r->host + (gpa - r->start);
        l.block = r->block;
        l.ram_offset = l.offset;
    } else {
        l.kind = Lookup::Kind::Io;
    }
    return l;
}

void AddressSpace::note_unassigned(const char* what, uint64_t gpa, unsigned size)
{
    uint64_t n = m_unassigned.fetch_add(1, std::memory_order_relaxed);
    if (n < kLoggedUnassigned)
        log_warn("{}: unassigned {} of {} byte(s) at {:#x}{}", m_name, what, size, gpa,
                 n + 1 == kLoggedUnassigned ? " (further ones not logged)" : "");
}

uint64_t AddressSpace::read(uint64_t gpa, unsigned size)
{
    assert(valid_size(size));
    ViewPin pin(*this);
    const FlatView& v = pin.view();
    const FlatRange* r = v.find(gpa);
    if (r && size <= r->end - gpa) { // the common case: one range
        uint64_t off = r->offset + (gpa - r->start);
        if (!r->host)
            return r->region->io_read(off, size);
        uint64_t val = 0;
        memcpy(&val, r->host + (gpa - r->start), size);
        return val;
    }
    // Split by byte range; bytes past 2^64-1 and holes read as 0xff.
    uint8_t bytes[8];
    memset(bytes, 0xff, sizeof bytes);
    unsigned in_space = size - 1 > UINT64_MAX - gpa ? unsigned(0 - gpa) : size;
    bool unassigned = in_space < size;
    for (unsigned i = 0; i < in_space;) {
        uint64_t pos = gpa + i;
        unsigned left = in_space - i;
        r = v.find_from(pos);
        if (!r || r->start > pos) {
            unassigned = true;
            i += r ? unsigned(std::min<uint64_t>(left, r->start - pos)) : left;
            continue;
        }
        unsigned n = unsigned(std::min<uint64_t>(left, r->end - pos));
        if (r->host) {
            memcpy(bytes + i, r->host + (pos - r->start), n);
        } else {
            uint64_t val = r->region->io_read(r->offset + (pos - r->start), n);
            memcpy(bytes + i, &val, n);
        }
        i += n;
    }
    if (unassigned)
        note_unassigned("read", gpa, size);
    uint64_t val = 0;
    memcpy(&val, bytes, size);
    return val;
}

void AddressSpace::write(uint64_t gpa, uint64_t value, unsigned size)
{
    assert(valid_size(size));
    ViewPin pin(*this);
    const FlatView& v = pin.view();
    unsigned in_space = size - 1 > UINT64_MAX - gpa ? unsigned(0 - gpa) : size;
    bool unassigned = in_space < size;
    for (unsigned i = 0; i < in_space;) {
        uint64_t pos = gpa + i;
        unsigned left = in_space - i;
        const FlatRange* r = v.find_from(pos);
        if (!r || r->start > pos) {
            unassigned = true;
            i += r ? unsigned(std::min<uint64_t>(left, r->start - pos)) : left;
            continue;
        }
        unsigned n = unsigned(std::min<uint64_t>(left, r->end - pos));
        uint64_t off = r->offset + (pos - r->start);
        uint64_t piece = i ? value >> (8 * i) : value;
        if (!r->host) {
            r->region->io_write(off, piece, n);
        } else if (!r->readonly) { // writes to ROM are dropped, as on the bus
            memcpy(r->host + (pos - r->start), &piece, n);
            r->block->mark_dirty(off, n);
        }
        i += n;
    }
    if (unassigned)
        note_unassigned("write", gpa, size);
}

BufStatus AddressSpace::read_buf(uint64_t gpa, void* buf, uint64_t len)
{
    if (len == 0)
        return {};
    if (len - 1 > UINT64_MAX - gpa)
        return {BufStatus::Cause::Wrap, gpa};
    ViewPin pin(*this);
    auto* dst = static_cast<uint8_t*>(buf);
    for (uint64_t done = 0; done < len;) {
        uint64_t pos = gpa + done;
        const FlatRange* r = pin.view().find(pos);
        if (!r)
            return {BufStatus::Cause::Unassigned, pos};
        uint64_t n = std::min(len - done, r->end - pos);
        if (r->host)
            memcpy(dst + done, r->host + (pos - r->start), n);
        else
            io_read_bytes(*r->region, r->offset + (pos - r->start), dst + done, n);
        done += n;
    }
    return {};
}

BufStatus AddressSpace::write_buf(uint64_t gpa, const void* buf, uint64_t len)
{
    return transfer_out(gpa, buf, len, WriteMode::Dma);
}

BufStatus AddressSpace::load_rom(uint64_t gpa, const void* buf, uint64_t len)
{
    return transfer_out(gpa, buf, len, WriteMode::Loader);
}

BufStatus AddressSpace::transfer_out(uint64_t gpa, const void* buf, uint64_t len, WriteMode mode)
{
    if (len == 0)
        return {};
    if (len - 1 > UINT64_MAX - gpa)
        return {BufStatus::Cause::Wrap, gpa};
    ViewPin pin(*this);
    auto* src = static_cast<const uint8_t*>(buf);
    for (uint64_t done = 0; done < len;) {
        uint64_t pos = gpa + done;
        const FlatRange* r = pin.view().find(pos);
        if (!r)
            return {BufStatus::Cause::Unassigned, pos};
        uint64_t n = std::min(len - done, r->end - pos);
        uint64_t off = r->offset + (pos - r->start);
        if (!r->host) {
            if (mode == WriteMode::Loader)
                return {BufStatus::Cause::NotMemory, pos};
            io_write_bytes(*r->region, off, src + done, n);
        } else {
            if (r->readonly && mode != WriteMode::Loader)
                return {BufStatus::Cause::ReadOnly, pos};
            memcpy(r->host + (pos - r->start), src + done, n);
            r->block->mark_dirty(off, n);
        }
        done += n;
    }
    return {};
}

bool AddressSpace::test_and_clear_dirty(DirtyClient client, uint64_t gpa, uint64_t len)
{
    if (len == 0)
        return false;
    uint64_t last = len - 1 > UINT64_MAX - gpa ? UINT64_MAX : gpa + len - 1;
    ViewPin pin(*this);
    std::span<const FlatRange> ranges = pin.view().ranges();
    const FlatRange* r = pin.view().find_from(gpa);
    bool any = false;
    for (size_t i = r ? size_t(r - ranges.data()) : ranges.size(); i < ranges.size() && ranges[i].start <= last; ++i) {
        const FlatRange& f = ranges[i];
        if (!f.block)
            continue;
        uint64_t a = std::max(gpa, f.start), b = std::min(last, f.end - 1);
        any |= f.block->dirty().test_and_clear(client, f.offset + (a - f.start), b - a + 1);
    }
    return any;
}

AddressSpace::ListenerId AddressSpace::add_listener(Listener listener)
{
    ListenerId id = m_next_listener++;
    m_listeners.emplace_back(id, std::move(listener));
    m_listeners.back().second(view()->ram_ranges());
    return id;
}

void AddressSpace::remove_listener(ListenerId id)
{
    std::erase_if(m_listeners, [id](const auto& l) { return l.first == id; });
}

std::string AddressSpace::dump_tree() const
{
    return fmt::format("address-space: {}\n", m_name) + m_root.dump_tree();
}

std::string AddressSpace::dump_flat() const
{
    return view()->dump(m_name);
}

} // namespace emu::mem
