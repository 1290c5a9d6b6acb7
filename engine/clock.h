// engine/clock.h — the clocks devices count time with, and their timers.
//
// A Clock gives nanoseconds (`now_ns`) and owns a queue of Timers. A Timer
// belongs to a device: a callback plus a deadline on one clock. Two clocks:
//  - SteppedClock (tests): time moves only in `advance(ns)`, which fires the
//    due timers in deadline order (equal deadlines in arming order) and shows
//    each callback `now_ns() == its deadline`, so device tests are exact and
//    need no CPU and no sleeping;
//  - HostClock (machines): CLOCK_MONOTONIC, optionally paused while the VM is
//    stopped (the "vm" clock). Nothing fires by itself: the machine's timer
//    thread sleeps until `next_deadline()` and calls `run_due()`; a deadline
//    listener tells it when an `arm` made the earliest deadline earlier.
// HostTime gives wall-clock time (the RTC's date); tests inject FixedHostTime.
//
// Threads:
//  - now_ns(), next_deadline() and Timer::pending()/deadline() may be called
//    from any thread (the queue has its own mutex).
//  - arm()/cancel() may be called from any thread, but callbacks run on the
//    thread that calls run_due()/advance(), which must hold the lock that
//    guards the devices owning the timers (the VM's device lock), exactly as
//    a vCPU touching those devices does. So device state is never touched by
//    two threads at once, and a timer cancelled under that lock never fires
//    afterwards.
//  - Callbacks run without the queue mutex held: they may arm/cancel any
//    timer, including their own (periodic devices re-arm from the callback).
//  - A Timer must be destroyed (it cancels itself) before its Clock, and not
//    while its callback is running on another thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <mutex>
#include <string>

namespace emu {

inline constexpr int64_t kNoDeadline = std::numeric_limits<int64_t>::max();
inline constexpr int64_t kNsPerSec = 1'000'000'000;

class Timer;

class Clock {
public:
    virtual ~Clock();
    Clock(const Clock&) = delete;
    Clock& operator=(const Clock&) = delete;

    virtual int64_t now_ns() const = 0;

    // The earliest armed deadline, or kNoDeadline.
    int64_t next_deadline() const;
    // Called (outside the queue mutex, on the arming thread) whenever an arm()
    // makes the earliest deadline earlier: the machine's timer thread wakes
    // and sleeps again until the new deadline. Set before timers are armed.
    void set_deadline_listener(std::function<void(int64_t deadline)> listener);

protected:
    Clock() = default;
    // Fires timers with deadline <= `limit`, earliest first. `before_fire` runs
    // (with the deadline) before each callback: SteppedClock moves its time
    // there. Stops after `max_fires` callbacks; returns how many ran.
    size_t fire_until(int64_t limit, size_t max_fires, const std::function<void(int64_t)>& before_fire);

private:
    friend class Timer;
    using Queue = std::multimap<int64_t, Timer*>;
    void arm(Timer& timer, int64_t deadline);
    void cancel(Timer& timer);

    mutable std::mutex m_lock;
    Queue m_queue; // guarded by m_lock
    std::function<void(int64_t)> m_listener;
};

class Timer {
public:
    using Callback = std::function<void()>;
    Timer(Clock& clock, Callback callback);
    ~Timer();
    Timer(const Timer&) = delete;
    Timer& operator=(const Timer&) = delete;

    Clock& clock() const { return m_clock; }
    // (Re)arms at an absolute deadline on the clock; a deadline in the past
    // fires at the next run_due()/advance().
    void arm(int64_t deadline_ns);
    // Arms `delay_ns` from now.
    void arm_in(int64_t delay_ns);
    void cancel();
    bool pending() const;
    int64_t deadline() const; // kNoDeadline when not pending

private:
    friend class Clock;
    Clock& m_clock;
    Callback m_callback;
    // Guarded by the clock's m_lock.
    bool m_pending = false;
    Clock::Queue::iterator m_pos;
};

// The test clock: time starts at `start_ns` and moves only in advance().
class SteppedClock final : public Clock {
public:
    explicit SteppedClock(int64_t start_ns = 0) : m_now(start_ns) {}
    int64_t now_ns() const override;
    // Moves time forward by `ns` (>= 0), firing due timers on the way; each
    // callback sees now_ns() equal to its deadline. Returns callbacks run.
    // A device that re-arms at the same instant forever is a bug: asserted
    // after a million firings without time moving.
    size_t advance(int64_t ns);
    // Moves to an absolute time (>= now).
    size_t advance_to(int64_t ns);

private:
    std::atomic<int64_t> m_now;
};

// CLOCK_MONOTONIC in ns, from 0 at construction. pause()/resume() make it the
// "vm" clock: time stands still while the VM is stopped.
class HostClock final : public Clock {
public:
    HostClock();
    int64_t now_ns() const override;
    // Fires the due timers, at most `max_fires` (so a guest programming a
    // tiny period cannot keep the device lock forever: the machine calls
    // again, releasing the lock in between). Returns callbacks run.
    size_t run_due(size_t max_fires = 1024);
    void pause();
    void resume();
    bool paused() const;

private:
    static int64_t raw_ns();
    mutable std::mutex m_state_lock;
    int64_t m_origin;      // raw time that reads as 0 (guarded)
    int64_t m_paused_at;   // guest time while paused, or -1 (guarded)
};

// Wall-clock time for the RTC.
class HostTime {
public:
    virtual ~HostTime() = default;
    // Nanoseconds since 1970-01-01T00:00:00Z.
    virtual int64_t realtime_ns() const = 0;
    // The host's local time minus UTC, in seconds, at `unix_s`.
    virtual int64_t utc_offset_s(int64_t unix_s) const = 0;
};

// CLOCK_REALTIME and the host's time zone (localtime_r).
class SystemHostTime final : public HostTime {
public:
    int64_t realtime_ns() const override;
    int64_t utc_offset_s(int64_t unix_s) const override;
};

// Tests: a date that moves only when told, with a settable zone offset.
class FixedHostTime final : public HostTime {
public:
    explicit FixedHostTime(int64_t realtime_ns = 0, int64_t utc_offset_s = 0)
        : m_now(realtime_ns), m_offset(utc_offset_s)
    {
    }
    int64_t realtime_ns() const override { return m_now; }
    int64_t utc_offset_s(int64_t) const override { return m_offset; }
    void set(int64_t realtime_ns) { m_now = realtime_ns; }
    void advance(int64_t ns) { m_now += ns; }
    void set_utc_offset(int64_t seconds) { m_offset = seconds; }

private:
    int64_t m_now;
    int64_t m_offset;
};

// Calendar helpers shared by the RTC and tests (proleptic Gregorian, UTC).
struct CivilTime {
    int year = 1970; // e.g. 2024
    int month = 1;   // 1..12
    int day = 1;     // 1..31
    int hour = 0, minute = 0, second = 0;
    int weekday = 4; // 0 = Sunday .. 6 = Saturday (output only)
};
CivilTime civil_from_unix(int64_t unix_s);
// Out-of-range fields are not errors: month is clamped to 1..12 and the
// other fields count on (day 32 of January is 1 February), so any guest
// value has a defined result.
int64_t unix_from_civil(const CivilTime& t);
// "2006-06-17T16:01:21" or "2006-06-17" (QEMU's -rtc base=DATE) -> unix
// seconds; false on anything else.
bool parse_iso_date(const std::string& text, int64_t& unix_s);

} // namespace emu
