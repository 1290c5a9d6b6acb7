// Unit tests: the KVM accelerator (engine/kvm/kvm.h) on tiny guests — port
// I/O and string I/O, MMIO, read-only slots, interrupts and NMIs from a test
// InterruptSource, kick() from another thread, triple fault, the state
// round trip and the memory listener. Every case skips with a message when
// /dev/kvm is absent or unusable.
#include "common/log.h"
#include "engine/kvm/kvm.h"
#include "engine/kvm/probe.h"
#include "engine/memory/address_space.h"
#include "engine/x86/flags.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <functional>
#include <doctest/doctest.h>
#include <mutex>
#include <string>
#include <thread>
#include <unistd.h>
#include <vector>
#include <xbyak/xbyak.h>

using namespace emu;
using namespace emu::x86;
using emu::kvm::KvmVcpu;
using emu::kvm::KvmVm;

namespace {

const bool g_quiet = (emu::set_log_level(emu::LogLevel::Error), true);

// Guest memory map.
constexpr uint64_t kRamSize = 16 << 20;
constexpr uint64_t kGdt = 0x500, kTss = 0x580, kPml4 = 0x1000; // PDPT 0x2000, PDs 0x3000-0x6fff
constexpr uint64_t kIdt = 0x7000, kStubs = 0x8000, kStackTop = 0x80000, kCode = 0x100000, kData = 0x200000;
constexpr uint64_t kMmio = 0xd0000000, kRom = 0xffff0000;
constexpr uint16_t kExceptionPort = 0xe8, kConsolePort = 0xe9, kExitPort = 0xf4, kCountPort = 0x80;

// A PhysBus over a real AddressSpace: RAM at 0, a logging MMIO device at
// kMmio, 64 KiB of ROM at the top of 4 GiB, and ports for the guest to talk on.
class Bus final : public PhysBus {
public:
    struct Mmio {
        bool write;
        uint64_t gpa, value;
        unsigned size;
    };

    Bus()
    {
        root = std::move(*mem::MemoryRegion::container("root", 1ull << 32));
        ram = std::move(*mem::MemoryRegion::ram("ram", kRamSize));
        rom = std::move(*mem::MemoryRegion::rom("rom", 0x10000));
        mem::IoOps ops;
        ops.read = [this](uint64_t off, unsigned size) { return 0x1111111111111111ull * ((off >> 3) & 0xf); };
        ops.write = [this](uint64_t off, uint64_t v, unsigned size) { device_writes.push_back({off, v}); };
        device = std::move(*mem::MemoryRegion::io("testdev", 0x1000, ops));
        REQUIRE(root->add_subregion(*ram, 0));
        REQUIRE(root->add_subregion(*rom, kRom));
        REQUIRE(root->add_subregion(*device, kMmio));
        space = std::make_unique<mem::AddressSpace>("memory", *root);
    }
    ~Bus() override
    {
        space.reset();
        for (auto* r : {device.get(), rom.get(), ram.get()})
            if (r->parent())
                root->remove_subregion(*r);
    }

    uint8_t* ram_page(uint64_t gpa, bool& writable) override
    {
        mem::Lookup l = space->lookup(gpa & ~0xfffull);
        if (l.kind != mem::Lookup::Kind::Ram)
            return nullptr;
        writable = l.writable;
        return l.host;
    }
    uint64_t mmio_read(uint64_t gpa, unsigned size) override
    {
        uint64_t v = space->read(gpa, size);
        std::lock_guard lock(m_lock);
        mmio.push_back({false, gpa, v, size});
        return v;
    }
    void mmio_write(uint64_t gpa, uint64_t value, unsigned size) override
    {
        {
            std::lock_guard lock(m_lock);
            mmio.push_back({true, gpa, value, size});
        }
        space->write(gpa, value, size);
    }
    uint64_t port_read(uint16_t port, unsigned size) override
    {
        if (port == kCountPort)
            return 0x0102030405060708ull + reads++;
        return ~0ull;
    }
    void port_write(uint16_t port, uint64_t value, unsigned size) override
    {
        std::lock_guard lock(m_lock);
        if (port == kConsolePort)
            console.push_back(char(value));
        else if (port == kExitPort)
            exit_code = int(value);
        else if (port == kExceptionPort)
            exceptions.push_back(int(value));
        else
            port_writes.push_back({port, value});
    }
    bool msr_read(uint32_t index, uint64_t& value) override
    {
        if (index != 0x4b000001)
            return false;
        value = 0x1234567890ull;
        return true;
    }
    bool msr_write(uint32_t index, uint64_t value, bool& fault) override
    {
        if (index == 0x1b) {
            apic_base_writes.push_back(value);
            return true;
        }
        if (index != 0x4b000001)
            return false;
        msr_written = value;
        return true;
    }

    void write(uint64_t gpa, const void* data, size_t len) { REQUIRE(space->write_buf(gpa, data, len)); }
    void write64(uint64_t gpa, uint64_t v) { write(gpa, &v, 8); }
    uint64_t read64(uint64_t gpa)
    {
        uint64_t v = 0;
        REQUIRE(space->read_buf(gpa, &v, 8));
        return v;
    }

    mem::MemoryRegion::Ptr root, ram, rom, device;
    std::unique_ptr<mem::AddressSpace> space;
    std::string console;
    int exit_code = -1;
    std::vector<int> exceptions;
    std::vector<std::pair<uint16_t, uint64_t>> port_writes;
    std::vector<std::pair<uint64_t, uint64_t>> device_writes;
    std::vector<Mmio> mmio;
    std::vector<uint64_t> apic_base_writes;
    uint64_t msr_written = 0;
    uint64_t reads = 0;

private:
    std::mutex m_lock;
};

class TestIrq final : public InterruptSource {
public:
    bool pending() override { return vector.load() >= 0; }
    int acknowledge() override
    {
        acks++;
        return vector.exchange(-1);
    }
    std::atomic<int> vector{-1};
    std::atomic<int> acks{0};
};

// Kicks a vCPU after a timeout so that a broken test fails instead of hanging.
class Watchdog {
public:
    Watchdog(KvmVcpu& cpu, std::chrono::milliseconds timeout)
        : m_thread([this, &cpu, timeout] {
              std::unique_lock lock(m_lock);
              if (!m_cv.wait_for(lock, timeout, [this] { return m_done; })) {
                  fired = true;
                  cpu.kick();
              }
          })
    {
    }
    ~Watchdog()
    {
        {
            std::lock_guard lock(m_lock);
            m_done = true;
        }
        m_cv.notify_all();
        m_thread.join();
    }
    std::atomic<bool> fired{false};

private:
    std::mutex m_lock;
    std::condition_variable m_cv;
    bool m_done = false;
    std::thread m_thread;
};

struct Prog : Xbyak::CodeGenerator {
    Prog() : Xbyak::CodeGenerator(64 * 1024) {}
};

uint64_t gate(uint64_t handler) // a 64-bit interrupt gate, low half
{
    return (handler & 0xffff) | (0x10ull << 16) | (0x8eull << 40) | ((handler >> 16 & 0xffff) << 48);
}

struct Guest {
    Bus bus;
    std::unique_ptr<KvmVm> vm;
    std::unique_ptr<KvmVcpu> cpu;
    TestIrq irq;

    // False (with a message) when KVM is not usable here.
    bool start()
    {
        kvm::ProbeResult p = kvm::probe();
        if (!p.present) {
            MESSAGE("skipped: KVM is not usable: " << p.reason);
            return false;
        }
        auto v = KvmVm::create();
        if (!v) {
            MESSAGE("skipped: " << v.error().message);
            return false;
        }
        vm = std::move(*v);
        auto attached = vm->attach_memory(*bus.space);
        REQUIRE_MESSAGE(attached.has_value(), (attached ? "" : attached.error().message));
        auto c = KvmVcpu::create(*vm, bus, *find_cpu_model("qemu64"));
        REQUIRE_MESSAGE(c.has_value(), (c ? "" : c.error().message));
        cpu = std::move(*c);
        cpu->set_interrupt_source(&irq);
        return true;
    }

    CpuState state()
    {
        CpuState s;
        auto r = cpu->get_state(s);
        REQUIRE_MESSAGE(r.has_value(), (r ? "" : r.error().message));
        return s;
    }
    void load(const CpuState& s)
    {
        auto r = cpu->set_state(s);
        REQUIRE_MESSAGE(r.has_value(), (r ? "" : r.error().message));
    }

    VcpuExit run(std::chrono::milliseconds timeout = std::chrono::seconds(10))
    {
        return run_with([] {}, timeout);
    }
    // Runs the vCPU while `other` runs on a second thread.
    VcpuExit run_with(std::function<void()> other, std::chrono::milliseconds timeout = std::chrono::seconds(10))
    {
        VcpuExit e;
        bool fired;
        {
            Watchdog dog(*cpu, timeout);
            std::thread t(std::move(other));
            e = cpu->run();
            t.join();
            fired = dog.fired;
        }
        REQUIRE_MESSAGE(!fired, "the guest did not stop within the timeout");
        REQUIRE_MESSAGE(e != VcpuExit::InternalError, cpu->error());
        return e;
    }

    // Real mode at 0:0x7c00 with `code` there.
    void enter_real_mode(const std::vector<uint8_t>& code)
    {
        bus.write(0x7c00, code.data(), code.size());
        CpuState s = state();
        s.seg[CS].selector = 0;
        s.seg[CS].base = 0;
        s.rip = 0x7c00;
        s.regs[RSP] = 0x7c00;
        load(s);
    }

    // Flat 64-bit mode at CPL 0 (devices/boot's layout: GDT at 0x500 with code
    // 0x10, data 0x18, TSS 0x20; page tables at 0x1000 identity-mapping
    // 4 GiB), an IDT whose vector N stub reports N on port 0xe8 and halts,
    // and `prog` at kCode.
    void enter_long_mode(Prog& prog)
    {
        uint64_t gdt[6] = {0, 0, 0x00af9b000000ffffull, 0x00cf93000000ffffull, 0, 0};
        gdt[4] = 0x67 | ((kTss & 0xffffff) << 16) | (0x8bull << 40) | ((kTss >> 24 & 0xff) << 56);
        bus.write(kGdt, gdt, sizeof gdt);
        std::vector<uint8_t> tss(0x68, 0);
        bus.write(kTss, tss.data(), tss.size());
        bus.write64(kPml4, (kPml4 + 0x1000) | 3);
        for (uint64_t i = 0; i < 4; i++) {
            bus.write64(kPml4 + 0x1000 + 8 * i, (kPml4 + 0x2000 + 0x1000 * i) | 3);
            for (uint64_t j = 0; j < 512; j++)
                bus.write64(kPml4 + 0x2000 + 0x1000 * i + 8 * j, ((i * 512 + j) << 21) | 0x83);
        }
        for (int v = 0; v < 256; v++) {
            uint64_t stub = kStubs + 16 * v;
            // mov al, v; out 0xe8, al; cli; hlt; jmp to the hlt
            uint8_t code[16] = {0xb0, uint8_t(v), 0xe6, uint8_t(kExceptionPort), 0xfa, 0xf4, 0xeb, 0xfd};
            bus.write(stub, code, sizeof code);
            set_gate(v, stub);
        }
        bus.write(kCode, prog.getCode(), prog.getSize());

        CpuState s = state();
        s.cr0 = CR0_PE | CR0_ET | CR0_NE | CR0_WP | CR0_PG;
        s.cr4 = CR4_PAE | CR4_OSFXSR | CR4_OSXMMEXCPT;
        s.cr3 = kPml4;
        s.efer = EFER_LME | EFER_LMA | EFER_SCE | EFER_NXE;
        s.gdtr = {kGdt, sizeof gdt - 1};
        s.idtr = {kIdt, 256 * 16 - 1};
        s.seg[CS] = {0x10, 0, 0xffffffff, 0xa09b};
        for (int seg : {ES, SS, DS, FS, GS})
            s.seg[seg] = {0x18, 0, 0xffffffff, 0xc093};
        s.tr = {0x20, kTss, 0x67, 0x8b};
        s.rip = kCode;
        s.regs[RSP] = kStackTop;
        s.eflags = 2;
        load(s);
    }
    void set_gate(int vector, uint64_t handler)
    {
        bus.write64(kIdt + 16 * vector, gate(handler));
        bus.write64(kIdt + 16 * vector + 8, handler >> 32);
    }
    // Assembles a handler at `gpa` and points `vector` at it.
    void handler(int vector, uint64_t gpa, Prog& code)
    {
        bus.write(gpa, code.getCode(), code.getSize());
        set_gate(vector, gpa);
    }
};

// PVM (kvm_pvm): a software hypervisor speaking the KVM API, with limits.
bool pvm_host()
{
    return access("/sys/module/kvm_pvm", F_OK) == 0;
}

#define START_OR_SKIP(g)                                                                                              \
    Guest g;                                                                                                           \
    if (!g.start())                                                                                                    \
    return

} // namespace

TEST_CASE("kvm: a missing device is named in the error")
{
    auto vm = KvmVm::create("/nonexistent/kvm");
    REQUIRE_FALSE(vm.has_value());
    CHECK(vm.error().message == "kvm: cannot open /nonexistent/kvm: No such file or directory");
}

TEST_CASE("kvm: capabilities and CPUID are those of the host intersected with the model")
{
    START_OR_SKIP(g);
    const kvm::KvmCaps& caps = g.vm->caps();
    MESSAGE("KVM capabilities: " << caps.describe());
    CHECK(caps.immediate_exit);
    CHECK(caps.nr_memslots > 0);
    CHECK(!g.vm->supported_cpuid().empty());
    const CpuModel& model = *find_cpu_model("qemu64");
    auto leaves = g.vm->cpuid(model, 1, 2);
    bool leaf1 = false;
    for (const kvm::CpuidLeaf& l : leaves) {
        if (l.function != 1)
            continue;
        leaf1 = true;
        CHECK((l.value.ebx >> 24) == 1); // the APIC ID of vCPU 1
        CHECK((l.value.edx & ~model.features_edx) == 0);
        CHECK((l.value.ecx & ~model.features_ecx) == 0);
        CHECK((l.value.edx & (1u << 9)) != 0); // the (userspace) local APIC is advertised
    }
    CHECK(leaf1);
}

TEST_CASE("kvm: real mode port output and input")
{
    START_OR_SKIP(g);
    // mov al,'K'; out 0xe9,al; in al,0x80; mov [0x600],al; in ax,0x80;
    // mov [0x602],ax; mov dx,0xe9; mov al,'!'; out dx,al; hlt
    g.enter_real_mode({0xb0, 'K', 0xe6, 0xe9, 0xe4, 0x80, 0xa2, 0x00, 0x06, 0xe5, 0x80, 0xa3, 0x02, 0x06, 0xba,
                       0xe9, 0x00, 0xb0, '!', 0xee, 0xf4});
    CHECK(g.run() == VcpuExit::Halted);
    CHECK(g.bus.console == "K!");
    CHECK((g.bus.read64(0x600) & 0xff) == 0x08);
    CHECK((g.bus.read64(0x602) & 0xffff) == 0x0709); // the second read
    CpuState s = g.state();
    CHECK(s.rip == 0x7c00 + 21);
    CHECK(s.halted);
    // Halted stays halted: no interrupt, nothing runs.
    CHECK(g.run() == VcpuExit::Halted);
    CHECK(g.bus.console == "K!");
}

TEST_CASE("kvm: reset is the power-on state, ROM is a read-only slot")
{
    START_OR_SKIP(g);
    // Code at F000:FFC0: mov al,[cs:0xfffa]; out 0xe9,al; mov [cs:0xfffa],ah
    // (a write to ROM: dropped); mov al,[cs:0xfffa]; out 0xe9,al; hlt. The
    // reset vector F000:FFF0 jumps there; 0xfffa holds 'R'.
    const uint8_t code[] = {0x2e, 0xa0, 0xfa, 0xff, 0xe6, 0xe9, 0x2e, 0x88, 0x26, 0xfa,
                            0xff, 0x2e, 0xa0, 0xfa, 0xff, 0xe6, 0xe9, 0xf4};
    std::vector<uint8_t> rom(0x10000, 0xf4);
    memcpy(&rom[0xffc0], code, sizeof code);
    rom[0xfff0] = 0xeb;                           // jmp short
    rom[0xfff1] = uint8_t(0xffc0 - (0xfff0 + 2)); // back to 0xffc0
    rom[0xfffa] = 'R';
    REQUIRE(g.bus.space->load_rom(kRom, rom.data(), rom.size()));
    g.cpu->reset();
    CpuState s = g.state();
    CHECK(s.seg[CS].selector == 0xf000);
    CHECK(s.seg[CS].base == 0xffff0000);
    CHECK(s.rip == 0xfff0);
    CHECK(s.cr0 == 0x60000010);
    CHECK((s.eflags & ~0x2ull) == 0);
    CHECK(g.run() == VcpuExit::Halted);
    CHECK(g.bus.console == "RR");
    if (g.vm->caps().readonly_mem) {
        // Reads ran from the slot; the write exited as MMIO and was dropped.
        bool wrote = false;
        for (const Bus::Mmio& m : g.bus.mmio)
            wrote |= m.write && m.gpa == kRom + 0xfffa;
        CHECK(wrote);
    }
}

TEST_CASE("kvm: 64-bit mode via set_state; MMIO reaches the bus")
{
    START_OR_SKIP(g);
    Prog p;
    Xbyak::Label loop;
    p.xor_(p.eax, p.eax);
    p.mov(p.ecx, 100);
    p.L(loop);
    p.add(p.rax, p.rcx);
    p.dec(p.ecx);
    p.jnz(loop);
    p.mov(p.rdx, kMmio);
    p.mov(p.qword[p.rdx + 0x10], p.rax);   // a write of 8
    p.mov(p.dword[p.rdx + 0x20], 0xabcd);  // a write of 4
    p.mov(p.rbx, p.qword[p.rdx + 0x18]);   // a read of 8
    p.movzx(p.esi, p.word[p.rdx + 0x28]);  // a read of 2
    p.mov(p.rdi, kData);
    p.mov(p.qword[p.rdi], p.rbx);          // RAM
    p.hlt();
    g.enter_long_mode(p);
    CHECK(g.run() == VcpuExit::Halted);
    CHECK(g.bus.exceptions.empty());
    CpuState s = g.state();
    CHECK(s.regs[RAX] == 5050);
    CHECK(s.regs[RBX] == 0x3333333333333333ull);
    CHECK(s.regs[RSI] == 0x5555);
    CHECK(g.bus.read64(kData) == 0x3333333333333333ull);
    REQUIRE(g.bus.device_writes.size() == 2);
    CHECK(g.bus.device_writes[0] == std::pair<uint64_t, uint64_t>{0x10, 5050});
    CHECK(g.bus.device_writes[1] == std::pair<uint64_t, uint64_t>{0x20, 0xabcd});
    REQUIRE(g.bus.mmio.size() == 4);
    CHECK(g.bus.mmio[0].gpa == kMmio + 0x10);
    CHECK(g.bus.mmio[0].size == 8);
    CHECK(g.bus.mmio[1].size == 4);
    CHECK(!g.bus.mmio[2].write);
    CHECK(g.bus.mmio[3].size == 2);
    CHECK((s.hflags & HF_CS64) != 0);
    CHECK(s.seg[CS].attr == 0xa09b);
}

TEST_CASE("kvm: string I/O — rep outsb, rep insw, more than a page")
{
    START_OR_SKIP(g);
    std::string text;
    for (int i = 0; i < 600; i++)
        text += "0123456789"; // 6000 bytes: KVM hands them over in pieces
    g.bus.write(kData, text.data(), text.size());
    Prog p;
    p.cld();
    p.mov(p.rsi, kData);
    p.mov(p.ecx, uint32_t(text.size()));
    p.mov(p.dx, kConsolePort);
    p.rep();
    p.outsb();
    p.mov(p.rdi, kData + 0x10000);
    p.mov(p.ecx, 3000);
    p.mov(p.dx, kCountPort);
    p.rep();
    p.db(0x66); // insw
    p.db(0x6d);
    p.hlt();
    g.enter_long_mode(p);
    CHECK(g.run() == VcpuExit::Halted);
    CHECK(g.bus.exceptions.empty());
    CHECK(g.bus.console == text);
    CHECK(g.bus.reads == 3000);
    std::vector<uint16_t> words(3000);
    REQUIRE(g.bus.space->read_buf(kData + 0x10000, words.data(), words.size() * 2));
    bool all = true;
    for (size_t i = 0; i < words.size(); i++)
        all &= words[i] == uint16_t(0x0708 + i);
    CHECK(all);
    CpuState s = g.state();
    CHECK(s.regs[RCX] == 0);
    CHECK(s.regs[RSI] == kData + text.size());
}

TEST_CASE("kvm: HLT returns Halted; an interrupt wakes the vCPU and its handler runs")
{
    START_OR_SKIP(g);
    Prog h;
    h.mov(h.al, 'I');
    h.out_(kConsolePort, h.al);
    h.db(0x48); // iretq
    h.db(0xcf);
    Prog p;
    p.sti();
    p.hlt();
    p.mov(p.al, 'A');
    p.out_(kConsolePort, p.al);
    p.cli();
    p.hlt();
    g.enter_long_mode(p);
    g.handler(0x30, kCode + 0x1000, h);
    CHECK(g.run() == VcpuExit::Halted);
    CHECK(g.bus.console.empty());
    CHECK(g.state().halted);
    g.irq.vector = 0x30;
    CHECK(g.run() == VcpuExit::Halted);
    CHECK(g.bus.console == "IA");
    CHECK(g.irq.acks == 1);
    CHECK(g.bus.exceptions.empty());
    // IF=0 now: a pending interrupt does not wake it.
    g.irq.vector = 0x30;
    CHECK(g.run() == VcpuExit::Halted);
    CHECK(g.bus.console == "IA");
    CHECK(g.irq.acks == 1);
}

TEST_CASE("kvm: a halted state loaded by set_state wakes for an interrupt")
{
    START_OR_SKIP(g);
    Prog h;
    h.mov(h.al, 'I');
    h.out_(kConsolePort, h.al);
    h.db(0x48); // iretq
    h.db(0xcf);
    Prog p; // where the HLT returns to
    p.mov(p.al, 'A');
    p.out_(kConsolePort, p.al);
    p.cli();
    p.hlt();
    g.enter_long_mode(p);
    g.handler(0x30, kCode + 0x1000, h);
    CpuState s = g.state();
    s.eflags |= IF;
    s.halted = true;
    g.load(s);
    CHECK(g.run() == VcpuExit::Halted);
    CHECK(g.bus.console.empty());
    g.irq.vector = 0x30;
    CHECK(g.run() == VcpuExit::Halted);
    CHECK(g.bus.console == "IA");
    CHECK(g.bus.exceptions.empty());
}

TEST_CASE("kvm: an interrupt raised while IF=0 is injected when the window opens")
{
    START_OR_SKIP(g);
    Prog h;
    h.mov(h.rdx, kData);
    h.mov(h.byte[h.rdx], 1);
    h.db(0x48); // iretq
    h.db(0xcf);
    Prog p;
    Xbyak::Label wait;
    p.mov(p.rdx, kData);
    p.mov(p.ecx, 100000);
    Xbyak::Label busy;
    p.L(busy); // interrupts off for a while, with the request pending
    p.dec(p.ecx);
    p.jnz(busy);
    p.mov(p.al, 'c');
    p.out_(kConsolePort, p.al);
    p.sti();
    p.L(wait);
    p.cmp(p.byte[p.rdx], 1);
    p.jne(wait);
    p.mov(p.al, 'w');
    p.out_(kConsolePort, p.al);
    p.cli();
    p.hlt();
    g.enter_long_mode(p);
    g.handler(0x40, kCode + 0x1000, h);
    g.irq.vector = 0x40;
    CHECK(g.run() == VcpuExit::Halted);
    CHECK(g.bus.console == "cw");
    CHECK(g.irq.acks == 1);
    CHECK(g.bus.exceptions.empty());
}

TEST_CASE("kvm: raise_nmi from another thread reaches the NMI handler")
{
    START_OR_SKIP(g);
    Prog h;
    h.mov(h.rdx, kData);
    h.mov(h.byte[h.rdx], 1);
    h.db(0x48); // iretq
    h.db(0xcf);
    Prog p;
    Xbyak::Label wait;
    p.mov(p.rdx, kData);
    p.L(wait); // IF=0: only an NMI gets through
    p.cmp(p.byte[p.rdx], 1);
    p.jne(wait);
    p.mov(p.al, 'N');
    p.out_(kConsolePort, p.al);
    p.hlt();
    g.enter_long_mode(p);
    g.handler(2, kCode + 0x1000, h);
    VcpuExit e = g.run_with([&] {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        g.cpu->raise_nmi();
    });
    CHECK(e == VcpuExit::Halted);
    CHECK(g.bus.console == "N");
    CHECK(g.bus.exceptions.empty());
}

TEST_CASE("kvm: kick() from another thread stops a spinning guest")
{
    START_OR_SKIP(g);
    Prog p;
    Xbyak::Label spin;
    p.L(spin);
    p.inc(p.rax);
    p.jmp(spin);
    g.enter_long_mode(p);
    // A kick before run() makes it return at once.
    g.cpu->kick();
    CHECK(g.run() == VcpuExit::Kicked);
    CHECK(g.state().regs[RAX] == 0);
    for (int round = 0; round < 3; round++) {
        auto start = std::chrono::steady_clock::now();
        VcpuExit e = g.run_with([&] {
            std::this_thread::sleep_for(std::chrono::milliseconds(30));
            g.cpu->kick();
        });
        CHECK(e == VcpuExit::Kicked);
        CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(2));
    }
    CpuState s = g.state();
    CHECK(s.regs[RAX] > 0);
    CHECK(s.rip >= kCode);
    CHECK(s.rip < kCode + p.getSize());
}

TEST_CASE("kvm: a kick during MMIO leaves the state at an instruction boundary")
{
    START_OR_SKIP(g);
    Prog p;
    Xbyak::Label top, after_read, after_inc;
    p.mov(p.rdx, kMmio);
    p.xor_(p.ecx, p.ecx);
    p.L(top);
    p.mov(p.rax, p.qword[p.rdx + 8]);
    p.L(after_read);
    p.inc(p.rcx);
    p.L(after_inc);
    p.jmp(top);
    g.enter_long_mode(p);
    uint64_t at_top = kCode + top.getAddress() - p.getCode();
    uint64_t at_inc = kCode + after_read.getAddress() - p.getCode();
    uint64_t at_jmp = kCode + after_inc.getAddress() - p.getCode();
    for (int round = 0; round < 5; round++) {
        VcpuExit e = g.run_with([&] {
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
            g.cpu->kick();
        });
        REQUIRE(e == VcpuExit::Kicked);
        CpuState s = g.state();
        uint64_t reads = g.bus.mmio.size();
        INFO("rip " << std::hex << s.rip << " rcx " << std::dec << s.regs[RCX] << " reads " << reads);
        CHECK(reads > 0);
        if (s.rip == at_inc) {
            // The read completed before run() returned: RAX holds its value.
            CHECK(reads == s.regs[RCX] + 1);
            CHECK(s.regs[RAX] == 0x1111111111111111ull);
        } else {
            CHECK((s.rip == at_top || s.rip == at_jmp));
            CHECK(reads == s.regs[RCX]);
        }
    }
}

TEST_CASE("kvm: a triple fault returns TripleFault")
{
    START_OR_SKIP(g);
    Prog p;
    p.ud2();
    g.enter_long_mode(p);
    CpuState s = g.state();
    s.idtr.limit = 0; // #UD finds no gate: #GP, #DF, shutdown
    g.load(s);
    CHECK(g.run() == VcpuExit::TripleFault);
    // The machine resets it; it runs again from the power-on state.
    g.cpu->reset();
    CHECK(g.state().rip == 0xfff0);
}

TEST_CASE("kvm: get_state returns what set_state loaded")
{
    START_OR_SKIP(g);
    Prog p;
    p.hlt();
    g.enter_long_mode(p);
    CpuState s = g.state();
    for (int i = 0; i < 16; i++)
        s.regs[i] = 0x1000000000000000ull * (i + 1) + i;
    s.regs[RSP] = kStackTop - 64;
    s.rip = kCode;
    s.eflags = 2 | CF | ZF | SF | OF | DF | AC;
    s.seg[FS].base = 0x7fff12345000;
    s.seg[GS].base = 0xffff888000001000;
    s.cr2 = 0xdeadb000;
    s.cr8 = 5;
    s.star = 0x0023001000000000ull;
    s.lstar = 0xffffffff81000000ull;
    s.cstar = 0xffffffff81000100ull;
    s.sfmask = 0x47700;
    s.kernel_gs_base = 0xffff888000002000ull;
    s.sysenter_cs = 0x10;
    s.sysenter_esp = 0x1234000;
    s.sysenter_eip = 0x5678000;
    s.pat = 0x0007010600070106ull;
    s.tsc_offset = 1000000000000ll;
    s.dr[0] = 0x1000;
    s.dr[1] = 0x2000;
    s.dr[7] = 0x400 | 0x1; // L0, but we never run it
    uint16_t fcw = 0x027f;
    memcpy(s.fx, &fcw, 2);
    for (int i = 0; i < 16; i++)
        memset(s.fx + 160 + 16 * i, 0x10 + i, 16);
    uint32_t mxcsr = 0x1fa0;
    memcpy(s.fx + 24, &mxcsr, 4);
    s.nmi_blocked = true;
    update_hflags(s);
    g.load(s);
    CpuState t = g.state();
    for (int i = 0; i < 16; i++)
        CHECK(t.regs[i] == s.regs[i]);
    CHECK(t.rip == s.rip);
    CHECK(t.eflags == s.eflags);
    for (int i = 0; i < 6; i++) {
        INFO("segment " << i);
        CHECK(t.seg[i].selector == s.seg[i].selector);
        CHECK(t.seg[i].base == s.seg[i].base);
        CHECK(t.seg[i].limit == s.seg[i].limit);
        CHECK(t.seg[i].attr == s.seg[i].attr);
    }
    CHECK(t.tr.base == s.tr.base);
    CHECK(t.tr.selector == s.tr.selector);
    CHECK(t.tr.attr == s.tr.attr);
    CHECK(t.gdtr.base == s.gdtr.base);
    CHECK(t.gdtr.limit == s.gdtr.limit);
    CHECK(t.idtr.base == s.idtr.base);
    CHECK(t.idtr.limit == s.idtr.limit);
    CHECK(t.cr0 == s.cr0);
    CHECK(t.cr2 == s.cr2);
    CHECK(t.cr3 == s.cr3);
    CHECK(t.cr4 == s.cr4);
    CHECK(t.cr8 == s.cr8);
    CHECK(t.efer == s.efer);
    CHECK(t.apic_base == s.apic_base);
    CHECK(t.star == s.star);
    CHECK(t.lstar == s.lstar);
    CHECK(t.cstar == s.cstar);
    CHECK(t.sfmask == s.sfmask);
    CHECK(t.kernel_gs_base == s.kernel_gs_base);
    CHECK(t.sysenter_cs == s.sysenter_cs);
    CHECK(t.sysenter_esp == s.sysenter_esp);
    CHECK(t.sysenter_eip == s.sysenter_eip);
    CHECK(t.pat == s.pat);
    // The TSC goes on running meanwhile. PVM ignores host writes to the TSC:
    // the guest's is the host's there.
    auto near = [](uint64_t a, uint64_t b) { return int64_t(a - b) > -1000000000ll && int64_t(a - b) < 1000000000ll; };
    if (pvm_host() && near(t.tsc_offset, 0))
        MESSAGE("PVM: the TSC offset did not take (the guest TSC is the host's)");
    else
        CHECK(near(t.tsc_offset, s.tsc_offset));
    CHECK(t.dr[0] == s.dr[0]);
    CHECK(t.dr[1] == s.dr[1]);
    CHECK(t.dr[7] == s.dr[7]);
    for (int i = 0; i < 32; i++) {
        INFO("FXSAVE byte " << i);
        CHECK(t.fx[i] == s.fx[i]);
    }
    CHECK(memcmp(t.fx + 160, s.fx + 160, 256) == 0);
    CHECK(t.xcr0 == 1);
    CHECK(t.nmi_blocked);
    CHECK(t.hflags == s.hflags);
    CHECK(!t.halted);
}

TEST_CASE("kvm: MSRs KVM does not know reach the bus")
{
    START_OR_SKIP(g);
    if (!g.vm->caps().user_space_msr) {
        MESSAGE("skipped: KVM_CAP_X86_USER_SPACE_MSR is not available");
        return;
    }
    Prog p;
    p.mov(p.ecx, 0x4b000001);
    p.rdmsr();
    p.mov(p.rbx, p.rax);
    p.mov(p.rsi, p.rdx);
    p.mov(p.eax, 0xcafe);
    p.xor_(p.edx, p.edx);
    p.wrmsr();
    p.mov(p.ecx, 0x4b000002); // nobody's: #GP
    p.rdmsr();
    p.hlt();
    g.enter_long_mode(p);
    CHECK(g.run() == VcpuExit::Halted);
    CpuState s = g.state();
    CHECK(s.regs[RBX] == 0x34567890);
    CHECK(s.regs[RSI] == 0x12);
    CHECK(g.bus.msr_written == 0xcafe);
    CHECK(g.bus.exceptions == std::vector<int>{13});
}

TEST_CASE("kvm: memory slots follow the address space")
{
    START_OR_SKIP(g);
    size_t before = g.vm->slot_count();
    auto extra = std::move(*mem::MemoryRegion::ram("extra", 0x100000));
    REQUIRE(g.bus.root->add_subregion(*extra, 0x40000000));
    CHECK(g.vm->slot_count() == before + 1);
    Prog p;
    p.mov(p.rdx, 0x40000000);
    p.mov(p.rax, 0x5a5a5a5a5a5a5a5aull);
    p.mov(p.qword[p.rdx + 0x800], p.rax);
    p.hlt();
    g.enter_long_mode(p);
    size_t mmio_before = g.bus.mmio.size();
    CHECK(g.run() == VcpuExit::Halted);
    uint64_t v;
    memcpy(&v, extra->host() + 0x800, 8);
    CHECK(v == 0x5a5a5a5a5a5a5a5aull);
    CHECK(g.bus.mmio.size() == mmio_before); // RAM, not an exit
    g.bus.root->remove_subregion(*extra);
    CHECK(g.vm->slot_count() == before);
    CHECK(g.vm->memory_error().empty());
}

namespace {

std::vector<uint8_t> baremetal(const char* name)
{
    std::string path = std::string(EMU_BAREMETAL_DIR "/") + name + ".bin";
    FILE* f = fopen(path.c_str(), "rb");
    REQUIRE_MESSAGE(f != nullptr, path);
    std::vector<uint8_t> image(65536);
    image.resize(fread(image.data(), 1, image.size(), f));
    fclose(f);
    return image;
}

} // namespace

TEST_CASE("kvm: the engine's bare-metal mode walk runs under KVM")
{
    START_OR_SKIP(g);
    g.enter_real_mode(baremetal("modeswitch"));
    VcpuExit e = g.cpu->run();
    if (e == VcpuExit::InternalError && pvm_host()) {
        // PVM runs code outside 64-bit mode in KVM's instruction emulator,
        // which stops at the 32-bit IRET of the #DE handler.
        MESSAGE("PVM cannot run it: " << g.cpu->error());
        return;
    }
    CHECK(e == VcpuExit::Halted);
    CHECK(g.bus.console == "RPDLIFUS");
    CHECK(g.bus.exit_code == 0);
}
