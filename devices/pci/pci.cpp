// devices/pci/pci.cpp — PCI functions, bus 0 and configuration mechanism #1
// (behaviour from the PCI Local Bus Specification 3.0).
#include "devices/pci/pci.h"

#include "common/log.h"
#include "engine/memory/address_space.h"

#include <algorithm>
#include <bit>
#include <cassert>
#include <fmt/format.h>

namespace emu::devices {

namespace {

constexpr uint16_t kCommandWritable = pci::kCommandIo | pci::kCommandMemory | pci::kCommandMaster | 0x0040 /* parity */ |
                                      0x0100 /* SERR# */ | pci::kCommandIntxDisable;
constexpr uint16_t kStatusErrorBits = 0xf900; // write 1 to clear
constexpr unsigned kBarEnd = pci::kBar0 + 4 * PciDevice::kBars;
constexpr uint32_t kAddressEnable = 0x80000000u;
constexpr uint32_t kAddressMask = 0x80fffffcu; // enable, bus, device, function, register

bool overlaps(unsigned offset, unsigned size, unsigned start, unsigned end)
{
    return offset < end && start < offset + size;
}

uint64_t align_up(uint64_t value, uint64_t alignment) { return (value + alignment - 1) & ~(alignment - 1); }

uint32_t ones(unsigned size) { return size >= 4 ? 0xffffffffu : (1u << (8 * size)) - 1; }

} // namespace

std::span<const FieldDesc> PciDeviceState::fields()
{
    static const FieldDesc table[] = {
        field<&PciDeviceState::config>("config"),
        field<&PciDeviceState::irq_level>("irq_level"),
    };
    return table;
}

// ---- PciDevice -----------------------------------------------------------

PciDevice::PciDevice(std::string name, const PciId& id) : m_name(std::move(name))
{
    init_config16(pci::kVendorId, id.vendor);
    init_config16(pci::kDeviceId, id.device);
    init_config16(pci::kCommand, 0, kCommandWritable);
    init_config16(pci::kStatus, 0, 0, kStatusErrorBits);
    init_config8(pci::kRevision, id.revision);
    init_config8(pci::kClassProg, uint8_t(id.class_code));
    init_config16(pci::kClassProg + 1, uint16_t(id.class_code >> 8));
    init_config8(pci::kCacheLineSize, 0, 0xff);
    init_config8(pci::kLatencyTimer, 0, 0xff);
    init_config16(pci::kSubsystemVendorId, id.subsystem_vendor);
    init_config16(pci::kSubsystemId, id.subsystem);
    init_config8(pci::kInterruptLine, 0, 0xff);
}

PciDevice::~PciDevice()
{
    if (m_bus)
        m_bus->unplug(*this);
}

void PciDevice::init_config8(unsigned offset, uint8_t value, uint8_t wmask, uint8_t w1cmask)
{
    assert(offset < pci::kConfigSize);
    m_state.config[offset] = value;
    m_wmask[offset] = wmask;
    m_w1cmask[offset] = w1cmask;
}

void PciDevice::init_config16(unsigned offset, uint16_t value, uint16_t wmask, uint16_t w1cmask)
{
    for (unsigned i = 0; i < 2; ++i)
        init_config8(offset + i, uint8_t(value >> 8 * i), uint8_t(wmask >> 8 * i), uint8_t(w1cmask >> 8 * i));
}

void PciDevice::init_config32(unsigned offset, uint32_t value, uint32_t wmask, uint32_t w1cmask)
{
    for (unsigned i = 0; i < 4; ++i)
        init_config8(offset + i, uint8_t(value >> 8 * i), uint8_t(wmask >> 8 * i), uint8_t(w1cmask >> 8 * i));
}

uint16_t PciDevice::config16(unsigned offset) const
{
    return uint16_t(m_state.config[offset] | m_state.config[offset + 1] << 8);
}

uint32_t PciDevice::config32(unsigned offset) const
{
    return uint32_t(config16(offset)) | uint32_t(config16(offset + 2)) << 16;
}

void PciDevice::set_interrupt_pin(int pin)
{
    assert(pin >= 0 && pin <= 4);
    init_config8(pci::kInterruptPin, uint8_t(pin));
}

void PciDevice::register_bar(int index, PciBarKind kind, mem::MemoryRegion::Ptr region, bool prefetchable)
{
    assert(index >= 0 && index < kBars && kind != PciBarKind::None && region);
    assert(kind != PciBarKind::Mem64 || index + 1 < kBars);
    uint64_t size = region->size();
    assert(std::has_single_bit(size) && size >= (kind == PciBarKind::Io ? 4u : 16u));
    assert(kind != PciBarKind::Io || size <= 256); // I/O BARs are at most 256 bytes
    Bar& bar = m_bars[size_t(index)];
    assert(bar.kind == PciBarKind::None);
    bar.kind = kind;
    bar.prefetchable = prefetchable && kind != PciBarKind::Io;
    bar.size = size;
    bar.region = std::move(region);
    unsigned reg = pci::kBar0 + 4 * unsigned(index);
    uint64_t mask = ~(size - 1);
    switch (kind) {
    case PciBarKind::Io:
        init_config32(reg, 0x1, uint32_t(mask) & ~3u);
        break;
    case PciBarKind::Mem32:
        assert(size <= (uint64_t(1) << 31));
        init_config32(reg, bar.prefetchable ? 0x8 : 0x0, uint32_t(mask) & ~0xfu);
        break;
    case PciBarKind::Mem64:
        init_config32(reg, 0x4 | (bar.prefetchable ? 0x8 : 0x0), uint32_t(mask) & ~0xfu);
        init_config32(reg + 4, 0, uint32_t(mask >> 32));
        break;
    case PciBarKind::None:
        break;
    }
}

uint8_t PciDevice::add_capability(uint8_t id, uint8_t size, uint8_t offset)
{
    if (offset == 0)
        offset = uint8_t(std::min<unsigned>(m_next_capability, 0xfc));
    assert(offset >= 0x40 && (offset & 3) == 0 && size >= 2 && unsigned(offset) + size <= pci::kConfigSize);
    if (m_last_capability)
        m_state.config[m_last_capability + 1] = offset;
    else
        init_config8(pci::kCapabilityList, offset);
    init_config8(offset, id);
    init_config8(offset + 1u, 0); // the end of the list
    m_last_capability = offset;
    m_next_capability = std::max<unsigned>(m_next_capability, unsigned(align_up(offset + size, 4)));
    m_state.config[pci::kStatus] |= pci::kStatusCapList;
    return offset;
}

uint32_t PciDevice::config_read(unsigned offset, unsigned size) const
{
    assert(offset + size <= pci::kConfigSize && (size == 1 || size == 2 || size == 4));
    uint32_t v = 0;
    for (unsigned i = 0; i < size; ++i)
        v |= uint32_t(m_state.config[offset + i]) << 8 * i;
    return v;
}

void PciDevice::config_write(unsigned offset, uint32_t value, unsigned size)
{
    assert(offset + size <= pci::kConfigSize && (size == 1 || size == 2 || size == 4));
    for (unsigned i = 0; i < size; ++i) {
        uint8_t b = uint8_t(value >> 8 * i);
        unsigned o = offset + i;
        uint8_t v = uint8_t((m_state.config[o] & ~m_wmask[o]) | (b & m_wmask[o]));
        m_state.config[o] = uint8_t(v & ~(b & m_w1cmask[o]));
    }
    if (overlaps(offset, size, pci::kCommand, pci::kCommand + 2) || overlaps(offset, size, pci::kBar0, kBarEnd))
        update_mappings();
    if (overlaps(offset, size, pci::kCommand, pci::kCommand + 2))
        update_irq();
    config_written(offset, size);
}

void PciDevice::config_written(unsigned, unsigned) {}
void PciDevice::device_reset() {}

uint64_t PciDevice::bar_address(int index) const
{
    const Bar& bar = m_bars[size_t(index)];
    unsigned reg = pci::kBar0 + 4 * unsigned(index);
    switch (bar.kind) {
    case PciBarKind::Io:
        return config32(reg) & ~3u;
    case PciBarKind::Mem32:
        return config32(reg) & ~0xfu;
    case PciBarKind::Mem64:
        return (uint64_t(config32(reg + 4)) << 32 | config32(reg)) & ~uint64_t(0xf);
    case PciBarKind::None:
        break;
    }
    return 0;
}

uint64_t PciDevice::bar_target(int index) const
{
    const Bar& bar = m_bars[size_t(index)];
    uint16_t command = config16(pci::kCommand);
    uint64_t addr = bar_address(index);
    switch (bar.kind) {
    case PciBarKind::Io:
        if (!(command & pci::kCommandIo) || addr == 0 || addr + bar.size > mem::kPortSpaceSize)
            return kUnmapped;
        return addr;
    case PciBarKind::Mem32:
        // Ending at 4 GiB is the sizing pattern, not a placement.
        if (!(command & pci::kCommandMemory) || addr == 0 || addr + bar.size >= (uint64_t(1) << 32))
            return kUnmapped;
        return addr;
    case PciBarKind::Mem64:
        if (!(command & pci::kCommandMemory) || addr == 0 || addr > ~uint64_t(0) - bar.size)
            return kUnmapped;
        return addr;
    case PciBarKind::None:
        break;
    }
    return kUnmapped;
}

void PciDevice::update_mappings()
{
    if (!m_bus)
        return;
    mem::TopologyBatch batch;
    for (int i = 0; i < kBars; ++i) {
        Bar& bar = m_bars[size_t(i)];
        if (bar.kind == PciBarKind::None)
            continue;
        uint64_t target = bar_target(i);
        if (target == bar.mapped_at)
            continue;
        mem::MemoryRegion& space = bar.kind == PciBarKind::Io ? m_bus->io_space() : m_bus->mem_space();
        if (bar.mapped_at != kUnmapped) {
            space.remove_subregion(*bar.region);
            bar.mapped_at = kUnmapped;
        }
        if (target == kUnmapped)
            continue;
        if (auto r = space.add_subregion(*bar.region, target); !r) {
            // A guest placing a BAR over another region: nothing decodes there.
            log(m_warned ? LogLevel::Debug : LogLevel::Warn, "{}: BAR{} at {:#x} not mapped: {}", m_name, i, target,
                r.error().message);
            m_warned = true;
            continue;
        }
        bar.mapped_at = target;
    }
}

bool PciDevice::irq_asserted() const
{
    return m_state.irq_level && interrupt_pin() != 0 && !(config16(pci::kCommand) & pci::kCommandIntxDisable);
}

void PciDevice::set_irq(bool level)
{
    m_state.irq_level = level;
    if (level)
        m_state.config[pci::kStatus] |= pci::kStatusIntx;
    else
        m_state.config[pci::kStatus] &= uint8_t(~pci::kStatusIntx);
    update_irq();
}

void PciDevice::update_irq()
{
    bool level = irq_asserted();
    if (!m_bus || level == m_reported_level)
        return;
    m_reported_level = level;
    m_bus->intx_changed(*this, level);
}

void PciDevice::plugged(PciBus* bus, uint8_t devfn)
{
    m_bus = bus;
    m_devfn = devfn;
    m_power_on = m_state.config;
    update_mappings();
    update_irq();
}

void PciDevice::reset()
{
    set_irq(false);
    m_state.config = m_power_on;
    update_mappings();
    device_reset();
}

std::string PciDevice::dump() const
{
    std::string out = dump_state(PciDeviceState::fields(), &m_state);
    for (int i = 0; i < kBars; ++i) {
        const Bar& bar = m_bars[size_t(i)];
        if (bar.kind == PciBarKind::None)
            continue;
        const char* kind = bar.kind == PciBarKind::Io ? "io" : bar.kind == PciBarKind::Mem32 ? "mem32" : "mem64";
        out += fmt::format("bar{}={} size={:#x} address={:#x}{}\n", i, kind, bar.size, bar_address(i),
                           bar.mapped_at == kUnmapped ? " (unmapped)" : "");
    }
    return out;
}

// ---- PciBus --------------------------------------------------------------

PciBus::PciBus(mem::MemoryRegion& io_space, mem::MemoryRegion& mem_space) : m_io_space(io_space), m_mem_space(mem_space)
{
    mem::IoOps address;
    address.read = [this](uint64_t off, unsigned size) { return address_read(off, size); };
    address.write = [this](uint64_t off, uint64_t v, unsigned size) { address_write(off, v, size); };
    address.min_access = 1;
    address.max_access = 4;
    m_address_region = std::move(*mem::MemoryRegion::io("pci-conf-addr", 4, std::move(address)));

    mem::IoOps data;
    data.read = [this](uint64_t off, unsigned size) -> uint64_t {
        unsigned reg = 0;
        PciDevice* dev = selected(reg);
        return dev ? dev->config_read(reg + unsigned(off), size) : ones(size);
    };
    data.write = [this](uint64_t off, uint64_t v, unsigned size) {
        unsigned reg = 0;
        if (PciDevice* dev = selected(reg))
            dev->config_write(reg + unsigned(off), uint32_t(v), size);
    };
    data.min_access = 1;
    data.max_access = 4;
    m_data_region = std::move(*mem::MemoryRegion::io("pci-conf-data", 4, std::move(data)));
}

PciBus::~PciBus()
{
    for (PciDevice* dev : m_devices)
        if (dev)
            unplug(*dev);
}

mem::Result<void> PciBus::attach(mem::MemoryRegion& port_root)
{
    if (auto r = port_root.add_subregion(*m_address_region, kConfigAddressPort); !r)
        return r;
    return port_root.add_subregion(*m_data_region, kConfigDataPort);
}

mem::Result<void> PciBus::plug(PciDevice& device, uint8_t devfn)
{
    assert(!device.m_bus);
    if (m_devices[devfn])
        return mem::fail(fmt::format("pci: cannot plug '{}' at {:02x}.{}: '{}' is there", device.name(),
                                     pci::slot_of(devfn), pci::function_of(devfn), m_devices[devfn]->name()));
    m_devices[devfn] = &device;
    uint8_t fn0 = pci::devfn(pci::slot_of(devfn), 0);
    bool multi = false;
    for (unsigned f = 1; f < 8; ++f)
        multi |= m_devices[fn0 + f] != nullptr;
    if (multi && fn0 != devfn && m_devices[fn0]) {
        PciDevice& first = *m_devices[fn0];
        first.m_state.config[pci::kHeaderType] |= pci::kHeaderMultiFunction;
        first.m_power_on[pci::kHeaderType] |= pci::kHeaderMultiFunction;
    }
    if (multi && fn0 == devfn)
        device.m_state.config[pci::kHeaderType] |= pci::kHeaderMultiFunction;
    device.plugged(this, devfn);
    return {};
}

void PciBus::unplug(PciDevice& device)
{
    assert(device.m_bus == this && m_devices[device.m_devfn] == &device);
    if (device.m_reported_level) {
        device.m_reported_level = false;
        intx_changed(device, false);
    }
    mem::TopologyBatch batch;
    for (auto& bar : device.m_bars) {
        if (bar.mapped_at == PciDevice::kUnmapped)
            continue;
        (bar.kind == PciBarKind::Io ? m_io_space : m_mem_space).remove_subregion(*bar.region);
        bar.mapped_at = PciDevice::kUnmapped;
    }
    m_devices[device.m_devfn] = nullptr;
    device.m_bus = nullptr;
}

uint32_t PciBus::config_read(uint8_t devfn, unsigned offset, unsigned size) const
{
    PciDevice* dev = m_devices[devfn];
    return dev ? dev->config_read(offset, size) : ones(size);
}

void PciBus::config_write(uint8_t devfn, unsigned offset, uint32_t value, unsigned size)
{
    if (PciDevice* dev = m_devices[devfn])
        dev->config_write(offset, value, size);
}

PciDevice* PciBus::selected(unsigned& reg) const
{
    uint32_t addr = m_config_address;
    if (!(addr & kAddressEnable) || ((addr >> 16) & 0xff) != 0)
        return nullptr; // no cycle, or a bus behind a bridge we do not have
    reg = addr & 0xfc;
    return m_devices[(addr >> 8) & 0xff];
}

uint64_t PciBus::address_read(uint64_t offset, unsigned size)
{
    if (size == 4)
        return m_config_address;
    // Not a configuration access: the byte at 0xcf9 is the reset control
    // register, the others float.
    uint64_t v = 0;
    for (unsigned i = 0; i < size; ++i) {
        uint8_t b = 0xff;
        if (offset + i == 1 && m_cf9_read)
            b = m_cf9_read();
        v |= uint64_t(b) << 8 * i;
    }
    return v;
}

void PciBus::address_write(uint64_t offset, uint64_t value, unsigned size)
{
    if (size == 4) {
        m_config_address = uint32_t(value) & kAddressMask;
        return;
    }
    for (unsigned i = 0; i < size; ++i)
        if (offset + i == 1 && m_cf9_write)
            m_cf9_write(uint8_t(value >> 8 * i));
}

void PciBus::set_cf9_handler(std::function<uint8_t()> read, std::function<void(uint8_t)> write)
{
    m_cf9_read = std::move(read);
    m_cf9_write = std::move(write);
}

// ---- INTx ----------------------------------------------------------------

void PciBus::set_intx_router(PciIntxRouter router)
{
    assert(router.pirqs > 0 && router.pirqs <= kMaxPirqs);
    m_router = std::move(router);
    recount_pirqs();
}

void PciBus::recount_pirqs()
{
    std::array<int, kMaxPirqs> count{};
    if (m_router.map_pirq) {
        for (PciDevice* dev : m_devices)
            if (dev && dev->m_reported_level)
                count[size_t(m_router.map_pirq(dev->devfn(), dev->interrupt_pin() - 1) % m_router.pirqs)]++;
    }
    for (int n = 0; n < kMaxPirqs; ++n) {
        bool was = m_pirq_count[size_t(n)] > 0, now = count[size_t(n)] > 0;
        m_pirq_count[size_t(n)] = count[size_t(n)];
        if (was != now && m_router.set_pirq && n < m_router.pirqs)
            m_router.set_pirq(n, now);
    }
}

void PciBus::intx_changed(PciDevice& device, bool level)
{
    if (!m_router.map_pirq)
        return;
    int pirq = m_router.map_pirq(device.devfn(), device.interrupt_pin() - 1) % m_router.pirqs;
    int& count = m_pirq_count[size_t(pirq)];
    count += level ? 1 : -1;
    assert(count >= 0);
    if ((level && count == 1) || (!level && count == 0)) {
        if (m_router.set_pirq)
            m_router.set_pirq(pirq, level);
    }
}

int PciBus::isa_irq_of(uint8_t devfn, int pin) const
{
    if (!m_router.map_pirq || !m_router.isa_irq)
        return -1;
    return m_router.isa_irq(m_router.map_pirq(devfn, pin) % m_router.pirqs);
}

// ---- firmware ------------------------------------------------------------

int PciBus::assign_resources(const PciResourceConfig& config)
{
    struct Want {
        PciDevice* dev;
        int index;
    };
    std::vector<Want> io, mem;
    for (PciDevice* dev : m_devices) {
        if (!dev)
            continue;
        for (int i = 0; i < PciDevice::kBars; ++i) {
            PciBarKind kind = dev->bar_kind(i);
            if (kind == PciBarKind::Io)
                io.push_back({dev, i});
            else if (kind != PciBarKind::None)
                mem.push_back({dev, i});
        }
    }
    auto larger_first = [](const Want& a, const Want& b) { return a.dev->bar_size(a.index) > b.dev->bar_size(b.index); };
    std::stable_sort(io.begin(), io.end(), larger_first);
    std::stable_sort(mem.begin(), mem.end(), larger_first);

    auto program = [](const Want& w, uint64_t addr) {
        unsigned reg = pci::kBar0 + 4 * unsigned(w.index);
        w.dev->config_write(reg, uint32_t(addr), 4);
        if (w.dev->bar_kind(w.index) == PciBarKind::Mem64)
            w.dev->config_write(reg + 4, uint32_t(addr >> 32), 4);
    };
    // Bump allocation in a window; `next` moves only on success.
    auto place = [](uint64_t& next, uint64_t end, uint64_t size, uint64_t& addr) {
        addr = align_up(next, size);
        if (addr < next || addr > end || end - addr < size)
            return false;
        next = addr + size;
        return true;
    };

    int failed = 0;
    uint64_t next_io = config.io_start, next32 = config.mem32_start, next64 = config.mem64_start;
    for (const Want& w : io) {
        uint64_t addr = 0;
        if (place(next_io, config.io_end, w.dev->bar_size(w.index), addr)) {
            program(w, addr);
        } else {
            log_warn("{}: no room for I/O BAR{} ({:#x} bytes)", w.dev->name(), w.index, w.dev->bar_size(w.index));
            ++failed;
        }
    }
    for (const Want& w : mem) {
        uint64_t size = w.dev->bar_size(w.index), addr = 0;
        bool ok = place(next32, config.mem32_end, size, addr);
        if (!ok && w.dev->bar_kind(w.index) == PciBarKind::Mem64 && config.mem64_end > config.mem64_start)
            ok = place(next64, config.mem64_end, size, addr);
        if (ok) {
            program(w, addr);
        } else {
            log_warn("{}: no room for memory BAR{} ({:#x} bytes)", w.dev->name(), w.index, size);
            ++failed;
        }
    }

    for (PciDevice* dev : m_devices) {
        if (!dev)
            continue;
        if (int pin = dev->interrupt_pin()) {
            int irq = isa_irq_of(dev->devfn(), pin - 1);
            dev->config_write(pci::kInterruptLine, irq >= 0 ? uint32_t(irq) : 0xffu, 1);
        }
        uint16_t command = uint16_t(dev->config_read(pci::kCommand, 2));
        for (int i = 0; i < PciDevice::kBars; ++i) {
            if (dev->bar_kind(i) == PciBarKind::Io)
                command |= pci::kCommandIo;
            else if (dev->bar_kind(i) != PciBarKind::None)
                command |= pci::kCommandMemory;
        }
        dev->config_write(pci::kCommand, command, 2);
    }
    return failed;
}

void PciBus::reset()
{
    m_config_address = 0;
    for (PciDevice* dev : m_devices)
        if (dev)
            dev->reset();
}

} // namespace emu::devices
