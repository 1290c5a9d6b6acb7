#include "engine/x86/flags.h"

namespace emu::x86 {

namespace {

inline uint64_t width_mask(unsigned log) { return log == 3 ? ~0ull : (1ull << (8u << log)) - 1; }
inline uint64_t sign_bit(unsigned log) { return 1ull << ((8u << log) - 1); }

inline uint64_t parity(uint64_t res)
{
    return (__builtin_popcount(unsigned(res & 0xff)) & 1) ? 0 : PF;
}

} // namespace

uint64_t compute_arith_flags(const CpuState& s)
{
    uint32_t kind = s.cc_op;
    FlagOp op = static_cast<FlagOp>(kind >> 2);
    if (op == FlagOp::Eflags)
        return s.eflags & ARITH_FLAGS;
    unsigned log = kind & 3;
    uint64_t mask = width_mask(log), sign = sign_bit(log);
    uint64_t res = s.cc_res & mask, a = s.cc_src1 & mask, b = s.cc_src2 & mask;
    uint64_t f = parity(res) | (res == 0 ? ZF : 0) | ((res & sign) ? SF : 0);
    switch (op) {
    case FlagOp::Add:
        f |= (res < a ? CF : 0) | (((a ^ ~b) & (a ^ res) & sign) ? OF : 0) | ((a ^ b ^ res) & AF);
        break;
    case FlagOp::Adc: {
        uint64_t cin = (res - a - b) & mask;
        bool carry = cin ? res <= a : res < a;
        f |= (carry ? CF : 0) | (((a ^ ~b) & (a ^ res) & sign) ? OF : 0) | ((a ^ b ^ res) & AF);
        break;
    }
    case FlagOp::Sub:
        f |= (a < b ? CF : 0) | (((a ^ b) & (a ^ res) & sign) ? OF : 0) | ((a ^ b ^ res) & AF);
        break;
    case FlagOp::Sbb: {
        uint64_t cin = (a - b - res) & mask;
        bool borrow = cin ? a <= b : a < b;
        f |= (borrow ? CF : 0) | (((a ^ b) & (a ^ res) & sign) ? OF : 0) | ((a ^ b ^ res) & AF);
        break;
    }
    case FlagOp::Logic:
        break;
    case FlagOp::Inc:
        f |= (s.cc_src2 & 1 ? CF : 0) | (res == sign ? OF : 0) | ((a ^ 1 ^ res) & AF);
        break;
    case FlagOp::Dec:
        f |= (s.cc_src2 & 1 ? CF : 0) | (res == sign - 1 ? OF : 0) | ((a ^ 1 ^ res) & AF);
        break;
    case FlagOp::Shl: {
        unsigned bits = 8u << log, n = unsigned(b);
        bool cf = n <= bits && ((a >> (bits - n)) & 1);
        f |= (cf ? CF : 0) | ((((res & sign) != 0) != cf) ? OF : 0);
        break;
    }
    case FlagOp::Shr: {
        unsigned n = unsigned(b);
        bool cf = (a >> (n - 1)) & 1;
        f |= (cf ? CF : 0) | ((a & sign) ? OF : 0);
        break;
    }
    case FlagOp::Sar: {
        unsigned n = unsigned(b), bits = 8u << log;
        uint64_t sa = (a & sign) ? (a | ~mask) : a;
        bool cf = n >= bits ? (a & sign) != 0 : ((int64_t(sa) >> (n - 1)) & 1);
        f |= cf ? CF : 0;
        break;
    }
    case FlagOp::Mul:
        f |= s.cc_src2 ? (CF | OF) : 0;
        break;
    case FlagOp::Eflags:
        break;
    }
    return f;
}

bool compute_carry(const CpuState& s) { return compute_arith_flags(s) & CF; }

bool compute_cond(const CpuState& s, unsigned cc)
{
    uint64_t f = compute_arith_flags(s);
    bool r = false;
    switch (cc >> 1) {
    case 0:
        r = f & OF;
        break;
    case 1:
        r = f & CF;
        break;
    case 2:
        r = f & ZF;
        break;
    case 3:
        r = f & (CF | ZF);
        break;
    case 4:
        r = f & SF;
        break;
    case 5:
        r = f & PF;
        break;
    case 6:
        r = bool(f & SF) != bool(f & OF);
        break;
    case 7:
        r = (f & ZF) || (bool(f & SF) != bool(f & OF));
        break;
    }
    return (cc & 1) ? !r : r;
}

void write_eflags(CpuState& s, uint64_t value, uint64_t mask)
{
    uint64_t current = read_eflags(s);
    s.eflags = ((current & ~mask) | (value & mask) | 2) & 0x3f7fd7;
    s.cc_op = 0;
}

} // namespace emu::x86
