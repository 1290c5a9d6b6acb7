#include "engine/x86/msr.h"

#include <x86intrin.h>

namespace emu::x86 {

namespace {

bool canonical(uint64_t v) { return int64_t(v << 16) >> 16 == int64_t(v); }

uint64_t* mtrr_slot(CpuState& s, uint32_t index)
{
    if (index >= MSR_MTRR_PHYS_BASE0 && index < MSR_MTRR_PHYS_BASE0 + 16)
        return &s.mtrr_var[index - MSR_MTRR_PHYS_BASE0];
    if (index == MSR_MTRR_FIX64K)
        return &s.mtrr_fixed[0];
    if (index == MSR_MTRR_FIX16K_80000)
        return &s.mtrr_fixed[1];
    if (index == MSR_MTRR_FIX16K_A0000)
        return &s.mtrr_fixed[2];
    if (index >= MSR_MTRR_FIX4K_C0000 && index <= MSR_MTRR_FIX4K_C0000 + 7)
        return &s.mtrr_fixed[3 + index - MSR_MTRR_FIX4K_C0000];
    if (index == MSR_MTRR_DEF_TYPE)
        return &s.mtrr_def_type;
    return nullptr;
}

} // namespace

bool read_msr(const CpuState& s, uint32_t index, uint64_t& v)
{
    switch (index) {
    case MSR_TSC:
        v = __rdtsc() + s.tsc_offset;
        return true;
    case MSR_APIC_BASE:
        v = s.apic_base;
        return true;
    case MSR_MTRRCAP:
        v = s.mtrr_cap;
        return true;
    case MSR_MCG_CAP: // machine-check architecture with no reporting banks
    case MSR_MCG_STATUS:
        v = 0;
        return true;
    case MSR_SYSENTER_CS:
        v = s.sysenter_cs;
        return true;
    case MSR_SYSENTER_ESP:
        v = s.sysenter_esp;
        return true;
    case MSR_SYSENTER_EIP:
        v = s.sysenter_eip;
        return true;
    case MSR_MISC_ENABLE:
        v = s.misc_enable;
        return true;
    case MSR_PAT:
        v = s.pat;
        return true;
    case MSR_EFER:
        v = s.efer;
        return true;
    case MSR_STAR:
        v = s.star;
        return true;
    case MSR_LSTAR:
        v = s.lstar;
        return true;
    case MSR_CSTAR:
        v = s.cstar;
        return true;
    case MSR_SFMASK:
        v = s.sfmask;
        return true;
    case MSR_FS_BASE:
        v = s.seg[FS].base;
        return true;
    case MSR_GS_BASE:
        v = s.seg[GS].base;
        return true;
    case MSR_KERNEL_GS_BASE:
        v = s.kernel_gs_base;
        return true;
    case MSR_TSC_AUX:
        v = s.tsc_aux;
        return true;
    default:
        if (uint64_t* slot = mtrr_slot(const_cast<CpuState&>(s), index)) {
            v = *slot;
            return true;
        }
        return false;
    }
}

bool write_msr(CpuState& s, uint32_t index, uint64_t v)
{
    switch (index) {
    case MSR_TSC:
        s.tsc_offset = v - __rdtsc();
        return true;
    case MSR_APIC_BASE:
        if (v & 0xffffff00000006ffull)
            return false;
        s.apic_base = v;
        return true;
    case MSR_SYSENTER_CS:
        s.sysenter_cs = v & 0xffff;
        return true;
    case MSR_MCG_STATUS:
        return v == 0;
    case MSR_SYSENTER_ESP:
        s.sysenter_esp = v;
        return true;
    case MSR_SYSENTER_EIP:
        s.sysenter_eip = v;
        return true;
    case MSR_MISC_ENABLE:
        s.misc_enable = v;
        return true;
    case MSR_PAT:
        for (int i = 0; i < 8; i++) {
            unsigned t = (v >> (8 * i)) & 0xff;
            if (t == 2 || t == 3 || t > 7)
                return false;
        }
        s.pat = v;
        return true;
    case MSR_EFER: {
        uint64_t allowed = EFER_SCE | EFER_LME | EFER_NXE;
        if (v & ~(allowed | EFER_LMA))
            return false;
        // LME may not change while paging is on; LMA is read-only.
        if ((s.cr0 & CR0_PG) && ((v ^ s.efer) & EFER_LME))
            return false;
        s.efer = (v & allowed) | (s.efer & EFER_LMA);
        return true;
    }
    case MSR_STAR:
        s.star = v;
        return true;
    case MSR_LSTAR:
    case MSR_CSTAR:
    case MSR_FS_BASE:
    case MSR_GS_BASE:
    case MSR_KERNEL_GS_BASE:
        if (!canonical(v))
            return false;
        if (index == MSR_LSTAR)
            s.lstar = v;
        else if (index == MSR_CSTAR)
            s.cstar = v;
        else if (index == MSR_FS_BASE)
            s.seg[FS].base = v;
        else if (index == MSR_GS_BASE)
            s.seg[GS].base = v;
        else
            s.kernel_gs_base = v;
        return true;
    case MSR_SFMASK:
        s.sfmask = uint32_t(v);
        return true;
    case MSR_TSC_AUX:
        s.tsc_aux = uint32_t(v);
        return true;
    default:
        if (uint64_t* slot = mtrr_slot(s, index)) {
            *slot = v;
            return true;
        }
        return false;
    }
}

} // namespace emu::x86
