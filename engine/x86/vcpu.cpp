#include "engine/x86/vcpu.h"

#include "common/log.h"
#include "engine/ir/passes.h"
#include "engine/x86/interrupts.h"

#include <algorithm>
#include <cstring>

namespace emu::x86 {

namespace {
constexpr size_t k_jump_cache = 4096;
} // namespace

Vcpu::Vcpu(PhysBus& bus, const CpuModel& model, unsigned index, unsigned count, CodeTracker* code)
    : m_bus(bus), m_own_code(code ? nullptr : std::make_unique<CodeTracker>()),
      m_code(code ? code : m_own_code.get()), m_code_slot(m_code->attach()), m_env(m_state, *this, model),
      m_jump_cache(k_jump_cache)
{
    m_env.apic_id = index;
    m_env.cpu_count = count;
    m_frame.resize(1024);
    reset();
}

Vcpu::~Vcpu() = default;

CpuState power_on_state(const CpuModel& model)
{
    CpuState s;
    for (auto& seg : s.seg) {
        seg.selector = 0;
        seg.base = 0;
        seg.limit = 0xffff;
        seg.attr = 0x93;
    }
    s.seg[CS].selector = 0xf000;
    s.seg[CS].base = 0xffff0000;
    s.seg[CS].attr = 0x9b;
    s.rip = 0xfff0;
    s.cr0 = 0x60000010;
    s.idtr.limit = 0x3ff;
    s.gdtr.limit = 0xffff;
    s.ldtr.attr = 0x82;
    s.tr.attr = 0x8b;
    // x87 and SSE as after FNINIT: all exceptions masked, round to nearest.
    uint16_t fcw = 0x037f;
    uint32_t mxcsr = 0x1f80, mxcsr_mask = 0xffff;
    memcpy(s.fx, &fcw, 2);
    memcpy(s.fx + 24, &mxcsr, 4);
    memcpy(s.fx + 28, &mxcsr_mask, 4);
    s.regs[RDX] = model.query(1, 0, 0, 1).eax; // the processor signature, as after RESET
    update_hflags(s);
    return s;
}

void Vcpu::reset()
{
    m_state = power_on_state(m_env.model);
    m_env.mmu.flush();
}

void Vcpu::flush_code()
{
    for (auto& [key, block] : m_blocks)
        m_graveyard.push_back(std::move(block));
    m_blocks.clear();
    m_code_pages.clear();
    m_code->forget(m_code_slot);
    std::fill(m_jump_cache.begin(), m_jump_cache.end(), JumpEntry{});
}

void Vcpu::check_inbox()
{
    CodeTracker::Inbox& box = m_code->inbox(m_code_slot);
    if (box.flush_tlb.load(std::memory_order_relaxed) && box.flush_tlb.exchange(false)) {
        m_env.mmu.flush();
        m_jump_generation = m_env.mmu.flush_count();
        std::fill(m_jump_cache.begin(), m_jump_cache.end(), JumpEntry{});
    }
    if (box.dirty.load(std::memory_order_relaxed)) {
        std::vector<uint64_t> pages;
        {
            std::lock_guard lock(box.mutex);
            pages.swap(box.pages);
            box.dirty.store(false, std::memory_order_relaxed);
        }
        for (uint64_t page : pages)
            invalidate_page(page);
    }
}

void Vcpu::invalidate_page(uint64_t page)
{
    auto it = m_code_pages.find(page);
    if (it == m_code_pages.end())
        return;
    std::vector<Block*> victims = std::move(it->second);
    m_code_pages.erase(it);
    for (Block* b : victims) {
        for (uint64_t other : b->pages) {
            auto o = m_code_pages.find(other);
            if (o == m_code_pages.end())
                continue;
            auto& list = o->second;
            list.erase(std::remove(list.begin(), list.end(), b), list.end());
            if (list.empty())
                m_code_pages.erase(o);
        }
        auto found = m_blocks.find(b->key);
        if (found != m_blocks.end()) {
            m_graveyard.push_back(std::move(found->second)); // it may be running right now
            m_blocks.erase(found);
            m_stats.blocks_invalidated++;
        }
    }
    std::fill(m_jump_cache.begin(), m_jump_cache.end(), JumpEntry{});
}

void Vcpu::code_written(uint64_t gpa, unsigned size)
{
    uint64_t first = gpa & ~0xfffull, last = (gpa + size - 1) & ~0xfffull;
    for (uint64_t page = first; page <= last; page += 4096) {
        bool shared = m_code->written(page, m_code_slot);
        if (m_code_pages.count(page)) {
            invalidate_page(page);
            m_env.smc = true;
        } else if (shared) {
            // Another vCPU's code: it drops its blocks; ours were not on the page.
        }
    }
}

Vcpu::Block* Vcpu::find_block()
{
    CpuState& s = m_state;
    if (m_env.mmu.flush_count() != m_jump_generation) {
        // The virtual-to-physical mapping may have changed.
        std::fill(m_jump_cache.begin(), m_jump_cache.end(), JumpEntry{});
        m_jump_generation = m_env.mmu.flush_count();
    }
    uint64_t rip = s.rip, cs_base = s.seg[CS].base;
    uint32_t hflags = s.hflags;
    JumpEntry& je = m_jump_cache[(rip ^ (rip >> 12)) % k_jump_cache];
    if (je.block && je.rip == rip && je.hflags == hflags && je.cs_base == cs_base)
        return je.block;

    uint64_t linear = (hflags & HF_CS64) ? rip : ((cs_base + rip) & 0xffffffffull);
    uint64_t gpa;
    if (!m_env.mmu.translate(linear, Access::Exec, gpa))
        return nullptr; // the fetch fault is pending
    Key key{gpa, rip, cs_base, hflags};
    Block* block;
    auto it = m_blocks.find(key);
    if (it != m_blocks.end()) {
        block = it->second.get();
    } else {
        TranslatedBlock tb;
        if (!translate_block(m_env, tb))
            return nullptr;
        if (ir::verification_enabled()) {
            if (auto problems = ir::verify(tb.ir); !problems.empty()) {
                log_error("x86: invalid IR for block at {:#x}: {}\n{}", rip, problems.front(), ir::print(tb.ir));
                abort();
            }
        }
        ir::optimize(tb.ir);
        auto fresh = std::make_unique<Block>();
        fresh->code = interp::compile(tb.ir);
        fresh->key = key;
        fresh->pages = tb.code_pages;
        if (fresh->code.slots > m_frame.size())
            m_frame.resize(fresh->code.slots);
        block = fresh.get();
        bool new_code_page = false;
        for (uint64_t page : fresh->pages) {
            auto& list = m_code_pages[page];
            new_code_page |= list.empty();
            list.push_back(block);
            m_code->add(page, m_code_slot);
        }
        // Writes to a page that now holds code must leave the TLB's fast path.
        if (new_code_page) {
            m_env.mmu.flush();
            m_jump_generation = m_env.mmu.flush_count();
        }
        m_blocks.emplace(key, std::move(fresh));
        m_stats.blocks_translated++;
    }
    je = JumpEntry{rip, cs_base, hflags, block};
    return block;
}

bool Vcpu::take_interrupts()
{
    CpuState& s = m_state;
    if (s.interrupt_shadow) {
        s.interrupt_shadow = false;
        return false;
    }
    if (m_nmi.load(std::memory_order_acquire) && !s.nmi_blocked) {
        m_nmi.store(false);
        if (deliver_interrupt(m_env, 2, false, 0, false, true) != Delivery::Ok)
            return false;
        s.nmi_blocked = true; // until the handler's IRET
        return true;
    }
    if ((s.eflags & IF) && m_irq && m_irq->pending()) {
        int vector = m_irq->acknowledge();
        if (vector < 0)
            return false;
        return deliver_interrupt(m_env, vector, false, 0, false, true) == Delivery::Ok;
    }
    return false;
}

VcpuExit Vcpu::run(uint64_t max_instructions)
{
    CpuState& s = m_state;
    uint64_t start = m_env.instructions;
    CodeTracker::Inbox& inbox = m_code->inbox(m_code_slot);
    for (;;) {
        if (!m_graveyard.empty())
            m_graveyard.clear();
        if (inbox.dirty.load(std::memory_order_relaxed) || inbox.flush_tlb.load(std::memory_order_relaxed))
            check_inbox();
        if (m_kick.load(std::memory_order_relaxed) && m_kick.exchange(false, std::memory_order_acq_rel))
            return VcpuExit::Kicked;
        if (m_env.instructions - start >= max_instructions)
            return VcpuExit::Budget;
        if (s.pending_vector >= 0) {
            m_stats.exceptions++;
            int vector = s.pending_vector;
            bool software = m_env.software_interrupt;
            m_env.software_interrupt = false;
            m_env.pending_trap = false;
            if (deliver_interrupt(m_env, vector, s.pending_has_error, s.pending_error, software, false) !=
                Delivery::Ok)
                return VcpuExit::TripleFault;
            continue;
        }
        if ((s.interrupt_shadow || m_nmi.load(std::memory_order_relaxed) || ((s.eflags & IF) && m_irq)) &&
            take_interrupts())
            continue;
        if (s.halted)
            return VcpuExit::Halted;
        Block* block = find_block();
        if (!block)
            continue; // a fault is pending: delivered on the next turn
        interp::execute(block->code, m_env, m_frame.data());
    }
}

} // namespace emu::x86
