// devices/boot/boot.h — direct kernel boot (-kernel, -initrd, -append) as a
// plan: what to write where in guest memory and the vCPU state to start in.
//
// The loaders (linux.h: bzImage; elf.h: ELF vmlinux, with or without a Xen
// PVH note; multiboot.h: multiboot v1) parse and validate an image without a
// CPU or guest memory and return a BootPlan. The machine applies it:
//   1. for each Blob: write data() at gpa, then zero_size zero bytes after it
//      (on a reset too: the plan is applied again, RAM is not assumed zero);
//   2. load the boot vCPU with `entry` (see EntryState): general registers,
//      CR0/CR3/CR4/EFER, GDTR, and every segment register's hidden part
//      straight from its SegmentState (no descriptor load); the other vCPUs
//      stay in their reset state waiting for INIT/SIPI.
// Every address in a plan lies in RAM of the E820Map it was made for, and no
// two blobs overlap: plan_kernel() checks both before returning.
//
// Image detection (plan_kernel): "HdrS" at 0x202 → bzImage; else a multiboot
// header in the first 8 KiB → multiboot; else ELF → elf. Anything else is
// refused by name.
#pragma once

#include "devices/boot/e820.h"
#include "devices/boot/error.h"

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace emu::devices::boot {

// Shared, immutable file contents: blobs point into them instead of copying.
using Bytes = std::shared_ptr<const std::vector<uint8_t>>;
Bytes make_bytes(std::vector<uint8_t> data);

// Reads a whole file; refuses one larger than max_size.
Result<Bytes> read_file(const std::string& path, uint64_t max_size);

// One stretch of guest memory to fill: bytes[offset, offset+size) at gpa,
// then zero_size zero bytes (an ELF segment's bss).
struct Blob {
    std::string what; // "kernel", "initrd", "boot_params", … (for messages and logs)
    uint64_t gpa = 0;
    Bytes bytes;
    size_t offset = 0, size = 0;
    uint64_t zero_size = 0;

    std::span<const uint8_t> data() const { return {bytes->data() + offset, size}; }
    uint64_t end() const { return gpa + size + zero_size; }
};

// A segment register's hidden part, encoded as engine/x86/cpu_state.h's
// Segment: attr = descriptor bits 40-47 (type, S, DPL, P) and 52-55 (AVL, L,
// D/B, G) at bits 0-7 and 12-15; limit is the expanded byte limit.
struct SegmentState {
    uint16_t selector = 0;
    uint64_t base = 0;
    uint32_t limit = 0;
    uint16_t attr = 0;
};

enum class CpuMode { Protected32, Long64 };

// The boot vCPU's state at the kernel's entry. Registers not named are 0;
// interrupts are disabled (rflags = 0x2); the GDT in memory (a Blob) holds the
// descriptors the segment registers were loaded from, so a reload by the
// kernel gives the same segments.
struct EntryState {
    CpuMode mode = CpuMode::Protected32;
    uint64_t rip = 0, rsp = 0;
    uint64_t rax = 0, rbx = 0, rsi = 0, rdi = 0, rbp = 0;
    uint64_t rflags = 0x2;
    uint64_t cr0 = 0, cr3 = 0, cr4 = 0, efer = 0;
    uint64_t gdt_base = 0;
    uint16_t gdt_limit = 0;
    SegmentState cs, ds, es, fs, gs, ss, tr;
};

struct Range {
    uint64_t addr = 0, size = 0;
    uint64_t end() const { return addr + size; }
};

struct BootPlan {
    std::string kind;                   // "bzImage", "elf", "elf-pvh", "multiboot"
    std::vector<Blob> blobs;            // what to write, in no particular order
    EntryState entry;
    Range kernel;                       // memory the kernel owns from entry on (init_size, bss)
    std::vector<Range> initrds;         // Linux: at most one; multiboot: the modules
    uint64_t cmdline_gpa = 0;
    std::vector<E820Entry> memory_map;  // as handed to the guest
    std::string summary;                // one line for the log
};

// -initrd entries: the data and the text a multiboot module gets as its
// command line (Linux ignores it).
struct Module {
    std::string cmdline;
    Bytes data;
};

// Splits QEMU's multiboot module list "file1 args,file2" (",," is a literal
// comma) and reads each file; the module's command line is its whole entry.
// A plain path (Linux) gives one module.
Result<std::vector<Module>> read_modules(std::string_view list, uint64_t max_size);

// Which kernel entry to use when an image offers several.
enum class EntryChoice {
    Auto,  // bzImage: 64-bit if XLF_KERNEL_64, else 32-bit; ELF: PVH if noted, else by ELF class
    Bit64, // bzImage/ELF64: the 64-bit entry (an error if the image has none)
    Bit32, // bzImage: startup_32; ELF: PVH if noted, else ELF32 only
};

// Where the loader puts its own structures, all in low RAM (below 0x9fc00).
// The defaults leave 0-0x4ff (IVT, BDA) alone.
struct BootLayout {
    uint64_t gdt = 0x500;           // 5 descriptors (null, null, code 0x10, data 0x18, TSS 0x20)
    uint64_t tss = 0x580;           // 104 zero bytes for TR in 32-bit entries
    uint64_t page_tables = 0x1000;  // 6 pages: PML4, PDPT, 4 PDs (identity map of 4 GiB)
    uint64_t boot_params = 0x7000;  // Linux zero page / PVH start_info / multiboot info (4 KiB)
    uint64_t stack_top = 0x9000;    // initial RSP (kernels set their own)
    uint64_t tables = 0x9000;       // memory maps, module lists (up to 0x20000)
    uint64_t cmdline = 0x20000;     // command lines (up to 0x30000)
    uint64_t end = 0x30000;         // first byte after the loader's area
};

struct BootConfig {
    E820Map memory;
    std::string cmdline;
    std::vector<Module> initrds;
    uint64_t acpi_rsdp = 0; // 0: none given (Linux scans the BIOS area)
    EntryChoice entry = EntryChoice::Auto;
    BootLayout layout;
};

// Detects the image type and plans its boot. `name` prefixes every error
// ("vmlinuz: setup_sects 200 exceeds the file").
Result<BootPlan> plan_kernel(std::string_view name, const Bytes& image, const BootConfig& config);

// --- shared by the loaders ---------------------------------------------------

// Flat descriptors and the GDT the entry states use.
inline constexpr uint16_t kBootCs = 0x10, kBootDs = 0x18, kBootTss = 0x20;
// Identity map of the first 4 GiB with 2 MiB pages (PML4, PDPT, 4 PDs) as it
// must sit at `base` (4 KiB aligned): entries are present, writable, supervisor.
std::vector<uint8_t> identity_page_tables(uint64_t base);
// Entry state and GDT/TSS (and page tables, for Long64) blobs for a flat
// 32-bit protected-mode or 64-bit long-mode entry at rip.
EntryState flat_entry(CpuMode mode, uint64_t rip, const BootLayout& layout, std::vector<Blob>& blobs);
// Checks blobs against RAM and each other, fills memory_map.
Result<void> finish_plan(std::string_view name, BootPlan& plan, const BootConfig& config);

} // namespace emu::devices::boot
