// tests/unit/ram_bus_master.h — a BusMaster over a host buffer that is guest
// RAM [0, size), for device tests with no machine and no CPU. Completions run
// under its own mutex, as a machine runs them under the device lock; tests
// that drive the device from the test thread take the same lock (locked()).
#pragma once

#include "devices/bus_master.h"

#include <cstring>
#include <mutex>
#include <vector>

namespace emu::test {

class RamBusMaster final : public devices::BusMaster {
public:
    explicit RamBusMaster(uint64_t size) : ram(size) {}

    bool read(uint64_t gpa, void* buf, uint64_t len) override
    {
        if (!inside(gpa, len))
            return false;
        std::memcpy(buf, ram.data() + gpa, len);
        return true;
    }
    bool write(uint64_t gpa, const void* buf, uint64_t len) override
    {
        if (!inside(gpa, len))
            return false;
        std::memcpy(ram.data() + gpa, buf, len);
        written_bytes += len;
        return true;
    }
    bool map(uint64_t gpa, uint64_t len, bool, std::vector<std::span<uint8_t>>& out) override
    {
        if (!inside(gpa, len))
            return false;
        out.emplace_back(ram.data() + gpa, len);
        return true;
    }
    void written(uint64_t, uint64_t len) override { written_bytes += len; }
    void run_locked(const std::function<void()>& fn) override
    {
        std::lock_guard lock(mutex);
        fn();
    }
    std::unique_lock<std::recursive_mutex> locked() { return std::unique_lock(mutex); }

    std::vector<uint8_t> ram;
    uint64_t written_bytes = 0;
    std::recursive_mutex mutex;

private:
    bool inside(uint64_t gpa, uint64_t len) const { return gpa <= ram.size() && len <= ram.size() - gpa; }
};

} // namespace emu::test
