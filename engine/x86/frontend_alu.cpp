// engine/x86/frontend_alu.cpp — arithmetic, logic, shifts, multiply/divide,
// bit operations, condition codes and flag instructions.
#include "engine/x86/frontend_internal.h"

namespace emu::x86 {

namespace {

// Condition code of a Jcc/SETcc/CMOVcc mnemonic, from its position in the
// table's O NO B NB Z NZ BE NBE S NS P NP L NL LE NLE order.
unsigned cc_of(ZydisMnemonic m)
{
    static const ZydisMnemonic set[] = {ZYDIS_MNEMONIC_SETO, ZYDIS_MNEMONIC_SETNO, ZYDIS_MNEMONIC_SETB,
                                        ZYDIS_MNEMONIC_SETNB, ZYDIS_MNEMONIC_SETZ, ZYDIS_MNEMONIC_SETNZ,
                                        ZYDIS_MNEMONIC_SETBE, ZYDIS_MNEMONIC_SETNBE, ZYDIS_MNEMONIC_SETS,
                                        ZYDIS_MNEMONIC_SETNS, ZYDIS_MNEMONIC_SETP, ZYDIS_MNEMONIC_SETNP,
                                        ZYDIS_MNEMONIC_SETL, ZYDIS_MNEMONIC_SETNL, ZYDIS_MNEMONIC_SETLE,
                                        ZYDIS_MNEMONIC_SETNLE};
    static const ZydisMnemonic cmov[] = {ZYDIS_MNEMONIC_CMOVO, ZYDIS_MNEMONIC_CMOVNO, ZYDIS_MNEMONIC_CMOVB,
                                         ZYDIS_MNEMONIC_CMOVNB, ZYDIS_MNEMONIC_CMOVZ, ZYDIS_MNEMONIC_CMOVNZ,
                                         ZYDIS_MNEMONIC_CMOVBE, ZYDIS_MNEMONIC_CMOVNBE, ZYDIS_MNEMONIC_CMOVS,
                                         ZYDIS_MNEMONIC_CMOVNS, ZYDIS_MNEMONIC_CMOVP, ZYDIS_MNEMONIC_CMOVNP,
                                         ZYDIS_MNEMONIC_CMOVL, ZYDIS_MNEMONIC_CMOVNL, ZYDIS_MNEMONIC_CMOVLE,
                                         ZYDIS_MNEMONIC_CMOVNLE};
    static const ZydisMnemonic jcc[] = {ZYDIS_MNEMONIC_JO,  ZYDIS_MNEMONIC_JNO, ZYDIS_MNEMONIC_JB,
                                        ZYDIS_MNEMONIC_JNB, ZYDIS_MNEMONIC_JZ,  ZYDIS_MNEMONIC_JNZ,
                                        ZYDIS_MNEMONIC_JBE, ZYDIS_MNEMONIC_JNBE, ZYDIS_MNEMONIC_JS,
                                        ZYDIS_MNEMONIC_JNS, ZYDIS_MNEMONIC_JP,  ZYDIS_MNEMONIC_JNP,
                                        ZYDIS_MNEMONIC_JL,  ZYDIS_MNEMONIC_JNL, ZYDIS_MNEMONIC_JLE,
                                        ZYDIS_MNEMONIC_JNLE};
    for (unsigned i = 0; i < 16; i++)
        if (set[i] == m || cmov[i] == m || jcc[i] == m)
            return i;
    return 0;
}

} // namespace

unsigned condition_of(ZydisMnemonic m) { return cc_of(m); }

namespace {

bool emit_alu_locked(Emitter& e)
{
    unsigned n = e.bytes(0);
    V c = e.read(1), addr = e.address(0);
    V old, res;
    FlagOp f;
    switch (e.insn.mnemonic) {
    case ZYDIS_MNEMONIC_ADD:
        old = e.atomic(0, addr, c, n);
        res = e.op2(Opcode::Add, old, c);
        f = FlagOp::Add;
        break;
    case ZYDIS_MNEMONIC_SUB:
        old = e.atomic(0, addr, e.op1(Opcode::Neg, c), n);
        res = e.op2(Opcode::Sub, old, c);
        f = FlagOp::Sub;
        break;
    case ZYDIS_MNEMONIC_ADC: {
        V total = e.op2(Opcode::Add, c, e.b.emit(Opcode::GetCarry));
        old = e.atomic(0, addr, total, n);
        res = e.op2(Opcode::Add, old, total);
        f = FlagOp::Adc;
        break;
    }
    case ZYDIS_MNEMONIC_SBB: {
        V total = e.op2(Opcode::Add, c, e.b.emit(Opcode::GetCarry));
        old = e.atomic(0, addr, e.op1(Opcode::Neg, total), n);
        res = e.op2(Opcode::Sub, old, total);
        f = FlagOp::Sbb;
        break;
    }
    case ZYDIS_MNEMONIC_AND:
        old = e.atomic(1, addr, c, n);
        res = e.op2(Opcode::And, old, c);
        f = FlagOp::Logic;
        break;
    case ZYDIS_MNEMONIC_OR:
        old = e.atomic(2, addr, c, n);
        res = e.op2(Opcode::Or, old, c);
        f = FlagOp::Logic;
        break;
    case ZYDIS_MNEMONIC_XOR:
        old = e.atomic(3, addr, c, n);
        res = e.op2(Opcode::Xor, old, c);
        f = FlagOp::Logic;
        break;
    default:
        return false; // lock cmp/test: #UD
    }
    e.set_flags(f, n, res, old, c);
    return true;
}

} // namespace

bool emit_alu(Emitter& e)
{
    if (e.locked())
        return emit_alu_locked(e);
    unsigned n = e.bytes(0);
    V a = e.read(0), c = e.read(1);
    if (a == UINT32_MAX || c == UINT32_MAX)
        return false;
    V res;
    FlagOp f;
    bool writeback = true;
    switch (e.insn.mnemonic) {
    case ZYDIS_MNEMONIC_ADD:
        res = e.op2(Opcode::Add, a, c);
        f = FlagOp::Add;
        break;
    case ZYDIS_MNEMONIC_ADC:
        res = e.op2(Opcode::Add, e.op2(Opcode::Add, a, c), e.b.emit(Opcode::GetCarry));
        f = FlagOp::Adc;
        break;
    case ZYDIS_MNEMONIC_SUB:
        res = e.op2(Opcode::Sub, a, c);
        f = FlagOp::Sub;
        break;
    case ZYDIS_MNEMONIC_SBB:
        res = e.op2(Opcode::Sub, e.op2(Opcode::Sub, a, c), e.b.emit(Opcode::GetCarry));
        f = FlagOp::Sbb;
        break;
    case ZYDIS_MNEMONIC_CMP:
        res = e.op2(Opcode::Sub, a, c);
        f = FlagOp::Sub;
        writeback = false;
        break;
    case ZYDIS_MNEMONIC_AND:
        res = e.op2(Opcode::And, a, c);
        f = FlagOp::Logic;
        break;
    case ZYDIS_MNEMONIC_TEST:
        res = e.op2(Opcode::And, a, c);
        f = FlagOp::Logic;
        writeback = false;
        break;
    case ZYDIS_MNEMONIC_OR:
        res = e.op2(Opcode::Or, a, c);
        f = FlagOp::Logic;
        break;
    case ZYDIS_MNEMONIC_XOR:
        res = e.op2(Opcode::Xor, a, c);
        f = FlagOp::Logic;
        break;
    default:
        return false;
    }
    // Stores first: a fault must leave the flags as they were.
    if (writeback)
        e.write(0, res);
    e.set_flags(f, n, res, a, c);
    return true;
}

bool emit_incdec(Emitter& e)
{
    unsigned n = e.bytes(0);
    bool inc = e.insn.mnemonic == ZYDIS_MNEMONIC_INC;
    if (e.locked()) {
        V carry = e.b.emit(Opcode::GetCarry);
        V old = e.atomic(0, e.address(0), e.k(inc ? 1 : ~0ull), n);
        V res = e.op2(inc ? Opcode::Add : Opcode::Sub, old, e.k(1));
        e.set_flags(inc ? FlagOp::Inc : FlagOp::Dec, n, res, old, carry);
        return true;
    }
    V a = e.read(0);
    V res = e.op2(inc ? Opcode::Add : Opcode::Sub, a, e.k(1));
    V carry = e.b.emit(Opcode::GetCarry);
    e.write(0, res);
    e.set_flags(inc ? FlagOp::Inc : FlagOp::Dec, n, res, a, carry);
    return true;
}

bool emit_neg(Emitter& e)
{
    if (e.locked()) {
        V old = e.atomic(5, e.address(0), e.k(0), e.bytes(0));
        e.set_flags(FlagOp::Sub, e.bytes(0), e.op1(Opcode::Neg, old), e.k(0), old);
        return true;
    }
    V a = e.read(0);
    V res = e.op1(Opcode::Neg, a);
    e.write(0, res);
    e.set_flags(FlagOp::Sub, e.bytes(0), res, e.k(0), a);
    return true;
}

bool emit_not(Emitter& e)
{
    if (e.locked()) {
        e.atomic(3, e.address(0), e.k(Emitter::mask(e.bytes(0))), e.bytes(0));
        return true;
    }
    e.write(0, e.op1(Opcode::Not, e.read(0)));
    return true;
}

bool emit_shift(Emitter& e)
{
    unsigned n = e.bytes(0);
    V a = e.read(0);
    V count = e.op2(Opcode::And, e.read(1), e.k(n == 8 ? 63 : 31));
    V res;
    FlagOp f;
    switch (e.insn.mnemonic) {
    case ZYDIS_MNEMONIC_SHL:
        res = e.op2(Opcode::Shl, a, count);
        f = FlagOp::Shl;
        break;
    case ZYDIS_MNEMONIC_SHR:
        res = e.op2(Opcode::Shr, a, count);
        f = FlagOp::Shr;
        break;
    default:
        res = e.op2(Opcode::Sar, e.sext(a, n), count);
        f = FlagOp::Sar;
        break;
    }
    e.write(0, res);
    e.b.emit(Opcode::SetFlagsNZ, Arg::imm(flag_kind(f, n)), Arg::value(res), Arg::value(a), Arg::value(count));
    return true;
}

bool emit_rotate(Emitter& e)
{
    unsigned n = e.bytes(0);
    unsigned which = e.insn.mnemonic == ZYDIS_MNEMONIC_ROL   ? 0
                     : e.insn.mnemonic == ZYDIS_MNEMONIC_ROR ? 1
                     : e.insn.mnemonic == ZYDIS_MNEMONIC_RCL ? 2
                                                             : 3;
    V a = e.read(0), count = e.read(1);
    unsigned bits = 8 * n;
    if (which <= 1 && e.op[1].type == ZYDIS_OPERAND_TYPE_IMMEDIATE) {
        // rol/ror by a constant: inline. Only CF and OF change.
        unsigned c = unsigned(e.op[1].imm.value.u) & (n == 8 ? 63 : 31);
        if (c == 0) {
            e.write(0, a); // no change, but a 32-bit register is still zero-extended
            return true;
        }
        unsigned r = c % bits;
        unsigned left = which == 0 ? r : (bits - r) % bits;
        V res = a;
        if (left)
            res = e.zext(e.op2(Opcode::Or, e.op2(Opcode::Shl, a, e.k(left)), e.op2(Opcode::Shr, a, e.k(bits - left))), n);
        e.write(0, res);
        V msb = e.op2(Opcode::And, e.op2(Opcode::Shr, res, e.k(bits - 1)), e.k(1));
        V cf, of;
        if (which == 0) {
            cf = e.op2(Opcode::And, res, e.k(1));
            of = e.op2(Opcode::Xor, msb, cf);
        } else {
            cf = msb;
            of = e.op2(Opcode::And, e.op2(Opcode::Xor, msb, e.op2(Opcode::Shr, res, e.k(bits - 2))), e.k(1));
        }
        V flags = e.op2(Opcode::Or, cf, e.op2(Opcode::Shl, of, e.k(11)));
        e.b.emit(Opcode::SetEflags, Arg::value(flags), Arg::imm(CF | OF));
        return true;
    }
    V res = e.call(Helper::Rotate, a, count, e.k(n | which << 8));
    V flags = e.call(Helper::Rotate, a, count, e.k(n | which << 8 | 1 << 16));
    e.write(0, res);
    e.b.emit(Opcode::SetEflags, Arg::value(flags), Arg::imm(CF | OF));
    return true;
}

bool emit_shiftd(Emitter& e)
{
    // shld/shrd dst, src, count: through a 2-operand double shift on 64 bits.
    unsigned n = e.bytes(0);
    if (n == 2)
        return false; // 16-bit forms with counts above 16 have odd results: not yet
    V a = e.read(0), src = e.read(1);
    V count = e.op2(Opcode::And, e.read(2), e.k(n == 8 ? 63 : 31));
    bool left = e.insn.mnemonic == ZYDIS_MNEMONIC_SHLD;
    V bits = e.k(n * 8);
    V back = e.op2(Opcode::Sub, bits, count);
    V res;
    if (left) {
        // (a << c) | (src >> (bits - c)); c == 0 leaves a.
        V hi = e.op2(Opcode::Shl, a, count);
        V lo = e.op2(Opcode::Shr, src, e.op2(Opcode::And, back, e.k(63)));
        res = e.op2(Opcode::Or, hi, e.b.emit(Opcode::Select, Arg::value(e.op2(Opcode::CmpEq, count, e.k(0))),
                                            Arg::value(e.k(0)), Arg::value(lo)));
    } else {
        V lo = e.op2(Opcode::Shr, a, count);
        V hi = e.op2(Opcode::Shl, src, e.op2(Opcode::And, back, e.k(63)));
        res = e.op2(Opcode::Or, lo, e.b.emit(Opcode::Select, Arg::value(e.op2(Opcode::CmpEq, count, e.k(0))),
                                            Arg::value(e.k(0)), Arg::value(hi)));
    }
    res = e.zext(res, n);
    e.write(0, res);
    e.b.emit(Opcode::SetFlagsNZ, Arg::imm(flag_kind(left ? FlagOp::Shl : FlagOp::Shr, n)), Arg::value(res),
             Arg::value(a), Arg::value(count));
    return true;
}

bool emit_mul(Emitter& e)
{
    unsigned n = e.bytes(0);
    V src = e.read(0);
    V a = e.get_sized(RAX, n);
    V lo, hi;
    if (n == 8) {
        lo = e.op2(Opcode::Mul, a, src);
        hi = e.op2(Opcode::MulHiU, a, src);
        e.set(RAX, lo);
        e.set(RDX, hi);
    } else {
        V p = e.op2(Opcode::Mul, a, src);
        lo = e.zext(p, n);
        hi = e.op2(Opcode::Shr, p, e.k(8 * n));
        if (n == 1) {
            e.set_sized(RAX, p, 2);
        } else {
            e.set_sized(RAX, lo, n);
            e.set_sized(RDX, hi, n);
        }
    }
    e.set_flags(FlagOp::Mul, n, lo, a, hi);
    return true;
}

bool emit_imul(Emitter& e)
{
    unsigned n = e.bytes(0);
    unsigned explicit_ops = e.insn.operand_count_visible;
    V a, c;
    if (explicit_ops == 1) {
        a = e.get_sized(RAX, n);
        c = e.read(0);
    } else if (explicit_ops == 2) {
        a = e.read(0);
        c = e.read(1);
    } else {
        a = e.read(1);
        c = e.read(2);
    }
    V sa = e.sext(a, n), sc = e.sext(c, n);
    V p = e.op2(Opcode::Mul, sa, sc);
    V lo = e.zext(p, n);
    V overflow;
    if (n == 8) {
        V hi = e.op2(Opcode::MulHiS, sa, sc);
        overflow = e.op1(Opcode::BoolToInt, e.op2(Opcode::CmpNe, hi, e.op2(Opcode::Sar, p, e.k(63))));
        if (explicit_ops == 1) {
            e.set(RAX, p);
            e.set(RDX, hi);
        }
    } else {
        overflow = e.op1(Opcode::BoolToInt, e.op2(Opcode::CmpNe, e.sext(lo, n), p));
        if (explicit_ops == 1) {
            if (n == 1) {
                e.set_sized(RAX, p, 2);
            } else {
                e.set_sized(RAX, lo, n);
                e.set_sized(RDX, e.op2(Opcode::Shr, p, e.k(8 * n)), n);
            }
        }
    }
    if (explicit_ops > 1)
        e.write(0, lo);
    e.set_flags(FlagOp::Mul, n, lo, a, overflow);
    return true;
}

bool emit_div(Emitter& e)
{
    unsigned n = e.bytes(0);
    bool is_signed = e.insn.mnemonic == ZYDIS_MNEMONIC_IDIV;
    e.call(Helper::Div, e.read(0), e.k(n | (is_signed ? 1 << 8 : 0)));
    return true;
}

bool emit_bt(Emitter& e)
{
    unsigned n = e.bytes(0);
    unsigned log_bits = __builtin_ctz(n * 8);
    bool modifies = e.insn.mnemonic != ZYDIS_MNEMONIC_BT;
    V bit, addr = UINT32_MAX;
    if (e.op[0].type == ZYDIS_OPERAND_TYPE_MEMORY) {
        addr = e.address(0);
        if (e.op[1].type == ZYDIS_OPERAND_TYPE_REGISTER) {
            // A register bit offset addresses a bit string: it may reach beyond the operand.
            V offset = e.sext(e.read(1), n);
            V disp = e.op2(Opcode::Shl, e.op2(Opcode::Sar, offset, e.k(log_bits)), e.k(__builtin_ctz(n)));
            addr = e.op2(Opcode::Add, addr, disp);
            if (!(e.hflags & HF_CS64))
                addr = e.zext(addr, 4);
            bit = e.op2(Opcode::And, offset, e.k(n * 8 - 1));
        } else {
            bit = e.op2(Opcode::And, e.read(1), e.k(n * 8 - 1));
        }
    } else {
        bit = e.op2(Opcode::And, e.read(1), e.k(n * 8 - 1));
    }
    V one = e.op2(Opcode::Shl, e.k(1), bit);
    if (modifies && addr != UINT32_MAX && (e.insn.attributes & ZYDIS_ATTRIB_HAS_LOCK)) {
        // One host atomic on the word.
        V old = e.insn.mnemonic == ZYDIS_MNEMONIC_BTS   ? e.atomic(2, addr, one, n)
                : e.insn.mnemonic == ZYDIS_MNEMONIC_BTR ? e.atomic(1, addr, e.op1(Opcode::Not, one), n)
                                                        : e.atomic(3, addr, one, n);
        e.b.emit(Opcode::SetEflags, Arg::value(e.op2(Opcode::And, e.op2(Opcode::Shr, old, bit), e.k(1))),
                 Arg::imm(CF));
        return true;
    }
    V word = addr != UINT32_MAX ? e.load(addr, n) : e.read(0);
    V cf = e.op2(Opcode::And, e.op2(Opcode::Shr, word, bit), e.k(1));
    V res = UINT32_MAX;
    switch (e.insn.mnemonic) {
    case ZYDIS_MNEMONIC_BTS:
        res = e.op2(Opcode::Or, word, one);
        break;
    case ZYDIS_MNEMONIC_BTR:
        res = e.op2(Opcode::And, word, e.op1(Opcode::Not, one));
        break;
    case ZYDIS_MNEMONIC_BTC:
        res = e.op2(Opcode::Xor, word, one);
        break;
    default:
        break;
    }
    if (res != UINT32_MAX) {
        if (addr != UINT32_MAX)
            e.store(addr, res, n);
        else
            e.write(0, res);
    }
    e.b.emit(Opcode::SetEflags, Arg::value(cf), Arg::imm(CF));
    return true;
}

bool emit_bitscan(Emitter& e)
{
    unsigned n = e.bytes(0);
    unsigned which = 0;
    switch (e.insn.mnemonic) {
    case ZYDIS_MNEMONIC_BSF:
        which = 0;
        break;
    case ZYDIS_MNEMONIC_BSR:
        which = 1;
        break;
    case ZYDIS_MNEMONIC_TZCNT:
        which = 2;
        break;
    case ZYDIS_MNEMONIC_LZCNT:
        which = 3;
        break;
    default:
        which = 4;
        break;
    }
    V src = e.read(1);
    V res = e.call(Helper::BitScan, src, e.k(n | which << 8), e.read(0));
    if (which <= 1 && n == 4 && e.op[0].type == ZYDIS_OPERAND_TYPE_REGISTER) {
        // bsf/bsr of zero leave the destination alone: not even zero-extended.
        GprRef r = gpr_ref(e.op[0].reg.value);
        V zero = e.op2(Opcode::CmpEq, src, e.k(0));
        e.set(r.index, e.b.emit(Opcode::Select, Arg::value(zero), Arg::value(e.get(r.index)),
                                Arg::value(e.op1(Opcode::ZExt32, res))));
        return true;
    }
    e.write(0, res);
    return true;
}

bool emit_setcc(Emitter& e)
{
    e.write(0, e.op1(Opcode::BoolToInt, e.cond(cc_of(e.insn.mnemonic))));
    return true;
}

bool emit_cmovcc(Emitter& e)
{
    V src = e.read(1), dst = e.read(0);
    V c = e.cond(cc_of(e.insn.mnemonic));
    e.write(0, e.b.emit(Opcode::Select, Arg::value(c), Arg::value(src), Arg::value(dst)));
    return true;
}

bool emit_convert(Emitter& e)
{
    switch (e.insn.mnemonic) {
    case ZYDIS_MNEMONIC_CBW:
        e.set_sized(RAX, e.sext(e.get(RAX), 1), 2);
        return true;
    case ZYDIS_MNEMONIC_CWDE:
        e.set_sized(RAX, e.sext(e.get(RAX), 2), 4);
        return true;
    case ZYDIS_MNEMONIC_CDQE:
        e.set(RAX, e.sext(e.get(RAX), 4));
        return true;
    default: {
        unsigned n = e.opsize();
        V sign = e.op2(Opcode::Sar, e.sext(e.get(RAX), n), e.k(63));
        e.set_sized(RDX, sign, n);
        return true;
    }
    }
}

bool emit_flagop(Emitter& e)
{
    auto set_bits = [&](V value, uint64_t mask) {
        e.b.emit(Opcode::SetEflags, Arg::value(value), Arg::imm(mask));
    };
    switch (e.insn.mnemonic) {
    case ZYDIS_MNEMONIC_CLC:
        set_bits(e.k(0), CF);
        return true;
    case ZYDIS_MNEMONIC_STC:
        set_bits(e.k(CF), CF);
        return true;
    case ZYDIS_MNEMONIC_CMC:
        set_bits(e.op2(Opcode::Xor, e.b.emit(Opcode::GetEflags), e.k(CF)), CF);
        return true;
    case ZYDIS_MNEMONIC_CLD:
        set_bits(e.k(0), DF);
        return true;
    case ZYDIS_MNEMONIC_STD:
        set_bits(e.k(DF), DF);
        return true;
    case ZYDIS_MNEMONIC_LAHF: {
        V f = e.op2(Opcode::Or, e.op2(Opcode::And, e.b.emit(Opcode::GetEflags), e.k(SF | ZF | AF | PF | CF)), e.k(2));
        e.set_sized(RAX, f, 1, true);
        return true;
    }
    case ZYDIS_MNEMONIC_SAHF:
        set_bits(e.op2(Opcode::Shr, e.get(RAX), e.k(8)), SF | ZF | AF | PF | CF);
        return true;
    default:
        return false;
    }
}

} // namespace emu::x86
