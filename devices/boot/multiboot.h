// devices/boot/multiboot.h — Multiboot (version 0.6.96, "multiboot 1") kernels.
//
// The header (magic 0x1badb002, flags, checksum) is searched 4-byte aligned
// in the first 8 KiB. Supported flags: bit 0 (modules page-aligned: they
// always are), bit 1 (memory information: always given), bit 16 (the a.out
// kludge: header_addr, load_addr, load_end_addr, bss_end_addr, entry_addr).
// Without bit 16 the image must be ELF (loaded by p_paddr, e_entry translated
// through its segment). Refused: bit 2 (video mode information: there is no
// VBE here) and any other bit among 3-15 ("must understand" bits).
//
// The info structure at layout.boot_params gives mem_lower/mem_upper, the
// command line ("<image name> <cmdline>", as GRUB passes it), modules (the
// -initrd list, page-aligned after the kernel, each with its entry text as
// its string), the memory map and the boot loader name "emud".
// Entry: 32-bit protected mode, no paging, flat CS 0x10 / data 0x18,
// EAX = 0x2badb002, EBX = the info structure, EIP = the entry.
#pragma once

#include "devices/boot/boot.h"

#include <optional>

namespace emu::devices::boot {

struct MultibootHeader {
    uint64_t offset = 0; // in the file
    uint32_t flags = 0;
    // The a.out kludge (flags bit 16).
    uint32_t header_addr = 0, load_addr = 0, load_end_addr = 0, bss_end_addr = 0, entry_addr = 0;

    static constexpr uint32_t kMagic = 0x1badb002, kBootMagic = 0x2badb002;
    static constexpr uint32_t kPageAlign = 1u << 0, kMemInfo = 1u << 1, kVideo = 1u << 2, kAoutKludge = 1u << 16;
    bool aout_kludge() const { return flags & kAoutKludge; }
};

// The offset of the first header with the magic and a valid checksum.
std::optional<uint64_t> find_multiboot_header(std::span<const uint8_t> image);
Result<MultibootHeader> parse_multiboot(std::string_view name, std::span<const uint8_t> image);
Result<BootPlan> plan_multiboot(std::string_view name, const Bytes& image, const BootConfig& config);

} // namespace emu::devices::boot
