// Unit tests: isa-debug-exit, isa-debugcon and port 0x92 through a real port space.
#include "devices/misc/isa_debug.h"
#include "engine/memory/address_space.h"

#include <doctest/doctest.h>
#include <string>

using namespace emu;
using namespace emu::devices;

TEST_CASE("isa-debug-exit, isa-debugcon and port 0x92")
{
    auto root = mem::MemoryRegion::container("io", mem::kPortSpaceSize);
    REQUIRE(root.has_value());
    int status = -1;
    std::string console;
    bool a20 = false;
    int resets = 0;
    IsaDebugExit exit_dev(0xf4, 4, [&](int s) { status = s; });
    IsaDebugcon debugcon(0xe9, 0xe9, [&](uint8_t c) { console.push_back(char(c)); });
    Port92 port92([&](bool on) { a20 = on; }, [&] { resets++; });
    REQUIRE(exit_dev.attach(**root).has_value());
    REQUIRE(debugcon.attach(**root).has_value());
    REQUIRE(port92.attach(**root).has_value());
    mem::AddressSpace io("io", **root);

    for (char c : std::string("ok\n"))
        io.write(0xe9, uint8_t(c), 1);
    CHECK(console == "ok\n");
    CHECK(io.read(0xe9, 1) == 0xe9);

    io.write(0xf4, 0x10, 4); // QEMU: exit status (0x10 << 1) | 1
    CHECK(status == 0x21);
    io.write(0xf4, 0, 1);
    CHECK(status == 1);

    io.write(0x92, 0x02, 1);
    CHECK(a20);
    CHECK(io.read(0x92, 1) == 0x02);
    io.write(0x92, 0x03, 1);
    CHECK(resets == 1);
    CHECK(io.read(0x92, 1) == 0x02); // the reset bit does not stay set
    io.write(0x92, 0x00, 1);
    CHECK_FALSE(a20);
}
