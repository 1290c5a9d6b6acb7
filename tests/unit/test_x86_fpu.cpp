// Unit tests: x87, MMX and SSE instructions, run on the host unit with the
// guest's state loaded (engine/x86/hostexec).
#include "tests/unit/x86_test_machine.h"

#include <cmath>
#include <cstring>
#include <doctest/doctest.h>
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
    int run(Xbyak::CodeGenerator& g)
    {
        bus.write(k_code, g.getCode(), g.getSize());
        s.rip = k_code;
        REQUIRE(cpu.run(1'000'000) == VcpuExit::Halted);
        return halted_in_stub(cpu);
    }
    void xmm(int i, void* out) { memcpy(out, s.fx + 160 + 16 * i, 16); }
};

struct Prog : Xbyak::CodeGenerator {
    Prog() : Xbyak::CodeGenerator(4096) {}
};

constexpr uint64_t k_buf = 0x200000;

} // namespace

TEST_CASE("SSE2 integer and double arithmetic")
{
    Fixture f;
    uint32_t words[4] = {1, 2, 3, 4};
    f.bus.write(k_buf, words, sizeof words);
    double two = 2.0, three = 3.0;
    f.bus.write(k_buf + 16, &two, 8);
    f.bus.write(k_buf + 24, &three, 8);
    Prog p;
    using namespace Xbyak::util;
    p.mov(rbx, k_buf);
    p.movdqu(xmm0, ptr[rbx]);
    p.paddd(xmm0, xmm0);          // 2 4 6 8
    p.pshufd(xmm1, xmm0, 0x1b);   // 8 6 4 2
    p.movq(rax, xmm1);
    p.movsd(xmm2, ptr[rbx + 16]);
    p.mulsd(xmm2, ptr[rbx + 24]); // 6.0
    p.cvttsd2si(ecx, xmm2);
    p.ucomisd(xmm2, ptr[rbx + 24]); // 6 > 3: ZF=PF=CF=0
    p.seta(dl);
    p.movsd(ptr[rbx + 32], xmm2);
    p.hlt();
    CHECK(f.run(p) == -1);
    CHECK(f.s.regs[RAX] == ((uint64_t(6) << 32) | 8));
    CHECK(f.s.regs[RCX] == 6);
    CHECK((f.s.regs[RDX] & 0xff) == 1);
    CHECK(f.bus.read64(k_buf + 32) == 0x4018000000000000ull); // 6.0
}

TEST_CASE("x87 keeps 80-bit precision")
{
    Fixture f;
    Prog p;
    using namespace Xbyak::util;
    p.mov(rbx, k_buf);
    p.fld1();
    p.mov(dword[rbx], 3);
    p.fild(dword[rbx]);
    p.fdivp(st1, st0); // 1/3
    p.db(0xdb);
    p.db(0x7b);
    p.db(0x10); // fstp tword [rbx + 16]
    p.fldpi();
    p.fistp(dword[rbx + 32]);
    p.hlt();
    CHECK(f.run(p) == -1);
    long double third = 1.0L / 3.0L, got;
    uint8_t raw[16] = {};
    for (int i = 0; i < 10; i++) {
        bool w;
        raw[i] = f.bus.ram_page(k_buf + 16 + i, w)[(k_buf + 16 + i) & 0xfff];
    }
    memcpy(&got, raw, sizeof got);
    CHECK(got == third);
    CHECK((f.bus.read64(k_buf + 32) & 0xffffffff) == 3);
}

TEST_CASE("alignment, unmasked exceptions and CR0.TS are the guest's faults")
{
    {
        Fixture f;
        Prog p;
        using namespace Xbyak::util;
        p.mov(rbx, k_buf + 8);
        p.movaps(xmm0, ptr[rbx]); // misaligned: #GP
        p.hlt();
        CHECK(f.run(p) == 13);
    }
    {
        Fixture f;
        f.s.cr4 |= CR4_OSXMMEXCPT;
        uint32_t mxcsr = 0x1f80 & ~(1u << 9); // unmask divide-by-zero
        f.bus.write(k_buf, &mxcsr, 4);
        double one = 1.0, zero = 0.0;
        f.bus.write(k_buf + 8, &one, 8);
        f.bus.write(k_buf + 16, &zero, 8);
        Prog p;
        using namespace Xbyak::util;
        p.mov(rbx, k_buf);
        p.ldmxcsr(ptr[rbx]);
        p.movsd(xmm3, ptr[rbx + 8]);
        p.divsd(xmm3, ptr[rbx + 16]); // #XM, xmm3 unchanged
        p.hlt();
        CHECK(f.run(p) == 19);
        double lanes[2];
        f.xmm(3, lanes);
        CHECK(lanes[0] == 1.0);
    }
    {
        Fixture f;
        f.s.cr0 |= CR0_TS;
        Prog p;
        using namespace Xbyak::util;
        p.pxor(xmm0, xmm0); // #NM
        p.hlt();
        CHECK(f.run(p) == 7);
    }
}

TEST_CASE("fxsave and fxrstor round-trip the guest's state")
{
    Fixture f;
    Prog p;
    using namespace Xbyak::util;
    p.mov(rbx, k_buf);
    p.mov(eax, 0x12345678);
    p.movd(xmm5, eax);
    p.db(0x0f);
    p.db(0xae);
    p.db(0x03); // fxsave [rbx]
    p.pxor(xmm5, xmm5);
    p.db(0x0f);
    p.db(0xae);
    p.db(0x0b); // fxrstor [rbx]
    p.movd(ecx, xmm5);
    p.hlt();
    CHECK(f.run(p) == -1);
    CHECK(f.s.regs[RCX] == 0x12345678);
    // The saved image shows the guest's MXCSR (masks as the guest set them).
    CHECK((f.bus.read64(k_buf + 24) & 0xffffffff) == 0x1f80);
}

TEST_CASE("xsave/xrstor/xgetbv for the x87 and SSE components")
{
    Fixture f;
    f.s.cr4 |= CR4_OSXSAVE;
    f.s.xcr0 = 3;
    Prog p;
    using namespace Xbyak::util;
    p.mov(rbx, k_buf);
    p.xor_(ecx, ecx);
    p.xgetbv();
    p.mov(r8, rax);             // 3
    p.mov(eax, 0x55667788);
    p.movd(xmm7, eax);
    p.mov(eax, 3);
    p.xor_(edx, edx);
    p.db(0x0f);
    p.db(0xae);
    p.db(0x23);
    p.pxor(xmm7, xmm7);
    p.mov(eax, 3);
    p.db(0x0f);
    p.db(0xae);
    p.db(0x2b);
    p.movd(r9d, xmm7);
    p.mov(rax, 0x10);           // a reserved XCR0 bit: #GP
    p.xor_(edx, edx);
    p.xor_(ecx, ecx);
    p.db(0x0f);
    p.db(0x01);
    p.db(0xd1);
    p.hlt();
    CHECK(f.run(p) == 13);
    CHECK(f.s.regs[R8] == 3);
    CHECK(f.s.regs[R9] == 0x55667788);
    CHECK(f.bus.read64(k_buf + 512) == 3); // XSTATE_BV
}

TEST_CASE("debug registers and NMI blocking")
{
    Fixture f;
    Prog p;
    using namespace Xbyak::util;
    p.mov(rax, 0x12345678);
    p.db(0x0f);
    p.db(0x23);
    p.db(0xc0);
    p.db(0x0f);
    p.db(0x21);
    p.db(0xc1);
    p.db(0x0f);
    p.db(0x21);
    p.db(0xfa);
    p.hlt();
    CHECK(f.run(p) == -1);
    CHECK(f.s.regs[RCX] == 0x12345678);
    CHECK(f.s.regs[RDX] == 0x400);
    // An NMI is taken once; a second waits for the handler's IRET.
    f.cpu.raise_nmi();
    f.s.halted = false;
    REQUIRE(f.cpu.run(1000) == VcpuExit::Halted);
    CHECK(halted_in_stub(f.cpu) == 2);
    CHECK(f.s.nmi_blocked);
    f.cpu.raise_nmi();
    f.s.halted = false;
    f.cpu.run(100); // the stub loops on hlt; no second NMI frame appears
    CHECK(f.s.nmi_blocked);
}

TEST_CASE("SSE4.2 crc32 and popcnt on general registers")
{
    Fixture f;
    Prog p;
    using namespace Xbyak::util;
    p.mov(eax, 0xffffffff);
    p.mov(ecx, 0x12345678);
    p.crc32(eax, ecx);
    p.popcnt(edx, ecx);
    p.hlt();
    CHECK(f.run(p) == -1);
    uint32_t crc = 0xffffffff;
    uint32_t v = 0x12345678;
    // CRC-32C (Castagnoli), bit-reflected, as the instruction computes it.
    for (int i = 0; i < 32; i++) {
        bool bit = (crc ^ (v >> i)) & 1;
        crc = (crc >> 1) ^ (bit ? 0x82f63b78 : 0);
    }
    CHECK(uint32_t(f.s.regs[RAX]) == crc);
    CHECK(f.s.regs[RDX] == 13);
}
