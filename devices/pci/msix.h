// devices/pci/msix.h — MSI-X for a PCI function: the vector table and the
// pending-bit array (PBA) in one memory BAR, the Message Control register in
// the function's capability, and delivery of a vector as a message write
// through a sink the machine provides (on a PC: LapicBus::deliver_msi).
//
// Layout (PCI Local Bus Specification 3.0, 6.8.2): the table starts at offset
// 0 of the region, 16 bytes per vector (message address low, high, data,
// vector control with bit 0 = masked); the PBA (one bit per vector, 64-bit
// words, read-only) follows at pba_offset(). Vectors come out of reset
// masked. Message Control: table size - 1 (read-only), bit 14 function mask,
// bit 15 enable.
//
// Delivery: notify(v) sends the message of vector v when MSI-X is enabled,
// neither the function nor the vector is masked and the function may master
// the bus (command bit 2; without it the message is dropped, as the write
// could not happen on a real bus). A masked vector records a pending bit;
// unmasking (the vector or the function) sends it then.
//
// The owning device adds the capability (add_capability(kCapId, kCapSize)),
// lays out its three registers with the values below, maps region() as a
// BAR, calls control_written() after guest writes to the capability and
// reset() from its device_reset(). Everything runs under the VM's device
// lock; the sink is called with it held.
#pragma once

#include "devices/pci/pci.h"
#include "devices/state.h"
#include "engine/memory/region.h"

#include <array>
#include <cstdint>
#include <functional>
#include <string>

namespace emu::devices {

struct MsixState {
    static constexpr unsigned kMaxVectors = 128;
    std::array<uint8_t, 16 * kMaxVectors> table{}; // raw entries, little-endian
    std::array<uint8_t, kMaxVectors / 8> pending{};
    static std::span<const FieldDesc> fields();
};

class Msix {
public:
    using Sink = std::function<void(uint64_t address, uint32_t data)>;

    static constexpr uint8_t kCapId = 0x11;
    static constexpr uint8_t kCapSize = 12;
    static constexpr unsigned kControl = 2, kTable = 4, kPba = 8; // capability register offsets
    static constexpr uint16_t kControlWritable = 0xc000;          // enable | function mask
    static constexpr uint16_t kEnable = 0x8000, kFunctionMask = 0x4000;
    static constexpr unsigned kMaxVectors = MsixState::kMaxVectors;

    // `vectors` in 1..kMaxVectors; `cap_offset` is the capability the device
    // added in its configuration space.
    Msix(PciDevice& device, unsigned vectors, uint8_t cap_offset);
    Msix(const Msix&) = delete;
    Msix& operator=(const Msix&) = delete;

    unsigned vectors() const { return m_vectors; }
    uint8_t cap_offset() const { return m_cap; }
    static uint32_t pba_offset(unsigned vectors);
    // The power-of-two size of the BAR holding table and PBA (>= 4 KiB).
    static uint64_t bar_size(unsigned vectors);
    // Values for the capability's registers (`bar` is the BAR index).
    uint16_t control_value() const { return uint16_t(m_vectors - 1); }
    uint32_t table_value(int bar) const { return uint32_t(bar); }
    uint32_t pba_value(int bar) const { return pba_offset(m_vectors) | uint32_t(bar); }

    // A region of bar_size() bytes that decodes table and PBA (the device
    // registers it as a memory BAR and owns it).
    mem::MemoryRegion::Ptr make_region(std::string name);

    void set_sink(Sink sink) { m_sink = std::move(sink); }
    bool enabled() const;
    bool function_masked() const;
    bool vector_masked(unsigned vector) const;
    bool pending(unsigned vector) const;
    uint64_t address(unsigned vector) const;
    uint32_t data(unsigned vector) const;
    // Messages sent (delivered to the sink) since construction.
    uint64_t sent() const { return m_sent; }

    // Sends vector `vector` (or records it pending, see above). Vectors past
    // the table are ignored.
    void notify(unsigned vector);
    // The guest wrote Message Control: unmasking delivers pending vectors.
    void control_written();
    // Every vector masked, nothing pending.
    void reset();

    const MsixState& state() const { return m_state; }

private:
    uint64_t region_read(uint64_t offset, unsigned size);
    void region_write(uint64_t offset, uint64_t value, unsigned size);
    uint32_t entry_word(unsigned vector, unsigned word) const;
    void set_pending(unsigned vector, bool on);
    void send(unsigned vector);
    void flush_pending();

    PciDevice& m_device;
    unsigned m_vectors;
    uint8_t m_cap;
    MsixState m_state;
    Sink m_sink;
    uint64_t m_sent = 0;
};

} // namespace emu::devices
