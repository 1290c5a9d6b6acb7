// engine/x86/flags.h — lazy arithmetic flags.
//
// A flag-setting instruction stores (kind, result, src1, src2); readers
// compute only what they need. A kind is an operation and a width:
// kind = op * 4 + log2(bytes).
#pragma once

#include "engine/x86/cpu_state.h"

namespace emu::x86 {

enum class FlagOp : uint32_t {
    Eflags = 0, // flags already materialised in CpuState::eflags
    Add,        // res = src1 + src2
    Adc,        // res = src1 + src2 + CF (carry-in recovered from the values)
    Sub,        // res = src1 - src2 (also cmp, neg with src1 = 0)
    Sbb,        // res = src1 - src2 - CF
    Logic,      // and/or/xor/test: CF = OF = 0
    Inc,        // res = src1 + 1; src2 = CF before (kept)
    Dec,        // res = src1 - 1; src2 = CF before (kept)
    Shl,        // src1 = value, src2 = count (1..width-1 masked, non-zero)
    Shr,
    Sar,
    Mul,        // src2 != 0 means the high half is significant: CF = OF = 1
};

inline constexpr uint32_t flag_kind(FlagOp op, unsigned bytes)
{
    unsigned log = bytes == 1 ? 0 : bytes == 2 ? 1 : bytes == 4 ? 2 : 3;
    return static_cast<uint32_t>(op) * 4 + log;
}

// The arithmetic flag bits (CF PF AF ZF SF OF) as EFLAGS would hold them.
uint64_t compute_arith_flags(const CpuState& s);
// Condition code 0..15 (O NO B AE E NE BE A S NS P NP L GE LE G).
bool compute_cond(const CpuState& s, unsigned cc);
bool compute_carry(const CpuState& s);
// The whole EFLAGS register.
inline uint64_t read_eflags(const CpuState& s) { return (s.eflags & ~ARITH_FLAGS) | compute_arith_flags(s) | 2; }
// Writes EFLAGS bits under mask (arithmetic bits become materialised).
void write_eflags(CpuState& s, uint64_t value, uint64_t mask);

} // namespace emu::x86
