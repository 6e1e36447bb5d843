#include "fastsse/loop/event_loop.hpp"

#include <spdlog/spdlog.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>

#include <cerrno>
#include <system_error>

namespace fastsse {

namespace {
[[noreturn]] void throw_errno(const char* what) { throw std::system_error(errno, std::generic_category(), what); }

template <class Fn>
void guarded(Fn&& fn) noexcept {
    try {
        fn();
    } catch (const std::exception& e) {
        spdlog::error("bug: an event-loop callback threw: {}", e.what());
    } catch (...) {
        spdlog::error("bug: an event-loop callback threw");
    }
}
}  // namespace

Timer& Timer::operator=(Timer&& o) noexcept {
    if (this != &o) {
        cancel();
        loop_ = std::exchange(o.loop_, nullptr);
        id_ = o.id_;
    }
    return *this;
}

void Timer::cancel() noexcept {
    if (loop_) std::exchange(loop_, nullptr)->cancel(id_);
}

EventLoop::EventLoop()
    : epoll_(::epoll_create1(EPOLL_CLOEXEC)), wake_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
    if (!epoll_ || !wake_) throw_errno("epoll/eventfd");
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.ptr = nullptr;  // the wake-up eventfd is the only handler-less entry
    if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, wake_.get(), &ev) < 0) throw_errno("epoll_ctl");
}

EventLoop::~EventLoop() { destroy_doomed(); }

void EventLoop::add(int fd, uint32_t events, IoHandler* handler) {
    epoll_event ev{};
    ev.events = events;
    ev.data.ptr = handler;
    if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) < 0) throw_errno("epoll_ctl add");
}

bool EventLoop::modify(int fd, uint32_t events, IoHandler* handler) noexcept {
    epoll_event ev{};
    ev.events = events;
    ev.data.ptr = handler;
    return ::epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, fd, &ev) == 0;
}

void EventLoop::remove(int fd) noexcept { ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, nullptr); }

Timer EventLoop::call_at(Clock::time_point when, std::function<void()> fn) {
    auto id = next_timer_id_++;
    timers_.emplace(std::pair(when, id), std::move(fn));
    timer_deadlines_.emplace(id, when);
    return Timer(this, id);
}

void EventLoop::cancel(uint64_t id) noexcept {
    auto it = timer_deadlines_.find(id);
    if (it == timer_deadlines_.end()) return;
    timers_.erase(std::pair(it->second, id));
    timer_deadlines_.erase(it);
}

void EventLoop::post(std::function<void()> fn) {
    bool was_empty;
    {
        std::lock_guard lock(posted_mutex_);
        was_empty = posted_.empty();
        posted_.push_back(std::move(fn));
    }
    if (was_empty) {
        uint64_t one = 1;
        [[maybe_unused]] auto n = ::write(wake_.get(), &one, sizeof one);
    }
}

void EventLoop::stop() noexcept { running_ = false; }

int EventLoop::timeout_ms() const {
    {
        std::lock_guard lock(posted_mutex_);
        if (!posted_.empty()) return 0;
    }
    if (timers_.empty()) return -1;
    auto wait = timers_.begin()->first.first - Clock::now();
    if (wait <= Clock::duration::zero()) return 0;
    // Round up: waking early would only spin until the deadline.
    return static_cast<int>(std::chrono::ceil<std::chrono::milliseconds>(wait).count());
}

void EventLoop::run_timers() {
    // Timers due now run in deadline order; one added while running waits for the next round.
    auto limit = now_;
    while (!timers_.empty() && timers_.begin()->first.first <= limit) {
        auto node = timers_.extract(timers_.begin());
        timer_deadlines_.erase(node.key().second);
        guarded(node.mapped());
    }
}

void EventLoop::run_posted() {
    std::vector<std::function<void()>> batch;
    {
        std::lock_guard lock(posted_mutex_);
        batch.swap(posted_);
    }
    for (auto& fn : batch) guarded(fn);
}

void EventLoop::destroy_doomed() noexcept {
    while (!doomed_.empty()) {
        auto batch = std::move(doomed_);
        doomed_.clear();
        // Destructors are noexcept: one that throws ends the process, as it would anywhere else.
        batch.clear();
    }
}

void EventLoop::run() {
    running_ = true;
    constexpr int max_events = 256;
    epoll_event events[max_events];
    while (running_) {
        int n = ::epoll_wait(epoll_.get(), events, max_events, timeout_ms());
        if (n < 0 && errno != EINTR) throw_errno("epoll_wait");
        now_ = Clock::now();
        for (int i = 0; i < n; ++i) {
            if (auto* handler = static_cast<IoHandler*>(events[i].data.ptr)) {
                guarded([&] { handler->on_io(events[i].events); });
            } else {
                uint64_t count;
                [[maybe_unused]] auto r = ::read(wake_.get(), &count, sizeof count);
            }
        }
        run_timers();
        run_posted();
        destroy_doomed();
    }
}

}  // namespace fastsse
