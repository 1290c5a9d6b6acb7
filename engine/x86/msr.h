// engine/x86/msr.h — model-specific registers kept in the CPU state.
#pragma once

#include "engine/x86/cpu_state.h"

namespace emu::x86 {

enum Msr : uint32_t {
    MSR_TSC = 0x10,
    MSR_APIC_BASE = 0x1b,
    MSR_MTRRCAP = 0xfe,
    MSR_MCG_CAP = 0x179,
    MSR_MCG_STATUS = 0x17a,
    MSR_SYSENTER_CS = 0x174,
    MSR_SYSENTER_ESP = 0x175,
    MSR_SYSENTER_EIP = 0x176,
    MSR_MISC_ENABLE = 0x1a0,
    MSR_MTRR_PHYS_BASE0 = 0x200, // 0x200..0x20f: 8 base/mask pairs
    MSR_MTRR_FIX64K = 0x250,
    MSR_MTRR_FIX16K_80000 = 0x258,
    MSR_MTRR_FIX16K_A0000 = 0x259,
    MSR_MTRR_FIX4K_C0000 = 0x268, // ..0x26f
    MSR_PAT = 0x277,
    MSR_MTRR_DEF_TYPE = 0x2ff,
    MSR_EFER = 0xc0000080,
    MSR_STAR = 0xc0000081,
    MSR_LSTAR = 0xc0000082,
    MSR_CSTAR = 0xc0000083,
    MSR_SFMASK = 0xc0000084,
    MSR_FS_BASE = 0xc0000100,
    MSR_GS_BASE = 0xc0000101,
    MSR_KERNEL_GS_BASE = 0xc0000102,
    MSR_TSC_AUX = 0xc0000103,
};

// False for an unknown MSR or a value it does not accept: the caller raises #GP.
bool read_msr(const CpuState& s, uint32_t index, uint64_t& value);
bool write_msr(CpuState& s, uint32_t index, uint64_t value);

} // namespace emu::x86
