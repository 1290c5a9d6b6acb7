#include "engine/x86/mmu.h"

#include <algorithm>

namespace emu::x86 {

namespace {

constexpr uint64_t PTE_P = 1, PTE_RW = 2, PTE_US = 4, PTE_A = 0x20, PTE_D = 0x40, PTE_PS = 0x80;
constexpr uint64_t PTE_NX = 1ull << 63;
constexpr unsigned k_phys_bits = 40; // CPUID 0x80000008 reports this much
constexpr uint64_t k_addr_mask = ((1ull << k_phys_bits) - 1) & ~0xfffull;
// Bits 51..phys_bits of a 64-bit entry are reserved.
constexpr uint64_t k_high_reserved = ((1ull << 52) - 1) & ~((1ull << k_phys_bits) - 1);

constexpr uint32_t PF_P = 1, PF_W = 2, PF_U = 4, PF_RSVD = 8, PF_ID = 16;

// What a completed walk allows.
struct Rights {
    bool rw = true, us = true, nx = false, dirty = false;
};

} // namespace

void Mmu::flush()
{
    m_flush_count++;
    for (auto& view : m_tlb)
        for (auto& e : view)
            e = Entry{~0ull, ~0ull, ~0ull, nullptr, 0};
}

void Mmu::flush_page(uint64_t va)
{
    m_flush_count++;
    for (auto& view : m_tlb) {
        Entry& e = view[(va >> 12) % k_entries];
        if (e.read_tag == (va & ~0xfffull) || e.write_tag == (va & ~0xfffull) || e.code_tag == (va & ~0xfffull))
            e = Entry{~0ull, ~0ull, ~0ull, nullptr, 0};
    }
}

uint64_t Mmu::phys_read(uint64_t gpa, unsigned size)
{
    bool writable;
    if ((gpa & 0xfff) + size <= 4096) {
        if (uint8_t* page = m_bus.ram_page(gpa & ~0xfffull, writable)) {
            uint64_t v = 0;
            memcpy(&v, page + (gpa & 0xfff), size);
            return v;
        }
        return m_bus.mmio_read(gpa, size);
    }
    uint64_t v = 0;
    for (unsigned i = 0; i < size; i++)
        v |= phys_read(gpa + i, 1) << (8 * i);
    return v;
}

void Mmu::phys_write(uint64_t gpa, uint64_t value, unsigned size)
{
    bool writable;
    if ((gpa & 0xfff) + size <= 4096) {
        if (uint8_t* page = m_bus.ram_page(gpa & ~0xfffull, writable)) {
            if (!writable)
                return; // ROM
            memcpy(page + (gpa & 0xfff), &value, size);
            m_bus.ram_written(gpa, size);
            if (m_bus.page_has_code(gpa & ~0xfffull))
                m_bus.code_written(gpa, size);
            return;
        }
        m_bus.mmio_write(gpa, value, size);
        return;
    }
    for (unsigned i = 0; i < size; i++)
        phys_write(gpa + i, (value >> (8 * i)) & 0xff, 1);
}

void Mmu::raise_pf(uint64_t va, uint32_t error)
{
    m_s.cr2 = va;
    m_s.pending_vector = 14;
    m_s.pending_error = error;
    m_s.pending_has_error = true;
}

bool Mmu::check_canonical(uint64_t va)
{
    if (!(m_s.hflags & HF_LMA) || int64_t(va << 16) >> 16 == int64_t(va))
        return true;
    m_s.pending_vector = 13;
    m_s.pending_error = 0;
    m_s.pending_has_error = true;
    return false;
}

bool Mmu::walk(uint64_t va, Access access, bool user, uint64_t& gpa, bool& writable, bool& executable, bool probe)
{
    if (!(m_s.cr0 & CR0_PG)) {
        gpa = (m_s.hflags & HF_LMA) ? va : (va & 0xffffffffull);
        writable = executable = true;
        return true;
    }
    const bool nxe = m_s.efer & EFER_NXE;
    const uint64_t nx_reserved = nxe ? 0 : PTE_NX;
    Rights r;
    uint32_t error = (access == Access::Write ? PF_W : 0) | (user ? PF_U : 0) |
                     (access == Access::Exec && (nxe || (m_s.cr4 & CR4_SMEP)) ? PF_ID : 0);
    auto fault = [&](uint32_t extra) {
        if (!probe)
            raise_pf(va, error | extra);
        return false;
    };
    // Entries walked, to set their accessed bits once the walk succeeded.
    uint64_t entry_addr[5];
    unsigned entry_size[5];
    uint64_t entry_val[5];
    unsigned depth = 0;
    uint64_t page_gpa = 0;

    auto step = [&](uint64_t addr, unsigned size) {
        uint64_t e = phys_read(addr, size);
        entry_addr[depth] = addr;
        entry_size[depth] = size;
        entry_val[depth] = e;
        depth++;
        return e;
    };
    auto accumulate = [&](uint64_t e) {
        r.rw &= (e & PTE_RW) != 0;
        r.us &= (e & PTE_US) != 0;
        r.nx |= nxe && (e & PTE_NX);
    };

    if (m_s.cr4 & CR4_PAE) {
        uint64_t table;
        int level;
        if (m_s.hflags & HF_LMA) {
            table = m_s.cr3 & k_addr_mask;
            level = 4;
        } else {
            // PAE: four PDPTEs at CR3; they carry no access rights.
            uint64_t pdpte = phys_read((m_s.cr3 & 0xffffffe0ull) + ((va >> 30) & 3) * 8, 8);
            if (!(pdpte & PTE_P))
                return fault(0);
            if (pdpte & (k_high_reserved | 0x1e6 | PTE_NX))
                return fault(PF_P | PF_RSVD);
            table = pdpte & k_addr_mask;
            level = 2;
        }
        for (; level >= 1; level--) {
            unsigned shift = 12 + 9 * (level - 1);
            uint64_t e = step(table + ((va >> shift) & 511) * 8, 8);
            if (!(e & PTE_P))
                return fault(0);
            uint64_t reserved = k_high_reserved | nx_reserved;
            if (level == 4 || (level == 3 && !(m_s.hflags & HF_LMA)))
                reserved |= PTE_PS;
            if (level == 2 && (e & PTE_PS))
                reserved |= 0x1fe000;
            if (level == 3 && (m_s.hflags & HF_LMA))
                reserved |= PTE_PS; // 1 GiB pages are not advertised
            if (e & reserved)
                return fault(PF_P | PF_RSVD);
            accumulate(e);
            if (level == 2 && (e & PTE_PS)) {
                page_gpa = (e & k_addr_mask & ~0x1fffffull) | (va & 0x1ff000);
                r.dirty = e & PTE_D;
                break;
            }
            if (level == 1) {
                page_gpa = e & k_addr_mask;
                r.dirty = e & PTE_D;
                break;
            }
            table = e & k_addr_mask;
        }
    } else {
        // 32-bit paging: two levels of 4-byte entries, 4 MiB pages with PSE.
        uint64_t pde = step((m_s.cr3 & 0xfffff000ull) + ((va >> 22) & 1023) * 4, 4);
        if (!(pde & PTE_P))
            return fault(0);
        accumulate(pde);
        if ((pde & PTE_PS) && (m_s.cr4 & CR4_PSE)) {
            if (pde & 0x200000) // bit 21 reserved (PSE-36 with 40-bit physical addresses uses 13..20)
                return fault(PF_P | PF_RSVD);
            page_gpa = (pde & 0xffc00000ull) | (((pde >> 13) & 0xff) << 32) | (va & 0x3ff000);
            r.dirty = pde & PTE_D;
        } else {
            uint64_t pte = step((pde & 0xfffff000ull) + ((va >> 12) & 1023) * 4, 4);
            if (!(pte & PTE_P))
                return fault(0);
            accumulate(pte);
            page_gpa = pte & 0xfffff000ull;
            r.dirty = pte & PTE_D;
        }
    }

    // Permission checks, in the order the manuals give them.
    bool wp = m_s.cr0 & CR0_WP;
    auto allowed = [&](Access a) {
        if (user) {
            if (!r.us)
                return false;
            if (a == Access::Write && !r.rw)
                return false;
        } else {
            if (a == Access::Write && !r.rw && wp)
                return false;
            if (r.us && a == Access::Exec && (m_s.cr4 & CR4_SMEP))
                return false;
            if (r.us && a != Access::Exec && view() == 2)
                return false;
        }
        if (a == Access::Exec && r.nx)
            return false;
        return true;
    };
    if (!allowed(access))
        return fault(PF_P);
    writable = allowed(Access::Write);
    executable = allowed(Access::Exec);

    if (!probe) {
        // Accessed bits on every level, dirty on the leaf for a write.
        for (unsigned i = 0; i < depth; i++) {
            uint64_t want = entry_val[i] | PTE_A;
            if (i == depth - 1 && access == Access::Write)
                want |= PTE_D;
            if (want != entry_val[i])
                phys_write(entry_addr[i], want, entry_size[i]);
        }
        if (access == Access::Write)
            r.dirty = true;
    }
    // A clean page is not mapped writable: the first write must walk to set D.
    if (!r.dirty)
        writable = false;
    gpa = page_gpa | (va & 0xfff);
    return true;
}

bool Mmu::access_page(uint64_t va, Access access, uint64_t& gpa, bool probe)
{
    bool user = (m_s.hflags & HF_CPL_MASK) == 3 && !m_supervisor;
    bool writable = false, executable = false;
    if (!walk(va, access, user, gpa, writable, executable, probe))
        return false;
    if (probe)
        return true;
    bool ram_writable = false;
    uint64_t page = gpa & ~0xfffull;
    uint8_t* host = m_bus.ram_page(page, ram_writable);
    Entry& e = m_tlb[view()][(va >> 12) % k_entries];
    if (!host) {
        e = Entry{~0ull, ~0ull, ~0ull, nullptr, 0}; // MMIO: always the slow path
        return true;
    }
    uint64_t tag = va & ~0xfffull;
    e.host = host;
    e.gpa = page;
    e.read_tag = tag;
    e.write_tag = (writable && ram_writable && !m_bus.page_has_code(page)) ? tag : ~0ull;
    e.code_tag = executable ? tag : ~0ull;
    return true;
}

bool Mmu::translate(uint64_t va, Access access, uint64_t& gpa, bool probe)
{
    if (!check_canonical(va))
        return false;
    return access_page(va, access, gpa, probe);
}

bool Mmu::load_slow(uint64_t va, unsigned size, uint64_t& out, Access access)
{
    if (!check_canonical(va))
        return false;
    if ((va & 0xfff) + size > 4096) {
        // Crosses a page: both pages must be accessible before any byte is read.
        uint64_t gpa0, gpa1;
        unsigned first = unsigned(4096 - (va & 0xfff));
        if (!access_page(va, access, gpa0, false) || !access_page(va + first, access, gpa1, false))
            return false;
        uint64_t lo = phys_read(gpa0, first), hi = phys_read(gpa1, size - first);
        out = lo | (hi << (8 * first));
        return true;
    }
    uint64_t gpa;
    if (!access_page(va, access, gpa, false))
        return false;
    out = phys_read(gpa, size);
    return true;
}

bool Mmu::store_slow(uint64_t va, unsigned size, uint64_t value)
{
    if (!check_canonical(va))
        return false;
    if ((va & 0xfff) + size > 4096) {
        uint64_t gpa0, gpa1;
        unsigned first = unsigned(4096 - (va & 0xfff));
        if (!access_page(va, Access::Write, gpa0, false) || !access_page(va + first, Access::Write, gpa1, false))
            return false;
        phys_write(gpa0, value, first);
        phys_write(gpa1, value >> (8 * first), size - first);
        return true;
    }
    uint64_t gpa;
    if (!access_page(va, Access::Write, gpa, false))
        return false;
    phys_write(gpa, value, size);
    return true;
}

uint8_t* Mmu::host_for_rmw(uint64_t va, unsigned size, bool& fault)
{
    fault = false;
    if ((va & 0xfff) + size > 4096)
        return nullptr;
    const Entry* e = &m_tlb[view()][(va >> 12) % k_entries];
    if (e->write_tag != (va & ~0xfffull)) {
        uint64_t gpa;
        if (!check_canonical(va) || !access_page(va, Access::Write, gpa, false)) {
            fault = true;
            return nullptr;
        }
        e = &m_tlb[view()][(va >> 12) % k_entries];
        if (e->write_tag != (va & ~0xfffull))
            return nullptr; // MMIO, ROM or a page with code
    }
    return e->host + (va & 0xfff);
}

size_t Mmu::fetch(uint64_t va, uint8_t* out, size_t len, uint64_t& gpa)
{
    if (!check_canonical(va))
        return 0;
    if (!access_page(va, Access::Exec, gpa, false))
        return 0;
    size_t n = std::min<size_t>(len, 4096 - (va & 0xfff));
    bool writable;
    if (uint8_t* host = m_bus.ram_page(gpa & ~0xfffull, writable)) {
        memcpy(out, host + (gpa & 0xfff), n);
        return n;
    }
    for (size_t i = 0; i < n; i++)
        out[i] = uint8_t(m_bus.mmio_read(gpa + i, 1));
    return n;
}

} // namespace emu::x86
