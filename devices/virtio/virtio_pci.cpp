// devices/virtio/virtio_pci.cpp — the virtio PCI transport (VIRTIO 1.x, "Virtio
// Over PCI Bus", including its legacy interface sections).
#include "devices/virtio/virtio_pci.h"

#include "common/log.h"

#include <algorithm>
#include <bit>
#include <cassert>
#include <fmt/format.h>

namespace emu::devices {

using namespace virtio;

namespace {

constexpr uint8_t kCapVendor = 0x09;
constexpr uint8_t kVirtioCapSize = 16;
constexpr uint16_t kModernSubsystem = 0x1100;
constexpr unsigned kLogBurst = 10; // guest-error messages per second and device

PciId virtio_pci_id(uint16_t virtio_id, uint32_t class_code, bool legacy)
{
    return PciId{.vendor = kVendorId,
                 .device = uint16_t(legacy ? 0x1000 + virtio_id - 1 : 0x1040 + virtio_id),
                 .revision = uint8_t(legacy ? 0 : 1),
                 .class_code = class_code,
                 .subsystem_vendor = kVendorId,
                 .subsystem = legacy ? virtio_id : kModernSubsystem};
}

bool overlaps(uint64_t offset, unsigned size, uint64_t start, uint64_t end)
{
    return offset < end && start < offset + size;
}

} // namespace

std::span<const FieldDesc> VirtioPciState::fields()
{
    static const FieldDesc table[] = {
        field<&VirtioPciState::status>("status"),
        field<&VirtioPciState::isr>("isr"),
        field<&VirtioPciState::config_generation>("config_generation"),
        field<&VirtioPciState::legacy>("legacy"),
        field<&VirtioPciState::device_feature_select>("device_feature_select"),
        field<&VirtioPciState::driver_feature_select>("driver_feature_select"),
        field<&VirtioPciState::driver_features>("driver_features"),
        field<&VirtioPciState::queue_select>("queue_select"),
        field<&VirtioPciState::config_vector>("config_vector"),
        field<&VirtioPciState::queues>("queue", VirtqueueState::fields()), // last: dump() relies on it
    };
    return table;
}

VirtioPciDevice::VirtioPciDevice(std::string name, uint16_t virtio_id, uint32_t class_code, BusMaster& memory,
                                 const VirtioPciOptions& options, uint64_t device_features, unsigned num_queues,
                                 uint16_t queue_size, unsigned config_size)
    : PciDevice(std::move(name), virtio_pci_id(virtio_id, class_code, !options.disable_legacy)), m_memory(memory),
      m_virtio_id(virtio_id), m_legacy_bar(!options.disable_legacy), m_modern_bar(!options.disable_modern)
{
    assert(m_legacy_bar || m_modern_bar);
    assert(num_queues >= 1 && num_queues <= kMaxQueues);
    assert(queue_size >= 1 && queue_size <= kMaxQueueSize && std::has_single_bit(queue_size));
    assert(config_size <= kMaxConfigSize);
    assert(options.msix_vectors <= Msix::kMaxVectors);

    m_offered = device_features;
    if (options.indirect_desc)
        m_offered |= uint64_t(1) << kFeatureIndirectDesc;
    if (options.event_idx)
        m_offered |= uint64_t(1) << kFeatureEventIdx;
    if (m_modern_bar)
        m_offered |= uint64_t(1) << kFeatureVersion1;
    m_config.assign(config_size, 0);
    for (unsigned i = 0; i < num_queues; ++i)
        m_queues.push_back(std::make_unique<Virtqueue>(memory, m_state.queues[i], i, queue_size));
    set_interrupt_pin(1);

    if (m_legacy_bar) {
        mem::IoOps ops;
        ops.read = [this](uint64_t off, unsigned size) { return legacy_read(off, size); };
        ops.write = [this](uint64_t off, uint64_t v, unsigned size) { legacy_write(off, v, size); };
        ops.min_access = 1;
        ops.max_access = 4;
        uint64_t size = std::max<uint64_t>(0x20, std::bit_ceil(uint64_t(legacy::kConfigMsix + config_size)));
        register_bar(kLegacyBar, PciBarKind::Io,
                     std::move(*mem::MemoryRegion::io(this->name() + "-legacy", size, ops)));
    }
    if (m_modern_bar) {
        mem::IoOps ops;
        ops.read = [this](uint64_t off, unsigned size) { return modern_read(off, size); };
        ops.write = [this](uint64_t off, uint64_t v, unsigned size) { modern_write(off, v, size); };
        ops.min_access = 1;
        ops.max_access = 4;
        register_bar(kModernBar, PciBarKind::Mem64,
                     std::move(*mem::MemoryRegion::io(this->name() + "-modern", kModernBarSize, ops)), true);
        auto vendor_cap = [this](uint8_t type, uint32_t offset, uint32_t length, uint8_t extra) {
            uint8_t size = uint8_t(kVirtioCapSize + extra);
            uint8_t at = add_capability(kCapVendor, size);
            init_config8(at + 2u, size);                // cap_len
            init_config8(at + 3u, type);                // cfg_type
            init_config8(at + 4u, uint8_t(kModernBar)); // bar
            init_config32(at + 8u, offset);
            init_config32(at + 12u, length);
            return at;
        };
        vendor_cap(kCapCommon, kCommonOffset, common::kSize, 0);
        vendor_cap(kCapIsr, kIsrOffset, 1, 0);
        vendor_cap(kCapDevice, kDeviceOffset, std::max(config_size, 1u), 0);
        uint8_t notify = vendor_cap(kCapNotify, kNotifyOffset, kNotifyMultiplier * num_queues, 4);
        init_config32(notify + 16u, kNotifyMultiplier);
    }
    if (options.msix_vectors) {
        uint8_t cap = add_capability(Msix::kCapId, Msix::kCapSize);
        m_msix = std::make_unique<Msix>(*this, options.msix_vectors, cap);
        init_config16(cap + Msix::kControl, m_msix->control_value(), Msix::kControlWritable);
        init_config32(cap + Msix::kTable, m_msix->table_value(kMsixBar));
        init_config32(cap + Msix::kPba, m_msix->pba_value(kMsixBar));
        register_bar(kMsixBar, PciBarKind::Mem32, m_msix->make_region(this->name() + "-msix"));
    }
}

VirtioPciDevice::~VirtioPciDevice() = default;

void VirtioPciDevice::set_msi_sink(Msix::Sink sink)
{
    if (m_msix)
        m_msix->set_sink(std::move(sink));
}

// ---- register blocks -------------------------------------------------------

uint64_t VirtioPciDevice::read_fields(std::span<const RegisterField> fields, uint64_t offset, unsigned size,
                                      bool legacy)
{
    uint64_t result = 0;
    for (const RegisterField& f : fields) {
        if (!overlaps(offset, size, f.offset, f.offset + f.size))
            continue;
        uint64_t v = field_read(f.offset, legacy);
        uint64_t lo = std::max<uint64_t>(offset, f.offset), hi = std::min<uint64_t>(offset + size, f.offset + f.size);
        for (uint64_t b = lo; b < hi; ++b)
            result |= ((v >> 8 * (b - f.offset)) & 0xff) << 8 * (b - offset);
    }
    return result;
}

void VirtioPciDevice::write_fields(std::span<const RegisterField> fields, uint64_t offset, uint64_t value,
                                   unsigned size, bool legacy)
{
    for (const RegisterField& f : fields) {
        if (!f.writable || !overlaps(offset, size, f.offset, f.offset + f.size))
            continue;
        uint64_t lo = std::max<uint64_t>(offset, f.offset), hi = std::min<uint64_t>(offset + size, f.offset + f.size);
        // A partial write keeps the field's other bytes (writable fields
        // have no read side effects).
        uint64_t v = (lo == f.offset && hi == f.offset + f.size) ? 0 : field_read(f.offset, legacy);
        for (uint64_t b = lo; b < hi; ++b) {
            unsigned shift = unsigned(8 * (b - f.offset));
            v = (v & ~(uint64_t(0xff) << shift)) | ((value >> 8 * (b - offset)) & 0xff) << shift;
        }
        field_write(f.offset, v, legacy);
    }
}

uint64_t VirtioPciDevice::field_read(unsigned offset, bool legacy)
{
    return legacy ? legacy_register_read(offset) : common_read(offset);
}

void VirtioPciDevice::field_write(unsigned offset, uint64_t value, bool legacy)
{
    if (legacy)
        legacy_register_write(offset, value);
    else
        common_write(offset, value);
}

uint64_t VirtioPciDevice::device_config_read(uint64_t offset, unsigned size) const
{
    uint64_t v = 0;
    for (unsigned i = 0; i < size; ++i)
        if (offset + i < m_config.size())
            v |= uint64_t(m_config[offset + i]) << 8 * i;
    return v;
}

void VirtioPciDevice::store_config(unsigned offset, uint64_t value, unsigned size)
{
    assert(offset + size <= m_config.size());
    for (unsigned i = 0; i < size; ++i)
        m_config[offset + i] = uint8_t(value >> 8 * i);
}

uint16_t VirtioPciDevice::checked_vector(uint64_t value) const
{
    return m_msix && value < m_msix->vectors() ? uint16_t(value) : kNoVector;
}

// ---- modern interface ------------------------------------------------------

uint64_t VirtioPciDevice::common_read(unsigned offset)
{
    const VirtioPciState& s = m_state;
    const VirtqueueState* q = s.queue_select < m_queues.size() ? &m_queues[s.queue_select]->state() : nullptr;
    switch (offset) {
    case common::kDeviceFeatureSelect: return s.device_feature_select;
    case common::kDeviceFeature:
        return s.device_feature_select < 2 ? uint32_t(m_offered >> 32 * s.device_feature_select) : 0;
    case common::kDriverFeatureSelect: return s.driver_feature_select;
    case common::kDriverFeature:
        return s.driver_feature_select < 2 ? uint32_t(s.driver_features >> 32 * s.driver_feature_select) : 0;
    case common::kMsixConfig: return s.config_vector;
    case common::kNumQueues: return m_queues.size();
    case common::kDeviceStatus: return read_status();
    case common::kConfigGeneration: return s.config_generation;
    case common::kQueueSelect: return s.queue_select;
    case common::kQueueSize: return q ? q->size : 0;
    case common::kQueueMsixVector: return q ? q->msix_vector : kNoVector;
    case common::kQueueEnable: return q ? q->enabled : 0;
    case common::kQueueNotifyOff: return q ? s.queue_select : 0;
    case common::kQueueDesc: return q ? uint32_t(q->desc) : 0;
    case common::kQueueDesc + 4: return q ? uint32_t(q->desc >> 32) : 0;
    case common::kQueueDriver: return q ? uint32_t(q->avail) : 0;
    case common::kQueueDriver + 4: return q ? uint32_t(q->avail >> 32) : 0;
    case common::kQueueDevice: return q ? uint32_t(q->used) : 0;
    case common::kQueueDevice + 4: return q ? uint32_t(q->used >> 32) : 0;
    }
    return 0;
}

void VirtioPciDevice::common_write(unsigned offset, uint64_t value)
{
    VirtioPciState& s = m_state;
    VirtqueueState* q = s.queue_select < m_queues.size() ? &m_queues[s.queue_select]->state() : nullptr;
    // The driver must not touch an enabled queue's layout; such writes are dropped.
    VirtqueueState* layout = q && !q->enabled ? q : nullptr;
    switch (offset) {
    case common::kDeviceFeatureSelect: s.device_feature_select = uint32_t(value); break;
    case common::kDriverFeatureSelect: s.driver_feature_select = uint32_t(value); break;
    case common::kDriverFeature:
        if (s.driver_feature_select < 2 && !(s.status & kStatusFeaturesOk)) {
            unsigned shift = 32 * s.driver_feature_select;
            uint64_t word = uint64_t(uint32_t(value)) << shift;
            s.driver_features = (s.driver_features & ~(uint64_t(0xffffffff) << shift)) | word;
            s.legacy = false;
        }
        break;
    case common::kMsixConfig: s.config_vector = checked_vector(value); break;
    case common::kDeviceStatus: write_status(uint8_t(value), false); break;
    case common::kQueueSelect: s.queue_select = uint16_t(value); break;
    case common::kQueueSize:
        if (layout)
            layout->size = uint16_t(value);
        break;
    case common::kQueueMsixVector:
        if (q)
            q->msix_vector = checked_vector(value);
        break;
    case common::kQueueEnable:
        // Writing 0 is not allowed to the driver (no queue_reset here).
        if (layout && (value & 1))
            enable_queue(s.queue_select);
        break;
    case common::kQueueDesc:
    case common::kQueueDesc + 4:
    case common::kQueueDriver:
    case common::kQueueDriver + 4:
    case common::kQueueDevice:
    case common::kQueueDevice + 4:
        if (layout) { // 64-bit addresses in two dwords
            uint64_t& address = offset < common::kQueueDriver   ? layout->desc
                                : offset < common::kQueueDevice ? layout->avail
                                                                : layout->used;
            unsigned shift = offset % 8 ? 32 : 0;
            address = (address & ~(uint64_t(0xffffffff) << shift)) | uint64_t(uint32_t(value)) << shift;
        }
        break;
    }
}

namespace {

constexpr RegisterField kCommonFields[] = {
    {common::kDeviceFeatureSelect, 4, true}, {common::kDeviceFeature, 4, false},
    {common::kDriverFeatureSelect, 4, true}, {common::kDriverFeature, 4, true},
    {common::kMsixConfig, 2, true},          {common::kNumQueues, 2, false},
    {common::kDeviceStatus, 1, true},        {common::kConfigGeneration, 1, false},
    {common::kQueueSelect, 2, true},         {common::kQueueSize, 2, true},
    {common::kQueueMsixVector, 2, true},     {common::kQueueEnable, 2, true},
    {common::kQueueNotifyOff, 2, false},     {common::kQueueDesc, 4, true},
    {common::kQueueDesc + 4, 4, true},       {common::kQueueDriver, 4, true},
    {common::kQueueDriver + 4, 4, true},     {common::kQueueDevice, 4, true},
    {common::kQueueDevice + 4, 4, true},
};

constexpr RegisterField kLegacyFields[] = {
    {legacy::kHostFeatures, 4, false}, {legacy::kGuestFeatures, 4, true}, {legacy::kQueuePfn, 4, true},
    {legacy::kQueueSize, 2, false},    {legacy::kQueueSelect, 2, true},   {legacy::kQueueNotify, 2, true},
    {legacy::kStatus, 1, true},        {legacy::kIsr, 1, false},          {legacy::kConfigVector, 2, true},
    {legacy::kQueueVector, 2, true},
};

} // namespace

uint64_t VirtioPciDevice::modern_read(uint64_t offset, unsigned size)
{
    if (offset < kIsrOffset)
        return read_fields(kCommonFields, offset, size, false);
    if (offset < kDeviceOffset) {
        if (offset != kIsrOffset)
            return 0;
        uint8_t isr = m_state.isr;
        m_state.isr = 0;
        update_intx();
        return isr;
    }
    if (offset < kNotifyOffset)
        return device_config_read(offset - kDeviceOffset, size);
    return 0;
}

void VirtioPciDevice::modern_write(uint64_t offset, uint64_t value, unsigned size)
{
    if (offset < kIsrOffset) {
        write_fields(kCommonFields, offset, value, size, false);
    } else if (offset < kDeviceOffset) {
        // ISR is read-only.
    } else if (offset < kNotifyOffset) {
        uint64_t at = offset - kDeviceOffset;
        if (at + size <= m_config.size())
            config_space_write(unsigned(at), value, size);
    } else {
        notify(unsigned((offset - kNotifyOffset) / kNotifyMultiplier));
    }
}

// ---- legacy interface ------------------------------------------------------

uint64_t VirtioPciDevice::legacy_features() const
{
    return (m_offered & 0xffffffff) | uint64_t(1) << kFeatureAnyLayout;
}

unsigned VirtioPciDevice::legacy_config_offset() const
{
    return msix_enabled() ? legacy::kConfigMsix : legacy::kConfigNoMsix;
}

uint64_t VirtioPciDevice::legacy_register_read(unsigned offset)
{
    const VirtioPciState& s = m_state;
    const Virtqueue* q = s.queue_select < m_queues.size() ? m_queues[s.queue_select].get() : nullptr;
    switch (offset) {
    case legacy::kHostFeatures: return uint32_t(legacy_features());
    case legacy::kGuestFeatures: return uint32_t(s.driver_features);
    case legacy::kQueuePfn: return q && q->state().enabled ? uint32_t(q->state().desc >> legacy::kPfnShift) : 0;
    case legacy::kQueueSize: return q ? q->max_size() : 0;
    case legacy::kQueueSelect: return s.queue_select;
    case legacy::kQueueNotify: return 0;
    case legacy::kStatus: return read_status();
    case legacy::kIsr: {
        uint8_t isr = m_state.isr;
        m_state.isr = 0;
        update_intx();
        return isr;
    }
    case legacy::kConfigVector: return s.config_vector;
    case legacy::kQueueVector: return q ? q->state().msix_vector : kNoVector;
    }
    return 0;
}

void VirtioPciDevice::legacy_register_write(unsigned offset, uint64_t value)
{
    VirtioPciState& s = m_state;
    Virtqueue* q = s.queue_select < m_queues.size() ? m_queues[s.queue_select].get() : nullptr;
    switch (offset) {
    case legacy::kGuestFeatures:
        if (!(s.status & kStatusDriverOk)) {
            s.driver_features = uint32_t(value) & legacy_features();
            s.legacy = true;
            accept_ring_features();
        }
        break;
    case legacy::kQueuePfn:
        if (!q)
            break;
        if (value == 0) {
            uint16_t vector = q->state().msix_vector;
            q->reset();
            q->state().msix_vector = vector;
            accept_ring_features();
        } else if (!q->state().enabled) {
            q->state().size = q->max_size();
            q->set_legacy_layout(uint64_t(uint32_t(value)) << legacy::kPfnShift);
            enable_queue(s.queue_select);
        }
        break;
    case legacy::kQueueSelect: s.queue_select = uint16_t(value); break;
    case legacy::kQueueNotify: notify(unsigned(uint16_t(value))); break;
    case legacy::kStatus: write_status(uint8_t(value), true); break;
    case legacy::kConfigVector: s.config_vector = checked_vector(value); break;
    case legacy::kQueueVector:
        if (q)
            q->state().msix_vector = checked_vector(value);
        break;
    }
}

uint64_t VirtioPciDevice::legacy_read(uint64_t offset, unsigned size)
{
    unsigned config = legacy_config_offset();
    if (offset >= config)
        return device_config_read(offset - config, size);
    // The MSI-X vector registers exist while MSI-X is enabled (the configuration
    // starts after them then).
    return read_fields(std::span(kLegacyFields).first(msix_enabled() ? 10 : 8), offset, size, true);
}

void VirtioPciDevice::legacy_write(uint64_t offset, uint64_t value, unsigned size)
{
    unsigned config = legacy_config_offset();
    if (offset >= config) {
        if (offset - config + size <= m_config.size())
            config_space_write(unsigned(offset - config), value, size);
        return;
    }
    write_fields(std::span(kLegacyFields).first(msix_enabled() ? 10 : 8), offset, value, size, true);
}

// ---- status, features, queues ----------------------------------------------

uint8_t VirtioPciDevice::read_status() const
{
    if (m_state.status == 0 && reset_pending())
        return kStatusNeedsReset; // still resetting: not 0 yet
    return m_state.status;
}

bool VirtioPciDevice::features_ok() const
{
    uint64_t f = m_state.driver_features;
    return (f & ~m_offered) == 0 && (f >> kFeatureVersion1 & 1);
}

void VirtioPciDevice::accept_ring_features()
{
    for (auto& q : m_queues)
        q->set_features(negotiated(kFeatureIndirectDesc), negotiated(kFeatureEventIdx));
}

void VirtioPciDevice::write_status(uint8_t value, bool legacy)
{
    if (value == 0) {
        reset_transport();
        m_state.legacy = legacy;
        return;
    }
    m_state.legacy = legacy;
    uint8_t old = m_state.status;
    value = uint8_t((value & ~kStatusNeedsReset) | (old & kStatusNeedsReset)); // ours to set
    if (!legacy) {
        if ((value & kStatusFeaturesOk) && !(old & kStatusFeaturesOk)) {
            if (features_ok()) {
                accept_ring_features();
                features_accepted();
            } else {
                guest_error(
                    fmt::format("driver features {:#x} refused (offered {:#x})", m_state.driver_features, m_offered));
                value &= uint8_t(~kStatusFeaturesOk);
            }
        }
        if (!(value & kStatusFeaturesOk))
            value &= uint8_t(~kStatusDriverOk); // no DRIVER_OK without accepted features
    } else if ((value & kStatusDriverOk) && !(old & kStatusDriverOk)) {
        accept_ring_features();
        features_accepted();
    }
    m_state.status = value;
    if ((value & kStatusDriverOk) && !(old & kStatusDriverOk)) {
        for (unsigned i = 0; i < m_queues.size(); ++i) // buffers made available before DRIVER_OK
            if (m_queues[i]->ready())
                notify(i);
    }
}

void VirtioPciDevice::reset_transport()
{
    ++m_generation;
    uint8_t generation = m_state.config_generation;
    m_state = VirtioPciState{};
    m_state.config_generation = generation;
    for (auto& q : m_queues)
        q->reset();
    update_intx();
    virtio_reset();
}

void VirtioPciDevice::enable_queue(unsigned i)
{
    Virtqueue& q = *m_queues[i];
    if (std::string error = q.check_layout(); !error.empty()) {
        set_broken(error);
        return;
    }
    q.state().enabled = true;
}

void VirtioPciDevice::notify(unsigned i)
{
    if (i >= m_queues.size()) {
        guest_error(fmt::format("notify of queue {}, the device has {}", i, m_queues.size()));
        return;
    }
    if (broken())
        return;
    if (!m_queues[i]->ready()) {
        guest_error(fmt::format("queue {}: notified while disabled", i));
        return;
    }
    if (!driver_ok() && !m_state.legacy)
        return; // taken up when DRIVER_OK is set
    queue_notified(i);
}

// ---- interrupts ------------------------------------------------------------

void VirtioPciDevice::update_intx() { set_irq(m_state.isr != 0 && !msix_enabled()); }

void VirtioPciDevice::notify_queue(unsigned i)
{
    if (!m_queues[i]->should_notify())
        return;
    if (msix_enabled()) {
        if (uint16_t v = m_queues[i]->state().msix_vector; v != kNoVector)
            m_msix->notify(v);
        return;
    }
    m_state.isr |= kIsrQueue;
    update_intx();
}

void VirtioPciDevice::send_config_interrupt()
{
    if (!driver_ok())
        return;
    if (msix_enabled()) {
        if (m_state.config_vector != kNoVector)
            m_msix->notify(m_state.config_vector);
        return;
    }
    m_state.isr |= kIsrConfig;
    update_intx();
}

void VirtioPciDevice::config_changed()
{
    ++m_state.config_generation;
    send_config_interrupt();
}

void VirtioPciDevice::set_broken(const std::string& reason)
{
    guest_error(reason);
    if (broken())
        return;
    m_state.status |= kStatusNeedsReset;
    send_config_interrupt();
}

void VirtioPciDevice::guest_error(const std::string& message)
{
    auto now = std::chrono::steady_clock::now();
    if (now - m_log_window >= std::chrono::seconds(1)) {
        if (m_log_suppressed)
            log_warn("{}: {} more guest errors suppressed", name(), m_log_suppressed);
        m_log_window = now;
        m_log_count = m_log_suppressed = 0;
    }
    if (m_log_count < kLogBurst) {
        ++m_log_count;
        log_warn("{}: {}", name(), message);
    } else {
        ++m_log_suppressed;
    }
}

// ---- PCI hooks -------------------------------------------------------------

void VirtioPciDevice::config_written(unsigned offset, unsigned size)
{
    if (m_msix && overlaps(offset, size, m_msix->cap_offset(), m_msix->cap_offset() + Msix::kCapSize)) {
        m_msix->control_written();
        update_intx();
    }
}

void VirtioPciDevice::device_reset()
{
    if (m_msix)
        m_msix->reset();
    reset_transport();
}

std::string VirtioPciDevice::dump() const
{
    std::string out = PciDevice::dump();
    std::span<const FieldDesc> fields = VirtioPciState::fields();
    out += dump_state(fields.first(fields.size() - 1), &m_state);
    for (unsigned i = 0; i < m_queues.size(); ++i)
        out += dump_state(VirtqueueState::fields(), &m_state.queues[i], fmt::format("queue[{}].", i));
    if (m_msix)
        out += dump_state(MsixState::fields(), &m_msix->state(), "msix.");
    return out;
}

} // namespace emu::devices
