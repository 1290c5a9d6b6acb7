// protocol/qmp/error.h — QMP errors as values: a class (QEMU's ErrorClass) and
// a sentence naming the object and the cause.
#pragma once

#include <expected>
#include <string>

namespace emu::qmp {

enum class ErrorClass { GenericError, CommandNotFound, DeviceNotActive, DeviceNotFound, KVMMissingCap };

const char* error_class_name(ErrorClass cls);

struct Error {
    ErrorClass cls = ErrorClass::GenericError;
    std::string desc;
};

template <class T>
using Result = std::expected<T, Error>;

inline std::unexpected<Error> fail(std::string desc, ErrorClass cls = ErrorClass::GenericError)
{
    return std::unexpected(Error{cls, std::move(desc)});
}

} // namespace emu::qmp
