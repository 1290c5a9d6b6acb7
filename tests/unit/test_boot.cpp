// Direct kernel boot plans: the e820 builder, bzImage, ELF (PVH and the
// Linux entries) and multiboot, on images built here and their hostile
// variants; and Debian's real kernel when the guest kit has been built
// (scripts/make-guest.sh build/guest, or EMUD_GUEST_DIR).
#include "devices/boot/boot.h"
#include "devices/boot/elf.h"
#include "devices/boot/linux.h"
#include "devices/boot/multiboot.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>

using namespace emu::devices::boot;

namespace {

constexpr uint64_t MiB = 1ull << 20, GiB = 1ull << 30;

template <class T>
void put(std::vector<uint8_t>& b, size_t off, T v)
{
    REQUIRE(off + sizeof(T) <= b.size());
    std::memcpy(b.data() + off, &v, sizeof(T));
}
template <class T>
T get(std::span<const uint8_t> b, size_t off)
{
    REQUIRE(off + sizeof(T) <= b.size());
    T v;
    std::memcpy(&v, b.data() + off, sizeof(T));
    return v;
}

E820Map pc_map(uint64_t ram = 512 * MiB)
{
    auto map = E820Map::pc(ram, E820Map::default_pci_hole_start(ram));
    REQUIRE(map);
    // What a PC machine declares: BIOS, IOAPIC, HPET, LAPIC.
    REQUIRE(map->add(0xf0000, 0x10000, E820Type::Reserved));
    REQUIRE(map->add(0xfec00000, 0x1000, E820Type::Reserved));
    REQUIRE(map->add(0xfed00000, 0x400, E820Type::Reserved));
    REQUIRE(map->add(0xfee00000, 0x1000, E820Type::Reserved));
    REQUIRE(map->add(0xfffc0000, 0x40000, E820Type::Reserved));
    return *map;
}

BootConfig config(uint64_t ram = 512 * MiB)
{
    BootConfig c;
    c.memory = pc_map(ram);
    c.cmdline = "console=ttyS0 panic=-1";
    return c;
}

Module module(size_t size, std::string cmdline = "initrd", uint8_t fill = 0x5a)
{
    return Module{std::move(cmdline), make_bytes(std::vector<uint8_t>(size, fill))};
}

const Blob* find_blob(const BootPlan& plan, std::string_view what)
{
    for (const Blob& b : plan.blobs)
        if (b.what == what)
            return &b;
    return nullptr;
}

// --- a synthetic bzImage ------------------------------------------------------
struct BzOptions {
    uint8_t setup_sects = 4;
    size_t kernel_bytes = 64 * 1024;
    uint16_t version = 0x020f;
    uint16_t xloadflags = 0x1;
    uint32_t init_size = 8 * MiB;
};

std::vector<uint8_t> make_bzimage(const BzOptions& o = {})
{
    size_t setup = (size_t(o.setup_sects) + 1) * 512;
    std::vector<uint8_t> img(setup + o.kernel_bytes, 0);
    for (size_t i = setup; i < img.size(); ++i)
        img[i] = uint8_t(i * 7);
    img[0x1f1] = o.setup_sects;
    put<uint32_t>(img, 0x1f4, uint32_t((o.kernel_bytes + 15) / 16));
    put<uint16_t>(img, 0x1fa, 0xffff);
    put<uint16_t>(img, 0x1fe, 0xaa55);
    img[0x200] = 0xeb;
    img[0x201] = 0x6a; // header ends at 0x26c
    std::memcpy(img.data() + 0x202, "HdrS", 4);
    put<uint16_t>(img, 0x206, o.version);
    put<uint16_t>(img, 0x20e, 0x600); // kernel_version string at 0x800
    std::strcpy(reinterpret_cast<char*>(img.data() + 0x800), "6.1.0-test (synthetic)");
    img[0x211] = 0x01; // LOADED_HIGH
    put<uint32_t>(img, 0x214, 0x100000);
    put<uint32_t>(img, 0x22c, 0x7fffffff);
    put<uint32_t>(img, 0x230, 0x200000);
    img[0x234] = 1;
    img[0x235] = 21;
    put<uint16_t>(img, 0x236, o.xloadflags);
    put<uint32_t>(img, 0x238, 2047);
    put<uint32_t>(img, 0x248, 0x100);
    put<uint32_t>(img, 0x24c, uint32_t(o.kernel_bytes - 0x200));
    put<uint64_t>(img, 0x258, 0x1000000);
    put<uint32_t>(img, 0x260, o.init_size);
    return img;
}

// Walks the identity page tables blob (based at `base`) for a 4-level walk.
std::optional<uint64_t> translate(const Blob& tables, uint64_t base, uint64_t va)
{
    auto t = tables.data();
    uint64_t pml4e = get<uint64_t>(t, ((va >> 39) & 511) * 8);
    if (!(pml4e & 1))
        return std::nullopt;
    uint64_t pdpte = get<uint64_t>(t, (pml4e & ~0xfffull) - base + ((va >> 30) & 511) * 8);
    if (!(pdpte & 1))
        return std::nullopt;
    uint64_t pde = get<uint64_t>(t, (pdpte & ~0xfffull) - base + ((va >> 21) & 511) * 8);
    if (!(pde & 1) || !(pde & 0x80))
        return std::nullopt;
    return (pde & ~0x1fffffull) + (va & 0x1fffff);
}

// --- a synthetic ELF ----------------------------------------------------------
struct Seg {
    uint64_t vaddr, paddr, filesz, memsz;
};

std::vector<uint8_t> make_elf(bool is64, std::vector<Seg> segs, uint64_t entry, std::optional<uint64_t> pvh = {},
                              std::vector<uint8_t> prefix = {})
{
    size_t eh = is64 ? 64 : 52, ph = is64 ? 56 : 32, nph = segs.size() + (pvh ? 1 : 0);
    std::vector<uint8_t> img(0x1000, 0);
    // A word of the ELF class's width at the offset for that class.
    auto word = [&](size_t off32, size_t off64, uint64_t v) {
        is64 ? put<uint64_t>(img, off64, v) : put<uint32_t>(img, off32, uint32_t(v));
    };
    std::memcpy(img.data(), "\x7f" "ELF", 4);
    img[4] = is64 ? 2 : 1, img[5] = 1, img[6] = 1;
    put<uint16_t>(img, 16, 2), put<uint16_t>(img, 18, is64 ? 62 : 3), put<uint32_t>(img, 20, 1);
    word(24, 24, entry), word(28, 32, eh);
    put<uint16_t>(img, is64 ? 54 : 42, uint16_t(ph)), put<uint16_t>(img, is64 ? 56 : 44, uint16_t(nph));
    std::copy(prefix.begin(), prefix.end(), img.begin() + 0x200); // e.g. a multiboot header
    auto phdr = [&](size_t i, uint32_t type, uint64_t off, const Seg& s) {
        size_t at = eh + i * ph;
        put<uint32_t>(img, at, type);
        word(at + 4, at + 8, off), word(at + 8, at + 16, s.vaddr), word(at + 12, at + 24, s.paddr);
        word(at + 16, at + 32, s.filesz), word(at + 20, at + 40, s.memsz);
    };
    for (size_t i = 0; i < segs.size(); ++i) {
        size_t off = img.size();
        img.resize(off + segs[i].filesz);
        for (size_t k = 0; k < segs[i].filesz; ++k)
            img[off + k] = uint8_t(i + k);
        phdr(i, 1, off, segs[i]);
    }
    if (pvh) {
        size_t off = img.size();
        img.resize(off + 12 + 4 + 8);
        put<uint32_t>(img, off, 4), put<uint32_t>(img, off + 4, 8), put<uint32_t>(img, off + 8, 18);
        std::memcpy(img.data() + off + 12, "Xen", 4);
        put<uint64_t>(img, off + 16, *pvh);
        phdr(segs.size(), 4, off, Seg{0, 0, 24, 24});
    }
    return img;
}

// --- a synthetic multiboot image ------------------------------------------------
std::vector<uint8_t> multiboot_header(uint32_t flags, std::array<uint32_t, 5> addrs = {})
{
    std::vector<uint8_t> h(32, 0);
    put<uint32_t>(h, 0, 0x1badb002);
    put<uint32_t>(h, 4, flags);
    put<uint32_t>(h, 8, uint32_t(0) - 0x1badb002 - flags);
    for (size_t i = 0; i < 5; ++i)
        put<uint32_t>(h, 12 + 4 * i, addrs[i]);
    return h;
}

// a.out kludge: the file loads at 1 MiB, header at file offset 0x40.
std::vector<uint8_t> make_aout(uint32_t bss = 0x2000, uint32_t flags = 0x10003)
{
    std::vector<uint8_t> img(0x3000, 0x90);
    uint32_t load = 0x100000, end = load + uint32_t(img.size());
    auto h = multiboot_header(flags, {load + 0x40, load, end, end + bss, load + 0x100});
    std::copy(h.begin(), h.end(), img.begin() + 0x40);
    return img;
}

std::string error_of(const Result<BootPlan>& r) { return r ? std::string("(no error)") : r.error().message; }

// A hostile variant: what to change and a piece of the error it must give.
struct Case {
    const char* what;
    std::function<void(std::vector<uint8_t>&)> mutate;
    const char* expect;
};

void check_cases(const std::vector<uint8_t>& base, const std::vector<Case>& cases,
                 Result<BootPlan> (*plan)(std::string_view, const Bytes&, const BootConfig&))
{
    for (const Case& k : cases) {
        auto img = base;
        k.mutate(img);
        std::string what = k.what, error = error_of(plan("vmlinuz", make_bytes(img), config()));
        CAPTURE(what);
        CAPTURE(error);
        CHECK(error.find(k.expect) != std::string::npos);
    }
}

} // namespace

// ---------------------------------------------------------------------------
TEST_CASE("e820: PC layout below and above 4 GiB")
{
    auto small = E820Map::pc(512 * MiB, E820Map::default_pci_hole_start(512 * MiB));
    REQUIRE(small);
    CHECK(small->entries() == std::vector<E820Entry>{{0, 0x9fc00, E820Type::Ram}, {MiB, 511 * MiB, E820Type::Ram}});
    CHECK(small->high_ram_end() == 512 * MiB);
    CHECK(small->low_ram_size() == 0x9fc00);
    CHECK(small->ram_size() == 0x9fc00 + 511 * MiB);

    CHECK(E820Map::default_pci_hole_start(3 * GiB) == 0xe0000000);
    CHECK(E820Map::default_pci_hole_start(6 * GiB) == 0xc0000000);
    auto big = E820Map::pc(6 * GiB, 3 * GiB);
    REQUIRE(big);
    CHECK(big->entries() == std::vector<E820Entry>{{0, 0x9fc00, E820Type::Ram},
                                                   {MiB, 3 * GiB - MiB, E820Type::Ram},
                                                   {4 * GiB, 3 * GiB, E820Type::Ram}});
    CHECK(big->high_ram_end() == 3 * GiB);
    CHECK(big->is_ram(5 * GiB, 4096));
    CHECK_FALSE(big->is_ram(3 * GiB, 4096));
    CHECK_FALSE(big->is_ram(0x9f000, 0x2000)); // runs into the hole
}

TEST_CASE("e820: reserved ranges carve RAM, merge and refuse conflicts")
{
    E820Map map = pc_map();
    CHECK(map.entries().size() == 7);
    CHECK(map.entries()[1] == E820Entry{0xf0000, 0x10000, E820Type::Reserved});
    CHECK(map.entries().back() == E820Entry{0xfffc0000, 0x40000, E820Type::Reserved});
    // ACPI tables at the top of RAM split nothing but shorten the run.
    REQUIRE(map.add(512 * MiB - 0x10000, 0x10000, E820Type::Acpi));
    CHECK(map.high_ram_end() == 512 * MiB - 0x10000);
    // A hole in the middle of RAM splits it.
    REQUIRE(map.add(64 * MiB, MiB, E820Type::Reserved));
    CHECK(map.high_ram_end() == 64 * MiB);
    CHECK(map.is_ram(65 * MiB, MiB));
    // Adjacent ranges of one type merge.
    REQUIRE(map.add(65 * MiB, MiB, E820Type::Reserved));
    E820Entry merged{64 * MiB, 2 * MiB, E820Type::Reserved};
    CHECK(std::count(map.entries().begin(), map.entries().end(), merged) == 1);

    auto conflict = map.add(512 * MiB - 0x20000, 0x20000, E820Type::Reserved);
    REQUIRE_FALSE(conflict);
    CHECK(conflict.error().message.find("overlaps") != std::string::npos);
    CHECK_FALSE(map.add(100 * MiB, 4096, E820Type::Ram)); // RAM over RAM
    CHECK_FALSE(map.add(0x1000, 0, E820Type::Reserved));
    CHECK_FALSE(map.add(~0ull - 10, 100, E820Type::Reserved));
    CHECK_FALSE(E820Map::pc(MiB, 3 * GiB));
    CHECK_FALSE(E820Map::pc(512 * MiB, 3 * GiB + 5));
    CHECK_FALSE(E820Map::pc(512 * MiB, 8 * MiB));
}

TEST_CASE("bzImage: header fields")
{
    auto img = make_bzimage();
    auto h = parse_bzimage("vmlinuz", img);
    REQUIRE(h);
    CHECK(h->version == 0x020f);
    CHECK(h->setup_size == 5 * 512);
    CHECK(h->kernel_size == 64 * 1024);
    CHECK(h->header_end == 0x26c);
    CHECK(h->relocatable);
    CHECK(h->has_64bit_entry());
    CHECK(h->cmdline_size == 2047);
    CHECK(h->pref_address == 0x1000000);
    CHECK(h->kernel_version == "6.1.0-test (synthetic)");
    img[0x1f1] = 0; // 0 means 4
    h = parse_bzimage("vmlinuz", img);
    REQUIRE(h);
    CHECK(h->setup_sects == 4);
}

TEST_CASE("bzImage: 64-bit plan with initrd, zero page and page tables")
{
    auto img = make_bytes(make_bzimage());
    BootConfig c = config();
    c.initrds.push_back(module(300000));
    auto plan = plan_kernel("vmlinuz", img, c);
    REQUIRE_MESSAGE(plan, error_of(plan));
    CHECK(plan->kind == "bzImage");
    const EntryState& e = plan->entry;
    CHECK(e.mode == CpuMode::Long64);
    CHECK(e.rip == 0x1000200);
    CHECK(e.rsi == c.layout.boot_params);
    CHECK(e.cr0 == 0x80000011);
    CHECK(e.cr4 == 0x20);
    CHECK(e.efer == 0x500);
    CHECK(e.cr3 == c.layout.page_tables);
    CHECK(e.cs.selector == 0x10);
    CHECK(e.cs.attr == 0xa09b);
    CHECK(e.ss.selector == 0x18);
    CHECK(e.ds.limit == 0xffffffff);
    CHECK(e.rflags == 0x2);

    const Blob* kernel = find_blob(*plan, "kernel");
    REQUIRE(kernel);
    CHECK(kernel->gpa == 0x1000000);
    CHECK(kernel->size == 64 * 1024);
    CHECK(std::equal(kernel->data().begin(), kernel->data().end(), img->begin() + 5 * 512));
    CHECK(plan->kernel.addr == 0x1000000);
    CHECK(plan->kernel.size == 8 * MiB);

    REQUIRE(plan->initrds.size() == 1);
    Range rd = plan->initrds[0];
    CHECK(rd.addr % 4096 == 0);
    CHECK(rd.end() <= 512 * MiB);
    CHECK(rd.end() > 512 * MiB - 4096 - 300000);
    CHECK(rd.addr >= plan->kernel.end());

    const Blob* zp = find_blob(*plan, "boot_params");
    REQUIRE(zp);
    auto z = zp->data();
    CHECK(z.size() == 4096);
    CHECK(zp->gpa == c.layout.boot_params);
    CHECK(get<uint32_t>(z, 0x202) == 0x53726448);
    CHECK(z[0x210] == 0xff);
    CHECK(get<uint16_t>(z, 0x1fa) == 0xffff);
    CHECK(get<uint32_t>(z, 0x214) == 0x1000000);
    CHECK(get<uint32_t>(z, 0x228) == c.layout.cmdline);
    CHECK(get<uint32_t>(z, 0x218) == rd.addr);
    CHECK(get<uint32_t>(z, 0x21c) == 300000);
    CHECK(get<uint32_t>(z, 0x238) == 2047); // copied header
    CHECK(z[0x1ef] == 0);                   // sentinel
    CHECK(z[0x06] == 0);                    // screen_info: no video mode
    CHECK(z[0x07] == 0);
    CHECK(z[0x0e] == 0);
    CHECK(get<uint16_t>(z, 0x02) == 0xfc00);           // ext_mem_k, capped
    CHECK(get<uint32_t>(z, 0x1e0) == 511 * 1024);      // alt_mem_k
    REQUIRE(z[0x1e8] == c.memory.entries().size());
    for (size_t i = 0; i < z[0x1e8]; ++i) {
        CHECK(get<uint64_t>(z, 0x2d0 + 20 * i) == c.memory.entries()[i].addr);
        CHECK(get<uint64_t>(z, 0x2d8 + 20 * i) == c.memory.entries()[i].size);
        CHECK(get<uint32_t>(z, 0x2e0 + 20 * i) == uint32_t(c.memory.entries()[i].type));
    }

    const Blob* cmd = find_blob(*plan, "cmdline");
    REQUIRE(cmd);
    CHECK(std::string(reinterpret_cast<const char*>(cmd->data().data())) == c.cmdline);
    CHECK(plan->cmdline_gpa == c.layout.cmdline);

    const Blob* tables = find_blob(*plan, "page tables");
    REQUIRE(tables);
    for (uint64_t va : {0x0ull, 0x7000ull, 0x1000200ull, 0x1fffffffull, 0xfee00000ull, 0xffffffffull})
        CHECK(translate(*tables, tables->gpa, va) == va);
    CHECK_FALSE(translate(*tables, tables->gpa, 4 * GiB));

    const Blob* gdt = find_blob(*plan, "gdt");
    REQUIRE(gdt);
    CHECK(gdt->gpa == e.gdt_base);
    CHECK(get<uint64_t>(gdt->data(), 0x10) == 0x00af9b000000ffffull);
    CHECK(get<uint64_t>(gdt->data(), 0x18) == 0x00cf93000000ffffull);
    CHECK(e.gdt_limit == gdt->size - 1);
}

TEST_CASE("bzImage: entry choice and placement limits")
{
    BootConfig c = config();
    SUBCASE("no XLF_KERNEL_64: the 32-bit entry")
    {
        BzOptions o;
        o.xloadflags = 0;
        auto plan = plan_kernel("vmlinuz", make_bytes(make_bzimage(o)), c);
        REQUIRE_MESSAGE(plan, error_of(plan));
        CHECK(plan->entry.mode == CpuMode::Protected32);
        CHECK(plan->entry.rip == 0x1000000);
        CHECK(plan->entry.rsi == c.layout.boot_params);
        CHECK(plan->entry.cr0 == 0x11);
        CHECK(plan->entry.cs.attr == 0xc09b);
        CHECK(plan->entry.rbx == 0);
        CHECK_FALSE(find_blob(*plan, "page tables"));
        c.entry = EntryChoice::Bit64;
        auto refused = plan_kernel("vmlinuz", make_bytes(make_bzimage(o)), c);
        CHECK(error_of(refused).find("XLF_KERNEL_64") != std::string::npos);
    }
    SUBCASE("Bit32 on a 64-bit kernel")
    {
        c.entry = EntryChoice::Bit32;
        auto plan = plan_kernel("vmlinuz", make_bytes(make_bzimage()), c);
        REQUIRE(plan);
        CHECK(plan->entry.mode == CpuMode::Protected32);
        CHECK(plan->entry.rip == 0x1000000);
    }
    SUBCASE("initrd below initrd_addr_max")
    {
        auto img = make_bzimage();
        put<uint32_t>(img, 0x22c, 0x0fffffff);
        c.initrds.push_back(module(100000));
        auto plan = plan_kernel("vmlinuz", make_bytes(img), c);
        REQUIRE(plan);
        CHECK(plan->initrds[0].end() <= 0x10000000);
        CHECK(plan->initrds[0].end() > 0x10000000 - 4096);
    }
    SUBCASE("initrd below the end of a small RAM and above 4 GiB RAM ignored")
    {
        BootConfig big = config(6 * GiB);
        big.initrds.push_back(module(100000));
        auto plan = plan_kernel("vmlinuz", make_bytes(make_bzimage()), big);
        REQUIRE(plan);
        CHECK(plan->initrds[0].end() <= 0x80000000);
        BootConfig small = config(64 * MiB);
        small.initrds.push_back(module(100000));
        plan = plan_kernel("vmlinuz", make_bytes(make_bzimage()), small);
        REQUIRE(plan);
        CHECK(plan->initrds[0].end() <= 64 * MiB);
    }
    SUBCASE("a non-relocatable kernel loads at 1 MiB")
    {
        auto img = make_bzimage();
        img[0x234] = 0;
        auto plan = plan_kernel("vmlinuz", make_bytes(img), c);
        REQUIRE_MESSAGE(plan, error_of(plan));
        CHECK(find_blob(*plan, "kernel")->gpa == MiB);
        CHECK(plan->kernel.addr == MiB);
        CHECK(plan->kernel.end() == 0x1000000 + 8 * MiB); // runs at pref_address
    }
}

TEST_CASE("bzImage: hostile and truncated images give errors naming the field")
{
    std::vector<Case> cases = {
        {"too short", [](auto& b) { b.resize(0x100); }, "not a bzImage, multiboot or ELF"},
        {"short header", [](auto& b) { b.resize(0x220); }, "too short for a bzImage"},
        {"setup_sects", [](auto& b) { b[0x1f1] = 200; }, "vmlinuz: setup_sects 200 exceeds the file"},
        {"boot_flag", [](auto& b) { b[0x1fe] = 0; }, "boot_flag"},
        {"version", [](auto& b) { put<uint16_t>(b, 0x206, 0x0205); }, "older than 2.06"},
        {"jump opcode", [](auto& b) { b[0x200] = 0xe9; }, "jump opcode"},
        {"header end", [](auto& b) { b[0x201] = 0xff; }, "setup header ends at 0x301"},
        {"header too short", [](auto& b) { b[0x201] = 0x10; }, "setup header ends"},
        {"syssize 0", [](auto& b) { put<uint32_t>(b, 0x1f4, 0); }, "syssize 0"},
        {"syssize big", [](auto& b) { put<uint32_t>(b, 0x1f4, 0x10000000); }, "syssize 268435456"},
        {"truncated kernel", [](auto& b) { b.resize(b.size() - 4096); }, "syssize"},
        {"zImage", [](auto& b) { b[0x211] = 0; }, "LOADED_HIGH"},
        {"kernel_alignment", [](auto& b) { put<uint32_t>(b, 0x230, 0x3000); }, "kernel_alignment 0x3000"},
        {"cmdline_size", [](auto& b) { put<uint32_t>(b, 0x238, 0); }, "cmdline_size is 0"},
        {"initrd_addr_max", [](auto& b) { put<uint32_t>(b, 0x22c, 0x1000); }, "initrd_addr_max 0x1000"},
        {"init_size small", [](auto& b) { put<uint32_t>(b, 0x260, 0x100); }, "init_size 0x100"},
        {"init_size huge", [](auto& b) { put<uint32_t>(b, 0x260, 0xf0000000); }, "RAM from 1 MiB ends"},
        {"pref_address", [](auto& b) { put<uint64_t>(b, 0x258, 1ull << 33); }, "pref_address"},
        {"payload", [](auto& b) { put<uint32_t>(b, 0x24c, 0x7fffffff); }, "payload_length"},
        {"cmdline too long", [](auto& b) { put<uint32_t>(b, 0x238, 10); }, "at most 10 (cmdline_size)"},
    };
    check_cases(make_bzimage(), cases, plan_kernel);
    BootConfig c = config(64 * MiB);
    c.initrds.push_back(module(60 * MiB));
    CHECK(error_of(plan_kernel("vmlinuz", make_bytes(make_bzimage()), c)).find("does not fit") != std::string::npos);
    c = config();
    c.initrds = {module(10), module(10)};
    CHECK(error_of(plan_kernel("vmlinuz", make_bytes(make_bzimage()), c)).find("one initrd") != std::string::npos);
    c = config();
    c.cmdline = std::string("a\0b", 3);
    CHECK(error_of(plan_kernel("vmlinuz", make_bytes(make_bzimage()), c)).find("NUL") != std::string::npos);
    c = config();
    for (int i = 0; i < 130; ++i)
        REQUIRE(c.memory.add(0x20000000 + uint64_t(i) * 0x10000, 0x1000, E820Type::Reserved));
    CHECK(error_of(plan_kernel("vmlinuz", make_bytes(make_bzimage()), c)).find("holds 128") != std::string::npos);
}

TEST_CASE("bzImage, ELF and multiboot: random corruption never crashes")
{
    std::mt19937 rng(1234);
    std::vector<std::vector<uint8_t>> seeds = {
        make_bzimage(),
        make_elf(true, {{0xffffffff81000000, 0x1000000, 0x3000, 0x5000}}, 0xffffffff81000000, 0x1000040), make_aout()};
    int planned = 0, refused = 0;
    for (const auto& seed : seeds) {
        for (int round = 0; round < 1500; ++round) {
            auto img = seed;
            int flips = 1 + int(rng() % 4);
            for (int f = 0; f < flips; ++f) {
                size_t at = rng() % std::min<size_t>(img.size(), 0x1200);
                img[at] = uint8_t(rng());
            }
            if (round % 5 == 0)
                img.resize(rng() % img.size());
            BootConfig c = config();
            c.initrds.push_back(module(4096));
            auto plan = plan_kernel("fuzz", make_bytes(std::move(img)), c);
            (plan ? planned : refused)++;
            if (plan)
                for (const Blob& b : plan->blobs)
                    REQUIRE(b.offset + b.size <= b.bytes->size());
        }
    }
    MESSAGE("corrupted images: " << planned << " planned, " << refused << " refused");
    CHECK(refused > 0);
}

TEST_CASE("ELF: PVH note, 64-bit and 32-bit entries")
{
    std::vector<Seg> segs = {{0xffffffff81000000, 0x1000000, 0x3000, 0x3000},
                             {0xffffffff81200000, 0x1200000, 0x1000, 0x9000}};
    BootConfig c = config();
    c.initrds.push_back(module(50000));
    c.acpi_rsdp = 0xf5a00;
    SUBCASE("PVH")
    {
        auto img = make_bytes(make_elf(true, segs, 0xffffffff81000000, 0x1000040));
        auto elf = parse_elf("vmlinux", *img);
        REQUIRE(elf);
        CHECK(elf->pvh_entry == 0x1000040u);
        CHECK(elf->entry_phys == 0x1000000);
        auto plan = plan_kernel("vmlinux", img, c);
        REQUIRE_MESSAGE(plan, error_of(plan));
        CHECK(plan->kind == "elf-pvh");
        CHECK(plan->entry.mode == CpuMode::Protected32);
        CHECK(plan->entry.rip == 0x1000040);
        CHECK(plan->entry.rbx == c.layout.boot_params);
        CHECK(plan->entry.tr.attr == 0x8b);
        CHECK(plan->entry.tr.base == c.layout.tss);
        const Blob* seg1 = find_blob(*plan, "kernel segment 1");
        REQUIRE(seg1);
        CHECK(seg1->gpa == 0x1200000);
        CHECK(seg1->size == 0x1000);
        CHECK(seg1->zero_size == 0x8000);
        CHECK(plan->kernel.end() == 0x1209000);
        auto info = find_blob(*plan, "pvh start_info")->data();
        CHECK(get<uint32_t>(info, 0) == 0x336ec578);
        CHECK(get<uint32_t>(info, 4) == 1);
        CHECK(get<uint32_t>(info, 12) == 1);
        CHECK(get<uint64_t>(info, 24) == c.layout.cmdline);
        CHECK(get<uint64_t>(info, 32) == 0xf5a00);
        CHECK(get<uint32_t>(info, 48) == c.memory.entries().size());
        const Blob* tables = find_blob(*plan, "pvh tables");
        uint64_t memmap = get<uint64_t>(info, 40), modlist = get<uint64_t>(info, 16);
        CHECK(memmap == tables->gpa);
        auto t = tables->data();
        CHECK(get<uint64_t>(t, 24 + 0) == c.memory.entries()[1].addr); // second entry
        CHECK(get<uint32_t>(t, 24 + 16) == uint32_t(c.memory.entries()[1].type));
        CHECK(get<uint64_t>(t, modlist - memmap) == plan->initrds[0].addr);
        CHECK(get<uint64_t>(t, modlist - memmap + 8) == 50000);
        CHECK(plan->initrds[0].addr >= 0x1209000);
    }
    SUBCASE("64-bit Linux protocol without a note, or with Bit64")
    {
        for (bool note : {false, true}) {
            auto img = note ? make_bytes(make_elf(true, segs, 0xffffffff81000010, 0x1000040))
                            : make_bytes(make_elf(true, segs, 0xffffffff81000010));
            c.entry = note ? EntryChoice::Bit64 : EntryChoice::Auto;
            auto plan = plan_kernel("vmlinux", img, c);
            REQUIRE_MESSAGE(plan, error_of(plan));
            CHECK(plan->kind == "elf");
            CHECK(plan->entry.mode == CpuMode::Long64);
            CHECK(plan->entry.rip == 0x1000010);
            CHECK(plan->entry.rsi == c.layout.boot_params);
            auto z = find_blob(*plan, "boot_params")->data();
            CHECK(get<uint32_t>(z, 0x202) == 0x53726448);
            CHECK(get<uint16_t>(z, 0x1fe) == 0xaa55);
            CHECK(get<uint32_t>(z, 0x218) == plan->initrds[0].addr);
            CHECK(get<uint64_t>(z, 0x070) == 0xf5a00);
        }
        c.entry = EntryChoice::Bit32;
        CHECK(error_of(plan_kernel("vmlinux", make_bytes(make_elf(true, segs, 0xffffffff81000010)), c))
                  .find("no 32-bit entry") != std::string::npos);
    }
    SUBCASE("ELF32")
    {
        auto img = make_bytes(make_elf(false, {{0x200000, 0x200000, 0x2000, 0x2000}}, 0x200100));
        auto plan = plan_kernel("kernel32", img, c);
        REQUIRE_MESSAGE(plan, error_of(plan));
        CHECK(plan->entry.mode == CpuMode::Protected32);
        CHECK(plan->entry.rip == 0x200100);
        CHECK(plan->entry.rsi == c.layout.boot_params);
        c.entry = EntryChoice::Bit64;
        CHECK(error_of(plan_kernel("kernel32", img, c)).find("ELF32") != std::string::npos);
    }
}

TEST_CASE("ELF: hostile headers")
{
    std::vector<Seg> segs = {{0xffffffff81000000, 0x1000000, 0x3000, 0x3000}};
    auto base = make_elf(true, segs, 0xffffffff81000000, 0x1000040);
    size_t ph0 = 64, note_ph = 64 + 56;
    std::vector<Case> cases = {
        {"class", [](auto& b) { b[4] = 3; }, "EI_CLASS 3"},
        {"big-endian", [](auto& b) { b[5] = 2; }, "EI_DATA 2"},
        {"version", [](auto& b) { b[6] = 0; }, "EI_VERSION"},
        {"type", [](auto& b) { put<uint16_t>(b, 16, 3); }, "e_type 3"},
        {"machine", [](auto& b) { put<uint16_t>(b, 18, 3); }, "e_machine 3"},
        {"phentsize", [](auto& b) { put<uint16_t>(b, 54, 40); }, "e_phentsize 40"},
        {"phnum", [](auto& b) { put<uint16_t>(b, 56, 0); }, "e_phnum 0"},
        {"phoff", [](auto& b) { put<uint64_t>(b, 32, 1ull << 40); }, "e_phoff"},
        {"p_offset", [&](auto& b) { put<uint64_t>(b, ph0 + 8, b.size()); }, "program header 0: p_offset"},
        {"p_filesz", [&](auto& b) { put<uint64_t>(b, ph0 + 40, 0x100); }, "p_filesz 0x3000 exceeds p_memsz"},
        {"wrap", [&](auto& b) { put<uint64_t>(b, ph0 + 24, ~0ull - 5); }, "wraps"},
        {"entry", [](auto& b) { put<uint64_t>(b, 24, 0x1234); }, "e_entry 0x1234"},
        {"note size", [&](auto& b) { put<uint64_t>(b, note_ph + 32, 5); }, "cut off"},
        {"note runs past", [&](auto& b) { put<uint32_t>(b, get<uint64_t>(b, note_ph + 8) + 4, 4096); }, "runs past"},
        {"note descsz", [&](auto& b) { put<uint32_t>(b, get<uint64_t>(b, note_ph + 8) + 4, 2); }, "not 4 or 8"},
        {"pvh outside", [&](auto& b) { put<uint64_t>(b, get<uint64_t>(b, note_ph + 8) + 16, 0x5000000); },
         "PVH entry 0x5000000 is outside"},
        {"pvh 64-bit", [&](auto& b) { put<uint64_t>(b, get<uint64_t>(b, note_ph + 8) + 16, 1ull << 33); },
         "not a 32-bit address"},
        {"not RAM",
         [&](auto& b) {
             put<uint64_t>(b, ph0 + 24, 0xfee00000);
             put<uint64_t>(b, get<uint64_t>(b, note_ph + 8) + 16, 0xfee00040);
         },
         "kernel segment 0 at 0xfee00000-0xfee02fff is not in RAM"},
        {"under the loader",
         [&](auto& b) {
             put<uint64_t>(b, ph0 + 24, 0x6000);
             put<uint64_t>(b, get<uint64_t>(b, note_ph + 8) + 16, 0x6040);
         },
         "overlaps"},
    };
    check_cases(base, cases, plan_elf);
    auto overlapping = make_elf(true, {{0x1000000, 0x1000000, 0x2000, 0x2000}, {0x1001000, 0x1001000, 0x10, 0x10}},
                                0x1000000);
    CHECK(error_of(plan_elf("vmlinux", make_bytes(overlapping), config())).find("overlaps") != std::string::npos);
    for (size_t cut = 0; cut < base.size(); cut += 61) {
        auto img = base;
        img.resize(cut);
        CHECK_FALSE(plan_elf("vmlinux", make_bytes(img), config()));
    }
}

TEST_CASE("multiboot: a.out kludge with modules and the info structure")
{
    auto img = make_bytes(make_aout());
    BootConfig c = config();
    c.cmdline = "debug=1";
    c.initrds = {module(5000, "mod1.bin arg=1", 1), module(10000, "mod2.bin", 2)};
    auto plan = plan_kernel("kernel.mb", img, c);
    REQUIRE_MESSAGE(plan, error_of(plan));
    CHECK(plan->kind == "multiboot");
    const EntryState& e = plan->entry;
    CHECK(e.mode == CpuMode::Protected32);
    CHECK(e.rip == 0x100100);
    CHECK(e.rax == 0x2badb002);
    CHECK(e.rbx == c.layout.boot_params);
    CHECK(e.cr0 == 0x11);
    const Blob* kernel = find_blob(*plan, "kernel");
    REQUIRE(kernel);
    CHECK(kernel->gpa == 0x100000);
    CHECK(kernel->size == 0x3000);
    CHECK(kernel->zero_size == 0x2000);

    REQUIRE(plan->initrds.size() == 2);
    CHECK(plan->initrds[0].addr == 0x105000);
    CHECK(plan->initrds[1].addr == 0x107000); // 5000 bytes round up to 0x2000
    auto info = find_blob(*plan, "multiboot info")->data();
    CHECK(get<uint32_t>(info, 0) == 0x24d);
    CHECK(get<uint32_t>(info, 4) == 639);
    CHECK(get<uint32_t>(info, 8) == 511 * 1024);
    CHECK(get<uint32_t>(info, 20) == 2);
    const Blob* strings = find_blob(*plan, "command lines");
    const Blob* tables = find_blob(*plan, "multiboot tables");
    auto str_at = [&](uint32_t gpa) {
        REQUIRE(gpa >= strings->gpa);
        return std::string(reinterpret_cast<const char*>(strings->data().data() + (gpa - strings->gpa)));
    };
    CHECK(str_at(get<uint32_t>(info, 16)) == "kernel.mb debug=1");
    CHECK(str_at(get<uint32_t>(info, 64)) == "emud");
    uint32_t mods = get<uint32_t>(info, 24);
    auto t = tables->data();
    CHECK(get<uint32_t>(t, mods - tables->gpa) == 0x105000);
    CHECK(get<uint32_t>(t, mods - tables->gpa + 4) == 0x105000 + 5000);
    CHECK(str_at(get<uint32_t>(t, mods - tables->gpa + 8)) == "mod1.bin arg=1");
    CHECK(str_at(get<uint32_t>(t, mods - tables->gpa + 16 + 8)) == "mod2.bin");
    uint32_t mmap = get<uint32_t>(info, 48), mmap_len = get<uint32_t>(info, 44);
    CHECK(mmap_len == 24 * c.memory.entries().size());
    CHECK(get<uint32_t>(t, mmap - tables->gpa) == 20);
    CHECK(get<uint64_t>(t, mmap - tables->gpa + 24 + 4) == 0xf0000); // second entry: the BIOS
    CHECK(find_blob(*plan, "module 1")->data()[0] == 2);
}

TEST_CASE("multiboot: ELF kernel and hostile headers")
{
    auto header = multiboot_header(0x3);
    auto elf = make_elf(false, {{0x200000, 0x200000, 0x2000, 0x4000}}, 0x200010, {}, header);
    auto plan = plan_kernel("mb.elf", make_bytes(elf), config());
    REQUIRE_MESSAGE(plan, error_of(plan));
    CHECK(plan->kind == "multiboot");
    CHECK(plan->entry.rip == 0x200010);
    CHECK(plan->kernel.end() == 0x204000);

    auto flags = [](uint32_t f) {
        return [f](std::vector<uint8_t>& b) {
            put<uint32_t>(b, 0x44, f);
            put<uint32_t>(b, 0x48, uint32_t(0) - 0x1badb002 - f);
        };
    };
    check_cases(make_aout(),
                {
                    {"checksum", [](auto& b) { b[0x48] ^= 1; }, "bad checksum"},
                    {"video", flags(0x10007), "video mode information"},
                    {"unknown bit", flags(0x10023), "bits 0x20"},
                    {"load after header", [](auto& b) { put<uint32_t>(b, 0x40 + 16, 0x100080); }, "load_addr"},
                    {"load_end past file", [](auto& b) { put<uint32_t>(b, 0x40 + 20, 0x200000); }, "load_end_addr"},
                    {"bss below load_end", [](auto& b) { put<uint32_t>(b, 0x40 + 24, 0x100010); }, "bss_end_addr"},
                    {"entry outside", [](auto& b) { put<uint32_t>(b, 0x40 + 28, 0x500000); }, "entry_addr 0x500000"},
                    {"cut off", [](auto& b) { b.resize(0x50); }, "cut off"},
                    {"not ELF", flags(0x3), "must be ELF"},
                },
                plan_kernel);
    BootConfig c = config(64 * MiB);
    c.initrds = {module(70 * MiB)};
    CHECK(error_of(plan_kernel("kernel.mb", make_bytes(make_aout()), c)).find("does not fit") != std::string::npos);
    CHECK(error_of(plan_kernel("junk", make_bytes(std::vector<uint8_t>(9000, 0x11)), config()))
              .find("junk: not a bzImage, multiboot or ELF kernel") != std::string::npos);
}

TEST_CASE("read_modules: comma-separated list with arguments and ,, escapes")
{
    auto dir = std::filesystem::temp_directory_path() / ("emud-boot-test-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
    auto write = [&](const std::string& name, const std::string& text) {
        std::ofstream(dir / name, std::ios::binary) << text;
        return (dir / name).string();
    };
    std::string a = write("a.bin", "AAAA"), b = write("b,x.bin", "BB");
    auto mods = read_modules(a + " arg=1," + dir.string() + "/b,,x.bin", 1 << 20);
    REQUIRE_MESSAGE(mods, (mods ? "" : mods.error().message));
    REQUIRE(mods->size() == 2);
    CHECK((*mods)[0].cmdline == a + " arg=1");
    CHECK((*mods)[0].data->size() == 4);
    CHECK((*mods)[1].cmdline == b);
    CHECK((*mods)[1].data->size() == 2);
    auto missing = read_modules(a + "," + dir.string() + "/nope", 1 << 20);
    REQUIRE_FALSE(missing);
    CHECK(missing.error().message.find("nope: cannot open") != std::string::npos);
    CHECK_FALSE(read_modules(a + ",", 1 << 20));
    CHECK(read_file(a, 2).error().message.find("exceeds") != std::string::npos);
    std::filesystem::remove_all(dir);
}

TEST_CASE("Debian's kernel from the guest kit")
{
    std::vector<std::filesystem::path> dirs;
    if (const char* env = std::getenv("EMUD_GUEST_DIR"))
        dirs.emplace_back(env);
    dirs.emplace_back("build/guest");
    dirs.emplace_back("../guest");
    dirs.push_back(std::filesystem::path(__FILE__).parent_path().parent_path().parent_path() / "build/guest");
    std::filesystem::path dir;
    for (const auto& d : dirs)
        if (std::filesystem::exists(d / "vmlinuz")) {
            dir = d;
            break;
        }
    if (dir.empty()) {
        MESSAGE("skipped: no vmlinuz in $EMUD_GUEST_DIR or build/guest (run scripts/make-guest.sh build/guest)");
        return;
    }
    auto image = read_file((dir / "vmlinuz").string(), 256 << 20);
    REQUIRE(image);
    auto h = parse_bzimage("vmlinuz", **image);
    REQUIRE_MESSAGE(h, (h ? "" : h.error().message));
    MESSAGE("vmlinuz: protocol " << (h->version >> 8) << "." << (h->version & 0xff) << ", " << h->kernel_version);
    CHECK(h->version >= 0x020c);
    CHECK(h->has_64bit_entry());
    CHECK(h->relocatable);
    CHECK(h->init_size > h->kernel_size);
    CHECK(h->kernel_version.rfind("6.", 0) == 0);

    BootConfig c = config();
    if (std::filesystem::exists(dir / "initramfs.cpio.gz")) {
        auto rd = read_modules((dir / "initramfs.cpio.gz").string(), 256 << 20);
        REQUIRE(rd);
        c.initrds = std::move(*rd);
    }
    auto plan = plan_kernel("vmlinuz", *image, c);
    REQUIRE_MESSAGE(plan, error_of(plan));
    MESSAGE(plan->summary);
    CHECK(plan->entry.mode == CpuMode::Long64);
    CHECK(plan->entry.rip == find_blob(*plan, "kernel")->gpa + 0x200);
    CHECK(plan->kernel.addr >= h->pref_address);
    CHECK(plan->kernel.end() <= 512 * MiB);
    for (const Range& r : plan->initrds) {
        CHECK(r.addr >= plan->kernel.end());
        CHECK(r.end() <= 0x80000000);
    }

    if (std::filesystem::exists(dir / "vmlinux")) {
        auto vmlinux = read_file((dir / "vmlinux").string(), 512 << 20);
        REQUIRE(vmlinux);
        auto elf = parse_elf("vmlinux", **vmlinux);
        REQUIRE_MESSAGE(elf, (elf ? "" : elf.error().message));
        CHECK(elf->is64);
        REQUIRE(elf->pvh_entry);
        auto pvh = plan_kernel("vmlinux", *vmlinux, c);
        REQUIRE_MESSAGE(pvh, error_of(pvh));
        MESSAGE(pvh->summary);
        CHECK(pvh->kind == "elf-pvh");
        CHECK(pvh->entry.rip == *elf->pvh_entry);
        c.entry = EntryChoice::Bit64;
        auto direct = plan_kernel("vmlinux", *vmlinux, c);
        REQUIRE_MESSAGE(direct, error_of(direct));
        CHECK(direct->entry.mode == CpuMode::Long64);
        CHECK(direct->entry.rip == elf->entry_phys);
    }
}
