// devices/bus_master.h — what a bus-master device (a disk controller doing
// DMA, a virtio device walking its rings) gets from its machine.
//
// Guest memory as the device sees it: every address and length comes from
// the guest, so every access is checked here and a bad one is an ordinary
// failure the device turns into a guest-visible error status (never a host
// crash, never a write outside guest RAM).
//
// Two ways in:
//   - read()/write() copy (small structures: descriptors, rings, PRDs);
//   - map() hands out host pointers into guest RAM for zero-copy block I/O;
//     after writing through a mapping the device calls written(), so that
//     code translated from those pages is dropped (a disk read may load a
//     program into pages that held other code).
//
// Threads: read/write/map/written may be called from any thread (a vCPU
// under the device lock, or a storage worker completing a request). Guest
// RAM stays mapped for the machine's lifetime. run_locked() runs a
// completion under the machine's device lock on the calling thread; the
// rule that makes this deadlock-free: nobody waits for block I/O to finish
// while holding the device lock (reset and pause drain the backends first).
#pragma once

#include <cstdint>
#include <functional>
#include <mutex>
#include <span>
#include <vector>

namespace emu::mem {
class AddressSpace;
}
namespace emu::x86 {
class CodeTracker;
}

namespace emu::devices {

class BusMaster {
public:
    virtual ~BusMaster() = default;

    // False if any byte of [gpa, gpa+len) is not guest RAM (then nothing is
    // guaranteed about the buffer or the guest memory beyond the first bad byte).
    virtual bool read(uint64_t gpa, void* buf, uint64_t len) = 0;
    virtual bool write(uint64_t gpa, const void* buf, uint64_t len) = 0;

    // Host spans covering [gpa, gpa+len) in guest RAM, appended to `out`
    // (several when the range crosses RAM regions). False (out unchanged)
    // if any byte is not RAM, or is read-only and `for_write` is set.
    virtual bool map(uint64_t gpa, uint64_t len, bool for_write, std::vector<std::span<uint8_t>>& out) = 0;
    // The device wrote [gpa, gpa+len) through a mapping.
    virtual void written(uint64_t gpa, uint64_t len) = 0;

    // Runs fn with the machine's device lock held.
    virtual void run_locked(const std::function<void()>& fn) = 0;

    // Convenience for little-endian guest structures.
    template <class T>
    bool read_obj(uint64_t gpa, T& value)
    {
        return read(gpa, &value, sizeof value);
    }
    template <class T>
    bool write_obj(uint64_t gpa, const T& value)
    {
        return write(gpa, &value, sizeof value);
    }
};

// A machine's guest memory for its bus masters: RAM only (DMA to MMIO is
// refused), writes dirty the pages and drop code translated from them.
class MachineBusMaster final : public BusMaster {
public:
    MachineBusMaster(mem::AddressSpace& memory, x86::CodeTracker& code, std::mutex& device_lock)
        : m_memory(memory), m_code(code), m_device_lock(device_lock)
    {
    }
    bool read(uint64_t gpa, void* buf, uint64_t len) override;
    bool write(uint64_t gpa, const void* buf, uint64_t len) override;
    bool map(uint64_t gpa, uint64_t len, bool for_write, std::vector<std::span<uint8_t>>& out) override;
    void written(uint64_t gpa, uint64_t len) override;
    void run_locked(const std::function<void()>& fn) override
    {
        std::lock_guard lock(m_device_lock);
        fn();
    }

private:
    mem::AddressSpace& m_memory;
    x86::CodeTracker& m_code;
    std::mutex& m_device_lock;
};

} // namespace emu::devices
