// The event loop: timers, posted tasks, descriptors; and a callback that throws is a bug that is
// logged, not one that ends every stream of the process.
#include <doctest/doctest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <sys/epoll.h>

#include <sstream>
#include <stdexcept>

#include "fastsse/event_loop.hpp"

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
