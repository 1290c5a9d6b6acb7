// tests/unit/x86_test_machine.h — a tiny machine for CPU tests: sparse RAM,
// a debug console on port 0xe9 and an exit port 0xf4, and helpers that put a
// vCPU into 64-bit mode with identity-mapped memory.
#pragma once

#include "engine/x86/interrupts.h"
#include "engine/x86/vcpu.h"

#include <cstring>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

namespace emu::test {

class TestBus final : public x86::PhysBus {
public:
    uint8_t* ram_page(uint64_t gpa, bool& writable) override
    {
        if (gpa >= ram_size)
            return nullptr;
        writable = true;
        auto& page = m_pages[gpa >> 12];
        if (!page) {
            page = std::make_unique<uint8_t[]>(4096);
            memset(page.get(), 0, 4096);
        }
        return page.get();
    }
    uint64_t mmio_read(uint64_t, unsigned) override { return ~0ull; }
    void mmio_write(uint64_t, uint64_t, unsigned) override {}
    uint64_t port_read(uint16_t port, unsigned size) override { return port == 0xe9 ? 0xe9 : ~0ull; }
    void port_write(uint16_t port, uint64_t value, unsigned size) override
    {
        if (port == 0xe9)
            console.push_back(char(value));
        else if (port == 0xf4)
            exit_code = int(value);
        else
            port_writes.push_back({port, value, size});
    }

    void write(uint64_t gpa, const void* data, size_t len)
    {
        const uint8_t* p = static_cast<const uint8_t*>(data);
        for (size_t i = 0; i < len; i++) {
            bool w;
            ram_page(gpa + i, w)[(gpa + i) & 0xfff] = p[i];
        }
    }
    void write64(uint64_t gpa, uint64_t v) { write(gpa, &v, 8); }
    uint64_t read64(uint64_t gpa)
    {
        uint64_t v = 0;
        for (int i = 0; i < 8; i++) {
            bool w;
            v |= uint64_t(ram_page(gpa + i, w)[(gpa + i) & 0xfff]) << (8 * i);
        }
        return v;
    }

    uint64_t ram_size = 1ull << 30;
    std::string console;
    int exit_code = -1;
    struct PortWrite {
        uint16_t port;
        uint64_t value;
        unsigned size;
        bool operator==(const PortWrite&) const = default;
    };
    std::vector<PortWrite> port_writes;

private:
    std::unordered_map<uint64_t, std::unique_ptr<uint8_t[]>> m_pages;
};

// Memory map used by the helpers below.
inline constexpr uint64_t k_pml4 = 0x1000, k_pdpt = 0x2000, k_pd = 0x3000; // 1 GiB of 2 MiB pages
inline constexpr uint64_t k_gdt = 0x8000, k_idt = 0x9000, k_tss = 0xa000;
inline constexpr uint64_t k_stubs = 0xb000;  // one 16-byte 'hlt' stub per vector
inline constexpr uint64_t k_stack = 0x7f000; // kernel stack top
inline constexpr uint64_t k_code = 0x100000;

// Puts the vCPU in 64-bit mode at CPL 0 with paging identity-mapping the
// first GiB, a GDT (0x08 code64, 0x10 data, 0x1b user code64, 0x23 user
// data, 0x28 TSS) and an IDT whose vector N handler halts at k_stubs + 16*N.
inline void enter_long_mode(x86::Vcpu& cpu, TestBus& bus)
{
    using namespace x86;
    bus.write64(k_pml4, k_pdpt | 7);
    bus.write64(k_pdpt, k_pd | 7);
    for (uint64_t i = 0; i < 512; i++)
        bus.write64(k_pd + i * 8, (i << 21) | 0x87); // P RW US PS
    uint64_t gdt[7] = {0,
                       0x00209a0000000000ull, // 0x08 kernel code, L
                       0x00cf92000000ffffull, // 0x10 kernel data
                       0x0020fa0000000000ull, // 0x18 user code, L, DPL 3
                       0x00cff2000000ffffull, // 0x20 user data, DPL 3
                       0, 0};
    // 0x28: 64-bit TSS at k_tss, limit 0x67.
    gdt[5] = 0x67 | ((k_tss & 0xffffff) << 16) | (0x89ull << 40) | ((k_tss >> 24 & 0xff) << 56);
    gdt[6] = k_tss >> 32;
    bus.write(k_gdt, gdt, sizeof gdt);
    bus.write64(k_tss + 4, k_stack); // RSP0
    for (int v = 0; v < 256; v++) {
        uint64_t handler = k_stubs + 16 * v;
        uint64_t lo = (handler & 0xffff) | (0x08ull << 16) | (0x8eull << 40) | ((handler >> 16 & 0xffff) << 48);
        bus.write64(k_idt + 16 * v, lo);
        bus.write64(k_idt + 16 * v + 8, handler >> 32);
        uint8_t stub[16] = {0xf4, 0xeb, 0xfd}; // hlt; jmp back to the hlt
        bus.write(handler, stub, sizeof stub);
    }
    CpuState& s = cpu.state();
    s.cr0 = CR0_PE | CR0_PG | CR0_ET | CR0_WP | CR0_NE;
    s.cr4 = CR4_PAE | CR4_OSFXSR;
    s.cr3 = k_pml4;
    s.efer = EFER_LME | EFER_LMA | EFER_NXE | EFER_SCE;
    s.gdtr = {k_gdt, sizeof gdt - 1};
    s.idtr = {k_idt, 256 * 16 - 1};
    load_segment_cache(s.seg[CS], 0x08, gdt[1]);
    for (int seg : {ES, SS, DS, FS, GS})
        load_segment_cache(s.seg[seg], 0x10, gdt[2]);
    load_segment_cache(s.tr, 0x28, gdt[5]);
    s.regs[RSP] = k_stack;
    s.eflags = 2;
    update_hflags(s);
    cpu.env().mmu.flush();
}

// Which vector's stub a halted vCPU sits in, or -1 if it halted elsewhere.
inline int halted_in_stub(x86::Vcpu& cpu)
{
    uint64_t rip = cpu.state().rip;
    if (rip > k_stubs && rip <= k_stubs + 16 * 256)
        return int((rip - 1 - k_stubs) / 16);
    return -1;
}

} // namespace emu::test
