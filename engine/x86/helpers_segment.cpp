// engine/x86/helpers_segment.cpp — segment loads, far transfers, IRET,
// fast system calls, task and LDT registers.
#include "common/log.h"
#include "engine/x86/env.h"
#include "engine/x86/flags.h"
#include "engine/x86/interrupts.h"
#include "engine/x86/task_switch.h"

#include <optional>

namespace emu::x86 {

namespace {

constexpr uint64_t D_P = 1ull << 47, D_S = 1ull << 44, D_L = 1ull << 53, D_DB = 1ull << 54;

unsigned desc_type(uint64_t d) { return (d >> 40) & 0xf; }
unsigned desc_dpl(uint64_t d) { return (d >> 45) & 3; }
bool is_code(uint64_t d) { return (d & D_S) && (d & (1ull << 43)); }
bool is_data(uint64_t d) { return (d & D_S) && !(d & (1ull << 43)); }

bool gp(CpuEnv& env, uint32_t error)
{
    env.raise(13, true, error);
    return false;
}

// Sets the accessed bit of a descriptor in its table, as the CPU does.
void mark_accessed(CpuEnv& env, uint16_t selector, uint64_t d)
{
    if (d & (1ull << 40))
        return;
    CpuState& s = env.s;
    uint64_t base = (selector & 4) ? s.ldtr.base : s.gdtr.base;
    Mmu::SupervisorScope system(env.mmu);
    env.mmu.store(base + (selector & ~7u) + 5, 1, ((d >> 40) & 0xff) | 1);
}

void real_mode_segment(Segment& seg, uint16_t selector)
{
    seg.selector = selector;
    seg.base = uint64_t(selector) << 4;
}

// Stack access at the current SS, for pops of far-return frames.
bool pop_value(CpuEnv& env, uint64_t& sp, unsigned bytes, uint64_t& value)
{
    CpuState& s = env.s;
    uint64_t mask = (s.hflags & HF_CS64) ? ~0ull : (s.seg[SS].attr & (1u << 14)) ? 0xffffffffull : 0xffffull;
    uint64_t base = (s.hflags & HF_CS64) ? 0 : s.seg[SS].base;
    uint64_t addr = (base + (sp & mask));
    if (!(s.hflags & HF_LMA))
        addr &= 0xffffffffull;
    if (!env.mmu.load(addr, bytes, value))
        return false;
    sp = (sp & ~mask) | ((sp + bytes) & mask);
    return true;
}

void set_sp(CpuState& s, uint64_t sp)
{
    if (s.hflags & HF_CS64)
        s.regs[RSP] = sp;
    else if (s.seg[SS].attr & (1u << 14))
        s.regs[RSP] = uint32_t(sp);
    else
        s.regs[RSP] = (s.regs[RSP] & ~0xffffull) | (sp & 0xffff);
}

// After a return to an outer privilege level, data segments the new level
// may not use become null.
void invalidate_data_segments(CpuState& s)
{
    for (int seg : {ES, DS, FS, GS}) {
        Segment& sg = s.seg[seg];
        unsigned dpl = (sg.attr >> 5) & 3;
        bool conforming_code = (sg.attr & 0x18) == 0x18 && (sg.attr & 4);
        if ((sg.selector & ~3u) != 0 && !conforming_code && dpl < s.cpl()) {
            sg.selector = 0;
            sg.attr = 0;
        }
    }
}

// Loads CS for a far transfer to a code segment (no gate).
bool load_code_segment(CpuEnv& env, uint16_t selector, uint64_t d, unsigned cpl)
{
    CpuState& s = env.s;
    load_segment_cache(s.seg[CS], uint16_t((selector & ~3u) | cpl), d);
    mark_accessed(env, selector, d);
    (void)s;
    return true;
}

bool check_code_target(CpuEnv& env, uint16_t selector, uint64_t& d)
{
    CpuState& s = env.s;
    if ((selector & ~3u) == 0 || !read_descriptor(env, selector, d))
        return gp(env, selector & ~3u);
    if (!is_code(d))
        return gp(env, selector & ~3u);
    bool conforming = desc_type(d) & 4;
    unsigned rpl = selector & 3, dpl = desc_dpl(d);
    if (conforming ? dpl > s.cpl() : (rpl > s.cpl() || dpl != s.cpl()))
        return gp(env, selector & ~3u);
    if (!(d & D_P)) {
        env.raise(11, true, selector & ~3u);
        return false;
    }
    if ((s.hflags & HF_LMA) && (d & D_L) && (d & D_DB))
        return gp(env, selector & ~3u);
    return true;
}

} // namespace

// a = segment register, b = selector. Checks as mov sreg / pop sreg / lds do.
uint64_t helper_LoadSeg(CpuEnv& env, uint64_t seg, uint64_t selector16, uint64_t)
{
    CpuState& s = env.s;
    uint16_t selector = uint16_t(selector16);
    Segment& sg = s.seg[seg];
    if (!(s.hflags & HF_PE) || (s.hflags & HF_VM)) {
        real_mode_segment(sg, selector);
        if (seg == SS)
            s.interrupt_shadow = true;
        update_hflags(s);
        env.mode_changed = true;
        return 0;
    }
    unsigned rpl = selector & 3, cpl = s.cpl();
    if ((selector & ~3u) == 0) {
        // Null: allowed for data segments; for SS only in 64-bit mode below CPL 3.
        if (seg == SS && !((s.hflags & HF_CS64) && cpl != 3 && rpl == cpl))
            return gp(env, 0);
        sg.selector = selector;
        sg.base = 0;
        sg.limit = 0;
        sg.attr = seg == SS ? uint16_t(cpl << 5) : 0;
        update_hflags(s);
        env.mode_changed = true;
        return 0;
    }
    uint64_t d;
    if (!read_descriptor(env, selector, d))
        return gp(env, selector & ~3u);
    unsigned dpl = desc_dpl(d);
    if (seg == SS) {
        if (rpl != cpl || dpl != cpl || !is_data(d) || !(desc_type(d) & 2))
            return gp(env, selector & ~3u);
        if (!(d & D_P)) {
            env.raise(12, true, selector & ~3u);
            return 0;
        }
    } else {
        bool readable_code = is_code(d) && (desc_type(d) & 2);
        if (!is_data(d) && !readable_code)
            return gp(env, selector & ~3u);
        bool conforming = is_code(d) && (desc_type(d) & 4);
        if (!conforming && (rpl > dpl || cpl > dpl))
            return gp(env, selector & ~3u);
        if (!(d & D_P)) {
            env.raise(11, true, selector & ~3u);
            return 0;
        }
    }
    mark_accessed(env, selector, d);
    load_segment_cache(sg, selector, d);
    if (seg == SS)
        s.interrupt_shadow = true; // no interrupt before the next instruction
    update_hflags(s);
    env.mode_changed = true;
    return 0;
}

// A far call or jump through a call gate: 'gate' is its (low) descriptor.
uint64_t call_gate(CpuEnv& env, uint16_t gate_sel, uint64_t gate, bool call, unsigned bytes, uint64_t next_rip,
                   uint64_t ret_cs)
{
    CpuState& s = env.s;
    bool long_mode = s.hflags & HF_LMA;
    unsigned cpl = s.cpl(), rpl = gate_sel & 3;
    if (desc_dpl(gate) < cpl || desc_dpl(gate) < rpl)
        return gp(env, gate_sel & ~3u);
    if (!(gate & D_P)) {
        env.raise(11, true, gate_sel & ~3u);
        return 0;
    }
    uint16_t target = uint16_t(gate >> 16);
    uint64_t offset = (gate & 0xffff) | ((gate >> 32) & 0xffff0000ull);
    bool gate32 = long_mode || desc_type(gate) == 0xc;
    unsigned params = unsigned(gate >> 32) & 0x1f;
    if (long_mode) {
        uint64_t hi = 0;
        Mmu::SupervisorScope system(env.mmu);
        if (!env.mmu.load(((gate_sel & 4) ? s.ldtr.base : s.gdtr.base) + (gate_sel & ~7u) + 8, 8, hi))
            return 0;
        if ((hi >> 40) & 0x1f)
            return gp(env, gate_sel & ~3u); // the upper half's type must be zero
        offset |= (hi & 0xffffffffull) << 32;
        params = 0;
    } else if (!gate32) {
        offset &= 0xffff;
    }
    uint64_t d;
    if ((target & ~3u) == 0 || !read_descriptor(env, target, d) || !is_code(d))
        return gp(env, target & ~3u);
    unsigned dpl = desc_dpl(d);
    bool conforming = desc_type(d) & 4;
    if (dpl > cpl || (!call && !conforming && dpl != cpl))
        return gp(env, target & ~3u);
    if (!(d & D_P)) {
        env.raise(11, true, target & ~3u);
        return 0;
    }
    if (long_mode && (!(d & D_L) || (d & D_DB)))
        return gp(env, target & ~3u);
    unsigned w = long_mode ? 8 : gate32 ? 4 : 2;
    if (!call) {
        load_code_segment(env, target, d, cpl);
        update_hflags(s);
        s.rip = offset;
        env.mode_changed = true;
        return s.rip;
    }
    uint64_t old_ss = s.seg[SS].selector, old_sp = s.regs[RSP];
    if (!conforming && dpl < cpl) {
        // To an inner level: a new stack from the TSS, the old one recorded on it.
        // The TSS and the new stack are accessed with the inner level's rights;
        // the parameters come from the caller's stack (checked as the caller).
        std::optional<Mmu::SupervisorScope> inner;
        inner.emplace(env.mmu, dpl < 3);
        uint64_t new_sp = 0, new_ss = 0, ssd = 0;
        Segment ss_cache;
        if (long_mode) {
            if (4 + 8 * dpl + 7 > s.tr.limit || !env.mmu.load(s.tr.base + 4 + 8 * dpl, 8, new_sp))
                return s.pending_vector >= 0 ? 0 : (env.raise(10, true, s.tr.selector & ~3u), 0);
            ss_cache = Segment{uint16_t(dpl), 0, 0, uint16_t(dpl << 5)};
        } else {
            if (8 + 8 * dpl + 1 > s.tr.limit || !env.mmu.load(s.tr.base + 4 + 8 * dpl, 4, new_sp) ||
                !env.mmu.load(s.tr.base + 8 + 8 * dpl, 2, new_ss))
                return s.pending_vector >= 0 ? 0 : (env.raise(10, true, s.tr.selector & ~3u), 0);
            if ((new_ss & ~3u) == 0 || !read_descriptor(env, uint16_t(new_ss), ssd) || (new_ss & 3) != dpl ||
                desc_dpl(ssd) != dpl || !is_data(ssd))
                return env.raise(10, true, new_ss & ~3u), 0;
            load_segment_cache(ss_cache, uint16_t(new_ss), ssd);
        }
        uint64_t mask = long_mode ? ~0ull : (ss_cache.attr & (1u << 14)) ? 0xffffffffull : 0xffffull;
        uint64_t base = long_mode ? 0 : ss_cache.base;
        uint64_t sp = new_sp & mask;
        if (long_mode)
            sp &= ~0xfull;
        auto push = [&](uint64_t v) {
            sp = (sp - w) & mask;
            uint64_t a = base + sp;
            return env.mmu.store(long_mode ? a : a & 0xffffffff, w, v);
        };
        // Parameters copied from the caller's stack (legacy gates only).
        uint64_t params_v[32];
        uint64_t old_mask = (s.seg[SS].attr & (1u << 14)) ? 0xffffffffull : 0xffffull;
        inner.reset();
        for (unsigned i = 0; i < params; i++)
            if (!env.mmu.load((s.seg[SS].base + ((old_sp + i * w) & old_mask)) & 0xffffffff, w, params_v[i]))
                return 0;
        inner.emplace(env.mmu, dpl < 3);
        if (!push(old_ss) || !push(old_sp))
            return 0;
        for (unsigned i = params; i-- > 0;)
            if (!push(params_v[i]))
                return 0;
        if (!push(ret_cs) || !push(next_rip))
            return 0;
        s.seg[SS] = ss_cache;
        load_code_segment(env, target, d, dpl);
        update_hflags(s);
        s.regs[RSP] = long_mode ? sp : (s.regs[RSP] & ~mask) | sp;
    } else {
        uint64_t mask = long_mode ? ~0ull : (s.seg[SS].attr & (1u << 14)) ? 0xffffffffull : 0xffffull;
        uint64_t base = long_mode ? 0 : s.seg[SS].base;
        uint64_t sp = old_sp;
        auto push = [&](uint64_t v) {
            sp = (sp - w) & mask;
            uint64_t a = base + (sp & mask);
            return env.mmu.store(long_mode ? a : a & 0xffffffff, w, v);
        };
        if (!push(ret_cs) || !push(next_rip))
            return 0;
        load_code_segment(env, target, d, cpl);
        update_hflags(s);
        s.regs[RSP] = long_mode ? sp : (old_sp & ~mask) | (sp & mask);
    }
    s.rip = offset;
    env.mmu.flush();
    env.mode_changed = true;
    return s.rip;
}

// Far jmp/call: a = selector, b = offset, c = operand bytes | call << 8 | next rip << 16.
uint64_t helper_FarJump(CpuEnv& env, uint64_t selector16, uint64_t offset, uint64_t desc)
{
    CpuState& s = env.s;
    uint16_t selector = uint16_t(selector16);
    unsigned bytes = desc & 0xff;
    bool call = desc & 0x100;
    uint64_t next_rip = desc >> 16;
    uint64_t ret_cs = s.seg[CS].selector;
    auto push_return = [&]() {
        // Pushed on the current stack before CS changes.
        uint64_t mask = (s.hflags & HF_CS64) ? ~0ull : (s.seg[SS].attr & (1u << 14)) ? 0xffffffffull : 0xffffull;
        uint64_t base = (s.hflags & HF_CS64) ? 0 : s.seg[SS].base;
        uint64_t sp = s.regs[RSP];
        uint64_t sp1 = (sp - bytes) & mask, sp2 = (sp - 2 * bytes) & mask;
        uint64_t a1 = base + sp1, a2 = base + sp2;
        if (!(s.hflags & HF_LMA)) {
            a1 &= 0xffffffff;
            a2 &= 0xffffffff;
        }
        if (!env.mmu.store(a1, bytes, ret_cs) || !env.mmu.store(a2, bytes, next_rip))
            return false;
        set_sp(s, (sp & ~mask) | sp2);
        return true;
    };
    if (!(s.hflags & HF_PE) || (s.hflags & HF_VM)) {
        if (call && !push_return())
            return 0;
        real_mode_segment(s.seg[CS], selector);
        s.rip = offset & (bytes == 2 ? 0xffff : 0xffffffff);
        update_hflags(s);
        env.mode_changed = true;
        return s.rip;
    }
    uint64_t d;
    if ((selector & ~3u) == 0 || !read_descriptor(env, selector, d))
        return gp(env, selector & ~3u);
    if (!is_code(d)) {
        unsigned type = desc_type(d);
        if (!(d & D_S) && (type == 0xc || (type == 4 && !(s.hflags & HF_LMA))))
            return call_gate(env, selector, d, call, bytes, next_rip, ret_cs);
        if (!(d & D_S) && !(s.hflags & HF_LMA) && (type == 0x9 || type == 0x5)) {
            // A task switch, directly to a TSS or through a task gate.
            unsigned dpl = desc_dpl(d);
            if (dpl < s.cpl() || dpl < (selector & 3u))
                return gp(env, selector & ~3u);
            if (!(d & D_P)) {
                env.raise(11, true, selector & ~3u);
                return 0;
            }
            uint16_t tss = type == 0x5 ? uint16_t(d >> 16) : selector;
            if (!task_switch(env, tss, call ? TaskReason::Call : TaskReason::Jmp, next_rip))
                return 0;
            return s.rip;
        }
        return gp(env, selector & ~3u);
    }
    if (!check_code_target(env, selector, d))
        return 0;
    if (call && !push_return())
        return 0;
    load_code_segment(env, selector, d, s.cpl());
    update_hflags(s);
    s.rip = (s.hflags & HF_CS64) ? offset : (s.hflags & HF_CS32) ? uint32_t(offset) : uint16_t(offset);
    env.mode_changed = true;
    return s.rip;
}

// Far return: a = operand bytes, b = bytes to release after the frame.
uint64_t helper_FarReturn(CpuEnv& env, uint64_t bytes, uint64_t release, uint64_t)
{
    CpuState& s = env.s;
    uint64_t sp = s.regs[RSP], rip = 0, cs = 0;
    if (!pop_value(env, sp, unsigned(bytes), rip) || !pop_value(env, sp, unsigned(bytes), cs))
        return 0;
    uint16_t selector = uint16_t(cs);
    if (!(s.hflags & HF_PE) || (s.hflags & HF_VM)) {
        real_mode_segment(s.seg[CS], selector);
        set_sp(s, sp + release);
        s.rip = rip;
        update_hflags(s);
        env.mode_changed = true;
        return rip;
    }
    uint64_t d;
    if ((selector & ~3u) == 0 || !read_descriptor(env, selector, d) || !is_code(d))
        return gp(env, selector & ~3u);
    unsigned rpl = selector & 3;
    if (rpl < s.cpl())
        return gp(env, selector & ~3u);
    bool conforming = desc_type(d) & 4;
    if (conforming ? desc_dpl(d) > rpl : desc_dpl(d) != rpl)
        return gp(env, selector & ~3u);
    if (!(d & D_P)) {
        env.raise(11, true, selector & ~3u);
        return 0;
    }
    sp += release;
    if (rpl > s.cpl()) {
        // To an outer level: its stack follows on ours.
        uint64_t new_sp = 0, ss = 0;
        if (!pop_value(env, sp, unsigned(bytes), new_sp) || !pop_value(env, sp, unsigned(bytes), ss))
            return 0;
        uint64_t sd;
        if ((ss & ~3u) == 0 || !read_descriptor(env, uint16_t(ss), sd) || (ss & 3) != rpl || desc_dpl(sd) != rpl ||
            !is_data(sd))
            return gp(env, ss & ~3u);
        load_code_segment(env, selector, d, rpl);
        load_segment_cache(s.seg[SS], uint16_t(ss), sd);
        update_hflags(s);
        set_sp(s, new_sp + release);
        invalidate_data_segments(s);
    } else {
        load_code_segment(env, selector, d, rpl);
        update_hflags(s);
        set_sp(s, sp);
    }
    s.rip = rip;
    update_hflags(s);
    env.mmu.flush();
    env.mode_changed = true;
    return rip;
}

// iret / iretd / iretq: a = operand bytes, b = the next instruction.
uint64_t helper_Iret(CpuEnv& env, uint64_t bytes, uint64_t next_rip, uint64_t)
{
    CpuState& s = env.s;
    s.nmi_blocked = false; // IRET ends NMI blocking (even if it then faults)
    unsigned n = unsigned(bytes);
    uint64_t sp = s.regs[RSP], rip = 0, cs = 0, flags = 0;
    if (!(s.hflags & HF_PE)) {
        if (!pop_value(env, sp, n, rip) || !pop_value(env, sp, n, cs) || !pop_value(env, sp, n, flags))
            return 0;
        real_mode_segment(s.seg[CS], uint16_t(cs));
        set_sp(s, sp);
        uint64_t mask = ARITH_FLAGS | TF | IF | DF | IOPL | NT | (n == 4 ? (AC | ID) : 0);
        write_eflags(s, flags, n == 2 ? mask & 0xffff : mask);
        s.rip = rip & (n == 2 ? 0xffff : 0xffffffff);
        update_hflags(s);
        env.mode_changed = true;
        return s.rip;
    }
    if (s.hflags & HF_VM) {
        if (((s.eflags & IOPL) >> 12) != 3)
            return gp(env, 0);
        if (!pop_value(env, sp, n, rip) || !pop_value(env, sp, n, cs) || !pop_value(env, sp, n, flags))
            return 0;
        real_mode_segment(s.seg[CS], uint16_t(cs));
        set_sp(s, sp);
        uint64_t mask = ARITH_FLAGS | TF | IF | DF | NT | (n == 4 ? (AC | ID) : 0);
        write_eflags(s, flags, n == 2 ? mask & 0xffff : mask);
        s.rip = rip & (n == 2 ? 0xffff : 0xffffffff);
        env.mode_changed = true;
        return s.rip;
    }
    if ((s.eflags & NT) && !(s.hflags & HF_LMA)) {
        // Return to the task that called this one (the TSS back link).
        uint64_t link = 0;
        {
            Mmu::SupervisorScope system(env.mmu);
            if (!env.mmu.load(s.tr.base, 2, link))
                return 0;
        }
        if (!task_switch(env, uint16_t(link), TaskReason::Iret, next_rip))
            return 0;
        return s.rip;
    }
    if (!pop_value(env, sp, n, rip) || !pop_value(env, sp, n, cs) || !pop_value(env, sp, n, flags))
        return 0;
    uint16_t selector = uint16_t(cs);
    unsigned cpl = s.cpl();
    if (!(s.hflags & HF_LMA) && (flags & VM) && cpl == 0) {
        // Back to virtual-8086 mode: the rest of the frame is ESP, SS, ES, DS, FS, GS.
        uint64_t v[6];
        for (auto& x : v)
            if (!pop_value(env, sp, 4, x))
                return 0;
        write_eflags(s, flags, 0x3f7fd5 | VM);
        s.eflags |= VM;
        real_mode_segment(s.seg[CS], selector);
        s.seg[CS].attr = 0xf3;
        const int order[4] = {ES, DS, FS, GS};
        for (int i = 0; i < 4; i++) {
            real_mode_segment(s.seg[order[i]], uint16_t(v[2 + i]));
            s.seg[order[i]].attr = 0xf3;
            s.seg[order[i]].limit = 0xffff;
        }
        real_mode_segment(s.seg[SS], uint16_t(v[1]));
        s.seg[SS].attr = 0xf3;
        s.seg[SS].limit = 0xffff;
        s.regs[RSP] = uint32_t(v[0]);
        s.rip = rip & 0xffff;
        update_hflags(s);
        env.mmu.flush();
        env.mode_changed = true;
        return s.rip;
    }
    uint64_t d;
    if ((selector & ~3u) == 0 || !read_descriptor(env, selector, d) || !is_code(d))
        return gp(env, selector & ~3u);
    unsigned rpl = selector & 3;
    if (rpl < cpl)
        return gp(env, selector & ~3u);
    bool conforming = desc_type(d) & 4;
    if (conforming ? desc_dpl(d) > rpl : desc_dpl(d) != rpl)
        return gp(env, selector & ~3u);
    if (!(d & D_P)) {
        env.raise(11, true, selector & ~3u);
        return 0;
    }
    bool to_64 = (s.hflags & HF_LMA) && (d & D_L);
    bool pops_stack = (s.hflags & HF_CS64) || rpl > cpl;
    uint64_t new_sp = 0, ss = 0, sd = 0;
    if (pops_stack) {
        if (!pop_value(env, sp, n, new_sp) || !pop_value(env, sp, n, ss))
            return 0;
        if ((ss & ~3u) == 0) {
            if (!((s.hflags & HF_LMA) && to_64 && rpl != 3))
                return gp(env, 0);
        } else if (!read_descriptor(env, uint16_t(ss), sd) || (ss & 3) != rpl || desc_dpl(sd) != rpl ||
                   !is_data(sd) || !(desc_type(sd) & 2)) {
            return gp(env, ss & ~3u);
        }
    }
    // Which flags may change depends on the level we return from.
    unsigned iopl = (s.eflags & IOPL) >> 12;
    uint64_t mask = ARITH_FLAGS | TF | DF | NT | RF | AC | ID;
    if (cpl == 0)
        mask |= IOPL | VIF | VIP;
    if (cpl <= iopl)
        mask |= IF;
    if (n == 2)
        mask &= 0xffff;
    write_eflags(s, flags, mask);
    load_code_segment(env, selector, d, rpl);
    if (pops_stack) {
        if ((ss & ~3u) == 0) {
            s.seg[SS] = Segment{};
            s.seg[SS].selector = uint16_t(ss);
            s.seg[SS].attr = uint16_t(rpl << 5);
            s.seg[SS].limit = 0;
        } else {
            load_segment_cache(s.seg[SS], uint16_t(ss), sd);
        }
        update_hflags(s);
        s.regs[RSP] = (s.hflags & HF_CS64) ? new_sp : uint32_t(new_sp);
        if (!(s.seg[SS].attr & (1u << 14)) && !(s.hflags & HF_CS64))
            s.regs[RSP] = uint16_t(new_sp) | (s.regs[RSP] & ~0xffffull);
    } else {
        update_hflags(s);
        set_sp(s, sp);
    }
    if (rpl > cpl)
        invalidate_data_segments(s);
    s.rip = (s.hflags & HF_CS64) ? rip : uint32_t(rip);
    update_hflags(s);
    env.mmu.flush();
    env.mode_changed = true;
    return s.rip;
}

// syscall: a = next rip.
uint64_t helper_Syscall(CpuEnv& env, uint64_t next_rip, uint64_t, uint64_t)
{
    CpuState& s = env.s;
    if (!(s.efer & EFER_SCE)) {
        env.raise(6);
        return 0;
    }
    uint16_t sel = uint16_t(s.star >> 32);
    uint64_t flags = read_eflags(s);
    if (s.hflags & HF_LMA) {
        s.regs[RCX] = next_rip;
        s.regs[R11] = flags & ~RF;
        write_eflags(s, flags & ~(s.sfmask | RF), ~0ull);
        s.seg[CS] = Segment{uint16_t(sel & ~3u), 0, 0xffffffff, 0xa09b}; // 64-bit code, DPL 0
        s.seg[SS] = Segment{uint16_t((sel + 8) & ~3u), 0, 0xffffffff, 0xc093};
        s.rip = (s.hflags & HF_CS64) ? s.lstar : s.cstar;
    } else {
        s.regs[RCX] = uint32_t(next_rip);
        write_eflags(s, flags & ~(IF | RF | VM), ~0ull);
        s.seg[CS] = Segment{uint16_t(sel & ~3u), 0, 0xffffffff, 0xc09b};
        s.seg[SS] = Segment{uint16_t((sel + 8) & ~3u), 0, 0xffffffff, 0xc093};
        s.rip = uint32_t(s.star);
    }
    update_hflags(s);
    env.mmu.flush();
    env.mode_changed = true;
    return s.rip;
}

// sysret: a = operand bytes (8: to 64-bit code).
uint64_t helper_Sysret(CpuEnv& env, uint64_t bytes, uint64_t, uint64_t)
{
    CpuState& s = env.s;
    if (!(s.efer & EFER_SCE)) {
        env.raise(6);
        return 0;
    }
    if (!(s.hflags & HF_PE) || s.cpl() != 0)
        return gp(env, 0);
    uint16_t sel = uint16_t(s.star >> 48);
    if (s.hflags & HF_LMA) {
        if (bytes == 8) {
            if (int64_t(s.regs[RCX] << 16) >> 16 != int64_t(s.regs[RCX]))
                return gp(env, 0);
            s.seg[CS] = Segment{uint16_t((sel + 16) | 3), 0, 0xffffffff, 0xa0fb};
            s.rip = s.regs[RCX];
        } else {
            s.seg[CS] = Segment{uint16_t(sel | 3), 0, 0xffffffff, 0xc0fb};
            s.rip = uint32_t(s.regs[RCX]);
        }
        write_eflags(s, s.regs[R11], 0x3f7fd5);
    } else {
        s.seg[CS] = Segment{uint16_t(sel | 3), 0, 0xffffffff, 0xc0fb};
        s.rip = uint32_t(s.regs[RCX]);
        s.eflags |= IF;
    }
    s.seg[SS] = Segment{uint16_t((sel + 8) | 3), 0, 0xffffffff, 0xc0f3};
    update_hflags(s);
    env.mmu.flush();
    env.mode_changed = true;
    return s.rip;
}

uint64_t helper_Sysenter(CpuEnv& env, uint64_t, uint64_t, uint64_t)
{
    CpuState& s = env.s;
    if (!(s.hflags & HF_PE) || (s.sysenter_cs & ~3ull) == 0)
        return gp(env, 0);
    uint16_t cs = uint16_t(s.sysenter_cs & ~3u);
    write_eflags(s, read_eflags(s) & ~(IF | RF | VM), ~0ull);
    bool lma = s.hflags & HF_LMA;
    s.seg[CS] = Segment{cs, 0, 0xffffffff, uint16_t(lma ? 0xa09b : 0xc09b)};
    s.seg[SS] = Segment{uint16_t(cs + 8), 0, 0xffffffff, 0xc093};
    s.regs[RSP] = lma ? s.sysenter_esp : uint32_t(s.sysenter_esp);
    s.rip = lma ? s.sysenter_eip : uint32_t(s.sysenter_eip);
    update_hflags(s);
    env.mmu.flush();
    env.mode_changed = true;
    return s.rip;
}

// sysexit: a = operand bytes (8: to 64-bit code).
uint64_t helper_Sysexit(CpuEnv& env, uint64_t bytes, uint64_t, uint64_t)
{
    CpuState& s = env.s;
    if (!(s.hflags & HF_PE) || s.cpl() != 0 || (s.sysenter_cs & ~3ull) == 0)
        return gp(env, 0);
    uint16_t base = uint16_t(s.sysenter_cs);
    if (bytes == 8) {
        s.seg[CS] = Segment{uint16_t((base + 32) | 3), 0, 0xffffffff, 0xa0fb};
        s.seg[SS] = Segment{uint16_t((base + 40) | 3), 0, 0xffffffff, 0xc0f3};
        s.regs[RSP] = s.regs[RCX];
        s.rip = s.regs[RDX];
    } else {
        s.seg[CS] = Segment{uint16_t((base + 16) | 3), 0, 0xffffffff, 0xc0fb};
        s.seg[SS] = Segment{uint16_t((base + 24) | 3), 0, 0xffffffff, 0xc0f3};
        s.regs[RSP] = uint32_t(s.regs[RCX]);
        s.rip = uint32_t(s.regs[RDX]);
    }
    update_hflags(s);
    env.mmu.flush();
    env.mode_changed = true;
    return s.rip;
}

uint64_t helper_Swapgs(CpuEnv& env, uint64_t, uint64_t, uint64_t)
{
    CpuState& s = env.s;
    if (!(s.hflags & HF_CS64)) {
        env.raise(6);
        return 0;
    }
    if (s.cpl() != 0)
        return gp(env, 0);
    std::swap(s.seg[GS].base, s.kernel_gs_base);
    return 0;
}

// ltr / lldt: a = selector, b = 1 for ltr.
uint64_t helper_LoadSystemSegment(CpuEnv& env, uint64_t selector16, uint64_t is_tr, uint64_t)
{
    CpuState& s = env.s;
    if (!(s.hflags & HF_PE) || (s.hflags & HF_VM)) {
        env.raise(6);
        return 0;
    }
    if (s.cpl() != 0)
        return gp(env, 0);
    uint16_t selector = uint16_t(selector16);
    Segment& target = is_tr ? s.tr : s.ldtr;
    if ((selector & ~3u) == 0) {
        if (is_tr)
            return gp(env, 0);
        s.ldtr = Segment{0, 0, 0, 0};
        return 0;
    }
    if (selector & 4)
        return gp(env, selector & ~3u); // must come from the GDT
    uint64_t d = 0, hi = 0;
    if (!read_descriptor(env, selector, d))
        return gp(env, selector & ~3u);
    unsigned type = desc_type(d);
    bool ok = is_tr ? (type == 1 || type == 9) : type == 2;
    if ((d & D_S) || !ok)
        return gp(env, selector & ~3u);
    if (!(d & D_P)) {
        env.raise(11, true, selector & ~3u);
        return 0;
    }
    Mmu::SupervisorScope system(env.mmu);
    if ((s.hflags & HF_LMA) && !env.mmu.load(s.gdtr.base + (selector & ~7u) + 8, 8, hi))
        return 0;
    load_segment_cache(target, selector, d);
    if (s.hflags & HF_LMA)
        target.base |= (hi & 0xffffffffull) << 32;
    if (is_tr) {
        // Mark the TSS busy in the GDT.
        env.mmu.store(s.gdtr.base + (selector & ~7u) + 5, 1, ((d >> 40) & 0xff) | 2);
        target.attr |= 2;
    }
    return 0;
}

uint64_t helper_Cmpxchg8b(CpuEnv& env, uint64_t address, uint64_t bytes, uint64_t)
{
    CpuState& s = env.s;
    if (bytes == 16) {
        if (address & 15)
            return gp(env, 0);
        uint64_t lo = 0, hi = 0;
        if (!env.mmu.load(address, 8, lo) || !env.mmu.load(address + 8, 8, hi))
            return 0;
        bool equal = lo == s.regs[RAX] && hi == s.regs[RDX];
        uint64_t wlo = equal ? s.regs[RBX] : lo, whi = equal ? s.regs[RCX] : hi;
        if (!env.mmu.store(address, 8, wlo) || !env.mmu.store(address + 8, 8, whi))
            return 0;
        if (!equal) {
            s.regs[RAX] = lo;
            s.regs[RDX] = hi;
        }
        write_eflags(s, equal ? ZF : 0, ZF);
        return 0;
    }
    uint64_t v = 0;
    if (!env.mmu.load(address, 8, v))
        return 0;
    uint64_t expected = (s.regs[RDX] << 32) | uint32_t(s.regs[RAX]);
    bool equal = v == expected;
    uint64_t write = equal ? ((s.regs[RCX] << 32) | uint32_t(s.regs[RBX])) : v;
    if (!env.mmu.store(address, 8, write))
        return 0;
    if (!equal) {
        s.regs[RAX] = uint32_t(v);
        s.regs[RDX] = v >> 32;
    }
    write_eflags(s, equal ? ZF : 0, ZF);
    return 0;
}

uint64_t helper_Rdtscp(CpuEnv& env, uint64_t a, uint64_t b, uint64_t c)
{
    uint64_t helper_Rdtsc(CpuEnv&, uint64_t, uint64_t, uint64_t);
    helper_Rdtsc(env, a, b, c);
    if (env.s.pending_vector < 0)
        env.s.regs[RCX] = uint32_t(env.s.tsc_aux);
    return 0;
}

// clts, lmsw, smsw: a = 0 clts / 1 lmsw(value b) / 2 smsw.
uint64_t helper_Cr0Bits(CpuEnv& env, uint64_t which, uint64_t value, uint64_t)
{
    CpuState& s = env.s;
    if (which == 2)
        return s.cr0 & 0xffff;
    if (s.cpl() != 0)
        return gp(env, 0);
    if (which == 0) {
        s.cr0 &= ~CR0_TS;
    } else {
        // lmsw: PE can be set but not cleared; MP, EM, TS as given.
        s.cr0 = (s.cr0 & ~0xeull) | (value & 0xe) | ((s.cr0 | value) & CR0_PE);
        update_hflags(s);
        env.mode_changed = true;
    }
    return 0;
}

// Binary-coded decimal adjustments: a = 0 daa / 1 das / 2 aaa / 3 aas / 4 aam (b = base) / 5 aad (b = base).
uint64_t helper_Bcd(CpuEnv& env, uint64_t op, uint64_t base, uint64_t)
{
    CpuState& s = env.s;
    uint64_t flags = read_eflags(s);
    uint8_t al = uint8_t(s.regs[RAX]), ah = uint8_t(s.regs[RAX] >> 8);
    bool cf = flags & CF, af = flags & AF;
    auto szp = [](uint8_t v) {
        return (v == 0 ? ZF : 0) | ((v & 0x80) ? SF : 0) | ((__builtin_popcount(v) & 1) ? 0 : PF);
    };
    uint64_t f = 0;
    switch (op) {
    case 0:
    case 1: {
        uint8_t old = al;
        bool new_cf = false;
        if ((al & 0xf) > 9 || af) {
            new_cf = op == 0 ? (cf || al > 0xf9) : (cf || al < 6);
            al = op == 0 ? al + 6 : al - 6;
            af = true;
        } else {
            af = false;
        }
        if (old > 0x99 || cf) {
            al = op == 0 ? al + 0x60 : al - 0x60;
            new_cf = true;
        }
        f = szp(al) | (new_cf ? CF : 0) | (af ? AF : 0);
        s.regs[RAX] = (s.regs[RAX] & ~0xffull) | al;
        break;
    }
    case 2:
    case 3: {
        if ((al & 0xf) > 9 || af) {
            uint16_t ax = uint16_t(s.regs[RAX]);
            ax = op == 2 ? uint16_t(ax + 0x106) : uint16_t(ax - 6);
            if (op == 3)
                ax = uint16_t(ax - 0x100);
            ax &= 0xff0f;
            s.regs[RAX] = (s.regs[RAX] & ~0xffffull) | ax;
            f = AF | CF;
        } else {
            s.regs[RAX] = (s.regs[RAX] & ~0xffull) | (al & 0xf);
        }
        f |= szp(uint8_t(s.regs[RAX]));
        break;
    }
    case 4:
        if (base == 0) {
            env.raise(0);
            return 0;
        }
        ah = uint8_t(al / base);
        al = uint8_t(al % base);
        s.regs[RAX] = (s.regs[RAX] & ~0xffffull) | (uint64_t(ah) << 8) | al;
        f = szp(al);
        break;
    default:
        al = uint8_t(al + ah * base);
        s.regs[RAX] = (s.regs[RAX] & ~0xffffull) | al;
        f = szp(al);
        break;
    }
    write_eflags(s, f, ARITH_FLAGS);
    return 0;
}

} // namespace emu::x86

namespace emu::x86 {

// lar / lsl / verr / verw: a = selector, b = 0 lar / 1 lsl / 2 verr / 3 verw.
// Sets ZF when the descriptor is accessible; returns the access rights or limit.
uint64_t helper_DescriptorQuery(CpuEnv& env, uint64_t selector64, uint64_t which, uint64_t)
{
    CpuState& s = env.s;
    if (!(s.hflags & HF_PE) || (s.hflags & HF_VM)) {
        env.raise(6);
        return 0;
    }
    uint16_t selector = uint16_t(selector64);
    uint64_t d = 0;
    bool ok = (selector & ~3u) != 0 && read_descriptor(env, selector, d);
    if (s.pending_vector >= 0)
        return 0;
    if (ok) {
        unsigned type = (d >> 40) & 0x1f; // S and type
        unsigned dpl = (d >> 45) & 3, rpl = selector & 3;
        bool conforming_code = (type & 0x1c) == 0x1c;
        if (!conforming_code && (dpl < s.cpl() || dpl < rpl))
            ok = false;
        bool system = !(type & 0x10);
        if (ok && system) {
            // Only some system types answer: TSS and LDT (and gates for lar).
            unsigned t = type & 0xf;
            bool lm = s.hflags & HF_LMA;
            bool valid_lsl = lm ? (t == 2 || t == 9 || t == 0xb) : (t == 1 || t == 2 || t == 3 || t == 9 || t == 0xb);
            bool valid_lar = valid_lsl || (lm ? t == 0xc : (t == 4 || t == 5 || t == 0xc));
            if (which >= 2 || (which == 0 ? !valid_lar : !valid_lsl))
                ok = false;
        }
        if (ok && which == 2 && (type & 0x18) == 0x18 && !(type & 2))
            ok = false; // verr: execute-only code
        if (ok && which == 3 && ((type & 0x18) != 0x10 || !(type & 2)))
            ok = false; // verw: writable data only
    }
    write_eflags(s, ok ? ZF : 0, ZF);
    if (!ok)
        return ~0ull; // the destination stays as it was
    if (which == 0)
        return d >> 32 & 0x00f0ff00;
    uint32_t limit = uint32_t((d & 0xffff) | ((d >> 32) & 0xf0000));
    if (d & (1ull << 55))
        limit = (limit << 12) | 0xfff;
    return limit;
}

// bound: a = index, b = address of the bounds, c = operand bytes.
uint64_t helper_Bound(CpuEnv& env, uint64_t index, uint64_t address, uint64_t bytes)
{
    uint64_t lo = 0, hi = 0;
    if (!env.mmu.load(address, unsigned(bytes), lo) || !env.mmu.load(address + bytes, unsigned(bytes), hi))
        return 0;
    int64_t i = bytes == 2 ? int16_t(index) : int32_t(index);
    int64_t l = bytes == 2 ? int16_t(lo) : int32_t(lo), h = bytes == 2 ? int16_t(hi) : int32_t(hi);
    if (i < l || i > h)
        env.raise(5); // BOUND range exceeded
    return 0;
}

} // namespace emu::x86
