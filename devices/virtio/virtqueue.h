// devices/virtio/virtqueue.h — the device side of a split virtqueue (VIRTIO
// 1.x, "Split Virtqueues"): the descriptor table, the available ring the
// driver fills and the used ring the device returns buffers on, with
// indirect descriptors (VIRTIO_F_RING_INDIRECT_DESC) and notification
// suppression (VIRTIO_F_RING_EVENT_IDX).
//
// Every value in guest memory is hostile. pop() walks a chain and refuses,
// with a sentence for the log, anything a correct driver never produces:
//   - an available index more than the queue size ahead of the device's;
//   - a head or `next` index outside the table (the queue, or the indirect
//     table it is in);
//   - a chain longer than the queue size (so a loop ends), or an indirect
//     table longer than the queue size, of a length that is not a multiple
//     of 16 or 0, nested, chained (INDIRECT with NEXT), or used without the
//     feature;
//   - a device-readable descriptor after a device-writable one;
//   - ring or table memory the BusMaster refuses.
// A refusal is a broken device (the transport sets DEVICE_NEEDS_RESET): the
// queue does not guess what the driver meant. Nothing is allocated in
// proportion to guest values beyond the queue size (the chain vector holds at
// most 2 * size descriptors).
//
// Data buffers are not touched here: a chain is a list of (address, length,
// device-writable) that the device maps through its BusMaster.
//
// Threads: all calls under the VM's device lock (vCPU notify, or a storage
// completion through BusMaster::run_locked).
#pragma once

#include "devices/bus_master.h"
#include "devices/state.h"

#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace emu::devices::virtio {

inline constexpr uint16_t kNoVector = 0xffff; // VIRTIO_MSI_NO_VECTOR
inline constexpr uint16_t kMaxQueueSize = 32768;

// Feature bits of the transport and the rings.
inline constexpr unsigned kFeatureNotifyOnEmpty = 24, kFeatureAnyLayout = 27, kFeatureIndirectDesc = 28,
                          kFeatureEventIdx = 29, kFeatureVersion1 = 32;

// Descriptor flags, ring flags.
inline constexpr uint16_t kDescNext = 1, kDescWrite = 2, kDescIndirect = 4;
inline constexpr uint16_t kAvailNoInterrupt = 1;

// What the transport keeps of a queue (migratable; one per queue).
struct VirtqueueState {
    uint16_t size = 0; // as the driver set it (the legacy interface: the maximum)
    bool enabled = false;
    uint16_t msix_vector = kNoVector;
    uint64_t desc = 0;           // descriptor table
    uint64_t avail = 0;          // available (driver) ring
    uint64_t used = 0;           // used (device) ring
    uint16_t last_avail = 0;     // next available entry the device takes
    uint16_t used_idx = 0;       // the used index the device has published
    uint16_t signalled_used = 0; // used_idx when the driver was last considered for an interrupt
    bool signalled_valid = false;
    static std::span<const FieldDesc> fields();
};

struct VirtqDesc {
    uint64_t addr;
    uint32_t len;
    bool write; // device-writable
};

struct VirtqChain {
    uint16_t head = 0;
    std::vector<VirtqDesc> descs; // readable ones first, then writable ones
    uint64_t readable = 0;        // bytes
    uint64_t writable = 0;
};

class Virtqueue {
public:
    enum class Pop { Empty, Chain, Broken };

    Virtqueue(BusMaster& memory, VirtqueueState& state, unsigned index, uint16_t max_size);

    unsigned index() const { return m_index; }
    uint16_t max_size() const { return m_max_size; }
    VirtqueueState& state() { return m_state; }
    const VirtqueueState& state() const { return m_state; }
    bool ready() const { return m_state.enabled; }

    // Negotiated ring features (set when the driver's features are accepted).
    void set_features(bool indirect, bool event_idx);
    // Back to the power-on state (disabled, size = max).
    void reset();
    // Before enabling: size a power of two in 1..max, rings aligned and in
    // guest RAM. Returns "" or the reason.
    std::string check_layout() const;
    // The legacy interface's layout: one page-aligned area at `base`.
    void set_legacy_layout(uint64_t base);

    // The next chain. Empty: nothing new. Broken: `error` says why (the
    // queue is left as it was, the device stops using it).
    Pop pop(VirtqChain& out, std::string& error);
    // Is there an available entry the device has not taken? (false when the
    // ring cannot be read: pop() reports that.)
    bool more_available();
    // Returns a chain as used with `len` bytes written by the device.
    bool push(uint16_t head, uint32_t len, std::string& error);
    // After push(): should the driver be interrupted (EVENT_IDX used_event,
    // or the NO_INTERRUPT flag)?
    bool should_notify();
    // With EVENT_IDX: asks the driver to notify when it makes entry
    // `last_avail` available (done after emptying the ring).
    bool publish_avail_event(std::string& error);

    // Bytes of the legacy layout for a queue of `size` entries.
    static uint64_t legacy_bytes(uint16_t size);

private:
    bool read_desc(uint64_t table, uint16_t i, uint64_t& addr, uint32_t& len, uint16_t& flags, uint16_t& next);

    BusMaster& m_memory;
    VirtqueueState& m_state;
    unsigned m_index;
    uint16_t m_max_size;
    bool m_indirect = false;
    bool m_event_idx = false;
};

} // namespace emu::devices::virtio
