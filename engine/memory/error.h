// engine/memory/error.h — configuration errors of the memory layer as values.
//
// Three kinds of failure, never mixed (STYLE item 14):
//  - a broken host invariant (removing a region that is not a child, an access
//    size other than 1/2/4/8) is a bug in emud: assert;
//  - the guest touching nothing (an unassigned address) is defined bus
//    behaviour: reads return all ones, writes are dropped;
//  - a configuration error (equal-priority overlap, size 0, misaligned RAM,
//    mmap failure) is returned as an `Error` naming the region and the cause.
#pragma once

#include <expected>
#include <string>

namespace emu::mem {

struct Error {
    std::string message; // "pc.ram: subregion 'vga' at 0xa0000 overlaps 'bios' ..."
};

template <class T>
using Result = std::expected<T, Error>;

inline std::unexpected<Error> fail(std::string message)
{
    return std::unexpected(Error{std::move(message)});
}

} // namespace emu::mem
