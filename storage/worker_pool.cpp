// storage/worker_pool.cpp — the block layer's worker threads.
#include "storage/worker_pool.h"

namespace emu::storage {

WorkerPool::WorkerPool(unsigned threads)
{
    for (unsigned i = 0; i < threads; i++)
        m_threads.emplace_back([this] { run(); });
}

WorkerPool::~WorkerPool()
{
    {
        std::lock_guard lock(m_mutex);
        m_stopping = true;
    }
    m_cv.notify_all();
    for (auto& t : m_threads)
        t.join();
}

void WorkerPool::submit(std::function<void()> job)
{
    {
        std::lock_guard lock(m_mutex);
        m_jobs.push_back(std::move(job));
    }
    m_cv.notify_one();
}

void WorkerPool::run()
{
    while (true) {
        std::function<void()> job;
        {
            std::unique_lock lock(m_mutex);
            m_cv.wait(lock, [this] { return m_stopping || !m_jobs.empty(); });
            if (m_jobs.empty())
                return;
            job = std::move(m_jobs.front());
            m_jobs.pop_front();
        }
        job();
    }
}

WorkerPool& WorkerPool::shared()
{
    static WorkerPool pool(4);
    return pool;
}

} // namespace emu::storage
