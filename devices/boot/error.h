// devices/boot/error.h — the boot loaders' error type: a sentence naming the
// image (or map) and the cause, e.g. "vmlinuz: setup_sects 200 exceeds the file".
#pragma once

#include <expected>
#include <string>

namespace emu::devices::boot {

struct Error {
    std::string message;
};
template <class T>
using Result = std::expected<T, Error>;
inline std::unexpected<Error> fail(std::string message) { return std::unexpected(Error{std::move(message)}); }

} // namespace emu::devices::boot
