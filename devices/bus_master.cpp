#include "devices/bus_master.h"

#include "engine/memory/address_space.h"
#include "engine/memory/ram_block.h"
#include "engine/x86/code_tracker.h"

#include <cstring>

namespace emu::devices {

bool MachineBusMaster::map(uint64_t gpa, uint64_t len, bool for_write, std::vector<std::span<uint8_t>>& out)
{
    if (len != 0 && gpa + len - 1 < gpa)
        return false; // wraps past 2^64
    size_t first = out.size();
    while (len > 0) {
        mem::Lookup l = m_memory.lookup(gpa);
        if (l.kind != mem::Lookup::Kind::Ram || (for_write && !l.writable) || l.length == 0) {
            out.resize(first);
            return false;
        }
        uint64_t n = std::min(len, l.length);
        if (!out.empty() && out.size() > first && out.back().data() + out.back().size() == l.host)
            out.back() = std::span<uint8_t>(out.back().data(), out.back().size() + n);
        else
            out.emplace_back(l.host, n);
        gpa += n;
        len -= n;
    }
    return true;
}

bool MachineBusMaster::read(uint64_t gpa, void* buf, uint64_t len)
{
    std::vector<std::span<uint8_t>> pieces;
    if (!map(gpa, len, false, pieces))
        return false;
    auto* dst = static_cast<uint8_t*>(buf);
    for (auto piece : pieces) {
        std::memcpy(dst, piece.data(), piece.size());
        dst += piece.size();
    }
    return true;
}

bool MachineBusMaster::write(uint64_t gpa, const void* buf, uint64_t len)
{
    std::vector<std::span<uint8_t>> pieces;
    if (!map(gpa, len, true, pieces))
        return false;
    const auto* src = static_cast<const uint8_t*>(buf);
    for (auto piece : pieces) {
        std::memcpy(piece.data(), src, piece.size());
        src += piece.size();
    }
    written(gpa, len);
    return true;
}

void MachineBusMaster::written(uint64_t gpa, uint64_t len)
{
    if (len == 0)
        return;
    uint64_t end = gpa + len;
    uint64_t at = gpa;
    while (at < end) {
        mem::Lookup l = m_memory.lookup(at);
        uint64_t n = std::min(end - at, l.length ? l.length : end - at);
        if (l.kind == mem::Lookup::Kind::Ram && l.block)
            l.block->mark_dirty(l.ram_offset, n);
        at += n;
    }
    for (uint64_t page = gpa & ~0xfffull; page < end; page += 0x1000)
        m_code.written(page, x86::CodeTracker::k_max_vcpus); // a writer that is no vCPU
}

} // namespace emu::devices
