#include "engine/x86/dump.h"

#include "engine/x86/flags.h"

#include <cstring>
#include <fmt/format.h>

namespace emu::x86 {

namespace {

// "[-ODITSZAPC]"-style letters, '-' where the bit is clear (QEMU's order).
std::string flag_letters(uint64_t f)
{
    std::string out = "[";
    out += (f & DF) ? 'D' : '-';
    out += (f & OF) ? 'O' : '-';
    out += (f & SF) ? 'S' : '-';
    out += (f & ZF) ? 'Z' : '-';
    out += (f & AF) ? 'A' : '-';
    out += (f & PF) ? 'P' : '-';
    out += (f & CF) ? 'C' : '-';
    return out + "]";
}

std::string segment_line(const char* name, const Segment& sg, bool long_mode, bool system)
{
    // Attributes as descriptor bits 8-23 of the high dword (QEMU shows flags << 8).
    uint32_t flags = (uint32_t(sg.attr & 0xff) << 8) | (uint32_t(sg.attr & 0xf000) << 8);
    std::string line = fmt::format("{:<3}={:04x} {:016x} {:08x} {:08x}", name, sg.selector, sg.base, sg.limit, flags);
    if (!(sg.attr & 0x80))
        return line;
    line += fmt::format(" DPL={}", (sg.attr >> 5) & 3);
    if (system) {
        return line;
    }
    if (sg.attr & 0x10) { // code or data
        if (sg.attr & 0x08) {
            line += (long_mode && (sg.attr & 0x2000)) ? " CS64" : (sg.attr & 0x4000) ? " CS32" : " CS16";
            line += fmt::format(" [{}{}{}]", (sg.attr & 0x4) ? 'C' : '-', (sg.attr & 0x2) ? 'R' : '-',
                                (sg.attr & 0x1) ? 'A' : '-');
        } else {
            line += (sg.attr & 0x4000) ? " DS  " : " DS16";
            line += fmt::format(" [{}{}{}]", (sg.attr & 0x4) ? 'E' : '-', (sg.attr & 0x2) ? 'W' : '-',
                                (sg.attr & 0x1) ? 'A' : '-');
        }
    }
    return line;
}

} // namespace

std::string format_registers(const CpuState& s)
{
    std::string out;
    static const char* const names[16] = {"RAX", "RCX", "RDX", "RBX", "RSP", "RBP", "RSI", "RDI",
                                          "R8 ", "R9 ", "R10", "R11", "R12", "R13", "R14", "R15"};
    // QEMU's order: RAX RBX RCX RDX / RSI RDI RBP RSP / R8.. R15.
    static const int order[16] = {RAX, RBX, RCX, RDX, RSI, RDI, RBP, RSP, R8, R9, R10, R11, R12, R13, R14, R15};
    for (int i = 0; i < 16; i++)
        out += fmt::format("{}={:016x}{}", names[order[i]], s.regs[order[i]], (i % 4 == 3) ? "\n" : " ");
    uint64_t fl = read_eflags(s);
    out += fmt::format("RIP={:016x} RFL={:08x} {} CPL={} II={} A20=1 SMM=0 HLT={}\n", s.rip, fl, flag_letters(fl),
                       s.cpl(), s.interrupt_shadow ? 1 : 0, s.halted ? 1 : 0);
    bool lma = s.efer & EFER_LMA;
    static const char* const seg_names[6] = {"ES", "CS", "SS", "DS", "FS", "GS"};
    for (int i = 0; i < 6; i++)
        out += segment_line(seg_names[i], s.seg[i], lma, false) + "\n";
    out += segment_line("LDT", s.ldtr, lma, true) + "\n";
    out += segment_line("TR", s.tr, lma, true) + "\n";
    out += fmt::format("GDT=     {:016x} {:08x}\n", s.gdtr.base, s.gdtr.limit);
    out += fmt::format("IDT=     {:016x} {:08x}\n", s.idtr.base, s.idtr.limit);
    out += fmt::format("CR0={:08x} CR2={:016x} CR3={:016x} CR4={:08x}\n", s.cr0, s.cr2, s.cr3, s.cr4);
    for (int i = 0; i < 4; i++)
        out += fmt::format("DR{}={:016x} ", i, s.dr[i]);
    out += fmt::format("\nDR6={:016x} DR7={:016x}\n", s.dr[6], s.dr[7]);
    out += fmt::format("EFER={:016x}\n", s.efer);
    uint16_t fcw, fsw;
    uint32_t mxcsr;
    std::memcpy(&fcw, s.fx + 0, 2);
    std::memcpy(&fsw, s.fx + 2, 2);
    std::memcpy(&mxcsr, s.fx + 24, 4);
    out += fmt::format("FCW={:04x} FSW={:04x} [ST={}] FTW={:02x} MXCSR={:08x}\n", fcw, fsw, (fsw >> 11) & 7, s.fx[4],
                       mxcsr);
    return out;
}

} // namespace emu::x86
