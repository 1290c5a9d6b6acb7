// engine/x86/helpers_system.cpp — system helpers: CPUID, TSC, port I/O,
// the interrupt flag, MSRs, control registers, TLB and descriptor tables.
#include "common/log.h"
#include "engine/x86/env.h"
#include "engine/x86/flags.h"
#include "engine/x86/msr.h"

#include <x86intrin.h>

namespace emu::x86 {

namespace {

bool require_cpl0(CpuEnv& env)
{
    if (env.s.cpl() != 0) {
        env.raise(13, true, 0);
        return false;
    }
    return true;
}

// May the current privilege level touch these ports? (IOPL, then the TSS bitmap.)
bool io_allowed(CpuEnv& env, uint16_t port, unsigned bytes)
{
    CpuState& s = env.s;
    if (!(s.hflags & HF_PE))
        return true;
    unsigned iopl = (s.eflags & IOPL) >> 12;
    if (!(s.eflags & VM) && s.cpl() <= iopl)
        return true;
    // The I/O permission bitmap of a 32/64-bit TSS (type 9/11).
    unsigned type = s.tr.attr & 0xf;
    if ((type != 9 && type != 11) || s.tr.limit < 0x67)
        return false;
    uint64_t base16 = 0;
    Mmu::SupervisorScope system(env.mmu);
    if (!env.mmu.load(s.tr.base + 0x66, 2, base16))
        return false;
    uint64_t offset = base16 + port / 8;
    if (offset + 1 > s.tr.limit)
        return false;
    uint64_t bits = 0;
    if (!env.mmu.load(s.tr.base + offset, 2, bits))
        return false;
    uint64_t want = ((1u << bytes) - 1) << (port & 7);
    return (bits & want) == 0;
}

} // namespace

namespace {

bool flat(const Segment& sg)
{
    // Base 0, 4 GiB, present, not expand-down.
    bool expand_down = (sg.attr & 0x18) == 0x10 && (sg.attr & 4);
    return sg.base == 0 && sg.limit == 0xffffffff && (sg.attr & 0x80) && !expand_down;
}

} // namespace

bool io_permitted(CpuEnv& env, uint16_t port, unsigned bytes) { return io_allowed(env, port, bytes); }

bool segment_access_ok(CpuState& s, unsigned seg, uint64_t offset, unsigned bytes, bool write)
{
    const Segment& sg = s.seg[seg];
    auto fail = [&] {
        s.pending_vector = seg == SS ? 12 : 13;
        s.pending_error = 0;
        s.pending_has_error = true;
        return false;
    };
    uint64_t last = offset + bytes - 1;
    bool pm = (s.hflags & HF_PE) && !(s.hflags & HF_VM);
    if (pm) {
        if (!(sg.attr & 0x80))
            return fail(); // null or not present
        bool code = sg.attr & 8;
        if (code ? (write || !(sg.attr & 2)) : (write && !(sg.attr & 2)))
            return fail(); // execute-only code, or a read-only segment written
        if (!code && (sg.attr & 4)) {
            // Expand-down: valid offsets lie above the limit.
            uint64_t top = (sg.attr & (1u << 14)) ? 0xffffffffull : 0xffffull;
            if (offset <= sg.limit || last > top)
                return fail();
            return true;
        }
    }
    if (last > sg.limit)
        return fail();
    return true;
}

void update_hflags(CpuState& s)
{
    uint32_t h = 0;
    if (s.efer & EFER_LMA)
        h |= HF_LMA;
    if (s.cr0 & CR0_PE) {
        h |= HF_PE;
        if (s.eflags & VM) {
            h |= HF_VM | 3 | HF_SEGCHECK; // 64 KiB segments
        } else {
            h |= s.seg[CS].selector & 3;
            if ((h & HF_LMA) && (s.seg[CS].attr & (1u << 13)))
                h |= HF_CS64;
            else if (s.seg[CS].attr & (1u << 14))
                h |= HF_CS32;
            if (s.seg[SS].attr & (1u << 14))
                h |= HF_SS32;
            if (!(h & HF_CS64) && (s.seg[DS].base | s.seg[ES].base | s.seg[SS].base) != 0)
                h |= HF_ADDSEG;
            if (!(h & HF_CS64) && !(flat(s.seg[CS]) && flat(s.seg[DS]) && flat(s.seg[ES]) && flat(s.seg[SS])))
                h |= HF_SEGCHECK;
        }
    } else {
        h |= HF_SEGCHECK; // real mode: 64 KiB limits (or the cached ones of unreal mode)
    }
    s.hflags = h;
}

uint64_t helper_Cpuid(CpuEnv& env, uint64_t, uint64_t, uint64_t)
{
    CpuState& s = env.s;
    CpuidResult r = env.model.query(uint32_t(s.regs[RAX]), uint32_t(s.regs[RCX]), env.apic_id, env.cpu_count);
    if (uint32_t(s.regs[RAX]) == 1 && (s.cr4 & CR4_OSXSAVE))
        r.ecx |= 1u << 27; // OSXSAVE mirrors CR4
    s.regs[RAX] = r.eax;
    s.regs[RBX] = r.ebx;
    s.regs[RCX] = r.ecx;
    s.regs[RDX] = r.edx;
    return 0;
}

uint64_t helper_Rdtsc(CpuEnv& env, uint64_t, uint64_t, uint64_t)
{
    CpuState& s = env.s;
    if ((s.cr4 & CR4_TSD) && s.cpl() != 0) {
        env.raise(13, true, 0);
        return 0;
    }
    uint64_t tsc = __rdtsc() + s.tsc_offset;
    s.regs[RAX] = uint32_t(tsc);
    s.regs[RDX] = tsc >> 32;
    return 0;
}

uint64_t helper_Hlt(CpuEnv& env, uint64_t, uint64_t, uint64_t)
{
    if (!require_cpl0(env))
        return 0;
    env.s.halted = true;
    env.mode_changed = true;
    return 0;
}

uint64_t helper_In(CpuEnv& env, uint64_t port, uint64_t bytes, uint64_t)
{
    if (!io_allowed(env, uint16_t(port), unsigned(bytes))) {
        env.raise(13, true, 0);
        return 0;
    }
    return env.bus.port_read(uint16_t(port), unsigned(bytes));
}

uint64_t helper_Out(CpuEnv& env, uint64_t port, uint64_t bytes, uint64_t value)
{
    if (!io_allowed(env, uint16_t(port), unsigned(bytes))) {
        env.raise(13, true, 0);
        return 0;
    }
    env.bus.port_write(uint16_t(port), value, unsigned(bytes));
    env.mode_changed = true; // a device may have raised an interrupt or stopped the VM
    return 0;
}

uint64_t helper_Cli(CpuEnv& env, uint64_t, uint64_t, uint64_t)
{
    CpuState& s = env.s;
    unsigned iopl = (s.eflags & IOPL) >> 12;
    if ((s.hflags & HF_PE) && s.cpl() > iopl) {
        env.raise(13, true, 0);
        return 0;
    }
    s.eflags &= ~IF;
    return 0;
}

uint64_t helper_Sti(CpuEnv& env, uint64_t, uint64_t, uint64_t)
{
    CpuState& s = env.s;
    unsigned iopl = (s.eflags & IOPL) >> 12;
    if ((s.hflags & HF_PE) && s.cpl() > iopl) {
        env.raise(13, true, 0);
        return 0;
    }
    if (!(s.eflags & IF))
        s.interrupt_shadow = true; // interrupts wait for one more instruction
    s.eflags |= IF;
    env.mode_changed = true;
    return 0;
}

uint64_t helper_Rdmsr(CpuEnv& env, uint64_t, uint64_t, uint64_t)
{
    if (!require_cpl0(env))
        return 0;
    CpuState& s = env.s;
    uint64_t value;
    uint32_t index = uint32_t(s.regs[RCX]);
    if (!env.bus.msr_read(index, value) && !read_msr(s, index, value)) {
        env.raise(13, true, 0);
        return 0;
    }
    s.regs[RAX] = uint32_t(value);
    s.regs[RDX] = value >> 32;
    return 0;
}

uint64_t helper_Wrmsr(CpuEnv& env, uint64_t, uint64_t, uint64_t)
{
    if (!require_cpl0(env))
        return 0;
    CpuState& s = env.s;
    uint64_t value = (s.regs[RDX] << 32) | uint32_t(s.regs[RAX]);
    uint32_t index = uint32_t(s.regs[RCX]);
    bool fault = false;
    bool handled = env.bus.msr_write(index, value, fault);
    if (fault || (!handled && !write_msr(s, index, value))) {
        env.raise(13, true, 0);
        return 0;
    }
    update_hflags(s);
    env.mmu.flush();
    env.mode_changed = true;
    return 0;
}

uint64_t helper_MovToCr(CpuEnv& env, uint64_t cr, uint64_t value, uint64_t)
{
    if (!require_cpl0(env))
        return 0;
    CpuState& s = env.s;
    if (!(s.hflags & HF_CS64))
        value = uint32_t(value);
    switch (cr) {
    case 0: {
        if ((value >> 32) || ((value & CR0_PG) && !(value & CR0_PE)) || ((value & CR0_NW) && !(value & CR0_CD))) {
            env.raise(13, true, 0);
            return 0;
        }
        bool paging_on = !(s.cr0 & CR0_PG) && (value & CR0_PG);
        if (paging_on && (s.efer & EFER_LME)) {
            if (!(s.cr4 & CR4_PAE)) {
                env.raise(13, true, 0);
                return 0;
            }
            s.efer |= EFER_LMA;
        }
        if (!(value & CR0_PG))
            s.efer &= ~EFER_LMA;
        s.cr0 = value | CR0_ET;
        break;
    }
    case 2:
        s.cr2 = value;
        return 0;
    case 3:
        s.cr3 = value;
        break;
    case 4: {
        uint64_t supported = CR4_VME | CR4_PVI | CR4_TSD | CR4_DE | CR4_PSE | CR4_PAE | CR4_MCE | CR4_PGE | CR4_PCE |
                             CR4_OSFXSR | CR4_OSXMMEXCPT;
        if (env.model.features_ecx & (1u << 26))
            supported |= CR4_OSXSAVE;
        if (value & ~supported) {
            env.raise(13, true, 0);
            return 0;
        }
        if ((s.efer & EFER_LMA) && !(value & CR4_PAE)) {
            env.raise(13, true, 0);
            return 0;
        }
        s.cr4 = value;
        break;
    }
    case 8:
        if (value > 15) {
            env.raise(13, true, 0);
            return 0;
        }
        s.cr8 = value;
        return 0;
    default:
        env.raise(6);
        return 0;
    }
    update_hflags(s);
    env.mmu.flush();
    env.mode_changed = true;
    return 0;
}

uint64_t helper_MovFromCr(CpuEnv& env, uint64_t cr, uint64_t, uint64_t)
{
    if (!require_cpl0(env))
        return 0;
    CpuState& s = env.s;
    switch (cr) {
    case 0:
        return s.cr0;
    case 2:
        return s.cr2;
    case 3:
        return s.cr3;
    case 4:
        return s.cr4;
    case 8:
        return s.cr8;
    default:
        env.raise(6);
        return 0;
    }
}

uint64_t helper_Invlpg(CpuEnv& env, uint64_t address, uint64_t, uint64_t)
{
    if (!require_cpl0(env))
        return 0;
    env.mmu.flush_page(address);
    return 0;
}

uint64_t helper_Lgdt(CpuEnv& env, uint64_t address, uint64_t idt, uint64_t opsize)
{
    if (!require_cpl0(env))
        return 0;
    CpuState& s = env.s;
    uint64_t limit = 0, base = 0;
    unsigned base_bytes = (s.hflags & HF_CS64) ? 8 : 4;
    if (!env.mmu.load(address, 2, limit) || !env.mmu.load(address + 2, base_bytes, base))
        return 0;
    if (opsize == 2)
        base &= 0xffffff;
    DescriptorTable& t = idt ? s.idtr : s.gdtr;
    t.base = base;
    t.limit = uint32_t(limit);
    env.mode_changed = true;
    return 0;
}

uint64_t helper_Sgdt(CpuEnv& env, uint64_t address, uint64_t idt, uint64_t)
{
    CpuState& s = env.s;
    const DescriptorTable& t = idt ? s.idtr : s.gdtr;
    unsigned base_bytes = (s.hflags & HF_CS64) ? 8 : 4;
    if (!env.mmu.store(address, 2, t.limit))
        return 0;
    env.mmu.store(address + 2, base_bytes, t.base);
    return 0;
}

} // namespace emu::x86
