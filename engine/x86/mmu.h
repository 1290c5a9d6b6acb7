// engine/x86/mmu.h — the soft MMU: per-vCPU TLBs over the page walker.
//
// Loads and stores take linear addresses. A hit in the TLB is a host pointer;
// a miss walks the guest page tables (32-bit, PAE or 4-level), checks
// permissions, sets accessed/dirty bits and fills the entry. MMIO pages
// never hit: they go to the bus. A fault records a #PF in the CPU state and
// returns false; the executor ends the block at that instruction.
#pragma once

#include "engine/x86/cpu_state.h"
#include "engine/x86/phys_bus.h"

#include <cstring>

namespace emu::x86 {

enum class Access : uint8_t { Read, Write, Exec };

class Mmu {
public:
    static constexpr unsigned k_entries = 256;
    // TLBs per privilege view: user, supervisor, supervisor with SMAP enforced.
    static constexpr unsigned k_views = 3;

    Mmu(CpuState& state, PhysBus& bus) : m_s(state), m_bus(bus) { flush(); }

    // Fast paths; false means a fault is now pending in the CPU state.
    inline bool load(uint64_t va, unsigned size, uint64_t& out)
    {
        const Entry& e = m_tlb[view()][(va >> 12) % k_entries];
        if (e.read_tag == (va & ~0xfffull) && (va & 0xfff) + size <= 4096) {
            out = 0;
            memcpy(&out, e.host + (va & 0xfff), size);
            return true;
        }
        return load_slow(va, size, out, Access::Read);
    }
    inline bool store(uint64_t va, unsigned size, uint64_t value)
    {
        const Entry& e = m_tlb[view()][(va >> 12) % k_entries];
        if (e.write_tag == (va & ~0xfffull) && (va & 0xfff) + size <= 4096) {
            memcpy(e.host + (va & 0xfff), &value, size);
            return true;
        }
        return store_slow(va, size, value);
    }

    // A host pointer for an atomic read-modify-write of 'size' bytes at va:
    // RAM, writable, not holding code, within one page. nullptr with
    // 'fault' false means "not possible atomically" (MMIO, a page boundary,
    // a code page): the caller falls back; with 'fault' true a fault is pending.
    uint8_t* host_for_rmw(uint64_t va, unsigned size, bool& fault);

    // Instruction fetch: copies up to 'len' bytes at va; returns how many could
    // be fetched before a fault or a page boundary stopped it; 'gpa' is the
    // physical address of va.
    size_t fetch(uint64_t va, uint8_t* out, size_t len, uint64_t& gpa);

    // Translates for the debugger, the monitor and helpers; no side effects
    // when 'probe' is set (no A/D updates, no fault raised).
    bool translate(uint64_t va, Access access, uint64_t& gpa, bool probe = false);

    void flush();                 // all entries (CR3 write without PGE, CR0/CR4/EFER changes)
    void flush_page(uint64_t va); // invlpg
    void flush_nonglobal() { flush(); }

    PhysBus& bus() { return m_bus; }

    // Implicit supervisor accesses: the descriptor tables, the TSS and the
    // inner stack of a privilege change are accessed with supervisor rights
    // whatever the CPL (a user-mode interrupt reads the IDT and pushes onto
    // the kernel stack). While a scope is alive, loads and stores use them.
    class SupervisorScope {
    public:
        explicit SupervisorScope(Mmu& mmu, bool active = true) : m_mmu(mmu), m_old(mmu.m_supervisor)
        {
            mmu.m_supervisor = m_old || active;
        }
        ~SupervisorScope() { m_mmu.m_supervisor = m_old; }
        SupervisorScope(const SupervisorScope&) = delete;
        SupervisorScope& operator=(const SupervisorScope&) = delete;

    private:
        Mmu& m_mmu;
        bool m_old;
    };
    // Bumped by every flush: caches keyed by virtual address drop their entries.
    uint64_t flush_count() const { return m_flush_count; }

    // A raw physical access (page walks, descriptor tables, helpers).
    uint64_t phys_read(uint64_t gpa, unsigned size);
    void phys_write(uint64_t gpa, uint64_t value, unsigned size);

private:
    struct Entry {
        uint64_t read_tag, write_tag, code_tag;
        uint8_t* host; // host address of the page
        uint64_t gpa;  // guest physical page
    };

    unsigned view() const
    {
        if (m_supervisor)
            return 1;
        if ((m_s.hflags & HF_CPL_MASK) == 3)
            return 0;
        return ((m_s.cr4 & CR4_SMAP) && !(m_s.eflags & AC)) ? 2 : 1;
    }
    bool load_slow(uint64_t va, unsigned size, uint64_t& out, Access access);
    bool store_slow(uint64_t va, unsigned size, uint64_t value);
    bool access_page(uint64_t va, Access access, uint64_t& gpa, bool probe);
    bool walk(uint64_t va, Access access, bool user, uint64_t& gpa, bool& writable, bool& executable, bool probe);
    void raise_pf(uint64_t va, uint32_t error);
    bool check_canonical(uint64_t va);

    CpuState& m_s;
    PhysBus& m_bus;
    Entry m_tlb[k_views][k_entries];
    uint64_t m_flush_count = 0;
    bool m_supervisor = false; // a SupervisorScope is alive
};

} // namespace emu::x86
