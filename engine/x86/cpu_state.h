// engine/x86/cpu_state.h — the architectural state of one x86 vCPU.
//
// Arithmetic flags are lazy: an instruction that sets them records how
// (cc_op, cc_res, cc_src1, cc_src2) and engine/x86/flags.cpp computes them
// only when something reads them. The other EFLAGS bits live in 'eflags'.
#pragma once

#include <cstddef>
#include <cstdint>

namespace emu::x86 {

enum Gpr : uint8_t { RAX, RCX, RDX, RBX, RSP, RBP, RSI, RDI, R8, R9, R10, R11, R12, R13, R14, R15 };
enum SegReg : uint8_t { ES, CS, SS, DS, FS, GS };

// EFLAGS bits.
inline constexpr uint64_t CF = 1u << 0, PF = 1u << 2, AF = 1u << 4, ZF = 1u << 6, SF = 1u << 7, TF = 1u << 8,
                          IF = 1u << 9, DF = 1u << 10, OF = 1u << 11, IOPL = 3u << 12, NT = 1u << 14,
                          RF = 1u << 16, VM = 1u << 17, AC = 1u << 18, VIF = 1u << 19, VIP = 1u << 20,
                          ID = 1u << 21;
inline constexpr uint64_t ARITH_FLAGS = CF | PF | AF | ZF | SF | OF;

// Control register bits used by the engine.
inline constexpr uint64_t CR0_PE = 1u << 0, CR0_MP = 1u << 1, CR0_EM = 1u << 2, CR0_TS = 1u << 3,
                          CR0_ET = 1u << 4, CR0_NE = 1u << 5, CR0_WP = 1u << 16, CR0_AM = 1u << 18,
                          CR0_NW = 1u << 29, CR0_CD = 1u << 30, CR0_PG = 1u << 31;
inline constexpr uint64_t CR4_VME = 1u << 0, CR4_PVI = 1u << 1, CR4_TSD = 1u << 2, CR4_DE = 1u << 3,
                          CR4_PSE = 1u << 4, CR4_PAE = 1u << 5, CR4_MCE = 1u << 6, CR4_PGE = 1u << 7,
                          CR4_PCE = 1u << 8, CR4_OSFXSR = 1u << 9, CR4_OSXMMEXCPT = 1u << 10,
                          CR4_UMIP = 1u << 11, CR4_FSGSBASE = 1u << 16, CR4_PCIDE = 1u << 17,
                          CR4_OSXSAVE = 1u << 18, CR4_SMEP = 1u << 20, CR4_SMAP = 1u << 21;
inline constexpr uint64_t EFER_SCE = 1u << 0, EFER_LME = 1u << 8, EFER_LMA = 1u << 10, EFER_NXE = 1u << 11;

// A segment register's hidden part (the descriptor cache).
struct Segment {
    uint16_t selector = 0;
    uint64_t base = 0;
    uint32_t limit = 0xffff;
    // Descriptor attribute bits: type (0-3), S (4), DPL (5-6), P (7), AVL (12),
    // L (13), D/B (14), G (15) — descriptor bits 40-47 and 52-55.
    uint16_t attr = 0x93;
};

struct DescriptorTable {
    uint64_t base = 0;
    uint32_t limit = 0xffff;
};

// Mode bits that decoding and translation depend on (part of a block's key).
enum HFlags : uint32_t {
    HF_CPL_MASK = 3,
    HF_PE = 1u << 2,   // protected mode
    HF_LMA = 1u << 3,  // long mode active
    HF_CS64 = 1u << 4, // 64-bit code segment
    HF_CS32 = 1u << 5, // 32-bit default operand size
    HF_SS32 = 1u << 6, // 32-bit stack
    HF_VM = 1u << 7,   // virtual-8086 mode
    HF_ADDSEG = 1u << 8, // DS/ES/SS have non-zero bases (16/32-bit modes)
    HF_SEGCHECK = 1u << 9, // CS/DS/ES/SS are not all flat: accesses check limits and types
};

struct CpuState {
    uint64_t regs[16] = {};
    uint64_t rip = 0;
    uint64_t eflags = 0x2; // bit 1 is always set
    // Lazy arithmetic flags.
    uint64_t cc_res = 0, cc_src1 = 0, cc_src2 = 0;
    uint32_t cc_op = 0; // FlagKind; 0 = arithmetic flags are in 'eflags'
    uint32_t hflags = 0;

    Segment seg[6];
    Segment ldtr, tr;
    DescriptorTable gdtr, idtr;
    uint64_t cr0 = CR0_ET, cr2 = 0, cr3 = 0, cr4 = 0, cr8 = 0;
    uint64_t efer = 0, xcr0 = 1;
    uint64_t dr[8] = {0, 0, 0, 0, 0xffff0ff0, 0x400, 0xffff0ff0, 0x400};

    // MSRs kept in the state (engine/x86/msr.cpp reads and writes them).
    uint64_t star = 0, lstar = 0, cstar = 0, sfmask = 0, kernel_gs_base = 0;
    uint64_t sysenter_cs = 0, sysenter_esp = 0, sysenter_eip = 0;
    uint64_t tsc_aux = 0, tsc_offset = 0, pat = 0x0007040600070406ull, misc_enable = 1;
    uint64_t apic_base = 0xfee00900;
    uint64_t mtrr_cap = 0x508, mtrr_def_type = 0, mtrr_fixed[11] = {}, mtrr_var[16] = {};

    // An exception raised while executing (a fault or a trap), to be
    // delivered by the run loop. -1: none.
    int32_t pending_vector = -1;
    uint32_t pending_error = 0;
    bool pending_has_error = false;
    bool interrupt_shadow = false; // after sti / mov ss: no interrupt before the next instruction
    bool halted = false;
    bool nmi_blocked = false; // from NMI delivery until the next IRET

    // x87/MMX/SSE state in FXSAVE layout (executed on the host unit).
    alignas(64) uint8_t fx[512] = {};

    unsigned cpl() const { return hflags & HF_CPL_MASK; }
};

inline constexpr size_t state_offset_regs = offsetof(CpuState, regs);

// The segment check of CheckSeg: false with #GP/#SS pending in 's' when the
// access of 'bytes' at 'offset' through segment 'seg' is not allowed.
bool segment_access_ok(CpuState& s, unsigned seg, uint64_t offset, unsigned bytes, bool write);

// Recomputes hflags from CR0, EFER, CS, SS and EFLAGS after any change to them.
void update_hflags(CpuState& s);

} // namespace emu::x86
