// engine/ir/passes.h — optimisation passes over a block. Each is a free
// function, switchable by a flag so any of them can be turned off to bisect
// a bug (EMUD_IR_PASSES=none, or a comma list of the ones to keep).
#pragma once

#include "engine/ir/ir.h"

namespace emu::ir {

// Replaces GetReg after SetReg/GetReg of the same register with the value.
void forward_registers(Block& block);
// Computes a condition or the carry straight from the operands of the last
// flag-setting instruction of the block, instead of from the lazy state.
void fuse_flags(Block& block);
// Drops flag records that a later record replaces before anything can read them.
void eliminate_dead_flags(Block& block);
// Drops instructions without side effects whose result nobody uses.
void eliminate_dead_code(Block& block);

// Runs the enabled passes in order; verifies after each in debug builds.
void optimize(Block& block);

} // namespace emu::ir
