// engine/interp/interpreter.h — the IR interpreter: the first executor and
// the reference the JIT is tested against.
//
// A block is lowered once into threaded code: an array of operations, each
// holding the address of its handler, its operand slots and immediates.
// Values live in a per-vCPU frame indexed by IR instruction number.
#pragma once

#include "engine/ir/ir.h"
#include "engine/x86/env.h"

#include <cstdint>
#include <vector>

namespace emu::interp {

struct Op {
    const void* handler;
    uint32_t dst, a, b, c;
    uint64_t imm, imm2;
    uint32_t guest; // index into the block's guest instructions
};

struct CompiledBlock {
    std::vector<Op> ops;
    std::vector<ir::GuestInsn> guest;
    uint32_t slots = 0;
};

enum class Exit : uint8_t {
    Jump,  // RIP holds the next instruction: look up the next block
    Loop,  // back to the run loop (mode changed, halted, interrupt window)
    Fault, // an exception is pending; RIP is the faulting instruction (or after a trap)
};

CompiledBlock compile(const ir::Block& block);
Exit execute(const CompiledBlock& block, x86::CpuEnv& env, uint64_t* frame);

} // namespace emu::interp
