// engine/x86/helpers_xsave.cpp — debug registers and the XSAVE family for
// the x87 and SSE state components.
#include "common/log.h"
#include "engine/x86/env.h"
#include "engine/x86/flags.h"

#include <cstring>

namespace emu::x86 {

namespace {

constexpr uint64_t k_xcr0_supported = 3; // x87 | SSE

bool gp0(CpuEnv& env)
{
    env.raise(13, true, 0);
    return false;
}

} // namespace

// mov to/from DRn: a = n | write << 8, b = value. Returns the value read.
uint64_t helper_MovDr(CpuEnv& env, uint64_t desc, uint64_t value, uint64_t)
{
    CpuState& s = env.s;
    unsigned n = desc & 0xff;
    bool write = desc & 0x100;
    if (s.cpl() != 0)
        return gp0(env);
    if (n == 4 || n == 5) {
        if (s.cr4 & CR4_DE) {
            env.raise(6);
            return 0;
        }
        n += 2; // DR4/DR5 alias DR6/DR7 without CR4.DE
    }
    if (n > 7) {
        env.raise(6);
        return 0;
    }
    if (!write)
        return s.dr[n];
    if ((n == 6 || n == 7) && (value >> 32)) // the upper half is reserved
        return gp0(env);
    if (n == 6)
        value = (value & 0xe00f) | 0xffff0ff0;
    if (n == 7) {
        value = (value & 0xffff2bff) | 0x400;
        // Breakpoints are not implemented: say so once when a guest enables one.
        static bool warned = false;
        if ((value & 0xff) && !warned) {
            warned = true;
            log_warn("x86: DR7 enables hardware breakpoints; they are not implemented and will not fire");
        }
    }
    s.dr[n] = value;
    return 0;
}

uint64_t helper_Xgetbv(CpuEnv& env, uint64_t, uint64_t, uint64_t)
{
    CpuState& s = env.s;
    if (!(s.cr4 & CR4_OSXSAVE)) {
        env.raise(6);
        return 0;
    }
    if (uint32_t(s.regs[RCX]) != 0)
        return gp0(env);
    s.regs[RAX] = uint32_t(s.xcr0);
    s.regs[RDX] = s.xcr0 >> 32;
    return 0;
}

uint64_t helper_Xsetbv(CpuEnv& env, uint64_t, uint64_t, uint64_t)
{
    CpuState& s = env.s;
    if (!(s.cr4 & CR4_OSXSAVE)) {
        env.raise(6);
        return 0;
    }
    uint64_t v = (s.regs[RDX] << 32) | uint32_t(s.regs[RAX]);
    if (s.cpl() != 0 || uint32_t(s.regs[RCX]) != 0 || !(v & 1) || (v & ~k_xcr0_supported))
        return gp0(env);
    s.xcr0 = v;
    return 0;
}

// xsave / xrstor: a = address, b = 0 save / 1 restore.
uint64_t helper_Xsave(CpuEnv& env, uint64_t address, uint64_t restore, uint64_t)
{
    CpuState& s = env.s;
    if (!(s.cr4 & CR4_OSXSAVE)) {
        env.raise(6);
        return 0;
    }
    if (s.cr0 & CR0_TS) {
        env.raise(7);
        return 0;
    }
    if (address & 63)
        return gp0(env);
    uint64_t rfbm = s.xcr0 & ((s.regs[RDX] << 32) | uint32_t(s.regs[RAX]));
    auto copy_out = [&](unsigned off, unsigned len) {
        for (unsigned i = 0; i < len; i += 8) {
            uint64_t v;
            memcpy(&v, s.fx + off + i, 8);
            if (!env.mmu.store(address + off + i, 8, v))
                return false;
        }
        return true;
    };
    if (!restore) {
        // Check the whole area first: nothing is written if a page faults.
        uint64_t gpa;
        if (!env.mmu.translate(address, Access::Write, gpa) || !env.mmu.translate(address + 575, Access::Write, gpa))
            return 0;
        if (rfbm & 1) {
            if (!copy_out(0, 24) || !copy_out(32, 128)) // FCW..FDP, ST0-7
                return 0;
        }
        if (rfbm & 2) {
            if (!copy_out(24, 8) || !copy_out(160, 256)) // MXCSR(+mask), XMM0-15
                return 0;
        } else if (rfbm & 1) {
            // MXCSR is saved with either component.
        }
        uint64_t bv = 0;
        if (!env.mmu.load(address + 512, 8, bv))
            return 0;
        bv = (bv & ~rfbm) | rfbm;
        env.mmu.store(address + 512, 8, bv);
        return 0;
    }
    // xrstor: the header must be sane and standard (not compacted).
    uint64_t bv = 0, comp = 0, reserved = 0;
    if (!env.mmu.load(address + 512, 8, bv) || !env.mmu.load(address + 520, 8, comp) ||
        !env.mmu.load(address + 528, 8, reserved))
        return 0;
    if ((bv & ~k_xcr0_supported) || comp != 0 || reserved != 0)
        return gp0(env);
    uint8_t image[512];
    memcpy(image, s.fx, sizeof image);
    auto copy_in = [&](unsigned off, unsigned len) {
        for (unsigned i = 0; i < len; i += 8) {
            uint64_t v;
            if (!env.mmu.load(address + off + i, 8, v))
                return false;
            memcpy(image + off + i, &v, 8);
        }
        return true;
    };
    if (rfbm & 1) {
        if (bv & 1) {
            if (!copy_in(0, 24) || !copy_in(32, 128))
                return 0;
        } else {
            // Initial x87 state.
            memset(image, 0, 24);
            memset(image + 32, 0, 128);
            uint16_t fcw = 0x037f;
            memcpy(image, &fcw, 2);
        }
    }
    if (rfbm & 2) {
        if (bv & 2) {
            uint64_t mx = 0;
            if (!env.mmu.load(address + 24, 4, mx))
                return 0;
            if (mx & ~0xffffull)
                return gp0(env);
            if (!copy_in(160, 256))
                return 0;
            uint32_t m32 = uint32_t(mx);
            memcpy(image + 24, &m32, 4);
        } else {
            memset(image + 160, 0, 256);
            uint32_t mx = 0x1f80;
            memcpy(image + 24, &mx, 4);
        }
    }
    memcpy(s.fx, image, sizeof image);
    return 0;
}

} // namespace emu::x86
