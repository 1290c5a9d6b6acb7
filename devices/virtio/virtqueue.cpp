// devices/virtio/virtqueue.cpp — split virtqueues (layout and rules from the
// VIRTIO 1.x specification, "Split Virtqueues" and "Legacy Interfaces").
#include "devices/virtio/virtqueue.h"

#include <atomic>
#include <bit>
#include <cstring>
#include <fmt/format.h>

namespace emu::devices::virtio {

namespace {

constexpr uint64_t kDescSize = 16;
constexpr uint64_t kLegacyAlign = 4096;

uint64_t align_up(uint64_t v, uint64_t a) { return (v + a - 1) & ~(a - 1); }

// vring_need_event: has new_idx just passed the driver's event index?
bool need_event(uint16_t event, uint16_t new_idx, uint16_t old_idx)
{
    return uint16_t(new_idx - event - 1) < uint16_t(new_idx - old_idx);
}

} // namespace

std::span<const FieldDesc> VirtqueueState::fields()
{
    static const FieldDesc table[] = {
        field<&VirtqueueState::size>("size"),
        field<&VirtqueueState::enabled>("enabled"),
        field<&VirtqueueState::msix_vector>("msix_vector"),
        field<&VirtqueueState::desc>("desc"),
        field<&VirtqueueState::avail>("avail"),
        field<&VirtqueueState::used>("used"),
        field<&VirtqueueState::last_avail>("last_avail"),
        field<&VirtqueueState::used_idx>("used_idx"),
        field<&VirtqueueState::signalled_used>("signalled_used"),
        field<&VirtqueueState::signalled_valid>("signalled_valid"),
    };
    return table;
}

Virtqueue::Virtqueue(BusMaster& memory, VirtqueueState& state, unsigned index, uint16_t max_size)
    : m_memory(memory), m_state(state), m_index(index), m_max_size(max_size)
{
    reset();
}

void Virtqueue::set_features(bool indirect, bool event_idx)
{
    m_indirect = indirect;
    m_event_idx = event_idx;
}

void Virtqueue::reset()
{
    m_state = VirtqueueState{};
    m_state.size = m_max_size;
    m_indirect = m_event_idx = false;
}

uint64_t Virtqueue::legacy_bytes(uint16_t size)
{
    uint64_t used_at = align_up(kDescSize * size + 6 + 2u * size, kLegacyAlign);
    return used_at + align_up(6 + 8u * size, kLegacyAlign);
}

void Virtqueue::set_legacy_layout(uint64_t base)
{
    uint16_t n = m_state.size;
    m_state.desc = base;
    m_state.avail = base + kDescSize * n;
    m_state.used = align_up(m_state.avail + 6 + 2u * n, kLegacyAlign);
}

std::string Virtqueue::check_layout() const
{
    uint16_t n = m_state.size;
    if (n == 0 || n > m_max_size || !std::has_single_bit(n))
        return fmt::format("queue {}: size {} is not a power of two in 1..{}", m_index, n, m_max_size);
    if (m_state.desc % 16 || m_state.avail % 2 || m_state.used % 4)
        return fmt::format("queue {}: misaligned rings (descriptors {:#x}, available {:#x}, used {:#x})", m_index,
                           m_state.desc, m_state.avail, m_state.used);
    struct Area {
        const char* what;
        uint64_t at, bytes;
    } areas[] = {
        {"descriptor table", m_state.desc, kDescSize * n},
        {"available ring", m_state.avail, 6 + 2u * n},
        {"used ring", m_state.used, 6 + 8u * n},
    };
    for (const Area& a : areas) {
        std::vector<std::span<uint8_t>> spans;
        if (!m_memory.map(a.at, a.bytes, false, spans))
            return fmt::format("queue {}: {} at {:#x} ({} bytes) is not in guest RAM", m_index, a.what, a.at, a.bytes);
    }
    return {};
}

bool Virtqueue::read_desc(uint64_t table, uint16_t i, uint64_t& addr, uint32_t& len, uint16_t& flags, uint16_t& next)
{
    uint8_t raw[kDescSize];
    if (!m_memory.read(table + kDescSize * i, raw, sizeof raw))
        return false;
    std::memcpy(&addr, raw, 8);
    std::memcpy(&len, raw + 8, 4);
    std::memcpy(&flags, raw + 12, 2);
    std::memcpy(&next, raw + 14, 2);
    return true;
}

bool Virtqueue::more_available()
{
    uint16_t idx;
    if (!m_state.enabled || !m_memory.read_obj(m_state.avail + 2, idx))
        return false;
    return idx != m_state.last_avail;
}

Virtqueue::Pop Virtqueue::pop(VirtqChain& out, std::string& error)
{
    if (!m_state.enabled)
        return Pop::Empty;
    const uint16_t size = m_state.size;
    uint16_t avail_idx;
    if (!m_memory.read_obj(m_state.avail + 2, avail_idx)) {
        error = fmt::format("queue {}: cannot read the available index at {:#x}", m_index, m_state.avail + 2);
        return Pop::Broken;
    }
    uint16_t waiting = uint16_t(avail_idx - m_state.last_avail);
    if (waiting == 0)
        return Pop::Empty;
    if (waiting > size) {
        error = fmt::format("queue {}: available index {} is {} entries ahead of {}, beyond queue size {}", m_index,
                            avail_idx, waiting, m_state.last_avail, size);
        return Pop::Broken;
    }
    std::atomic_thread_fence(std::memory_order_acquire); // the ring entry after the index

    uint16_t head;
    uint64_t slot = m_state.avail + 4 + 2u * (m_state.last_avail % size);
    if (!m_memory.read_obj(slot, head)) {
        error = fmt::format("queue {}: cannot read available ring entry at {:#x}", m_index, slot);
        return Pop::Broken;
    }
    if (head >= size) {
        error = fmt::format("queue {}: available entry {} names descriptor {}, beyond queue size {}", m_index,
                            m_state.last_avail, head, size);
        return Pop::Broken;
    }

    out.head = head;
    out.descs.clear();
    out.readable = out.writable = 0;
    uint64_t table = m_state.desc;
    uint32_t table_size = size;
    bool indirect = false;
    unsigned count = 0;
    for (uint16_t i = head;;) {
        if (++count > table_size) {
            error = indirect ? fmt::format("queue {}: indirect chain from descriptor {} is longer than its table of {} "
                                           "(a loop?)",
                                           m_index, head, table_size)
                             : fmt::format("queue {}: chain from descriptor {} is longer than queue size {} (a loop?)",
                                           m_index, head, size);
            return Pop::Broken;
        }
        uint64_t addr;
        uint32_t len;
        uint16_t flags, next;
        if (!read_desc(table, i, addr, len, flags, next)) {
            error = fmt::format("queue {}: cannot read {}descriptor {} at {:#x}", m_index, indirect ? "indirect " : "",
                                i, table + kDescSize * i);
            return Pop::Broken;
        }
        if (flags & kDescIndirect) {
            if (!m_indirect) {
                error = fmt::format("queue {}: descriptor {} is indirect, a feature not negotiated", m_index, i);
                return Pop::Broken;
            }
            if (indirect) {
                error = fmt::format("queue {}: indirect descriptor {} inside an indirect table", m_index, i);
                return Pop::Broken;
            }
            if (flags & kDescNext) {
                error = fmt::format("queue {}: descriptor {} is both indirect and chained", m_index, i);
                return Pop::Broken;
            }
            if (len == 0 || len % kDescSize) {
                error = fmt::format("queue {}: indirect table of descriptor {} has length {}, not a multiple of 16",
                                    m_index, i, len);
                return Pop::Broken;
            }
            if (len / kDescSize > size) {
                error = fmt::format("queue {}: indirect table of descriptor {} has {} entries, more than queue size {}",
                                    m_index, i, len / kDescSize, size);
                return Pop::Broken;
            }
            table = addr;
            table_size = uint32_t(len / kDescSize);
            indirect = true;
            count = 0;
            i = 0;
            continue;
        }
        bool write = (flags & kDescWrite) != 0;
        if (!write && out.writable) {
            error = fmt::format("queue {}: chain from descriptor {} has a device-readable descriptor {} after a "
                                "device-writable one",
                                m_index, head, i);
            return Pop::Broken;
        }
        if (len) {
            out.descs.push_back({addr, len, write});
            (write ? out.writable : out.readable) += len;
        }
        if (!(flags & kDescNext))
            break;
        if (next >= table_size) {
            error = indirect
                        ? fmt::format("queue {}: indirect descriptor {} next {} beyond its table of {}", m_index, i,
                                      next, table_size)
                        : fmt::format("queue {}: descriptor {} next {} beyond queue size {}", m_index, i, next, size);
            return Pop::Broken;
        }
        i = next;
    }
    m_state.last_avail++;
    return Pop::Chain;
}

bool Virtqueue::push(uint16_t head, uint32_t len, std::string& error)
{
    const uint16_t size = m_state.size;
    uint64_t elem = m_state.used + 4 + 8u * (m_state.used_idx % size);
    uint32_t raw[2] = {head, len};
    if (!m_memory.write(elem, raw, sizeof raw)) {
        error = fmt::format("queue {}: cannot write used ring entry at {:#x}", m_index, elem);
        return false;
    }
    std::atomic_thread_fence(std::memory_order_release); // the entry before the index
    uint16_t idx = uint16_t(m_state.used_idx + 1);
    if (!m_memory.write_obj(m_state.used + 2, idx)) {
        error = fmt::format("queue {}: cannot write the used index at {:#x}", m_index, m_state.used + 2);
        return false;
    }
    m_state.used_idx = idx;
    return true;
}

bool Virtqueue::should_notify()
{
    std::atomic_thread_fence(std::memory_order_seq_cst); // the used index before the driver's wishes
    if (m_event_idx) {
        uint16_t used_event;
        if (!m_memory.read_obj(m_state.avail + 4 + 2u * m_state.size, used_event))
            return true; // pop() or the next push reports the ring itself
        uint16_t old_idx = m_state.signalled_used;
        bool valid = m_state.signalled_valid;
        m_state.signalled_used = m_state.used_idx;
        m_state.signalled_valid = true;
        return !valid || need_event(used_event, m_state.used_idx, old_idx);
    }
    uint16_t flags;
    if (!m_memory.read_obj(m_state.avail, flags))
        return true;
    return !(flags & kAvailNoInterrupt);
}

bool Virtqueue::publish_avail_event(std::string& error)
{
    if (!m_event_idx)
        return true;
    uint64_t at = m_state.used + 4 + 8u * m_state.size;
    if (!m_memory.write_obj(at, m_state.last_avail)) {
        error = fmt::format("queue {}: cannot write the available event at {:#x}", m_index, at);
        return false;
    }
    std::atomic_thread_fence(std::memory_order_seq_cst); // before the caller reads the available index again
    return true;
}

} // namespace emu::devices::virtio
