// devices/boot/multiboot.cpp — multiboot v1 header, image and info structure.
#include "devices/boot/multiboot.h"

#include "devices/boot/bytes.h"
#include "devices/boot/elf.h"

#include <fmt/format.h>

namespace emu::devices::boot {

namespace {

constexpr uint64_t kSearchBytes = 8192;
constexpr uint64_t kPage = 4096;
constexpr uint32_t kKnownFlags = MultibootHeader::kPageAlign | MultibootHeader::kMemInfo | MultibootHeader::kAoutKludge;

// The multiboot information structure (spec section 3.3).
enum : uint32_t {
    kInfoFlags = 0, kInfoMemLower = 4, kInfoMemUpper = 8, kInfoCmdline = 16, kInfoModsCount = 20, kInfoModsAddr = 24,
    kInfoMmapLength = 44, kInfoMmapAddr = 48, kInfoLoaderName = 64, kInfoSize = 128,
};
constexpr uint32_t kHasMem = 1u << 0, kHasCmdline = 1u << 2, kHasMods = 1u << 3, kHasMmap = 1u << 6,
                   kHasLoaderName = 1u << 9;
constexpr size_t kModEntrySize = 16, kMmapEntrySize = 24; // mmap: u32 size (20) + 20 bytes

uint64_t align_up(uint64_t v, uint64_t a) { return (v + a - 1) & ~(a - 1); }

} // namespace

std::optional<uint64_t> find_multiboot_header(std::span<const uint8_t> image)
{
    for (uint64_t at = 0; at + 12 <= std::min<uint64_t>(image.size(), kSearchBytes); at += 4) {
        if (le::u32(image, at) != MultibootHeader::kMagic)
            continue;
        if (uint32_t(le::u32(image, at) + le::u32(image, at + 4) + le::u32(image, at + 8)) == 0)
            return at;
    }
    return std::nullopt;
}

Result<MultibootHeader> parse_multiboot(std::string_view name, std::span<const uint8_t> image)
{
    auto found = find_multiboot_header(image);
    if (!found) {
        for (uint64_t at = 0; at + 12 <= std::min<uint64_t>(image.size(), kSearchBytes); at += 4)
            if (le::u32(image, at) == MultibootHeader::kMagic)
                return fail(fmt::format("{}: the multiboot header at {:#x} has a bad checksum", name, at));
        return fail(fmt::format("{}: no multiboot header in the first 8 KiB", name));
    }
    MultibootHeader h;
    h.offset = *found;
    h.flags = le::u32(image, h.offset + 4);
    if (h.flags & MultibootHeader::kVideo)
        return fail(fmt::format("{}: multiboot flags {:#x} ask for video mode information (bit 2), which is not "
                                "provided",
                                name, h.flags));
    if (uint32_t unknown = h.flags & 0xffff & ~kKnownFlags)
        return fail(fmt::format("{}: multiboot flags {:#x} require features this loader does not know (bits {:#x})",
                                name, h.flags, unknown));
    if (!h.aout_kludge())
        return h;
    if (!le::fits(image, h.offset, 32))
        return fail(fmt::format("{}: the multiboot header at {:#x} is cut off before its address fields", name,
                                h.offset));
    h.header_addr = le::u32(image, h.offset + 12);
    h.load_addr = le::u32(image, h.offset + 16);
    h.load_end_addr = le::u32(image, h.offset + 20);
    h.bss_end_addr = le::u32(image, h.offset + 24);
    h.entry_addr = le::u32(image, h.offset + 28);
    if (h.load_addr > h.header_addr || h.header_addr - h.load_addr > h.offset)
        return fail(fmt::format("{}: multiboot load_addr {:#x} does not precede header_addr {:#x} by at most the "
                                "header's file offset {:#x}",
                                name, h.load_addr, h.header_addr, h.offset));
    uint64_t load_offset = h.offset - (h.header_addr - h.load_addr);
    uint64_t load_end = h.load_end_addr ? h.load_end_addr : h.load_addr + (image.size() - load_offset);
    if (load_end <= h.load_addr || load_end - h.load_addr > image.size() - load_offset || load_end > (1ull << 32))
        return fail(fmt::format("{}: multiboot load_end_addr {:#x} is not within the file after load_addr {:#x}", name,
                                h.load_end_addr, h.load_addr));
    if (h.bss_end_addr && h.bss_end_addr < load_end)
        return fail(fmt::format("{}: multiboot bss_end_addr {:#x} is below load_end_addr {:#x}", name, h.bss_end_addr,
                                load_end));
    if (h.entry_addr < h.load_addr || h.entry_addr >= load_end)
        return fail(fmt::format("{}: multiboot entry_addr {:#x} is outside the loaded image {:#x}-{:#x}", name,
                                h.entry_addr, h.load_addr, load_end - 1));
    return h;
}

Result<BootPlan> plan_multiboot(std::string_view name, const Bytes& image, const BootConfig& config)
{
    auto parsed = parse_multiboot(name, *image);
    if (!parsed)
        return std::unexpected(parsed.error());
    const MultibootHeader& h = *parsed;
    BootPlan plan;
    plan.kind = "multiboot";
    uint64_t entry = 0;
    if (h.aout_kludge()) {
        uint64_t load_offset = h.offset - (h.header_addr - h.load_addr);
        uint64_t load_size = h.load_end_addr ? h.load_end_addr - h.load_addr : image->size() - load_offset;
        uint64_t bss = h.bss_end_addr ? h.bss_end_addr - (h.load_addr + load_size) : 0;
        plan.blobs.push_back(Blob{"kernel", h.load_addr, image, size_t(load_offset), size_t(load_size), bss});
        plan.kernel = {h.load_addr, load_size + bss};
        entry = h.entry_addr;
    } else {
        auto elf = parse_elf(name, *image);
        if (!elf)
            return fail(fmt::format("{} (multiboot without the a.out kludge must be ELF)", elf.error().message));
        if (elf->highest > E820Map::k4GiB)
            return fail(fmt::format("{}: segments end at {:#x}, above 4 GiB", name, elf->highest));
        plan.blobs = elf_blobs(image, *elf);
        plan.kernel = {elf->lowest, elf->highest - elf->lowest};
        entry = elf->entry_phys;
    }

    // Strings: the kernel's command line, each module's, the loader name.
    const BootLayout& layout = config.layout;
    std::string kernel_cmdline(name);
    if (!config.cmdline.empty())
        kernel_cmdline += " " + config.cmdline;
    std::vector<uint8_t> strings;
    auto add_string = [&](const std::string& s) {
        uint64_t at = layout.cmdline + strings.size();
        strings.insert(strings.end(), s.begin(), s.end());
        strings.push_back(0);
        return at;
    };
    uint64_t cmdline_at = add_string(kernel_cmdline);
    std::vector<uint64_t> module_string_at;
    for (const Module& m : config.initrds)
        module_string_at.push_back(add_string(m.cmdline));
    uint64_t loader_name_at = add_string("emud");
    if (strings.size() > layout.end - layout.cmdline)
        return fail(fmt::format("{}: command lines of {} bytes exceed the loader's {} byte area", name, strings.size(),
                                layout.end - layout.cmdline));
    plan.cmdline_gpa = cmdline_at;

    // Modules, page-aligned after the kernel.
    const auto& e820 = config.memory.entries();
    uint64_t mmap_at = layout.tables, mods_at = mmap_at + e820.size() * kMmapEntrySize;
    uint64_t tables_end = mods_at + config.initrds.size() * kModEntrySize;
    if (tables_end > layout.cmdline)
        return fail(fmt::format("{}: {} modules and {} memory map entries overflow the loader's table area", name,
                                config.initrds.size(), e820.size()));
    std::vector<uint8_t> tables(tables_end - mmap_at, 0);
    uint64_t next = align_up(plan.kernel.end(), kPage);
    for (size_t i = 0; i < config.initrds.size(); ++i) {
        const Module& m = config.initrds[i];
        uint64_t size = m.data->size();
        if (next + size > config.memory.high_ram_end())
            return fail(fmt::format("{}: module {} ({} bytes) does not fit in RAM after {:#x} (RAM ends at {:#x})",
                                    name, i, size, next, config.memory.high_ram_end()));
        if (size)
            plan.blobs.push_back(Blob{fmt::format("module {}", i), next, m.data, 0, size_t(size), 0});
        plan.initrds.push_back({next, size});
        uint64_t at = mods_at - mmap_at + i * kModEntrySize;
        le::put32(tables, at, uint32_t(next));
        le::put32(tables, at + 4, uint32_t(next + size));
        le::put32(tables, at + 8, uint32_t(module_string_at[i]));
        next = align_up(next + size, kPage);
    }
    for (size_t i = 0; i < e820.size(); ++i) {
        uint64_t at = i * kMmapEntrySize;
        le::put32(tables, at, 20);
        le::put64(tables, at + 4, e820[i].addr);
        le::put64(tables, at + 12, e820[i].size);
        le::put32(tables, at + 20, uint32_t(e820[i].type));
    }

    std::vector<uint8_t> info(kInfoSize, 0);
    le::put32(info, kInfoFlags, kHasMem | kHasCmdline | kHasMods | kHasMmap | kHasLoaderName);
    le::put32(info, kInfoMemLower, uint32_t(std::min<uint64_t>(config.memory.low_ram_size() >> 10, 640)));
    le::put32(info, kInfoMemUpper,
              uint32_t(std::min<uint64_t>((config.memory.high_ram_end() - E820Map::kHighRamStart) >> 10, UINT32_MAX)));
    le::put32(info, kInfoCmdline, uint32_t(cmdline_at));
    le::put32(info, kInfoModsCount, uint32_t(config.initrds.size()));
    le::put32(info, kInfoModsAddr, uint32_t(mods_at));
    le::put32(info, kInfoMmapLength, uint32_t(e820.size() * kMmapEntrySize));
    le::put32(info, kInfoMmapAddr, uint32_t(mmap_at));
    le::put32(info, kInfoLoaderName, uint32_t(loader_name_at));

    size_t strings_size = strings.size(), tables_size = tables.size();
    plan.blobs.push_back(Blob{"multiboot info", layout.boot_params, make_bytes(std::move(info)), 0, kInfoSize, 0});
    plan.blobs.push_back(Blob{"multiboot tables", mmap_at, make_bytes(std::move(tables)), 0, tables_size, 0});
    plan.blobs.push_back(Blob{"command lines", layout.cmdline, make_bytes(std::move(strings)), 0, strings_size, 0});
    plan.entry = flat_entry(CpuMode::Protected32, entry, layout, plan.blobs);
    plan.entry.rax = MultibootHeader::kBootMagic;
    plan.entry.rbx = layout.boot_params;
    plan.summary = fmt::format("multiboot{}, entry {:#x}, kernel {:#x}-{:#x}, {} module(s)",
                               h.aout_kludge() ? " (a.out kludge)" : " (ELF)", entry, plan.kernel.addr,
                               plan.kernel.end() - 1, config.initrds.size());
    if (auto r = finish_plan(name, plan, config); !r)
        return std::unexpected(r.error());
    return plan;
}

} // namespace emu::devices::boot
