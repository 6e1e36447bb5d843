#pragma once
// Accepting connections on the event loop, without ever blocking it: a new connection waits, for a
// few seconds at most, until its whole request has arrived: its head is peeked at until it is all
// there and checked, then taken; the body is read as it comes (fastcgi::BodyReader). Only then does
// libfcgi decode the head. The body (up to max_body bytes) goes on with the Connection.
// A web server (or anything else) that connects and stalls costs one descriptor until that deadline,
// never the accepting of other requests, and never the shutdown.
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string_view>
#include <unordered_map>

#include "fastsse/loop/event_loop.hpp"
#include "fastsse/fastcgi/records.hpp"

namespace fastsse {

class Acceptor final : public IoHandler {
public:
    // How long a connection may take to send its request, head and body.
    static constexpr std::chrono::seconds head_timeout{5};
    // How long accepting pauses when accept() fails (out of descriptors, most often).
    static constexpr std::chrono::milliseconds accept_pause{100};

    // max_conns: what a web server asking FCGI_GET_VALUES is told. max_body: the largest request
    // body kept for a route; a larger one is read through and dropped (Connection::body_whole).
    Acceptor(EventLoop& loop, int listen_fd, size_t max_conns, size_t max_body,
             std::function<void(Connection)> on_request);
    ~Acceptor();
    Acceptor(const Acceptor&) = delete;
    Acceptor& operator=(const Acceptor&) = delete;

    // New values for both, from a reload: for requests that begin from now on.
    void set_limits(size_t max_conns, size_t max_body) {
        max_conns_ = max_conns;
        max_body_ = max_body;
    }

    // Stops accepting and drops the connections still sending their heads.
    void stop() noexcept;

    void on_io(uint32_t events) override;

private:
    class Pending;
    void accept_all();
    void pause(int error);
    void drop_stale();
    void finished(Pending& pending, std::optional<Connection> connection);
    void refuse(Pending& pending, std::string_view reason);  // logs (within a bound), then closes

    EventLoop& loop_;
    int listen_fd_;
    static constexpr int max_refusals_logged = 20;  // each second (drop_stale's round)

    size_t max_conns_;
    size_t max_body_;
    int refusals_ = 0;
    bool listening_ = true;
    bool paused_ = false;
    // Set while accept() fails (for want of descriptors, mostly): one log line per episode.
    std::optional<EventLoop::Clock::time_point> failing_since_;
    std::function<void(Connection)> on_request_;
    std::unordered_map<Pending*, std::unique_ptr<Pending>> pending_;
    Timer stale_timer_;
    Timer resume_timer_;
};

}  // namespace fastsse
