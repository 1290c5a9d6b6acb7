// storage/error.h — the storage layer's one error type: a sentence naming the
// object and the cause, chaining the underlying error ("qcow2: cannot read L2
// table at 0x50000 of 'a.qcow2': Input/output error"), plus errno when the
// cause is a system call.
#pragma once

#include <version>
#if defined(__cpp_lib_expected)
#include <expected>
#else
#include "storage/expected_compat.h" // clang 14 over libstdc++ 12: the fuzz target's build
#endif
#include <string>
#include <utility>

namespace emu::storage {

struct Error {
    std::string message;
    int err = 0; // errno of the underlying system call, 0 when not a system error
};

template <class T>
using Result = std::expected<T, Error>;

inline std::unexpected<Error> fail(std::string message, int err = 0)
{
    return std::unexpected(Error{std::move(message), err});
}

// "context: inner", keeping the inner errno.
inline std::unexpected<Error> chain(std::string context, const Error& inner)
{
    return std::unexpected(Error{std::move(context) + ": " + inner.message, inner.err});
}

} // namespace emu::storage
