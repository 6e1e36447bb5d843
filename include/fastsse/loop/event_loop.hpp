#pragma once
// The event machinery every stream and producer runs on: one epoll set, timers, and tasks posted
// from other threads. Single-threaded: everything but post() must be called on the loop's thread.
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "fastsse/loop/fd.hpp"

namespace fastsse {

// Something that owns a descriptor in the loop (a stream's connection, a signalfd, later a pipe).
class IoHandler {
public:
    virtual void on_io(uint32_t epoll_events) = 0;

protected:
    ~IoHandler() = default;
};

class EventLoop;

// A pending timer; cancelled when destroyed. Move-only.
class Timer {
public:
    Timer() noexcept = default;
    Timer(Timer&& o) noexcept : loop_(std::exchange(o.loop_, nullptr)), id_(o.id_) {}
    Timer& operator=(Timer&& o) noexcept;
    Timer(const Timer&) = delete;
    Timer& operator=(const Timer&) = delete;
    ~Timer() { cancel(); }
    void cancel() noexcept;
    explicit operator bool() const noexcept { return loop_ != nullptr; }

private:
    friend class EventLoop;
    Timer(EventLoop* loop, uint64_t id) noexcept : loop_(loop), id_(id) {}
    EventLoop* loop_ = nullptr;
    uint64_t id_ = 0;
};

class EventLoop {
public:
    using Clock = std::chrono::steady_clock;

    EventLoop();
    ~EventLoop();
    EventLoop(const EventLoop&) = delete;
    EventLoop& operator=(const EventLoop&) = delete;

    void add(int fd, uint32_t events, IoHandler* handler);  // throws std::system_error
    // false (errno set) when the kernel refuses: the caller's descriptor is then of no more use.
    [[nodiscard]] bool modify(int fd, uint32_t events, IoHandler* handler) noexcept;
    void remove(int fd) noexcept;

    // Runs fn once at `when`; keep the Timer alive for as long as the call should happen.
    [[nodiscard]] Timer call_at(Clock::time_point when, std::function<void()> fn);
    [[nodiscard]] Timer call_after(Clock::duration delay, std::function<void()> fn) {
        return call_at(Clock::now() + delay, std::move(fn));
    }

    // Runs fn on the loop's thread after the current callback returns. Safe from any thread.
    void post(std::function<void()> fn);

    // Destroys `object` once the current callback has returned, before the loop waits again: the
    // one way to end something from inside its own callbacks (a stream whose write failed, a run
    // whose process exited), as libuv's uv_close and redis's freeClientAsync do. What a destructor
    // dooms in turn is destroyed in the same round. Loop's thread only.
    template <class T>
    void destroy_later(std::unique_ptr<T> object) {
        if (object) doomed_.emplace_back(object.release(), [](void* p) noexcept { delete static_cast<T*>(p); });
    }
    // Destroys now what destroy_later() holds. run() does it every round; call it after run()
    // returned, before destroying what those objects refer to.
    void destroy_doomed() noexcept;

    // Runs until stop(). A callback that throws is a bug: it is logged, and the loop goes on, so
    // that one stream's bug does not end every other stream.
    void run();
    void stop() noexcept;  // loop's thread only

    // The time of the current iteration: one clock read shared by all callbacks it runs.
    Clock::time_point now() const noexcept { return now_; }

private:
    friend class Timer;
    void cancel(uint64_t id) noexcept;
    void run_timers();
    void run_posted();
    int timeout_ms() const;

    UniqueFd epoll_;
    UniqueFd wake_;  // eventfd: post() from another thread
    bool running_ = false;
    Clock::time_point now_ = Clock::now();

    uint64_t next_timer_id_ = 1;
    std::map<std::pair<Clock::time_point, uint64_t>, std::function<void()>> timers_;
    std::unordered_map<uint64_t, Clock::time_point> timer_deadlines_;

    std::vector<std::unique_ptr<void, void (*)(void*) noexcept>> doomed_;

    mutable std::mutex posted_mutex_;
    std::vector<std::function<void()>> posted_;
};

}  // namespace fastsse
