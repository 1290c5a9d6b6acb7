// daemon/loop.h — the control thread's libuv loop, and a way for any thread
// (a vCPU, a block worker) to run a function on it.
#pragma once

#include <functional>
#include <mutex>
#include <uv.h>
#include <vector>

namespace emu::daemon {

class Loop {
public:
    Loop();
    ~Loop();
    Loop(const Loop&) = delete;
    Loop& operator=(const Loop&) = delete;

    uv_loop_t* uv() { return &m_loop; }
    // Runs fn on the loop thread soon. Safe from any thread; from the loop
    // thread itself it defers fn until the current callback has returned.
    void post(std::function<void()> fn);
    int run() { return uv_run(&m_loop, UV_RUN_DEFAULT); }
    void stop() { uv_stop(&m_loop); }
    // Closes the poster handle so that run() can return once all else closed.
    void close();

private:
    static void on_async(uv_async_t* handle);

    uv_loop_t m_loop;
    uv_async_t m_async;
    std::mutex m_mutex;
    std::vector<std::function<void()>> m_queue;
    bool m_closed = false;
};

} // namespace emu::daemon
