#pragma once
// Running a real EventLoop in a test until a condition holds, with a deadline so that a bug fails the
// test instead of hanging it.
#include <doctest/doctest.h>

#include <chrono>
#include <functional>

#include "fastsse/event_loop.hpp"

namespace fastsse_test {

// Runs the loop until done() holds (checked every 2 ms, and whenever something else stops the
// loop), or until the deadline; returns done().
inline bool run_loop_until(fastsse::EventLoop& loop, const std::function<bool()>& done,
                           std::chrono::milliseconds deadline) {
    using namespace std::chrono_literals;
    if (done()) return true;
    bool timed_out = false;
    auto guard = loop.call_after(deadline, [&] {
        timed_out = true;
        loop.stop();
    });
    fastsse::Timer poll;
    std::function<void()> check = [&] {
        if (done()) loop.stop();
        else poll = loop.call_after(2ms, check);
    };
    poll = loop.call_after(0ms, check);
    loop.run();
    if (timed_out) MESSAGE("the loop ran into its deadline");
    return done();
}

}  // namespace fastsse_test
