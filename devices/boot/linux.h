// devices/boot/linux.h — the Linux/x86 boot protocol for bzImage kernels
// (Documentation/arch/x86/boot.rst and zero-page.rst of Linux), entered
// through the 32-bit or the 64-bit boot protocol: the loader does the work of
// the real-mode setup code and hands the kernel a filled zero page.
//
// Supported: protocol 2.06 and newer with LOADED_HIGH (bzImage); relocatable
// kernels are loaded at pref_address (2.10+) aligned to kernel_alignment,
// others at 1 MiB; the initrd goes as high as initrd_addr_max and the RAM run
// from 1 MiB allow, above the kernel's init_size footprint; the command line
// may be up to cmdline_size bytes. Refused: zImage and protocols before 2.06,
// several initrds. Not used: placement above 4 GiB (XLF_CAN_BE_LOADED_ABOVE_4G),
// EFI handover, setup_data (written 0), the real-mode setup code and its
// 16-bit entry (video mode setting needs a BIOS: vid_mode is "normal").
//
// The plan for the 64-bit entry (EntryChoice::Auto with XLF_KERNEL_64):
//   memory: kernel file bytes from (setup_sects+1)*512 at load (16 MiB for
//     Debian's kernel); zero page at layout.boot_params; command line at
//     layout.cmdline; initrd page-aligned near the top of the RAM run from
//     1 MiB (below initrd_addr_max, above load + init_size); GDT at
//     layout.gdt (0x10 64-bit code, 0x18 flat data, 0x20 TSS); 4-level page
//     tables at layout.page_tables identity-mapping 0-4 GiB with 2 MiB pages.
//   vCPU: long mode, CR0 = PE|ET|PG, CR4 = PAE, EFER = LME|LMA,
//     CR3 = layout.page_tables, CS = 0x10 (L=1), DS = ES = SS = FS = GS = 0x18,
//     RIP = load + 0x200 (startup_64), RSI = zero page, RFLAGS = 0x2.
// The 32-bit entry: protected mode without paging, CS = 0x10 (D=1),
// RIP = load (startup_32), ESI = zero page, EBX = EBP = EDI = 0.
#pragma once

#include "devices/boot/boot.h"

#include <optional>

namespace emu::devices::boot {

// Setup header fields after validation (effective values: setup_sects 0 is 4).
struct BzImageHeader {
    uint16_t version = 0;            // 0x0206 for 2.06
    uint32_t setup_sects = 0;
    uint64_t setup_size = 0;         // (setup_sects + 1) * 512: file offset of the protected-mode code
    uint64_t kernel_size = 0;        // protected-mode bytes present in the file (from syssize)
    uint32_t header_end = 0;         // 0x202 + the jump's offset byte: bytes of header to copy
    uint8_t loadflags = 0;
    bool relocatable = false;
    uint32_t kernel_alignment = 0;
    uint16_t xloadflags = 0;         // 0 before 2.12
    uint32_t cmdline_size = 0;
    uint32_t initrd_addr_max = 0;
    uint64_t pref_address = 0;       // 0 before 2.10
    uint32_t init_size = 0;          // 0 before 2.10
    uint32_t payload_offset = 0, payload_length = 0; // 0 before 2.08
    std::string kernel_version;      // the string kernel_version points at, if any

    static constexpr uint16_t kXlfKernel64 = 1u << 0;
    bool has_64bit_entry() const { return version >= 0x020c && (xloadflags & kXlfKernel64); }
};

// Validates every setup header field the loader uses; an error names the
// field and its value.
Result<BzImageHeader> parse_bzimage(std::string_view name, std::span<const uint8_t> image);
bool looks_like_bzimage(std::span<const uint8_t> image); // "HdrS" at 0x202

Result<BootPlan> plan_bzimage(std::string_view name, const Bytes& image, const BootConfig& config);

// The zero page (struct boot_params) for a kernel entered at code32_start.
// `setup_header` is the image's header from 0x1f1 (empty for an ELF vmlinux:
// a minimal 2.12 header is made). The result has type_of_loader 0xff,
// vid_mode 0xffff, a zeroed screen_info (no VGA: the kernel uses a dummy
// console and the serial one from console=), the e820 table, ext_mem_k and
// alt_mem_k, the command line and initrd pointers, acpi_rsdp_addr.
struct ZeroPageInput {
    std::span<const uint8_t> setup_header;
    uint64_t code32_start = 0;
    uint64_t cmdline_gpa = 0;
    uint32_t cmdline_size = 0;           // for a made header
    std::optional<Range> initrd;
    const E820Map* memory = nullptr;
    uint64_t acpi_rsdp = 0;
};
Result<std::vector<uint8_t>> build_zero_page(std::string_view name, const ZeroPageInput& in);

// Places an initrd of `size` bytes page-aligned as high as possible with its
// last byte at or below `max_addr` and within the RAM run from 1 MiB, at or
// above `floor`.
Result<Range> place_initrd(std::string_view name, uint64_t size, uint64_t floor, uint64_t max_addr,
                           const E820Map& memory);

// The command line blob at layout.cmdline (NUL-terminated), checked against
// the kernel's limit and the loader's area.
Result<Blob> cmdline_blob(std::string_view name, const std::string& cmdline, uint64_t limit,
                          const BootLayout& layout);

} // namespace emu::devices::boot
