// devices/boot/elf.cpp — ELF kernel images: program headers, the PVH note,
// and the PVH / Linux 64-bit / 32-bit plans.
#include "devices/boot/elf.h"

#include "devices/boot/bytes.h"
#include "devices/boot/linux.h"

#include <fmt/format.h>

#include <algorithm>

namespace emu::devices::boot {

namespace {

constexpr uint16_t kEtExec = 2, kEm386 = 3, kEmX86_64 = 62;
constexpr uint32_t kPtLoad = 1, kPtNote = 4;
constexpr uint32_t kXenElfnotePhys32Entry = 18;
constexpr uint16_t kMaxPhdrs = 512;

// hvm_start_info (Xen's public arch-x86/hvm/start_info.h, version 1).
constexpr uint32_t kPvhMagic = 0x336ec578;
constexpr size_t kPvhStartInfoSize = 56, kPvhModSize = 32, kPvhMemmapEntrySize = 24;

bool add_overflows(uint64_t a, uint64_t b) { return a + b < a; }

Result<void> parse_notes(std::string_view name, std::span<const uint8_t> image, const ElfSegment& seg, int index,
                         ElfImage& elf)
{
    auto notes = image.subspan(seg.offset, seg.filesz);
    uint64_t at = 0;
    while (at < notes.size()) {
        if (!le::fits(notes, at, 12))
            return fail(fmt::format("{}: program header {}: a note header at {:#x} is cut off", name, index,
                                    seg.offset + at));
        uint64_t namesz = le::u32(notes, at), descsz = le::u32(notes, at + 4);
        uint32_t type = le::u32(notes, at + 8);
        uint64_t name_at = at + 12, desc_at = name_at + ((namesz + 3) & ~3ull);
        uint64_t next = desc_at + ((descsz + 3) & ~3ull);
        if (next > notes.size())
            return fail(fmt::format("{}: program header {}: the note at {:#x} (namesz {}, descsz {}) runs past its "
                                    "segment",
                                    name, index, seg.offset + at, namesz, descsz));
        bool xen = namesz == 4 && std::equal(notes.begin() + name_at, notes.begin() + name_at + 4, "Xen");
        if (xen && type == kXenElfnotePhys32Entry) {
            uint64_t entry = 0;
            if (descsz == 4)
                entry = le::u32(notes, desc_at);
            else if (descsz == 8)
                entry = le::u64(notes, desc_at);
            else
                return fail(fmt::format("{}: the PVH entry note has {} bytes of data, not 4 or 8", name, descsz));
            if (entry >= (1ull << 32))
                return fail(fmt::format("{}: the PVH entry {:#x} is not a 32-bit address", name, entry));
            elf.pvh_entry = uint32_t(entry);
        }
        at = next;
    }
    return {};
}

} // namespace

bool looks_like_elf(std::span<const uint8_t> image)
{
    return image.size() >= 4 && image[0] == 0x7f && image[1] == 'E' && image[2] == 'L' && image[3] == 'F';
}

Result<ElfImage> parse_elf(std::string_view name, std::span<const uint8_t> image)
{
    if (!looks_like_elf(image) || image.size() < 52)
        return fail(fmt::format("{}: not an ELF image (no \\x7fELF header)", name));
    ElfImage elf;
    uint8_t cls = image[4], data = image[5], version = image[6];
    if (cls != 1 && cls != 2)
        return fail(fmt::format("{}: EI_CLASS {} is neither ELF32 (1) nor ELF64 (2)", name, cls));
    elf.is64 = cls == 2;
    if (data != 1)
        return fail(fmt::format("{}: EI_DATA {} is not little-endian (1)", name, data));
    if (version != 1)
        return fail(fmt::format("{}: EI_VERSION {} is not 1", name, version));
    if (elf.is64 && image.size() < 64)
        return fail(fmt::format("{}: {} bytes is too short for an ELF64 header", name, image.size()));
    uint16_t type = le::u16(image, 16), machine = le::u16(image, 18);
    if (type != kEtExec)
        return fail(fmt::format("{}: e_type {} is not an executable (ET_EXEC)", name, type));
    if (machine != (elf.is64 ? kEmX86_64 : kEm386))
        return fail(fmt::format("{}: e_machine {} is not {} for {}", name, machine,
                                elf.is64 ? "x86-64 (62)" : "i386 (3)", elf.is64 ? "ELF64" : "ELF32"));
    uint64_t phoff = elf.is64 ? le::u64(image, 32) : le::u32(image, 28);
    elf.entry = elf.is64 ? le::u64(image, 24) : le::u32(image, 24);
    uint16_t phentsize = le::u16(image, elf.is64 ? 54 : 42), phnum = le::u16(image, elf.is64 ? 56 : 44);
    uint16_t want = elf.is64 ? 56 : 32;
    if (phentsize != want)
        return fail(fmt::format("{}: e_phentsize {} is not {}", name, phentsize, want));
    if (phnum == 0 || phnum > kMaxPhdrs)
        return fail(fmt::format("{}: e_phnum {} is not in 1..{}", name, phnum, kMaxPhdrs));
    if (!le::fits(image, phoff, uint64_t(phnum) * phentsize))
        return fail(fmt::format("{}: e_phoff {:#x} + {} program headers exceed the file ({} bytes)", name, phoff, phnum,
                                image.size()));

    std::vector<std::pair<ElfSegment, int>> notes;
    for (int i = 0; i < phnum; ++i) {
        uint64_t ph = phoff + uint64_t(i) * phentsize;
        uint32_t ptype = le::u32(image, ph);
        if (ptype != kPtLoad && ptype != kPtNote)
            continue;
        ElfSegment s;
        if (elf.is64) {
            s.offset = le::u64(image, ph + 8), s.vaddr = le::u64(image, ph + 16), s.paddr = le::u64(image, ph + 24);
            s.filesz = le::u64(image, ph + 32), s.memsz = le::u64(image, ph + 40);
        } else {
            s.offset = le::u32(image, ph + 4), s.vaddr = le::u32(image, ph + 8), s.paddr = le::u32(image, ph + 12);
            s.filesz = le::u32(image, ph + 16), s.memsz = le::u32(image, ph + 20);
        }
        if (!le::fits(image, s.offset, s.filesz))
            return fail(fmt::format("{}: program header {}: p_offset {:#x} + p_filesz {:#x} exceed the file ({} bytes)",
                                    name, i, s.offset, s.filesz, image.size()));
        if (ptype == kPtNote) {
            notes.emplace_back(s, i);
            continue;
        }
        if (s.filesz > s.memsz)
            return fail(fmt::format("{}: program header {}: p_filesz {:#x} exceeds p_memsz {:#x}", name, i, s.filesz,
                                    s.memsz));
        if (add_overflows(s.paddr, s.memsz) || add_overflows(s.vaddr, s.memsz))
            return fail(fmt::format("{}: program header {}: p_paddr {:#x} + p_memsz {:#x} wraps", name, i, s.paddr,
                                    s.memsz));
        if (s.memsz)
            elf.loads.push_back(s);
    }
    if (elf.loads.empty())
        return fail(fmt::format("{}: no loadable segment (PT_LOAD with p_memsz > 0)", name));
    for (auto& [seg, index] : notes)
        if (auto r = parse_notes(name, image, seg, index, elf); !r)
            return std::unexpected(r.error());

    elf.lowest = UINT64_MAX;
    for (const ElfSegment& s : elf.loads) {
        elf.lowest = std::min(elf.lowest, s.paddr);
        elf.highest = std::max(elf.highest, s.paddr + s.memsz);
    }
    // The entry is virtual (translated through the segment that holds it) or,
    // as in Linux's vmlinux, already physical.
    auto holder = std::find_if(elf.loads.begin(), elf.loads.end(), [&](const ElfSegment& s) {
        return elf.entry >= s.vaddr && elf.entry < s.vaddr + s.memsz;
    });
    bool physical = std::any_of(elf.loads.begin(), elf.loads.end(), [&](const ElfSegment& s) {
        return elf.entry >= s.paddr && elf.entry < s.paddr + s.memsz;
    });
    if (holder != elf.loads.end())
        elf.entry_phys = elf.entry - holder->vaddr + holder->paddr;
    else if (physical)
        elf.entry_phys = elf.entry;
    else
        return fail(fmt::format("{}: e_entry {:#x} is outside every loadable segment", name, elf.entry));
    if (elf.pvh_entry) {
        uint64_t e = *elf.pvh_entry;
        bool inside = std::any_of(elf.loads.begin(), elf.loads.end(),
                                  [&](const ElfSegment& s) { return e >= s.paddr && e < s.paddr + s.memsz; });
        if (!inside)
            return fail(fmt::format("{}: the PVH entry {:#x} is outside every loadable segment", name, e));
    }
    return elf;
}

std::vector<Blob> elf_blobs(const Bytes& image, const ElfImage& elf)
{
    std::vector<Blob> blobs;
    for (size_t i = 0; i < elf.loads.size(); ++i) {
        const ElfSegment& s = elf.loads[i];
        blobs.push_back(Blob{fmt::format("kernel segment {}", i), s.paddr, image, size_t(s.offset), size_t(s.filesz),
                             s.memsz - s.filesz});
    }
    return blobs;
}

Result<BootPlan> plan_elf(std::string_view name, const Bytes& image, const BootConfig& config)
{
    auto parsed = parse_elf(name, *image);
    if (!parsed)
        return std::unexpected(parsed.error());
    const ElfImage& elf = *parsed;
    if (config.initrds.size() > 1)
        return fail(fmt::format("{}: an ELF kernel takes one initrd, {} were given", name, config.initrds.size()));

    enum { Pvh, Linux64, Linux32 } how;
    if (elf.pvh_entry && config.entry != EntryChoice::Bit64)
        how = Pvh;
    else if (config.entry == EntryChoice::Bit32 && elf.is64)
        return fail(fmt::format("{}: no 32-bit entry: an ELF64 kernel without a PVH note", name));
    else if (config.entry == EntryChoice::Bit64 && !elf.is64)
        return fail(fmt::format("{}: no 64-bit entry: an ELF32 kernel", name));
    else
        how = elf.is64 ? Linux64 : Linux32;
    if (how != Linux64 && elf.highest > E820Map::k4GiB)
        return fail(fmt::format("{}: segments end at {:#x}, above the 4 GiB a 32-bit entry can reach", name,
                                elf.highest));

    BootPlan plan;
    plan.kind = how == Pvh ? "elf-pvh" : "elf";
    plan.blobs = elf_blobs(image, elf);
    plan.kernel = {elf.lowest, elf.highest - elf.lowest};
    const BootLayout& layout = config.layout;

    auto cmdline = cmdline_blob(name, config.cmdline, layout.end - layout.cmdline - 1, layout);
    if (!cmdline)
        return std::unexpected(cmdline.error());
    plan.cmdline_gpa = cmdline->gpa;
    plan.blobs.push_back(std::move(*cmdline));

    std::optional<Range> initrd;
    if (!config.initrds.empty()) {
        const Module& m = config.initrds.front();
        auto where = place_initrd(name, m.data->size(), elf.highest, 0x7fffffff, config.memory);
        if (!where)
            return std::unexpected(where.error());
        initrd = *where;
        plan.initrds.push_back(*where);
        plan.blobs.push_back(Blob{"initrd", where->addr, m.data, 0, m.data->size(), 0});
    }

    if (how == Pvh) {
        const auto& e820 = config.memory.entries();
        uint64_t memmap_at = layout.tables;
        uint64_t modlist_at = memmap_at + e820.size() * kPvhMemmapEntrySize;
        uint64_t tables_end = modlist_at + (initrd ? kPvhModSize : 0);
        if (tables_end > layout.cmdline)
            return fail(fmt::format("{}: the PVH memory map ({} entries) overflows the loader's table area", name,
                                    e820.size()));
        std::vector<uint8_t> info(kPvhStartInfoSize, 0), tables(tables_end - memmap_at, 0);
        le::put32(info, 0, kPvhMagic);
        le::put32(info, 4, 1); // version 1: with the memory map
        le::put32(info, 12, initrd ? 1 : 0);
        le::put64(info, 16, initrd ? modlist_at : 0);
        le::put64(info, 24, plan.cmdline_gpa);
        le::put64(info, 32, config.acpi_rsdp);
        le::put64(info, 40, memmap_at);
        le::put32(info, 48, uint32_t(e820.size()));
        for (size_t i = 0; i < e820.size(); ++i) {
            le::put64(tables, i * kPvhMemmapEntrySize, e820[i].addr);
            le::put64(tables, i * kPvhMemmapEntrySize + 8, e820[i].size);
            le::put32(tables, i * kPvhMemmapEntrySize + 16, uint32_t(e820[i].type));
        }
        if (initrd) {
            le::put64(tables, modlist_at - memmap_at, initrd->addr);
            le::put64(tables, modlist_at - memmap_at + 8, initrd->size);
        }
        size_t tables_size = tables.size();
        plan.blobs.push_back(Blob{"pvh start_info", layout.boot_params, make_bytes(std::move(info)), 0,
                                  kPvhStartInfoSize, 0});
        plan.blobs.push_back(Blob{"pvh tables", memmap_at, make_bytes(std::move(tables)), 0, tables_size, 0});
        plan.entry = flat_entry(CpuMode::Protected32, *elf.pvh_entry, layout, plan.blobs);
        plan.entry.rbx = layout.boot_params;
    } else {
        ZeroPageInput zin;
        zin.code32_start = elf.entry_phys;
        zin.cmdline_gpa = plan.cmdline_gpa;
        zin.cmdline_size = uint32_t(layout.end - layout.cmdline - 1);
        zin.initrd = initrd;
        zin.memory = &config.memory;
        zin.acpi_rsdp = config.acpi_rsdp;
        auto zp = build_zero_page(name, zin);
        if (!zp)
            return std::unexpected(zp.error());
        size_t n = zp->size();
        plan.blobs.push_back(Blob{"boot_params", layout.boot_params, make_bytes(std::move(*zp)), 0, n, 0});
        plan.entry = flat_entry(how == Linux64 ? CpuMode::Long64 : CpuMode::Protected32, elf.entry_phys, layout,
                                plan.blobs);
        plan.entry.rsi = layout.boot_params;
    }
    plan.summary = fmt::format("ELF{} {}, entry {:#x}, segments {:#x}-{:#x}", elf.is64 ? 64 : 32,
                               how == Pvh ? "PVH" : how == Linux64 ? "64-bit Linux protocol" : "32-bit Linux protocol",
                               plan.entry.rip, elf.lowest, elf.highest - 1);
    if (auto r = finish_plan(name, plan, config); !r)
        return std::unexpected(r.error());
    return plan;
}

} // namespace emu::devices::boot
