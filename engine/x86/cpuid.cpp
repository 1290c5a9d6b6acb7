#include "engine/x86/cpuid.h"

#include <cstring>

namespace emu::x86 {

namespace {

// Leaf 1 EDX / ECX bits.
enum : uint32_t {
    FPU = 1u << 0, VME = 1u << 1, DE = 1u << 2, PSE = 1u << 3, TSC = 1u << 4, MSR = 1u << 5, PAE = 1u << 6,
    MCE = 1u << 7, CX8 = 1u << 8, APIC = 1u << 9, SEP = 1u << 11, MTRR = 1u << 12, PGE = 1u << 13,
    MCA = 1u << 14, CMOV = 1u << 15, PAT = 1u << 16, PSE36 = 1u << 17, CLFSH = 1u << 19, MMX = 1u << 23,
    FXSR = 1u << 24, SSE = 1u << 25, SSE2 = 1u << 26,
};
enum : uint32_t {
    SSE3 = 1u << 0, SSSE3 = 1u << 9, CX16 = 1u << 13, SSE41 = 1u << 19, SSE42 = 1u << 20, MOVBE = 1u << 22,
    POPCNT = 1u << 23, XSAVE = 1u << 26, HYPERVISOR = 1u << 31,
};
// Leaf 0x80000001.
enum : uint32_t { SYSCALL = 1u << 11, NX = 1u << 20, RDTSCP = 1u << 27, LM = 1u << 29 };
enum : uint32_t { LAHF_LM = 1u << 0, ABM = 1u << 5 };

std::vector<CpuModel> make_models()
{
    CpuModel qemu64;
    qemu64.name = "qemu64";
    qemu64.description = "QEMU Virtual CPU version 2.5+";
    qemu64.features_edx = FPU | DE | PSE | TSC | MSR | PAE | MCE | CX8 | APIC | SEP | MTRR | PGE | MCA | CMOV | PAT |
                          PSE36 | CLFSH | MMX | FXSR | SSE | SSE2;
    qemu64.features_ecx = SSE3 | CX16 | HYPERVISOR;
    qemu64.ext_features_edx = SYSCALL | NX | LM;
    qemu64.ext_features_ecx = LAHF_LM;

    CpuModel max = qemu64;
    max.name = "max";
    max.description = "Enables all features supported by the accelerator in the current host";
    max.brand = "emud TCG CPU";
    max.features_ecx |= SSSE3 | SSE41 | SSE42 | MOVBE | POPCNT | XSAVE;
    max.ext_features_edx |= RDTSCP;
    max.ext_features_ecx |= ABM;

    CpuModel base = qemu64;
    base.name = "base";
    base.description = "base CPU model type with no features enabled";
    base.features_edx = base.features_ecx = base.ext_features_edx = base.ext_features_ecx = 0;
    return {qemu64, max, base};
}

void put_string(uint32_t* regs, const std::string& text, size_t offset)
{
    char buf[16] = {};
    for (size_t i = 0; i < 16 && offset + i < text.size(); i++)
        buf[i] = text[offset + i];
    memcpy(regs, buf, 16);
}

} // namespace

const std::vector<CpuModel>& cpu_models()
{
    static const std::vector<CpuModel> models = make_models();
    return models;
}

const CpuModel* find_cpu_model(const std::string& name)
{
    for (auto& m : cpu_models())
        if (m.name == name)
            return &m;
    return nullptr;
}

CpuidResult CpuModel::query(uint32_t leaf, uint32_t subleaf, uint32_t apic_id, uint32_t cpus) const
{
    CpuidResult r;
    switch (leaf) {
    case 0: {
        r.eax = 0xd;
        char v[12] = {};
        memcpy(v, vendor.data(), std::min<size_t>(12, vendor.size()));
        memcpy(&r.ebx, v, 4);
        memcpy(&r.edx, v + 4, 4);
        memcpy(&r.ecx, v + 8, 4);
        break;
    }
    case 1: {
        uint32_t fam = family, ext_fam = 0;
        if (fam > 15) {
            ext_fam = fam - 15;
            fam = 15;
        }
        r.eax = stepping | ((model & 0xf) << 4) | (fam << 8) | (((model >> 4) & 0xf) << 16) | (ext_fam << 20);
        r.ebx = (apic_id << 24) | (std::min(cpus, 255u) << 16) | (8 << 8);
        r.ecx = features_ecx;
        r.edx = features_edx;
        break;
    }
    case 7:
        if (subleaf == 0) {
            r.ebx = leaf7_ebx;
            r.ecx = leaf7_ecx;
        }
        break;
    case 0xd:
        if (features_ecx & XSAVE) {
            if (subleaf == 0) {
                r.eax = 3; // x87 and SSE components
                r.ebx = r.ecx = 576;
            } else if (subleaf == 1) {
                r.eax = 0;
            }
        }
        break;
    case 0x80000000:
        r.eax = 0x80000008;
        memcpy(&r.ebx, vendor.data(), 4);
        memcpy(&r.edx, vendor.data() + 4, 4);
        memcpy(&r.ecx, vendor.data() + 8, 4);
        break;
    case 0x80000001:
        r.eax = stepping | ((model & 0xf) << 4) | (std::min(family, 15u) << 8);
        r.ecx = ext_features_ecx;
        r.edx = ext_features_edx | (features_edx & 0x0183f3ff); // AMD mirrors these leaf-1 bits
        break;
    case 0x80000002:
    case 0x80000003:
    case 0x80000004: {
        uint32_t regs[4];
        put_string(regs, brand, (leaf - 0x80000002) * 16);
        r.eax = regs[0];
        r.ebx = regs[1];
        r.ecx = regs[2];
        r.edx = regs[3];
        break;
    }
    case 0x80000008:
        r.eax = 40 | (48 << 8); // physical and linear address bits
        break;
    default:
        break;
    }
    return r;
}

} // namespace emu::x86
