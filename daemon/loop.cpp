#include "daemon/loop.h"

#include <cstdio>
#include <cstdlib>

namespace emu::daemon {

Loop::Loop()
{
    if (uv_loop_init(&m_loop) != 0 || uv_async_init(&m_loop, &m_async, on_async) != 0) {
        fprintf(stderr, "emud: cannot initialise the event loop\n");
        abort();
    }
    m_async.data = this;
}

Loop::~Loop()
{
    close();
    // Let every pending close callback run, then free the loop.
    uv_run(&m_loop, UV_RUN_DEFAULT);
    uv_loop_close(&m_loop);
}

void Loop::close()
{
    if (m_closed)
        return;
    m_closed = true;
    uv_close(reinterpret_cast<uv_handle_t*>(&m_async), nullptr);
}

void Loop::post(std::function<void()> fn)
{
    {
        std::lock_guard lock(m_mutex);
        m_queue.push_back(std::move(fn));
    }
    uv_async_send(&m_async);
}

void Loop::on_async(uv_async_t* handle)
{
    auto* self = static_cast<Loop*>(handle->data);
    std::vector<std::function<void()>> work;
    {
        std::lock_guard lock(self->m_mutex);
        work.swap(self->m_queue);
    }
    for (auto& fn : work)
        fn();
}

} // namespace emu::daemon
