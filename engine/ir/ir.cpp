#include "engine/ir/ir.h"

#include <cstdlib>
#include <fmt/format.h>

namespace emu::ir {

namespace {
constexpr OpInfo k_info[] = {
#define OPCODE(name, ret, a0, a1, a2, a3) {#name, Type::ret, {Type::a0, Type::a1, Type::a2, Type::a3}},
#include "engine/ir/opcodes.inc"
#undef OPCODE
};

bool is_terminator(Opcode op)
{
    return op == Opcode::ExitJump || op == Opcode::ExitCond || op == Opcode::ExitIndirect || op == Opcode::ExitLoop;
}

const char* type_name(Type t)
{
    switch (t) {
    case Type::None:
        return "none";
    case Type::Void:
        return "void";
    case Type::U1:
        return "u1";
    case Type::U64:
        return "u64";
    case Type::Imm:
        return "imm";
    }
    return "?";
}
} // namespace

const OpInfo& info(Opcode op) { return k_info[static_cast<int>(op)]; }

bool verification_enabled()
{
#ifndef NDEBUG
    return true;
#else
    static const bool on = [] {
        const char* env = getenv("EMUD_IR_VERIFY");
        return env && env[0] == '1';
    }();
    return on;
#endif
}

bool Block::is_terminated() const
{
    for (auto it = insts.rbegin(); it != insts.rend(); ++it)
        if (!it->dead)
            return is_terminator(it->op);
    return false;
}

void Builder::begin_guest(uint64_t rip, uint8_t length) { m_block.guest.push_back({rip, length}); }

uint32_t Builder::emit(Opcode op, Arg a0, Arg a1, Arg a2, Arg a3)
{
    Inst inst{op, false, {a0, a1, a2, a3}, uint32_t(m_block.guest.empty() ? 0 : m_block.guest.size() - 1)};
    m_block.insts.push_back(inst);
    return uint32_t(m_block.insts.size() - 1);
}

std::vector<std::string> verify(const Block& block)
{
    std::vector<std::string> problems;
    for (size_t i = 0; i < block.insts.size(); i++) {
        const Inst& inst = block.insts[i];
        if (inst.dead)
            continue;
        const OpInfo& oi = info(inst.op);
        for (int a = 0; a < 4; a++) {
            Type want = oi.args[a];
            if (want != Type::U1 && want != Type::U64)
                continue;
            uint64_t ref = inst.args[a].raw;
            if (ref >= i) {
                problems.push_back(fmt::format("%{}: {} arg {} refers forward to %{}", i, oi.name, a, ref));
                continue;
            }
            const Inst& def = block.insts[ref];
            if (def.dead)
                problems.push_back(fmt::format("%{}: {} arg {} uses dead %{}", i, oi.name, a, ref));
            if (info(def.op).result != want)
                problems.push_back(fmt::format("%{}: {} arg {} wants {} but %{} ({}) is {}", i, oi.name, a,
                                               type_name(want), ref, info(def.op).name,
                                               type_name(info(def.op).result)));
        }
        if (is_terminator(inst.op) && i + 1 != block.insts.size()) {
            for (size_t j = i + 1; j < block.insts.size(); j++)
                if (!block.insts[j].dead)
                    problems.push_back(fmt::format("%{}: {} after the terminator", j, info(block.insts[j].op).name));
        }
    }
    if (!block.is_terminated())
        problems.push_back("block does not end in a terminator");
    return problems;
}

std::string print(const Block& block)
{
    std::string out = fmt::format("block @{:#x}\n", block.start_rip);
    uint32_t last_guest = UINT32_MAX;
    for (size_t i = 0; i < block.insts.size(); i++) {
        const Inst& inst = block.insts[i];
        if (inst.guest_insn != last_guest && inst.guest_insn < block.guest.size()) {
            last_guest = inst.guest_insn;
            out += fmt::format("  ; {:#x}\n", block.guest[last_guest].rip);
        }
        if (inst.dead)
            continue;
        const OpInfo& oi = info(inst.op);
        std::string line = oi.result == Type::Void ? "    " : fmt::format("    %{} = ", i);
        line += oi.name;
        for (int a = 0; a < 4; a++) {
            if (oi.args[a] == Type::None)
                break;
            line += a ? ", " : " ";
            line += oi.args[a] == Type::Imm ? fmt::format("{:#x}", inst.args[a].raw)
                                            : fmt::format("%{}", inst.args[a].raw);
        }
        out += line + "\n";
    }
    return out;
}

} // namespace emu::ir
