#include "engine/x86/hostexec.h"

#include "common/log.h"
#include "engine/x86/env.h"
#include "engine/x86/flags.h"
#include "engine/x86/frontend_internal.h"

#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <xbyak/xbyak.h>

namespace emu::x86 {

namespace {

// The context a thunk works on (its only argument).
struct alignas(64) Context {
    uint8_t guest_fx[512]; // the guest's x87/SSE state (FXSAVE image)
    uint8_t host_fx[512];  // the host's, saved around the instruction
    uint8_t mem[1024];     // the memory operand
    uint64_t gprs[16];     // general registers the instruction names
    uint64_t flags;        // RFLAGS after the instruction
    uint32_t scratch[4];
};
constexpr size_t OFF_GUEST = offsetof(Context, guest_fx), OFF_HOST = offsetof(Context, host_fx),
                 OFF_MEM = offsetof(Context, mem), OFF_GPRS = offsetof(Context, gprs),
                 OFF_FLAGS = offsetof(Context, flags), OFF_SCRATCH = offsetof(Context, scratch);

struct Entry {
    HostInsn info;
    std::unique_ptr<Xbyak::CodeGenerator> code;
};

std::mutex g_mutex;
std::map<std::string, std::unique_ptr<Entry>> g_cache;

// fxsave (/0) or fxrstor (/1) at [base + disp32], base one of r8..r15.
void emit_fx(Xbyak::CodeGenerator& g, unsigned reg_field, unsigned base, uint32_t disp)
{
    g.db(0x41); // REX.B
    g.db(0x0f);
    g.db(0xae);
    g.db(0x80 | (reg_field << 3) | (base & 7));
    if ((base & 7) == 4)
        g.db(0x24); // r12 needs a SIB byte
    g.dd(disp);
}

// Instructions that need 16-byte aligned memory in their legacy SSE form.
bool unaligned_ok(ZydisMnemonic m)
{
    switch (m) {
    case ZYDIS_MNEMONIC_MOVUPS:
    case ZYDIS_MNEMONIC_MOVUPD:
    case ZYDIS_MNEMONIC_MOVDQU:
    case ZYDIS_MNEMONIC_LDDQU:
    case ZYDIS_MNEMONIC_PCMPESTRI:
    case ZYDIS_MNEMONIC_PCMPESTRM:
    case ZYDIS_MNEMONIC_PCMPISTRI:
    case ZYDIS_MNEMONIC_PCMPISTRM:
    case ZYDIS_MNEMONIC_MASKMOVDQU:
        return true;
    default:
        return false;
    }
}

bool is_state_op(ZydisMnemonic m)
{
    switch (m) {
    case ZYDIS_MNEMONIC_FXSAVE:
    case ZYDIS_MNEMONIC_FXSAVE64:
    case ZYDIS_MNEMONIC_FXRSTOR:
    case ZYDIS_MNEMONIC_FXRSTOR64:
    case ZYDIS_MNEMONIC_FNSTCW:
    case ZYDIS_MNEMONIC_FLDCW:
    case ZYDIS_MNEMONIC_FNSTENV:
    case ZYDIS_MNEMONIC_FLDENV:
    case ZYDIS_MNEMONIC_FNSAVE:
    case ZYDIS_MNEMONIC_FRSTOR:
    case ZYDIS_MNEMONIC_FNSTSW:
    case ZYDIS_MNEMONIC_STMXCSR:
    case ZYDIS_MNEMONIC_LDMXCSR:
    case ZYDIS_MNEMONIC_FNCLEX:
    case ZYDIS_MNEMONIC_FNINIT:
    case ZYDIS_MNEMONIC_EMMS:
    case ZYDIS_MNEMONIC_FWAIT:
        return true;
    default:
        return false;
    }
}

} // namespace

bool host_executable(const ZydisDecodedInstruction& insn)
{
    if (insn.encoding != ZYDIS_INSTRUCTION_ENCODING_LEGACY && insn.encoding != ZYDIS_INSTRUCTION_ENCODING_3DNOW)
        return false; // VEX/EVEX: AVX is not advertised
    switch (insn.meta.isa_ext) {
    case ZYDIS_ISA_EXT_X87:
    case ZYDIS_ISA_EXT_MMX:
    case ZYDIS_ISA_EXT_SSE:
    case ZYDIS_ISA_EXT_SSE2:
    case ZYDIS_ISA_EXT_SSE3:
    case ZYDIS_ISA_EXT_SSSE3:
    case ZYDIS_ISA_EXT_SSE4:
        return true;
    default:
        return insn.meta.isa_set == ZYDIS_ISA_SET_FXSAVE || insn.meta.isa_set == ZYDIS_ISA_SET_FXSAVE64;
    }
}

const HostInsn* host_insn(const ZydisDecodedInstruction& insn, const ZydisDecodedOperand* ops)
{
    std::string key(reinterpret_cast<const char*>(&insn.machine_mode), sizeof insn.machine_mode);
    // The form: mnemonic, operands and sizes; encoding bytes identify it well.
    ZydisEncoderRequest req;
    if (!ZYAN_SUCCESS(ZydisEncoderDecodedInstructionToEncoderRequest(&insn, ops, insn.operand_count_visible, &req)))
        return nullptr;
    req.machine_mode = ZYDIS_MACHINE_MODE_LONG_64;
    req.prefixes &= ~ZydisInstructionAttributes(ZYDIS_ATTRIB_HAS_SEGMENT | ZYDIS_ATTRIB_HAS_LOCK);

    HostInsn info;
    info.name = ZydisMnemonicGetString(insn.mnemonic);
    info.x87 = insn.meta.isa_ext == ZYDIS_ISA_EXT_X87;
    info.sse = !info.x87 && insn.meta.isa_ext != ZYDIS_ISA_EXT_MMX;
    info.state_op = is_state_op(insn.mnemonic);
    if (insn.mnemonic == ZYDIS_MNEMONIC_LDMXCSR)
        info.mxcsr_offset = 0;
    if (insn.mnemonic == ZYDIS_MNEMONIC_FXRSTOR || insn.mnemonic == ZYDIS_MNEMONIC_FXRSTOR64)
        info.mxcsr_offset = 24;
    // Registers the instruction names, explicitly or not; the thunk's own
    // context register must be none of them.
    for (unsigned i = 0; i < insn.operand_count; i++) {
        const ZydisDecodedOperand& o = ops[i];
        if (o.type == ZYDIS_OPERAND_TYPE_REGISTER) {
            GprRef r = gpr_ref(o.reg.value);
            if (r.index >= 0 && r.index != RSP) {
                info.gpr_mask |= 1u << r.index;
                if (o.actions & ZYDIS_OPERAND_ACTION_MASK_WRITE)
                    info.gpr_written |= 1u << r.index;
            }
        } else if (o.type == ZYDIS_OPERAND_TYPE_MEMORY && o.visibility == ZYDIS_OPERAND_VISIBILITY_EXPLICIT) {
            info.mem_bytes = o.size / 8;
            info.mem_read = o.actions & ZYDIS_OPERAND_ACTION_MASK_READ;
            info.mem_write = o.actions & ZYDIS_OPERAND_ACTION_MASK_WRITE;
            if (info.sse && info.mem_bytes == 16 && !unaligned_ok(insn.mnemonic))
                info.mem_align = 16;
            if (insn.meta.isa_set == ZYDIS_ISA_SET_FXSAVE || insn.meta.isa_set == ZYDIS_ISA_SET_FXSAVE64) {
                info.mem_bytes = 512;
                info.mem_align = 16;
            }
        }
    }
    if (info.mem_bytes > int(sizeof(Context::mem)))
        return nullptr;
    if (insn.cpu_flags)
        info.flags_modified = (insn.cpu_flags->modified | insn.cpu_flags->set_0 | insn.cpu_flags->set_1 |
                               insn.cpu_flags->undefined) &
                              ARITH_FLAGS;
    const ZydisRegister ctx_choices[] = {ZYDIS_REGISTER_R15, ZYDIS_REGISTER_R14, ZYDIS_REGISTER_R13, ZYDIS_REGISTER_R12};
    ZydisRegister ctx_reg = ZYDIS_REGISTER_NONE;
    for (ZydisRegister c : ctx_choices)
        if (!(info.gpr_mask & (1u << (c - ZYDIS_REGISTER_RAX)))) {
            ctx_reg = c;
            break;
        }
    for (unsigned i = 0; i < req.operand_count; i++) {
        auto& o = req.operands[i];
        if (o.type == ZYDIS_OPERAND_TYPE_MEMORY) {
            o.mem.base = ctx_reg;
            o.mem.index = ZYDIS_REGISTER_NONE;
            o.mem.scale = 0;
            o.mem.displacement = OFF_MEM;
        }
    }
    req.address_size_hint = ZYDIS_ADDRESS_SIZE_HINT_NONE;
    uint8_t encoded[ZYDIS_MAX_INSTRUCTION_LENGTH];
    ZyanUSize len = sizeof encoded;
    if (!ZYAN_SUCCESS(ZydisEncoderEncodeInstruction(&req, encoded, &len))) {
        log_warn("x86: {} cannot be re-encoded for host execution: raising #UD", info.name);
        return nullptr;
    }
    key.append(reinterpret_cast<const char*>(encoded), len);

    std::lock_guard lock(g_mutex);
    auto found = g_cache.find(key);
    if (found != g_cache.end())
        return &found->second->info;

    auto entry = std::make_unique<Entry>();
    auto gen = std::make_unique<Xbyak::CodeGenerator>(4096);
    using namespace Xbyak::util;
    const Xbyak::Reg64 regs[16] = {rax, rcx, rdx, rbx, rsp, rbp, rsi, rdi, r8, r9, r10, r11, r12, r13, r14, r15};
    const Xbyak::Reg64 ctx = regs[ctx_reg - ZYDIS_REGISTER_RAX];
    // Callee-saved registers of the host ABI, then the context register.
    const Xbyak::Reg64 saved[] = {rbx, rbp, r12, r13, r14, r15};
    for (auto& r : saved)
        gen->push(r);
    gen->mov(ctx, rdi);
    unsigned ctx_index = ctx_reg - ZYDIS_REGISTER_RAX;
    emit_fx(*gen, 0, ctx_index, OFF_HOST);  // fxsave: the host's state
    emit_fx(*gen, 1, ctx_index, OFF_GUEST); // fxrstor: the guest's
    if (!info.state_op) {
        // Every exception masked on the host; the helper decides what the guest sees.
        gen->stmxcsr(ptr[ctx + OFF_SCRATCH]);
        gen->or_(dword[ctx + OFF_SCRATCH], 0x1f80);
        gen->ldmxcsr(ptr[ctx + OFF_SCRATCH]);
        gen->fnstcw(ptr[ctx + OFF_SCRATCH + 4]);
        gen->or_(word[ctx + OFF_SCRATCH + 4], 0x3f);
        gen->fldcw(ptr[ctx + OFF_SCRATCH + 4]);
    }
    for (int r = 0; r < 16; r++)
        if (info.gpr_mask & (1u << r))
            gen->mov(regs[r], qword[ctx + OFF_GPRS + 8 * r]);
    gen->db(encoded, len);
    gen->pushfq();
    gen->pop(qword[ctx + OFF_FLAGS]);
    for (int r = 0; r < 16; r++)
        if (info.gpr_mask & (1u << r))
            gen->mov(qword[ctx + OFF_GPRS + 8 * r], regs[r]);
    emit_fx(*gen, 0, ctx_index, OFF_GUEST);
    emit_fx(*gen, 1, ctx_index, OFF_HOST);
    for (int i = 5; i >= 0; i--)
        gen->pop(saved[i]);
    gen->ret();
    gen->setProtectModeRE();
    entry->info = info;
    entry->info.thunk = reinterpret_cast<void (*)(void*)>(const_cast<uint8_t*>(gen->getCode()));
    entry->code = std::move(gen);
    const HostInsn* result = &entry->info;
    g_cache.emplace(std::move(key), std::move(entry));
    return result;
}

uint64_t host_execute(CpuEnv& env, const HostInsn& hi, uint64_t address)
{
    CpuState& s = env.s;
    // Availability: EM makes x87 fault with #NM and SSE with #UD; TS makes both #NM.
    if (hi.x87 && (s.cr0 & CR0_EM)) {
        env.raise(7);
        return 0;
    }
    if (hi.sse && ((s.cr0 & CR0_EM) || !(s.cr4 & CR4_OSFXSR))) {
        env.raise(6);
        return 0;
    }
    if (s.cr0 & CR0_TS) {
        env.raise(7);
        return 0;
    }
    static thread_local Context ctx;
    if (hi.mem_bytes) {
        if (hi.mem_align && (address & (hi.mem_align - 1))) {
            env.raise(13, true, 0);
            return 0;
        }
        if (hi.mem_write) {
            // Both ends must be writable before anything changes.
            uint64_t gpa;
            if (!env.mmu.translate(address, Access::Write, gpa) ||
                !env.mmu.translate(address + hi.mem_bytes - 1, Access::Write, gpa))
                return 0;
        }
        if (hi.mem_read) {
            for (int off = 0; off < hi.mem_bytes; off += 8) {
                unsigned n = std::min(8, hi.mem_bytes - off);
                uint64_t v;
                if (!env.mmu.load(address + off, n, v))
                    return 0;
                memcpy(ctx.mem + off, &v, n);
            }
        }
    }
    if (hi.mxcsr_offset >= 0) {
        // A reserved MXCSR bit would fault on the host: it is the guest's #GP.
        uint32_t m;
        memcpy(&m, ctx.mem + hi.mxcsr_offset, 4);
        if (m & ~0xffffu) {
            env.raise(13, true, 0);
            return 0;
        }
    }
    memcpy(ctx.guest_fx, s.fx, sizeof ctx.guest_fx);
    for (int r = 0; r < 16; r++)
        if (hi.gpr_mask & (1u << r))
            ctx.gprs[r] = s.regs[r];
    hi.thunk(&ctx);

    if (hi.state_op) {
        memcpy(s.fx, ctx.guest_fx, sizeof s.fx);
        if (hi.mem_write)
            for (int off = 0; off < hi.mem_bytes; off += 8) {
                unsigned n = std::min(8, hi.mem_bytes - off);
                uint64_t v = 0;
                memcpy(&v, ctx.mem + off, n);
                env.mmu.store(address + off, n, v);
            }
        for (int r = 0; r < 16; r++)
            if (hi.gpr_written & (1u << r))
                s.regs[r] = ctx.gprs[r];
        return 0;
    }
    // Exceptions the guest left unmasked: raise them and keep the old state.
    uint16_t old_fcw, old_fsw, new_fsw;
    uint32_t old_mxcsr, new_mxcsr;
    memcpy(&old_fcw, s.fx, 2);
    memcpy(&old_fsw, s.fx + 2, 2);
    memcpy(&new_fsw, ctx.guest_fx + 2, 2);
    memcpy(&old_mxcsr, s.fx + 24, 4);
    memcpy(&new_mxcsr, ctx.guest_fx + 24, 4);
    uint32_t sse_raised = (new_mxcsr & ~old_mxcsr) & 0x3f & ~(old_mxcsr >> 7);
    uint32_t x87_raised = (new_fsw & ~old_fsw) & 0x3f & ~old_fcw;
    if (hi.x87 && x87_raised) {
        env.raise(16);
        return 0;
    }
    if (!hi.x87 && sse_raised) {
        env.raise((s.cr4 & CR4_OSXMMEXCPT) ? 19 : 6);
        return 0;
    }
    // The guest's own masks go back into the image (the thunk forced all on).
    memcpy(ctx.guest_fx, &old_fcw, 2);
    uint32_t mxcsr = (new_mxcsr & ~0x1f80u) | (old_mxcsr & 0x1f80u);
    memcpy(ctx.guest_fx + 24, &mxcsr, 4);
    memcpy(s.fx, ctx.guest_fx, sizeof s.fx);
    if (hi.mem_write)
        for (int off = 0; off < hi.mem_bytes; off += 8) {
            unsigned n = std::min(8, hi.mem_bytes - off);
            uint64_t v = 0;
            memcpy(&v, ctx.mem + off, n);
            env.mmu.store(address + off, n, v); // translated above: cannot fault
        }
    for (int r = 0; r < 16; r++)
        if (hi.gpr_written & (1u << r))
            s.regs[r] = ctx.gprs[r];
    if (hi.flags_modified)
        write_eflags(s, ctx.flags, hi.flags_modified);
    return 0;
}

} // namespace emu::x86

namespace emu::x86 {

uint64_t helper_HostExec(CpuEnv& env, uint64_t insn, uint64_t address, uint64_t)
{
    return host_execute(env, *reinterpret_cast<const HostInsn*>(insn), address);
}

bool emit_hostexec(Emitter& e)
{
    const HostInsn* hi = host_insn(e.insn, e.op);
    if (!hi)
        return false;
    V address = e.k(0);
    for (unsigned i = 0; i < e.insn.operand_count; i++)
        if (e.op[i].type == ZYDIS_OPERAND_TYPE_MEMORY && e.op[i].visibility == ZYDIS_OPERAND_VISIBILITY_EXPLICIT)
            address = e.address(int(i));
    e.call(Helper::HostExec, e.k(reinterpret_cast<uint64_t>(hi)), address);
    return true;
}

} // namespace emu::x86
