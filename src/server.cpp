#include "fastsse/server.hpp"

#include <arpa/inet.h>
#include <netdb.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <systemd/sd-daemon.h>

#include <fcntl.h>

#include <cerrno>
#include <cstring>
#include <system_error>

namespace fastsse {

namespace {

[[noreturn]] void fail(const std::string& what) {
    throw std::runtime_error(fmt::format("{}: {}", what, std::strerror(errno)));
}

}  // namespace

Listener::Listener(const Settings& s) {
    if (s.listen.empty()) {
        // systemd socket activation first (LISTEN_PID/LISTEN_FDS, fd 3), then spawn-fcgi/mod_fcgid's fd 0.
        int passed = ::sd_listen_fds(1);
        if (passed < 0) {
            errno = -passed;
            fail("the sockets passed by systemd (LISTEN_FDS)");
        }
        if (passed > 1)
            throw UsageError(fmt::format("systemd passed {} sockets (LISTEN_FDS); fastsse listens on one: "
                                         "give its .socket unit a single ListenStream=", passed));
        if (passed == 1) {
            if (::sd_is_socket(SD_LISTEN_FDS_START, AF_UNSPEC, SOCK_STREAM, 1) <= 0)
                throw UsageError("the socket passed by systemd is not a listening stream socket "
                                 "(use ListenStream= in the .socket unit, with Accept=no)");
            fd_ = UniqueFd(SD_LISTEN_FDS_START);
            address_ = "the socket passed by systemd (fd 3)";
            return;
        }
        int listening = 0;
        socklen_t len = sizeof listening;
        if (::getsockopt(0, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) < 0 || !listening)
            throw UsageError("no --listen given, no socket from systemd, and fd 0 is not a listening socket "
                             "(start fastsse with --listen unix:PATH or HOST:PORT, from fastsse.socket, "
                             "or from spawn-fcgi)");
        fd_ = UniqueFd(::fcntl(0, F_DUPFD_CLOEXEC, 3));
        if (!fd_) fail("fd 0");
        address_ = "inherited fd 0";
        return;
    }
    if (s.listen.starts_with("unix:")) {
        unix_path_ = s.listen.substr(5);
        sockaddr_un sa{};
        sa.sun_family = AF_UNIX;
        if (unix_path_.empty() || unix_path_.size() >= sizeof sa.sun_path)
            throw UsageError(fmt::format("--listen {}: the socket path must be 1 to {} bytes", s.listen,
                                                 sizeof sa.sun_path - 1));
        std::memcpy(sa.sun_path, unix_path_.data(), unix_path_.size());
        fd_ = UniqueFd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
        if (!fd_) fail("socket");
        struct stat st{};
        // A socket left by an earlier run is replaced, as php-fpm does; any other file is not.
        if (::lstat(unix_path_.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) ::unlink(unix_path_.c_str());
        if (::bind(fd_.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) < 0) {
            auto path = std::exchange(unix_path_, {});
            fail(fmt::format("cannot listen on unix:{}", path));
        }
        ::chmod(unix_path_.c_str(), s.socket_mode);
    } else {
        auto colon = s.listen.rfind(':');
        if (colon == std::string::npos)
            throw UsageError(fmt::format("--listen {}: expected unix:PATH or HOST:PORT", s.listen));
        auto host = s.listen.substr(0, colon);
        auto port = s.listen.substr(colon + 1);
        if (host.size() > 1 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
        addrinfo hints{};
        hints.ai_socktype = SOCK_STREAM;
        hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
        addrinfo* res = nullptr;
        if (int rc = ::getaddrinfo(host.empty() ? nullptr : host.c_str(), port.c_str(), &hints, &res); rc != 0)
            throw UsageError(fmt::format("--listen {}: {}", s.listen, ::gai_strerror(rc)));
        std::unique_ptr<addrinfo, decltype(&::freeaddrinfo)> guard(res, ::freeaddrinfo);
        fd_ = UniqueFd(::socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0));
        if (!fd_) fail("socket");
        int one = 1;
        ::setsockopt(fd_.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (::bind(fd_.get(), res->ai_addr, res->ai_addrlen) < 0) fail(fmt::format("cannot listen on {}", s.listen));
    }
    if (::listen(fd_.get(), SOMAXCONN) < 0) fail(fmt::format("cannot listen on {}", s.listen));
    address_ = s.listen;
}

Listener::~Listener() {
    if (!unix_path_.empty()) ::unlink(unix_path_.c_str());
}

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
    : loop_(loop), registry_(registry), settings_(settings), listen_fd_(listen_fd),
      default_heartbeat_(std::to_string(settings.limits.heartbeat.count())),
      default_retry_(std::to_string(settings.retry.count())) {
    for (auto spec : stream_options_table()) {
        spec.default_value = spec.name == "heartbeat" ? default_heartbeat_ : default_retry_;
        stream_options_.push_back(spec);
    }
}

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
    OptionValues options;
    try {
        options = parse_options(std::array{std::span<const OptionSpec>(stream_options_), producer->options()}, given,
                                true);
    } catch (const OptionError& e) {
        throw bad_param(e);
    }

    auto last_id = last_event_id(r);
    auto query = r.query;  // c, and r with it, moves into the stream below
    StreamStart start{last_id, query, options, std::chrono::milliseconds(options.integer("retry"))};
    if (r.method == "HEAD") {
        // The same answer as GET would get, without starting anything.
        try {
            producer->check(start);
        } catch (const OptionError& e) {
            throw bad_param(e);
        }
        return send_response(c, 200, event_stream_headers, {});
    }

    StreamLimits limits = settings_.limits;
    limits.heartbeat = std::chrono::seconds(options.integer("heartbeat"));
    limits.retry = start.retry;
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
    if (retired_.empty()) loop_.post([this] { reap(); });
    retired_.push_back(stream.id());
}

void Server::reap() {
    // Streams die here, outside any producer callback; destroying one stops its producer's work.
    auto ids = std::move(retired_);
    retired_.clear();
    for (auto id : ids) streams_.erase(id);
    // Stop after what destroying these streams posted (a producer releasing its work) has run.
    if (shutting_down_ && streams_.empty()) loop_.post([this] { loop_.stop(); });
}

void Server::sweep() {
    auto now = loop_.now();
    for (auto& [id, stream] : streams_) stream->sweep(now);
    sweep_timer_ = loop_.call_after(std::chrono::seconds(1), [this] { sweep(); });
}

void Server::shut_down() {
    if (shutting_down_) return;
    shutting_down_ = true;
    spdlog::info("shutting down: {} streams open", streams_.size());
    ::sd_notify(0, "STOPPING=1");  // under systemd (Type=notify); nothing otherwise
    acceptor_->stop();
    for (auto& [id, stream] : streams_) stream->shut_down();
    if (streams_.empty() && retired_.empty()) return loop_.stop();
    // Clients that do not take their last bytes in time are cut off: exit comes within 2 s.
    shutdown_timer_ = loop_.call_after(std::chrono::milliseconds(1500), [this] {
        spdlog::warn("shutdown: {} streams did not finish in time", streams_.size());
        loop_.stop();
    });
}

}  // namespace fastsse
