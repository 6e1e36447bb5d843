#include "fastsse/fastcgi/acceptor.hpp"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <array>
#include <cerrno>
#include <cstring>

namespace fastsse {

// A connection whose request (head and body) has not all arrived yet.
class Acceptor::Pending final : public IoHandler {
public:
    Pending(Acceptor& owner, UniqueFd fd) : owner_(owner), fd_(std::move(fd)), since_(owner.loop_.now()) {
        // Edge-triggered: peeking leaves the bytes in place, so a level-triggered wait would spin
        // until the rest of the head arrives.
        owner_.loop_.add(fd_.get(), EPOLLIN | EPOLLRDHUP | EPOLLET, this);
    }
    ~Pending() {
        if (fd_) owner_.loop_.remove(fd_.get());
    }

    EventLoop::Clock::time_point since() const { return since_; }

    void on_io(uint32_t events) override {
        // Each look copies and checks everything sent so far: a peer sending its head a few bytes at
        // a time would make that quadratic. Web servers send it in one or two writes.
        if (++looks_ > max_looks) {
            return owner_.refuse(*this, fmt::format("its request head came in more than {} pieces", max_looks));
        }
        // Look without taking: libfcgi reads the bytes itself once they are all there, and checked.
        static std::array<char, 128 * 1024> peek;
        ssize_t n = ::recv(fd_.get(), peek.data(), peek.size(), MSG_PEEK | MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
        bool ended = n <= 0 || (events & (EPOLLHUP | EPOLLERR | EPOLLRDHUP));
        bool full = n == static_cast<ssize_t>(peek.size());
        auto check = fastcgi::check_head(std::string_view(peek.data(), n > 0 ? n : 0), owner_.max_conns_);
        using Verdict = fastcgi::HeadCheck::Verdict;
        if (check.verdict == Verdict::refused) {
            if (!check.answer.empty())
                [[maybe_unused]] auto sent = ::send(fd_.get(), check.answer.data(), check.answer.size(),
                                                    MSG_NOSIGNAL | MSG_DONTWAIT);
            fastcgi::drain_input(fd_.get());
            return owner_.refuse(*this, check.reason);
        }
        if (check.verdict == Verdict::incomplete) {
            if (full) {
                return owner_.refuse(*this, fmt::format("its request head exceeds {} bytes", peek.size()));
            }
            if (ended) owner_.finished(*this, std::nullopt);
            return;
        }
        // Wait for the end of the request body too. Apache's mod_proxy_fcgi sends the empty
        // FCGI_STDIN record in a write of its own after the params; an error or HEAD answered and
        // closed before that write makes it fail, and Apache then answers 503 instead (measured: one
        // such answer in five). A body too big to peek at whole, or a peer that has finished
        // sending, is not waited for.
        if (!check.whole && !full && !ended) return;
        owner_.loop_.remove(fd_.get());
        auto connection = fastcgi::read_request(std::move(fd_));
        // The body comes from the bytes peeked at, not from the socket: libfcgi may have read part
        // of it into its own buffers, freed with the request.
        if (connection) {
            connection->body_whole = check.whole && !check.body_too_large;
            if (connection->body_whole) connection->body = std::move(check.body);
        }
        owner_.finished(*this, std::move(connection));
    }

private:
    static constexpr int max_looks = 64;

    Acceptor& owner_;
    UniqueFd fd_;
    EventLoop::Clock::time_point since_;
    int looks_ = 0;
};

Acceptor::Acceptor(EventLoop& loop, int listen_fd, size_t max_conns, std::function<void(Connection)> on_request)
    : loop_(loop), listen_fd_(listen_fd), max_conns_(max_conns), on_request_(std::move(on_request)) {
    // Non-blocking, so that a connection another process sharing the socket (spawn-fcgi, systemd)
    // took first does not block the loop in accept().
    ::fcntl(listen_fd_, F_SETFL, ::fcntl(listen_fd_, F_GETFL) | O_NONBLOCK);
    loop_.add(listen_fd_, EPOLLIN, this);
    stale_timer_ = loop_.call_after(std::chrono::seconds(1), [this] { drop_stale(); });
}

Acceptor::~Acceptor() { stop(); }

void Acceptor::stop() noexcept {
    if (listening_ && !paused_) loop_.remove(listen_fd_);
    listening_ = false;
    pending_.clear();
    stale_timer_.cancel();
    resume_timer_.cancel();
}

void Acceptor::on_io(uint32_t) { accept_all(); }

void Acceptor::accept_all() {
    // A bounded batch per wake-up keeps streams' output flowing during a burst of connections.
    for (int i = 0; i < 256 && listening_; ++i) {
        UniqueFd fd(::accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
        if (!fd) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) return;
            return pause(errno);
        }
        if (failing_since_) {
            std::chrono::duration<double> took = loop_.now() - *failing_since_;
            spdlog::info("accepting again, after {:.1f} s", took.count());
            failing_since_.reset();
        }
        std::unique_ptr<Pending> pending;
        try {
            pending = std::make_unique<Pending>(*this, std::move(fd));
        } catch (const std::exception& e) {
            spdlog::warn("dropped a new connection: {}", e.what());
            continue;
        }
        auto* key = pending.get();
        pending_.emplace(key, std::move(pending));
        key->on_io(0);  // the head has usually arrived with the connection
    }
}

void Acceptor::pause(int error) {
    // The connection stays in the listen backlog, so the socket stays readable: watching it now
    // would spin. Look again shortly; descriptors come back as streams end and heads time out.
    if (!failing_since_) {
        failing_since_ = loop_.now();
        rlimit lim{};
        ::getrlimit(RLIMIT_NOFILE, &lim);
        spdlog::warn("accept failed: {} (descriptor limit {}, {} connections sending their head); "
                     "trying again every {} ms",
                     std::strerror(error), static_cast<unsigned long long>(lim.rlim_cur), pending_.size(),
                     accept_pause.count());
    }
    paused_ = true;
    loop_.remove(listen_fd_);
    resume_timer_ = loop_.call_after(accept_pause, [this] {
        paused_ = false;
        loop_.add(listen_fd_, EPOLLIN, this);
        accept_all();
    });
}

void Acceptor::finished(Pending& pending, std::optional<Connection> connection) {
    // Destroyed later, on the loop: this may be called from the Pending's own on_io.
    auto it = pending_.find(&pending);
    if (it == pending_.end()) return;
    loop_.destroy_later(std::move(it->second));
    pending_.erase(it);
    if (connection) {
        // The server reads what it needs from the connection: it has been copied out of libfcgi.
        on_request_(std::move(*connection));
    }
}

void Acceptor::refuse(Pending& pending, std::string_view reason) {
    // One line per refusal, up to a bound per second: whoever floods the socket with bad requests
    // does not flood the log too.
    if (++refusals_ <= max_refusals_logged) spdlog::warn("refused a connection: {}", reason);
    finished(pending, std::nullopt);
}

void Acceptor::drop_stale() {
    if (refusals_ > max_refusals_logged)
        spdlog::warn("refused {} more connections in the last second (not logged one by one)",
                     refusals_ - max_refusals_logged);
    refusals_ = 0;
    auto now = loop_.now();
    std::vector<Pending*> stale;
    for (auto& [key, p] : pending_)
        if (now - p->since() >= head_timeout) stale.push_back(key);
    for (auto* p : stale) {
        refuse(*p, fmt::format("it sent no complete request in {} s", head_timeout.count()));
    }
    stale_timer_ = loop_.call_after(std::chrono::seconds(1), [this] { drop_stale(); });
}

}  // namespace fastsse
