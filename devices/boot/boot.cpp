// devices/boot/boot.cpp — what the loaders share: files, module lists, the
// flat GDT, identity page tables, plan checks, image detection.
#include "devices/boot/boot.h"

#include "devices/boot/bytes.h"
#include "devices/boot/elf.h"
#include "devices/boot/linux.h"
#include "devices/boot/multiboot.h"

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace emu::devices::boot {

Bytes make_bytes(std::vector<uint8_t> data) { return std::make_shared<const std::vector<uint8_t>>(std::move(data)); }

Result<Bytes> read_file(const std::string& path, uint64_t max_size)
{
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return fail(fmt::format("{}: cannot open: {}", path, std::strerror(errno)));
    struct stat st {};
    if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        int err = errno;
        ::close(fd);
        return fail(fmt::format("{}: {}", path, S_ISREG(st.st_mode) ? std::strerror(err) : "not a regular file"));
    }
    if (uint64_t(st.st_size) > max_size) {
        ::close(fd);
        return fail(fmt::format("{}: {} bytes exceeds the {} byte limit", path, st.st_size, max_size));
    }
    std::vector<uint8_t> data(size_t(st.st_size));
    size_t done = 0;
    while (done < data.size()) {
        ssize_t n = ::read(fd, data.data() + done, data.size() - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            int err = n < 0 ? errno : 0;
            ::close(fd);
            return fail(fmt::format("{}: read failed: {}", path, err ? std::strerror(err) : "the file shrank"));
        }
        done += size_t(n);
    }
    ::close(fd);
    return make_bytes(std::move(data));
}

Result<std::vector<Module>> read_modules(std::string_view list, uint64_t max_size)
{
    std::vector<std::string> entries(1);
    for (size_t i = 0; i < list.size(); ++i) {
        if (list[i] == ',' && i + 1 < list.size() && list[i + 1] == ',') {
            entries.back() += ',';
            ++i;
        } else if (list[i] == ',') {
            entries.emplace_back();
        } else {
            entries.back() += list[i];
        }
    }
    std::vector<Module> modules;
    for (const std::string& entry : entries) {
        std::string path = entry.substr(0, entry.find(' '));
        if (path.empty())
            return fail(fmt::format("initrd list '{}': an entry names no file", list));
        auto data = read_file(path, max_size);
        if (!data)
            return std::unexpected(data.error());
        modules.push_back(Module{entry, std::move(*data)});
    }
    return modules;
}

std::vector<uint8_t> identity_page_tables(uint64_t base)
{
    constexpr uint64_t kPresentWritable = 0x3, kLargePage = 0x80;
    std::vector<uint8_t> t(6 * 4096, 0);
    le::put64(t, 0, (base + 0x1000) | kPresentWritable); // PML4[0] -> PDPT
    for (uint64_t i = 0; i < 4; ++i) {
        le::put64(t, 0x1000 + 8 * i, (base + 0x2000 + 0x1000 * i) | kPresentWritable); // PDPT[i] -> PD i
        for (uint64_t j = 0; j < 512; ++j) // PD i maps GiB i with 2 MiB pages
            le::put64(t, 0x2000 + 0x1000 * i + 8 * j, ((i << 30) + (j << 21)) | kPresentWritable | kLargePage);
    }
    return t;
}

EntryState flat_entry(CpuMode mode, uint64_t rip, const BootLayout& layout, std::vector<Blob>& blobs)
{
    const bool long_mode = mode == CpuMode::Long64;
    // Descriptor attribute bytes, as SegmentState::attr: present, DPL 0,
    // code exec/read accessed (0x9b) or data read/write accessed (0x93), G,
    // and D/B (32-bit) or L (64-bit code).
    const uint16_t code_attr = long_mode ? 0xa09b : 0xc09b, data_attr = 0xc093, tss_attr = 0x008b;
    auto descriptor = [](uint64_t base, uint32_t limit, uint16_t attr) {
        return (limit & 0xffffull) | ((base & 0xffffffull) << 16) | (uint64_t(attr & 0xff) << 40) |
               (uint64_t((limit >> 16) & 0xf) << 48) | (uint64_t((attr >> 12) & 0xf) << 52) |
               (((base >> 24) & 0xffull) << 56);
    };
    std::vector<uint8_t> gdt(6 * 8, 0); // null, unused, code, data, TSS (16 bytes in long mode)
    le::put64(gdt, kBootCs, descriptor(0, 0xfffff, code_attr));
    le::put64(gdt, kBootDs, descriptor(0, 0xfffff, data_attr));
    le::put64(gdt, kBootTss, descriptor(layout.tss, 0x67, tss_attr));
    size_t gdt_size = gdt.size();
    blobs.push_back(Blob{"gdt", layout.gdt, make_bytes(std::move(gdt)), 0, gdt_size, 0});
    blobs.push_back(Blob{"tss", layout.tss, make_bytes(std::vector<uint8_t>(0x68, 0)), 0, 0x68, 0});

    EntryState s;
    s.mode = mode;
    s.rip = rip;
    s.rsp = layout.stack_top;
    s.gdt_base = layout.gdt;
    s.gdt_limit = uint16_t(gdt_size - 1);
    s.cs = {kBootCs, 0, 0xffffffff, code_attr};
    s.ds = s.es = s.fs = s.gs = s.ss = {kBootDs, 0, 0xffffffff, data_attr};
    s.tr = {kBootTss, layout.tss, 0x67, tss_attr};
    s.cr0 = 0x11; // PE, ET
    if (long_mode) {
        auto tables = identity_page_tables(layout.page_tables);
        size_t n = tables.size();
        blobs.push_back(Blob{"page tables", layout.page_tables, make_bytes(std::move(tables)), 0, n, 0});
        s.cr0 |= 0x80000000; // PG
        s.cr3 = layout.page_tables;
        s.cr4 = 0x20;   // PAE
        s.efer = 0x500; // LME, LMA
    }
    return s;
}

Result<void> finish_plan(std::string_view name, BootPlan& plan, const BootConfig& config)
{
    std::vector<const Blob*> sorted;
    for (const Blob& b : plan.blobs) {
        uint64_t len = b.size + b.zero_size;
        if (len == 0)
            continue;
        if (b.gpa + len < b.gpa || !config.memory.is_ram(b.gpa, len))
            return fail(fmt::format("{}: {} at {:#x}-{:#x} is not in RAM", name, b.what, b.gpa, b.gpa + len - 1));
        sorted.push_back(&b);
    }
    std::sort(sorted.begin(), sorted.end(), [](const Blob* a, const Blob* b) { return a->gpa < b->gpa; });
    for (size_t i = 1; i < sorted.size(); ++i)
        if (sorted[i]->gpa < sorted[i - 1]->end())
            return fail(fmt::format("{}: {} at {:#x}-{:#x} overlaps {} at {:#x}-{:#x}", name, sorted[i]->what,
                                    sorted[i]->gpa, sorted[i]->end() - 1, sorted[i - 1]->what, sorted[i - 1]->gpa,
                                    sorted[i - 1]->end() - 1));
    if (!config.memory.is_ram(plan.kernel.addr, plan.kernel.size))
        return fail(fmt::format("{}: the kernel's memory {:#x}-{:#x} is not all RAM", name, plan.kernel.addr,
                                plan.kernel.end() - 1));
    plan.memory_map = config.memory.entries();
    return {};
}

Result<BootPlan> plan_kernel(std::string_view name, const Bytes& image, const BootConfig& config)
{
    if (looks_like_bzimage(*image))
        return plan_bzimage(name, image, config);
    if (find_multiboot_header(*image))
        return plan_multiboot(name, image, config);
    if (looks_like_elf(*image))
        return plan_elf(name, image, config);
    // A multiboot magic with a bad checksum gets its own message.
    auto mb = parse_multiboot(name, *image);
    if (!mb && mb.error().message.find("checksum") != std::string::npos)
        return std::unexpected(mb.error());
    return fail(fmt::format("{}: not a bzImage, multiboot or ELF kernel", name));
}

} // namespace emu::devices::boot
