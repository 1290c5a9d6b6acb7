// devices/boot/elf.h — ELF kernels (ELF32 i386, ELF64 x86-64 executables),
// loaded by their program headers at the physical addresses (p_paddr).
//
// Entries, in the order EntryChoice::Auto picks them:
//   - PVH: a Xen ELF note XEN_ELFNOTE_PHYS32_ENTRY (18) gives a 32-bit
//     physical entry (Linux vmlinux with CONFIG_PVH has one). State: 32-bit
//     protected mode, no paging, flat CS (0x10) and data segments (0x18), TR a
//     busy 32-bit TSS, EBX = the hvm_start_info (version 1: command line,
//     modules = initrds, memory map, RSDP) at layout.boot_params.
//   - ELF64 without the note: the 64-bit entry of the Linux boot protocol at
//     the physical entry point (e_entry translated through its segment): long
//     mode with the 4 GiB identity map, RSI = a zero page with a made header.
//   - ELF32 without the note: the 32-bit boot protocol, ESI = that zero page.
// EntryChoice::Bit64 skips PVH for the 64-bit entry; Bit32 insists on PVH or
// ELF32. The initrd (one) goes high below 2 GiB, above the kernel.
#pragma once

#include "devices/boot/boot.h"

#include <optional>

namespace emu::devices::boot {

struct ElfSegment {
    uint64_t offset = 0, filesz = 0, memsz = 0, paddr = 0, vaddr = 0;
};

struct ElfImage {
    bool is64 = false;
    uint64_t entry = 0;      // e_entry as written (virtual)
    uint64_t entry_phys = 0; // translated through the loadable segment that holds it
    std::vector<ElfSegment> loads; // PT_LOAD with memsz > 0
    std::optional<uint32_t> pvh_entry;
    uint64_t lowest = 0, highest = 0; // physical span of the segments: [lowest, highest)
};

bool looks_like_elf(std::span<const uint8_t> image);
// Validates the ELF header, every program header and the notes; an error
// names the field ("vmlinux: program header 3: p_offset 0x... + p_filesz ...
// exceed the file").
Result<ElfImage> parse_elf(std::string_view name, std::span<const uint8_t> image);
// The kernel blobs of an ELF image (file bytes plus bss as zero_size).
std::vector<Blob> elf_blobs(const Bytes& image, const ElfImage& elf);

Result<BootPlan> plan_elf(std::string_view name, const Bytes& image, const BootConfig& config);

} // namespace emu::devices::boot
