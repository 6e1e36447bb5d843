#pragma once
// SIGTERM, SIGINT and SIGHUP read on the loop through a signalfd: no code runs in a signal handler.
// The signals must already be blocked in every thread (main does it first of all).
#include <functional>

#include "fastsse/loop/event_loop.hpp"
#include "fastsse/loop/fd.hpp"

namespace fastsse {

class Signals final : public IoHandler {
public:
    // Throws std::runtime_error when the signalfd cannot be made.
    Signals(EventLoop& loop, std::function<void(int)> on_signal);
    ~Signals();
    Signals(const Signals&) = delete;
    Signals& operator=(const Signals&) = delete;

    void on_io(uint32_t events) override;

private:
    EventLoop& loop_;
    UniqueFd fd_;
    std::function<void(int)> on_signal_;
};

}  // namespace fastsse
