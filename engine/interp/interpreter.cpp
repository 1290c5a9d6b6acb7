#include "engine/interp/interpreter.h"

#include "engine/x86/flags.h"
#include "engine/x86/helpers.h"

#include <cstring>
#include <mutex>

namespace emu::interp {

using ir::Opcode;
using namespace emu::x86;

namespace {

const void* const* g_labels = nullptr;

// Locked operations that cannot be done with one host atomic (MMIO, page
// boundaries, code pages) are serialised against each other here.
std::mutex g_atomic_fallback;

template <class T>
uint64_t rmw_host(uint8_t* p, unsigned op, uint64_t v)
{
    T* t = reinterpret_cast<T*>(p);
    switch (op) {
    case 0:
        return __atomic_fetch_add(t, T(v), __ATOMIC_SEQ_CST);
    case 1:
        return __atomic_fetch_and(t, T(v), __ATOMIC_SEQ_CST);
    case 2:
        return __atomic_fetch_or(t, T(v), __ATOMIC_SEQ_CST);
    case 3:
        return __atomic_fetch_xor(t, T(v), __ATOMIC_SEQ_CST);
    case 4:
        return __atomic_exchange_n(t, T(v), __ATOMIC_SEQ_CST);
    default: {
        T old = __atomic_load_n(t, __ATOMIC_SEQ_CST);
        while (!__atomic_compare_exchange_n(t, &old, T(-old), false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
        }
        return old;
    }
    }
}

uint64_t apply(unsigned op, uint64_t old, uint64_t v)
{
    switch (op) {
    case 0:
        return old + v;
    case 1:
        return old & v;
    case 2:
        return old | v;
    case 3:
        return old ^ v;
    case 4:
        return v;
    default:
        return -old;
    }
}

// false: a fault is pending.
bool atomic_rmw(Mmu& mmu, uint64_t va, unsigned op, unsigned n, uint64_t v, uint64_t& old)
{
    bool fault;
    if (uint8_t* p = mmu.host_for_rmw(va, n, fault)) {
        switch (n) {
        case 1:
            old = rmw_host<uint8_t>(p, op, v);
            break;
        case 2:
            old = rmw_host<uint16_t>(p, op, v);
            break;
        case 4:
            old = rmw_host<uint32_t>(p, op, v);
            break;
        default:
            old = rmw_host<uint64_t>(p, op, v);
            break;
        }
        return true;
    }
    if (fault)
        return false;
    std::lock_guard lock(g_atomic_fallback);
    if (!mmu.load(va, n, old))
        return false;
    return mmu.store(va, n, apply(op, old, v));
}

bool atomic_cmpxchg(Mmu& mmu, uint64_t va, unsigned n, uint64_t expected, uint64_t desired, uint64_t& old)
{
    bool fault;
    uint64_t mask = n == 8 ? ~0ull : (1ull << (8 * n)) - 1;
    expected &= mask;
    if (uint8_t* p = mmu.host_for_rmw(va, n, fault)) {
        switch (n) {
        case 1: {
            uint8_t e = uint8_t(expected);
            __atomic_compare_exchange_n(p, &e, uint8_t(desired), false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
            old = e;
            break;
        }
        case 2: {
            uint16_t e = uint16_t(expected);
            __atomic_compare_exchange_n(reinterpret_cast<uint16_t*>(p), &e, uint16_t(desired), false,
                                        __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
            old = e;
            break;
        }
        case 4: {
            uint32_t e = uint32_t(expected);
            __atomic_compare_exchange_n(reinterpret_cast<uint32_t*>(p), &e, uint32_t(desired), false,
                                        __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
            old = e;
            break;
        }
        default: {
            uint64_t e = expected;
            __atomic_compare_exchange_n(reinterpret_cast<uint64_t*>(p), &e, desired, false, __ATOMIC_SEQ_CST,
                                        __ATOMIC_SEQ_CST);
            old = e;
            break;
        }
        }
        return true;
    }
    if (fault)
        return false;
    std::lock_guard lock(g_atomic_fallback);
    if (!mmu.load(va, n, old))
        return false;
    // A locked cmpxchg writes the old value back when it does not match.
    return mmu.store(va, n, old == expected ? desired : old);
}

// Runs a block, or (block == nullptr) publishes the handler table.
Exit run(const CompiledBlock* block, CpuEnv* env, uint64_t* F)
{
    static const void* const labels[] = {
#define OPCODE(name, ret, a0, a1, a2, a3) &&op_##name,
#include "engine/ir/opcodes.inc"
#undef OPCODE
    };
    if (!block) {
        g_labels = labels;
        return Exit::Loop;
    }
    CpuState& s = env->s;
    Mmu& mmu = env->mmu;
    const Op* op = block->ops.data();
    uint64_t v;

#define NEXT goto* (++op)->handler
    goto* op->handler;

op_GetReg:
    F[op->dst] = s.regs[op->imm];
    NEXT;
op_SetReg:
    s.regs[op->imm] = F[op->a];
    NEXT;
op_GetSegBase:
    F[op->dst] = s.seg[op->imm].base;
    NEXT;
op_LoadField:
    memcpy(&F[op->dst], reinterpret_cast<const char*>(&s) + op->imm, 8);
    NEXT;
op_StoreField:
    memcpy(reinterpret_cast<char*>(&s) + op->imm, &F[op->a], 8);
    NEXT;
op_Const:
    F[op->dst] = op->imm;
    NEXT;
op_Add:
    F[op->dst] = F[op->a] + F[op->b];
    NEXT;
op_Sub:
    F[op->dst] = F[op->a] - F[op->b];
    NEXT;
op_And:
    F[op->dst] = F[op->a] & F[op->b];
    NEXT;
op_Or:
    F[op->dst] = F[op->a] | F[op->b];
    NEXT;
op_Xor:
    F[op->dst] = F[op->a] ^ F[op->b];
    NEXT;
op_Not:
    F[op->dst] = ~F[op->a];
    NEXT;
op_Neg:
    F[op->dst] = -F[op->a];
    NEXT;
op_Shl:
    F[op->dst] = F[op->a] << (F[op->b] & 63);
    NEXT;
op_Shr:
    F[op->dst] = F[op->a] >> (F[op->b] & 63);
    NEXT;
op_Sar:
    F[op->dst] = uint64_t(int64_t(F[op->a]) >> (F[op->b] & 63));
    NEXT;
op_Mul:
    F[op->dst] = F[op->a] * F[op->b];
    NEXT;
op_MulHiU:
    F[op->dst] = uint64_t((unsigned __int128)F[op->a] * F[op->b] >> 64);
    NEXT;
op_MulHiS:
    F[op->dst] = uint64_t((__int128)int64_t(F[op->a]) * int64_t(F[op->b]) >> 64);
    NEXT;
op_ZExt8:
    F[op->dst] = uint8_t(F[op->a]);
    NEXT;
op_ZExt16:
    F[op->dst] = uint16_t(F[op->a]);
    NEXT;
op_ZExt32:
    F[op->dst] = uint32_t(F[op->a]);
    NEXT;
op_SExt8:
    F[op->dst] = uint64_t(int64_t(int8_t(F[op->a])));
    NEXT;
op_SExt16:
    F[op->dst] = uint64_t(int64_t(int16_t(F[op->a])));
    NEXT;
op_SExt32:
    F[op->dst] = uint64_t(int64_t(int32_t(F[op->a])));
    NEXT;
op_Insert:
    if (op->imm == 8)
        F[op->dst] = (F[op->a] & ~0xffull) | (F[op->b] & 0xff);
    else if (op->imm == 16)
        F[op->dst] = (F[op->a] & ~0xffffull) | (F[op->b] & 0xffff);
    else
        F[op->dst] = (F[op->a] & ~0xff00ull) | ((F[op->b] & 0xff) << 8);
    NEXT;
op_Bswap32:
    F[op->dst] = __builtin_bswap32(uint32_t(F[op->a]));
    NEXT;
op_Bswap64:
    F[op->dst] = __builtin_bswap64(F[op->a]);
    NEXT;
op_CmpEq:
    F[op->dst] = F[op->a] == F[op->b];
    NEXT;
op_CmpNe:
    F[op->dst] = F[op->a] != F[op->b];
    NEXT;
op_CmpLtU:
    F[op->dst] = F[op->a] < F[op->b];
    NEXT;
op_CmpLtS:
    F[op->dst] = int64_t(F[op->a]) < int64_t(F[op->b]);
    NEXT;
op_Select:
    F[op->dst] = F[op->a] ? F[op->b] : F[op->c];
    NEXT;
op_BoolToInt:
    F[op->dst] = F[op->a] & 1;
    NEXT;
op_NotBool:
    F[op->dst] = !F[op->a];
    NEXT;
op_CheckSeg:
    if (!segment_access_ok(s, unsigned(op->imm & 0xff), F[op->a], unsigned((op->imm >> 8) & 0xff),
                           (op->imm >> 16) & 1))
        goto fault;
    NEXT;
op_Load8:
    if (!mmu.load(F[op->a], 1, v))
        goto fault;
    F[op->dst] = v;
    NEXT;
op_Load16:
    if (!mmu.load(F[op->a], 2, v))
        goto fault;
    F[op->dst] = v;
    NEXT;
op_Load32:
    if (!mmu.load(F[op->a], 4, v))
        goto fault;
    F[op->dst] = v;
    NEXT;
op_Load64:
    if (!mmu.load(F[op->a], 8, v))
        goto fault;
    F[op->dst] = v;
    NEXT;
op_Store8:
    if (!mmu.store(F[op->a], 1, F[op->b]))
        goto fault;
    if (__builtin_expect(env->smc, 0))
        goto smc;
    NEXT;
op_Store16:
    if (!mmu.store(F[op->a], 2, F[op->b]))
        goto fault;
    if (__builtin_expect(env->smc, 0))
        goto smc;
    NEXT;
op_Store32:
    if (!mmu.store(F[op->a], 4, F[op->b]))
        goto fault;
    if (__builtin_expect(env->smc, 0))
        goto smc;
    NEXT;
op_Store64:
    if (!mmu.store(F[op->a], 8, F[op->b]))
        goto fault;
    if (__builtin_expect(env->smc, 0))
        goto smc;
    NEXT;
op_AtomicRmw:
    if (!atomic_rmw(mmu, F[op->a], unsigned(op->imm & 0xff), unsigned(op->imm >> 8), F[op->b], v))
        goto fault;
    F[op->dst] = v;
    if (__builtin_expect(env->smc, 0))
        goto smc;
    NEXT;
op_AtomicCmpxchg:
    if (!atomic_cmpxchg(mmu, F[op->a], unsigned(op->imm), F[op->b], F[op->c], v))
        goto fault;
    F[op->dst] = v;
    if (__builtin_expect(env->smc, 0))
        goto smc;
    NEXT;
op_SetFlags:
    s.cc_op = uint32_t(op->imm);
    s.cc_res = F[op->a];
    s.cc_src1 = F[op->b];
    s.cc_src2 = F[op->c];
    NEXT;
op_SetFlagsNZ:
    if (F[op->c] != 0) {
        s.cc_op = uint32_t(op->imm);
        s.cc_res = F[op->a];
        s.cc_src1 = F[op->b];
        s.cc_src2 = F[op->c];
    }
    NEXT;
op_GetCond:
    F[op->dst] = compute_cond(s, unsigned(op->imm));
    NEXT;
op_GetCarry:
    F[op->dst] = compute_carry(s);
    NEXT;
op_GetEflags:
    F[op->dst] = read_eflags(s);
    NEXT;
op_SetEflags:
    write_eflags(s, F[op->a], op->imm);
    NEXT;
op_Call:
    F[op->dst] = helper_fn(Helper(op->imm))(*env, F[op->a], F[op->b], F[op->c]);
    if (s.pending_vector >= 0)
        goto fault;
    NEXT;
op_ExitJump:
    s.rip = op->imm;
    env->instructions += block->guest.size();
    return Exit::Jump;
op_ExitCond:
    s.rip = F[op->a] ? op->imm : op->imm2;
    env->instructions += block->guest.size();
    return Exit::Jump;
op_ExitIndirect:
    s.rip = F[op->a];
    env->instructions += block->guest.size();
    return Exit::Jump;
op_ExitLoop:
    env->instructions += block->guest.size();
    return Exit::Loop;

smc : {
    // The store rewrote translated code. Finish this guest instruction from a
    // copy of its remaining operations, then leave the block at the next one.
    env->smc = false;
    static thread_local std::vector<Op> scratch;
    scratch.clear();
    uint32_t g = op->guest;
    const Op* end = block->ops.data() + block->ops.size();
    bool terminated = false;
    for (const Op* p = op + 1; p < end && p->guest == g; p++) {
        scratch.push_back(*p);
        terminated = p + 1 == end;
    }
    if (!terminated) {
        const ir::GuestInsn& gi = block->guest[g];
        uint64_t next = gi.rip + gi.length;
        if (!(s.hflags & HF_CS64))
            next &= (s.hflags & HF_CS32) ? 0xffffffffull : 0xffffull;
        Op exit{labels[int(Opcode::ExitJump)], 0, 0, 0, 0, next, 0, g};
        scratch.push_back(exit);
    }
    op = scratch.data();
    goto* op->handler;
}
fault : {
    // Precise: RIP is the instruction that faulted (or the next one for a trap).
    const ir::GuestInsn& g = block->guest[op->guest];
    s.rip = env->pending_trap ? g.rip + g.length : g.rip;
    if (!(s.hflags & HF_CS64))
        s.rip &= (s.hflags & HF_CS32) ? 0xffffffffull : 0xffffull;
    env->instructions += op->guest;
    return Exit::Fault;
}
#undef NEXT
}

} // namespace

CompiledBlock compile(const ir::Block& block)
{
    if (!g_labels)
        run(nullptr, nullptr, nullptr);
    CompiledBlock out;
    out.guest = block.guest;
    out.slots = uint32_t(block.insts.size());
    out.ops.reserve(block.insts.size());
    for (size_t i = 0; i < block.insts.size(); i++) {
        const ir::Inst& inst = block.insts[i];
        if (inst.dead)
            continue;
        const ir::OpInfo& info = ir::info(inst.op);
        Op op{g_labels[static_cast<int>(inst.op)], uint32_t(i), 0, 0, 0, 0, 0, inst.guest_insn};
        // Value arguments go to a, b, c in order; immediates to imm, imm2.
        uint32_t* slots[3] = {&op.a, &op.b, &op.c};
        uint64_t* imms[2] = {&op.imm, &op.imm2};
        int nv = 0, ni = 0;
        for (int a = 0; a < 4; a++) {
            if (info.args[a] == ir::Type::Imm)
                *imms[ni++] = inst.args[a].raw;
            else if (info.args[a] == ir::Type::U64 || info.args[a] == ir::Type::U1)
                *slots[nv++] = uint32_t(inst.args[a].raw);
        }
        out.ops.push_back(op);
    }
    return out;
}

Exit execute(const CompiledBlock& block, CpuEnv& env, uint64_t* frame) { return run(&block, &env, frame); }

} // namespace emu::interp
