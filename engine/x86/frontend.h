// engine/x86/frontend.h — guest x86 code to IR, one block at a time.
//
// Each guest instruction is decoded (Zydis) and its semantics emitted as IR
// by the emitter its mnemonic maps to (engine/x86/insn_table.inc). A block
// ends at a control transfer, an instruction that changes the mode, a page
// boundary or a length cap.
#pragma once

#include "engine/ir/ir.h"
#include "engine/x86/env.h"

#include <vector>

namespace emu::x86 {

struct TranslatedBlock {
    ir::Block ir;
    std::vector<uint64_t> code_pages; // guest physical pages the block was read from
    uint64_t phys_pc = 0;
};

// Translates the code at CS.base + RIP. Returns false when not even the first
// instruction could be fetched: the fault is pending in the CPU state.
bool translate_block(CpuEnv& env, TranslatedBlock& out, unsigned max_insns = 64);

// Statistics for tests and `info jit`-style reports.
uint64_t unimplemented_count();

} // namespace emu::x86
