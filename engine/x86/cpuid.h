// engine/x86/cpuid.h — named CPU models and the CPUID leaves they report.
// A model advertises only what the engine implements.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace emu::x86 {

struct CpuidResult {
    uint32_t eax = 0, ebx = 0, ecx = 0, edx = 0;
};

struct CpuModel {
    std::string name;
    std::string description;
    std::string vendor = "AuthenticAMD";
    uint32_t family = 15, model = 107, stepping = 1;
    uint32_t features_edx = 0, features_ecx = 0;         // leaf 1
    uint32_t ext_features_edx = 0, ext_features_ecx = 0; // leaf 0x80000001
    uint32_t leaf7_ebx = 0, leaf7_ecx = 0;
    std::string brand = "QEMU Virtual CPU version 2.5+";
    CpuidResult query(uint32_t leaf, uint32_t subleaf, uint32_t apic_id, uint32_t cpus) const;
    bool has_ecx1(uint32_t bit) const { return features_ecx & (1u << bit); }
};

const std::vector<CpuModel>& cpu_models();
const CpuModel* find_cpu_model(const std::string& name);

} // namespace emu::x86
