// engine/kvm/probe.h — is the KVM accelerator usable on this host?
#pragma once

#include <string>

namespace emu::kvm {

struct ProbeResult {
    bool present = false; // /dev/kvm opens and speaks KVM API version 12
    std::string reason;   // why not, when absent ("/dev/kvm: No such file or directory")
};

ProbeResult probe(const char* device = "/dev/kvm");

} // namespace emu::kvm
