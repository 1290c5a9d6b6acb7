// engine/ir/ir.h — the intermediate representation every guest instruction
// is translated into once (engine/x86/frontend) and that both executors run:
// the interpreter (engine/interp) and, later, the JIT.
//
// A Block is a straight-line list of instructions ending in one terminator.
// Values are SSA: each instruction's result is referred to by its index.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace emu::ir {

enum class Type : uint8_t { None, Void, U1, U64, Imm };

enum class Opcode : uint8_t {
#define OPCODE(name, ret, a0, a1, a2, a3) name,
#include "engine/ir/opcodes.inc"
#undef OPCODE
    Count
};

struct OpInfo {
    const char* name;
    Type result;
    Type args[4];
};
const OpInfo& info(Opcode op);

// An argument: a value (the index of the instruction producing it) or an immediate.
struct Arg {
    uint64_t raw = 0;
    static Arg value(uint32_t index) { return Arg{index}; }
    static Arg imm(uint64_t v) { return Arg{v}; }
};

struct Inst {
    Opcode op;
    bool dead = false; // removed by a pass; skipped by executors
    Arg args[4];
    uint32_t guest_insn = 0; // index of the guest instruction it belongs to
};

// A guest instruction of the block: its address and length, so that a fault
// can be reported precisely at an instruction boundary.
struct GuestInsn {
    uint64_t rip;
    uint8_t length;
};

struct Block {
    uint64_t start_rip = 0;
    std::vector<Inst> insts;
    std::vector<GuestInsn> guest;
    bool is_terminated() const;
};

class Builder {
public:
    explicit Builder(Block& block) : m_block(block) {}

    // Starts a guest instruction; the instructions emitted next belong to it.
    void begin_guest(uint64_t rip, uint8_t length);

    uint32_t emit(Opcode op, Arg a0 = {}, Arg a1 = {}, Arg a2 = {}, Arg a3 = {});
    Block& block() { return m_block; }

    // Convenience wrappers used throughout the frontend.
    uint32_t konst(uint64_t v) { return emit(Opcode::Const, Arg::imm(v)); }
    uint32_t op1(Opcode op, uint32_t a) { return emit(op, Arg::value(a)); }
    uint32_t op2(Opcode op, uint32_t a, uint32_t b) { return emit(op, Arg::value(a), Arg::value(b)); }

private:
    Block& m_block;
};

// Checks types, references and termination; returns problems as text.
std::vector<std::string> verify(const Block& block);
// True in debug builds, or when EMUD_IR_VERIFY=1: every block and every pass
// is verified (the test suite turns it on for release builds too).
bool verification_enabled();
std::string print(const Block& block);

} // namespace emu::ir
