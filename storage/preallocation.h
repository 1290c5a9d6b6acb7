// storage/preallocation.h — how much of a new or grown image is allocated
// up front (qemu-img's preallocation=off|metadata|falloc|full).
#pragma once

#include "storage/error.h"

#include <string_view>

namespace emu::storage {

enum class Preallocation { Off, Metadata, Falloc, Full };

Result<Preallocation> parse_preallocation(std::string_view text);
std::string_view preallocation_name(Preallocation mode);

} // namespace emu::storage
