#include "fastsse/http/server.hpp"

#include <signal.h>
#include <spdlog/spdlog.h>
#include <systemd/sd-daemon.h>

namespace fastsse {

Server::Server(EventLoop& loop, Router& routes, const Settings& settings, int listen_fd, std::function<void()> reload)
    : loop_(loop), routes_(routes), settings_(settings), listen_fd_(listen_fd), reload_(std::move(reload)) {}

Server::~Server() = default;

void Server::run() {
    signals_ = std::make_unique<Signals>(loop_, [this](int signo) {
        if (signo == SIGHUP) {
            // On the loop, between two rounds: no stream waits longer than reading one file takes.
            if (shutting_down_) return;
            if (reload_) reload_();
            acceptor_->set_limits(settings_.max_streams, settings_.max_body);
            return;
        }
        spdlog::info("received {}", signo == SIGTERM ? "SIGTERM" : "SIGINT");
        shut_down();
    });
    sweep_timer_ = loop_.call_after(std::chrono::seconds(1), [this] { sweep(); });
    acceptor_ = std::make_unique<Acceptor>(loop_, listen_fd_, settings_.max_streams, settings_.max_body,
                                           [this](Connection c) { routes_.dispatch(std::move(c), *this); });
    loop_.run();
    acceptor_.reset();
    streams_.clear();
    loop_.destroy_doomed();
}

void Server::check_room() const {
    using std::chrono::seconds;
    if (shutting_down_) throw RequestError::unavailable("The server is shutting down.", seconds(2));
    if (streams_.size() >= settings_.max_streams)
        throw RequestError::unavailable(fmt::format("Too many open streams ({}).", settings_.max_streams), seconds(5));
}

Stream& Server::open(Connection c, const StreamLimits& limits, std::string what) {
    auto id = next_stream_id_++;
    auto owned = std::make_unique<Stream>(loop_, static_cast<StreamOwner&>(*this), id, std::move(c), limits,
                                          std::move(what));
    auto& stream = *owned;
    streams_.emplace(id, std::move(owned));
    return stream;
}

void Server::retire(Stream& stream) noexcept {
    // Destroyed once the callback that ended it returns; destroying it stops its producer's work.
    auto it = streams_.find(stream.id());
    if (it == streams_.end()) return;
    loop_.destroy_later(std::move(it->second));
    streams_.erase(it);
    // The loop finishes this round (those destructions included) before it stops.
    if (shutting_down_ && streams_.empty()) loop_.stop();
}

std::vector<Stream*> Server::snapshot() const {
    // A stream that ends during a round over them all leaves streams_ at once (retire): go over a
    // copy. It is destroyed only after the round, so the pointers stay valid through it.
    std::vector<Stream*> out;
    out.reserve(streams_.size());
    for (const auto& [id, stream] : streams_) out.push_back(stream.get());
    return out;
}

void Server::sweep() {
    auto now = loop_.now();
    for (auto* stream : snapshot()) stream->sweep(now);
    sweep_timer_ = loop_.call_after(std::chrono::seconds(1), [this] { sweep(); });
}

void Server::shut_down() {
    if (shutting_down_) return;
    shutting_down_ = true;
    spdlog::info("shutting down: {} streams open", streams_.size());
    ::sd_notify(0, "STOPPING=1");  // under systemd (Type=notify); nothing otherwise
    acceptor_->stop();
    for (auto* stream : snapshot()) stream->shut_down();
    if (streams_.empty()) return loop_.stop();
    // Clients that do not take their last bytes in time are cut off: exit comes within 2 s.
    shutdown_timer_ = loop_.call_after(std::chrono::milliseconds(1500), [this] {
        spdlog::warn("shutdown: {} streams did not finish in time", streams_.size());
        loop_.stop();
    });
}

}  // namespace fastsse
