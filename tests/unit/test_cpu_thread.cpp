// Unit tests: CpuThread over a backend that only counts, and -accel
// tcg,thread=single's ExecToken (the vCPUs take turns).
#include "devices/cpu_thread.h"

#include <atomic>
#include <chrono>
#include <doctest/doctest.h>
#include <memory>
#include <thread>
#include <vector>

using namespace emu;
using namespace emu::devices;

namespace {

// "Runs guest code": busy for a while (or until kicked), counting how many
// backends of the group run at the same moment.
struct Group {
    std::atomic<int> running{0};
    std::atomic<int> most{0};
};

class CountingBackend final : public VcpuBackend {
public:
    explicit CountingBackend(Group& g) : m_group(g) {}
    VcpuExit run(uint64_t max_instructions) override
    {
        int now = ++m_group.running;
        for (int seen = m_group.most.load(); now > seen && !m_group.most.compare_exchange_weak(seen, now);) {
        }
        // A slice (a budget) ends sooner than an unbounded run.
        auto length = max_instructions == ~0ull ? std::chrono::milliseconds(20) : std::chrono::milliseconds(2);
        auto end = std::chrono::steady_clock::now() + length;
        VcpuExit exit = max_instructions == ~0ull ? VcpuExit::Kicked : VcpuExit::Budget;
        while (std::chrono::steady_clock::now() < end) {
            if (m_kick.exchange(false)) {
                exit = VcpuExit::Kicked;
                break;
            }
        }
        --m_group.running;
        runs++;
        return exit;
    }
    void kick() override { m_kick = true; }
    void set_interrupt_source(InterruptSource*) override {}
    void raise_nmi() override {}
    void reset() override {}
    std::atomic<int> runs{0};

private:
    Group& m_group;
    std::atomic<bool> m_kick{false};
};

// Four vCPUs run for a while; returns the most that ever ran at once and
// checks every vCPU got to run.
int most_at_once(ExecToken* token)
{
    Group group;
    std::vector<std::unique_ptr<CountingBackend>> backends;
    std::vector<std::unique_ptr<CpuThread>> threads;
    for (int i = 0; i < 4; i++) {
        backends.push_back(std::make_unique<CountingBackend>(group));
        CpuThread::Hooks hooks;
        hooks.token = token;
        threads.push_back(std::make_unique<CpuThread>("CPU " + std::to_string(i), *backends.back(), hooks));
    }
    for (auto& t : threads)
        t->resume();
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    for (auto& t : threads)
        t->pause(); // returns: no vCPU waits forever for its turn
    threads.clear();
    for (auto& b : backends)
        CHECK(b->runs.load() > 2); // FIFO turns: nobody starves
    return group.most.load();
}

} // namespace

TEST_CASE("cpu thread: thread=multi runs the vCPUs at once, thread=single one at a time")
{
    ExecToken token;
    CHECK(most_at_once(&token) == 1);
    CHECK(most_at_once(nullptr) > 1);
}
