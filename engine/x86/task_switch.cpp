// engine/x86/task_switch.cpp — hardware task switches between 32-bit TSSs:
// jmp/call to a TSS or task gate, an interrupt through a task gate, and iret
// with NT set (the back link). Not available in long mode.
#include "engine/x86/task_switch.h"

#include "common/log.h"
#include "engine/x86/flags.h"
#include "engine/x86/interrupts.h"

#include <optional>

namespace emu::x86 {

namespace {

constexpr uint64_t D_P = 1ull << 47;

// 32-bit TSS layout.
enum : unsigned {
    T_LINK = 0x00, T_CR3 = 0x1c, T_EIP = 0x20, T_EFLAGS = 0x24, T_EAX = 0x28, T_ES = 0x48, T_LDT = 0x60,
};

bool ts_fault(CpuEnv& env, uint16_t selector)
{
    env.raise(10, true, selector & ~3u);
    return false;
}

uint64_t descriptor_address(const CpuState& s, uint16_t selector) { return s.gdtr.base + (selector & ~7u); }

} // namespace

bool task_switch(CpuEnv& env, uint16_t selector, TaskReason reason, uint64_t next_eip, bool has_error,
                 uint32_t error)
{
    CpuState& s = env.s;
    // The descriptors and both TSSs are system accesses; the error code below
    // goes to the new task's stack with its own rights.
    std::optional<Mmu::SupervisorScope> system;
    system.emplace(env.mmu);
    if (s.hflags & HF_LMA) {
        env.raise(13, true, selector & ~3u);
        return false;
    }
    if (selector & 4)
        return ts_fault(env, selector); // a TSS lives in the GDT
    uint64_t d = 0;
    if (!read_descriptor(env, selector, d)) {
        env.raise(13, true, selector & ~3u);
        return false;
    }
    unsigned type = (d >> 40) & 0xf;
    bool busy = type == 0xb;
    if ((d & (1ull << 44)) || (type != 0x9 && type != 0xb)) {
        if (type == 0x1 || type == 0x3)
            log_warn("x86: task switch to a 16-bit TSS is not implemented: #GP");
        env.raise(13, true, selector & ~3u);
        return false;
    }
    if ((reason == TaskReason::Iret) != busy) {
        env.raise(13, true, selector & ~3u);
        return false;
    }
    if (!(d & D_P)) {
        env.raise(11, true, selector & ~3u);
        return false;
    }
    Segment new_tr;
    load_segment_cache(new_tr, selector, d);
    if (new_tr.limit < 0x67)
        return ts_fault(env, selector);

    // Save the outgoing task.
    uint64_t old_base = s.tr.base;
    uint64_t flags = read_eflags(s);
    if (reason == TaskReason::Iret)
        flags &= ~NT;
    bool ok = env.mmu.store(old_base + T_EIP, 4, next_eip) && env.mmu.store(old_base + T_EFLAGS, 4, flags);
    for (unsigned r = 0; ok && r < 8; r++)
        ok = env.mmu.store(old_base + T_EAX + 4 * r, 4, s.regs[r]);
    for (unsigned seg = 0; ok && seg < 6; seg++)
        ok = env.mmu.store(old_base + T_ES + 4 * seg, 2, s.seg[seg].selector);
    if (!ok)
        return false;

    // Read the incoming one before anything changes.
    uint64_t v[18] = {};
    const unsigned offsets[] = {T_CR3, T_EIP, T_EFLAGS, T_EAX,      T_EAX + 4,  T_EAX + 8, T_EAX + 12,
                                T_EAX + 16, T_EAX + 20, T_EAX + 24, T_EAX + 28, T_ES,      T_ES + 4,
                                T_ES + 8,   T_ES + 12,  T_ES + 16,  T_ES + 20,  T_LDT};
    for (unsigned i = 0; i < 18; i++)
        if (!env.mmu.load(new_tr.base + offsets[i], i >= 11 ? 2 : 4, v[i]))
            return false;

    // Busy bits and the back link.
    uint16_t old_sel = s.tr.selector;
    if (reason == TaskReason::Jmp || reason == TaskReason::Iret) {
        uint64_t od = 0;
        if (read_descriptor(env, old_sel, od))
            env.mmu.store(descriptor_address(s, old_sel) + 5, 1, ((od >> 40) & 0xff) & ~2u);
    }
    if (reason != TaskReason::Iret)
        env.mmu.store(descriptor_address(s, selector) + 5, 1, ((d >> 40) & 0xff) | 2);
    uint64_t new_flags = v[2];
    if (reason == TaskReason::Call || reason == TaskReason::Int) {
        env.mmu.store(new_tr.base + T_LINK, 2, old_sel);
        new_flags |= NT;
    }

    // Switch.
    s.tr = new_tr;
    s.tr.attr |= 2;
    s.cr0 |= CR0_TS;
    if (s.cr0 & CR0_PG) {
        s.cr3 = uint32_t(v[0]);
        env.mmu.flush();
    }
    s.rip = uint32_t(v[1]);
    write_eflags(s, new_flags, ~0ull);
    s.eflags = (s.eflags & ~uint64_t(VM)) | (new_flags & VM);
    for (unsigned r = 0; r < 8; r++)
        s.regs[r] = uint32_t(v[3 + r]);
    // LDT, then segments: faults from here on belong to the new task.
    uint16_t ldt = uint16_t(v[17]);
    if ((ldt & ~3u) == 0) {
        s.ldtr = Segment{0, 0, 0, 0};
    } else {
        uint64_t ld = 0;
        if ((ldt & 4) || !read_descriptor(env, ldt, ld) || ((ld >> 40) & 0x1f) != 0x2)
            return ts_fault(env, ldt);
        load_segment_cache(s.ldtr, ldt, ld);
    }
    bool v86 = new_flags & VM;
    for (unsigned seg = 0; seg < 6; seg++) {
        uint16_t sel = uint16_t(v[11 + seg]);
        Segment& sg = s.seg[seg];
        if (v86) {
            sg = Segment{sel, uint64_t(sel) << 4, 0xffff, 0xf3};
            continue;
        }
        if ((sel & ~3u) == 0) {
            if (seg == CS || seg == SS)
                return ts_fault(env, sel);
            sg = Segment{sel, 0, 0, 0};
            continue;
        }
        uint64_t sd = 0;
        if (!read_descriptor(env, sel, sd))
            return ts_fault(env, sel);
        if (!(sd & D_P)) {
            env.raise(seg == SS ? 12 : 11, true, sel & ~3u);
            return false;
        }
        load_segment_cache(sg, sel, sd);
    }
    update_hflags(s);
    env.mmu.flush();
    env.mode_changed = true;
    system.reset();
    if (has_error) {
        // An exception's error code goes on the new task's stack.
        uint64_t mask = (s.seg[SS].attr & (1u << 14)) ? 0xffffffffull : 0xffffull;
        uint64_t sp = (s.regs[RSP] - 4) & mask;
        if (!env.mmu.store((s.seg[SS].base + sp) & 0xffffffff, 4, error))
            return false;
        s.regs[RSP] = (s.regs[RSP] & ~mask) | sp;
    }
    return true;
}

} // namespace emu::x86
