// engine/x86/helpers.cpp — the table of helpers and the arithmetic,
// string and flag helpers. System helpers live in helpers_system.cpp.
#include "engine/x86/helpers.h"

#include "common/log.h"
#include "engine/x86/env.h"
#include "engine/x86/flags.h"

#include <Zydis/Zydis.h>
#include <mutex>
#include <set>

namespace emu::x86 {

#define HELPER(name) uint64_t helper_##name(CpuEnv& env, uint64_t a, uint64_t b, uint64_t c);
#include "engine/x86/helpers.inc"
#undef HELPER

namespace {

constexpr HelperFn k_helpers[] = {
#define HELPER(name) helper_##name,
#include "engine/x86/helpers.inc"
#undef HELPER
};

constexpr const char* k_helper_names[] = {
#define HELPER(name) #name,
#include "engine/x86/helpers.inc"
#undef HELPER
};

uint64_t mask_of(unsigned bytes) { return bytes >= 8 ? ~0ull : (1ull << (8 * bytes)) - 1; }

void set_gpr_sized(CpuState& s, unsigned reg, uint64_t v, unsigned bytes)
{
    if (bytes == 8)
        s.regs[reg] = v;
    else if (bytes == 4)
        s.regs[reg] = uint32_t(v);
    else
        s.regs[reg] = (s.regs[reg] & ~mask_of(bytes)) | (v & mask_of(bytes));
}

} // namespace

HelperFn helper_fn(Helper h) { return k_helpers[static_cast<unsigned>(h)]; }
const char* helper_name(Helper h) { return k_helper_names[static_cast<unsigned>(h)]; }

uint64_t helper_Undefined(CpuEnv& env, uint64_t rip, uint64_t mnemonic, uint64_t)
{
    // Logged once per mnemonic: a guest can run it in a loop.
    static std::mutex mutex;
    static std::set<uint64_t> seen;
    {
        std::lock_guard lock(mutex);
        if (seen.insert(mnemonic).second)
            log_warn("x86: {} at {:#x} is not implemented: raising #UD in the guest",
                     ZydisMnemonicGetString(ZydisMnemonic(mnemonic)), rip);
    }
    env.raise(6);
    return 0;
}

uint64_t helper_RaiseFault(CpuEnv& env, uint64_t vector, uint64_t error, uint64_t)
{
    env.raise(int(vector), error != ~0ull, uint32_t(error));
    return 0;
}

uint64_t helper_RaiseTrap(CpuEnv& env, uint64_t vector, uint64_t kind, uint64_t)
{
    // kind: 0 = int1 (icebp), 1 = int n / int3 (software: the gate's DPL is
    // checked), 2 = into (only when OF is set).
    if (kind == 2 && !(compute_arith_flags(env.s) & OF))
        return 0;
    env.raise(int(vector), false, 0, true);
    env.software_interrupt = kind != 0;
    return 0;
}

uint64_t helper_Div(CpuEnv& env, uint64_t divisor, uint64_t desc, uint64_t)
{
    CpuState& s = env.s;
    unsigned n = desc & 0xff;
    bool is_signed = desc & 0x100;
    uint64_t m = mask_of(n);
    divisor &= m;
    if (divisor == 0) {
        env.raise(0);
        return 0;
    }
    unsigned bits = 8 * n;
    unsigned __int128 dividend;
    if (n == 1)
        dividend = s.regs[RAX] & 0xffff;
    else if (n == 8)
        dividend = (unsigned __int128)s.regs[RDX] << 64 | s.regs[RAX];
    else
        dividend = ((unsigned __int128)(s.regs[RDX] & m) << bits) | (s.regs[RAX] & m);
    uint64_t q, r;
    if (!is_signed) {
        unsigned __int128 quot = dividend / divisor;
        if (quot > m) {
            env.raise(0);
            return 0;
        }
        q = uint64_t(quot);
        r = uint64_t(dividend % divisor);
    } else {
        // Sign-extend the 2n-bit dividend and the n-bit divisor.
        __int128 sd = (__int128)(dividend << (128 - 2 * bits)) >> (128 - 2 * bits);
        int64_t sv = int64_t(divisor << (64 - bits)) >> (64 - bits);
        if (n == 8 && sd == (__int128)INT64_MIN && sv == -1) {
            env.raise(0);
            return 0;
        }
        __int128 quot = sd / sv;
        __int128 lim = (__int128)1 << (bits - 1);
        if (quot >= lim || quot < -lim) {
            env.raise(0);
            return 0;
        }
        q = uint64_t(quot) & m;
        r = uint64_t(sd % sv) & m;
    }
    if (n == 1) {
        s.regs[RAX] = (s.regs[RAX] & ~0xffffull) | (r << 8) | q;
    } else {
        set_gpr_sized(s, RAX, q, n);
        set_gpr_sized(s, RDX, r, n);
    }
    return 0;
}

uint64_t helper_Rotate(CpuEnv& env, uint64_t value, uint64_t count, uint64_t desc)
{
    CpuState& s = env.s;
    unsigned n = desc & 0xff, which = (desc >> 8) & 0xff;
    bool want_flags = desc & (1 << 16);
    unsigned bits = 8 * n;
    uint64_t m = mask_of(n);
    value &= m;
    unsigned c = unsigned(count) & (n == 8 ? 63 : 31);
    uint64_t flags = read_eflags(s);
    bool cf = flags & CF;
    uint64_t res = value;
    if (which <= 1) {
        if (c == 0)
            return want_flags ? flags : value;
        unsigned r = c % bits;
        if (which == 0) {
            res = r ? ((value << r) | (value >> (bits - r))) & m : value;
            cf = res & 1;
            bool of = bool(res >> (bits - 1)) != cf;
            flags = (flags & ~(CF | OF)) | (cf ? CF : 0) | (of ? OF : 0);
        } else {
            res = r ? ((value >> r) | (value << (bits - r))) & m : value;
            cf = (res >> (bits - 1)) & 1;
            bool of = ((res >> (bits - 1)) ^ (res >> (bits - 2))) & 1;
            flags = (flags & ~(CF | OF)) | (cf ? CF : 0) | (of ? OF : 0);
        }
    } else {
        // Through the carry: a (bits+1)-bit rotation.
        unsigned r = n <= 2 ? c % (bits + 1) : c;
        if (r == 0)
            return want_flags ? flags : value;
        for (unsigned i = 0; i < r; i++) {
            if (which == 2) {
                bool out = (res >> (bits - 1)) & 1;
                res = ((res << 1) | (cf ? 1 : 0)) & m;
                cf = out;
            } else {
                bool out = res & 1;
                res = (res >> 1) | (cf ? (1ull << (bits - 1)) : 0);
                cf = out;
            }
        }
        bool of = which == 2 ? (bool((res >> (bits - 1)) & 1) != cf)
                             : bool(((res >> (bits - 1)) ^ (res >> (bits - 2))) & 1);
        flags = (flags & ~(CF | OF)) | (cf ? CF : 0) | (of ? OF : 0);
    }
    return want_flags ? flags : res;
}

uint64_t helper_BitScan(CpuEnv& env, uint64_t value, uint64_t desc, uint64_t old)
{
    CpuState& s = env.s;
    unsigned n = desc & 0xff, which = (desc >> 8) & 0xff;
    unsigned bits = 8 * n;
    value &= mask_of(n);
    uint64_t res;
    uint64_t f = 0;
    switch (which) {
    case 0: // bsf
    case 1: // bsr
        if (value == 0) {
            write_eflags(s, ZF, ZF | CF | OF | SF | AF | PF);
            return old;
        }
        res = which == 0 ? __builtin_ctzll(value) : 63 - __builtin_clzll(value);
        write_eflags(s, 0, ZF | CF | OF | SF | AF | PF);
        return res;
    case 2: // tzcnt
        res = value ? __builtin_ctzll(value) : bits;
        f = (value == 0 ? CF : 0) | (res == 0 ? ZF : 0);
        write_eflags(s, f, ZF | CF | OF | SF | AF | PF);
        return res;
    case 3: // lzcnt
        res = value ? __builtin_clzll(value) - (64 - bits) : bits;
        f = (value == 0 ? CF : 0) | (res == 0 ? ZF : 0);
        write_eflags(s, f, ZF | CF | OF | SF | AF | PF);
        return res;
    default: // popcnt
        res = __builtin_popcountll(value);
        write_eflags(s, value == 0 ? ZF : 0, ZF | CF | OF | SF | AF | PF);
        return res;
    }
}

uint64_t helper_Popf(CpuEnv& env, uint64_t value, uint64_t bytes, uint64_t)
{
    CpuState& s = env.s;
    unsigned cpl = s.cpl();
    unsigned iopl = (s.eflags & IOPL) >> 12;
    if ((s.eflags & VM) && iopl < 3) {
        env.raise(13, true, 0);
        return 0;
    }
    uint64_t mask = ARITH_FLAGS | TF | DF | NT | AC | ID;
    if (cpl == 0)
        mask |= IOPL;
    if (cpl <= iopl)
        mask |= IF;
    if (bytes == 2)
        mask &= 0xffff;
    write_eflags(s, value, mask);
    env.mode_changed = true;
    return 0;
}

uint64_t helper_V86Iopl(CpuEnv& env, uint64_t, uint64_t, uint64_t)
{
    if ((env.s.eflags & VM) && ((env.s.eflags & IOPL) >> 12) != 3)
        env.raise(13, true, 0);
    return 0;
}

// --- string instructions --------------------------------------------------------

bool io_permitted(CpuEnv& env, uint16_t port, unsigned bytes); // helpers_system.cpp

uint64_t helper_StringOp(CpuEnv& env, uint64_t desc, uint64_t rip, uint64_t)
{
    CpuState& s = env.s;
    unsigned op = desc & 0xff, n = (desc >> 8) & 0xff, rep = (desc >> 16) & 0xff;
    unsigned addr_bytes = (desc >> 24) & 0xff, seg = (desc >> 32) & 0xff, length = (desc >> 40) & 0xff;
    uint64_t next = rip + length;
    uint64_t amask = mask_of(addr_bytes);
    bool long64 = s.hflags & HF_CS64;
    int64_t step = (s.eflags & DF) ? -int64_t(n) : int64_t(n);
    bool check = !long64 && ((s.hflags & HF_SEGCHECK) || seg == FS || seg == GS);
    auto seg_ok = [&](unsigned sg, uint64_t off, bool write) {
        return !check || segment_access_ok(s, sg, off & amask, n, write);
    };
    if ((op == 5 || op == 6) && !io_permitted(env, uint16_t(s.regs[RDX]), n)) {
        env.raise(13, true, 0);
        return rip;
    }
    auto linear = [&](unsigned sg, uint64_t off) -> uint64_t {
        if (long64)
            return (sg == FS || sg == GS) ? s.seg[sg].base + off : off;
        return (s.seg[sg].base + off) & 0xffffffffull;
    };
    auto advance = [&](unsigned reg) {
        uint64_t v = (s.regs[reg] + uint64_t(step)) & amask;
        set_gpr_sized(s, reg, v, addr_bytes);
    };
    // A bounded chunk of iterations; the instruction runs again for the rest,
    // so interrupts are seen in long copies.
    unsigned budget = rep ? 4096 : 1;
    while (budget--) {
        if (rep && (s.regs[RCX] & amask) == 0)
            return next;
        uint64_t v = 0;
        bool stop = false;
        switch (op) {
        case 0: // movs
            if (!seg_ok(seg, s.regs[RSI], false) || !seg_ok(ES, s.regs[RDI], true))
                return rip;
            if (!env.mmu.load(linear(seg, s.regs[RSI] & amask), n, v) ||
                !env.mmu.store(linear(ES, s.regs[RDI] & amask), n, v))
                return rip;
            advance(RSI);
            advance(RDI);
            break;
        case 1: // stos
            if (!seg_ok(ES, s.regs[RDI], true))
                return rip;
            if (!env.mmu.store(linear(ES, s.regs[RDI] & amask), n, s.regs[RAX] & mask_of(n)))
                return rip;
            advance(RDI);
            break;
        case 2: // lods
            if (!seg_ok(seg, s.regs[RSI], false))
                return rip;
            if (!env.mmu.load(linear(seg, s.regs[RSI] & amask), n, v))
                return rip;
            set_gpr_sized(s, RAX, v, n);
            advance(RSI);
            break;
        case 3:   // cmps
        case 4: { // scas
            uint64_t a, b2;
            if ((op == 3 && !seg_ok(seg, s.regs[RSI], false)) || !seg_ok(ES, s.regs[RDI], false))
                return rip;
            if (op == 3) {
                if (!env.mmu.load(linear(seg, s.regs[RSI] & amask), n, a) ||
                    !env.mmu.load(linear(ES, s.regs[RDI] & amask), n, b2))
                    return rip;
                advance(RSI);
            } else {
                a = s.regs[RAX] & mask_of(n);
                if (!env.mmu.load(linear(ES, s.regs[RDI] & amask), n, b2))
                    return rip;
            }
            advance(RDI);
            s.cc_op = flag_kind(FlagOp::Sub, n);
            s.cc_src1 = a;
            s.cc_src2 = b2;
            s.cc_res = (a - b2) & mask_of(n);
            bool zf = s.cc_res == 0;
            if ((rep == 1 && !zf) || (rep == 2 && zf))
                stop = true;
            break;
        }
        case 5: // ins
            if (!seg_ok(ES, s.regs[RDI], true))
                return rip;
            v = env.bus.port_read(uint16_t(s.regs[RDX]), n);
            if (!env.mmu.store(linear(ES, s.regs[RDI] & amask), n, v))
                return rip;
            advance(RDI);
            break;
        default: // outs
            if (!seg_ok(seg, s.regs[RSI], false))
                return rip;
            if (!env.mmu.load(linear(seg, s.regs[RSI] & amask), n, v))
                return rip;
            env.bus.port_write(uint16_t(s.regs[RDX]), v, n);
            advance(RSI);
            break;
        }
        if (rep)
            set_gpr_sized(s, RCX, (s.regs[RCX] - 1) & amask, addr_bytes);
        if (stop || !rep)
            return next;
    }
    return (s.regs[RCX] & amask) == 0 ? next : rip;
}

} // namespace emu::x86
