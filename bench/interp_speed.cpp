// bench/interp_speed — guest instructions per second of the IR interpreter
// on a CPU-bound integer loop and a memory-heavy loop, next to the same
// machine code run natively (the physical limit). Medians of 5 runs.
#include "tests/unit/x86_test_machine.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <sys/mman.h>
#include <xbyak/xbyak.h>

using namespace emu;
using namespace emu::x86;

namespace {

constexpr uint64_t k_array = 0x10000000; // same address natively and in the guest
constexpr uint64_t k_array_bytes = 1 << 20;

struct Program {
    const char* name;
    std::vector<uint8_t> code; // ends in ret (native) / hlt is appended for the guest
    uint64_t instructions;     // retired per run
};

// rax = a hash over 'n' rounds of integer work; 7 instructions per round.
Program integer_loop(uint64_t n)
{
    Xbyak::CodeGenerator g(4096);
    using namespace Xbyak::util;
    Xbyak::Label loop;
    g.mov(rcx, n);
    g.mov(rax, 0x9e3779b97f4a7c15ull);
    g.xor_(edx, edx);
    g.L(loop);
    g.add(rdx, rax);
    g.xor_(rax, rdx);
    g.rol(rax, 13);
    g.imul(rax, rax, 5);
    g.lea(rdx, ptr[rdx + rcx * 2 + 1]);
    g.dec(rcx);
    g.jnz(loop);
    g.ret();
    return {"integer loop", std::vector<uint8_t>(g.getCode(), g.getCode() + g.getSize()), 3 + 7 * n + 1};
}

// Sums and rewrites an array of 64-bit words: loads and stores every round.
Program memory_loop(uint64_t passes)
{
    Xbyak::CodeGenerator g(4096);
    using namespace Xbyak::util;
    Xbyak::Label pass, loop;
    uint64_t words = k_array_bytes / 8;
    g.mov(r8, passes);
    g.xor_(eax, eax);
    g.L(pass);
    g.mov(rsi, k_array);
    g.mov(rcx, words);
    g.L(loop);
    g.add(rax, qword[rsi]);
    g.mov(qword[rsi], rax);
    g.add(rsi, 8);
    g.dec(rcx);
    g.jnz(loop);
    g.dec(r8);
    g.jnz(pass);
    g.ret();
    return {"memory loop", std::vector<uint8_t>(g.getCode(), g.getCode() + g.getSize()),
            2 + passes * (2 + 5 * words + 2) + 1};
}

double native_seconds(const Program& p)
{
    void* mem = mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    memcpy(mem, p.code.data(), p.code.size());
    mprotect(mem, 4096, PROT_READ | PROT_EXEC);
    auto fn = reinterpret_cast<uint64_t (*)()>(mem);
    auto t0 = std::chrono::steady_clock::now();
    volatile uint64_t r = fn();
    (void)r;
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    munmap(mem, 4096);
    return s;
}

double engine_seconds(const Program& p, uint64_t& retired)
{
    test::TestBus bus;
    Vcpu cpu(bus, *find_cpu_model("max"));
    test::enter_long_mode(cpu, bus);
    std::vector<uint8_t> code = p.code;
    if (!code.empty())
        code.back() = 0xf4; // ret -> hlt
    bus.write(test::k_code, code.data(), code.size());
    // Touch the array pages first: page allocation is not what we measure.
    for (uint64_t a = k_array; a < k_array + k_array_bytes; a += 4096)
        bus.write64(a, 0);
    cpu.state().rip = test::k_code;
    uint64_t before = cpu.env().instructions;
    auto t0 = std::chrono::steady_clock::now();
    VcpuExit exit = cpu.run();
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    retired = cpu.env().instructions - before;
    if (exit != VcpuExit::Halted || test::halted_in_stub(cpu) >= 0)
        fprintf(stderr, "interp_speed: %s did not finish cleanly\n", p.name);
    return s;
}

double median(std::vector<double> v)
{
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

} // namespace

int main()
{
    // The native array lives where the guest's does.
    mmap(reinterpret_cast<void*>(k_array), k_array_bytes, PROT_READ | PROT_WRITE,
         MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE | MAP_POPULATE, -1, 0);
    printf("%-14s %14s %14s %10s\n", "program", "engine MIPS", "native MIPS", "native/engine");
    for (const Program& p : {integer_loop(20'000'000), memory_loop(40)}) {
        std::vector<double> eng, nat;
        uint64_t retired = 0;
        for (int i = 0; i < 5; i++) {
            eng.push_back(engine_seconds(p, retired));
            nat.push_back(native_seconds(p));
        }
        double em = p.instructions / median(eng) / 1e6, nm = p.instructions / median(nat) / 1e6;
        printf("%-14s %14.1f %14.1f %10.1fx   (%llu guest instructions, engine counted %llu)\n", p.name, em, nm,
               nm / em, (unsigned long long)p.instructions, (unsigned long long)retired);
    }
    printf("target: at least 100 million guest instructions per second in the interpreter\n");
    return 0;
}
