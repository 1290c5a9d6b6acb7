// Unit tests: the x86 engine end to end — frontend, IR, interpreter, soft
// MMU, exceptions — on small programs assembled with xbyak.
#include "engine/x86/flags.h"
#include "tests/unit/x86_test_machine.h"

#include <doctest/doctest.h>
#include <thread>
#include <xbyak/xbyak.h>

using namespace emu;
using namespace emu::x86;
using namespace emu::test;

namespace {

struct Fixture {
    TestBus bus;
    Vcpu cpu{bus, *find_cpu_model("max")};
    CpuState& s = cpu.state();

    Fixture() { enter_long_mode(cpu, bus); }

    // Loads the program at k_code and runs it until it halts.
    void run(Xbyak::CodeGenerator& gen, uint64_t budget = 10'000'000)
    {
        bus.write(k_code, gen.getCode(), gen.getSize());
        s.rip = k_code;
        VcpuExit exit = cpu.run(budget);
        REQUIRE(exit == VcpuExit::Halted);
    }
};

struct Prog : Xbyak::CodeGenerator {
    Prog() : Xbyak::CodeGenerator(64 * 1024) {}
};

} // namespace

TEST_CASE("a loop sums 1..100 and halts")
{
    Fixture f;
    Prog p;
    Xbyak::Label loop;
    p.xor_(p.eax, p.eax);
    p.mov(p.ecx, 100);
    p.L(loop);
    p.add(p.rax, p.rcx);
    p.dec(p.ecx);
    p.jnz(loop);
    p.hlt();
    f.run(p);
    CHECK(f.s.regs[RAX] == 5050);
    CHECK(f.s.regs[RCX] == 0);
    CHECK(halted_in_stub(f.cpu) == -1);
}

TEST_CASE("partial registers, extension and 32-bit zeroing")
{
    Fixture f;
    Prog p;
    p.mov(p.rax, 0x1122334455667788ull);
    p.mov(p.al, 0xff);  // rax = ..77ff
    p.mov(p.ah, 0x01);  // rax = ..01ff
    p.mov(p.rbx, p.rax);
    p.mov(p.bx, 0xabcd);
    p.mov(p.rcx, p.rax);
    p.mov(p.ecx, p.ecx); // zero-extends
    p.movsx(p.rdx, p.al);
    p.movzx(p.esi, p.ah);
    p.movsxd(p.rdi, p.ecx);
    p.hlt();
    f.run(p);
    CHECK(f.s.regs[RAX] == 0x11223344556601ffull);
    CHECK(f.s.regs[RBX] == 0x112233445566abcdull);
    CHECK(f.s.regs[RCX] == 0x556601ffull);
    CHECK(f.s.regs[RDX] == ~0ull);
    CHECK(f.s.regs[RSI] == 1);
    CHECK(f.s.regs[RDI] == 0x556601ffull);
}

TEST_CASE("memory operands, stack, call and ret")
{
    Fixture f;
    Prog p;
    Xbyak::Label func, done;
    p.mov(p.rbx, 0x200000);
    p.mov(p.ecx, 3);
    p.mov(p.qword[p.rbx + p.rcx * 8 + 16], 42); // [0x200028]
    p.mov(p.rax, p.qword[p.rbx + 40]);
    p.push(p.rax);
    p.call(func);
    p.pop(p.rdx);
    p.jmp(done);
    p.L(func);
    p.add(p.qword[p.rsp + 8], 1); // bump the pushed value
    p.ret();
    p.L(done);
    p.hlt();
    f.run(p);
    CHECK(f.s.regs[RAX] == 42);
    CHECK(f.s.regs[RDX] == 43);
    CHECK(f.s.regs[RSP] == k_stack);
    CHECK(f.bus.read64(0x200028) == 42);
}

TEST_CASE("flags drive conditions, setcc, cmov, adc chains")
{
    Fixture f;
    Prog p;
    p.mov(p.eax, 5);
    p.cmp(p.eax, 7);
    p.setb(p.bl);   // 1
    p.setg(p.cl);   // 0
    p.mov(p.edx, 100);
    p.mov(p.esi, 200);
    p.cmovl(p.edx, p.esi); // 5 < 7: edx = 200
    p.mov(p.rax, ~0ull);
    p.add(p.rax, 1); // CF = 1, rax = 0
    p.mov(p.edi, 10);
    p.adc(p.rdi, 0); // 11
    p.hlt();
    f.run(p);
    CHECK((f.s.regs[RBX] & 0xff) == 1);
    CHECK((f.s.regs[RCX] & 0xff) == 0);
    CHECK(f.s.regs[RDX] == 200);
    CHECK(f.s.regs[RAX] == 0);
    CHECK(f.s.regs[RDI] == 11);
}

TEST_CASE("multiply and divide, and #DE is precise")
{
    Fixture f;
    Prog p;
    p.mov(p.rax, 0x123456789ull);
    p.mov(p.rcx, 0x1000);
    p.mul(p.rcx); // rdx:rax
    p.mov(p.r8, p.rax);
    p.mov(p.r9, p.rdx);
    p.mov(p.eax, 100);
    p.xor_(p.edx, p.edx);
    p.mov(p.ecx, 7);
    p.div(p.ecx); // 14 rem 2
    p.mov(p.r10, p.rax);
    p.mov(p.r11, p.rdx);
    p.xor_(p.ecx, p.ecx);
    p.div(p.ecx); // #DE
    p.hlt();
    f.bus.write(k_code, p.getCode(), p.getSize());
    f.s.rip = k_code;
    REQUIRE(f.cpu.run(1'000'000) == VcpuExit::Halted);
    CHECK(f.s.regs[R8] == 0x123456789000ull);
    CHECK(f.s.regs[R9] == 0);
    CHECK(f.s.regs[R10] == 14);
    CHECK(f.s.regs[R11] == 2);
    CHECK(halted_in_stub(f.cpu) == 0);
    // The frame: RIP points at the div that faulted, CS is the kernel's.
    uint64_t frame = f.s.regs[RSP];
    uint64_t fault_rip = f.bus.read64(frame);
    CHECK(fault_rip == k_code + p.getSize() - 3); // div ecx is 2 bytes, hlt 1
    CHECK(f.bus.read64(frame + 8) == 0x08);
}

TEST_CASE("page fault: error code, CR2, and nothing written")
{
    Fixture f;
    Prog p;
    Xbyak::Label store;
    p.mov(p.rbx, 0x40000000ull); // just past the mapped GiB
    p.mov(p.eax, 7);
    p.L(store);
    p.mov(p.dword[p.rbx + 8], p.eax);
    p.hlt();
    f.bus.write(k_code, p.getCode(), p.getSize());
    f.s.rip = k_code;
    REQUIRE(f.cpu.run(1'000'000) == VcpuExit::Halted);
    CHECK(halted_in_stub(f.cpu) == 14);
    CHECK(f.s.cr2 == 0x40000008ull);
    uint64_t frame = f.s.regs[RSP];
    CHECK(f.bus.read64(frame) == 2); // error code: write to a not-present page, supervisor
    CHECK(f.bus.read64(frame + 8) == k_code + uint64_t(store.getAddress() - p.getCode()));
}

TEST_CASE("self-modifying code runs the new instruction")
{
    Fixture f;
    Prog p;
    Xbyak::Label target;
    // Overwrite the immediate of the mov below, then execute it.
    p.lea(p.rbx, p.ptr[p.rip + target]);
    p.mov(p.dword[p.rbx + 1], 0x99); // mov eax, imm32 is b8 imm32
    p.L(target);
    p.mov(p.eax, 0x11);
    p.hlt();
    f.run(p);
    CHECK(f.s.regs[RAX] == 0x99);
    CHECK(f.cpu.stats().blocks_invalidated >= 1);
}

TEST_CASE("string instructions with rep prefixes")
{
    Fixture f;
    Prog p;
    for (int i = 0; i < 64; i++)
        f.bus.write(0x300000 + i, &i, 1);
    p.cld();
    p.mov(p.rsi, 0x300000);
    p.mov(p.rdi, 0x310000);
    p.mov(p.ecx, 64);
    p.rep();
    p.movsb();
    p.mov(p.rdi, 0x320000);
    p.mov(p.rax, 0x0102030405060708ull);
    p.mov(p.ecx, 4);
    p.rep();
    p.stosq();
    p.mov(p.rdi, 0x300000);
    p.mov(p.al, 40);
    p.mov(p.ecx, 64);
    p.repne();
    p.scasb(); // stops after byte 40
    p.hlt();
    f.run(p);
    for (int i = 0; i < 64; i++) {
        bool w;
        CHECK(f.bus.ram_page(0x310000, w)[i] == i);
    }
    CHECK(f.bus.read64(0x320018) == 0x0102030405060708ull);
    CHECK(f.s.regs[RDI] == 0x300000 + 41);
    CHECK(f.s.regs[RCX] == 64 - 41);
}

TEST_CASE("rep outs and rep ins move bytes, words and dwords (the IDE data port's insl/outsl)")
{
    Fixture f;
    uint32_t data[3] = {0x11223344, 0x55667788, 0x99aabbcc};
    f.bus.write(0x300000, data, sizeof data);
    Prog p;
    p.cld();
    p.mov(p.dx, 0x170);
    p.mov(p.rsi, 0x300000);
    p.mov(p.ecx, 3);
    p.rep();
    p.outsd();
    p.mov(p.rsi, 0x300000);
    p.mov(p.ecx, 2);
    p.rep();
    p.outsw();
    p.mov(p.rsi, 0x300000);
    p.outsb();
    p.mov(p.rdi, 0x310000);
    p.mov(p.dx, 0x1f0);
    p.mov(p.ecx, 2);
    p.rep();
    p.db(0x6d); // insd
    p.hlt();
    f.run(p);
    using W = TestBus::PortWrite;
    std::vector<W> want = {{0x170, 0x11223344, 4}, {0x170, 0x55667788, 4}, {0x170, 0x99aabbcc, 4},
                           {0x170, 0x3344, 2},     {0x170, 0x1122, 2},     {0x170, 0x44, 1}};
    CHECK(f.bus.port_writes == want);
    CHECK(f.s.regs[RSI] == 0x300001);
    CHECK(f.s.regs[RDI] == 0x310008); // two dwords in
    CHECK(f.bus.read64(0x310000) == ~0ull);
}

TEST_CASE("port I/O and CPUID")
{
    Fixture f;
    Prog p;
    for (char c : std::string("hi")) {
        p.mov(p.al, c);
        p.out_(0xe9, p.al);
    }
    p.xor_(p.eax, p.eax);
    p.cpuid();
    p.hlt();
    f.run(p);
    CHECK(f.bus.console == "hi");
    CHECK(f.s.regs[RAX] == 0xd);
    char vendor[13] = {};
    memcpy(vendor, &f.s.regs[RBX], 4);
    memcpy(vendor + 4, &f.s.regs[RDX], 4);
    memcpy(vendor + 8, &f.s.regs[RCX], 4);
    CHECK(std::string(vendor) == "AuthenticAMD");
}

TEST_CASE("an unimplemented instruction raises #UD and the host goes on")
{
    Fixture f;
    Prog p;
    p.ud2();
    p.hlt();
    f.bus.write(k_code, p.getCode(), p.getSize());
    f.s.rip = k_code;
    REQUIRE(f.cpu.run(1'000'000) == VcpuExit::Halted);
    CHECK(halted_in_stub(f.cpu) == 6);
}

TEST_CASE("real mode: 16-bit code with segments")
{
    TestBus bus;
    Vcpu cpu(bus, *find_cpu_model("qemu64"));
    CpuState& s = cpu.state();
    // mov ax, 0x1234; mov ds, ... not yet: use ES-free code.
    // mov ax,0x1234 ; mov bx,0x10 ; add ax,bx ; mov [0x500],ax ; hlt
    const uint8_t code[] = {0xb8, 0x34, 0x12, 0xbb, 0x10, 0x00, 0x01, 0xd8, 0xa3, 0x00, 0x05, 0xf4};
    bus.write(0x7c00, code, sizeof code);
    s.seg[CS].selector = 0;
    s.seg[CS].base = 0;
    s.rip = 0x7c00;
    update_hflags(s);
    REQUIRE(cpu.run(1000) == VcpuExit::Halted);
    CHECK((s.regs[RAX] & 0xffff) == 0x1244);
    CHECK((bus.read64(0x500) & 0xffff) == 0x1244);
}

namespace {

// A nasm program from tests/baremetal, loaded at 0x7c00 and entered in real mode.
struct BareMetal {
    TestBus bus;
    Vcpu cpu{bus, *find_cpu_model("qemu64")};
    explicit BareMetal(const char* name)
    {
        std::string path = std::string(EMU_BAREMETAL_DIR "/") + name + ".bin";
        FILE* f = fopen(path.c_str(), "rb");
        REQUIRE_MESSAGE(f != nullptr, path);
        std::vector<uint8_t> image(65536);
        image.resize(fread(image.data(), 1, image.size(), f));
        fclose(f);
        bus.write(0x7c00, image.data(), image.size());
        CpuState& s = cpu.state();
        s.seg[CS].selector = 0;
        s.seg[CS].base = 0;
        s.rip = 0x7c00;
        update_hflags(s);
    }
    VcpuExit run() { return cpu.run(10'000'000); }
};

} // namespace

TEST_CASE("bare metal: real -> protected -> long mode, gates, rings, syscall")
{
    // tests/baremetal/modeswitch.asm, assembled by nasm at build time.
    BareMetal m("modeswitch");
    TestBus& bus = m.bus;
    CpuState& s = m.cpu.state();
    VcpuExit exit = m.run();
    CHECK(exit == VcpuExit::Halted);
    CHECK(bus.console == "RPDLIFUS");
    CHECK(bus.exit_code == 0);
    CHECK((s.hflags & HF_CS64) != 0);
}

TEST_CASE("bare metal: 32-bit paging, PSE, WP, user/supervisor, v8086, call gates, PAE with NX")
{
    BareMetal m("prot32");
    TestBus& bus = m.bus;
    VcpuExit exit = m.run();
    CHECK(exit == VcpuExit::Halted);
    CHECK(bus.console == "GWUVCN");
    CHECK(bus.exit_code == 0);
}

TEST_CASE("bare metal: task switches through TSS descriptors and task gates")
{
    BareMetal m("tasks");
    TestBus& bus = m.bus;
    CpuState& s = m.cpu.state();
    VcpuExit exit = m.run();
    CHECK(exit == VcpuExit::Halted);
    CHECK(bus.console == "BbD");
    CHECK(bus.exit_code == 0);
    CHECK((s.cr0 & CR0_TS) != 0); // every task switch sets TS
}

TEST_CASE("MSRs read back what was written; unknown ones are #GP")
{
    Fixture f;
    Prog p;
    auto wr = [&](uint32_t msr, uint64_t v) {
        p.mov(p.ecx, msr);
        p.mov(p.eax, uint32_t(v));
        p.mov(p.edx, uint32_t(v >> 32));
        p.wrmsr();
    };
    auto rd = [&](uint32_t msr, const Xbyak::Reg64& dst) {
        p.mov(p.ecx, msr);
        p.rdmsr();
        p.shl(p.rdx, 32);
        p.or_(p.rax, p.rdx);
        p.mov(dst, p.rax);
    };
    wr(0xc0000082, 0xffffffff81000000ull); // LSTAR
    rd(0xc0000082, p.r8);
    wr(0x200, 0x80000006ull);              // MTRR physbase0
    rd(0x200, p.r9);
    wr(0xc0000102, 0x1234000ull);          // KERNEL_GS_BASE
    p.db(0x0f);
    p.db(0x01);
    p.db(0xf8); // swapgs
    rd(0xc0000101, p.r10);                 // GS_BASE, swapped in
    rd(0x179, p.r11);                      // MCG_CAP: no banks
    p.mov(p.ecx, 0xdeadbeef);
    p.rdmsr();                             // #GP
    p.hlt();
    f.bus.write(k_code, p.getCode(), p.getSize());
    f.s.rip = k_code;
    REQUIRE(f.cpu.run(100000) == VcpuExit::Halted);
    CHECK(halted_in_stub(f.cpu) == 13);
    CHECK(f.s.regs[R8] == 0xffffffff81000000ull);
    CHECK(f.s.regs[R9] == 0x80000006ull);
    CHECK(f.s.regs[R10] == 0x1234000ull);
    CHECK(f.s.regs[R11] == 0);
}

TEST_CASE("enter with nesting levels builds the display")
{
    Fixture f;
    Prog p;
    p.mov(p.rbp, 0x70000);
    p.mov(p.qword[p.rbp - 8], 0x1111);
    p.mov(p.qword[p.rbp - 16], 0x2222);
    p.enter(32, 3);
    p.hlt();
    f.run(p);
    uint64_t frame = f.s.regs[RBP];
    CHECK(frame == k_stack - 8);
    CHECK(f.bus.read64(k_stack - 8) == 0x70000);       // old rbp
    CHECK(f.bus.read64(k_stack - 16) == 0x1111);       // copied from the enclosing display
    CHECK(f.bus.read64(k_stack - 24) == 0x2222);
    CHECK(f.bus.read64(k_stack - 32) == frame);        // the new frame pointer
    CHECK(f.s.regs[RSP] == k_stack - 32 - 32);
}

TEST_CASE("lock cmpxchg spinlocks keep two vCPU threads' plain updates exact")
{
    // Two vCPUs on two host threads share RAM. Each takes a spinlock with
    // lock cmpxchg, does a plain load/add/store on a counter, and releases
    // the lock with a plain store; lock xadd counts the rounds too.
    TestBus bus;
    for (uint64_t a = 0; a < 0x400000; a += 4096)
        bus.write64(a, 0); // pages exist before the threads start
    constexpr uint64_t lock_at = 0x300000, counter_at = 0x300040, xadd_at = 0x300080;
    constexpr int rounds = 20000;
    Prog p;
    Xbyak::Label again, spin, loop;
    p.mov(p.r8d, rounds);
    p.mov(p.rbx, lock_at);
    p.L(loop);
    p.L(spin);
    p.xor_(p.eax, p.eax);
    p.mov(p.ecx, 1);
    p.lock();
    p.cmpxchg(p.dword[p.rbx], p.ecx);
    p.jnz(spin);
    p.mov(p.rdx, p.qword[p.rbx + 0x40]);
    p.add(p.rdx, 1);
    p.mov(p.qword[p.rbx + 0x40], p.rdx);
    p.mov(p.dword[p.rbx], 0);
    p.mov(p.eax, 1);
    p.lock();
    p.xadd(p.qword[p.rbx + 0x80], p.rax);
    p.dec(p.r8d);
    p.jnz(loop);
    p.hlt();
    bus.write(k_code, p.getCode(), p.getSize());
    auto worker = [&](int index) {
        Vcpu cpu(bus, *find_cpu_model("max"), unsigned(index), 2);
        enter_long_mode(cpu, bus);
        cpu.state().regs[RSP] = k_stack - 0x8000 * index;
        cpu.state().rip = k_code;
        while (cpu.run(1'000'000) == VcpuExit::Budget) {
        }
    };
    std::thread a(worker, 0), b(worker, 1);
    a.join();
    b.join();
    CHECK(bus.read64(counter_at) == 2 * rounds);
    CHECK(bus.read64(xadd_at) == 2 * rounds);
    CHECK((bus.read64(lock_at) & 0xffffffff) == 0);
}

namespace {

// 32-bit protected mode, paging off, flat code and stack, and 32-bit
// interrupt gates whose vector-N handler halts at k_stubs + 16*N.
void enter_protected_mode(Vcpu& cpu, TestBus& bus)
{
    CpuState& s = cpu.state();
    for (int v = 0; v < 32; v++) {
        uint64_t handler = k_stubs + 16 * v;
        uint64_t gate = (handler & 0xffff) | (0x08ull << 16) | (0x8eull << 40) | ((handler >> 16 & 0xffff) << 48);
        bus.write64(k_idt + 8 * v, gate);
        uint8_t stub[2] = {0xf4, 0xeb};
        bus.write(handler, stub, 1);
    }
    bus.write64(k_gdt + 8, 0x00cf9a000000ffffull);
    s.cr0 = CR0_PE | CR0_ET;
    s.gdtr = {k_gdt, 15};
    s.idtr = {k_idt, 32 * 8 - 1};
    load_segment_cache(s.seg[CS], 0x08, 0x00cf9a000000ffffull);
    for (int seg : {SS, DS, ES, FS, GS})
        load_segment_cache(s.seg[seg], 0x10, 0x00cf92000000ffffull);
    s.regs[RSP] = 0x7000;
    update_hflags(s);
}

int run32(Vcpu& cpu, TestBus& bus, std::initializer_list<uint8_t> code)
{
    std::vector<uint8_t> bytes(code);
    bytes.push_back(0xf4);
    bus.write(0x20000, bytes.data(), bytes.size());
    cpu.flush_code(); // the bytes changed behind the CPU's back (as a loader's would)
    cpu.state().halted = false;
    cpu.state().rip = 0x20000;
    cpu.run(1000);
    return halted_in_stub(cpu);
}

} // namespace

TEST_CASE("segment limits and types in 32-bit protected mode")
{
    TestBus bus;
    Vcpu cpu(bus, *find_cpu_model("qemu64"));
    enter_protected_mode(cpu, bus);
    CpuState& s = cpu.state();
    auto data = [](uint32_t base, uint32_t limit, unsigned type) {
        return (limit & 0xffff) | (uint64_t(base & 0xffffff) << 16) | (uint64_t(0x90 | type) << 40) |
               (uint64_t(limit >> 16 & 0xf) << 48) | (0x4ull << 52) | (uint64_t(base >> 24) << 56);
    };
    // DS: 4 KiB at 0x100000, read/write.
    load_segment_cache(s.seg[DS], 0x18, data(0x100000, 0xfff, 0x3));
    update_hflags(s);
    CHECK((s.hflags & HF_SEGCHECK) != 0);
    CHECK(run32(cpu, bus, {0xa1, 0xfc, 0x0f, 0, 0}) == -1);      // mov eax, [0xffc]: the last dword
    CHECK(run32(cpu, bus, {0xa1, 0xfd, 0x0f, 0, 0}) == 13);      // mov eax, [0xffd]: past the limit
    // ES read-only: a write is #GP, a read is fine.
    enter_protected_mode(cpu, bus);
    load_segment_cache(s.seg[ES], 0x20, data(0, 0xffff, 0x1));
    update_hflags(s);
    CHECK(run32(cpu, bus, {0x26, 0x8b, 0x05, 0x10, 0, 0, 0}) == -1); // mov eax, es:[0x10]
    CHECK(run32(cpu, bus, {0x26, 0x89, 0x05, 0x10, 0, 0, 0}) == 13); // mov es:[0x10], eax
    // Expand-down DS with limit 0xfff: offsets above it are valid, below are not.
    enter_protected_mode(cpu, bus);
    load_segment_cache(s.seg[DS], 0x18, data(0, 0xfff, 0x7));
    update_hflags(s);
    CHECK(run32(cpu, bus, {0xa1, 0x00, 0x20, 0, 0}) == -1);      // [0x2000]
    CHECK(run32(cpu, bus, {0xa1, 0x00, 0x08, 0, 0}) == 13);      // [0x800]
    // A stack segment limit gives #SS.
    enter_protected_mode(cpu, bus);
    load_segment_cache(s.seg[SS], 0x10, data(0, 0x6fff, 0x3));
    update_hflags(s);
    s.regs[RSP] = 0x7000;
    CHECK(run32(cpu, bus, {0x6a, 0x01}) == -1);                   // push 1 at 0x6ffc: fine
    s.regs[RSP] = 0x7002;
    load_segment_cache(s.seg[SS], 0x10, data(0, 0x6fff, 0x3));
    CHECK(run32(cpu, bus, {0x50}) == 12);                         // push eax across the limit
}

TEST_CASE("lar, lsl, verr, verw, arpl and bound")
{
    TestBus bus;
    Vcpu cpu(bus, *find_cpu_model("qemu64"));
    enter_protected_mode(cpu, bus);
    CpuState& s = cpu.state();
    bus.write64(k_gdt + 16, 0x00cf92000000ffffull); // 0x10 data, 4 GiB
    s.gdtr.limit = 23;
    // lsl eax, [0x10]: 0xffffffff; lar ebx, 0x10: the access rights.
    s.regs[RCX] = 0x10;
    CHECK(run32(cpu, bus, {0x0f, 0x03, 0xc1, 0x0f, 0x02, 0xd9}) == -1); // lsl eax, ecx; lar ebx, ecx
    CHECK(uint32_t(s.regs[RAX]) == 0xffffffff);
    CHECK(uint32_t(s.regs[RBX]) == 0x00c09200);
    CHECK((read_eflags(s) & ZF) != 0);
    // A null selector: ZF clear, the destination untouched.
    s.regs[RCX] = 0;
    s.regs[RAX] = 0x1234;
    CHECK(run32(cpu, bus, {0x0f, 0x03, 0xc1}) == -1);
    CHECK(s.regs[RAX] == 0x1234);
    CHECK((read_eflags(s) & ZF) == 0);
    // verr on readable code: ZF; verw on code: no ZF.
    s.regs[RCX] = 0x08;
    CHECK(run32(cpu, bus, {0x0f, 0x00, 0xe1}) == -1); // verr cx
    CHECK((read_eflags(s) & ZF) != 0);
    CHECK(run32(cpu, bus, {0x0f, 0x00, 0xe9}) == -1); // verw cx
    CHECK((read_eflags(s) & ZF) == 0);
    // arpl dx, cx: RPL 0 raised to 3.
    s.regs[RDX] = 0x10;
    s.regs[RCX] = 0x3;
    CHECK(run32(cpu, bus, {0x63, 0xca}) == -1);
    CHECK((s.regs[RDX] & 0xffff) == 0x13);
    CHECK((read_eflags(s) & ZF) != 0);
    // bound eax, [0x3000] with bounds 10..20.
    bus.write64(0x3000, (uint64_t(20) << 32) | 10);
    s.regs[RAX] = 15;
    CHECK(run32(cpu, bus, {0x62, 0x05, 0x00, 0x30, 0, 0}) == -1);
    s.regs[RAX] = 21;
    CHECK(run32(cpu, bus, {0x62, 0x05, 0x00, 0x30, 0, 0}) == 5); // #BR
}

TEST_CASE("external interrupts: taken only with IF set, after the STI shadow, waking HLT")
{
    struct Pic : InterruptSource {
        bool line = false;
        int acks = 0;
        bool pending() override { return line; }
        int acknowledge() override
        {
            acks++;
            line = false;
            return 0x20;
        }
    } pic;
    Fixture f;
    f.cpu.set_interrupt_source(&pic);
    // The vector 0x20 handler counts in r15 and returns.
    Prog h;
    h.inc(h.r15);
    h.db(0x48);
    h.db(0xcf); // iretq
    f.bus.write(0x150000, h.getCode(), h.getSize());
    uint64_t gate = (0x150000 & 0xffff) | (0x08ull << 16) | (0x8eull << 40) | (uint64_t(0x150000 >> 16) << 48);
    f.bus.write64(k_idt + 16 * 0x20, gate);
    f.bus.write64(k_idt + 16 * 0x20 + 8, 0);
    Prog p;
    p.xor_(p.r15, p.r15);
    p.cli();
    p.mov(p.eax, 1);
    p.sti();
    p.hlt(); // the interrupt arrives here: after sti's shadow, and wakes hlt
    p.mov(p.ebx, 2);
    p.hlt();
    f.bus.write(k_code, p.getCode(), p.getSize());
    f.s.rip = k_code;
    pic.line = true;
    REQUIRE(f.cpu.run(100000) == VcpuExit::Halted);
    CHECK(pic.acks == 1);
    CHECK(f.s.regs[R15] == 1);
    CHECK(f.s.regs[RBX] == 2); // resumed after the first hlt
    // With IF clear the line is ignored.
    f.s.eflags &= ~IF;
    pic.line = true;
    f.s.halted = false;
    f.cpu.run(1000);
    CHECK(pic.acks == 1);
    // A kick from another thread stops run().
    f.cpu.kick();
    f.s.halted = false;
    CHECK(f.cpu.run(~0ull) == VcpuExit::Kicked);
}

TEST_CASE("cross-modifying code: one vCPU rewrites a function another keeps calling")
{
    TestBus bus;
    for (uint64_t a = 0; a < 0x400000; a += 4096)
        bus.write64(a, 0);
    CodeTracker code;
    constexpr uint64_t func = 0x180000, seen = 0x300000, started = 0x300040;
    const uint8_t body[] = {0xb8, 0x11, 0, 0, 0, 0xc3}; // mov eax, 0x11; ret
    bus.write(func, body, sizeof body);
    // B: call the function until it returns 0x99, counting calls.
    Prog b;
    Xbyak::Label loop;
    b.mov(b.rbx, func);
    b.mov(b.rsi, seen);
    b.L(loop);
    b.call(b.rbx);
    b.mov(b.dword[b.rsi], b.eax);
    b.add(b.qword[b.rsi + 0x40], 1);
    b.cmp(b.eax, 0x99);
    b.jne(loop);
    b.hlt();
    bus.write(k_code, b.getCode(), b.getSize());
    // A: once B is running, store the new immediate into B's function.
    Prog a;
    Xbyak::Label wait;
    a.mov(a.rsi, started);
    a.L(wait);
    a.cmp(a.qword[a.rsi], 1000);
    a.jb(wait);
    a.mov(a.rdi, func + 1);
    a.mov(a.dword[a.rdi], 0x99);
    a.hlt();
    bus.write(k_code + 0x1000, a.getCode(), a.getSize());

    std::atomic<bool> b_done{false};
    std::thread tb([&] {
        Vcpu cpu(bus, *find_cpu_model("max"), 0, 2, &code);
        enter_long_mode(cpu, bus);
        cpu.state().rip = k_code;
        for (int i = 0; i < 2000 && cpu.run(1'000'000) == VcpuExit::Budget; i++) {
        }
        b_done = true;
    });
    std::thread ta([&] {
        Vcpu cpu(bus, *find_cpu_model("max"), 1, 2, &code);
        enter_long_mode(cpu, bus);
        cpu.state().regs[RSP] = k_stack - 0x8000;
        cpu.state().rip = k_code + 0x1000;
        for (int i = 0; i < 2000 && cpu.run(1'000'000) == VcpuExit::Budget; i++) {
        }
    });
    ta.join();
    tb.join();
    CHECK(b_done);
    CHECK((bus.read64(seen) & 0xffffffff) == 0x99); // B ran the rewritten code
}
