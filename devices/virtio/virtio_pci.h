// devices/virtio/virtio_pci.h — the virtio-over-PCI transport, the base of
// every virtio PCI device (VIRTIO 1.x, "Virtio Over PCI Bus").
//
// Interfaces (a transitional device has both; `disable_legacy` /
// `disable_modern` drop one):
//   - modern: vendor-specific capabilities (type 1 common, 2 notify, 3 ISR,
//     4 device configuration) pointing into BAR4, a 64-bit prefetchable
//     memory BAR of 16 KiB: common configuration at 0x0000, ISR at 0x1000,
//     device configuration at 0x2000, notifications at 0x3000 (queue n at
//     0x3000 + 4n: notify_off_multiplier 4, queue_notify_off = n);
//   - legacy: BAR0, an I/O BAR with the 0.9.5 register block (host/guest
//     features, queue PFN/size/select/notify, status, ISR; the MSI-X vector
//     registers at 0x14 while MSI-X is enabled; device configuration after
//     them). Rings in the legacy layout, 4 KiB aligned.
// PCI IDs: vendor 0x1af4; device 0x1000 + (virtio id - 1) and revision 0 when
// the legacy interface is there (transitional), else 0x1040 + virtio id and
// revision 1; subsystem vendor 0x1af4, subsystem the virtio id (transitional)
// or 0x1100.
// Not implemented: the PCI configuration access capability (type 5; neither
// Linux nor our direct boot uses it), packed rings, queue_reset,
// notification data.
//
// Features: 64 bits through the select registers (modern) or the low 32
// (legacy, without VERSION_1, plus ANY_LAYOUT). The transport offers
// VERSION_1 (modern only), RING_INDIRECT_DESC and RING_EVENT_IDX (unless
// disabled) on top of the device's bits. Modern drivers' FEATURES_OK is
// refused (reads back clear) for bits never offered or without VERSION_1;
// legacy drivers' features take effect as they are written (and are final at
// DRIVER_OK), as legacy devices have no FEATURES_OK.
//
// Interrupts: with MSI-X (`msix_vectors` > 0: capability, table and PBA in
// BAR1, a 32-bit memory BAR) enabled by the driver, a queue's used buffers
// and configuration changes send their vectors through the MSI sink the
// machine installs (set_msi_sink); vector numbers past the table read back as
// NO_VECTOR (0xffff). Otherwise ISR bit 0 (queue) or 1 (configuration) is set
// and INTA asserted; reading ISR returns and clears it and deasserts INTA.
//
// Guest errors: anything a correct driver never does to a queue (see
// virtqueue.h) makes the device "broken": DEVICE_NEEDS_RESET is set in the
// status, a configuration interrupt is sent if DRIVER_OK is set, the
// reason is logged (rate-limited: 10 messages a second per device) and the
// device ignores notifications until the driver resets it. Writes to queue
// registers of an enabled queue, and feature writes after FEATURES_OK, are
// ignored. Enabling a queue whose size is not a power of two or whose rings
// are misaligned or outside RAM breaks the device.
//
// Reset: writing 0 to the status resets the transport at once (queues
// disabled, features, vectors and ISR cleared) and bumps generation(); a
// derived device drops the requests of older generations when they complete
// and says through reset_pending() whether any are still in flight — while
// they are, the status reads DEVICE_NEEDS_RESET instead of 0, which a modern
// driver waits out ("MUST wait for a read of device_status to return 0").
//
// Threads: every entry point runs under the VM's device lock (vCPU register
// accesses; completions through BusMaster::run_locked), which also covers the
// MSI sink and INTx.
#pragma once

#include "devices/bus_master.h"
#include "devices/pci/msix.h"
#include "devices/pci/pci.h"
#include "devices/state.h"
#include "devices/virtio/virtqueue.h"

#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace emu::devices {

namespace virtio {

// Device status bits.
inline constexpr uint8_t kStatusAcknowledge = 1, kStatusDriver = 2, kStatusDriverOk = 4, kStatusFeaturesOk = 8,
                         kStatusNeedsReset = 0x40, kStatusFailed = 0x80;
// ISR bits.
inline constexpr uint8_t kIsrQueue = 1, kIsrConfig = 2;
// Capability configuration types.
inline constexpr uint8_t kCapCommon = 1, kCapNotify = 2, kCapIsr = 3, kCapDevice = 4;
inline constexpr uint16_t kVendorId = 0x1af4;

// Common configuration (modern) register offsets.
namespace common {
inline constexpr unsigned kDeviceFeatureSelect = 0x00, kDeviceFeature = 0x04, kDriverFeatureSelect = 0x08,
                          kDriverFeature = 0x0c, kMsixConfig = 0x10, kNumQueues = 0x12, kDeviceStatus = 0x14,
                          kConfigGeneration = 0x15, kQueueSelect = 0x16, kQueueSize = 0x18, kQueueMsixVector = 0x1a,
                          kQueueEnable = 0x1c, kQueueNotifyOff = 0x1e, kQueueDesc = 0x20, kQueueDriver = 0x28,
                          kQueueDevice = 0x30, kSize = 0x38;
} // namespace common

// Legacy I/O BAR register offsets.
namespace legacy {
inline constexpr unsigned kHostFeatures = 0x00, kGuestFeatures = 0x04, kQueuePfn = 0x08, kQueueSize = 0x0c,
                          kQueueSelect = 0x0e, kQueueNotify = 0x10, kStatus = 0x12, kIsr = 0x13, kConfigVector = 0x14,
                          kQueueVector = 0x16, kConfigNoMsix = 0x14, kConfigMsix = 0x18;
inline constexpr unsigned kPfnShift = 12;
} // namespace legacy

// One register of a block (the transport's register tables).
struct RegisterField {
    unsigned offset, size;
    bool writable;
};

} // namespace virtio

struct VirtioPciOptions {
    bool disable_legacy = false;
    bool disable_modern = false;
    unsigned msix_vectors = 0; // 0: INTx only; at most Msix::kMaxVectors
    bool indirect_desc = true; // offer VIRTIO_F_RING_INDIRECT_DESC
    bool event_idx = true;     // offer VIRTIO_F_RING_EVENT_IDX
};

struct VirtioPciState {
    static constexpr unsigned kMaxQueues = 64;
    uint8_t status = 0;
    uint8_t isr = 0;
    uint8_t config_generation = 0;
    bool legacy = false; // the driver last used the legacy interface
    uint32_t device_feature_select = 0;
    uint32_t driver_feature_select = 0;
    uint64_t driver_features = 0;
    uint16_t queue_select = 0;
    uint16_t config_vector = virtio::kNoVector;
    std::array<virtio::VirtqueueState, kMaxQueues> queues{};
    static std::span<const FieldDesc> fields();
};

class VirtioPciDevice : public PciDevice {
public:
    static constexpr unsigned kMaxQueues = VirtioPciState::kMaxQueues;
    static constexpr int kLegacyBar = 0, kMsixBar = 1, kModernBar = 4;
    static constexpr uint64_t kCommonOffset = 0x0000, kIsrOffset = 0x1000, kDeviceOffset = 0x2000,
                              kNotifyOffset = 0x3000, kModernBarSize = 0x4000;
    static constexpr uint32_t kNotifyMultiplier = 4;
    static constexpr unsigned kMaxConfigSize = 0x100;

    ~VirtioPciDevice() override;

    // Where MSI-X messages go (the machine's LapicBus::deliver_msi on a PC).
    void set_msi_sink(Msix::Sink sink);

    bool legacy_interface() const { return m_legacy_bar; }
    bool modern_interface() const { return m_modern_bar; }
    uint16_t virtio_id() const { return m_virtio_id; }
    uint8_t device_status() const { return m_state.status; }
    bool broken() const { return (m_state.status & virtio::kStatusNeedsReset) != 0; }
    // Offered features as the modern interface shows them.
    uint64_t offered_features() const { return m_offered; }
    uint64_t driver_features() const { return m_state.driver_features; }
    bool negotiated(unsigned bit) const { return (m_state.driver_features >> bit & 1) != 0; }
    unsigned num_queues() const { return unsigned(m_queues.size()); }
    const virtio::Virtqueue& queue(unsigned i) const { return *m_queues[i]; }
    const Msix* msix() const { return m_msix.get(); }
    // Bumps on every device reset (status 0, PCI reset).
    uint64_t generation() const { return m_generation; }
    const VirtioPciState& virtio_state() const { return m_state; }
    // PCI configuration, then the transport state (queues up to num_queues()).
    std::string dump() const;

protected:
    // `config_size` bytes of device configuration (<= kMaxConfigSize);
    // `device_features` the device's own feature bits.
    VirtioPciDevice(std::string name, uint16_t virtio_id, uint32_t class_code, BusMaster& memory,
                    const VirtioPciOptions& options, uint64_t device_features, unsigned num_queues, uint16_t queue_size,
                    unsigned config_size);

    BusMaster& memory() { return m_memory; }
    virtio::Virtqueue& vq(unsigned i) { return *m_queues[i]; }
    bool driver_ok() const { return (m_state.status & virtio::kStatusDriverOk) != 0; }

    // The device configuration image, little-endian; the device keeps it up
    // to date (config_changed() after a change the driver must notice).
    std::span<uint8_t> config_space() { return {m_config.data(), m_config.size()}; }
    void store_config(unsigned offset, uint64_t value, unsigned size);
    void config_changed();

    // After used buffers were pushed on queue `i`: interrupts the driver if
    // the ring's suppression rules allow.
    void notify_queue(unsigned i);
    // The driver did something no correct driver does: DEVICE_NEEDS_RESET.
    void set_broken(const std::string& reason);
    // A guest-caused message, rate-limited.
    void guest_error(const std::string& message);

    // Hooks, all under the device lock.
    // The driver notified queue `i` (enabled, device not broken).
    virtual void queue_notified(unsigned i) = 0;
    // Features are final (modern FEATURES_OK, legacy DRIVER_OK).
    virtual void features_accepted() {}
    // The device was reset (status 0 or a PCI reset); generation() is new.
    virtual void virtio_reset() {}
    // The guest wrote device configuration bytes [offset, offset+size).
    virtual void config_space_write(unsigned offset, uint64_t value, unsigned size) {}
    // Requests of an older generation still in flight (see Reset above).
    virtual bool reset_pending() const { return false; }

private:
    uint64_t read_fields(std::span<const virtio::RegisterField> fields, uint64_t offset, unsigned size, bool legacy);
    void write_fields(std::span<const virtio::RegisterField> fields, uint64_t offset, uint64_t value, unsigned size,
                      bool legacy);
    uint64_t field_read(unsigned offset, bool legacy);
    void field_write(unsigned offset, uint64_t value, bool legacy);
    uint64_t common_read(unsigned offset);
    void common_write(unsigned offset, uint64_t value);
    uint64_t legacy_register_read(unsigned offset);
    void legacy_register_write(unsigned offset, uint64_t value);
    uint64_t modern_read(uint64_t offset, unsigned size);
    void modern_write(uint64_t offset, uint64_t value, unsigned size);
    uint64_t legacy_read(uint64_t offset, unsigned size);
    void legacy_write(uint64_t offset, uint64_t value, unsigned size);
    uint64_t device_config_read(uint64_t offset, unsigned size) const;
    unsigned legacy_config_offset() const;

    uint8_t read_status() const;
    void write_status(uint8_t value, bool legacy);
    void reset_transport();
    void accept_ring_features();
    bool features_ok() const;
    uint64_t legacy_features() const;
    void enable_queue(unsigned i);
    void notify(unsigned i);
    void send_config_interrupt();
    void update_intx();
    bool msix_enabled() const { return m_msix && m_msix->enabled(); }
    uint16_t checked_vector(uint64_t value) const;

    void config_written(unsigned offset, unsigned size) override;
    void device_reset() override;

    BusMaster& m_memory;
    uint16_t m_virtio_id;
    uint64_t m_offered = 0;
    bool m_legacy_bar, m_modern_bar;
    VirtioPciState m_state;
    std::vector<std::unique_ptr<virtio::Virtqueue>> m_queues;
    std::vector<uint8_t> m_config;
    std::unique_ptr<Msix> m_msix;
    uint64_t m_generation = 0;
    // Rate limit of guest_error().
    std::chrono::steady_clock::time_point m_log_window{};
    unsigned m_log_count = 0;
    unsigned m_log_suppressed = 0;
};

} // namespace emu::devices
