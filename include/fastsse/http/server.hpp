#pragma once
// The server: takes each request from the Acceptor, routes it to its producer or answers it with an
// error, keeps the streams, sends heartbeats, and shuts down on SIGTERM/SIGINT. All on one thread.
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "fastsse/fastcgi/acceptor.hpp"
#include "fastsse/loop/event_loop.hpp"
#include "fastsse/fastcgi/records.hpp"
#include "fastsse/producers/producer.hpp"
#include "fastsse/config/settings.hpp"
#include "fastsse/http/stream.hpp"

namespace fastsse {

class Server final : private StreamOwner {
public:
    // SIGTERM and SIGINT must already be blocked in every thread: the server reads them from a signalfd.
    Server(EventLoop& loop, const Registry& registry, const Settings& settings, int listen_fd);
    ~Server();
    // Serves until SIGTERM/SIGINT, then ends every stream cleanly and returns.
    void run();

private:
    class Signals;

    void on_connection(Connection connection);
    void serve(Connection& connection);
    void retire(Stream& stream) noexcept override;
    std::vector<Stream*> snapshot() const;
    void sweep();
    void shut_down();

    EventLoop& loop_;
    const Registry& registry_;
    Settings settings_;
    int listen_fd_;

    std::unordered_map<uint64_t, std::unique_ptr<Stream>> streams_;
    uint64_t next_stream_id_ = 1;
    bool shutting_down_ = false;

    Timer sweep_timer_;
    Timer shutdown_timer_;
    std::unique_ptr<Signals> signals_;
    std::unique_ptr<Acceptor> acceptor_;
};

}  // namespace fastsse
