#include "engine/ir/passes.h"

#include "engine/x86/flags.h"

#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace emu::ir {

namespace {

bool is_value_arg(const OpInfo& info, int a) { return info.args[a] == Type::U64 || info.args[a] == Type::U1; }

// Operations that may raise a guest exception or run a helper: the state
// seen at such a point must be exact, and a helper may read or write anything.
bool is_barrier(Opcode op)
{
    switch (op) {
    case Opcode::Load8:
    case Opcode::Load16:
    case Opcode::Load32:
    case Opcode::Load64:
    case Opcode::Store8:
    case Opcode::Store16:
    case Opcode::Store32:
    case Opcode::Store64:
    case Opcode::Call:
    case Opcode::StoreField:
    case Opcode::LoadField:
    case Opcode::AtomicRmw:
    case Opcode::AtomicCmpxchg:
    case Opcode::CheckSeg:
        return true;
    default:
        return false;
    }
}

bool has_side_effects(Opcode op)
{
    const OpInfo& info = ir::info(op);
    if (info.result == Type::Void)
        return true;
    return is_barrier(op) && op != Opcode::LoadField;
}

// Rewrites every use of value 'from' to 'to' in instructions after 'from'.
void replace_uses(Block& b, uint32_t from, uint32_t to)
{
    for (size_t i = from + 1; i < b.insts.size(); i++) {
        Inst& inst = b.insts[i];
        const OpInfo& info = ir::info(inst.op);
        for (int a = 0; a < 4; a++)
            if (is_value_arg(info, a) && inst.args[a].raw == from)
                inst.args[a].raw = to;
    }
}

// Rebuilds a block's instruction list, so that a pass can put several new
// instructions where one stood; 'map' turns old value indices into new ones.
struct Rewriter {
    Block& b;
    std::vector<Inst> out;
    std::vector<uint32_t> map; // old index -> new index

    explicit Rewriter(Block& block) : b(block), map(block.insts.size(), UINT32_MAX) {}

    uint32_t emit(Opcode op, std::initializer_list<Arg> args, uint32_t guest)
    {
        Inst inst{op, false, {}, guest};
        int i = 0;
        for (Arg a : args)
            inst.args[i++] = a;
        out.push_back(inst);
        return uint32_t(out.size() - 1);
    }
    uint32_t copy(uint32_t old_index)
    {
        Inst inst = b.insts[old_index];
        const OpInfo& info = ir::info(inst.op);
        for (int a = 0; a < 4; a++)
            if (is_value_arg(info, a))
                inst.args[a].raw = map[inst.args[a].raw];
        out.push_back(inst);
        map[old_index] = uint32_t(out.size() - 1);
        return map[old_index];
    }
    void finish() { b.insts = std::move(out); }
};

uint64_t width_mask(unsigned log) { return log == 3 ? ~0ull : (1ull << (8u << log)) - 1; }

} // namespace

void forward_registers(Block& b)
{
    // Known value of each register within the block, as an instruction index.
    uint32_t known[16];
    std::fill(std::begin(known), std::end(known), UINT32_MAX);
    for (uint32_t i = 0; i < b.insts.size(); i++) {
        Inst& inst = b.insts[i];
        if (inst.dead)
            continue;
        switch (inst.op) {
        case Opcode::GetReg: {
            unsigned r = unsigned(inst.args[0].raw) & 15;
            if (known[r] != UINT32_MAX) {
                replace_uses(b, i, known[r]);
                inst.dead = true;
            } else {
                known[r] = i;
            }
            break;
        }
        case Opcode::SetReg:
            known[inst.args[0].raw & 15] = uint32_t(inst.args[1].raw);
            break;
        case Opcode::Call:
        case Opcode::StoreField:
            // A helper may read or write any register.
            std::fill(std::begin(known), std::end(known), UINT32_MAX);
            break;
        default:
            break;
        }
    }
}

void fuse_flags(Block& b)
{
    using x86::FlagOp;
    Rewriter rw(b);
    int last = -1; // the last unconditional SetFlags, as an old index
    for (uint32_t i = 0; i < b.insts.size(); i++) {
        const Inst& inst = b.insts[i];
        if (inst.dead)
            continue;
        if (inst.op == Opcode::SetFlags) {
            rw.copy(i);
            last = int(i);
            continue;
        }
        if (inst.op == Opcode::SetFlagsNZ || inst.op == Opcode::SetEflags || inst.op == Opcode::Call) {
            rw.copy(i);
            last = -1;
            continue;
        }
        if ((inst.op != Opcode::GetCond && inst.op != Opcode::GetCarry) || last < 0) {
            rw.copy(i);
            continue;
        }
        const Inst& f = b.insts[last];
        uint32_t kind = uint32_t(f.args[0].raw);
        FlagOp fop = FlagOp(kind >> 2);
        unsigned log = kind & 3;
        uint32_t g = inst.guest_insn;
        uint32_t res = rw.map[f.args[1].raw], a = rw.map[f.args[2].raw], c = rw.map[f.args[3].raw];
        auto narrow = [&](uint32_t v) {
            if (log == 3)
                return v;
            return rw.emit(Opcode::And, {Arg::value(v), Arg::value(rw.emit(Opcode::Const, {Arg::imm(width_mask(log))}, g))},
                           g);
        };
        auto signed_ = [&](uint32_t v) {
            static constexpr Opcode ext[] = {Opcode::SExt8, Opcode::SExt16, Opcode::SExt32};
            return log == 3 ? v : rw.emit(ext[log], {Arg::value(v)}, g);
        };
        auto zero = [&] { return rw.emit(Opcode::Const, {Arg::imm(0)}, g); };
        uint32_t result = UINT32_MAX;
        if (inst.op == Opcode::GetCarry) {
            uint32_t cf = UINT32_MAX;
            if (fop == FlagOp::Sub)
                cf = rw.emit(Opcode::CmpLtU, {Arg::value(narrow(a)), Arg::value(narrow(c))}, g);
            else if (fop == FlagOp::Add)
                cf = rw.emit(Opcode::CmpLtU, {Arg::value(narrow(res)), Arg::value(narrow(a))}, g);
            else if (fop == FlagOp::Logic)
                result = zero();
            else if (fop == FlagOp::Mul)
                cf = rw.emit(Opcode::CmpNe, {Arg::value(c), Arg::value(zero())}, g);
            else if (fop == FlagOp::Inc || fop == FlagOp::Dec)
                result = rw.emit(Opcode::And, {Arg::value(c), Arg::value(rw.emit(Opcode::Const, {Arg::imm(1)}, g))}, g);
            if (cf != UINT32_MAX)
                result = rw.emit(Opcode::BoolToInt, {Arg::value(cf)}, g);
        } else {
            unsigned cc = unsigned(inst.args[0].raw);
            bool negate = cc & 1;
            uint32_t cond = UINT32_MAX;
            bool zf_sf_kind = fop == FlagOp::Add || fop == FlagOp::Sub || fop == FlagOp::Logic || fop == FlagOp::Inc ||
                              fop == FlagOp::Dec || fop == FlagOp::Adc || fop == FlagOp::Sbb;
            switch (cc >> 1) {
            case 2: // E / NE
                if (zf_sf_kind)
                    cond = rw.emit(Opcode::CmpEq, {Arg::value(narrow(res)), Arg::value(zero())}, g);
                break;
            case 4: // S / NS
                if (zf_sf_kind)
                    cond = rw.emit(Opcode::CmpLtS, {Arg::value(signed_(res)), Arg::value(zero())}, g);
                break;
            case 1: // B / AE
                if (fop == FlagOp::Sub)
                    cond = rw.emit(Opcode::CmpLtU, {Arg::value(narrow(a)), Arg::value(narrow(c))}, g);
                break;
            case 3: // BE / A
                if (fop == FlagOp::Sub)
                    cond = rw.emit(Opcode::NotBool,
                                   {Arg::value(rw.emit(Opcode::CmpLtU, {Arg::value(narrow(c)), Arg::value(narrow(a))}, g))},
                                   g);
                break;
            case 6: // L / GE
                if (fop == FlagOp::Sub)
                    cond = rw.emit(Opcode::CmpLtS, {Arg::value(signed_(a)), Arg::value(signed_(c))}, g);
                else if (fop == FlagOp::Logic)
                    cond = rw.emit(Opcode::CmpLtS, {Arg::value(signed_(res)), Arg::value(zero())}, g);
                break;
            case 7: // LE / G
                if (fop == FlagOp::Sub)
                    cond = rw.emit(Opcode::NotBool,
                                   {Arg::value(rw.emit(Opcode::CmpLtS, {Arg::value(signed_(c)), Arg::value(signed_(a))}, g))},
                                   g);
                break;
            default:
                break;
            }
            if (cond != UINT32_MAX)
                result = negate ? rw.emit(Opcode::NotBool, {Arg::value(cond)}, g) : cond;
        }
        if (result == UINT32_MAX) {
            rw.copy(i);
        } else {
            rw.map[i] = result;
        }
    }
    rw.finish();
}

void eliminate_dead_flags(Block& b)
{
    // Walking backwards: a record is dead when the next flag event after it
    // is another unconditional record, with no reader or barrier between.
    bool overwritten = false;
    for (size_t k = b.insts.size(); k-- > 0;) {
        Inst& inst = b.insts[k];
        if (inst.dead)
            continue;
        switch (inst.op) {
        case Opcode::SetFlags:
            if (overwritten)
                inst.dead = true;
            overwritten = true;
            break;
        case Opcode::SetFlagsNZ:
            if (overwritten)
                inst.dead = true;
            // A conditional record may leave the previous one in place.
            overwritten = false;
            break;
        case Opcode::SetEflags:
            // Writes some flags and keeps the rest: dead only if a full record
            // follows; it reads the old flags, so earlier records stay live.
            if (overwritten && (inst.args[1].raw & ~x86::ARITH_FLAGS) == 0)
                inst.dead = true;
            else
                overwritten = false;
            break;
        case Opcode::GetCond:
        case Opcode::GetCarry:
        case Opcode::GetEflags:
            overwritten = false;
            break;
        default:
            if (is_barrier(inst.op) || inst.op == Opcode::ExitLoop)
                overwritten = false;
            break;
        }
    }
}

void eliminate_dead_code(Block& b)
{
    std::vector<uint32_t> uses(b.insts.size(), 0);
    for (auto& inst : b.insts) {
        if (inst.dead)
            continue;
        const OpInfo& info = ir::info(inst.op);
        for (int a = 0; a < 4; a++)
            if (is_value_arg(info, a))
                uses[inst.args[a].raw]++;
    }
    for (size_t k = b.insts.size(); k-- > 0;) {
        Inst& inst = b.insts[k];
        if (inst.dead || has_side_effects(inst.op) || uses[k] != 0)
            continue;
        inst.dead = true;
        const OpInfo& info = ir::info(inst.op);
        for (int a = 0; a < 4; a++)
            if (is_value_arg(info, a))
                uses[inst.args[a].raw]--;
    }
}

void optimize(Block& block)
{
    // EMUD_IR_PASSES: unset = all; "none"; or a comma list of pass names.
    static const std::string enabled = [] {
        const char* env = getenv("EMUD_IR_PASSES");
        return std::string(env ? env : "all");
    }();
    auto on = [&](const char* name) {
        return enabled == "all" || ("," + enabled + ",").find(std::string(",") + name + ",") != std::string::npos;
    };
    auto check = [&](const char* pass) {
        if (!verification_enabled())
            return;
        if (auto problems = verify(block); !problems.empty()) {
            fprintf(stderr, "ir: pass %s broke the block: %s\n%s", pass, problems.front().c_str(), print(block).c_str());
            abort();
        }
    };
    if (on("forward")) {
        forward_registers(block);
        check("forward");
    }
    if (on("fuse")) {
        fuse_flags(block);
        check("fuse");
    }
    if (on("flags")) {
        eliminate_dead_flags(block);
        check("flags");
    }
    if (on("dce")) {
        eliminate_dead_code(block);
        check("dce");
    }
}

} // namespace emu::ir
