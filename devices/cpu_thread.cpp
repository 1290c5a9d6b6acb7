#include "devices/cpu_thread.h"

#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace emu::devices {

void ExecToken::acquire()
{
    std::unique_lock lock(m_lock);
    uint64_t ticket = m_next++;
    m_cv.wait(lock, [&] { return m_serving == ticket; });
}

void ExecToken::release()
{
    {
        std::lock_guard lock(m_lock);
        m_serving++;
    }
    m_cv.notify_all();
}

CpuThread::CpuThread(std::string name, VcpuBackend& backend, Hooks hooks)
    : m_name(std::move(name)), m_backend(backend), m_hooks(std::move(hooks))
{
    std::unique_lock lock(m_lock);
    m_thread = std::thread([this] { main(); });
    // The thread id is reported by query-cpus-fast from the start.
    m_parked_cv.wait(lock, [this] { return m_tid != 0; });
}

CpuThread::~CpuThread()
{
    {
        std::lock_guard lock(m_lock);
        m_stop = true;
        m_run = false;
    }
    m_backend.kick();
    m_cv.notify_all();
    m_thread.join();
}

void CpuThread::resume()
{
    std::lock_guard lock(m_lock);
    m_run = true;
    m_self_parked = false;
    m_cv.notify_all();
}

void CpuThread::pause()
{
    std::unique_lock lock(m_lock);
    m_run = false;
    m_backend.kick();
    m_cv.notify_all();
    m_parked_cv.wait(lock, [this] { return m_parked; });
}

void CpuThread::wake()
{
    {
        std::lock_guard lock(m_lock);
        m_wake = true;
        if (m_sleeping)
            m_cv.notify_all();
    }
    m_backend.kick();
}

void CpuThread::park()
{
    std::lock_guard lock(m_lock);
    m_self_parked = true;
}

void CpuThread::inspect(const std::function<void()>& fn)
{
    std::unique_lock lock(m_lock);
    m_holds++;
    m_backend.kick();
    m_cv.notify_all();
    m_parked_cv.wait(lock, [this] { return m_parked || m_sleeping || m_stop; });
    fn();
    m_holds--;
    m_cv.notify_all();
}

std::string CpuThread::describe() const
{
    std::lock_guard lock(m_lock);
    std::string out;
    out += m_run ? "run" : "stopped";
    if (m_parked)
        out += ", parked";
    if (m_self_parked)
        out += ", self-parked";
    if (m_sleeping)
        out += ", sleeping";
    if (m_wake)
        out += ", wake pending";
    return out;
}

bool CpuThread::halted() const
{
    std::lock_guard lock(m_lock);
    return m_sleeping;
}

void CpuThread::main()
{
    {
        std::string short_name = m_name.substr(0, 15);
        pthread_setname_np(pthread_self(), short_name.c_str());
        std::lock_guard lock(m_lock);
        m_tid = int64_t(syscall(SYS_gettid));
        m_parked_cv.notify_all();
    }
    for (;;) {
        {
            std::unique_lock lock(m_lock);
            if (!m_run || m_self_parked || m_holds) {
                m_parked = true;
                m_parked_cv.notify_all();
                m_cv.wait(lock, [this] { return m_stop || (m_run && !m_self_parked && !m_holds); });
                if (m_stop)
                    return;
                m_parked = false;
            }
        }
        if (m_hooks.prepare && !m_hooks.prepare()) {
            std::unique_lock lock(m_lock);
            m_sleeping = true;
            m_parked_cv.notify_all();
            m_cv.wait(lock, [this] { return (m_wake && !m_holds) || !m_run || m_stop; });
            m_sleeping = false;
            m_wake = false;
            continue;
        }
        VcpuExit exit;
        if (m_hooks.token) {
            // A kick while waiting for the turn (pause, an interrupt) makes
            // the slice end at once: the wait is at most one slice per vCPU.
            m_hooks.token->acquire();
            exit = m_backend.run(ExecToken::k_slice);
            m_hooks.token->release();
        } else {
            exit = m_backend.run();
        }
        switch (exit) {
        case VcpuExit::Halted: {
            std::unique_lock lock(m_lock);
            m_sleeping = true;
            m_parked_cv.notify_all();
            m_cv.wait(lock, [this] { return (m_wake && !m_holds) || !m_run || m_stop; });
            m_sleeping = false;
            m_wake = false;
            break;
        }
        case VcpuExit::Kicked:
        case VcpuExit::Budget: {
            std::lock_guard lock(m_lock);
            m_wake = false;
            break;
        }
        default:
            if (m_hooks.on_exit)
                m_hooks.on_exit(exit);
            break;
        }
    }
}

} // namespace emu::devices
