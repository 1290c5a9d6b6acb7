#include "engine/kvm/kvm.h"

#include "engine/x86/vcpu.h"

#include "common/log.h"
#include "engine/memory/address_space.h"
#include "engine/x86/flags.h"
#include "engine/x86/msr.h"

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <linux/kvm.h>
#include <mutex>
#include <optional>
#include <span>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>
#include <x86intrin.h>

namespace emu::kvm {

namespace {

using namespace emu::x86;

// <linux/kvm.h> from linux-libc-dev 6.1 declares its variable-length
// structures with __DECLARE_FLEX_ARRAY, which in C++ puts a one-byte empty
// struct before the array: sizeof grows, the array moves, and the ioctl
// numbers derived from those sizes are ones KVM does not know (EINVAL). The
// variable-length ioctls are therefore numbered here from the C sizes, with
// buffers of our own layout.
constexpr unsigned long kGetSupportedCpuid = _IOC(_IOC_READ | _IOC_WRITE, KVMIO, 0x05, 8);
constexpr unsigned long kSetCpuid2 = _IOC(_IOC_WRITE, KVMIO, 0x90, 8);
constexpr unsigned long kGetMsrs = _IOC(_IOC_READ | _IOC_WRITE, KVMIO, 0x88, 8);
constexpr unsigned long kSetMsrs = _IOC(_IOC_WRITE, KVMIO, 0x89, 8);
constexpr unsigned long kSetSignalMask = _IOC(_IOC_WRITE, KVMIO, 0x8b, 4);
constexpr unsigned long kGetXsave = _IOC(_IOC_READ, KVMIO, 0xa4, 4096);
constexpr unsigned long kSetXsave = _IOC(_IOC_WRITE, KVMIO, 0xa5, 4096);
constexpr unsigned long kGetXsave2 = _IOC(_IOC_READ, KVMIO, 0xcf, 4096);
constexpr size_t kXsaveLegacy = 512, kXstateBv = 512; // the FXSAVE image; XSTATE_BV in the XSAVE header

constexpr size_t kMaxCpuid = 256;
struct CpuidBuffer {
    uint32_t nent = 0, padding = 0;
    kvm_cpuid_entry2 entries[kMaxCpuid] = {};
};
constexpr size_t kMaxMsrs = 16;
struct MsrBuffer {
    uint32_t nmsrs = 0, pad = 0;
    kvm_msr_entry entries[kMaxMsrs] = {};
};
struct SignalMask {
    uint32_t len = 8; // the kernel's sigset_t: 64 bits
    uint8_t sigset[8] = {};
};

// Above the PCI hole's devices and below the BIOS: where KVM may put the
// three-page TSS and the identity-map page real mode needs on VMX.
constexpr uint64_t kIdentityMapAddr = 0xfeffc000, kTssAddr = 0xfeffd000;
constexpr uint64_t kPage = 4096;

Error error(std::string message) { return Error{"kvm: " + std::move(message)}; }
std::unexpected<Error> fail(std::string message) { return std::unexpected(error(std::move(message))); }
std::string errno_text() { return strerror(errno); }

int xioctl(int fd, unsigned long request, unsigned long arg)
{
    int r;
    do
        r = ioctl(fd, request, arg);
    while (r < 0 && errno == EINTR);
    return r;
}
template <class T>
int xioctl(int fd, unsigned long request, T* arg)
{
    return xioctl(fd, request, reinterpret_cast<unsigned long>(arg));
}

const char* exit_name(uint32_t reason)
{
    switch (reason) {
    case KVM_EXIT_UNKNOWN: return "KVM_EXIT_UNKNOWN";
    case KVM_EXIT_EXCEPTION: return "KVM_EXIT_EXCEPTION";
    case KVM_EXIT_HYPERCALL: return "KVM_EXIT_HYPERCALL";
    case KVM_EXIT_DEBUG: return "KVM_EXIT_DEBUG";
    case KVM_EXIT_FAIL_ENTRY: return "KVM_EXIT_FAIL_ENTRY";
    case KVM_EXIT_TPR_ACCESS: return "KVM_EXIT_TPR_ACCESS";
    case KVM_EXIT_NMI: return "KVM_EXIT_NMI";
    case KVM_EXIT_INTERNAL_ERROR: return "KVM_EXIT_INTERNAL_ERROR";
    case KVM_EXIT_SYSTEM_EVENT: return "KVM_EXIT_SYSTEM_EVENT";
    case KVM_EXIT_IOAPIC_EOI: return "KVM_EXIT_IOAPIC_EOI";
    case KVM_EXIT_DIRTY_RING_FULL: return "KVM_EXIT_DIRTY_RING_FULL";
    case KVM_EXIT_X86_BUS_LOCK: return "KVM_EXIT_X86_BUS_LOCK";
    case KVM_EXIT_NOTIFY: return "KVM_EXIT_NOTIFY";
    default: return "unknown";
    }
}

// kvm_segment <-> Segment (attr: descriptor bits 40-47 at 0-7, 52-55 at 12-15).
kvm_segment to_kvm(const Segment& s)
{
    kvm_segment k{};
    k.base = s.base;
    k.limit = s.limit;
    k.selector = s.selector;
    k.type = s.attr & 0xf;
    k.s = (s.attr >> 4) & 1;
    k.dpl = (s.attr >> 5) & 3;
    k.present = (s.attr >> 7) & 1;
    k.avl = (s.attr >> 12) & 1;
    k.l = (s.attr >> 13) & 1;
    k.db = (s.attr >> 14) & 1;
    k.g = (s.attr >> 15) & 1;
    k.unusable = !k.present;
    return k;
}

Segment from_kvm(const kvm_segment& k)
{
    Segment s;
    s.base = k.base;
    s.limit = k.limit;
    s.selector = k.selector;
    bool present = k.present && !k.unusable;
    s.attr = uint16_t((k.type & 0xf) | (k.s & 1) << 4 | (k.dpl & 3) << 5 | uint16_t(present) << 7 | (k.avl & 1) << 12 |
                      (k.l & 1) << 13 | (k.db & 1) << 14 | (k.g & 1) << 15);
    return s;
}


// The MSRs CpuState keeps that KVM holds outside kvm_regs/kvm_sregs.
struct MsrField {
    uint32_t index;
    uint64_t CpuState::*field; // nullptr: the TSC (an offset in CpuState)
};
constexpr MsrField kStateMsrs[] = {
    {MSR_SYSENTER_CS, &CpuState::sysenter_cs}, {MSR_SYSENTER_ESP, &CpuState::sysenter_esp},
    {MSR_SYSENTER_EIP, &CpuState::sysenter_eip}, {MSR_STAR, &CpuState::star},
    {MSR_LSTAR, &CpuState::lstar}, {MSR_CSTAR, &CpuState::cstar},
    {MSR_SFMASK, &CpuState::sfmask}, {MSR_KERNEL_GS_BASE, &CpuState::kernel_gs_base},
    {MSR_PAT, &CpuState::pat}, {MSR_TSC, nullptr},
};
constexpr size_t kStateMsrCount = sizeof kStateMsrs / sizeof kStateMsrs[0];
static_assert(kStateMsrCount <= kMaxMsrs);

} // namespace

// --- KvmCaps -------------------------------------------------------------------

std::string KvmCaps::describe() const
{
    std::string out;
    auto add = [&](bool on, const char* name) {
        if (on)
            out += out.empty() ? name : std::string(" ") + name;
    };
    add(user_memory, "user-memory");
    add(readonly_mem, "readonly-mem");
    add(immediate_exit, "immediate-exit");
    add(set_tss_addr, "set-tss-addr");
    add(identity_map, "identity-map");
    add(ext_cpuid, "ext-cpuid");
    add(vcpu_events, "vcpu-events");
    add(intr_shadow, "intr-shadow");
    add(debugregs, "debugregs");
    add(xcrs, "xcrs");
    add(xsave, "xsave");
    add(user_nmi, "user-nmi");
    add(user_space_msr, "user-space-msr");
    out += fmt::format(" memslots={} max-vcpus={}", nr_memslots, max_vcpus);
    return out;
}

// --- KvmVm ---------------------------------------------------------------------

Result<std::unique_ptr<KvmVm>> KvmVm::create(const char* device)
{
    std::unique_ptr<KvmVm> vm(new KvmVm());
    vm->m_kvm = open(device, O_RDWR | O_CLOEXEC);
    if (vm->m_kvm < 0)
        return fail(fmt::format("cannot open {}: {}", device, errno_text()));
    int version = ioctl(vm->m_kvm, KVM_GET_API_VERSION, 0);
    if (version != KVM_API_VERSION)
        return fail(fmt::format("{}: KVM API version {}, expected {}", device, version, KVM_API_VERSION));

    int kvm = vm->m_kvm;
    auto check = [](int fd, long cap) {
        int v = ioctl(fd, KVM_CHECK_EXTENSION, cap);
        return v > 0 ? v : 0;
    };
    KvmCaps& c = vm->m_caps;
    c.user_memory = check(kvm, KVM_CAP_USER_MEMORY);
    c.immediate_exit = check(kvm, KVM_CAP_IMMEDIATE_EXIT);
    c.set_tss_addr = check(kvm, KVM_CAP_SET_TSS_ADDR);
    c.identity_map = check(kvm, KVM_CAP_SET_IDENTITY_MAP_ADDR);
    c.ext_cpuid = check(kvm, KVM_CAP_EXT_CPUID);
    c.vcpu_events = check(kvm, KVM_CAP_VCPU_EVENTS);
    c.intr_shadow = check(kvm, KVM_CAP_INTR_SHADOW);
    c.debugregs = check(kvm, KVM_CAP_DEBUGREGS);
    c.xcrs = check(kvm, KVM_CAP_XCRS);
    c.xsave = check(kvm, KVM_CAP_XSAVE);
    c.xsave_size = std::max(4096, check(kvm, KVM_CAP_XSAVE2));
    c.user_nmi = check(kvm, KVM_CAP_USER_NMI);
    c.max_vcpus = check(kvm, KVM_CAP_MAX_VCPUS);
    if (c.max_vcpus == 0)
        c.max_vcpus = check(kvm, KVM_CAP_NR_VCPUS);
    if (c.max_vcpus == 0)
        c.max_vcpus = 4; // the documented default when neither is reported

    std::string missing;
    for (auto [have, name] : {std::pair{c.user_memory, "KVM_CAP_USER_MEMORY"},
                              std::pair{c.immediate_exit, "KVM_CAP_IMMEDIATE_EXIT"},
                              std::pair{c.ext_cpuid, "KVM_CAP_EXT_CPUID"}, std::pair{c.user_nmi, "KVM_CAP_USER_NMI"}})
        if (!have)
            missing += missing.empty() ? name : std::string(", ") + name;
    if (!missing.empty())
        return fail(fmt::format("{} lacks {} (it has: {})", device, missing, c.describe()));

    vm->m_run_size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
    if (vm->m_run_size < int(sizeof(kvm_run)))
        return fail(fmt::format("{}: KVM_GET_VCPU_MMAP_SIZE: {}", device,
                                vm->m_run_size < 0 ? errno_text() : std::to_string(vm->m_run_size)));

    vm->m_vm = xioctl(kvm, KVM_CREATE_VM, 0ul);
    if (vm->m_vm < 0)
        return fail(fmt::format("KVM_CREATE_VM: {}", errno_text()));
    // Capabilities that depend on the VM type are asked of the VM.
    c.readonly_mem = check(vm->m_vm, KVM_CAP_READONLY_MEM);
    c.nr_memslots = check(vm->m_vm, KVM_CAP_NR_MEMSLOTS);
    if (c.nr_memslots == 0)
        c.nr_memslots = 32;

    if (c.identity_map) {
        uint64_t addr = kIdentityMapAddr;
        if (xioctl(vm->m_vm, KVM_SET_IDENTITY_MAP_ADDR, &addr) < 0)
            return fail(fmt::format("KVM_SET_IDENTITY_MAP_ADDR {:#x}: {}", addr, errno_text()));
    }
    if (c.set_tss_addr && xioctl(vm->m_vm, KVM_SET_TSS_ADDR, kTssAddr) < 0)
        return fail(fmt::format("KVM_SET_TSS_ADDR {:#x}: {}", kTssAddr, errno_text()));

    // MSRs KVM does not know exit to us (the machine's PhysBus decides).
    if (check(vm->m_vm, KVM_CAP_X86_USER_SPACE_MSR)) {
        kvm_enable_cap cap{};
        cap.cap = KVM_CAP_X86_USER_SPACE_MSR;
        cap.args[0] = KVM_MSR_EXIT_REASON_UNKNOWN;
        c.user_space_msr = xioctl(vm->m_vm, KVM_ENABLE_CAP, &cap) == 0;
        if (!c.user_space_msr)
            log_debug("kvm: KVM_ENABLE_CAP KVM_CAP_X86_USER_SPACE_MSR: {}: unknown MSRs raise #GP", errno_text());
    }

    auto buffer = std::make_unique<CpuidBuffer>();
    buffer->nent = kMaxCpuid;
    if (xioctl(kvm, kGetSupportedCpuid, buffer.get()) < 0)
        return fail(fmt::format("KVM_GET_SUPPORTED_CPUID: {}", errno_text()));
    for (uint32_t i = 0; i < buffer->nent; ++i) {
        const kvm_cpuid_entry2& e = buffer->entries[i];
        vm->m_supported.push_back(CpuidLeaf{e.function, e.index, (e.flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX) != 0,
                                            CpuidResult{e.eax, e.ebx, e.ecx, e.edx}});
    }
    log_debug("kvm: {}: {}", device, c.describe());
    return vm;
}

KvmVm::~KvmVm()
{
    detach_memory();
    if (m_vm >= 0)
        close(m_vm);
    if (m_kvm >= 0)
        close(m_kvm);
}

std::vector<CpuidLeaf> KvmVm::cpuid(const CpuModel& model, unsigned index, unsigned count) const
{
    auto supported = [&](uint32_t function, uint32_t subleaf) {
        for (const CpuidLeaf& l : m_supported)
            if (l.function == function && (!l.indexed || l.index == subleaf))
                return l.value;
        return CpuidResult{};
    };
    std::vector<CpuidLeaf> out;
    auto add = [&](uint32_t function, uint32_t subleaf, bool indexed) -> CpuidLeaf& {
        out.push_back(CpuidLeaf{function, subleaf, indexed, model.query(function, subleaf, index, count)});
        return out.back();
    };
    uint32_t max_basic = model.query(0, 0, index, count).eax;
    uint32_t max_ext = model.query(0x80000000, 0, index, count).eax;
    for (uint32_t f = 0; f <= max_basic; ++f) {
        if (f == 7 || f == 0xd) {
            for (uint32_t sub = 0; sub < 2; ++sub) {
                CpuidLeaf& l = add(f, sub, true);
                CpuidResult host = supported(f, sub);
                if (f == 7) {
                    l.value.ebx &= host.ebx;
                    l.value.ecx &= host.ecx;
                    l.value.edx &= host.edx;
                } else {
                    l.value.eax &= host.eax; // the XSAVE components
                }
            }
            continue;
        }
        CpuidLeaf& l = add(f, 0, false);
        if (f == 1) {
            CpuidResult host = supported(1, 0);
            l.value.ecx &= host.ecx | (1u << 31); // the hypervisor bit is ours to give
            l.value.edx &= host.edx;
        }
    }
    for (uint32_t f = 0x80000000; f <= max_ext; ++f) {
        CpuidLeaf& l = add(f, 0, false);
        CpuidResult host = supported(f, 0);
        if (f == 0x80000001) {
            l.value.ecx &= host.ecx;
            l.value.edx &= host.edx;
        } else if (f == 0x80000008 && (host.eax & 0xff) && (host.eax & 0xff) < (l.value.eax & 0xff)) {
            l.value.eax = (l.value.eax & ~0xffu) | (host.eax & 0xff); // no more physical address bits than the host
        }
    }
    return out;
}

Result<void> KvmVm::set_slot(const Slot& slot, bool remove)
{
    kvm_userspace_memory_region r{};
    r.slot = slot.id;
    r.flags = slot.readonly && !remove ? KVM_MEM_READONLY : 0;
    r.guest_phys_addr = slot.gpa;
    r.memory_size = remove ? 0 : slot.size;
    r.userspace_addr = reinterpret_cast<uint64_t>(slot.host);
    if (xioctl(m_vm, KVM_SET_USER_MEMORY_REGION, &r) < 0)
        return fail(fmt::format("KVM_SET_USER_MEMORY_REGION slot {} ({:#x}-{:#x}{}{}): {}", slot.id, slot.gpa,
                                slot.gpa + slot.size - 1, slot.readonly ? ", read-only" : "",
                                remove ? ", removing" : "", errno_text()));
    return {};
}

Result<void> KvmVm::update_slots(const std::vector<Slot>& wanted)
{
    std::lock_guard lock(m_slot_lock);
    auto same = [](const Slot& a, const Slot& b) {
        return a.gpa == b.gpa && a.size == b.size && a.host == b.host && a.readonly == b.readonly;
    };
    // Slots that changed go first, so that the new ones never overlap them.
    for (auto it = m_slots.begin(); it != m_slots.end();) {
        if (std::any_of(wanted.begin(), wanted.end(), [&](const Slot& w) { return same(w, *it); })) {
            ++it;
            continue;
        }
        if (auto r = set_slot(*it, true); !r)
            return r;
        m_free_ids.push_back(it->id);
        it = m_slots.erase(it);
    }
    for (Slot w : wanted) {
        if (std::any_of(m_slots.begin(), m_slots.end(), [&](const Slot& s) { return same(w, s); }))
            continue;
        if (!m_free_ids.empty()) {
            w.id = m_free_ids.back();
            m_free_ids.pop_back();
        } else if (m_next_id < uint32_t(m_caps.nr_memslots)) {
            w.id = m_next_id++;
        } else {
            return fail(fmt::format("no memory slot left for {:#x}-{:#x}: KVM offers {}", w.gpa, w.gpa + w.size - 1,
                                    m_caps.nr_memslots));
        }
        if (auto r = set_slot(w, false); !r) {
            m_free_ids.push_back(w.id);
            return r;
        }
        m_slots.push_back(w);
    }
    return {};
}

Result<void> KvmVm::attach_memory(mem::AddressSpace& space)
{
    detach_memory();
    m_space = &space;
    m_attaching = true;
    m_attach_error.reset();
    m_listener = space.add_listener([this](std::span<const mem::RamRange> ranges) { sync_slots(ranges); });
    m_attaching = false;
    if (m_attach_error) {
        Error e = *m_attach_error;
        detach_memory();
        return std::unexpected(e);
    }
    return {};
}

void KvmVm::sync_slots(std::span<const mem::RamRange> ranges)
{
    std::vector<Slot> wanted;
    for (const mem::RamRange& r : ranges) {
        // KVM maps whole pages: a partial page at either end is left out and
        // its accesses exit as MMIO to the bus, which serves them.
        uint64_t start = (r.gpa + kPage - 1) & ~(kPage - 1), end = (r.gpa + r.size) & ~(kPage - 1);
        if (start >= end)
            continue;
        uint8_t* host = r.host + (start - r.gpa);
        if (reinterpret_cast<uintptr_t>(host) % kPage) {
            log_warn("kvm: {}: RAM at {:#x}-{:#x} is not page-aligned in the host: left to MMIO exits",
                     m_space->name(), r.gpa, r.gpa + r.size - 1);
            continue;
        }
        if (r.readonly && !m_caps.readonly_mem)
            continue; // ROM without read-only slots: every access exits as MMIO
        wanted.push_back(Slot{0, start, end - start, host, r.readonly});
    }
    auto result = update_slots(wanted);
    if (result)
        return;
    if (m_attaching) {
        m_attach_error = result.error();
        return;
    }
    log_error("{}", result.error().message);
    std::lock_guard lock(m_slot_lock);
    if (m_memory_error.empty())
        m_memory_error = result.error().message;
    m_memory_failed.store(true, std::memory_order_release);
}

void KvmVm::detach_memory()
{
    if (!m_space)
        return;
    m_space->remove_listener(m_listener);
    m_space = nullptr;
    std::lock_guard lock(m_slot_lock);
    for (const Slot& s : m_slots)
        if (auto r = set_slot(s, true); !r)
            log_error("{}", r.error().message);
    m_slots.clear();
    m_free_ids.clear();
    m_next_id = 0;
}

std::string KvmVm::memory_error() const
{
    std::lock_guard lock(m_slot_lock);
    return m_memory_error;
}

size_t KvmVm::slot_count() const
{
    std::lock_guard lock(m_slot_lock);
    return m_slots.size();
}

// --- KvmVcpu -------------------------------------------------------------------

namespace {

void ignore_signal(int) {}

// A kick signal that arrived while it was blocked (outside KVM_RUN) stays
// pending: KVM_RUN sees it and returns EINTR, and the mask KVM restores
// blocks it again, so it would interrupt every later KVM_RUN. Take it.
void consume_kick_signals(int sig)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, sig);
    timespec zero{};
    while (sigtimedwait(&set, nullptr, &zero) == sig) {
    }
}

} // namespace

int KvmVcpu::kick_signal() { return SIGRTMIN + 4; }

KvmVcpu::KvmVcpu(KvmVm& vm, PhysBus& bus, const CpuModel& model, unsigned index)
    : m_vm(vm), m_bus(bus), m_model(model), m_index(index)
{
}

Result<std::unique_ptr<KvmVcpu>> KvmVcpu::create(KvmVm& vm, PhysBus& bus, const CpuModel& model, unsigned index,
                                                 unsigned count)
{
    if (index >= unsigned(vm.caps().max_vcpus))
        return fail(fmt::format("vcpu {}: KVM allows {} vCPUs", index, vm.caps().max_vcpus));
    std::unique_ptr<KvmVcpu> cpu(new KvmVcpu(vm, bus, model, index));
    cpu->m_fd = xioctl(vm.fd(), KVM_CREATE_VCPU, static_cast<unsigned long>(index));
    if (cpu->m_fd < 0)
        return fail(fmt::format("KVM_CREATE_VCPU {}: {}", index, errno_text()));
    void* run = mmap(nullptr, vm.run_size(), PROT_READ | PROT_WRITE, MAP_SHARED, cpu->m_fd, 0);
    if (run == MAP_FAILED)
        return fail(fmt::format("vcpu {}: cannot map kvm_run: {}", index, errno_text()));
    cpu->m_run = static_cast<kvm_run*>(run);

    std::vector<CpuidLeaf> leaves = vm.cpuid(model, index, count);
    if (leaves.size() > kMaxCpuid)
        return fail(fmt::format("vcpu {}: {} CPUID leaves, more than {}", index, leaves.size(), kMaxCpuid));
    auto buffer = std::make_unique<CpuidBuffer>();
    buffer->nent = uint32_t(leaves.size());
    for (size_t i = 0; i < leaves.size(); ++i) {
        kvm_cpuid_entry2& e = buffer->entries[i];
        e.function = leaves[i].function;
        e.index = leaves[i].index;
        e.flags = leaves[i].indexed ? KVM_CPUID_FLAG_SIGNIFCANT_INDEX : 0;
        e.eax = leaves[i].value.eax;
        e.ebx = leaves[i].value.ebx;
        e.ecx = leaves[i].value.ecx;
        e.edx = leaves[i].value.edx;
    }
    if (xioctl(cpu->m_fd, kSetCpuid2, buffer.get()) < 0)
        return fail(fmt::format("KVM_SET_CPUID2 on vcpu {} (model {}): {}", index, model.name, errno_text()));

    if (auto r = cpu->set_state(power_on_state(model)); !r)
        return std::unexpected(r.error());
    return cpu;
}

KvmVcpu::~KvmVcpu()
{
    if (m_run)
        munmap(m_run, m_vm.run_size());
    if (m_fd >= 0)
        close(m_fd);
}

std::string KvmVcpu::ioctl_error(const char* what)
{
    return fmt::format("kvm: {} on vcpu {}: {}", what, m_index, errno_text());
}

void KvmVcpu::reset()
{
    // A reset gives a vCPU stopped by an internal error another chance.
    if (auto r = set_state(power_on_state(m_model)); r)
        m_error.clear();
    else if (m_error.empty())
        m_error = r.error().message;
}

void KvmVcpu::poke()
{
    std::atomic_ref<uint8_t>(m_run->immediate_exit).store(1, std::memory_order_release);
    std::lock_guard lock(m_thread_lock);
    if (m_in_run)
        pthread_kill(m_thread, kick_signal());
}

void KvmVcpu::kick()
{
    m_kick.store(true, std::memory_order_release);
    poke();
}

void KvmVcpu::raise_nmi()
{
    m_nmi.store(true, std::memory_order_release);
    poke(); // KVM_NMI is issued on the vCPU's thread, between two KVM_RUNs
}

Result<void> KvmVcpu::setup_signals()
{
    static std::once_flag installed;
    std::call_once(installed, [] {
        struct sigaction sa {};
        sa.sa_handler = ignore_signal;
        sigemptyset(&sa.sa_mask);
        sigaction(kick_signal(), &sa, nullptr);
    });
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, kick_signal());
    if (int e = pthread_sigmask(SIG_BLOCK, &block, &old); e != 0)
        return fail(fmt::format("vcpu {}: pthread_sigmask: {}", m_index, strerror(e)));
    // Inside KVM_RUN: the thread's mask without the kick signal.
    sigdelset(&old, kick_signal());
    SignalMask mask;
    memcpy(mask.sigset, &old, sizeof mask.sigset);
    if (xioctl(m_fd, kSetSignalMask, &mask) < 0)
        return std::unexpected(Error{ioctl_error("KVM_SET_SIGNAL_MASK")});
    return {};
}

VcpuExit KvmVcpu::stop(std::string message)
{
    if (m_error.empty()) {
        m_error = std::move(message);
        log_error("{}", m_error);
    }
    return VcpuExit::InternalError;
}

std::string KvmVcpu::rip_text()
{
    kvm_regs regs{};
    kvm_sregs sregs{};
    if (xioctl(m_fd, KVM_GET_REGS, &regs) < 0 || xioctl(m_fd, KVM_GET_SREGS, &sregs) < 0)
        return "at an unknown rip";
    return fmt::format("at {:04x}:{:#x}", sregs.cs.selector, regs.rip);
}

Result<void> KvmVcpu::inject()
{
    if (m_nmi.load(std::memory_order_acquire) && m_nmi.exchange(false, std::memory_order_acq_rel)) {
        if (xioctl(m_fd, KVM_NMI, 0ul) < 0)
            return std::unexpected(Error{ioctl_error("KVM_NMI")});
        m_halted = false;
    }
    bool window = false;
    if (m_irq && m_irq->pending()) {
        if (m_run->ready_for_interrupt_injection && m_if) {
            int vector = m_irq->acknowledge();
            if (vector >= 0) {
                kvm_interrupt irq{uint32_t(vector)};
                if (xioctl(m_fd, KVM_INTERRUPT, &irq) < 0)
                    return std::unexpected(Error{ioctl_error("KVM_INTERRUPT")});
                m_halted = false;
                // One injection per entry: ask to come back if more wait.
                window = m_irq->pending();
            }
        } else {
            window = true;
            if (m_if)
                m_halted = false; // the window opens at once: the interrupt ends the HLT
        }
    }
    m_run->request_interrupt_window = window;
    return {};
}

void KvmVcpu::handle_io()
{
    const auto& io = m_run->io;
    uint8_t* data = reinterpret_cast<uint8_t*>(m_run) + io.data_offset;
    for (uint32_t i = 0; i < io.count; ++i, data += io.size) {
        if (io.direction == KVM_EXIT_IO_OUT) {
            uint64_t v = 0;
            memcpy(&v, data, io.size);
            m_bus.port_write(io.port, v, io.size);
        } else {
            uint64_t v = m_bus.port_read(io.port, io.size);
            memcpy(data, &v, io.size);
        }
    }
}

void KvmVcpu::handle_mmio()
{
    auto& mmio = m_run->mmio;
    unsigned len = std::min<unsigned>(mmio.len, 8);
    if (mmio.is_write) {
        uint64_t v = 0;
        memcpy(&v, mmio.data, len);
        m_bus.mmio_write(mmio.phys_addr, v, len);
    } else {
        uint64_t v = m_bus.mmio_read(mmio.phys_addr, len);
        memcpy(mmio.data, &v, len);
    }
}

void KvmVcpu::handle_msr(bool write)
{
    auto& msr = m_run->msr;
    if (write) {
        bool fault = false;
        msr.error = !m_bus.msr_write(msr.index, msr.data, fault) || fault;
    } else {
        uint64_t v = 0;
        msr.error = !m_bus.msr_read(msr.index, v);
        msr.data = msr.error ? 0 : v;
    }
}

VcpuExit KvmVcpu::run(uint64_t)
{
    {
        std::lock_guard lock(m_thread_lock);
        if (!m_has_thread || !pthread_equal(m_thread, pthread_self())) {
            if (auto r = setup_signals(); !r)
                return stop(r.error().message);
            m_thread = pthread_self();
            m_has_thread = true;
        }
        m_in_run = true;
    }
    struct Leave {
        KvmVcpu& cpu;
        ~Leave()
        {
            std::lock_guard lock(cpu.m_thread_lock);
            cpu.m_in_run = false;
        }
    } leave{*this};

    if (!m_error.empty())
        return VcpuExit::InternalError;
    auto immediate_exit = std::atomic_ref<uint8_t>(m_run->immediate_exit);
    for (;;) {
        if (m_vm.memory_failed())
            return stop(fmt::format("{} (vcpu {} stops: its guest memory is out of date)", m_vm.memory_error(),
                                    m_index));
        if (m_kick.load(std::memory_order_acquire)) {
            if (m_io_pending) {
                // KVM finishes the instruction in the next KVM_RUN (and then
                // returns at once): do that before returning, so that the
                // state is whole for whoever looks at it next.
                immediate_exit.store(1, std::memory_order_relaxed);
            } else {
                m_kick.store(false, std::memory_order_relaxed);
                immediate_exit.store(0, std::memory_order_relaxed);
                return VcpuExit::Kicked;
            }
        } else {
            if (auto r = inject(); !r)
                return stop(r.error().message);
            if (m_halted)
                return VcpuExit::Halted;
        }

        int r = ioctl(m_fd, KVM_RUN, 0);
        int err = errno;
        m_io_pending = false;
        m_if = m_run->if_flag;
        if (m_run->apic_base != m_apic_base) {
            m_apic_base = m_run->apic_base;
            bool fault = false;
            m_bus.msr_write(MSR_APIC_BASE, m_apic_base, fault);
        }
        if (r < 0) {
            if (err == EINTR || err == EAGAIN) {
                consume_kick_signals(kick_signal());
                immediate_exit.store(0, std::memory_order_relaxed); // a kick is seen at the top
                continue;
            }
            errno = err;
            return stop(ioctl_error("KVM_RUN"));
        }
        switch (m_run->exit_reason) {
        case KVM_EXIT_IO:
            handle_io();
            m_io_pending = true;
            break;
        case KVM_EXIT_MMIO:
            handle_mmio();
            m_io_pending = true;
            break;
        case KVM_EXIT_X86_RDMSR:
        case KVM_EXIT_X86_WRMSR:
            handle_msr(m_run->exit_reason == KVM_EXIT_X86_WRMSR);
            m_io_pending = true;
            break;
        case KVM_EXIT_HLT:
            m_halted = true; // an interrupt already waiting ends it at the top
            break;
        case KVM_EXIT_IRQ_WINDOW_OPEN:
        case KVM_EXIT_INTR:
        case KVM_EXIT_SET_TPR: // the TPR lives in our local APIC, which reads CR8 itself
            break;
        case KVM_EXIT_SHUTDOWN:
            return VcpuExit::TripleFault;
        case KVM_EXIT_FAIL_ENTRY:
            return stop(fmt::format("kvm: vcpu {}: VM entry failed, hardware reason {:#x} {}", m_index,
                                    uint64_t(m_run->fail_entry.hardware_entry_failure_reason), rip_text()));
        case KVM_EXIT_INTERNAL_ERROR: {
            std::string data;
            for (uint32_t i = 0; i < std::min<uint32_t>(m_run->internal.ndata, 16); ++i)
                data += fmt::format(" {:#x}", uint64_t(m_run->internal.data[i]));
            return stop(fmt::format("kvm: vcpu {}: KVM internal error, suberror {}{} {}", m_index,
                                    m_run->internal.suberror,
                                    data.empty() ? "" : fmt::format(" (data{})", data), rip_text()));
        }
        default:
            return stop(fmt::format("kvm: vcpu {}: unhandled exit reason {} ({}) {}", m_index, m_run->exit_reason,
                                    exit_name(m_run->exit_reason), rip_text()));
        }
    }
}

// x87/SSE state. KVM_GET/SET_XSAVE carry the FXSAVE image as the guest's
// FXSAVE would write it (KVM_GET_FPU reports MXCSR as 0 on some hosts); the
// legacy kvm_fpu ioctls are the fallback without KVM_CAP_XSAVE.
Result<void> KvmVcpu::get_fpu(CpuState& s)
{
    if (m_vm.caps().xsave) {
        std::vector<uint8_t> area(m_vm.caps().xsave_size);
        unsigned long request = m_vm.caps().xsave_size > 4096 ? kGetXsave2 : kGetXsave;
        if (xioctl(m_fd, request, area.data()) < 0)
            return std::unexpected(Error{ioctl_error("KVM_GET_XSAVE")});
        memcpy(s.fx, area.data(), kXsaveLegacy);
        return {};
    }
    kvm_fpu fpu{};
    if (xioctl(m_fd, KVM_GET_FPU, &fpu) < 0)
        return std::unexpected(Error{ioctl_error("KVM_GET_FPU")});
    memset(s.fx, 0, sizeof s.fx);
    memcpy(s.fx + 0, &fpu.fcw, 2);
    memcpy(s.fx + 2, &fpu.fsw, 2);
    s.fx[4] = fpu.ftwx;
    memcpy(s.fx + 6, &fpu.last_opcode, 2);
    memcpy(s.fx + 8, &fpu.last_ip, 8);
    memcpy(s.fx + 16, &fpu.last_dp, 8);
    memcpy(s.fx + 24, &fpu.mxcsr, 4);
    uint32_t mxcsr_mask = 0xffff;
    memcpy(s.fx + 28, &mxcsr_mask, 4);
    memcpy(s.fx + 32, fpu.fpr, sizeof fpu.fpr);
    memcpy(s.fx + 160, fpu.xmm, sizeof fpu.xmm);
    return {};
}

Result<void> KvmVcpu::set_fpu(const CpuState& s)
{
    if (m_vm.caps().xsave) {
        std::vector<uint8_t> area(m_vm.caps().xsave_size);
        unsigned long request = m_vm.caps().xsave_size > 4096 ? kGetXsave2 : kGetXsave;
        if (xioctl(m_fd, request, area.data()) < 0)
            return std::unexpected(Error{ioctl_error("KVM_GET_XSAVE")});
        // The image, with MXCSR_MASK as KVM reports it; x87 and SSE marked
        // as in use (or KVM takes their init values), the other components
        // (not in CpuState) back to their init state.
        uint32_t mxcsr_mask;
        memcpy(&mxcsr_mask, area.data() + 28, 4);
        memcpy(area.data(), s.fx, kXsaveLegacy);
        memcpy(area.data() + 28, &mxcsr_mask, 4);
        uint64_t xstate_bv = 3;
        memcpy(area.data() + kXstateBv, &xstate_bv, 8);
        if (xioctl(m_fd, kSetXsave, area.data()) < 0)
            return std::unexpected(Error{ioctl_error("KVM_SET_XSAVE")});
        return {};
    }
    kvm_fpu fpu{};
    memcpy(&fpu.fcw, s.fx + 0, 2);
    memcpy(&fpu.fsw, s.fx + 2, 2);
    fpu.ftwx = s.fx[4];
    memcpy(&fpu.last_opcode, s.fx + 6, 2);
    memcpy(&fpu.last_ip, s.fx + 8, 8);
    memcpy(&fpu.last_dp, s.fx + 16, 8);
    memcpy(&fpu.mxcsr, s.fx + 24, 4);
    memcpy(fpu.fpr, s.fx + 32, sizeof fpu.fpr);
    memcpy(fpu.xmm, s.fx + 160, sizeof fpu.xmm);
    if (xioctl(m_fd, KVM_SET_FPU, &fpu) < 0)
        return std::unexpected(Error{ioctl_error("KVM_SET_FPU")});
    return {};
}

Result<void> KvmVcpu::get_state(CpuState& s)
{
    kvm_regs regs{};
    kvm_sregs sregs{};
    if (xioctl(m_fd, KVM_GET_REGS, &regs) < 0)
        return std::unexpected(Error{ioctl_error("KVM_GET_REGS")});
    if (xioctl(m_fd, KVM_GET_SREGS, &sregs) < 0)
        return std::unexpected(Error{ioctl_error("KVM_GET_SREGS")});
    s.regs[RAX] = regs.rax;
    s.regs[RCX] = regs.rcx;
    s.regs[RDX] = regs.rdx;
    s.regs[RBX] = regs.rbx;
    s.regs[RSP] = regs.rsp;
    s.regs[RBP] = regs.rbp;
    s.regs[RSI] = regs.rsi;
    s.regs[RDI] = regs.rdi;
    s.regs[R8] = regs.r8;
    s.regs[R9] = regs.r9;
    s.regs[R10] = regs.r10;
    s.regs[R11] = regs.r11;
    s.regs[R12] = regs.r12;
    s.regs[R13] = regs.r13;
    s.regs[R14] = regs.r14;
    s.regs[R15] = regs.r15;
    s.rip = regs.rip;
    s.eflags = regs.rflags | 2;
    s.cc_op = 0; // the arithmetic flags are in eflags
    s.cc_res = s.cc_src1 = s.cc_src2 = 0;

    const kvm_segment* segs[6] = {&sregs.es, &sregs.cs, &sregs.ss, &sregs.ds, &sregs.fs, &sregs.gs};
    for (int i = 0; i < 6; ++i)
        s.seg[i] = from_kvm(*segs[i]);
    s.ldtr = from_kvm(sregs.ldt);
    s.tr = from_kvm(sregs.tr);
    s.gdtr = {sregs.gdt.base, sregs.gdt.limit};
    s.idtr = {sregs.idt.base, sregs.idt.limit};
    s.cr0 = sregs.cr0;
    s.cr2 = sregs.cr2;
    s.cr3 = sregs.cr3;
    s.cr4 = sregs.cr4;
    s.cr8 = sregs.cr8;
    s.efer = sregs.efer;
    s.apic_base = sregs.apic_base;

    MsrBuffer msrs;
    msrs.nmsrs = kStateMsrCount;
    for (size_t i = 0; i < kStateMsrCount; ++i)
        msrs.entries[i].index = kStateMsrs[i].index;
    int got = xioctl(m_fd, kGetMsrs, &msrs);
    if (got < 0)
        return std::unexpected(Error{ioctl_error("KVM_GET_MSRS")});
    if (size_t(got) < kStateMsrCount)
        return std::unexpected(Error{fmt::format("kvm: KVM_GET_MSRS on vcpu {}: MSR {:#x} is not readable", m_index,
                                                 kStateMsrs[got].index)});
    for (size_t i = 0; i < kStateMsrCount; ++i) {
        if (kStateMsrs[i].field)
            s.*kStateMsrs[i].field = msrs.entries[i].data;
        else
            s.tsc_offset = msrs.entries[i].data - __rdtsc();
    }

    if (auto r = get_fpu(s); !r)
        return r;

    if (m_vm.caps().xcrs) {
        kvm_xcrs xcrs{};
        if (xioctl(m_fd, KVM_GET_XCRS, &xcrs) < 0)
            return std::unexpected(Error{ioctl_error("KVM_GET_XCRS")});
        for (uint32_t i = 0; i < xcrs.nr_xcrs && i < KVM_MAX_XCRS; ++i)
            if (xcrs.xcrs[i].xcr == 0)
                s.xcr0 = xcrs.xcrs[i].value;
    }
    if (m_vm.caps().debugregs) {
        kvm_debugregs dr{};
        if (xioctl(m_fd, KVM_GET_DEBUGREGS, &dr) < 0)
            return std::unexpected(Error{ioctl_error("KVM_GET_DEBUGREGS")});
        for (int i = 0; i < 4; ++i)
            s.dr[i] = dr.db[i];
        s.dr[4] = s.dr[6] = dr.dr6;
        s.dr[5] = s.dr[7] = dr.dr7;
    }
    s.pending_vector = -1;
    s.pending_has_error = false;
    s.pending_error = 0;
    s.interrupt_shadow = false;
    s.nmi_blocked = false;
    if (m_vm.caps().vcpu_events) {
        kvm_vcpu_events ev{};
        if (xioctl(m_fd, KVM_GET_VCPU_EVENTS, &ev) < 0)
            return std::unexpected(Error{ioctl_error("KVM_GET_VCPU_EVENTS")});
        if (ev.exception.injected || ev.exception.pending) {
            s.pending_vector = ev.exception.nr;
            s.pending_has_error = ev.exception.has_error_code;
            s.pending_error = ev.exception.error_code;
        }
        s.interrupt_shadow = ev.interrupt.shadow != 0;
        s.nmi_blocked = ev.nmi.masked;
    }
    s.halted = m_halted;
    update_hflags(s);
    return {};
}

Result<void> KvmVcpu::set_state(const CpuState& s)
{
    kvm_regs regs{};
    regs.rax = s.regs[RAX];
    regs.rcx = s.regs[RCX];
    regs.rdx = s.regs[RDX];
    regs.rbx = s.regs[RBX];
    regs.rsp = s.regs[RSP];
    regs.rbp = s.regs[RBP];
    regs.rsi = s.regs[RSI];
    regs.rdi = s.regs[RDI];
    regs.r8 = s.regs[R8];
    regs.r9 = s.regs[R9];
    regs.r10 = s.regs[R10];
    regs.r11 = s.regs[R11];
    regs.r12 = s.regs[R12];
    regs.r13 = s.regs[R13];
    regs.r14 = s.regs[R14];
    regs.r15 = s.regs[R15];
    regs.rip = s.rip;
    regs.rflags = read_eflags(s);

    kvm_sregs sregs{};
    kvm_segment* segs[6] = {&sregs.es, &sregs.cs, &sregs.ss, &sregs.ds, &sregs.fs, &sregs.gs};
    for (int i = 0; i < 6; ++i)
        *segs[i] = to_kvm(s.seg[i]);
    sregs.ldt = to_kvm(s.ldtr);
    sregs.tr = to_kvm(s.tr);
    sregs.gdt.base = s.gdtr.base;
    sregs.gdt.limit = uint16_t(s.gdtr.limit);
    sregs.idt.base = s.idtr.base;
    sregs.idt.limit = uint16_t(s.idtr.limit);
    sregs.cr0 = s.cr0;
    sregs.cr2 = s.cr2;
    sregs.cr3 = s.cr3;
    sregs.cr4 = s.cr4;
    sregs.cr8 = s.cr8;
    sregs.efer = s.efer;
    sregs.apic_base = s.apic_base;
    // interrupt_bitmap stays zero: no interrupt accepted and not yet delivered.

    if (xioctl(m_fd, KVM_SET_SREGS, &sregs) < 0)
        return std::unexpected(Error{ioctl_error("KVM_SET_SREGS")});
    if (xioctl(m_fd, KVM_SET_REGS, &regs) < 0)
        return std::unexpected(Error{ioctl_error("KVM_SET_REGS")});

    MsrBuffer msrs;
    msrs.nmsrs = kStateMsrCount;
    for (size_t i = 0; i < kStateMsrCount; ++i) {
        msrs.entries[i].index = kStateMsrs[i].index;
        msrs.entries[i].data = kStateMsrs[i].field ? s.*kStateMsrs[i].field : __rdtsc() + s.tsc_offset;
    }
    int set = xioctl(m_fd, kSetMsrs, &msrs);
    if (set < 0)
        return std::unexpected(Error{ioctl_error("KVM_SET_MSRS")});
    if (size_t(set) < kStateMsrCount)
        return std::unexpected(Error{fmt::format("kvm: KVM_SET_MSRS on vcpu {}: MSR {:#x} refused {:#x}", m_index,
                                                 kStateMsrs[set].index, uint64_t(msrs.entries[set].data))});

    if (auto r = set_fpu(s); !r)
        return r;

    if (m_vm.caps().xcrs) {
        kvm_xcrs xcrs{};
        xcrs.nr_xcrs = 1;
        xcrs.xcrs[0].xcr = 0;
        xcrs.xcrs[0].value = s.xcr0 ? s.xcr0 : 1;
        if (xioctl(m_fd, KVM_SET_XCRS, &xcrs) < 0)
            return std::unexpected(Error{ioctl_error("KVM_SET_XCRS")});
    }
    if (m_vm.caps().debugregs) {
        kvm_debugregs dr{};
        for (int i = 0; i < 4; ++i)
            dr.db[i] = s.dr[i];
        dr.dr6 = s.dr[6];
        dr.dr7 = s.dr[7];
        if (xioctl(m_fd, KVM_SET_DEBUGREGS, &dr) < 0)
            return std::unexpected(Error{ioctl_error("KVM_SET_DEBUGREGS")});
    }
    if (m_vm.caps().vcpu_events) {
        kvm_vcpu_events ev{};
        ev.flags = KVM_VCPUEVENT_VALID_NMI_PENDING;
        if (s.pending_vector >= 0) {
            ev.exception.injected = 1;
            ev.exception.nr = uint8_t(s.pending_vector);
            ev.exception.has_error_code = s.pending_has_error;
            ev.exception.error_code = s.pending_error;
        }
        ev.nmi.masked = s.nmi_blocked;
        if (m_vm.caps().intr_shadow) {
            ev.flags |= KVM_VCPUEVENT_VALID_SHADOW;
            ev.interrupt.shadow = s.interrupt_shadow ? KVM_X86_SHADOW_INT_STI : 0;
        }
        if (xioctl(m_fd, KVM_SET_VCPU_EVENTS, &ev) < 0)
            return std::unexpected(Error{ioctl_error("KVM_SET_VCPU_EVENTS")});
    }

    m_halted = s.halted;
    m_if = (s.eflags & IF) != 0;
    m_io_pending = false;
    // As of the state just loaded (no event is queued in KVM now): KVM only
    // reports it again after the next exit, and some (PVM) open a requested
    // interrupt window only at the next exit they take for another reason.
    m_run->ready_for_interrupt_injection = m_if && !s.interrupt_shadow;
    m_apic_base = s.apic_base; // the machine's local APIC is told of changes the guest makes
    return {};
}

} // namespace emu::kvm
