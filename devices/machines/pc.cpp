// devices/machines/pc.cpp — machine 'pc' (i440FX + PIIX3), direct kernel boot.
//
// Threads and locks:
//  - one host thread per vCPU (devices/cpu_thread.h) runs guest code without
//    locks; its port and MMIO accesses, interrupt acknowledges and MSR
//    accesses to the local APIC take the machine's device lock;
//  - one timer thread fires the devices' timers (HostClock::run_due) under
//    the device lock and sleeps until the next deadline;
//  - the daemon's loop reaches devices (chardev input) through with_devices().
// Devices therefore never run on two threads at once. Interrupt lines are
// driven under the lock; the local APICs wake their vCPU (CpuThread::wake)
// when an interrupt becomes pending.
#include "devices/machines/pc.h"

#include "common/log.h"
#include "devices/bus_master.h"
#include "devices/machines/pc_disks.h"
#include "devices/acpi/piix4_pm.h"
#include "devices/acpi/tables.h"
#include "devices/apic/ioapic.h"
#include "devices/apic/lapic.h"
#include "devices/boot/boot.h"
#include "devices/chardev.h"
#include "devices/cpu_thread.h"
#include "devices/firmware/fw_cfg.h"
#include "devices/input/i8042.h"
#include "devices/misc/isa_debug.h"
#include "devices/misc/pc_testdev.h"
#include "devices/props.h"
#include "devices/pci/i440fx.h"
#include "devices/pci/pci.h"
#include "devices/pic/i8259.h"
#include "devices/rtc/mc146818.h"
#include "devices/serial/uart16550.h"
#include "devices/timer/hpet.h"
#include "devices/timer/i8254.h"
#include "engine/clock.h"
#include "engine/kvm/kvm.h"
#include "engine/memory/address_space.h"
#include "engine/x86/code_tracker.h"
#include "engine/x86/cpuid.h"
#include "engine/x86/dump.h"
#include "engine/x86/msr.h"
#include "engine/x86/vcpu.h"

#include <array>
#include <atomic>
#include <charconv>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <x86intrin.h>

namespace emu::devices {

namespace {

constexpr uint64_t kPhysSpace = 1ull << 40; // qemu64's 40 physical address bits
constexpr uint64_t kMaxKernelFile = 1ull << 30;
constexpr int kMaxCpus = 255;
constexpr uint64_t kAcpiBase = 0xe0000; // the BIOS area, where Linux also scans for the RSDP
constexpr uint64_t kAcpiSize = 0x20000;

template <class T>
using Expected = std::expected<T, std::string>;

class PcMachine;

// One vCPU: its backend, its local APIC, the bus it sees (guest memory and
// ports, with its own APIC page and APIC MSRs) and its thread.
class PcCpu final : public x86::PhysBus, public InterruptSource {
public:
    PcCpu(PcMachine& machine, int index);
    ~PcCpu() override;

    int index() const { return m_index; }
    LocalApic& apic() { return *m_apic; }
    VcpuBackend& backend() { return m_kvm ? static_cast<VcpuBackend&>(*m_kvm) : *m_vcpu; }
    x86::Vcpu& engine() { return *m_vcpu; }
    bool is_kvm() const { return m_kvm != nullptr; }
    const std::string& error() const { return m_error; }
    x86::CpuState get_state()
    {
        if (!m_kvm)
            return m_vcpu->state();
        x86::CpuState s;
        if (auto r = m_kvm->get_state(s); !r)
            log_error("{}", r.error().message);
        return s;
    }
    void set_state(const x86::CpuState& s)
    {
        if (!m_kvm) {
            m_vcpu->state() = s;
            return;
        }
        if (auto r = m_kvm->set_state(s); !r)
            log_error("{}", r.error().message);
    }
    CpuThread& thread() { return *m_thread; }
    bool waiting_for_sipi() const { return m_wait_sipi; } // vCPU thread, or while it is parked

    void start_thread();
    void stop_thread() { m_thread.reset(); }
    // From any thread, device lock held: INIT and start-up IPIs.
    void request_init();
    void request_sipi(uint8_t vector);
    // Machine reset (vCPU thread parked): the boot processor runs, the others
    // wait for SIPI.
    void reset(bool wait_for_sipi);

    // PhysBus
    uint8_t* ram_page(uint64_t gpa, bool& writable) override;
    uint64_t mmio_read(uint64_t gpa, unsigned size) override;
    void mmio_write(uint64_t gpa, uint64_t value, unsigned size) override;
    uint64_t port_read(uint16_t port, unsigned size) override;
    void port_write(uint16_t port, uint64_t value, unsigned size) override;
    bool msr_read(uint32_t index, uint64_t& value) override;
    bool msr_write(uint32_t index, uint64_t value, bool& fault) override;

    // InterruptSource: the local APIC (which passes the 8259's ExtINT on).
    bool pending() override { return m_apic->pending(); }
    int acknowledge() override;

private:
    bool prepare(); // on the vCPU thread, before each run
    bool apic_page(uint64_t gpa, unsigned size) const
    {
        uint64_t base = m_apic->apic_base() & ~0xfffull;
        return m_apic->hw_enabled() && gpa >= base && gpa - base + size <= LocalApic::kSize;
    }

    PcMachine& m_machine;
    int m_index;
    std::unique_ptr<LocalApic> m_apic;
    std::unique_ptr<x86::Vcpu> m_vcpu;
    std::unique_ptr<kvm::KvmVcpu> m_kvm; // accel kvm: runs the vCPU; m_vcpu stays idle
    std::string m_error;                 // why the vCPU could not be created
    std::unique_ptr<CpuThread> m_thread;
    std::atomic<bool> m_init_request{false};
    std::atomic<int> m_sipi_vector{-1};
    bool m_wait_sipi = false; // vCPU thread only (or while parked)
};

class PcMachine final : public Machine {
public:
    static Expected<std::unique_ptr<Machine>> create(const MachineConfig& config, MachineHost& host);
    ~PcMachine() override;

    void resume() override;
    void pause() override;
    void reset() override;
    void powerdown() override;
    std::vector<CpuInfo> cpus() const override;
    std::optional<CpuDump> dump_cpu(int index) override;
    std::optional<std::string> dump_lapic(int index) override;
    bool read_physical(uint64_t gpa, void* buf, uint64_t len) override { return m_bus_master->read(gpa, buf, len); }
    void with_devices(const std::function<void()>& fn) override
    {
        std::lock_guard lock(m_dev);
        fn();
    }
    std::vector<BlockDeviceInfo> block_devices() override
    {
        std::lock_guard lock(m_dev);
        return m_disks->infos();
    }
    void resume_block_requests() override
    {
        std::lock_guard lock(m_dev);
        m_disks->resume_parked();
    }
    void drive_resized(const std::string& drive) override
    {
        std::lock_guard lock(m_dev);
        m_disks->resized(drive);
    }
    void drain_block_devices() override { m_disks->drain(); }
    std::expected<void, std::string> eject_medium(const std::string& drive, bool force) override
    {
        std::lock_guard lock(m_dev);
        return m_disks->eject(drive, force);
    }
    std::expected<void, std::string> change_medium(const std::string& drive, storage::BlockBackend* medium) override
    {
        std::lock_guard lock(m_dev);
        return m_disks->change(drive, medium);
    }

private:
    friend class PcCpu;
    PcMachine(const MachineConfig& config, MachineHost& host);
    Expected<void> build();
    Expected<void> build_memory();
    Expected<void> build_devices();
    Expected<void> build_cpus();
    Expected<void> build_pci();
    Expected<void> build_firmware_tables();
    Expected<void> plan_boot();
    Expected<void> add_device(const DeviceConfig& device);
    void reset_locked();
    void load_boot_state(x86::CpuState& s) const;
    // ISA IRQ n as seen by the 8259 pair and the IOAPIC; a line shared by
    // several sources is the OR of them.
    IrqLine::Sink isa_irq(int irq);
    void set_isa_source(int irq, unsigned source, bool level);
    void update_legacy_timer_irqs();
    void timer_main();

    MachineConfig m_config;
    MachineHost& m_host;
    const x86::CpuModel* m_model = nullptr;
    std::unique_ptr<kvm::KvmVm> m_kvm_vm;

    std::mutex m_dev; // the device lock
    std::unique_ptr<ExecToken> m_exec_token; // thread=single: the vCPUs take turns
    HostClock m_clock;
    SystemHostTime m_host_time;

    mem::MemoryRegion::Ptr m_system, m_ram, m_ram_low, m_ram_high, m_io_root, m_pci_mem;
    std::unique_ptr<mem::AddressSpace> m_memory, m_io;
    uint64_t m_ram_below_4g = 0, m_ram_above_4g = 0, m_pci_hole = 0;

    std::unique_ptr<I8259Pair> m_pic;
    std::unique_ptr<I8254> m_pit;
    std::unique_ptr<Mc146818> m_rtc;
    std::array<std::unique_ptr<Uart16550>, 4> m_serial;
    std::unique_ptr<I8042> m_kbd;
    std::unique_ptr<Port92> m_port92;
    std::unique_ptr<Hpet> m_hpet;
    std::unique_ptr<IoApic> m_ioapic;
    std::vector<std::unique_ptr<IsaDebugcon>> m_debugcons;
    std::unique_ptr<PcTestdev> m_testdev;
    std::array<unsigned, 16> m_testdev_source{}; // its source bit on each ISA IRQ
    std::vector<std::unique_ptr<IsaDebugExit>> m_debug_exits;
    LapicBus m_lapic_bus;
    std::unique_ptr<PciBus> m_pci;
    std::unique_ptr<I440fx> m_host_bridge;
    std::unique_ptr<Piix3> m_piix3;
    std::unique_ptr<Piix4Pm> m_pm;
    std::unique_ptr<FwCfg> m_fw_cfg;
    std::unique_ptr<MachineBusMaster> m_bus_master; // DMA into guest RAM
    std::unique_ptr<PcDisks> m_disks;               // after m_pci: unplugged before the bus goes
    std::vector<uint8_t> m_acpi_blob;
    uint64_t m_acpi_rsdp = 0;
    std::array<uint32_t, 16> m_isa_levels{}; // bit per source
    std::array<unsigned, 16> m_isa_sources{};
    bool m_pit_level = false, m_hpet_irq0 = false, m_rtc_level = false, m_hpet_irq8 = false;

    x86::CodeTracker m_code;
    std::vector<std::unique_ptr<PcCpu>> m_cpus;

    std::optional<boot::BootPlan> m_boot;
    uint8_t m_ioapic_id = 0;

    std::thread m_timer_thread;
    std::mutex m_timer_lock;
    std::condition_variable m_timer_cv;
    bool m_timer_stop = false, m_timer_poke = false;

    bool m_running = false;
    bool m_a20_warned = false;
};

// --- PcCpu ----------------------------------------------------------------------

PcCpu::PcCpu(PcMachine& machine, int index) : m_machine(machine), m_index(index)
{
    LapicConfig lc;
    lc.cpu = index;
    lc.apic_id = uint8_t(index);
    lc.bsp = index == 0;
    lc.read_tsc = [] { return __rdtsc(); };
    m_apic = std::make_unique<LocalApic>(machine.m_clock, machine.m_lapic_bus, lc);
    m_vcpu = std::make_unique<x86::Vcpu>(*this, *machine.m_model, unsigned(index), unsigned(machine.m_config.cpus),
                                         &machine.m_code);
    m_vcpu->set_interrupt_source(this);
    if (machine.m_kvm_vm) {
        auto k = kvm::KvmVcpu::create(*machine.m_kvm_vm, *this, *machine.m_model, unsigned(index),
                                      unsigned(machine.m_config.cpus));
        if (!k) {
            m_error = k.error().message; // build_cpus() reports it
            return;
        }
        m_kvm = std::move(*k);
        m_kvm->set_interrupt_source(this);
    }
}

PcCpu::~PcCpu() { m_thread.reset(); }

void PcCpu::start_thread()
{
    CpuThread::Hooks hooks;
    hooks.prepare = [this] { return prepare(); };
    hooks.token = m_machine.m_exec_token.get();
    hooks.on_exit = [this](VcpuExit exit) {
        if (exit == VcpuExit::TripleFault) {
            const x86::CpuState s = get_state();
            log_warn("cpu {}: triple fault at {:04x}:{:x}", m_index, s.seg[x86::CS].selector, s.rip);
            m_thread->park();
            m_machine.m_host.request_reset(ShutdownCause::GuestReset);
        } else if (exit == VcpuExit::InternalError) {
            m_thread->park();
            m_machine.m_host.report_internal_error(backend().error());
        }
    };
    m_thread = std::make_unique<CpuThread>("CPU " + std::to_string(m_index) + (m_kvm ? "/KVM" : "/TCG"), backend(), std::move(hooks));
}

void PcCpu::request_init()
{
    // A start-up IPI from before this INIT is void; one that arrives after it
    // must survive until the vCPU thread has applied the INIT (under load the
    // thread may run only after both SIPIs of the INIT-SIPI-SIPI sequence).
    m_sipi_vector.store(-1, std::memory_order_release);
    m_init_request.store(true, std::memory_order_release);
    if (m_thread)
        m_thread->wake();
}

void PcCpu::request_sipi(uint8_t vector)
{
    m_sipi_vector.store(vector, std::memory_order_release);
    if (m_thread)
        m_thread->wake();
}

void PcCpu::reset(bool wait_for_sipi)
{
    m_init_request.store(false);
    m_sipi_vector.store(-1);
    backend().reset();
    m_vcpu->flush_code();
    m_wait_sipi = wait_for_sipi;
}

bool PcCpu::prepare()
{
    if (m_init_request.exchange(false, std::memory_order_acq_rel)) {
        // INIT: the registers as after RESET, then wait for a start-up IPI
        // (the local APIC did its own INIT when it received the message).
        backend().reset();
        m_wait_sipi = true;
    }
    if (!m_wait_sipi)
        return true;
    int vector = m_sipi_vector.exchange(-1, std::memory_order_acq_rel);
    if (vector < 0)
        return false;
    x86::CpuState s = get_state();
    s.seg[x86::CS].selector = uint16_t(vector << 8);
    s.seg[x86::CS].base = uint64_t(vector) << 12;
    s.rip = 0;
    x86::update_hflags(s);
    set_state(s);
    m_wait_sipi = false;
    return true;
}

uint8_t* PcCpu::ram_page(uint64_t gpa, bool& writable)
{
    mem::Lookup l = m_machine.m_memory->lookup(gpa & ~0xfffull);
    if (l.kind != mem::Lookup::Kind::Ram || l.length < 0x1000)
        return nullptr;
    if (apic_page(gpa & ~0xfffull, 1))
        return nullptr;
    writable = l.writable;
    return l.host;
}

uint64_t PcCpu::mmio_read(uint64_t gpa, unsigned size)
{
    std::lock_guard lock(m_machine.m_dev);
    if (apic_page(gpa, size))
        return m_apic->region().io_read(gpa & 0xfff, size);
    return m_machine.m_memory->read(gpa, size);
}

void PcCpu::mmio_write(uint64_t gpa, uint64_t value, unsigned size)
{
    std::lock_guard lock(m_machine.m_dev);
    if (apic_page(gpa, size))
        return m_apic->region().io_write(gpa & 0xfff, value, size);
    m_machine.m_memory->write(gpa, value, size);
}

uint64_t PcCpu::port_read(uint16_t port, unsigned size)
{
    std::lock_guard lock(m_machine.m_dev);
    return m_machine.m_io->read(port, size);
}

void PcCpu::port_write(uint16_t port, uint64_t value, unsigned size)
{
    std::lock_guard lock(m_machine.m_dev);
    m_machine.m_io->write(port, value, size);
}

bool PcCpu::msr_read(uint32_t index, uint64_t& value)
{
    if (index != x86::MSR_APIC_BASE)
        return false;
    std::lock_guard lock(m_machine.m_dev);
    value = m_apic->apic_base();
    return true;
}

bool PcCpu::msr_write(uint32_t index, uint64_t value, bool& fault)
{
    if (index != x86::MSR_APIC_BASE)
        return false;
    std::lock_guard lock(m_machine.m_dev);
    fault = !m_apic->set_apic_base(value);
    // The APIC page may have moved or been switched off: TLB entries for it
    // must go (the engine flushes its TLB after every WRMSR).
    return true;
}

int PcCpu::acknowledge()
{
    std::lock_guard lock(m_machine.m_dev);
    return m_apic->acknowledge();
}

// --- PcMachine --------------------------------------------------------------------

PcMachine::PcMachine(const MachineConfig& config, MachineHost& host) : m_config(config), m_host(host) {}

Expected<std::unique_ptr<Machine>> PcMachine::create(const MachineConfig& config, MachineHost& host)
{
    std::unique_ptr<PcMachine> m(new PcMachine(config, host));
    if (auto ok = m->build(); !ok)
        return std::unexpected(ok.error());
    return std::unique_ptr<Machine>(std::move(m));
}

Expected<void> PcMachine::build()
{
    if (!m_config.props.empty())
        return std::unexpected("Property 'pc-i440fx-2.10-machine." + m_config.props.begin()->first + "' not found");
    if (m_config.accel != "tcg" && m_config.accel != "kvm")
        return std::unexpected("machine 'pc': accelerator '" + m_config.accel + "' is not wired into this machine yet");
    if (m_config.cpus < 1 || m_config.cpus > kMaxCpus)
        return std::unexpected("Invalid SMP CPUs " + std::to_string(m_config.cpus) +
                               ". The max CPUs supported by machine 'pc' is " + std::to_string(kMaxCpus));
    if (m_config.kernel.empty())
        return std::unexpected("machine 'pc' boots with -kernel only: no BIOS is bundled yet, so there is nothing "
                               "to boot from disk");
    std::string model = m_config.cpu_model.empty() ? "qemu64" : m_config.cpu_model;
    m_model = x86::find_cpu_model(model);
    if (!m_model)
        return std::unexpected("unable to find CPU model '" + model + "'");
    mem::TopologyBatch batch;
    if (auto ok = build_memory(); !ok)
        return ok;
    if (m_config.tcg_single_thread)
        m_exec_token = std::make_unique<ExecToken>();
    if (m_config.accel == "kvm") {
        auto vm = kvm::KvmVm::create();
        if (!vm)
            return std::unexpected(vm.error().message);
        m_kvm_vm = std::move(*vm);
    }
    if (auto ok = build_devices(); !ok)
        return ok;
    if (auto ok = build_pci(); !ok)
        return ok;
    m_bus_master = std::make_unique<MachineBusMaster>(*m_memory, m_code, m_dev);
    m_disks = std::make_unique<PcDisks>(PcDisks::Wiring{
        .pci = *m_pci,
        .memory = *m_bus_master,
        .msi = [this](uint64_t address, uint32_t data) { m_lapic_bus.deliver_msi(address, data); },
        .host = m_host,
        .drives = m_config.drives,
        .isa_irq = [this](int irq) { return isa_irq(irq); }});
    // -device entries, now that the buses are there.
    for (auto& device : m_config.devices)
        if (auto ok = add_device(device); !ok)
            return ok;
    if (auto ok = m_disks->finish(*m_io_root); !ok)
        return ok;
    if (auto ok = build_firmware_tables(); !ok)
        return ok;
    if (auto ok = plan_boot(); !ok)
        return ok;
    if (auto ok = build_cpus(); !ok)
        return ok;
    std::lock_guard lock(m_dev);
    reset_locked();
    return {};
}

Expected<void> PcMachine::build_memory()
{
    uint64_t hole = boot::E820Map::default_pci_hole_start(m_config.ram_size);
    m_pci_hole = hole;
    m_ram_below_4g = std::min(m_config.ram_size, hole);
    m_ram_above_4g = m_config.ram_size - m_ram_below_4g;
    auto must = [](auto result, const char* what) -> Expected<typename decltype(result)::value_type> {
        if (!result)
            return std::unexpected(std::string(what) + ": " + result.error().message);
        return std::move(*result);
    };
    auto system = must(mem::MemoryRegion::container("system", kPhysSpace), "system memory");
    if (!system)
        return std::unexpected(system.error());
    m_system = std::move(*system);
    auto ram = must(mem::MemoryRegion::ram("pc.ram", m_config.ram_size), "-m");
    if (!ram)
        return std::unexpected(ram.error());
    m_ram = std::move(*ram);
    auto low = must(mem::MemoryRegion::alias("ram-below-4g", *m_ram, 0, m_ram_below_4g), "ram-below-4g");
    if (!low)
        return std::unexpected(low.error());
    m_ram_low = std::move(*low);
    if (auto ok = m_system->add_subregion(*m_ram_low, 0); !ok)
        return std::unexpected(ok.error().message);
    if (m_ram_above_4g) {
        auto high = must(mem::MemoryRegion::alias("ram-above-4g", *m_ram, m_ram_below_4g, m_ram_above_4g),
                         "ram-above-4g");
        if (!high)
            return std::unexpected(high.error());
        m_ram_high = std::move(*high);
        if (auto ok = m_system->add_subregion(*m_ram_high, boot::E820Map::k4GiB); !ok)
            return std::unexpected(ok.error().message);
    }
    // PCI memory BARs live in a container under RAM: RAM always wins.
    auto pci = must(mem::MemoryRegion::container("pci", kPhysSpace), "pci");
    if (!pci)
        return std::unexpected(pci.error());
    m_pci_mem = std::move(*pci);
    if (auto ok = m_system->add_subregion(*m_pci_mem, 0, -1); !ok)
        return std::unexpected(ok.error().message);
    auto io = must(mem::MemoryRegion::container("io", mem::kPortSpaceSize), "io");
    if (!io)
        return std::unexpected(io.error());
    m_io_root = std::move(*io);
    m_memory = std::make_unique<mem::AddressSpace>("memory", *m_system);
    m_io = std::make_unique<mem::AddressSpace>("I/O", *m_io_root);
    return {};
}

IrqLine::Sink PcMachine::isa_irq(int irq)
{
    unsigned source = m_isa_sources[size_t(irq)]++;
    return [this, irq, source](bool level) { set_isa_source(irq, source, level); };
}

void PcMachine::set_isa_source(int irq, unsigned source, bool level)
{
    uint32_t& levels = m_isa_levels[size_t(irq)];
    bool before = levels != 0;
    levels = level ? (levels | (1u << source)) : (levels & ~(1u << source));
    bool after = levels != 0;
    if (before == after)
        return;
    m_pic->set_irq(irq, after);
    // The MADT's interrupt source override: ISA IRQ 0 is IOAPIC pin 2.
    m_ioapic->set_irq(irq == 0 ? 2 : irq, after);
}

void PcMachine::update_legacy_timer_irqs()
{
    // With the HPET's legacy replacement on, its timers 0 and 1 drive IRQ 0
    // and IRQ 8 and the PIT's and RTC's outputs are cut off.
    bool legacy = m_hpet->legacy_active().level();
    set_isa_source(0, 0, legacy ? m_hpet_irq0 : m_pit_level);
    set_isa_source(8, 0, legacy ? m_hpet_irq8 : m_rtc_level);
}

Expected<void> PcMachine::build_devices()
{
    auto attach = [](mem::Result<void> r, const char* what) -> Expected<void> {
        if (!r)
            return std::unexpected(std::string(what) + ": " + r.error().message);
        return {};
    };
    m_isa_sources[0] = m_isa_sources[8] = 1; // source 0: the timer muxes below

    m_pic = std::make_unique<I8259Pair>();
    if (auto ok = attach(m_pic->attach(*m_io_root), "i8259"); !ok)
        return ok;
    // The IOAPIC ID follows the CPUs' APIC IDs (4 bits: 0 from 16 vCPUs on).
    m_ioapic_id = uint8_t(m_config.cpus < 16 ? m_config.cpus : 0);
    m_ioapic = std::make_unique<IoApic>(m_lapic_bus, m_ioapic_id);
    if (auto ok = attach(m_ioapic->attach(*m_system), "ioapic"); !ok)
        return ok;
    m_lapic_bus.add_eoi_listener([this](uint8_t vector) { m_ioapic->eoi(vector); });

    m_pit = std::make_unique<I8254>(m_clock);
    if (auto ok = attach(m_pit->attach(*m_io_root), "i8254"); !ok)
        return ok;
    auto rtc_config = RtcConfig::parse(m_config.rtc_base, m_config.rtc_clock);
    if (!rtc_config)
        return std::unexpected("-rtc: " + rtc_config.error());
    m_rtc = std::make_unique<Mc146818>(m_clock, m_host_time, *rtc_config);
    if (auto ok = attach(m_rtc->attach(*m_io_root), "mc146818rtc"); !ok)
        return ok;
    m_hpet = std::make_unique<Hpet>(m_clock);
    if (auto ok = attach(m_hpet->attach(*m_system), "hpet"); !ok)
        return ok;
    m_pit->irq0().connect([this](bool level) {
        m_pit_level = level;
        update_legacy_timer_irqs();
    });
    m_rtc->irq().connect([this](bool level) {
        m_rtc_level = level;
        update_legacy_timer_irqs();
    });
    m_hpet->legacy_irq0().connect([this](bool level) {
        m_hpet_irq0 = level;
        update_legacy_timer_irqs();
    });
    m_hpet->legacy_irq8().connect([this](bool level) {
        m_hpet_irq8 = level;
        update_legacy_timer_irqs();
    });
    m_hpet->legacy_active().connect([this](bool) { update_legacy_timer_irqs(); });
    for (int gsi = 16; gsi < IoApic::kPins; gsi++)
        m_hpet->route(gsi).connect(m_ioapic->input(gsi));

    size_t ports = std::max<size_t>(1, m_config.serials.size());
    if (ports > m_serial.size())
        return std::unexpected("-serial: at most " + std::to_string(m_serial.size()) + " serial ports");
    for (size_t i = 0; i < ports; i++) {
        m_serial[i] = std::make_unique<Uart16550>(m_clock);
        if (auto ok = attach(m_serial[i]->attach(*m_io_root, Uart16550::kComPorts[i]), "serial"); !ok)
            return ok;
        m_serial[i]->irq().connect(isa_irq(Uart16550::kComIrqs[i]));
        if (i < m_config.serials.size() && m_config.serials[i])
            m_serial[i]->set_backend(m_config.serials[i]);
    }

    auto reset = [this] { m_host.request_reset(ShutdownCause::GuestReset); };
    auto a20 = [this](bool on) {
        // Direct boot starts past the A20 dance; the gate is not emulated.
        if (!on && !m_a20_warned) {
            m_a20_warned = true;
            log_warn("pc: the guest disabled A20; address line 20 stays enabled");
        }
    };
    m_kbd = std::make_unique<I8042>(reset, a20);
    if (auto ok = attach(m_kbd->attach(*m_io_root), "i8042"); !ok)
        return ok;
    m_kbd->irq1().connect(isa_irq(1));
    m_kbd->irq12().connect(isa_irq(12));
    m_port92 = std::make_unique<Port92>(a20, reset);
    if (auto ok = attach(m_port92->attach(*m_io_root), "port92"); !ok)
        return ok;

    return {};
}

Expected<void> PcMachine::add_device(const DeviceConfig& device)
{
    // Property names were checked against device_types() (vm_config does);
    // here the values are parsed.
    if (m_disks->handles(device.driver))
        return m_disks->add(device);
    DeviceProps props(device);
    auto number = [&](const char* prop, uint64_t fallback, uint64_t max) { return props.number(prop, fallback, max); };
    auto mapped = [&](mem::Result<void> r) -> Expected<void> {
        if (!r)
            return std::unexpected(device.driver + ": " + r.error().message);
        return {};
    };
    if (device.driver == "isa-debug-exit") {
        auto iobase = number("iobase", 0x501, 0xffff);
        if (!iobase)
            return std::unexpected(iobase.error());
        auto iosize = number("iosize", 2, 8);
        if (!iosize)
            return std::unexpected(iosize.error());
        if (*iosize == 0 || *iobase + *iosize > 0x10000)
            return std::unexpected("isa-debug-exit: iobase/iosize out of the I/O space");
        auto exit = [this](int status) { m_host.request_exit(status); };
        auto dev = std::make_unique<IsaDebugExit>(uint16_t(*iobase), uint16_t(*iosize), exit);
        if (auto ok = mapped(dev->attach(*m_io_root)); !ok)
            return ok;
        m_debug_exits.push_back(std::move(dev));
        return {};
    }
    if (device.driver == "isa-debugcon") {
        auto iobase = number("iobase", 0xe9, 0xffff);
        if (!iobase)
            return std::unexpected(iobase.error());
        auto readback = number("readback", 0xe9, 0xff);
        if (!readback)
            return std::unexpected(readback.error());
        CharBackend* backend = nullptr;
        if (auto it = device.props.find("chardev"); it != device.props.end()) {
            auto found = m_config.chardevs.find(it->second);
            if (found == m_config.chardevs.end())
                return std::unexpected("isa-debugcon: chardev '" + it->second + "' not found");
            backend = found->second;
        }
        auto dev = std::make_unique<IsaDebugcon>(uint16_t(*iobase), uint8_t(*readback), [backend](uint8_t c) {
            if (backend)
                backend->write({&c, 1});
        });
        if (auto ok = mapped(dev->attach(*m_io_root)); !ok)
            return ok;
        m_debugcons.push_back(std::move(dev));
        return {};
    }
    if (device.driver == "pc-testdev") {
        if (m_testdev)
            return std::unexpected("pc-testdev: only one per machine (its ports are fixed)");
        PcTestdev::Hooks hooks;
        hooks.set_irq = [this](int line, bool level) {
            if (line < 16)
                set_isa_source(line, m_testdev_source[size_t(line)], level);
            else
                m_ioapic->set_irq(line, level);
        };
        hooks.flush_page = [this](uint64_t page) { m_code.written(page, x86::CodeTracker::k_max_vcpus); };
        for (int line = 0; line < 16; line++)
            m_testdev_source[size_t(line)] = m_isa_sources[size_t(line)]++;
        m_testdev = std::make_unique<PcTestdev>(std::move(hooks));
        return mapped(m_testdev->attach(*m_io_root, *m_pci_mem));
    }
    return std::unexpected("'" + device.driver + "' is not a valid device model name");
}

Expected<void> PcMachine::build_pci()
{
    auto check = [](mem::Result<void> r, const char* what) -> Expected<void> {
        if (!r)
            return std::unexpected(std::string(what) + ": " + r.error().message);
        return {};
    };
    m_pci = std::make_unique<PciBus>(*m_io_root, *m_pci_mem);
    if (auto ok = check(m_pci->attach(*m_io_root), "pci"); !ok)
        return ok;
    m_host_bridge = std::make_unique<I440fx>();
    if (auto ok = check(m_pci->plug(*m_host_bridge, I440fx::kDevfn), "i440FX"); !ok)
        return ok;
    m_piix3 = std::make_unique<Piix3>(*m_pci);
    if (auto ok = check(m_pci->plug(*m_piix3, Piix3::kDevfn), "PIIX3"); !ok)
        return ok;
    m_piix3->set_reset_handler([this] { m_host.request_reset(ShutdownCause::GuestReset); });
    for (int irq = 0; irq < Piix3::kIsaIrqs; irq++)
        m_piix3->isa_irq(irq).connect(isa_irq(irq));
    for (int n = 0; n < 4; n++)
        m_piix3->pirq_gsi(n).connect(m_ioapic->input(Piix3::kFirstPirqGsi + n));
    m_pm = std::make_unique<Piix4Pm>(m_clock);
    if (auto ok = check(m_pci->plug(*m_pm, Piix4Pm::kDevfn), "PIIX4 PM"); !ok)
        return ok;
    if (auto ok = check(m_pm->attach(*m_io_root), "PIIX4 PM"); !ok)
        return ok;
    m_pm->sci().connect(isa_irq(9));
    m_pm->set_poweroff_handler([this] { m_host.request_shutdown(ShutdownCause::GuestShutdown); });
    return {};
}

Expected<void> PcMachine::build_firmware_tables()
{
    acpi::TablesConfig tc;
    tc.base = kAcpiBase;
    tc.cpus = unsigned(m_config.cpus);
    tc.ioapic_id = m_ioapic_id;
    tc.pci_hole_start = m_pci_hole;
    tc.serial_ports = unsigned(std::count_if(m_serial.begin(), m_serial.end(), [](auto& u) { return u != nullptr; }));
    auto tables = acpi::build_tables(tc);
    if (!tables)
        return std::unexpected(tables.error().message);
    if (tables->blob.size() > kAcpiSize)
        return std::unexpected("acpi: the tables take " + std::to_string(tables->blob.size()) + " bytes, more than " +
                               std::to_string(kAcpiSize));
    m_acpi_blob = std::move(tables->blob);
    m_acpi_rsdp = tables->rsdp;

    m_fw_cfg = std::make_unique<FwCfg>(*m_memory);
    if (auto ok = m_fw_cfg->attach(*m_io_root); !ok)
        return std::unexpected("fw_cfg: " + ok.error().message);
    m_fw_cfg->set_ram_size(m_config.ram_size);
    m_fw_cfg->set_cpus(uint16_t(m_config.cpus), uint16_t(m_config.cpus));
    m_fw_cfg->set_nographic(true);
    return {};
}

Expected<void> PcMachine::build_cpus()
{
    if (m_kvm_vm) {
        if (auto ok = m_kvm_vm->attach_memory(*m_memory); !ok)
            return std::unexpected(ok.error().message);
    }
    m_lapic_bus.set_hooks({
        .kick = [this](int cpu) { m_cpus[size_t(cpu)]->thread().wake(); },
        .nmi =
            [this](int cpu) {
                m_cpus[size_t(cpu)]->backend().raise_nmi();
                m_cpus[size_t(cpu)]->thread().wake();
            },
        .init = [this](int cpu) { m_cpus[size_t(cpu)]->request_init(); },
        .sipi = [this](int cpu, uint8_t vector) { m_cpus[size_t(cpu)]->request_sipi(vector); },
    });
    // Each local APIC is reached through its own vCPU's bus (PcCpu), not
    // through the shared memory map.
    for (int i = 0; i < m_config.cpus; i++) {
        m_cpus.push_back(std::make_unique<PcCpu>(*this, i));
        if (!m_cpus.back()->error().empty())
            return std::unexpected(m_cpus.back()->error());
    }
    // The 8259 reaches the boot processor through LINT0 (virtual wire mode).
    LocalApic& bsp = m_cpus[0]->apic();
    bsp.set_extint_source(m_pic.get());
    m_pic->int_output().connect([&bsp](bool level) { bsp.set_lint(0, level); });
    for (auto& cpu : m_cpus)
        cpu->start_thread();
    m_clock.set_deadline_listener([this](int64_t) {
        std::lock_guard lock(m_timer_lock);
        m_timer_poke = true;
        m_timer_cv.notify_all();
    });
    m_clock.pause(); // the VM clock runs while the VM does
    m_timer_thread = std::thread([this] { timer_main(); });
    return {};
}

Expected<void> PcMachine::plan_boot()
{
    auto memory = boot::E820Map::pc(m_config.ram_size, m_pci_hole);
    if (!memory)
        return std::unexpected("-m: " + memory.error().message);
    if (auto ok = memory->add(kAcpiBase, kAcpiSize, boot::E820Type::Acpi); !ok)
        return std::unexpected("acpi: " + ok.error().message);
    if (auto added = m_fw_cfg->add_file("etc/e820", FwCfg::e820_file(memory->entries())); !added)
        return std::unexpected("fw_cfg: etc/e820 refused");
    boot::BootConfig bc;
    bc.memory = std::move(*memory);
    bc.acpi_rsdp = m_acpi_rsdp;
    bc.cmdline = m_config.append;
    if (!m_config.initrd.empty()) {
        auto modules = boot::read_modules(m_config.initrd, kMaxKernelFile);
        if (!modules)
            return std::unexpected("-initrd: " + modules.error().message);
        bc.initrds = std::move(*modules);
    }
    auto image = boot::read_file(m_config.kernel, kMaxKernelFile);
    if (!image)
        return std::unexpected("-kernel: " + image.error().message);
    std::string name = m_config.kernel.substr(m_config.kernel.rfind('/') + 1);
    auto plan = boot::plan_kernel(name, *image, bc);
    if (!plan)
        return std::unexpected(plan.error().message);
    log_info("pc: {}", plan->summary);
    m_boot = std::move(*plan);
    return {};
}

void PcMachine::load_boot_state(x86::CpuState& s) const
{
    const boot::EntryState& e = m_boot->entry;
    using namespace x86;
    s.regs[RAX] = e.rax;
    s.regs[RBX] = e.rbx;
    s.regs[RSI] = e.rsi;
    s.regs[RDI] = e.rdi;
    s.regs[RBP] = e.rbp;
    s.regs[RSP] = e.rsp;
    s.regs[RCX] = s.regs[RDX] = 0;
    s.rip = e.rip;
    s.eflags = e.rflags | 2;
    s.cc_op = 0;
    s.cr0 = e.cr0;
    s.cr3 = e.cr3;
    s.cr4 = e.cr4;
    s.efer = e.efer;
    s.gdtr = {e.gdt_base, e.gdt_limit};
    s.idtr = {0, 0};
    auto seg = [](Segment& to, const boot::SegmentState& from) {
        to.selector = from.selector;
        to.base = from.base;
        to.limit = from.limit;
        to.attr = from.attr;
    };
    seg(s.seg[CS], e.cs);
    seg(s.seg[DS], e.ds);
    seg(s.seg[ES], e.es);
    seg(s.seg[FS], e.fs);
    seg(s.seg[GS], e.gs);
    seg(s.seg[SS], e.ss);
    seg(s.tr, e.tr);
    update_hflags(s);
}

void PcMachine::reset_locked()
{
    m_pic->reset();
    m_ioapic->reset();
    m_pit->reset();
    m_rtc->reset();
    m_hpet->reset();
    for (auto& uart : m_serial)
        if (uart)
            uart->reset();
    m_kbd->reset();
    m_port92->reset_state();
    if (m_testdev)
        m_testdev->reset();
    // What the firmware would do: PCI interrupt routing, BARs, ACPI tables.
    m_pci->reset();
    m_piix3->firmware_setup();
    m_disks->firmware_setup();
    m_io->write(I8259Pair::kElcrPort + 1, 0x0c, 1); // IRQ 10 and 11 (PIRQs) level-triggered
    if (int left = m_pci->assign_resources({.mem32_start = m_pci_hole}); left > 0)
        log_warn("pc: {} PCI BARs did not fit the PCI hole", left);
    m_fw_cfg->reset();
    if (auto st = m_memory->load_rom(kAcpiBase, m_acpi_blob.data(), m_acpi_blob.size()); !st)
        log_error("pc: writing the ACPI tables: {}", mem::describe(st));
    CmosLayout layout;
    layout.ram_below_4g = m_ram_below_4g;
    layout.ram_above_4g = m_ram_above_4g;
    layout.cpus = m_config.cpus;
    if (auto ok = m_rtc->fill_layout(layout); !ok)
        log_warn("pc: CMOS: {}", ok.error());
    for (auto& cpu : m_cpus) {
        cpu->apic().reset();
        cpu->reset(cpu->index() != 0);
    }
    // RAM is not assumed zero on a reset: the plan is written again.
    std::vector<uint8_t> zeros;
    for (const boot::Blob& blob : m_boot->blobs) {
        auto data = blob.data();
        if (auto st = m_memory->load_rom(blob.gpa, data.data(), data.size()); !st)
            log_error("pc: loading {}: {}", blob.what, mem::describe(st));
        for (uint64_t done = 0; done < blob.zero_size;) {
            uint64_t n = std::min<uint64_t>(blob.zero_size - done, 1 << 20);
            zeros.resize(n);
            m_memory->load_rom(blob.gpa + blob.size + done, zeros.data(), n);
            done += n;
        }
    }
    {
        x86::CpuState s = m_cpus[0]->get_state();
        load_boot_state(s);
        m_cpus[0]->set_state(s);
    }
    for (auto& cpu : m_cpus)
        cpu->engine().flush_code();
}

PcMachine::~PcMachine()
{
    {
        std::lock_guard lock(m_timer_lock);
        m_timer_stop = true;
        m_timer_cv.notify_all();
    }
    if (m_timer_thread.joinable())
        m_timer_thread.join();
    for (auto& cpu : m_cpus)
        cpu->stop_thread();
    m_cpus.clear();
    m_kvm_vm.reset(); // after its vCPUs, before the address space it mirrors
    if (m_pic)
        m_pic->int_output().disconnect();
}

void PcMachine::timer_main()
{
    pthread_setname_np(pthread_self(), "pc timers");
    std::unique_lock tl(m_timer_lock);
    while (!m_timer_stop) {
        m_timer_poke = false;
        tl.unlock();
        {
            std::lock_guard lock(m_dev);
            m_clock.run_due();
        }
        int64_t next = m_clock.next_deadline();
        tl.lock();
        if (m_timer_stop || m_timer_poke)
            continue;
        auto woken = [this] { return m_timer_stop || m_timer_poke; };
        if (next == kNoDeadline || m_clock.paused()) {
            m_timer_cv.wait(tl, woken);
        } else {
            int64_t wait = next - m_clock.now_ns();
            if (wait > 0)
                m_timer_cv.wait_for(tl, std::chrono::nanoseconds(wait), woken);
        }
    }
}

void PcMachine::resume()
{
    if (m_running)
        return;
    m_running = true;
    m_clock.resume();
    {
        std::lock_guard lock(m_timer_lock);
        m_timer_poke = true;
        m_timer_cv.notify_all();
    }
    for (auto& cpu : m_cpus)
        cpu->thread().resume();
}

void PcMachine::pause()
{
    if (!m_running)
        return;
    m_running = false;
    for (auto& cpu : m_cpus)
        cpu->thread().pause();
    m_clock.pause();
}

void PcMachine::reset()
{
    bool was_running = m_running;
    pause();
    m_disks->drain(); // no device lock: completions take it
    {
        std::lock_guard lock(m_dev);
        reset_locked();
    }
    if (was_running)
        resume();
}

void PcMachine::powerdown()
{
    std::lock_guard lock(m_dev);
    m_pm->press_power_button();
}

std::vector<CpuInfo> PcMachine::cpus() const
{
    std::vector<CpuInfo> out;
    for (auto& cpu : m_cpus) {
        CpuInfo info;
        info.index = cpu->index();
        info.thread_id = const_cast<PcCpu&>(*cpu).thread().thread_id();
        info.qom_path = "/machine/unattached/device[" + std::to_string(cpu->index()) + "]";
        info.socket_id = cpu->index();
        out.push_back(info);
    }
    return out;
}

std::optional<CpuDump> PcMachine::dump_cpu(int index)
{
    if (index < 0 || size_t(index) >= m_cpus.size())
        return std::nullopt;
    PcCpu& cpu = *m_cpus[size_t(index)];
    CpuDump dump;
    cpu.thread().inspect([&] {
        x86::CpuState s = cpu.get_state();
        dump.pc = s.seg[x86::CS].base + s.rip;
        dump.halted = s.halted || cpu.waiting_for_sipi() || cpu.thread().halted_locked();
        dump.registers = x86::format_registers(s);
    });
    return dump;
}

std::optional<std::string> PcMachine::dump_lapic(int index)
{
    if (index < 0 || size_t(index) >= m_cpus.size())
        return std::nullopt;
    PcCpu& cpu = *m_cpus[size_t(index)];
    std::string out;
    {
        std::lock_guard lock(m_dev);
        out = cpu.apic().describe();
    }
    out += "vCPU thread: " + cpu.thread().describe() + "\n";
    return out;
}

} // namespace

MachineClass pc_machine_class()
{
    MachineClass mc;
    mc.name = "pc-i440fx-2.10";
    mc.alias = "pc";
    mc.description = "Standard PC (i440FX + PIIX, 1996)";
    mc.max_cpus = kMaxCpus;
    mc.is_default = true;
    mc.acpi = true;
    mc.default_cpu_type = "qemu64-x86_64-cpu";
    mc.create = [](const MachineConfig& config, MachineHost& host) { return PcMachine::create(config, host); };
    return mc;
}

} // namespace emu::devices
