#include "fastsse/http/server.hpp"

#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <systemd/sd-daemon.h>

#include <cerrno>
#include <cstring>
#include <system_error>

namespace fastsse {

namespace {

[[noreturn]] void fail(const std::string& what) {
    throw std::runtime_error(fmt::format("{}: {}", what, std::strerror(errno)));
}

}  // namespace

// SIGTERM, SIGINT and SIGHUP through a signalfd: no code runs in a signal handler.
class Server::Signals final : public IoHandler {
public:
    Signals(EventLoop& loop, std::function<void(int)> on_signal) : loop_(loop), on_signal_(std::move(on_signal)) {
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGTERM);
        sigaddset(&set, SIGINT);
        sigaddset(&set, SIGHUP);
        fd_ = UniqueFd(::signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK));
        if (!fd_) fail("signalfd");
        loop_.add(fd_.get(), EPOLLIN, this);
    }
    ~Signals() { loop_.remove(fd_.get()); }
    void on_io(uint32_t) override {
        signalfd_siginfo info;
        while (::read(fd_.get(), &info, sizeof info) == sizeof info) on_signal_(static_cast<int>(info.ssi_signo));
    }

private:
    EventLoop& loop_;
    UniqueFd fd_;
    std::function<void(int)> on_signal_;
};

Server::Server(EventLoop& loop, const Registry& registry, const Settings& settings, int listen_fd)
    : loop_(loop), registry_(registry), settings_(settings), listen_fd_(listen_fd) {}

Server::~Server() = default;

void Server::run() {
    signals_ = std::make_unique<Signals>(loop_, [this](int signo) {
        if (signo == SIGHUP)
            return spdlog::warn("received SIGHUP: ignored, the streams go on (fastsse cannot reload its settings: "
                                "restart it to apply new ones)");
        spdlog::info("received {}", signo == SIGTERM ? "SIGTERM" : "SIGINT");
        shut_down();
    });
    sweep_timer_ = loop_.call_after(std::chrono::seconds(1), [this] { sweep(); });
    acceptor_ = std::make_unique<Acceptor>(loop_, listen_fd_, settings_.max_streams,
                                           [this](Connection c) { on_connection(std::move(c)); });
    loop_.run();
    acceptor_.reset();
    streams_.clear();
    loop_.destroy_doomed();
}

void Server::on_connection(Connection c) {
    // The one place a request's exceptions are caught: before any header left, each becomes an
    // HTTP error with a one-line reason.
    try {
        serve(c);
    } catch (const RequestError& e) {
        spdlog::info("{} {}: {} {}", c.request.method, c.request.uri, e.status, e.what());
        send_error(c, e);
    } catch (const std::exception& e) {
        spdlog::error("{} {}: {}", c.request.method, c.request.uri, e.what());
        send_error(c, RequestError(500, e.what()));
    }
}

void Server::serve(Connection& c) {
    const auto& r = c.request;
    if (r.method != "GET" && r.method != "HEAD")
        throw RequestError::method_not_allowed(
            fmt::format("Method {} is not allowed: an event stream is read with GET.", r.method), "GET, HEAD");
    auto it = r.fastsse.find("producer");
    if (it == r.fastsse.end())
        throw RequestError(404, "No event stream here: this location sets no FASTSSE_PRODUCER.");
    auto* producer = registry_.find(it->second);
    if (!producer) throw RequestError(404, fmt::format("No event stream here: no producer named '{}'.", it->second));
    if (!accepts_event_stream(r.accept))
        throw RequestError(406, "You must send a request with \"Accept: text/event-stream\".");
    using std::chrono::seconds;
    if (shutting_down_) throw RequestError::unavailable("The server is shutting down.", seconds(2));
    if (streams_.size() >= settings_.max_streams)
        throw RequestError::unavailable(fmt::format("Too many open streams ({}).", settings_.max_streams), seconds(5));

    // An admin's mistake in the location, not the client's: 500, with the param named.
    auto producer_name = it->second;
    auto bad_param = [&](const OptionError& e) {
        return RequestError(500, fmt::format("Bad FastCGI param for producer {}: {}", producer_name, e.what()));
    };
    auto given = r.fastsse;
    given.erase("producer");
    StreamLimits limits = settings_.limits;
    OptionValues options;
    try {
        stream_settings().override_from(limits, given);  // FASTSSE_HEARTBEAT, FASTSSE_RETRY
        options = parse_options(std::array{producer->options()}, given, true);
    } catch (const OptionError& e) {
        throw bad_param(e);
    }

    auto last_id = last_event_id(r);
    auto query = r.query;  // c, and r with it, moves into the stream below
    StreamStart start{last_id, query, options, limits.retry};
    if (r.method == "HEAD") {
        // The same answer as GET would get, without starting anything.
        try {
            producer->check(start);
        } catch (const OptionError& e) {
            throw bad_param(e);
        }
        return send_response(c, 200, event_stream_headers, {});
    }

    auto id = next_stream_id_++;
    auto what = fmt::format("producer={} uri={}{}", producer_name, r.uri,
                            last_id.empty() ? std::string() : fmt::format(" last-event-id={}", last_id));
    auto owned = std::make_unique<Stream>(loop_, static_cast<StreamOwner&>(*this), id, std::move(c), limits, what);
    auto& stream = *owned;
    streams_.emplace(id, std::move(owned));
    try {
        stream.begin(producer->open(stream, start));
    } catch (const RequestError& e) {
        stream.reject(e);
    } catch (const OptionError& e) {
        stream.reject(bad_param(e));
    } catch (const std::exception& e) {
        spdlog::error("stream {}: producer {} failed to start: {}", id, producer_name, e.what());
        stream.reject(RequestError(500, fmt::format("The producer failed to start: {}", e.what())));
    }
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
