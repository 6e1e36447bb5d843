#pragma once
// The server: hands each request from the Acceptor to its route, keeps the open streams, sweeps them
// (heartbeats, stalled clients), reloads on SIGHUP and shuts down on SIGTERM/SIGINT. All on one thread.
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "fastsse/config/settings.hpp"
#include "fastsse/fastcgi/acceptor.hpp"
#include "fastsse/fastcgi/records.hpp"
#include "fastsse/http/router.hpp"
#include "fastsse/http/stream.hpp"
#include "fastsse/loop/event_loop.hpp"
#include "fastsse/loop/signals.hpp"

namespace fastsse {

class Server final : public Streams, private StreamOwner {
public:
    // SIGTERM, SIGINT and SIGHUP must already be blocked in every thread: the server reads them
    // from a signalfd. `settings` are the process's, which `reload` (on SIGHUP) may change: the
    // server reads its limits there for each new stream and request.
    Server(EventLoop& loop, Router& routes, const Settings& settings, int listen_fd, std::function<void()> reload);
    ~Server();
    // Serves until SIGTERM/SIGINT, then ends every stream cleanly and returns.
    void run();

    // Streams
    void check_room() const override;
    Stream& open(Connection connection, const StreamLimits& limits, std::string what) override;

private:
    void retire(Stream& stream) noexcept override;
    std::vector<Stream*> snapshot() const;
    void sweep();
    void shut_down();

    EventLoop& loop_;
    Router& routes_;
    const Settings& settings_;
    int listen_fd_;
    std::function<void()> reload_;

    std::unordered_map<uint64_t, std::unique_ptr<Stream>> streams_;
    uint64_t next_stream_id_ = 1;
    bool shutting_down_ = false;

    Timer sweep_timer_;
    Timer shutdown_timer_;
    std::unique_ptr<Signals> signals_;
    std::unique_ptr<Acceptor> acceptor_;
};

}  // namespace fastsse
