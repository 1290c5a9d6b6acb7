// Unit tests of engine/memory: regions, flat views, accessors, dirty tracking.
#include "common/log.h"
#include "engine/memory/address_space.h"

#include <array>
#include <atomic>
#include <cstring>
#include <doctest/doctest.h>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

using namespace emu::mem;

namespace {

const bool g_quiet = (emu::set_log_level(emu::LogLevel::Error), true);

template <class T>
T must(Result<T> r)
{
    REQUIRE_MESSAGE(r.has_value(), (r ? std::string() : r.error().message));
    return std::move(*r);
}

void must(Result<void> r)
{
    REQUIRE_MESSAGE(r.has_value(), (r ? std::string() : r.error().message));
}

std::string error_of(Result<void> r)
{
    REQUIRE_FALSE(r.has_value());
    return r.error().message;
}

// A device with 256 bytes of registers that logs every callback.
struct FakeDevice {
    struct Access {
        bool write;
        uint64_t offset;
        uint64_t value;
        unsigned size;
        bool operator==(const Access&) const = default;
    };
    std::vector<Access> log;
    std::array<uint8_t, 256> regs{};

    IoOps ops(unsigned min = 1, unsigned max = 8)
    {
        IoOps o;
        o.read = [this](uint64_t off, unsigned size) {
            uint64_t v = 0;
            memcpy(&v, &regs[off], size);
            log.push_back({false, off, v, size});
            return v;
        };
        o.write = [this](uint64_t off, uint64_t value, unsigned size) {
            memcpy(&regs[off], &value, size);
            log.push_back({true, off, value, size});
        };
        o.min_access = min;
        o.max_access = max;
        return o;
    }
};

using A = FakeDevice::Access;

// A 1 MiB system container holding 64 KiB of RAM at 0.
struct Machine {
    MemoryRegion::Ptr system = must(MemoryRegion::container("system", 1 << 20));
    MemoryRegion::Ptr ram = must(MemoryRegion::ram("pc.ram", 0x10000));
    AddressSpace as{"memory", *system};
    Machine() { must(system->add_subregion(*ram, 0)); }
};

uint64_t rss_kib()
{
    std::ifstream f("/proc/self/status");
    std::string line;
    while (std::getline(f, line))
        if (line.rfind("VmRSS:", 0) == 0)
            return std::stoull(line.substr(6));
    return 0;
}

} // namespace

TEST_CASE("RAM: every size at every alignment, little-endian")
{
    Machine m;
    uint8_t* host = m.ram->host();
    REQUIRE(host != nullptr);
    for (unsigned size : {1u, 2u, 4u, 8u}) {
        for (uint64_t gpa : {0x0ull, 0x1ull, 0x3ull, 0x7ull, 0xffdull, 0xfffull, 0xff9ull, 0x1234ull}) {
            uint64_t value = 0x8877665544332211ull;
            m.as.write(gpa, value, size);
            uint64_t mask = size == 8 ? ~0ull : (1ull << (8 * size)) - 1;
            CHECK(m.as.read(gpa, size) == (value & mask));
            uint64_t raw = 0;
            memcpy(&raw, host + gpa, size);
            CHECK(raw == (value & mask));
            CHECK(host[gpa] == 0x11);
        }
    }
    memset(host + 0x2000, 0xab, 16);
    CHECK(m.as.read(0x2003, 8) == 0xababababababababull);
    // Crossing a page inside one block is one access.
    m.as.write(0xffe, 0x0102030405060708ull, 8);
    CHECK(m.as.read(0x1000, 2) == 0x0506);
}

TEST_CASE("RAM: configuration errors name the region")
{
    CHECK(MemoryRegion::ram("pc.ram", 0).error().message == "pc.ram: size is 0");
    CHECK(MemoryRegion::ram("pc.ram", 0x1800).error().message ==
          "pc.ram: size 0x1800 is not a multiple of the 4 KiB page size");
    CHECK(MemoryRegion::rom("bios", 0x100).error().message ==
          "bios: size 0x100 is not a multiple of the 4 KiB page size");
    CHECK(MemoryRegion::container("sys", 0).error().message == "sys: container size is 0");
    CHECK(MemoryRegion::io("dev", 0, {}).error().message == "dev: I/O region size is 0");
    IoOps bad;
    bad.min_access = 3;
    CHECK(MemoryRegion::io("dev", 8, bad).error().message.find("dev: access sizes 3..8") == 0);
    bad.min_access = 8;
    bad.max_access = 4;
    CHECK_FALSE(MemoryRegion::io("dev", 8, bad).has_value());
    IoOps wide;
    wide.min_access = 4;
    CHECK(MemoryRegion::io("dev", 6, wide).error().message ==
          "dev: size 0x6 is not a multiple of the minimum access size 4");
}

TEST_CASE("ROM ignores guest writes; loaders fill it")
{
    Machine m;
    auto bios = must(MemoryRegion::rom("bios", 0x2000));
    must(m.system->add_subregion(*bios, 0xe0000));
    const char sig[] = "BIOS";
    must(bios->load(0x10, sig, 4));
    CHECK(m.as.read(0xe0010, 4) == 0x534f4942);
    m.as.write(0xe0010, 0, 4);
    CHECK(m.as.read(0xe0010, 4) == 0x534f4942);

    uint32_t word = 0xdeadbeef;
    BufStatus st = m.as.write_buf(0xe0100, &word, 4);
    CHECK(st.cause == BufStatus::Cause::ReadOnly);
    CHECK(st.addr == 0xe0100);
    CHECK(describe(st) == "0xe0100: read-only");
    CHECK(m.as.load_rom(0xe0100, &word, 4));
    uint32_t back = 0;
    CHECK(m.as.read_buf(0xe0100, &back, 4));
    CHECK(back == 0xdeadbeef);

    Lookup l = m.as.lookup(0xe0123);
    CHECK(l.kind == Lookup::Kind::Ram);
    CHECK_FALSE(l.writable);
    CHECK(l.host == bios->host() + 0x123);
    CHECK(l.length == 0x2000 - 0x123);
    CHECK(error_of(bios->load(0x1ffe, sig, 4)) == "bios: loading 0x4 bytes at 0x1ffe exceeds the region size 0x2000");
}

TEST_CASE("I/O: callbacks see region offsets and sizes")
{
    Machine m;
    FakeDevice dev;
    auto mmio = must(MemoryRegion::io("dev", 0x100, dev.ops()));
    must(m.system->add_subregion(*mmio, 0x20000));
    m.as.write(0x20008, 0x11223344, 4);
    CHECK(m.as.read(0x20008, 2) == 0x3344);
    CHECK(dev.log == std::vector<A>{{true, 8, 0x11223344, 4}, {false, 8, 0x3344, 2}});

    Lookup l = m.as.lookup(0x20010);
    CHECK(l.kind == Lookup::Kind::Io);
    CHECK(l.region == mmio.get());
    CHECK(l.offset == 0x10);
    CHECK(l.length == 0xf0);
}

TEST_CASE("I/O: wide accesses split into the device's max size, little-endian")
{
    for (unsigned max : {1u, 2u, 4u}) {
        CAPTURE(max);
        Machine m;
        FakeDevice dev;
        auto mmio = must(MemoryRegion::io("dev", 0x100, dev.ops(1, max)));
        must(m.system->add_subregion(*mmio, 0x20000));
        m.as.write(0x20010, 0x8877665544332211ull, 8);
        REQUIRE(dev.log.size() == 8 / max);
        for (unsigned i = 0; i < dev.log.size(); ++i) {
            CHECK(dev.log[i].write);
            CHECK(dev.log[i].offset == 0x10 + i * max);
            CHECK(dev.log[i].size == max);
            uint64_t mask = (1ull << (8 * max)) - 1;
            CHECK(dev.log[i].value == ((0x8877665544332211ull >> (8 * i * max)) & mask));
        }
        dev.log.clear();
        CHECK(m.as.read(0x20010, 8) == 0x8877665544332211ull);
        CHECK(dev.log.size() == 8 / max);
    }
}

TEST_CASE("I/O: unaligned accesses become aligned pieces")
{
    Machine m;
    FakeDevice dev;
    auto mmio = must(MemoryRegion::io("dev", 0x100, dev.ops(1, 8)));
    must(m.system->add_subregion(*mmio, 0x20000));
    m.as.write(0x20002, 0xaabbccdd, 4);
    CHECK(dev.log == std::vector<A>{{true, 2, 0xccdd, 2}, {true, 4, 0xaabb, 2}});
    dev.log.clear();
    m.as.write(0x20001, 0x0807060504030201ull, 8); // 1 + 2 + 4 + 1
    CHECK(dev.log == std::vector<A>{{true, 1, 0x01, 1}, {true, 2, 0x0302, 2}, {true, 4, 0x07060504, 4}, {true, 8, 0x08, 1}});
    CHECK(m.as.read(0x20001, 8) == 0x0807060504030201ull);
}

TEST_CASE("I/O: narrow accesses are widened; writes read-modify-write")
{
    Machine m;
    FakeDevice dev;
    auto mmio = must(MemoryRegion::io("dev", 0x100, dev.ops(4, 4)));
    must(m.system->add_subregion(*mmio, 0x20000));
    uint32_t init = 0x44332211;
    memcpy(&dev.regs[4], &init, 4);
    CHECK(m.as.read(0x20005, 1) == 0x22);
    CHECK(dev.log == std::vector<A>{{false, 4, 0x44332211, 4}});
    dev.log.clear();
    m.as.write(0x20006, 0xee, 1);
    CHECK(dev.log == std::vector<A>{{false, 4, 0x44332211, 4}, {true, 4, 0x44ee2211, 4}});
    dev.log.clear();
    // Two bytes straddling two words: two widened read-modify-writes.
    m.as.write(0x20007, 0x5566, 2);
    CHECK(dev.log.size() == 4);
    CHECK(m.as.read(0x20004, 8) == (0x0000000055000000ull << 8 | 0x0066ee2211ull));
}

TEST_CASE("I/O: missing callbacks read all ones and drop writes")
{
    Machine m;
    auto hole = must(MemoryRegion::io("hole", 0x10, IoOps{}));
    must(m.system->add_subregion(*hole, 0x30000));
    CHECK(m.as.read(0x30000, 4) == 0xffffffff);
    m.as.write(0x30000, 1, 4);
    CHECK(m.as.unassigned_accesses() == 0); // assigned, just inert
}

TEST_CASE("accesses straddling RAM and I/O are split by byte range")
{
    auto sys = must(MemoryRegion::container("system", 0x10000));
    auto ram = must(MemoryRegion::ram("ram", 0x1000));
    FakeDevice dev;
    auto mmio = must(MemoryRegion::io("dev", 0x10, dev.ops(1, 4)));
    must(sys->add_subregion(*ram, 0));
    must(sys->add_subregion(*mmio, 0x1000));
    AddressSpace as("memory", *sys);
    as.write(0xffd, 0x8877665544332211ull, 8);
    CHECK(ram->host()[0xffd] == 0x11);
    CHECK(ram->host()[0xfff] == 0x33);
    // 5 bytes at device offset 0: split into 4 + 1.
    CHECK(dev.log == std::vector<A>{{true, 0, 0x77665544, 4}, {true, 4, 0x88, 1}});
    CHECK(as.read(0xffd, 8) == 0x8877665544332211ull);
    // I/O then unassigned: the missing bytes read as 0xff.
    CHECK(as.read(0x100e, 4) == 0xffff0000);
    CHECK(as.unassigned_accesses() == 1);
}

TEST_CASE("containers: the higher priority wins; removing it reveals the lower")
{
    Machine m;
    FakeDevice dev;
    auto vga = must(MemoryRegion::io("vga", 0x1000, dev.ops()));
    auto low = must(MemoryRegion::io("low", 0x1000, dev.ops()));
    must(m.system->add_subregion(*vga, 0x8000, 1));
    must(m.system->add_subregion(*low, 0x8000, -1));
    CHECK(m.as.lookup(0x8000).region == vga.get());
    CHECK(m.as.lookup(0x7fff).kind == Lookup::Kind::Ram);
    CHECK(m.as.lookup(0x9000).kind == Lookup::Kind::Ram);
    m.system->remove_subregion(*vga);
    Lookup l = m.as.lookup(0x8010);
    CHECK(l.kind == Lookup::Kind::Ram);
    CHECK(l.host == m.ram->host() + 0x8010);
    CHECK(l.length == 0x10000 - 0x8010); // fragments of pc.ram merged again
    CHECK(m.as.view()->ranges().size() == 1);
    m.system->remove_subregion(*m.ram);
    CHECK(m.as.lookup(0x8010).region == low.get());
}

TEST_CASE("containers: equal-priority overlap is refused with a message")
{
    auto pc = must(MemoryRegion::container("pc.ram", 0x100000));
    auto bios = must(MemoryRegion::rom("bios", 0x20000));
    auto vga = must(MemoryRegion::io("vga", 0x20000, IoOps{}));
    must(pc->add_subregion(*bios, 0xa0000));
    CHECK(error_of(pc->add_subregion(*vga, 0xa0000)) ==
          "pc.ram: subregion 'vga' at 0xa0000 overlaps 'bios' at 0xa0000-0xbffff at equal priority 0");
    CHECK(vga->parent() == nullptr);
    must(pc->add_subregion(*vga, 0xc0000)); // adjacent is fine
    CHECK(error_of(vga->set_offset(0xbf000)).find("overlaps 'bios'") != std::string::npos);
    CHECK(vga->offset() == 0xc0000);
    auto other = must(MemoryRegion::container("other", 0x1000));
    CHECK(error_of(other->add_subregion(*vga, 0)) == "other: subregion 'vga' is already in 'pc.ram'");
    CHECK(error_of(bios->add_subregion(*other, 0)) == "bios: cannot add subregion 'other' to a rom region");
    CHECK(error_of(pc->add_subregion(*other, 0xfffffffffffff800ull)).find("past the end of the 64-bit space") !=
          std::string::npos);
}

TEST_CASE("containers: holes show lower-priority siblings; children are clipped")
{
    Machine m;
    auto sub = must(MemoryRegion::container("sub", 0x4000));
    FakeDevice dev;
    auto reg = must(MemoryRegion::io("reg", 0x100, dev.ops()));
    must(sub->add_subregion(*reg, 0x1000));
    must(m.system->add_subregion(*sub, 0x4000, 5));
    CHECK(m.as.lookup(0x4000).kind == Lookup::Kind::Ram);
    CHECK(m.as.lookup(0x5000).region == reg.get());
    CHECK(m.as.lookup(0x5100).kind == Lookup::Kind::Ram);
    // A child extending past its container is clipped to it.
    auto big = must(MemoryRegion::ram("big", 0x10000));
    auto small = must(MemoryRegion::container("small", 0x2000));
    must(small->add_subregion(*big, 0x1000));
    must(m.system->add_subregion(*small, 0x80000));
    CHECK(m.as.lookup(0x81000).length == 0x1000);
    CHECK(m.as.lookup(0x82000).kind == Lookup::Kind::Unassigned);
}

TEST_CASE("aliases, aliases of aliases, moving the window")
{
    Machine m;
    auto win = must(MemoryRegion::alias("win", *m.ram, 0x1000, 0x1000));
    auto inner = must(MemoryRegion::alias("inner", *win, 0x800, 0x800));
    must(m.system->add_subregion(*win, 0x100000 - 0x2000));
    must(m.system->add_subregion(*inner, 0x100000 - 0x800));
    m.as.write(0xfe010, 0xcafe, 2);
    CHECK(m.as.read(0x1010, 2) == 0xcafe);
    m.as.write(0xff810, 0xbeef, 2); // inner: ram 0x1000 + 0x800 + 0x10
    CHECK(m.as.read(0x1810, 2) == 0xbeef);
    Lookup l = m.as.lookup(0xff810);
    CHECK(l.region == m.ram.get());
    CHECK(l.ram_offset == 0x1810);
    CHECK(l.block == m.ram->ram_block());
    uint64_t gen = m.as.generation();
    must(win->set_alias_offset(0x3000));
    CHECK(m.as.generation() == gen + 1);
    CHECK(m.as.lookup(0xff810).ram_offset == 0x3810);
    CHECK(error_of(win->set_alias_offset(0xf800)) == "win: alias window 0xf800+0x1000 exceeds 'pc.ram' (size 0x10000)");
    CHECK(MemoryRegion::alias("bad", *m.ram, 0, 0x10001).error().message ==
          "bad: alias window 0x0+0x10001 exceeds 'pc.ram' (size 0x10000)");
    // A container may not contain an alias of itself.
    auto loop = must(MemoryRegion::alias("loop", *m.system, 0, 0x1000));
    CHECK(error_of(m.system->add_subregion(*loop, 0x90000)) == "system: adding subregion 'loop' would make a cycle");
}

TEST_CASE("read-only aliases drop guest writes and refuse DMA")
{
    Machine m;
    auto shadow = must(MemoryRegion::alias("shadow", *m.ram, 0, 0x1000));
    must(m.system->add_subregion(*shadow, 0xf0000));
    m.as.write(0xf0000, 0x55, 1);
    CHECK(m.ram->host()[0] == 0x55);
    shadow->set_readonly(true);
    m.as.write(0xf0000, 0x66, 1);
    CHECK(m.ram->host()[0] == 0x55);
    CHECK_FALSE(m.as.lookup(0xf0000).writable);
    CHECK(m.as.lookup(0x0).writable);
    uint8_t b = 1;
    CHECK(m.as.write_buf(0xf0000, &b, 1).cause == BufStatus::Cause::ReadOnly);
    CHECK(m.as.load_rom(0xf0000, &b, 1));
    CHECK(m.ram->host()[0] == 1);
}

TEST_CASE("disable/enable, generations and batches")
{
    Machine m;
    uint64_t gen = m.as.generation();
    CHECK(gen >= 1);
    m.ram->set_enabled(false);
    CHECK(m.as.generation() == gen + 1);
    CHECK(m.as.lookup(0x10).kind == Lookup::Kind::Unassigned);
    CHECK(m.as.read(0x10, 4) == 0xffffffff);
    m.ram->set_enabled(false); // no change, no rebuild
    CHECK(m.as.generation() == gen + 1);
    m.ram->set_enabled(true);
    CHECK(m.as.generation() == gen + 2);
    CHECK(m.as.lookup(0x10).kind == Lookup::Kind::Ram);
    {
        TopologyBatch batch;
        m.ram->set_enabled(false);
        m.ram->set_enabled(true);
        must(m.ram->set_offset(0x20000));
        CHECK(m.as.generation() == gen + 2);
    }
    CHECK(m.as.generation() == gen + 3);
    CHECK(m.as.lookup(0x20010).ram_offset == 0x10);
    // Changes to a region not reachable from the space do not rebuild it.
    auto loose = must(MemoryRegion::container("loose", 0x1000));
    auto r = must(MemoryRegion::ram("r", 0x1000));
    must(loose->add_subregion(*r, 0));
    CHECK(m.as.generation() == gen + 3);
}

TEST_CASE("listeners see RAM and ROM ranges after every rebuild")
{
    Machine m;
    std::vector<RamRange> seen;
    int calls = 0;
    auto id = m.as.add_listener([&](std::span<const RamRange> ranges) {
        seen.assign(ranges.begin(), ranges.end());
        ++calls;
    });
    CHECK(calls == 1);
    REQUIRE(seen.size() == 1);
    CHECK(seen[0].gpa == 0);
    CHECK(seen[0].size == 0x10000);
    CHECK(seen[0].host == m.ram->host());
    CHECK_FALSE(seen[0].readonly);

    auto bios = must(MemoryRegion::rom("bios", 0x1000));
    FakeDevice dev;
    auto mmio = must(MemoryRegion::io("mmio", 0x1000, dev.ops()));
    must(m.system->add_subregion(*bios, 0xff000));
    must(m.system->add_subregion(*mmio, 0x4000, 1)); // splits RAM in two
    CHECK(calls == 3);
    REQUIRE(seen.size() == 3);
    CHECK(seen[0].gpa == 0);
    CHECK(seen[0].size == 0x4000);
    CHECK(seen[1].gpa == 0x5000);
    CHECK(seen[1].size == 0xb000);
    CHECK(seen[1].host == m.ram->host() + 0x5000);
    CHECK(seen[1].ram_offset == 0x5000);
    CHECK(seen[2].gpa == 0xff000);
    CHECK(seen[2].readonly);
    CHECK(seen[2].block == bios->ram_block());
    m.as.remove_listener(id);
    m.system->remove_subregion(*mmio);
    CHECK(calls == 3);
}

TEST_CASE("unassigned reads return all ones; writes are dropped and counted")
{
    Machine m;
    CHECK(m.as.read(0x50000, 1) == 0xff);
    CHECK(m.as.read(0x50000, 2) == 0xffff);
    CHECK(m.as.read(0x50000, 4) == 0xffffffff);
    CHECK(m.as.read(0x50000, 8) == ~0ull);
    m.as.write(0x50000, 0, 8);
    CHECK(m.as.unassigned_accesses() == 5);
    // RAM then a hole: only the hole's bytes are 0xff.
    m.ram->host()[0xffff] = 0x12;
    CHECK(m.as.read(0xffff, 4) == 0xffffff12);
    m.as.write(0xfffe, 0xaabbccdd, 4);
    CHECK(m.ram->host()[0xfffe] == 0xdd);
    CHECK(m.ram->host()[0xffff] == 0xcc);
    CHECK(m.as.unassigned_accesses() == 7);
    Lookup l = m.as.lookup(0x50000);
    CHECK(l.kind == Lookup::Kind::Unassigned);
    CHECK(l.length == 0 - 0x50000ull); // no next mapping: to the end of the 64-bit space
}

TEST_CASE("read_buf/write_buf across regions; stop at unassigned")
{
    auto sys = must(MemoryRegion::container("system", 0x100000));
    auto ram1 = must(MemoryRegion::ram("ram1", 0x1000));
    auto ram2 = must(MemoryRegion::ram("ram2", 0x1000));
    FakeDevice dev;
    auto mmio = must(MemoryRegion::io("dev", 0x20, dev.ops(1, 4)));
    must(sys->add_subregion(*ram1, 0));
    must(sys->add_subregion(*mmio, 0x1000));
    must(sys->add_subregion(*ram2, 0x1020));
    AddressSpace as("memory", *sys);
    std::vector<uint8_t> data(0x40);
    for (size_t i = 0; i < data.size(); ++i)
        data[i] = uint8_t(i + 1);
    CHECK(as.write_buf(0xff0, data.data(), data.size()));
    CHECK(ram1->host()[0xff0] == 1);
    CHECK(dev.regs[0] == 0x11);
    CHECK(dev.regs[0x1f] == 0x30);
    CHECK(ram2->host()[0] == 0x31);
    for (const A& a : dev.log)
        CHECK(a.size == 4); // aligned 8-byte chunks, split to the device's max
    std::vector<uint8_t> back(0x40);
    CHECK(as.read_buf(0xff0, back.data(), back.size()));
    CHECK(back == data);

    // Stops at the first unassigned byte; earlier bytes were transferred.
    std::vector<uint8_t> big(0x2000, 0x77);
    BufStatus st = as.write_buf(0x1010, big.data(), big.size());
    CHECK(st.cause == BufStatus::Cause::Unassigned);
    CHECK(st.addr == 0x2020);
    CHECK(describe(st) == "0x2020: unassigned");
    CHECK(ram2->host()[0xfff] == 0x77);
    st = as.read_buf(0x1fff0, big.data(), 4);
    CHECK(st.cause == BufStatus::Cause::Unassigned);
    CHECK(st.addr == 0x1fff0);
    CHECK(as.load_rom(0x1000, big.data(), 4).cause == BufStatus::Cause::NotMemory);
    CHECK(as.read_buf(0, nullptr, 0));
    CHECK(as.unassigned_accesses() == 0); // block transfers report, not count
}

TEST_CASE("addresses near 2^64 never wrap")
{
    auto sys = must(MemoryRegion::container("system", UINT64_MAX));
    auto top = must(MemoryRegion::ram("top", 0x1000));
    must(sys->add_subregion(*top, 0xfffffffffffff000ull)); // last byte clipped by the container
    AddressSpace as("memory", *sys);
    uint8_t buf[16] = {};
    CHECK(as.read_buf(UINT64_MAX - 3, buf, 8).cause == BufStatus::Cause::Wrap);
    CHECK(as.write_buf(UINT64_MAX - 3, buf, 8).cause == BufStatus::Cause::Wrap);
    CHECK(as.read_buf(UINT64_MAX, buf, UINT64_MAX).cause == BufStatus::Cause::Wrap);
    CHECK(as.read_buf(2, buf, UINT64_MAX).cause == BufStatus::Cause::Wrap);
    BufStatus whole = as.read_buf(1, buf, UINT64_MAX); // [1, 2^64-1] does not wrap
    CHECK(whole.cause == BufStatus::Cause::Unassigned);
    CHECK(whole.addr == 1);
    CHECK(as.load_rom(UINT64_MAX - 3, buf, 8).cause == BufStatus::Cause::Wrap);
    CHECK(as.read_buf(0xfffffffffffffff0ull, buf, 15));
    CHECK(as.read_buf(0xfffffffffffffff0ull, buf, 16).cause == BufStatus::Cause::Unassigned);

    as.write(UINT64_MAX - 2, 0x44332211, 4); // two bytes of RAM, then nothing
    CHECK(top->host()[0xffd] == 0x11);
    CHECK(top->host()[0xffe] == 0x22);
    CHECK(as.read(UINT64_MAX - 2, 8) == 0xffffffffffff2211ull);
    CHECK(as.read(UINT64_MAX, 8) == ~0ull);
    CHECK(as.lookup(UINT64_MAX).kind == Lookup::Kind::Unassigned);
    CHECK(as.lookup(UINT64_MAX).length == 1);
    top->ram_block()->dirty().enable(DirtyClient::Migration);
    as.write(UINT64_MAX - 2, 1, 1);
    CHECK(as.test_and_clear_dirty(DirtyClient::Migration, UINT64_MAX - 0x10, UINT64_MAX));
    CHECK_FALSE(top->ram_block()->dirty().test_and_clear(DirtyClient::Migration, UINT64_MAX - 2, 100));
}

TEST_CASE("port I/O: a 64 KiB space of I/O regions")
{
    auto io = must(MemoryRegion::container("io", kPortSpaceSize));
    FakeDevice com1;
    auto uart = must(MemoryRegion::io("serial", 8, com1.ops(1, 1)));
    must(io->add_subregion(*uart, 0x3f8));
    AddressSpace ports("I/O", *io);
    ports.write(0x3f8, 'A', 1);
    ports.write(0x3f9, 0x0201, 2); // split: the UART takes bytes
    CHECK(com1.log == std::vector<A>{{true, 0, 'A', 1}, {true, 1, 1, 1}, {true, 2, 2, 1}});
    CHECK(ports.read(0x3fa, 1) == 2);
    CHECK(ports.read(0xffff, 2) == 0xffff);
    CHECK(ports.read(0x10000, 4) == 0xffffffff); // beyond the space
}

TEST_CASE("dirty tracking: separate clients, test_and_clear, snapshots")
{
    Machine m;
    DirtyLog& d = m.ram->ram_block()->dirty();
    CHECK(d.pages() == 16);
    m.as.write(0x1000, 1, 4);
    CHECK_FALSE(d.is_dirty(DirtyClient::Migration, 0x1000)); // nothing enabled
    d.enable(DirtyClient::Migration);
    d.enable(DirtyClient::Display);
    d.disable(DirtyClient::Display);
    CHECK(d.enabled(DirtyClient::Migration));
    CHECK_FALSE(d.enabled(DirtyClient::Display));
    m.as.write(0x1ffe, 0x1234, 4); // straddles pages 1 and 2
    CHECK(d.is_dirty(DirtyClient::Migration, 0x1000));
    CHECK(d.is_dirty(DirtyClient::Migration, 0x2000));
    CHECK_FALSE(d.is_dirty(DirtyClient::Migration, 0x3000));
    CHECK_FALSE(d.is_dirty(DirtyClient::Display, 0x1000));
    CHECK(d.count(DirtyClient::Migration) == 2);
    CHECK(d.test_and_clear(DirtyClient::Migration, 0x1000, 1));
    CHECK_FALSE(d.test_and_clear(DirtyClient::Migration, 0x1000, 0x1000));
    CHECK(d.test_and_clear(DirtyClient::Migration, 0, 0x10000));
    CHECK(d.count(DirtyClient::Migration) == 0);

    d.enable(DirtyClient::Display);
    m.ram->ram_block()->mark_dirty(0x3000, 0x2001); // pages 3, 4, 5 (DMA / JIT)
    uint8_t b = 9;
    CHECK(m.as.write_buf(0xf000, &b, 1));
    std::vector<uint64_t> snap = d.snapshot_and_clear(DirtyClient::Display, 0x2000, 0xe000); // pages 2..15
    REQUIRE(snap.size() == 1);
    CHECK(snap[0] == ((1ull << 1) | (1ull << 2) | (1ull << 3) | (1ull << 13)));
    CHECK(d.count(DirtyClient::Display) == 0);
    CHECK(d.count(DirtyClient::Migration) == 4); // Migration kept its own bits
    CHECK(m.as.test_and_clear_dirty(DirtyClient::Migration, 0x3000, 0x1000));
    CHECK_FALSE(m.as.test_and_clear_dirty(DirtyClient::Migration, 0x3000, 0x1000));
    d.set_all(DirtyClient::Display);
    CHECK(d.count(DirtyClient::Display) == 16);
    d.clear_all(DirtyClient::Display);
    CHECK(d.count(DirtyClient::Display) == 0);
    d.disable(DirtyClient::Migration);
    d.clear_all(DirtyClient::Migration);
    m.as.write(0x5000, 1, 1);
    CHECK(d.count(DirtyClient::Migration) == 0);
    CHECK(d.count(DirtyClient::Display) == 1);
    // Out-of-range offsets are clipped, never touch memory past the bitmap.
    d.mark_dirty(0x10000, 0x1000);
    d.mark_dirty(0xf000, UINT64_MAX);
    CHECK(d.count(DirtyClient::Display) == 2);
    CHECK(d.snapshot_and_clear(DirtyClient::Display, 0x20000, 1).empty());
}

TEST_CASE("dirty snapshots of large blocks cross word boundaries")
{
    auto ram = must(MemoryRegion::ram("big", 300 * kPageSize));
    DirtyLog& d = ram->ram_block()->dirty();
    d.enable(DirtyClient::Migration);
    for (uint64_t page : {5, 63, 64, 70, 127, 128, 200, 299})
        d.mark_dirty(page * kPageSize + 7, 1);
    std::vector<uint64_t> snap = d.snapshot_and_clear(DirtyClient::Migration, 60 * kPageSize, 200 * kPageSize);
    REQUIRE(snap.size() == 4); // pages 60..259
    auto bit = [&](uint64_t page) { return (snap[(page - 60) / 64] >> ((page - 60) % 64)) & 1; };
    int set = 0;
    for (uint64_t p = 60; p < 260; ++p)
        set += int(bit(p));
    CHECK(set == 6);
    CHECK(bit(63));
    CHECK(bit(64));
    CHECK(bit(70));
    CHECK(bit(127));
    CHECK(bit(128));
    CHECK(bit(200));
    CHECK(d.count(DirtyClient::Migration) == 2); // 5 and 299 were outside the range
    std::vector<uint64_t> all = d.snapshot_and_clear(DirtyClient::Migration, 0, 300 * kPageSize);
    CHECK(all.size() == 5);
    CHECK(all[0] == 1ull << 5);
    CHECK(all[4] == 1ull << (299 - 256));
}

TEST_CASE("code pages: one callback per write that touches them")
{
    Machine m;
    DirtyLog& d = m.ram->ram_block()->dirty();
    std::vector<std::pair<uint64_t, uint64_t>> calls;
    d.set_code_write_handler([&](uint64_t off, uint64_t len) { calls.emplace_back(off, len); });
    d.set_code(0x1234); // page 1
    d.set_code(0x3000); // page 3
    CHECK(d.has_code(0x1fff));
    CHECK_FALSE(d.has_code(0x2000));
    CHECK(d.has_code(0x2000, 0x1001));
    CHECK(m.as.lookup(0x1000).block->has_code(0x1000));

    m.as.write(0x2000, 1, 8); // page 2: no code
    m.as.write(0x0ffc, ~0ull, 8); // pages 0-1
    std::vector<uint8_t> buf(0x3000, 0x90);
    CHECK(m.as.write_buf(0x1800, buf.data(), buf.size())); // pages 1..4, two code pages: once
    CHECK(m.ram->load(0x3010, buf.data(), 4));
    m.ram->ram_block()->mark_dirty(0x5000, 0x100); // no code
    REQUIRE(calls.size() == 3);
    CHECK(calls[0] == std::make_pair<uint64_t, uint64_t>(0xffc, 8));
    CHECK(calls[1] == std::make_pair<uint64_t, uint64_t>(0x1800, 0x3000));
    CHECK(calls[2] == std::make_pair<uint64_t, uint64_t>(0x3010, 4));
    d.clear_code(0x1000);
    d.clear_code(0x3fff);
    m.as.write(0x1000, 1, 8);
    CHECK(calls.size() == 3);
    // The Code dirty client is independent of the code-page marks.
    d.enable(DirtyClient::Code);
    m.as.write(0x6000, 1, 1);
    CHECK(d.test_and_clear(DirtyClient::Code, 0x6000, 1));
}

TEST_CASE("a device callback may change the topology under a running access")
{
    Machine m;
    auto extra = must(MemoryRegion::ram("extra", 0x1000));
    must(m.system->add_subregion(*extra, 0x40000));
    FakeDevice dev;
    IoOps ops = dev.ops(4, 4);
    int nested = 0;
    ops.read = [&](uint64_t off, unsigned) -> uint64_t {
        // Remap while the outer 8-byte access (two pieces) is in progress
        // and access the space again: the outer access keeps its view.
        extra->set_enabled(!extra->enabled());
        nested += m.as.read(0x40000, 1) == 0xff;
        return off;
    };
    auto mmio = must(MemoryRegion::io("remapper", 0x10, ops));
    must(m.system->add_subregion(*mmio, 0x30000));
    uint64_t gen = m.as.generation();
    CHECK(m.as.read(0x30000, 8) == (4ull << 32));
    CHECK(m.as.generation() == gen + 2);
    CHECK(nested == 1);
    CHECK(m.as.lookup(0x40000).kind == Lookup::Kind::Ram);
}

TEST_CASE("destroying regions detaches them; dumps name everything")
{
    Machine m;
    auto bios = must(MemoryRegion::rom("bios", 0x1000));
    auto alias = must(MemoryRegion::alias("bios.alias", *bios, 0, 0x1000));
    must(m.system->add_subregion(*bios, 0xf0000));
    must(m.system->add_subregion(*alias, 0xe0000, 2));
    FakeDevice dev;
    auto vga = must(MemoryRegion::io("vga", 0x1000, dev.ops()));
    must(m.system->add_subregion(*vga, 0xa000, 1));
    vga->set_enabled(false);
    std::string tree = m.as.dump_tree();
    CHECK(tree.find("address-space: memory\n") == 0);
    CHECK(tree.find("0000000000000000-00000000000fffff (prio 0, container): system\n") != std::string::npos);
    CHECK(tree.find("  000000000000a000-000000000000afff (prio 1, i/o): vga [disabled]\n") != std::string::npos);
    CHECK(tree.find("  00000000000e0000-00000000000e0fff (prio 2, rom): alias bios.alias @bios "
                    "0000000000000000-0000000000000fff\n") != std::string::npos);
    CHECK(tree.find("memory-region: bios\n") != std::string::npos);
    std::string flat = m.as.dump_flat();
    CHECK(flat.find("0000000000000000-000000000000ffff (ram): pc.ram @0000000000000000\n") != std::string::npos);
    CHECK(flat.find("00000000000e0000-00000000000e0fff (rom, readonly): bios @0000000000000000\n") != std::string::npos);

    uint64_t gen = m.as.generation();
    alias.reset();
    bios.reset();
    CHECK(m.as.generation() == gen + 2);
    CHECK(m.as.lookup(0xf0000).kind == Lookup::Kind::Unassigned);
    // A container's destruction frees its children.
    auto box = must(MemoryRegion::container("box", 0x1000));
    auto inside = must(MemoryRegion::ram("inside", 0x1000));
    must(box->add_subregion(*inside, 0));
    box.reset();
    CHECK(inside->parent() == nullptr);
}

TEST_CASE("lookups and accesses stay consistent while another thread remaps")
{
    Machine m;
    memset(m.ram->host(), 0x5a, 0x10000);
    IoOps ops; // stateless callbacks: the readers share nothing but the space
    ops.read = [](uint64_t, unsigned) -> uint64_t { return 0xa5a5a5a5a5a5a5a5ull; };
    ops.write = [](uint64_t, uint64_t, unsigned) {};
    auto overlay = must(MemoryRegion::io("overlay", 0x2000, ops));
    auto alias = must(MemoryRegion::alias("ram.alias", *m.ram, 0, 0x4000));
    std::atomic<bool> stop{false};
    std::atomic<uint64_t> bad{0}, done{0};
    auto reader = [&] {
        uint64_t seen_gen = 0;
        while (!stop.load(std::memory_order_relaxed)) {
            uint64_t g = m.as.generation();
            if (g < seen_gen)
                ++bad;
            seen_gen = g;
            for (uint64_t gpa : {0x3ffcull, 0x4000ull, 0x5ff8ull, 0x81000ull}) {
                uint64_t v = m.as.read(gpa, 8);
                // Each byte comes from RAM (0x5a), the overlay (0xa5) or a hole (0xff).
                for (int i = 0; i < 8; ++i) {
                    uint8_t byte = uint8_t(v >> (8 * i));
                    if (byte != 0x5a && byte != 0xa5 && byte != 0xff)
                        ++bad;
                }
                Lookup l = m.as.lookup(gpa);
                if (l.kind == Lookup::Kind::Ram && (l.host[0] != 0x5a || l.length == 0))
                    ++bad;
            }
            ++done;
        }
    };
    std::vector<std::thread> readers;
    for (int i = 0; i < 2; ++i)
        readers.emplace_back(reader);
    for (int i = 0; i < 2000; ++i) {
        must(m.system->add_subregion(*overlay, 0x4000 + (i % 4) * 0x1000, 1));
        must(m.system->add_subregion(*alias, 0x80000));
        overlay->set_enabled(i % 3 != 0);
        must(overlay->set_offset(0x3000 + (i % 5) * 0x800));
        {
            TopologyBatch batch;
            m.system->remove_subregion(*alias);
            m.ram->set_enabled(i % 2 == 0);
        }
        m.system->remove_subregion(*overlay);
        m.ram->set_enabled(true);
    }
    while (done.load() < 100)
        std::this_thread::yield();
    stop = true;
    for (auto& t : readers)
        t.join();
    CHECK(bad.load() == 0);
    CHECK(m.as.read(0x4000, 8) == 0x5a5a5a5a5a5a5a5aull);
}

TEST_CASE("NORESERVE: 4 GiB of untouched guest RAM costs almost no RSS")
{
    uint64_t before = rss_kib();
    REQUIRE(before > 0);
    auto ram = must(MemoryRegion::ram("pc.ram", uint64_t{4} << 30));
    auto sys = must(MemoryRegion::container("system", uint64_t{1} << 40));
    must(sys->add_subregion(*ram, 0));
    AddressSpace as("memory", *sys);
    ram->ram_block()->dirty().enable(DirtyClient::Migration);
    as.write(0xfffffff8, 42, 8); // touches one page
    CHECK(as.read(0xfffffff8, 8) == 42);
    uint64_t after = rss_kib();
    CHECK(after - std::min(after, before) < 4 * 1024);
}
