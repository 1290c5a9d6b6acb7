#include "engine/x86/interrupts.h"

#include "common/log.h"
#include "engine/x86/flags.h"
#include "engine/x86/task_switch.h"

namespace emu::x86 {

namespace {

bool is_contributory(int v) { return v == 0 || (v >= 10 && v <= 13); }

// Raises an exception during delivery: the caller folds it into #DF.
struct Nested {
    int vector;
    uint32_t error;
};

bool push_value(CpuEnv& env, uint64_t& sp, uint64_t ss_base, uint64_t sp_mask, uint64_t value, unsigned bytes)
{
    sp = (sp - bytes) & sp_mask;
    return env.mmu.store(ss_base + sp, bytes, value);
}

} // namespace

bool read_descriptor(CpuEnv& env, uint16_t selector, uint64_t& descriptor)
{
    CpuState& s = env.s;
    bool ldt = selector & 4;
    uint64_t base = ldt ? s.ldtr.base : s.gdtr.base;
    uint32_t limit = ldt ? s.ldtr.limit : s.gdtr.limit;
    uint32_t index = selector & ~7u;
    if (index + 7 > limit)
        return false;
    Mmu::SupervisorScope system(env.mmu);
    return env.mmu.load(base + index, 8, descriptor);
}

void load_segment_cache(Segment& seg, uint16_t selector, uint64_t d)
{
    seg.selector = selector;
    seg.base = ((d >> 16) & 0xffffff) | ((d >> 32) & 0xff000000);
    uint32_t limit = uint32_t((d & 0xffff) | ((d >> 32) & 0xf0000));
    if (d & (1ull << 55)) // G: 4 KiB granularity
        limit = (limit << 12) | 0xfff;
    seg.limit = limit;
    seg.attr = uint16_t((d >> 40) & 0xf0ff); // type..P in 0-7, AVL L D/B G in 12-15
}

static Delivery deliver_once(CpuEnv& env, int vector, bool has_error, uint32_t error, bool software, bool external,
                             Nested& nested)
{
    CpuState& s = env.s;
    auto fail = [&](int v, uint32_t e) {
        nested = {v, e};
        return Delivery::TripleFault; // the caller decides: #DF or triple fault
    };
    uint32_t ext = external ? 1 : 0;

    if (!(s.cr0 & CR0_PE)) {
        // Real mode: a 4-byte vector in the IVT.
        if (uint32_t(vector) * 4 + 3 > s.idtr.limit)
            return fail(13, uint32_t(vector) * 8 + 2 + ext);
        uint64_t entry = 0;
        if (!env.mmu.load(s.idtr.base + uint64_t(vector) * 4, 4, entry))
            return fail(s.pending_vector, s.pending_error);
        uint64_t sp = s.regs[RSP] & 0xffff;
        uint64_t flags = read_eflags(s);
        if (!push_value(env, sp, s.seg[SS].base, 0xffff, flags, 2) ||
            !push_value(env, sp, s.seg[SS].base, 0xffff, s.seg[CS].selector, 2) ||
            !push_value(env, sp, s.seg[SS].base, 0xffff, s.rip, 2))
            return fail(s.pending_vector, s.pending_error);
        s.regs[RSP] = (s.regs[RSP] & ~0xffffull) | sp;
        s.eflags &= ~(IF | TF | AC | RF);
        s.seg[CS].selector = uint16_t(entry >> 16);
        s.seg[CS].base = uint64_t(entry >> 16 & 0xffff) << 4;
        s.rip = entry & 0xffff;
        return Delivery::Ok;
    }

    bool long_mode = s.hflags & HF_LMA;
    unsigned gate_size = long_mode ? 16 : 8;
    if (uint32_t(vector) * gate_size + gate_size - 1 > s.idtr.limit)
        return fail(13, uint32_t(vector) * 8 + 2 + ext);
    uint64_t lo = 0, hi = 0;
    {
        Mmu::SupervisorScope system(env.mmu);
        if (!env.mmu.load(s.idtr.base + uint64_t(vector) * gate_size, 8, lo) ||
            (long_mode && !env.mmu.load(s.idtr.base + uint64_t(vector) * gate_size + 8, 8, hi)))
            return fail(s.pending_vector, s.pending_error);
    }
    unsigned type = (lo >> 40) & 0xf;
    unsigned gate_dpl = (lo >> 45) & 3;
    bool present = lo & (1ull << 47);
    bool valid_type = long_mode ? (type == 0xe || type == 0xf)
                                : (type == 0x5 || type == 0x6 || type == 0x7 || type == 0xe || type == 0xf);
    if (!valid_type)
        return fail(13, uint32_t(vector) * 8 + 2 + ext);
    if (software && gate_dpl < s.cpl())
        return fail(13, uint32_t(vector) * 8 + 2);
    if (!present)
        return fail(11, uint32_t(vector) * 8 + 2 + ext);
    if (type == 0x5) {
        // A task gate: the handler is another task.
        if (!task_switch(env, uint16_t(lo >> 16), TaskReason::Int, s.rip, has_error, error))
            return fail(s.pending_vector, s.pending_error);
        return Delivery::Ok;
    }
    bool trap_gate = type & 1;
    bool gate32 = long_mode || (type & 8);
    uint16_t selector = uint16_t(lo >> 16);
    uint64_t offset = (lo & 0xffff) | ((lo >> 32) & 0xffff0000ull);
    if (long_mode)
        offset |= (hi & 0xffffffffull) << 32;
    unsigned ist = long_mode ? (lo >> 32) & 7 : 0;

    uint64_t cs_desc = 0;
    if ((selector & ~3u) == 0 || !read_descriptor(env, selector, cs_desc))
        return fail(13, (selector & ~3u) + ext);
    unsigned cs_type = (cs_desc >> 40) & 0x1f;
    unsigned cs_dpl = (cs_desc >> 45) & 3;
    if ((cs_type & 0x18) != 0x18 || cs_dpl > s.cpl())
        return fail(13, (selector & ~3u) + ext);
    if (!(cs_desc & (1ull << 47)))
        return fail(11, (selector & ~3u) + ext);
    if (long_mode && (!(cs_desc & (1ull << 53)) || (cs_desc & (1ull << 54))))
        return fail(13, (selector & ~3u) + ext);
    bool conforming = cs_type & 4;
    unsigned new_cpl = conforming ? s.cpl() : cs_dpl;
    bool privilege_change = new_cpl < s.cpl();
    bool from_v86 = !long_mode && (s.eflags & VM);
    if (from_v86) {
        // Out of virtual-8086 mode only to a ring-0, non-conforming handler.
        if (conforming || cs_dpl != 0)
            return fail(13, (selector & ~3u) + ext);
        if (software && ((s.eflags & IOPL) >> 12) != 3)
            return fail(13, 0);
        new_cpl = 0;
        privilege_change = true;
    }

    // The TSS and the handler's stack are accessed at the handler's privilege.
    Mmu::SupervisorScope inner(env.mmu, new_cpl < 3);
    uint64_t old_flags = read_eflags(s);
    uint64_t old_ss = s.seg[SS].selector, old_sp = s.regs[RSP], old_cs = s.seg[CS].selector, old_ip = s.rip;
    uint64_t sp, ss_base = 0, sp_mask = ~0ull;
    Segment new_ss = s.seg[SS];

    if (long_mode) {
        if (privilege_change || ist) {
            uint64_t off = ist ? 0x24 + 8 * (ist - 1) : 4 + 8 * new_cpl;
            if (off + 7 > s.tr.limit)
                return fail(10, (s.tr.selector & ~3u) + ext);
            if (!env.mmu.load(s.tr.base + off, 8, sp))
                return fail(s.pending_vector, s.pending_error);
        } else {
            sp = s.regs[RSP];
        }
        sp &= ~0xfull; // the frame is 16-byte aligned in long mode
        if (privilege_change) {
            new_ss = Segment{};
            new_ss.selector = uint16_t(new_cpl);
            new_ss.attr = 0;
        }
        unsigned w = 8;
        if (!push_value(env, sp, 0, ~0ull, old_ss, w) || !push_value(env, sp, 0, ~0ull, old_sp, w) ||
            !push_value(env, sp, 0, ~0ull, old_flags, w) || !push_value(env, sp, 0, ~0ull, old_cs, w) ||
            !push_value(env, sp, 0, ~0ull, old_ip, w) || (has_error && !push_value(env, sp, 0, ~0ull, error, w)))
            return fail(s.pending_vector, s.pending_error);
    } else {
        unsigned w = gate32 ? 4 : 2;
        if (privilege_change) {
            // The inner stack comes from the TSS (32-bit: SSn at 8n+8, ESPn at 8n+4).
            uint64_t esp = 0, ss_sel = 0;
            if (4 + 8 * new_cpl + 6 > s.tr.limit)
                return fail(10, (s.tr.selector & ~3u) + ext);
            if (!env.mmu.load(s.tr.base + 4 + 8 * new_cpl, 4, esp) ||
                !env.mmu.load(s.tr.base + 8 + 8 * new_cpl, 2, ss_sel))
                return fail(s.pending_vector, s.pending_error);
            uint64_t ss_desc = 0;
            if ((ss_sel & ~3u) == 0 || !read_descriptor(env, uint16_t(ss_sel), ss_desc))
                return fail(10, (ss_sel & ~3u) + ext);
            load_segment_cache(new_ss, uint16_t(ss_sel), ss_desc);
            sp = esp;
        } else {
            sp = s.regs[RSP];
        }
        sp_mask = (new_ss.attr & (1u << 14)) ? 0xffffffffull : 0xffffull;
        ss_base = new_ss.base;
        sp &= sp_mask;
        bool ok = true;
        if (from_v86) {
            // The v8086 data segments are saved and then made null.
            ok = push_value(env, sp, ss_base, sp_mask, s.seg[GS].selector, w) &&
                 push_value(env, sp, ss_base, sp_mask, s.seg[FS].selector, w) &&
                 push_value(env, sp, ss_base, sp_mask, s.seg[DS].selector, w) &&
                 push_value(env, sp, ss_base, sp_mask, s.seg[ES].selector, w);
        }
        if (privilege_change)
            ok = ok && push_value(env, sp, ss_base, sp_mask, old_ss, w) &&
                 push_value(env, sp, ss_base, sp_mask, old_sp, w);
        ok = ok && push_value(env, sp, ss_base, sp_mask, old_flags, w) &&
             push_value(env, sp, ss_base, sp_mask, old_cs, w) && push_value(env, sp, ss_base, sp_mask, old_ip, w) &&
             (!has_error || push_value(env, sp, ss_base, sp_mask, error, w));
        if (!ok)
            return fail(s.pending_vector, s.pending_error);
    }

    // Commit: nothing can fail from here on.
    if (privilege_change || long_mode)
        s.seg[SS] = new_ss;
    if (long_mode)
        s.regs[RSP] = sp;
    else
        s.regs[RSP] = (s.regs[RSP] & ~sp_mask) | (sp & sp_mask);
    if (from_v86)
        for (int seg : {ES, DS, FS, GS})
            s.seg[seg] = Segment{0, 0, 0, 0};
    load_segment_cache(s.seg[CS], uint16_t((selector & ~3u) | new_cpl), cs_desc);
    s.rip = gate32 ? offset : offset & 0xffff;
    s.eflags &= ~(TF | NT | RF | VM);
    if (!trap_gate)
        s.eflags &= ~IF;
    update_hflags(s);
    env.mmu.flush(); // CPL may have changed: the TLB views differ
    return Delivery::Ok;
}

Delivery deliver_interrupt(CpuEnv& env, int vector, bool has_error, uint32_t error, bool software, bool external)
{
    CpuState& s = env.s;
    s.pending_vector = -1;
    s.halted = false;
    Nested nested{};
    if (deliver_once(env, vector, has_error, error, software, external, nested) == Delivery::Ok)
        return Delivery::Ok;
    // A fault while delivering: #DF when the two combine so, else the new one.
    s.pending_vector = -1;
    bool df = vector == 8 || (is_contributory(vector) && is_contributory(nested.vector)) ||
              (vector == 14 && (is_contributory(nested.vector) || nested.vector == 14));
    if (vector == 8) {
        log_warn("x86: triple fault (exception {} while delivering #DF)", nested.vector);
        return Delivery::TripleFault;
    }
    int next = df ? 8 : nested.vector;
    uint32_t next_error = df ? 0 : nested.error;
    bool next_has_error = df || (next == 8 || (next >= 10 && next <= 14) || next == 17);
    if (deliver_once(env, next, next_has_error, next_error, false, false, nested) == Delivery::Ok)
        return Delivery::Ok;
    if (next != 8) {
        s.pending_vector = -1;
        if (deliver_once(env, 8, true, 0, false, false, nested) == Delivery::Ok)
            return Delivery::Ok;
    }
    log_warn("x86: triple fault (vector {} could not be delivered: exception {} error {:#x} while delivering; "
             "cr2 {:#x} cr3 {:#x} idt {:#x}/{:#x} tr {:#x}/{:#x} rsp {:#x})",
             vector, nested.vector, nested.error, s.cr2, s.cr3, s.idtr.base, s.idtr.limit, s.tr.base, s.tr.limit,
             s.regs[RSP]);
    return Delivery::TripleFault;
}

} // namespace emu::x86
