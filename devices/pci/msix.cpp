// devices/pci/msix.cpp — MSI-X table, PBA and delivery (behaviour from the PCI
// Local Bus Specification 3.0, section 6.8.2).
#include "devices/pci/msix.h"

#include "common/log.h"

#include <algorithm>
#include <bit>
#include <cassert>
#include <cstring>

namespace emu::devices {

namespace {

constexpr unsigned kEntrySize = 16;
constexpr unsigned kVectorControl = 3; // word index of Vector Control
constexpr uint32_t kVectorMasked = 1;

} // namespace

std::span<const FieldDesc> MsixState::fields()
{
    static const FieldDesc table[] = {
        field<&MsixState::table>("table"),
        field<&MsixState::pending>("pending"),
    };
    return table;
}

Msix::Msix(PciDevice& device, unsigned vectors, uint8_t cap_offset)
    : m_device(device), m_vectors(vectors), m_cap(cap_offset)
{
    assert(vectors >= 1 && vectors <= kMaxVectors);
    reset();
}

uint32_t Msix::pba_offset(unsigned vectors)
{
    // The PBA in its own 2 KiB half for small tables (as firmware expects to
    // find it), else right after the table; 8-byte aligned either way.
    uint32_t table_end = vectors * kEntrySize;
    return table_end <= 0x800 ? 0x800 : (table_end + 7u) & ~7u;
}

uint64_t Msix::bar_size(unsigned vectors)
{
    uint64_t end = pba_offset(vectors) + ((vectors + 63) / 64) * 8;
    return std::max<uint64_t>(0x1000, std::bit_ceil(end));
}

mem::MemoryRegion::Ptr Msix::make_region(std::string name)
{
    mem::IoOps ops;
    ops.read = [this](uint64_t off, unsigned size) { return region_read(off, size); };
    ops.write = [this](uint64_t off, uint64_t v, unsigned size) { region_write(off, v, size); };
    ops.min_access = 4; // the table is dwords; narrower writes are read-modify-write
    ops.max_access = 4;
    return std::move(*mem::MemoryRegion::io(std::move(name), bar_size(m_vectors), std::move(ops)));
}

uint32_t Msix::entry_word(unsigned vector, unsigned word) const
{
    uint32_t v;
    std::memcpy(&v, &m_state.table[vector * kEntrySize + word * 4], 4);
    return v;
}

bool Msix::enabled() const { return (m_device.config_read(m_cap + kControl, 2) & kEnable) != 0; }

bool Msix::function_masked() const { return (m_device.config_read(m_cap + kControl, 2) & kFunctionMask) != 0; }

bool Msix::vector_masked(unsigned vector) const
{
    return vector >= m_vectors || (entry_word(vector, kVectorControl) & kVectorMasked) != 0;
}

bool Msix::pending(unsigned vector) const
{
    return vector < m_vectors && (m_state.pending[vector / 8] >> (vector % 8) & 1) != 0;
}

uint64_t Msix::address(unsigned vector) const { return uint64_t(entry_word(vector, 1)) << 32 | entry_word(vector, 0); }

uint32_t Msix::data(unsigned vector) const { return entry_word(vector, 2); }

void Msix::set_pending(unsigned vector, bool on)
{
    uint8_t bit = uint8_t(1u << (vector % 8));
    if (on)
        m_state.pending[vector / 8] |= bit;
    else
        m_state.pending[vector / 8] &= uint8_t(~bit);
}

void Msix::send(unsigned vector)
{
    if (!(m_device.config_read(pci::kCommand, 2) & pci::kCommandMaster)) {
        log_debug("{}: MSI-X vector {} dropped: bus mastering is disabled", m_device.name(), vector);
        return;
    }
    ++m_sent;
    if (m_sink)
        m_sink(address(vector), data(vector));
}

void Msix::notify(unsigned vector)
{
    if (vector >= m_vectors || !enabled())
        return;
    if (function_masked() || vector_masked(vector)) {
        set_pending(vector, true);
        return;
    }
    send(vector);
}

void Msix::flush_pending()
{
    if (!enabled() || function_masked())
        return;
    for (unsigned v = 0; v < m_vectors; ++v) {
        if (pending(v) && !vector_masked(v)) {
            set_pending(v, false);
            send(v);
        }
    }
}

void Msix::control_written() { flush_pending(); }

void Msix::reset()
{
    m_state = MsixState{};
    for (unsigned v = 0; v < m_vectors; ++v)
        m_state.table[v * kEntrySize + kVectorControl * 4] = kVectorMasked;
}

uint64_t Msix::region_read(uint64_t offset, unsigned size)
{
    uint32_t pba = pba_offset(m_vectors);
    if (offset < uint64_t(m_vectors) * kEntrySize)
        return entry_word(unsigned(offset / kEntrySize), unsigned(offset % kEntrySize) / 4);
    if (offset >= pba && offset < pba + (m_vectors + 63) / 64 * 8) {
        uint64_t first_bit = (offset - pba) * 8;
        uint32_t v = 0;
        for (unsigned i = 0; i < 32; ++i)
            if (first_bit + i < m_vectors && pending(unsigned(first_bit + i)))
                v |= 1u << i;
        return v;
    }
    return 0; // reserved
}

void Msix::region_write(uint64_t offset, uint64_t value, unsigned size)
{
    if (offset >= uint64_t(m_vectors) * kEntrySize)
        return; // the PBA is read-only; the rest is reserved
    unsigned vector = unsigned(offset / kEntrySize), word = unsigned(offset % kEntrySize) / 4;
    uint32_t v = uint32_t(value);
    if (word == kVectorControl)
        v &= kVectorMasked; // the other bits are reserved
    std::memcpy(&m_state.table[vector * kEntrySize + word * 4], &v, 4);
    if (word == kVectorControl && !(v & kVectorMasked) && pending(vector) && enabled() && !function_masked()) {
        set_pending(vector, false);
        send(vector);
    }
}

} // namespace emu::devices
