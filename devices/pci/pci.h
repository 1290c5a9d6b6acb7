// devices/pci/pci.h — PCI bus 0 of a PC: functions with a 256-byte
// configuration space, configuration mechanism #1 at ports 0xcf8/0xcfc, BARs
// mapped into the machine's port and memory containers, INTx routed through
// the south bridge, and the resource assignment firmware would do.
//
// A PciDevice owns its configuration bytes with per-byte write masks (and
// write-1-to-clear masks), its BAR regions and its INTx pin. Derived devices
// lay out their registers in the constructor (init_config*), register BARs
// and capabilities, and react to writes in `config_written`. The bus
// snapshots the configuration at plug time: reset() restores that image.
//
// BARs: I/O, 32-bit memory and 64-bit memory (optionally prefetchable), of a
// power-of-two size (I/O >= 4 bytes, memory >= 16). Sizing works as on
// hardware: the address bits below the size are read-only zero, so writing
// all ones reads back ~(size-1) | flags. A BAR is mapped while its decode bit
// (command IO or MEM) is set and its address is usable: not 0, inside the
// port space for I/O, and not ending at the top of its address width (that
// is the all-ones sizing pattern, as QEMU treats it). A BAR whose placement
// the memory layer refuses (it overlaps another region of the same
// priority) stays unmapped and is logged: the guest sees nothing there.
//
// Configuration mechanism #1: a dword write to 0xcf8 latches the address
// (bit 31 enable, bus 23:16, device 15:11, function 10:8, register 7:2);
// 0xcfc-0xcff read and write the selected dword at any size and byte offset.
// Narrower accesses to 0xcf8-0xcfb are not configuration cycles; the byte at
// 0xcf9 is the south bridge's reset control register, reached through
// set_cf9_handler (one region covers 0xcf8-0xcfb, so a dword access there is
// never split between two devices). Absent functions, other buses and
// disabled cycles read all ones; their writes are dropped.
//
// Lifetime: the machine owns the bus and the devices; the bus must outlive
// every device plugged into it (a device unplugs itself when destroyed) and
// the south bridge that routes its INTx. Everything runs under the VM's
// device lock (BAR writes change the memory topology from a port access,
// which the memory layer allows).
//
// INTx: a device drives set_irq(level) on its interrupt pin; the command
// register's Interrupt Disable bit masks it and the status register's
// Interrupt Status bit shows it. The bus maps (devfn, pin) to a PIRQ through
// the router the south bridge installs and counts asserted devices per PIRQ,
// so shared lines are OR'ed and the router sees level changes only.
#pragma once

#include "devices/state.h"
#include "engine/memory/region.h"

#include <array>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

namespace emu::devices {

namespace pci {

// Configuration header (type 0) offsets.
inline constexpr unsigned kVendorId = 0x00, kDeviceId = 0x02, kCommand = 0x04, kStatus = 0x06, kRevision = 0x08,
                          kClassProg = 0x09, kCacheLineSize = 0x0c, kLatencyTimer = 0x0d, kHeaderType = 0x0e,
                          kBar0 = 0x10, kSubsystemVendorId = 0x2c, kSubsystemId = 0x2e, kRomAddress = 0x30,
                          kCapabilityList = 0x34, kInterruptLine = 0x3c, kInterruptPin = 0x3d;
inline constexpr uint16_t kCommandIo = 0x0001, kCommandMemory = 0x0002, kCommandMaster = 0x0004,
                          kCommandIntxDisable = 0x0400;
inline constexpr uint16_t kStatusIntx = 0x0008, kStatusCapList = 0x0010;
inline constexpr uint8_t kHeaderMultiFunction = 0x80;
inline constexpr unsigned kConfigSize = 256;

constexpr uint8_t devfn(unsigned slot, unsigned function) { return uint8_t(slot << 3 | function); }
constexpr unsigned slot_of(uint8_t devfn) { return devfn >> 3; }
constexpr unsigned function_of(uint8_t devfn) { return devfn & 7; }

} // namespace pci

struct PciId {
    uint16_t vendor = 0;
    uint16_t device = 0;
    uint8_t revision = 0;
    uint32_t class_code = 0; // base << 16 | sub-class << 8 | programming interface
    uint16_t subsystem_vendor = 0;
    uint16_t subsystem = 0;
};

enum class PciBarKind : uint8_t { None, Io, Mem32, Mem64 };

struct PciDeviceState {
    std::array<uint8_t, pci::kConfigSize> config{};
    bool irq_level = false; // the device's INTx request, before Interrupt Disable
    static std::span<const FieldDesc> fields();
};

class PciBus;

class PciDevice {
public:
    static constexpr int kBars = 6;
    static constexpr uint64_t kUnmapped = ~uint64_t(0);

    PciDevice(std::string name, const PciId& id);
    virtual ~PciDevice();
    PciDevice(const PciDevice&) = delete;
    PciDevice& operator=(const PciDevice&) = delete;

    const std::string& name() const { return m_name; }
    PciBus* bus() const { return m_bus; }
    uint8_t devfn() const { return m_devfn; }

    // Configuration cycles (the bus calls these; `offset` + `size` stays in
    // the 256 bytes and size is 1, 2 or 4).
    uint32_t config_read(unsigned offset, unsigned size) const;
    void config_write(unsigned offset, uint32_t value, unsigned size);

    // INTx on the interrupt pin (ignored without one).
    void set_irq(bool level);
    int interrupt_pin() const { return m_state.config[pci::kInterruptPin]; } // 0 none, 1-4 INTA-INTD

    // BAR `index` as programmed: kind, size, and where it is mapped now
    // (kUnmapped if not).
    PciBarKind bar_kind(int index) const { return m_bars[size_t(index)].kind; }
    uint64_t bar_size(int index) const { return m_bars[size_t(index)].size; }
    bool bar_prefetchable(int index) const { return m_bars[size_t(index)].prefetchable; }
    uint64_t bar_address(int index) const; // the address bits of the register(s)
    uint64_t bar_mapped_at(int index) const { return m_bars[size_t(index)].mapped_at; }
    mem::MemoryRegion* bar_region(int index) const { return m_bars[size_t(index)].region.get(); }

    // Power-on image, BARs unmapped, INTx low, then device_reset().
    void reset();

    const PciDeviceState& state() const { return m_state; }
    std::string dump() const;

protected:
    // Construction-time layout. `wmask`: bits the guest may write;
    // `w1cmask`: bits a guest write of 1 clears.
    void init_config8(unsigned offset, uint8_t value, uint8_t wmask = 0, uint8_t w1cmask = 0);
    void init_config16(unsigned offset, uint16_t value, uint16_t wmask = 0, uint16_t w1cmask = 0);
    void init_config32(unsigned offset, uint32_t value, uint32_t wmask = 0, uint32_t w1cmask = 0);
    void set_interrupt_pin(int pin); // 1-4 = INTA-INTD
    // A BAR over `region` (its size, a power of two, is the BAR's size). A
    // 64-bit BAR takes index and index+1. The device owns the region.
    void register_bar(int index, PciBarKind kind, mem::MemoryRegion::Ptr region, bool prefetchable = false);
    // Appends a capability of `size` bytes (>= 2) with ID `id` to the list;
    // `offset` 0 places it after the last one (the first at 0x40). Returns
    // its offset; the caller lays out its registers after the ID/next bytes.
    uint8_t add_capability(uint8_t id, uint8_t size, uint8_t offset = 0);

    // Direct access for derived devices (no masks, no side effects).
    uint8_t config8(unsigned offset) const { return m_state.config[offset]; }
    uint16_t config16(unsigned offset) const;
    uint32_t config32(unsigned offset) const;
    void set_config8(unsigned offset, uint8_t value) { m_state.config[offset] = value; }

    // After a guest write has been applied to [offset, offset+size).
    virtual void config_written(unsigned offset, unsigned size);
    // Device-specific part of reset (after the configuration image is back).
    virtual void device_reset();

private:
    friend class PciBus;
    struct Bar {
        PciBarKind kind = PciBarKind::None;
        bool prefetchable = false;
        uint64_t size = 0;
        mem::MemoryRegion::Ptr region;
        uint64_t mapped_at = kUnmapped;
    };

    void plugged(PciBus* bus, uint8_t devfn);
    void update_mappings();
    uint64_t bar_target(int index) const;
    void update_irq();
    bool irq_asserted() const; // what the bus has been told

    std::string m_name;
    PciDeviceState m_state;
    std::array<uint8_t, pci::kConfigSize> m_wmask{};
    std::array<uint8_t, pci::kConfigSize> m_w1cmask{};
    std::array<uint8_t, pci::kConfigSize> m_power_on{};
    std::array<Bar, kBars> m_bars;
    uint8_t m_last_capability = 0;
    unsigned m_next_capability = 0x40;
    PciBus* m_bus = nullptr;
    uint8_t m_devfn = 0;
    bool m_reported_level = false;
    bool m_warned = false; // a refused BAR placement was logged at warning level
};

// What firmware would program: I/O BARs from io_start, 32-bit memory BARs
// (and 64-bit ones that fit) in [mem32_start, mem32_end), other 64-bit BARs
// in [mem64_start, mem64_end) if that window is not empty. Each BAR is
// naturally aligned; larger BARs are placed first.
struct PciResourceConfig {
    uint64_t io_start = 0xc000;
    uint64_t io_end = 0x10000;
    uint64_t mem32_start = 0xe0000000;
    uint64_t mem32_end = 0xfec00000;
    uint64_t mem64_start = 0;
    uint64_t mem64_end = 0;
};

// The south bridge's INTx routing.
struct PciIntxRouter {
    int pirqs = 4;
    std::function<int(uint8_t devfn, int pin)> map_pirq; // pin 0 = INTA; returns 0..pirqs-1
    std::function<void(int pirq, bool level)> set_pirq;  // told on level changes only
    std::function<int(int pirq)> isa_irq;                // -1 when the PIRQ is not routed
};

class PciBus {
public:
    static constexpr uint16_t kConfigAddressPort = 0xcf8;
    static constexpr uint16_t kConfigDataPort = 0xcfc;
    static constexpr int kMaxPirqs = 8;

    // BARs are mapped into these containers (typically the port-I/O root
    // and the system memory root, or PCI windows inside them).
    PciBus(mem::MemoryRegion& io_space, mem::MemoryRegion& mem_space);
    ~PciBus();
    PciBus(const PciBus&) = delete;
    PciBus& operator=(const PciBus&) = delete;

    // Maps 0xcf8-0xcfb and 0xcfc-0xcff into a port-I/O root.
    mem::Result<void> attach(mem::MemoryRegion& port_root);

    // Plugs a function at devfn (error if taken). A function other than 0
    // marks function 0 of its slot multi-function. Takes the device's
    // power-on configuration snapshot.
    mem::Result<void> plug(PciDevice& device, uint8_t devfn);
    void unplug(PciDevice& device);
    PciDevice* device(uint8_t devfn) const { return m_devices[devfn]; }

    // Configuration cycles on bus 0 (all ones / dropped without a function).
    uint32_t config_read(uint8_t devfn, unsigned offset, unsigned size) const;
    void config_write(uint8_t devfn, unsigned offset, uint32_t value, unsigned size);

    void set_intx_router(PciIntxRouter router);
    bool pirq_level(int pirq) const { return m_pirq_count[size_t(pirq) % kMaxPirqs] > 0; }
    // The ISA IRQ a device's pin reaches now, or -1.
    int isa_irq_of(uint8_t devfn, int pin) const;

    // The byte at 0xcf9 (the south bridge's reset control register).
    void set_cf9_handler(std::function<uint8_t()> read, std::function<void(uint8_t)> write);

    // Firmware's job on direct boot: program every BAR, set Interrupt Line
    // to the routed ISA IRQ, enable I/O and memory decoding. Returns how many
    // BARs did not fit (they stay unprogrammed, logged).
    int assign_resources(const PciResourceConfig& config);

    // System reset: every function's reset(), the address register cleared.
    void reset();

    mem::MemoryRegion& io_space() const { return m_io_space; }
    mem::MemoryRegion& mem_space() const { return m_mem_space; }
    uint32_t config_address() const { return m_config_address; }

private:
    friend class PciDevice;
    void intx_changed(PciDevice& device, bool level);
    uint64_t address_read(uint64_t offset, unsigned size);
    void address_write(uint64_t offset, uint64_t value, unsigned size);
    PciDevice* selected(unsigned& reg) const;
    void recount_pirqs();

    mem::MemoryRegion& m_io_space;
    mem::MemoryRegion& m_mem_space;
    std::array<PciDevice*, 256> m_devices{};
    uint32_t m_config_address = 0;
    PciIntxRouter m_router;
    std::array<int, kMaxPirqs> m_pirq_count{};
    std::function<uint8_t()> m_cf9_read;
    std::function<void(uint8_t)> m_cf9_write;
    mem::MemoryRegion::Ptr m_address_region;
    mem::MemoryRegion::Ptr m_data_region;
};

} // namespace emu::devices
