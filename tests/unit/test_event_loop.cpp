// The event loop: timers, posted tasks, descriptors; and a callback that throws is a bug that is
// logged, not one that ends every stream of the process.
#include <doctest/doctest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <sys/epoll.h>

#include <sstream>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "fastsse/loop/event_loop.hpp"

using namespace std::chrono_literals;

namespace {

struct Throws final : fastsse::IoHandler {
    int calls = 0;
    void on_io(uint32_t) override {
        ++calls;
        throw std::runtime_error("handler bug");
    }
};

}  // namespace

TEST_CASE("EventLoop: a callback that throws is logged and the loop goes on") {
    std::ostringstream log;
    auto previous = spdlog::default_logger();
    auto logger = std::make_shared<spdlog::logger>("test", std::make_shared<spdlog::sinks::ostream_sink_mt>(log));
    logger->set_pattern("%l %v");
    spdlog::set_default_logger(logger);

    fastsse::EventLoop loop;
    Throws handler;
    fastsse::UniqueFd ready(::eventfd(1, EFD_CLOEXEC | EFD_NONBLOCK));  // readable once, and stays so
    loop.add(ready.get(), EPOLLIN | EPOLLET, &handler);
    bool later_timer = false, posted = false;
    auto bad_timer = loop.call_after(0ms, [] { throw std::logic_error("timer bug"); });
    auto good_timer = loop.call_after(5ms, [&] { later_timer = true; });
    loop.post([] { throw std::runtime_error("posted bug"); });
    loop.post([&] { posted = true; });
    auto stop = loop.call_after(20ms, [&] { loop.stop(); });
    CHECK_NOTHROW(loop.run());
    loop.remove(ready.get());
    spdlog::set_default_logger(previous);

    CHECK(handler.calls == 1);
    CHECK(later_timer);
    CHECK(posted);
    CHECK(log.str().find("error bug: an event-loop callback threw: timer bug") != std::string::npos);
    CHECK(log.str().find("error bug: an event-loop callback threw: handler bug") != std::string::npos);
    CHECK(log.str().find("error bug: an event-loop callback threw: posted bug") != std::string::npos);
}

TEST_CASE("EventLoop: modify reports a descriptor it does not watch instead of throwing") {
    fastsse::EventLoop loop;
    fastsse::UniqueFd fd(::eventfd(0, EFD_CLOEXEC));
    Throws handler;
    CHECK_FALSE(loop.modify(fd.get(), EPOLLIN, &handler));
    loop.add(fd.get(), EPOLLIN, &handler);
    CHECK(loop.modify(fd.get(), EPOLLIN | EPOLLOUT, &handler));
    loop.remove(fd.get());
}

TEST_CASE("EventLoop: timers run in deadline order, those added for the same time in the order added") {
    fastsse::EventLoop loop;
    std::vector<int> order;
    auto now = fastsse::EventLoop::Clock::now();
    auto c = loop.call_at(now + 3ms, [&] { order.push_back(3); });
    auto a = loop.call_at(now + 1ms, [&] { order.push_back(1); });
    auto b1 = loop.call_at(now + 2ms, [&] { order.push_back(21); });
    auto b2 = loop.call_at(now + 2ms, [&] { order.push_back(22); });
    auto stop = loop.call_at(now + 10ms, [&] { loop.stop(); });
    loop.run();
    CHECK(order == std::vector<int>{1, 21, 22, 3});
}

TEST_CASE("EventLoop: a timer cancelled by another one due at the same time does not run") {
    fastsse::EventLoop loop;
    auto now = fastsse::EventLoop::Clock::now();
    bool second_ran = false;
    fastsse::Timer second;
    auto first = loop.call_at(now + 1ms, [&] { second.cancel(); });
    second = loop.call_at(now + 1ms, [&] { second_ran = true; });
    auto stop = loop.call_at(now + 5ms, [&] { loop.stop(); });
    loop.run();
    CHECK_FALSE(second_ran);
}

TEST_CASE("EventLoop: post() from another thread wakes the loop") {
    fastsse::EventLoop loop;
    bool ran = false;
    std::thread other([&] { loop.post([&] {
        ran = true;
        loop.stop();
    }); });
    auto guard = loop.call_after(5s, [&] { loop.stop(); });  // a failure, not a hang
    loop.run();
    other.join();
    CHECK(ran);
}

namespace {

// Records its destruction; may doom another object from its destructor, as a stream dooms the
// command run it was the last viewer of.
struct Doomed {
    Doomed(std::vector<std::string>& log, std::string name, fastsse::EventLoop& loop)
        : log(log), name(std::move(name)), loop(&loop) {}
    std::vector<std::string>& log;
    std::string name;
    fastsse::EventLoop* loop;
    std::unique_ptr<Doomed> next;
    ~Doomed() {
        log.push_back(name);
        if (next) loop->destroy_later(std::move(next));
    }
};

}  // namespace

TEST_CASE("EventLoop: destroy_later destroys after the callback returns, chained ones in the same round") {
    fastsse::EventLoop loop;
    std::vector<std::string> log;
    bool alive_in_callback = false;
    std::vector<std::string> seen_by_next_timer;
    auto t = loop.call_after(1ms, [&] {
        auto first = std::make_unique<Doomed>(log, "first", loop);
        first->next = std::make_unique<Doomed>(log, "second", loop);
        auto* raw = first.get();
        loop.destroy_later(std::move(first));
        alive_in_callback = raw->name == "first" && log.empty();  // still usable here
    });
    auto later = loop.call_after(3ms, [&] {
        seen_by_next_timer = log;
        loop.stop();
    });
    loop.run();
    CHECK(alive_in_callback);
    CHECK(seen_by_next_timer == std::vector<std::string>{"first", "second"});
}

TEST_CASE("EventLoop: destroy_doomed() destroys what was doomed outside run(); the destructor does too") {
    std::vector<std::string> log;
    {
        fastsse::EventLoop loop;
        loop.destroy_later(std::make_unique<Doomed>(log, "a", loop));
        CHECK(log.empty());
        loop.destroy_doomed();
        CHECK(log == std::vector<std::string>{"a"});
        loop.destroy_later(std::make_unique<Doomed>(log, "b", loop));
    }
    CHECK(log == std::vector<std::string>{"a", "b"});
}
