#include "tests/difftest/difftest.h"

#include "engine/x86/flags.h"
#include "tests/unit/x86_test_machine.h"

#include <Zydis/Zydis.h>
#include <csignal>
#include <cstring>
#include <cpuid.h>
#include <fmt/format.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>
#include <xbyak/xbyak.h>

namespace emu::difftest {

using namespace emu::x86;

namespace {

constexpr uint64_t k_in = k_data + 0x2000, k_out = k_data + 0x2100, k_save = k_data + 0x2200;
constexpr uint64_t k_fx_in = k_data + 0x2400, k_fx_out = k_data + 0x2600;
constexpr uint64_t k_region = 0x3000; // data, stack, contexts
constexpr uint64_t AF_ = AF, OF_ = OF, SF_ = SF, ZF_ = ZF, PF_ = PF, CF_ = CF;

// Registers a case may use as operands. RSP is the stack; RBX always points
// into the data area and is the base of every memory operand.
const ZydisRegister k_gpr64[] = {ZYDIS_REGISTER_RAX, ZYDIS_REGISTER_RCX, ZYDIS_REGISTER_RDX, ZYDIS_REGISTER_RSI,
                                 ZYDIS_REGISTER_RDI, ZYDIS_REGISTER_RBP, ZYDIS_REGISTER_R8,  ZYDIS_REGISTER_R9,
                                 ZYDIS_REGISTER_R10, ZYDIS_REGISTER_R11, ZYDIS_REGISTER_R12, ZYDIS_REGISTER_R13,
                                 ZYDIS_REGISTER_R14, ZYDIS_REGISTER_R15};

ZydisRegister sized(ZydisRegister r64, unsigned bytes)
{
    static const ZydisRegister r8[] = {ZYDIS_REGISTER_AL,   ZYDIS_REGISTER_CL,   ZYDIS_REGISTER_DL,
                                       ZYDIS_REGISTER_BL,   ZYDIS_REGISTER_SPL,  ZYDIS_REGISTER_BPL,
                                       ZYDIS_REGISTER_SIL,  ZYDIS_REGISTER_DIL,  ZYDIS_REGISTER_R8B,
                                       ZYDIS_REGISTER_R9B,  ZYDIS_REGISTER_R10B, ZYDIS_REGISTER_R11B,
                                       ZYDIS_REGISTER_R12B, ZYDIS_REGISTER_R13B, ZYDIS_REGISTER_R14B,
                                       ZYDIS_REGISTER_R15B};
    unsigned i = r64 - ZYDIS_REGISTER_RAX;
    switch (bytes) {
    case 1:
        return r8[i];
    case 2:
        return ZydisRegister(ZYDIS_REGISTER_AX + i);
    case 4:
        return ZydisRegister(ZYDIS_REGISTER_EAX + i);
    default:
        return r64;
    }
}

enum class Form { RR, RI, RM, MR, MI, R, M, RCL, MCL, R1, RRI, RMI, RRCL, None, RR8, RM8,
                  XX, XM, XXI, XMI, XI, GX, XG };

struct Template {
    ZydisMnemonic mnemonic;
    Form form;
    unsigned widths; // bit mask of operand bytes: 1 2 4 8
    uint64_t undefined;
    // (compat-only forms are listed in compat_templates())
    const char* host_feature = nullptr; // "lzcnt", "bmi1", "popcnt", "movbe", "sse4.1", "sse4.2", "ssse3"
};

constexpr unsigned W_ALL = 1 | 2 | 4 | 8, W_NOT8 = 2 | 4 | 8, W_48 = 4 | 8;

std::vector<Template> templates()
{
    std::vector<Template> t;
    for (auto m : {ZYDIS_MNEMONIC_ADD, ZYDIS_MNEMONIC_OR, ZYDIS_MNEMONIC_ADC, ZYDIS_MNEMONIC_SBB, ZYDIS_MNEMONIC_AND,
                   ZYDIS_MNEMONIC_SUB, ZYDIS_MNEMONIC_XOR, ZYDIS_MNEMONIC_CMP}) {
        uint64_t u = (m == ZYDIS_MNEMONIC_AND || m == ZYDIS_MNEMONIC_OR || m == ZYDIS_MNEMONIC_XOR) ? AF_ : 0;
        for (Form f : {Form::RR, Form::RI, Form::RM, Form::MR, Form::MI})
            t.push_back({m, f, W_ALL, u});
    }
    for (Form f : {Form::RR, Form::RI, Form::MR, Form::MI})
        t.push_back({ZYDIS_MNEMONIC_TEST, f, W_ALL, AF_});
    for (auto m : {ZYDIS_MNEMONIC_INC, ZYDIS_MNEMONIC_DEC, ZYDIS_MNEMONIC_NEG, ZYDIS_MNEMONIC_NOT})
        for (Form f : {Form::R, Form::M})
            t.push_back({m, f, W_ALL, 0});
    for (auto m : {ZYDIS_MNEMONIC_SHL, ZYDIS_MNEMONIC_SHR, ZYDIS_MNEMONIC_SAR})
        for (Form f : {Form::R1, Form::RI, Form::RCL, Form::MCL})
            t.push_back({m, f, W_ALL, AF_ | OF_}); // OF is defined for counts of 1 only
    for (auto m : {ZYDIS_MNEMONIC_ROL, ZYDIS_MNEMONIC_ROR, ZYDIS_MNEMONIC_RCL, ZYDIS_MNEMONIC_RCR})
        for (Form f : {Form::R1, Form::RI, Form::RCL, Form::MCL})
            t.push_back({m, f, W_ALL, OF_ | AF_ | SF_ | ZF_ | PF_});
    for (auto m : {ZYDIS_MNEMONIC_MUL, ZYDIS_MNEMONIC_IMUL})
        for (Form f : {Form::R, Form::M})
            t.push_back({m, f, W_ALL, SF_ | ZF_ | AF_ | PF_});
    t.push_back({ZYDIS_MNEMONIC_IMUL, Form::RR, W_NOT8, SF_ | ZF_ | AF_ | PF_});
    t.push_back({ZYDIS_MNEMONIC_IMUL, Form::RM, W_NOT8, SF_ | ZF_ | AF_ | PF_});
    t.push_back({ZYDIS_MNEMONIC_IMUL, Form::RRI, W_NOT8, SF_ | ZF_ | AF_ | PF_});
    for (auto m : {ZYDIS_MNEMONIC_DIV, ZYDIS_MNEMONIC_IDIV})
        for (Form f : {Form::R, Form::M})
            t.push_back({m, f, W_ALL, CF_ | OF_ | SF_ | ZF_ | AF_ | PF_});
    for (auto m : {ZYDIS_MNEMONIC_BT, ZYDIS_MNEMONIC_BTS, ZYDIS_MNEMONIC_BTR, ZYDIS_MNEMONIC_BTC}) {
        t.push_back({m, Form::RR, W_NOT8, OF_ | SF_ | AF_ | PF_});
        t.push_back({m, Form::RI, W_NOT8, OF_ | SF_ | AF_ | PF_});
        t.push_back({m, Form::MI, W_NOT8, OF_ | SF_ | AF_ | PF_});
    }
    for (auto m : {ZYDIS_MNEMONIC_BSF, ZYDIS_MNEMONIC_BSR}) {
        t.push_back({m, Form::RR, W_NOT8, CF_ | OF_ | SF_ | AF_ | PF_});
        t.push_back({m, Form::RM, W_NOT8, CF_ | OF_ | SF_ | AF_ | PF_});
    }
    t.push_back({ZYDIS_MNEMONIC_TZCNT, Form::RR, W_NOT8, OF_ | SF_ | AF_ | PF_, "bmi1"});
    t.push_back({ZYDIS_MNEMONIC_LZCNT, Form::RR, W_NOT8, OF_ | SF_ | AF_ | PF_, "lzcnt"});
    t.push_back({ZYDIS_MNEMONIC_POPCNT, Form::RR, W_NOT8, 0, "popcnt"});
    for (auto m : {ZYDIS_MNEMONIC_SETO, ZYDIS_MNEMONIC_SETNO, ZYDIS_MNEMONIC_SETB, ZYDIS_MNEMONIC_SETNB,
                   ZYDIS_MNEMONIC_SETZ, ZYDIS_MNEMONIC_SETNZ, ZYDIS_MNEMONIC_SETBE, ZYDIS_MNEMONIC_SETNBE,
                   ZYDIS_MNEMONIC_SETS, ZYDIS_MNEMONIC_SETNS, ZYDIS_MNEMONIC_SETP, ZYDIS_MNEMONIC_SETNP,
                   ZYDIS_MNEMONIC_SETL, ZYDIS_MNEMONIC_SETNL, ZYDIS_MNEMONIC_SETLE, ZYDIS_MNEMONIC_SETNLE}) {
        t.push_back({m, Form::R, 1, 0});
        t.push_back({m, Form::M, 1, 0});
    }
    for (auto m : {ZYDIS_MNEMONIC_CMOVO, ZYDIS_MNEMONIC_CMOVB, ZYDIS_MNEMONIC_CMOVZ, ZYDIS_MNEMONIC_CMOVBE,
                   ZYDIS_MNEMONIC_CMOVS, ZYDIS_MNEMONIC_CMOVP, ZYDIS_MNEMONIC_CMOVL, ZYDIS_MNEMONIC_CMOVLE,
                   ZYDIS_MNEMONIC_CMOVNLE, ZYDIS_MNEMONIC_CMOVNB}) {
        t.push_back({m, Form::RR, W_NOT8, 0});
        t.push_back({m, Form::RM, W_NOT8, 0});
    }
    t.push_back({ZYDIS_MNEMONIC_MOVZX, Form::RR8, W_NOT8, 0});
    t.push_back({ZYDIS_MNEMONIC_MOVSX, Form::RR8, W_NOT8, 0});
    t.push_back({ZYDIS_MNEMONIC_MOVZX, Form::RM8, W_NOT8, 0});
    t.push_back({ZYDIS_MNEMONIC_MOVSX, Form::RM8, W_NOT8, 0});
    t.push_back({ZYDIS_MNEMONIC_BSWAP, Form::R, W_48, 0});
    for (auto m : {ZYDIS_MNEMONIC_XCHG, ZYDIS_MNEMONIC_XADD, ZYDIS_MNEMONIC_CMPXCHG}) {
        t.push_back({m, Form::RR, W_ALL, 0});
        t.push_back({m, Form::MR, W_ALL, 0});
    }
    for (auto m : {ZYDIS_MNEMONIC_MOV}) {
        for (Form f : {Form::RR, Form::RI, Form::RM, Form::MR, Form::MI})
            t.push_back({m, f, W_ALL, 0});
    }
    t.push_back({ZYDIS_MNEMONIC_LEA, Form::RM, W_NOT8, 0});
    for (auto m : {ZYDIS_MNEMONIC_SHLD, ZYDIS_MNEMONIC_SHRD}) {
        t.push_back({m, Form::RRI, W_48, AF_ | OF_});
        t.push_back({m, Form::RRCL, W_48, AF_ | OF_});
    }
    for (auto m : {ZYDIS_MNEMONIC_CBW, ZYDIS_MNEMONIC_CWDE, ZYDIS_MNEMONIC_CDQE, ZYDIS_MNEMONIC_CWD,
                   ZYDIS_MNEMONIC_CDQ, ZYDIS_MNEMONIC_CQO, ZYDIS_MNEMONIC_CLC, ZYDIS_MNEMONIC_STC,
                   ZYDIS_MNEMONIC_CMC, ZYDIS_MNEMONIC_LAHF, ZYDIS_MNEMONIC_SAHF})
        t.push_back({m, Form::None, 8, 0});
    t.push_back({ZYDIS_MNEMONIC_PUSH, Form::R, 8, 0});
    t.push_back({ZYDIS_MNEMONIC_POP, Form::R, 8, 0});
    t.push_back({ZYDIS_MNEMONIC_PUSH, Form::M, 8, 0});
    // SSE family: executed on the host unit (engine/x86/hostexec).
    for (auto m : {ZYDIS_MNEMONIC_ADDPS, ZYDIS_MNEMONIC_ADDPD, ZYDIS_MNEMONIC_SUBPS, ZYDIS_MNEMONIC_MULPD,
                   ZYDIS_MNEMONIC_DIVPS, ZYDIS_MNEMONIC_MINPS, ZYDIS_MNEMONIC_MAXPD, ZYDIS_MNEMONIC_SQRTPS,
                   ZYDIS_MNEMONIC_ANDPS, ZYDIS_MNEMONIC_ORPD, ZYDIS_MNEMONIC_XORPS, ZYDIS_MNEMONIC_ADDSD,
                   ZYDIS_MNEMONIC_MULSS, ZYDIS_MNEMONIC_PADDB, ZYDIS_MNEMONIC_PADDQ, ZYDIS_MNEMONIC_PSUBW,
                   ZYDIS_MNEMONIC_PMULLW, ZYDIS_MNEMONIC_PMULUDQ, ZYDIS_MNEMONIC_PAND, ZYDIS_MNEMONIC_PXOR,
                   ZYDIS_MNEMONIC_PCMPEQB, ZYDIS_MNEMONIC_PCMPGTD, ZYDIS_MNEMONIC_PUNPCKLBW, ZYDIS_MNEMONIC_PACKSSWB,
                   ZYDIS_MNEMONIC_PMADDWD, ZYDIS_MNEMONIC_PAVGB, ZYDIS_MNEMONIC_PMINUB, ZYDIS_MNEMONIC_PMAXSW,
                   ZYDIS_MNEMONIC_CVTDQ2PS, ZYDIS_MNEMONIC_CVTPS2DQ, ZYDIS_MNEMONIC_CVTTPS2DQ,
                   ZYDIS_MNEMONIC_UNPCKLPS, ZYDIS_MNEMONIC_MOVAPS, ZYDIS_MNEMONIC_MOVDQU}) {
        t.push_back({m, Form::XX, 16, 0});
        t.push_back({m, Form::XM, 16, 0});
    }
    for (auto m : {ZYDIS_MNEMONIC_PSHUFD, ZYDIS_MNEMONIC_SHUFPS, ZYDIS_MNEMONIC_CMPPS})
        t.push_back({m, Form::XXI, 16, 0});
    for (auto m : {ZYDIS_MNEMONIC_PSLLW, ZYDIS_MNEMONIC_PSRLD, ZYDIS_MNEMONIC_PSRAW, ZYDIS_MNEMONIC_PSRLDQ})
        t.push_back({m, Form::XI, 16, 0});
    for (auto m : {ZYDIS_MNEMONIC_COMISD, ZYDIS_MNEMONIC_UCOMISS})
        t.push_back({m, Form::XX, 16, OF_ | SF_ | AF_});
    t.push_back({ZYDIS_MNEMONIC_CVTTSD2SI, Form::GX, 4 | 8, 0});
    t.push_back({ZYDIS_MNEMONIC_MOVMSKPS, Form::GX, 4, 0});
    t.push_back({ZYDIS_MNEMONIC_CVTSI2SD, Form::XG, 4 | 8, 0});
    t.push_back({ZYDIS_MNEMONIC_MOVQ, Form::XG, 8, 0});
    for (auto m : {ZYDIS_MNEMONIC_PSHUFB, ZYDIS_MNEMONIC_PABSD, ZYDIS_MNEMONIC_PHADDW})
        t.push_back({m, Form::XX, 16, 0, "ssse3"});
    t.push_back({ZYDIS_MNEMONIC_PALIGNR, Form::XXI, 16, 0, "ssse3"});
    for (auto m : {ZYDIS_MNEMONIC_PMULLD, ZYDIS_MNEMONIC_PMINSD, ZYDIS_MNEMONIC_PCMPEQQ, ZYDIS_MNEMONIC_PMAXUW})
        t.push_back({m, Form::XX, 16, 0, "sse4.1"});
    t.push_back({ZYDIS_MNEMONIC_PTEST, Form::XX, 16, OF_ | SF_ | AF_ | PF_, "sse4.1"});
    t.push_back({ZYDIS_MNEMONIC_ROUNDSD, Form::XXI, 16, 0, "sse4.1"});
    t.push_back({ZYDIS_MNEMONIC_PCMPGTQ, Form::XX, 16, 0, "sse4.2"});
    return t;
}

// Forms that exist only outside 64-bit mode.
std::vector<Template> compat_templates()
{
    return {{ZYDIS_MNEMONIC_DAA, Form::None, 4, OF_},
            {ZYDIS_MNEMONIC_DAS, Form::None, 4, OF_},
            {ZYDIS_MNEMONIC_AAA, Form::None, 4, OF_ | SF_ | ZF_ | PF_},
            {ZYDIS_MNEMONIC_AAS, Form::None, 4, OF_ | SF_ | ZF_ | PF_},
            {ZYDIS_MNEMONIC_AAM, Form::None, 4, OF_ | AF_ | CF_},
            {ZYDIS_MNEMONIC_AAD, Form::None, 4, OF_ | AF_ | CF_},
            {ZYDIS_MNEMONIC_PUSHAD, Form::None, 4, 0},
            {ZYDIS_MNEMONIC_POPAD, Form::None, 4, 0}};
}

bool host_has(const char* feature)
{
    if (!feature)
        return true;
    unsigned a, b, c, d;
    std::string f = feature;
    if (f == "popcnt" && __get_cpuid(1, &a, &b, &c, &d))
        return c & (1u << 23);
    if (f == "movbe" && __get_cpuid(1, &a, &b, &c, &d))
        return c & (1u << 22);
    if (f == "bmi1" && __get_cpuid_count(7, 0, &a, &b, &c, &d))
        return b & (1u << 3);
    if (f == "lzcnt" && __get_cpuid(0x80000001, &a, &b, &c, &d))
        return c & (1u << 5);
    if (f == "ssse3" && __get_cpuid(1, &a, &b, &c, &d))
        return c & (1u << 9);
    if (f == "sse4.1" && __get_cpuid(1, &a, &b, &c, &d))
        return c & (1u << 19);
    if (f == "sse4.2" && __get_cpuid(1, &a, &b, &c, &d))
        return c & (1u << 20);
    return false;
}

} // namespace

uint64_t Generator::value()
{
    static const uint64_t specials[] = {0, 1, 2, 0x7f, 0x80, 0xff, 0x7fff, 0x8000, 0xffff, 0x7fffffff, 0x80000000,
                                        0xffffffff, 0x7fffffffffffffffull, 0x8000000000000000ull, ~0ull, 63, 64, 31};
    switch (m_rng() % 4) {
    case 0:
        return specials[m_rng() % std::size(specials)];
    case 1:
        return m_rng() & 0xff;
    default:
        return m_rng();
    }
}

bool Generator::next(Case& c)
{
    static const std::vector<Template> all = templates();
    static const std::vector<Template> compat_only = compat_templates();
    const Template& t = m_compat && m_rng() % 8 == 0 ? compat_only[m_rng() % compat_only.size()]
                                                      : all[m_rng() % all.size()];
    if (!host_has(t.host_feature))
        return false;
    unsigned widths[5], nw = 0;
    for (unsigned w : {1u, 2u, 4u, 8u, 16u})
        if ((t.widths & w) && !(m_compat && w == 8 && t.form < Form::XX))
            widths[nw++] = w;
    if (nw == 0)
        return false;
    unsigned w = widths[m_rng() % nw];

    ZydisEncoderRequest req;
    memset(&req, 0, sizeof req);
    req.machine_mode = ZYDIS_MACHINE_MODE_LONG_64;
    req.mnemonic = t.mnemonic;
    auto reg = [&](unsigned bytes) {
        ZydisEncoderOperand o{};
        o.type = ZYDIS_OPERAND_TYPE_REGISTER;
        // In compatibility mode only the first eight registers exist.
        ZydisRegister r;
        do
            r = k_gpr64[m_rng() % std::size(k_gpr64)];
        while (m_compat && r >= ZYDIS_REGISTER_R8);
        o.reg.value = sized(r, bytes);
        return o;
    };
    auto mem = [&](unsigned bytes) {
        ZydisEncoderOperand o{};
        o.type = ZYDIS_OPERAND_TYPE_MEMORY;
        o.mem.base = m_compat ? ZYDIS_REGISTER_EBX : ZYDIS_REGISTER_RBX;
        o.mem.displacement = int64_t(m_rng() % 64) * 8 - 128 + int64_t(m_rng() % 8);
        o.mem.size = uint16_t(bytes);
        return o;
    };
    auto imm = [&](unsigned bytes) {
        ZydisEncoderOperand o{};
        o.type = ZYDIS_OPERAND_TYPE_IMMEDIATE;
        uint64_t v = value();
        o.imm.u = bytes >= 4 ? uint64_t(int64_t(int32_t(v))) : v & ((1ull << (8 * bytes)) - 1);
        return o;
    };
    auto xmm = [&]() {
        ZydisEncoderOperand o{};
        o.type = ZYDIS_OPERAND_TYPE_REGISTER;
        o.reg.value = ZydisRegister(ZYDIS_REGISTER_XMM0 + m_rng() % (m_compat ? 8 : 16));
        return o;
    };
    auto xmem = [&]() {
        ZydisEncoderOperand o{};
        o.type = ZYDIS_OPERAND_TYPE_MEMORY;
        o.mem.base = m_compat ? ZYDIS_REGISTER_EBX : ZYDIS_REGISTER_RBX;
        // Mostly aligned (legacy SSE requires it); sometimes not, to see #GP.
        o.mem.displacement = int64_t(m_rng() % 16) * 16 - 128 + (m_rng() % 8 == 0 ? 8 : 0);
        o.mem.size = 16;
        return o;
    };
    auto cl = [] {
        ZydisEncoderOperand o{};
        o.type = ZYDIS_OPERAND_TYPE_REGISTER;
        o.reg.value = ZYDIS_REGISTER_CL;
        return o;
    };
    auto& ops = req.operands;
    switch (t.form) {
    case Form::RR:
        ops[0] = reg(w);
        ops[1] = reg(w);
        req.operand_count = 2;
        break;
    case Form::RI:
        ops[0] = reg(w);
        ops[1] = imm(t.mnemonic >= ZYDIS_MNEMONIC_BT && t.mnemonic <= ZYDIS_MNEMONIC_BTS ? 1 : w);
        if (t.mnemonic == ZYDIS_MNEMONIC_SHL || t.mnemonic == ZYDIS_MNEMONIC_SHR || t.mnemonic == ZYDIS_MNEMONIC_SAR ||
            t.mnemonic == ZYDIS_MNEMONIC_ROL || t.mnemonic == ZYDIS_MNEMONIC_ROR || t.mnemonic == ZYDIS_MNEMONIC_RCL ||
            t.mnemonic == ZYDIS_MNEMONIC_RCR || t.mnemonic == ZYDIS_MNEMONIC_BT || t.mnemonic == ZYDIS_MNEMONIC_BTS ||
            t.mnemonic == ZYDIS_MNEMONIC_BTR || t.mnemonic == ZYDIS_MNEMONIC_BTC)
            ops[1].imm.u &= 0xff;
        req.operand_count = 2;
        break;
    case Form::RM:
        ops[0] = reg(w);
        ops[1] = mem(w);
        req.operand_count = 2;
        break;
    case Form::MR:
        ops[0] = mem(w);
        ops[1] = reg(w);
        req.operand_count = 2;
        break;
    case Form::MI:
        ops[0] = mem(w);
        ops[1] = imm(t.mnemonic >= ZYDIS_MNEMONIC_BT && t.mnemonic <= ZYDIS_MNEMONIC_BTS ? 1 : w);
        if (t.mnemonic >= ZYDIS_MNEMONIC_BT && t.mnemonic <= ZYDIS_MNEMONIC_BTS)
            ops[1].imm.u &= 0xff;
        req.operand_count = 2;
        break;
    case Form::R:
        ops[0] = reg(w);
        req.operand_count = 1;
        break;
    case Form::M:
        ops[0] = mem(w);
        req.operand_count = 1;
        break;
    case Form::R1:
        ops[0] = reg(w);
        ops[1].type = ZYDIS_OPERAND_TYPE_IMMEDIATE;
        ops[1].imm.u = 1;
        req.operand_count = 2;
        break;
    case Form::RCL:
        ops[0] = reg(w);
        ops[1] = cl();
        req.operand_count = 2;
        break;
    case Form::MCL:
        ops[0] = mem(w);
        ops[1] = cl();
        req.operand_count = 2;
        break;
    case Form::RRI:
        ops[0] = reg(w);
        ops[1] = reg(w);
        ops[2] = imm(t.mnemonic == ZYDIS_MNEMONIC_IMUL ? w : 1);
        if (t.mnemonic != ZYDIS_MNEMONIC_IMUL)
            ops[2].imm.u &= 0xff;
        req.operand_count = 3;
        break;
    case Form::RMI:
        ops[0] = reg(w);
        ops[1] = mem(w);
        ops[2] = imm(w);
        req.operand_count = 3;
        break;
    case Form::RRCL:
        ops[0] = reg(w);
        ops[1] = reg(w);
        ops[2] = cl();
        req.operand_count = 3;
        break;
    case Form::RR8:
    case Form::RM8: {
        unsigned src = (w > 2 && m_rng() % 2) ? 2 : 1;
        ops[0] = reg(w);
        ops[1] = t.form == Form::RR8 ? reg(src) : mem(src);
        req.operand_count = 2;
        break;
    }
    case Form::None:
        req.operand_count = 0;
        break;
    case Form::XX:
        ops[0] = xmm();
        ops[1] = xmm();
        req.operand_count = 2;
        break;
    case Form::XM:
        ops[0] = xmm();
        ops[1] = xmem();
        req.operand_count = 2;
        break;
    case Form::XXI:
    case Form::XMI:
        ops[0] = xmm();
        ops[1] = t.form == Form::XXI ? xmm() : xmem();
        ops[2] = imm(1);
        ops[2].imm.u &= t.mnemonic == ZYDIS_MNEMONIC_CMPPS ? 7 : t.mnemonic == ZYDIS_MNEMONIC_ROUNDSD ? 15 : 0xff;
        req.operand_count = 3;
        break;
    case Form::XI:
        ops[0] = xmm();
        ops[1] = imm(1);
        ops[1].imm.u &= 0x3f;
        req.operand_count = 2;
        break;
    case Form::GX:
        ops[0] = reg(w);
        ops[1] = xmm();
        req.operand_count = 2;
        break;
    case Form::XG:
        ops[0] = xmm();
        ops[1] = reg(w);
        req.operand_count = 2;
        break;
    }
    // AH..BH cannot be encoded with REX: the encoder picks SPL etc. instead,
    // which is fine; byte registers beyond are fine too.
    // Locked forms of the read-modify-write instructions, half the time.
    bool lockable = (t.form == Form::MR || t.form == Form::MI || t.form == Form::M) &&
                    t.mnemonic != ZYDIS_MNEMONIC_CMP && t.mnemonic != ZYDIS_MNEMONIC_TEST &&
                    t.mnemonic != ZYDIS_MNEMONIC_MOV && t.mnemonic != ZYDIS_MNEMONIC_XCHG &&
                    t.mnemonic != ZYDIS_MNEMONIC_PUSH && t.mnemonic != ZYDIS_MNEMONIC_BT &&
                    !(t.mnemonic >= ZYDIS_MNEMONIC_SETB && t.mnemonic <= ZYDIS_MNEMONIC_SETZ) &&
                    t.mnemonic != ZYDIS_MNEMONIC_MUL && t.mnemonic != ZYDIS_MNEMONIC_IMUL &&
                    t.mnemonic != ZYDIS_MNEMONIC_DIV && t.mnemonic != ZYDIS_MNEMONIC_IDIV &&
                    t.mnemonic != ZYDIS_MNEMONIC_SHL && t.mnemonic != ZYDIS_MNEMONIC_SHR &&
                    t.mnemonic != ZYDIS_MNEMONIC_SAR && t.mnemonic != ZYDIS_MNEMONIC_ROL &&
                    t.mnemonic != ZYDIS_MNEMONIC_ROR && t.mnemonic != ZYDIS_MNEMONIC_RCL &&
                    t.mnemonic != ZYDIS_MNEMONIC_RCR;
    if (lockable && m_rng() % 2)
        req.prefixes |= ZYDIS_ATTRIB_HAS_LOCK;
    if (m_compat) {
        req.machine_mode = ZYDIS_MACHINE_MODE_LONG_COMPAT_32;
        // push/pop of a register: 32-bit in this mode.
        if (t.mnemonic == ZYDIS_MNEMONIC_PUSH || t.mnemonic == ZYDIS_MNEMONIC_POP) {
            if (t.form == Form::R)
                ops[0].reg.value = sized(ZydisRegister(ZydisRegisterGetLargestEnclosing(ZYDIS_MACHINE_MODE_LONG_64,
                                                                                        ops[0].reg.value)),
                                         4);
            else
                ops[0].mem.size = 4;
        }
    }
    uint8_t buf[ZYDIS_MAX_INSTRUCTION_LENGTH];
    ZyanUSize len = sizeof buf;
    if (!ZYAN_SUCCESS(ZydisEncoderEncodeInstruction(&req, buf, &len)))
        return false;
    c.code.assign(buf, buf + len);
    c.compat = m_compat;
    ZydisDisassembledInstruction dis;
    if (ZYAN_SUCCESS(ZydisDisassembleIntel(m_compat ? ZYDIS_MACHINE_MODE_LONG_COMPAT_32 : ZYDIS_MACHINE_MODE_LONG_64,
                                           0, buf, len, &dis)))
        c.text = dis.text;
    c.undefined_flags = t.undefined;
    c.sse = t.form >= Form::XX;
    // Shifts by one define OF.
    if ((t.mnemonic == ZYDIS_MNEMONIC_SHL || t.mnemonic == ZYDIS_MNEMONIC_SHR || t.mnemonic == ZYDIS_MNEMONIC_SAR) &&
        t.form == Form::R1)
        c.undefined_flags &= ~OF_;

    for (auto& r : c.in.regs)
        r = value();
    c.in.regs[RSP] = k_stack_top;
    c.in.regs[RBX] = k_data + 0x100 + (m_rng() % 32) * 8;
    // Keep the flags the instruction may read realistic: arithmetic bits only.
    c.in.flags = 2 | (m_rng() & (CF | PF | AF | ZF | SF | OF));
    for (auto& b : c.in.data)
        b = uint8_t(m_rng());
    // x87/SSE as after FNINIT (everything masked), XMM registers random with
    // some special floating-point values mixed in.
    memset(c.in.fx, 0, sizeof c.in.fx);
    uint16_t fcw = 0x037f;
    uint32_t mxcsr = 0x1f80 | (m_rng() % 4 == 0 ? 0x6000 : 0); // sometimes round toward zero
    uint32_t mxcsr_mask = 0xffff;
    memcpy(c.in.fx, &fcw, 2);
    memcpy(c.in.fx + 24, &mxcsr, 4);
    memcpy(c.in.fx + 28, &mxcsr_mask, 4);
    static const uint64_t fp_specials[] = {0x7ff8000000000000ull, 0x7ff0000000000000ull, 0x8000000000000000ull,
                                           0x0000000000000001ull, 0x3ff0000000000000ull, 0x7fc000007f800000ull,
                                           0x00000001ff800000ull};
    for (int i = 0; i < 32; i++) {
        uint64_t v = m_rng() % 5 == 0 ? fp_specials[m_rng() % std::size(fp_specials)] : value();
        memcpy(c.in.fx + 160 + 8 * i, &v, 8);
    }
    return true;
}

// --- native -------------------------------------------------------------------

Outcome run_native(const Case& c)
{
    // The harness: save the host stack, load the case's state, run the
    // instruction, store the state, return. Absolute addresses in the data area.
    // Compatibility-mode code must sit below 4 GiB: the harness lives in a
    // MAP_32BIT page, reused for every case.
    static uint8_t* low_page = static_cast<uint8_t*>(mmap(nullptr, 8192, PROT_READ | PROT_WRITE | PROT_EXEC,
                                                          MAP_PRIVATE | MAP_ANONYMOUS | MAP_32BIT, -1, 0));
    Xbyak::CodeGenerator gen(4096, c.compat ? low_page : nullptr);
    using namespace Xbyak::util;
    // xbyak wants the moffs form for rax with an absolute address: encode
    // "mov rax, [abs32]" / "mov [abs32], rax" by hand (ModRM 04, SIB 25).
    auto rax_abs = [&](bool load, uint64_t addr) {
        uint8_t insn[8] = {0x48, uint8_t(load ? 0x8b : 0x89), 0x04, 0x25};
        uint32_t a = uint32_t(addr);
        memcpy(insn + 4, &a, 4);
        gen.db(insn, 8);
    };
    // The caller's callee-saved registers survive the case.
    const Xbyak::Reg64 saved[] = {rbx, rbp, r12, r13, r14, r15};
    for (auto& r : saved)
        gen.push(r);
    gen.mov(rax, k_save);
    gen.mov(qword[rax], rsp);
    if (c.compat) {
        // 64-bit processes run with null DS/ES; 32-bit code needs real ones
        // (the kernel's user data segment).
        gen.mov(eax, 0x2b);
        gen.mov(ds, ax);
        gen.mov(es, ax);
    }
    gen.mov(rax, k_fx_in);
    gen.fxrstor(ptr[rax]);
    rax_abs(true, k_in + 16 * 8);
    gen.push(rax);
    gen.popfq();
    const Xbyak::Reg64 regs[16] = {rax, rcx, rdx, rbx, rsp, rbp, rsi, rdi, r8, r9, r10, r11, r12, r13, r14, r15};
    for (int i = 1; i < 16; i++)
        gen.mov(regs[i], qword[reinterpret_cast<void*>(k_in + 8 * i)]);
    rax_abs(true, k_in);
    uint64_t code32_at = 0;
    if (!c.compat) {
        gen.db(c.code.data(), c.code.size());
    } else {
        // jmp far [abs k_far] (m16:32) into 32-bit code at selector 0x23 (the
        // kernel's 32-bit user code segment), run the instruction, jmp far
        // 0x33:back into 64-bit code.
        uint8_t jmp_far[] = {0xff, 0x2c, 0x25, 0, 0, 0, 0};
        uint32_t far_ptr = uint32_t(k_save + 16);
        memcpy(jmp_far + 3, &far_ptr, 4);
        gen.db(jmp_far, sizeof jmp_far);
        code32_at = uint64_t(gen.getCurr());
        gen.db(c.code.data(), c.code.size());
        uint64_t back = uint64_t(gen.getCurr()) + 7;
        uint8_t jmp_back[7] = {0xea};
        uint32_t back32 = uint32_t(back);
        memcpy(jmp_back + 1, &back32, 4);
        jmp_back[5] = 0x33;
        jmp_back[6] = 0;
        gen.db(jmp_back, sizeof jmp_back);
    }
    rax_abs(false, k_out);
    for (int i = 1; i < 16; i++)
        gen.mov(qword[reinterpret_cast<void*>(k_out + 8 * i)], regs[i]);
    gen.mov(rsp, qword[reinterpret_cast<void*>(k_save)]);
    gen.mov(rax, k_fx_out);
    gen.db(0x0f);
    gen.db(0xae);
    gen.db(0x00); // fxsave [rax]
    gen.pushfq();
    gen.pop(rax);
    rax_abs(false, k_out + 16 * 8);
    if (c.compat) { // after the flags were saved: xor changes them
        gen.xor_(eax, eax);
        gen.mov(ds, ax);
        gen.mov(es, ax);
    }
    for (int i = 5; i >= 0; i--)
        gen.pop(saved[i]);
    gen.ret();
    if (!c.compat)
        gen.setProtectModeRE();

    // One page the child and the parent share for the result.
    auto* shared = static_cast<uint8_t*>(
        mmap(nullptr, k_region, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0));
    Outcome out;
    pid_t pid = fork();
    if (pid == 0) {
        // Faults must kill the child so the parent sees the signal (test
        // frameworks install handlers of their own).
        for (int sig : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP})
            signal(sig, SIG_DFL);
        void* area = mmap(reinterpret_cast<void*>(k_data), k_region, PROT_READ | PROT_WRITE,
                          MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
        if (area != reinterpret_cast<void*>(k_data))
            _exit(99);
        memcpy(area, c.in.data, k_data_size);
        memcpy(static_cast<uint8_t*>(area) + 0x2000, c.in.regs, 16 * 8);
        memcpy(static_cast<uint8_t*>(area) + 0x2000 + 16 * 8, &c.in.flags, 8);
        memcpy(static_cast<uint8_t*>(area) + 0x2400, c.in.fx, 512);
        if (c.compat) {
            uint32_t target = uint32_t(code32_at);
            uint16_t selector = 0x23;
            memcpy(static_cast<uint8_t*>(area) + (k_save + 16 - k_data), &target, 4);
            memcpy(static_cast<uint8_t*>(area) + (k_save + 20 - k_data), &selector, 2);
        }
        auto fn = reinterpret_cast<void (*)()>(const_cast<uint8_t*>(gen.getCode()));
        fn();
        memcpy(shared, area, k_region);
        _exit(0);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    if (WIFSIGNALED(status)) {
        out.faulted = true;
        out.fault = WTERMSIG(status);
    } else if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        memcpy(out.out.data, shared, k_data_size);
        memcpy(out.out.regs, shared + 0x2100, 16 * 8);
        memcpy(&out.out.flags, shared + 0x2100 + 16 * 8, 8);
        memcpy(out.out.fx, shared + 0x2600, 512);
    } else {
        out.faulted = true;
        out.fault = -WEXITSTATUS(status);
    }
    munmap(shared, k_region);
    return out;
}

// --- engine -------------------------------------------------------------------

Outcome run_engine(const Case& c)
{
    test::TestBus bus;
    Vcpu cpu(bus, *find_cpu_model("max"));
    test::enter_long_mode(cpu, bus);
    CpuState& s = cpu.state();
    bus.write(k_data, c.in.data, k_data_size);
    std::vector<uint8_t> code = c.code;
    code.push_back(0xf4); // hlt
    bus.write(test::k_code, code.data(), code.size());
    memcpy(s.regs, c.in.regs, sizeof s.regs);
    write_eflags(s, c.in.flags, ARITH_FLAGS);
    memcpy(s.fx, c.in.fx, sizeof s.fx);
    if (c.compat) {
        load_segment_cache(s.seg[CS], 0x30, 0x00cf9a000000ffffull); // 32-bit code, long mode stays on
        update_hflags(s);
    }
    s.rip = test::k_code;
    Outcome out;
    VcpuExit exit = cpu.run(1000);
    int vector = test::halted_in_stub(cpu);
    if (exit != VcpuExit::Halted || vector >= 0) {
        out.faulted = true;
        out.fault = exit == VcpuExit::Halted ? vector : -1;
        return out;
    }
    memcpy(out.out.regs, s.regs, sizeof s.regs);
    out.out.flags = read_eflags(s);
    memcpy(out.out.fx, s.fx, sizeof s.fx);
    for (size_t i = 0; i < k_data_size; i++) {
        bool w;
        uint64_t gpa = k_data + i;
        out.out.data[i] = bus.ram_page(gpa, w)[gpa & 0xfff];
    }
    return out;
}

// --- comparison ---------------------------------------------------------------

std::string compare(const Case& c, const Outcome& native, const Outcome& engine)
{
    std::string diff;
    static const char* names[16] = {"rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi",
                                    "r8",  "r9",  "r10", "r11", "r12", "r13", "r14", "r15"};
    if (native.faulted || engine.faulted) {
        // Signals as the host reports the vectors: #DE SIGFPE, #UD SIGILL,
        // #GP/#PF/#SS SIGSEGV (or SIGBUS).
        auto signal_of = [](int vector) {
            switch (vector) {
            case 0:
                return SIGFPE;
            case 6:
                return SIGILL;
            case 3:
            case 1:
                return SIGTRAP;
            default:
                return SIGSEGV;
            }
        };
        if (native.faulted != engine.faulted)
            diff += fmt::format("  fault: native {} ({}), engine {} (vector {})\n", native.faulted,
                                native.faulted ? strsignal(native.fault) : "-", engine.faulted, engine.fault);
        else if (signal_of(engine.fault) != native.fault && !(native.fault == SIGBUS && engine.fault == 13))
            diff += fmt::format("  fault: native {}, engine vector {}\n", strsignal(native.fault), engine.fault);
    } else {
        // In compatibility mode only the low halves are defined.
        uint64_t reg_mask = c.compat ? 0xffffffffull : ~0ull;
        for (int i = 0; i < 16; i++)
            if ((native.out.regs[i] ^ engine.out.regs[i]) & reg_mask)
                diff += fmt::format("  {}: native {:#x}, engine {:#x} (was {:#x})\n", names[i], native.out.regs[i],
                                    engine.out.regs[i], c.in.regs[i]);
        uint64_t care = ARITH_FLAGS & ~c.undefined_flags;
        if ((native.out.flags ^ engine.out.flags) & care)
            diff += fmt::format("  flags: native {:#x}, engine {:#x} (was {:#x}, compared {:#x})\n",
                                native.out.flags & care, engine.out.flags & care, c.in.flags, care);
        if (c.sse) {
            for (int x = 0; x < 16; x++)
                if (memcmp(native.out.fx + 160 + 16 * x, engine.out.fx + 160 + 16 * x, 16) != 0) {
                    uint64_t n[2], e2[2];
                    memcpy(n, native.out.fx + 160 + 16 * x, 16);
                    memcpy(e2, engine.out.fx + 160 + 16 * x, 16);
                    diff += fmt::format("  xmm{}: native {:016x}{:016x}, engine {:016x}{:016x}\n", x, n[1], n[0], e2[1],
                                        e2[0]);
                }
            if (memcmp(native.out.fx + 24, engine.out.fx + 24, 4) != 0)
                diff += "  mxcsr differs\n";
        }
        for (size_t i = 0; i < k_data_size; i++)
            if (native.out.data[i] != engine.out.data[i]) {
                diff += fmt::format("  memory {:#x}: native {:#04x}, engine {:#04x}\n", k_data + i,
                                    native.out.data[i], engine.out.data[i]);
                break;
            }
    }
    if (diff.empty())
        return diff;
    std::string bytes;
    for (uint8_t b : c.code)
        bytes += fmt::format("{:02x} ", b);
    return fmt::format("{}{} [{}]\n{}", c.compat ? "(32-bit) " : "", c.text, bytes, diff);
}

bool native_compat_mode_works()
{
    Case c;
    c.code = {0x90}; // nop
    c.text = "nop";
    c.compat = true;
    c.in.regs[4] = k_stack_top;
    return !run_native(c).faulted;
}

} // namespace emu::difftest
