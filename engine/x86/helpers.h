// engine/x86/helpers.h — complex instructions as functions that IR calls.
// helpers.inc declares them once: the enum and the table come from it.
#pragma once

#include <cstdint>

namespace emu::x86 {

struct CpuEnv;
using HelperFn = uint64_t (*)(CpuEnv& env, uint64_t a, uint64_t b, uint64_t c);

enum class Helper : uint32_t {
#define HELPER(name) name,
#include "engine/x86/helpers.inc"
#undef HELPER
    Count
};

HelperFn helper_fn(Helper h);
const char* helper_name(Helper h);

} // namespace emu::x86
