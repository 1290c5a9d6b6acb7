// tests/difftest/difftest.h — differential testing of the x86 engine
// against the host CPU.
//
// A case is one instruction (encoded from a random form with Zydis's
// encoder), a register file, flags and a data area. It runs natively in a
// forked child (64-bit user mode) and in the engine from the same state;
// registers, the flags the instruction defines, the data area and the fault
// (if any) must match.
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <vector>

namespace emu::difftest {

// The data area, at the same address natively and in the guest.
inline constexpr uint64_t k_data = 0x10000000;
inline constexpr size_t k_data_size = 0x2000; // compared: data + stack
inline constexpr uint64_t k_stack_top = k_data + 0x1800;

struct State {
    uint64_t regs[16] = {};
    uint64_t flags = 2;
    uint8_t data[k_data_size] = {};
    alignas(16) uint8_t fx[512] = {}; // x87/SSE state in FXSAVE layout
};

struct Case {
    std::vector<uint8_t> code; // one instruction
    std::string text;          // its disassembly
    State in;
    uint64_t undefined_flags = 0; // flags the instruction leaves undefined
    bool sse = false;             // compare XMM registers and MXCSR too
    bool compat = false;          // 32-bit code in compatibility mode; low halves compared
};

struct Outcome {
    bool faulted = false;
    int fault = 0; // a signal number natively; a vector in the engine
    State out;
};

class Generator {
public:
    // compat: 32-bit instruction forms run in compatibility mode.
    explicit Generator(uint64_t seed, bool compat = false) : m_rng(seed), m_compat(compat) {}
    // A random case; false when the chosen form does not encode (try again).
    bool next(Case& c);

private:
    uint64_t value();
    std::mt19937_64 m_rng;
    bool m_compat;
};

Outcome run_native(const Case& c);
// Can this host run 32-bit code in compatibility mode at all (selector 0x23)?
// Some kernels (no IA32 emulation, some hypervisors) cannot: a 'nop' faults.
bool native_compat_mode_works();
Outcome run_engine(const Case& c);

// Empty when they agree; otherwise a report naming every difference.
std::string compare(const Case& c, const Outcome& native, const Outcome& engine);

} // namespace emu::difftest
