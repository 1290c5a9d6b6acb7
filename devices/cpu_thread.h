// devices/cpu_thread.h — the host thread that runs one vCPU.
//
// A VM is a thread group: each vCPU runs guest code on a thread of its own
// through its VcpuBackend (our engine or KVM). The machine controls it:
//   resume()  the vCPU runs;
//   pause()   it stops and pause() returns once it runs no guest code;
//   wake()    an interrupt (or INIT/SIPI) is waiting: a halted vCPU resumes,
//             a running one comes back to the loop to take it;
//   park()    from the vCPU's own thread (triple fault): it stops running
//             until the next resume();
//   inspect() runs a function while the thread runs no guest code (reading
//             its registers for the monitor), then lets it go on as it was.
// Before each run the thread calls `prepare` (the machine handles INIT/SIPI
// there, on the vCPU's own thread, which owns its registers); a false answer
// means "not runnable" (an AP waiting for SIPI) and the thread sleeps until
// wake(). `on_exit` sees every exit other than Halted/Kicked/Budget.
#pragma once

#include "engine/vcpu.h"

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

namespace emu::devices {

// -accel tcg,thread=single: the VM's vCPUs take turns. Whoever holds the
// token runs guest code for a slice, then passes it on in arrival order
// (FIFO tickets, so no vCPU starves); a halted vCPU does not hold it. Each
// vCPU keeps its own host thread; only one of them executes at a time, as
// in QEMU's round-robin TCG.
class ExecToken {
public:
    // Guest instructions a vCPU runs before passing the token on.
    static constexpr uint64_t k_slice = 500'000;
    void acquire();
    void release();

private:
    std::mutex m_lock;
    std::condition_variable m_cv;
    uint64_t m_next = 0;    // the next ticket handed out
    uint64_t m_serving = 0; // the ticket that may run
};

class CpuThread {
public:
    struct Hooks {
        std::function<bool()> prepare;
        std::function<void(VcpuExit)> on_exit;
        ExecToken* token = nullptr; // thread=single: run only while holding it
    };

    CpuThread(std::string name, VcpuBackend& backend, Hooks hooks);
    ~CpuThread(); // stops and joins the thread
    CpuThread(const CpuThread&) = delete;
    CpuThread& operator=(const CpuThread&) = delete;

    void resume();
    void pause();
    void wake();
    void park(); // on the vCPU thread only
    void inspect(const std::function<void()>& fn);
    bool halted() const; // sleeping in HLT (or waiting for SIPI)
    bool halted_locked() const { return m_sleeping; } // inside inspect()
    std::string describe() const; // its flags, for `info lapic`
    int64_t thread_id() const { return m_tid; }

private:
    void main();

    std::string m_name;
    VcpuBackend& m_backend;
    Hooks m_hooks;
    mutable std::mutex m_lock;
    std::condition_variable m_cv;        // the thread waits here
    std::condition_variable m_parked_cv; // pause() waits here
    bool m_run = false;     // the machine wants it running
    bool m_stop = false;
    bool m_parked = true;   // the thread is not running guest code (and won't until m_run)
    bool m_self_parked = false;
    int m_holds = 0;        // inspect() calls waiting or running
    bool m_wake = false;
    bool m_sleeping = false;
    int64_t m_tid = 0;
    std::thread m_thread;
};

} // namespace emu::devices
