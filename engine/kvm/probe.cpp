#include "engine/kvm/probe.h"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <linux/kvm.h>
#include <sys/ioctl.h>
#include <unistd.h>

namespace emu::kvm {

ProbeResult probe(const char* device)
{
    ProbeResult r;
    int fd = open(device, O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        r.reason = std::string(device) + ": " + strerror(errno);
        return r;
    }
    int version = ioctl(fd, KVM_GET_API_VERSION, 0);
    close(fd);
    if (version != KVM_API_VERSION) {
        r.reason = std::string(device) + ": KVM API version " + std::to_string(version) + ", expected " +
                   std::to_string(KVM_API_VERSION);
        return r;
    }
    r.present = true;
    return r;
}

} // namespace emu::kvm
