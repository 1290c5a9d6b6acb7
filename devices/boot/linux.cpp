// devices/boot/linux.cpp — bzImage parsing, the zero page and the Linux plan.
#include "devices/boot/linux.h"

#include "devices/boot/bytes.h"

#include <fmt/format.h>

#include <algorithm>
#include <bit>

namespace emu::devices::boot {

namespace {

// Setup header offsets (boot.rst, "The Real-Mode Kernel Header"); the same
// offsets hold in the zero page, where the header is copied to 0x1f1.
enum : uint32_t {
    kSetupSects = 0x1f1, kSysSize = 0x1f4, kVidMode = 0x1fa, kBootFlag = 0x1fe, kJump = 0x200,
    kHeader = 0x202, kVersion = 0x206, kKernelVersion = 0x20e, kTypeOfLoader = 0x210, kLoadFlags = 0x211,
    kCode32Start = 0x214, kRamdiskImage = 0x218, kRamdiskSize = 0x21c, kCmdLinePtr = 0x228,
    kInitrdAddrMax = 0x22c, kKernelAlignment = 0x230, kRelocatable = 0x234, kXLoadFlags = 0x236,
    kCmdlineSize = 0x238, kHardwareSubarch = 0x23c, kPayloadOffset = 0x248, kPayloadLength = 0x24c,
    kSetupData = 0x250, kPrefAddress = 0x258, kInitSize = 0x260,
};
// Zero page fields outside the setup header (zero-page.rst).
enum : uint32_t {
    kZpExtMemK = 0x002, kZpAcpiRsdp = 0x070, kZpExtRamdiskImage = 0x0c0, kZpExtRamdiskSize = 0x0c4,
    kZpExtCmdLinePtr = 0x0c8, kZpAltMemK = 0x1e0, kZpE820Entries = 0x1e8, kZpE820Table = 0x2d0,
    kZpHeaderLimit = 0x290, // the setup header's slot ends where edd_mbr_sig_buffer starts
    kZeroPageSize = 0x1000,
};
constexpr uint32_t kHdrS = 0x53726448;
constexpr uint8_t kLoadedHigh = 0x01;
constexpr size_t kE820MaxZeroPage = 128;
constexpr uint64_t kPage = 4096;

uint64_t align_up(uint64_t v, uint64_t a) { return (v + a - 1) & ~(a - 1); }
std::string ver(uint16_t v) { return fmt::format("{}.{:02}", v >> 8, v & 0xff); }

} // namespace

bool looks_like_bzimage(std::span<const uint8_t> image)
{
    return le::fits(image, kHeader, 4) && le::u32(image, kHeader) == kHdrS;
}

Result<BzImageHeader> parse_bzimage(std::string_view name, std::span<const uint8_t> image)
{
    BzImageHeader h;
    if (!le::fits(image, 0, 0x270))
        return fail(fmt::format("{}: {} bytes is too short for a bzImage setup header", name, image.size()));
    if (le::u32(image, kHeader) != kHdrS)
        return fail(fmt::format("{}: no \"HdrS\" signature at 0x202: not a bzImage", name));
    if (uint16_t flag = le::u16(image, kBootFlag); flag != 0xaa55)
        return fail(fmt::format("{}: boot_flag {:#06x} is not 0xaa55", name, flag));
    h.version = le::u16(image, kVersion);
    if (h.version < 0x0206)
        return fail(fmt::format("{}: boot protocol {} is older than 2.06, the oldest supported", name, ver(h.version)));
    if (uint8_t op = le::u8(image, kJump); op != 0xeb)
        return fail(fmt::format("{}: jump opcode {:#04x} at 0x200 is not a short jmp (0xeb)", name, op));
    h.header_end = 0x202 + le::u8(image, kJump + 1);
    uint32_t needed = h.version >= 0x020a ? kInitSize + 4 : kCmdlineSize + 4;
    if (h.header_end < needed || h.header_end > kZpHeaderLimit)
        return fail(fmt::format("{}: setup header ends at {:#x} (jump offset), outside {:#x}..{:#x} for protocol {}",
                                name, h.header_end, needed, uint32_t(kZpHeaderLimit), ver(h.version)));

    uint8_t sects = le::u8(image, kSetupSects);
    h.setup_sects = sects ? sects : 4;
    h.setup_size = (uint64_t(h.setup_sects) + 1) * 512;
    if (h.setup_size >= image.size())
        return fail(fmt::format("{}: setup_sects {} exceeds the file ({} bytes)", name, sects, image.size()));
    uint64_t pm_bytes = image.size() - h.setup_size;
    uint32_t syssize = le::u32(image, kSysSize);
    if (syssize == 0 || uint64_t(syssize) * 16 > pm_bytes + 15)
        return fail(fmt::format("{}: syssize {} ({} bytes) does not match the {} bytes of protected-mode code in "
                                "the file",
                                name, syssize, uint64_t(syssize) * 16, pm_bytes));
    h.kernel_size = pm_bytes; // the whole rest of the file: trailing bytes are harmless

    h.loadflags = le::u8(image, kLoadFlags);
    if (!(h.loadflags & kLoadedHigh))
        return fail(fmt::format("{}: loadflags {:#04x} lack LOADED_HIGH: a zImage, which is not supported", name,
                                h.loadflags));
    h.relocatable = le::u8(image, kRelocatable) != 0;
    h.kernel_alignment = le::u32(image, kKernelAlignment);
    if (h.relocatable && (!std::has_single_bit(h.kernel_alignment) || h.kernel_alignment < kPage ||
                          h.kernel_alignment > (1u << 30)))
        return fail(fmt::format("{}: kernel_alignment {:#x} is not a power of two in 4 KiB..1 GiB", name,
                                h.kernel_alignment));
    h.cmdline_size = le::u32(image, kCmdlineSize);
    if (h.cmdline_size == 0)
        return fail(fmt::format("{}: cmdline_size is 0", name));
    h.initrd_addr_max = le::u32(image, kInitrdAddrMax);
    if (h.initrd_addr_max < E820Map::kHighRamStart)
        return fail(fmt::format("{}: initrd_addr_max {:#x} is below 1 MiB", name, h.initrd_addr_max));
    if (h.version >= 0x0208) {
        h.payload_offset = le::u32(image, kPayloadOffset);
        h.payload_length = le::u32(image, kPayloadLength);
        if (uint64_t(h.payload_offset) + h.payload_length > h.kernel_size)
            return fail(fmt::format("{}: payload_offset {:#x} + payload_length {:#x} exceed the {} bytes of kernel",
                                    name, h.payload_offset, h.payload_length, h.kernel_size));
    }
    if (h.version >= 0x020a) {
        h.pref_address = le::u64(image, kPrefAddress);
        h.init_size = le::u32(image, kInitSize);
        if (h.init_size < h.kernel_size)
            return fail(fmt::format("{}: init_size {:#x} is smaller than the kernel's {:#x} bytes", name, h.init_size,
                                    h.kernel_size));
        if (h.pref_address >= E820Map::k4GiB || (h.pref_address && h.pref_address < E820Map::kHighRamStart))
            return fail(fmt::format("{}: pref_address {:#x} is not in 1 MiB..4 GiB", name, h.pref_address));
    }
    if (h.version >= 0x020c)
        h.xloadflags = le::u16(image, kXLoadFlags);
    if (uint16_t kv = le::u16(image, kKernelVersion); kv && kv + 0x200u < h.setup_size) {
        auto text = image.subspan(kv + 0x200u, std::min<size_t>(128, h.setup_size - kv - 0x200u));
        auto nul = std::find(text.begin(), text.end(), uint8_t(0));
        for (auto it = text.begin(); it != nul; ++it)
            h.kernel_version.push_back(*it >= 0x20 && *it < 0x7f ? char(*it) : '?');
    }
    return h;
}

Result<Range> place_initrd(std::string_view name, uint64_t size, uint64_t floor, uint64_t max_addr,
                           const E820Map& memory)
{
    uint64_t top = std::min(max_addr == UINT64_MAX ? max_addr : max_addr + 1, memory.high_ram_end());
    top = std::min(top, E820Map::k4GiB);
    if (size == 0 || size > top || ((top - size) & ~(kPage - 1)) < align_up(floor, kPage))
        return fail(fmt::format("{}: the initrd ({} bytes) does not fit between the kernel's end {:#x} and {:#x} "
                                "(the lower of the kernel's initrd limit and the end of RAM)",
                                name, size, floor, top));
    return Range{(top - size) & ~(kPage - 1), size};
}

Result<Blob> cmdline_blob(std::string_view name, const std::string& cmdline, uint64_t limit, const BootLayout& layout)
{
    if (cmdline.find('\0') != std::string::npos)
        return fail(fmt::format("{}: the command line contains a NUL byte", name));
    if (cmdline.size() > limit)
        return fail(fmt::format("{}: the command line is {} bytes, the kernel takes at most {} (cmdline_size)", name,
                                cmdline.size(), limit));
    if (cmdline.size() + 1 > layout.end - layout.cmdline)
        return fail(fmt::format("{}: the command line is {} bytes, more than the loader's {} byte area", name,
                                cmdline.size(), layout.end - layout.cmdline - 1));
    std::vector<uint8_t> bytes(cmdline.begin(), cmdline.end());
    bytes.push_back(0);
    size_t n = bytes.size();
    return Blob{"cmdline", layout.cmdline, make_bytes(std::move(bytes)), 0, n, 0};
}

Result<std::vector<uint8_t>> build_zero_page(std::string_view name, const ZeroPageInput& in)
{
    std::vector<uint8_t> zp(kZeroPageSize, 0);
    if (!in.setup_header.empty()) {
        // Copied from 0x1f1 up to the header's end (parse_bzimage checked it fits).
        std::copy(in.setup_header.begin(), in.setup_header.end(), zp.begin() + kSetupSects);
    } else {
        // No image header (ELF vmlinux): the fields the kernel proper reads.
        le::put16(zp, kBootFlag, 0xaa55);
        le::put32(zp, kHeader, kHdrS);
        le::put16(zp, kVersion, 0x020c);
        le::put8(zp, kLoadFlags, kLoadedHigh);
        le::put32(zp, kInitrdAddrMax, 0x7fffffff);
        le::put32(zp, kKernelAlignment, 0x200000);
        le::put32(zp, kCmdlineSize, in.cmdline_size);
    }
    le::put8(zp, kTypeOfLoader, 0xff);
    le::put16(zp, kVidMode, 0xffff); // "normal": no mode switch, and none is possible without a BIOS
    le::put32(zp, kCode32Start, uint32_t(in.code32_start));
    le::put32(zp, kHardwareSubarch, 0);
    le::put64(zp, kSetupData, 0);
    le::put32(zp, kCmdLinePtr, uint32_t(in.cmdline_gpa));
    le::put32(zp, kZpExtCmdLinePtr, uint32_t(in.cmdline_gpa >> 32));
    if (in.initrd) {
        le::put32(zp, kRamdiskImage, uint32_t(in.initrd->addr));
        le::put32(zp, kRamdiskSize, uint32_t(in.initrd->size));
        le::put32(zp, kZpExtRamdiskImage, uint32_t(in.initrd->addr >> 32));
        le::put32(zp, kZpExtRamdiskSize, uint32_t(in.initrd->size >> 32));
    } else {
        le::put32(zp, kRamdiskImage, 0);
        le::put32(zp, kRamdiskSize, 0);
    }
    le::put64(zp, kZpAcpiRsdp, in.acpi_rsdp);

    // screen_info stays zero (orig_video_mode/cols/lines 0: no VGA text
    // console to find) except the legacy memory size above 1 MiB, in KiB.
    uint64_t ext_k = (in.memory->high_ram_end() - E820Map::kHighRamStart) >> 10;
    le::put16(zp, kZpExtMemK, uint16_t(std::min<uint64_t>(ext_k, 0xfc00)));
    le::put32(zp, kZpAltMemK, uint32_t(std::min<uint64_t>(ext_k, UINT32_MAX)));

    const auto& e820 = in.memory->entries();
    if (e820.size() > kE820MaxZeroPage)
        return fail(fmt::format("{}: the memory map has {} entries, the zero page holds {}", name, e820.size(),
                                kE820MaxZeroPage));
    le::put8(zp, kZpE820Entries, uint8_t(e820.size()));
    for (size_t i = 0; i < e820.size(); ++i) {
        uint64_t at = kZpE820Table + 20 * i;
        le::put64(zp, at, e820[i].addr);
        le::put64(zp, at + 8, e820[i].size);
        le::put32(zp, at + 16, uint32_t(e820[i].type));
    }
    return zp;
}

Result<BootPlan> plan_bzimage(std::string_view name, const Bytes& image, const BootConfig& config)
{
    auto parsed = parse_bzimage(name, *image);
    if (!parsed)
        return std::unexpected(parsed.error());
    const BzImageHeader& h = *parsed;
    if (config.initrds.size() > 1)
        return fail(fmt::format("{}: Linux takes one initrd, {} were given", name, config.initrds.size()));

    bool use64 = false;
    switch (config.entry) {
    case EntryChoice::Auto: use64 = h.has_64bit_entry(); break;
    case EntryChoice::Bit64:
        if (!h.has_64bit_entry())
            return fail(fmt::format("{}: no 64-bit entry (protocol {}, xloadflags {:#x}: XLF_KERNEL_64 clear)", name,
                                    ver(h.version), h.xloadflags));
        use64 = true;
        break;
    case EntryChoice::Bit32: use64 = false; break;
    }

    // Load address and the footprint the kernel needs from its runtime start.
    uint64_t load = E820Map::kHighRamStart, runtime = load;
    if (h.relocatable) {
        load = align_up(h.pref_address ? h.pref_address : E820Map::kHighRamStart, h.kernel_alignment);
        runtime = load;
    } else if (h.pref_address) {
        runtime = h.pref_address; // the kernel moves itself there
    }
    uint64_t kernel_begin = std::min(load, runtime);
    uint64_t kernel_end = std::max(load + h.kernel_size, runtime + std::max<uint64_t>(h.init_size, h.kernel_size));
    if (kernel_end > config.memory.high_ram_end())
        return fail(fmt::format("{}: the kernel needs RAM at {:#x}-{:#x} (load address and init_size {:#x}), but RAM "
                                "from 1 MiB ends at {:#x}",
                                name, kernel_begin, kernel_end - 1, h.init_size, config.memory.high_ram_end()));

    BootPlan plan;
    plan.kind = "bzImage";
    const BootLayout& layout = config.layout;
    plan.blobs.push_back(Blob{"kernel", load, image, h.setup_size, h.kernel_size, 0});
    plan.kernel = {kernel_begin, kernel_end - kernel_begin};

    auto cmdline = cmdline_blob(name, config.cmdline, h.cmdline_size, layout);
    if (!cmdline)
        return std::unexpected(cmdline.error());
    plan.cmdline_gpa = cmdline->gpa;
    plan.blobs.push_back(std::move(*cmdline));

    ZeroPageInput zin;
    zin.setup_header = std::span<const uint8_t>(*image).subspan(kSetupSects, h.header_end - kSetupSects);
    zin.code32_start = load;
    zin.cmdline_gpa = plan.cmdline_gpa;
    zin.memory = &config.memory;
    zin.acpi_rsdp = config.acpi_rsdp;
    if (!config.initrds.empty()) {
        const Module& m = config.initrds.front();
        auto where = place_initrd(name, m.data->size(), kernel_end, h.initrd_addr_max, config.memory);
        if (!where)
            return std::unexpected(where.error());
        zin.initrd = *where;
        plan.initrds.push_back(*where);
        plan.blobs.push_back(Blob{"initrd", where->addr, m.data, 0, m.data->size(), 0});
    }
    auto zp = build_zero_page(name, zin);
    if (!zp)
        return std::unexpected(zp.error());
    plan.blobs.push_back(Blob{"boot_params", layout.boot_params, make_bytes(std::move(*zp)), 0, kZeroPageSize, 0});

    plan.entry = flat_entry(use64 ? CpuMode::Long64 : CpuMode::Protected32, use64 ? load + 0x200 : load, layout,
                            plan.blobs);
    plan.entry.rsi = layout.boot_params;
    plan.summary = fmt::format("bzImage protocol {} ({}), {}-bit entry at {:#x}, kernel {:#x}-{:#x}{}", ver(h.version),
                               h.kernel_version.empty() ? "no version string" : h.kernel_version, use64 ? 64 : 32,
                               plan.entry.rip, kernel_begin, kernel_end - 1,
                               plan.initrds.empty() ? std::string()
                                                    : fmt::format(", initrd {:#x}+{:#x}", plan.initrds[0].addr,
                                                                  plan.initrds[0].size));
    if (auto r = finish_plan(name, plan, config); !r)
        return std::unexpected(r.error());
    return plan;
}

} // namespace emu::devices::boot
