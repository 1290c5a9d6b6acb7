// engine/clock.cpp — timer queues, the stepped and host clocks, wall time.
#include "engine/clock.h"

#include <algorithm>
#include <cassert>
#include <chrono>
#include <cstdio>
#include <ctime>

namespace emu {

// ---- Clock -----------------------------------------------------------------

Clock::~Clock()
{
    std::lock_guard guard(m_lock);
    assert(m_queue.empty() && "a Timer outlived its Clock");
}

int64_t Clock::next_deadline() const
{
    std::lock_guard guard(m_lock);
    return m_queue.empty() ? kNoDeadline : m_queue.begin()->first;
}

void Clock::set_deadline_listener(std::function<void(int64_t)> listener)
{
    std::lock_guard guard(m_lock);
    m_listener = std::move(listener);
}

void Clock::arm(Timer& timer, int64_t deadline)
{
    std::function<void(int64_t)> notify;
    {
        std::lock_guard guard(m_lock);
        int64_t old_first = m_queue.empty() ? kNoDeadline : m_queue.begin()->first;
        if (timer.m_pending)
            m_queue.erase(timer.m_pos);
        timer.m_pos = m_queue.emplace(deadline, &timer); // after equal keys: arming order
        timer.m_pending = true;
        if (deadline < old_first && m_listener)
            notify = m_listener;
    }
    if (notify)
        notify(deadline);
}

void Clock::cancel(Timer& timer)
{
    std::lock_guard guard(m_lock);
    if (!timer.m_pending)
        return;
    m_queue.erase(timer.m_pos);
    timer.m_pending = false;
}

size_t Clock::fire_until(int64_t limit, size_t max_fires, const std::function<void(int64_t)>& before_fire)
{
    size_t fired = 0;
    while (fired < max_fires) {
        Timer* timer;
        int64_t deadline;
        {
            std::lock_guard guard(m_lock);
            if (m_queue.empty() || m_queue.begin()->first > limit)
                break;
            auto first = m_queue.begin();
            deadline = first->first;
            timer = first->second;
            m_queue.erase(first);
            timer->m_pending = false;
        }
        if (before_fire)
            before_fire(deadline);
        ++fired;
        if (timer->m_callback)
            timer->m_callback();
    }
    return fired;
}

// ---- Timer -----------------------------------------------------------------

Timer::Timer(Clock& clock, Callback callback) : m_clock(clock), m_callback(std::move(callback)) {}

Timer::~Timer()
{
    cancel();
}

void Timer::arm(int64_t deadline_ns)
{
    m_clock.arm(*this, deadline_ns);
}

void Timer::arm_in(int64_t delay_ns)
{
    int64_t now = m_clock.now_ns();
    int64_t deadline = delay_ns > kNoDeadline - now ? kNoDeadline - 1 : now + std::max<int64_t>(delay_ns, 0);
    m_clock.arm(*this, deadline);
}

void Timer::cancel()
{
    m_clock.cancel(*this);
}

bool Timer::pending() const
{
    std::lock_guard guard(m_clock.m_lock);
    return m_pending;
}

int64_t Timer::deadline() const
{
    std::lock_guard guard(m_clock.m_lock);
    return m_pending ? m_pos->first : kNoDeadline;
}

// ---- SteppedClock ----------------------------------------------------------

int64_t SteppedClock::now_ns() const
{
    return m_now.load(std::memory_order_acquire);
}

size_t SteppedClock::advance(int64_t ns)
{
    assert(ns >= 0);
    return advance_to(now_ns() + ns);
}

size_t SteppedClock::advance_to(int64_t target)
{
    assert(target >= now_ns());
    size_t total = 0;
    size_t same_instant = 0;
    int64_t last = now_ns();
    auto move_to = [&](int64_t deadline) {
        // A deadline armed in the past fires "now": time never goes back.
        int64_t t = std::max(deadline, now_ns());
        same_instant = t == last ? same_instant + 1 : 0;
        assert(same_instant < 1'000'000 && "a timer re-arms at the same instant forever");
        last = t;
        m_now.store(t, std::memory_order_release);
    };
    for (;;) {
        size_t n = fire_until(target, 1024, move_to);
        total += n;
        if (n < 1024)
            break;
    }
    m_now.store(target, std::memory_order_release);
    return total;
}

// ---- HostClock -------------------------------------------------------------

int64_t HostClock::raw_ns()
{
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return int64_t(ts.tv_sec) * kNsPerSec + ts.tv_nsec;
}

HostClock::HostClock() : m_origin(raw_ns()), m_paused_at(-1) {}

int64_t HostClock::now_ns() const
{
    std::lock_guard guard(m_state_lock);
    return m_paused_at >= 0 ? m_paused_at : raw_ns() - m_origin;
}

size_t HostClock::run_due(size_t max_fires)
{
    return fire_until(now_ns(), max_fires, nullptr);
}

void HostClock::pause()
{
    std::lock_guard guard(m_state_lock);
    if (m_paused_at < 0)
        m_paused_at = raw_ns() - m_origin;
}

void HostClock::resume()
{
    std::lock_guard guard(m_state_lock);
    if (m_paused_at >= 0) {
        m_origin = raw_ns() - m_paused_at;
        m_paused_at = -1;
    }
}

bool HostClock::paused() const
{
    std::lock_guard guard(m_state_lock);
    return m_paused_at >= 0;
}

// ---- Wall time -------------------------------------------------------------

int64_t SystemHostTime::realtime_ns() const
{
    timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return int64_t(ts.tv_sec) * kNsPerSec + ts.tv_nsec;
}

int64_t SystemHostTime::utc_offset_s(int64_t unix_s) const
{
    time_t t = time_t(unix_s);
    tm local{};
    if (!localtime_r(&t, &local))
        return 0;
    return local.tm_gmtoff;
}

namespace {

int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

} // namespace

CivilTime civil_from_unix(int64_t unix_s)
{
    using namespace std::chrono;
    int64_t days = floor_div(unix_s, 86400);
    int64_t rem = unix_s - days * 86400;
    sys_days sd{std::chrono::days(days)};
    year_month_day ymd{sd};
    CivilTime t;
    t.year = int(ymd.year());
    t.month = int(unsigned(ymd.month()));
    t.day = int(unsigned(ymd.day()));
    t.hour = int(rem / 3600);
    t.minute = int(rem / 60 % 60);
    t.second = int(rem % 60);
    t.weekday = int(weekday(sd).c_encoding());
    return t;
}

int64_t unix_from_civil(const CivilTime& t)
{
    using namespace std::chrono;
    int y = std::clamp(t.year, -30000, 30000);
    unsigned m = unsigned(std::clamp(t.month, 1, 12));
    sys_days first = sys_days(year(y) / month(m) / day(1));
    int64_t days = first.time_since_epoch().count() + int64_t(t.day) - 1;
    return days * 86400 + int64_t(t.hour) * 3600 + int64_t(t.minute) * 60 + t.second;
}

bool parse_iso_date(const std::string& text, int64_t& unix_s)
{
    CivilTime t;
    int consumed = 0;
    if (sscanf(text.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d%n", &t.year, &t.month, &t.day, &t.hour, &t.minute,
               &t.second, &consumed) == 6 &&
        size_t(consumed) == text.size()) {
    } else {
        t = CivilTime{};
        consumed = 0;
        if (sscanf(text.c_str(), "%4d-%2d-%2d%n", &t.year, &t.month, &t.day, &consumed) != 3 ||
            size_t(consumed) != text.size())
            return false;
    }
    using namespace std::chrono;
    if (t.year < 1 || !year_month_day(year(t.year) / month(unsigned(t.month)) / day(unsigned(t.day))).ok())
        return false;
    if (t.hour > 23 || t.minute > 59 || t.second > 59 || t.hour < 0 || t.minute < 0 || t.second < 0)
        return false;
    unix_s = unix_from_civil(t);
    return true;
}

} // namespace emu
