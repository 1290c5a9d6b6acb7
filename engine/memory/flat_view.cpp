#include "engine/memory/flat_view.h"

#include "engine/memory/region.h"

#include <algorithm>
#include <cassert>
#include <fmt/format.h>
#include <map>

namespace emu::mem {

namespace {

// Renders a region tree. Children are visited highest priority first and
// each leaf only fills the gaps left so far, so higher priorities win and
// holes show what lies below. Coordinates: a region's own offsets
// [lo, hi) map to absolute address delta + offset (mod 2^64; every absolute
// address produced lies inside the root, so the arithmetic is exact).
class Renderer {
public:
    void render(const MemoryRegion& r, uint64_t lo, uint64_t hi, uint64_t delta, bool readonly, int depth)
    {
        assert(depth < 64 && "region tree too deep (cycle?)");
        if (!r.enabled() || lo >= hi)
            return;
        readonly = readonly || r.readonly();
        switch (r.kind()) {
        case RegionKind::Ram:
        case RegionKind::Rom:
        case RegionKind::Io:
            fill(delta + lo, delta + hi, const_cast<MemoryRegion*>(&r), lo, readonly);
            break;
        case RegionKind::Alias: {
            uint64_t a = r.alias_offset(); // a + size <= target size: checked when set
            render(*r.alias_target(), lo + a, hi + a, delta - a, readonly, depth + 1);
            break;
        }
        case RegionKind::Container:
            for (const MemoryRegion* c : r.children()) {
                uint64_t co = c->offset();
                uint64_t cend = c->size() > UINT64_MAX - co ? UINT64_MAX : co + c->size();
                uint64_t a = std::max(lo, co), b = std::min(hi, cend);
                if (a < b)
                    render(*c, a - co, b - co, delta + co, readonly, depth + 1);
            }
            break;
        }
    }

    std::vector<FlatRange> take()
    {
        // Merge neighbours that continue the same region (holes refilled by
        // the region they interrupted): fewer ranges, fewer KVM slots.
        std::vector<FlatRange> out;
        out.reserve(m_map.size());
        for (auto& [start, r] : m_map) {
            if (!out.empty()) {
                FlatRange& p = out.back();
                if (p.end == r.start && p.region == r.region && p.readonly == r.readonly &&
                    p.offset + (p.end - p.start) == r.offset) {
                    p.end = r.end;
                    continue;
                }
            }
            out.push_back(r);
        }
        return out;
    }

private:
    // Maps [s, e) to region at offset `off`, only where nothing is mapped yet.
    void fill(uint64_t s, uint64_t e, MemoryRegion* region, uint64_t off, bool readonly)
    {
        uint64_t cur = s;
        auto it = m_map.upper_bound(s);
        if (it != m_map.begin()) {
            auto prev = std::prev(it);
            if (prev->second.end > cur)
                cur = prev->second.end;
        }
        while (cur < e) {
            it = m_map.lower_bound(cur);
            uint64_t gap_end = it == m_map.end() ? e : std::min(e, it->first);
            if (gap_end > cur)
                m_map.emplace(cur, piece(cur, gap_end, region, off + (cur - s), readonly));
            if (it == m_map.end() || it->first >= e)
                break;
            cur = it->second.end;
        }
    }

    static FlatRange piece(uint64_t start, uint64_t end, MemoryRegion* region, uint64_t off, bool readonly)
    {
        uint8_t* host = region->host() ? region->host() + off : nullptr;
        return FlatRange{start, end, region, off, host, region->ram_block(), readonly};
    }

    std::map<uint64_t, FlatRange> m_map;
};

} // namespace

std::shared_ptr<const FlatView> FlatView::build(const MemoryRegion& root, uint64_t generation)
{
    Renderer renderer;
    renderer.render(root, 0, root.size(), 0, false, 0);
    return std::make_shared<const FlatView>(renderer.take(), generation);
}

FlatView::FlatView(std::vector<FlatRange> ranges, uint64_t generation)
    : m_ranges(std::move(ranges)), m_generation(generation)
{
    for (const FlatRange& r : m_ranges)
        if (r.block)
            m_ram.push_back(RamRange{r.start, r.end - r.start, r.host, r.readonly, r.block, r.offset});
}

const FlatRange* FlatView::find_from(uint64_t addr) const
{
    auto it = std::upper_bound(m_ranges.begin(), m_ranges.end(), addr,
                               [](uint64_t a, const FlatRange& r) { return a < r.end; });
    return it == m_ranges.end() ? nullptr : &*it;
}

std::string FlatView::dump(std::string_view name) const
{
    std::string out = fmt::format("FlatView #{} for {}\n", m_generation, name);
    for (const FlatRange& r : m_ranges)
        out += fmt::format("  {:016x}-{:016x} ({}{}): {} @{:016x}\n", r.start, r.end - 1,
                           region_kind_name(r.region->kind()), r.readonly ? ", readonly" : "", r.region->name(),
                           r.offset);
    if (m_ranges.empty())
        out += "  (no regions)\n";
    return out;
}

} // namespace emu::mem
