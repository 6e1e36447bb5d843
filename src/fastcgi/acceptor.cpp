#include "fastsse/fastcgi/acceptor.hpp"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <array>
#include <cerrno>
#include <cstring>

#include "fastsse/metrics/metrics.hpp"

namespace fastsse {

// A connection whose request (head and body) has not all arrived yet.
class Acceptor::Pending final : public IoHandler {
public:
    Pending(Acceptor& owner, UniqueFd fd) : owner_(owner), fd_(std::move(fd)), since_(owner.loop_.now()) {
        // Edge-triggered while peeking at the head: peeking leaves the bytes in place, so a
        // level-triggered wait would spin until the rest of the head arrives.
        owner_.loop_.add(fd_.get(), EPOLLIN | EPOLLRDHUP | EPOLLET, this);
    }
    ~Pending() {
        if (fd_) owner_.loop_.remove(fd_.get());
    }

    EventLoop::Clock::time_point since() const { return since_; }

    void on_io(uint32_t events) override {
        if (body_) return read_body();
        read_head(events);
    }

private:
    static constexpr int max_looks = 64;
    // A body is read in pieces of this size, a bounded number per wake-up, so that a large body
    // coming fast does not hold up the streams' output.
    static constexpr size_t read_size = 64 * 1024;
    static constexpr int max_reads = 16;

    void read_head(uint32_t events) {
        // Each look copies and checks everything sent so far: a peer sending its head a few bytes at
        // a time would make that quadratic. Web servers send it in one or two writes.
        if (++looks_ > max_looks) {
            return owner_.refuse(*this, fmt::format("its request head came in more than {} pieces", max_looks));
        }
        // Look without taking until the head is all there: libfcgi reads it, and only once checked.
        static std::array<char, 128 * 1024> peek;
        ssize_t n = ::recv(fd_.get(), peek.data(), peek.size(), MSG_PEEK | MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
        bool ended = n <= 0 || (events & (EPOLLHUP | EPOLLERR | EPOLLRDHUP));
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
            if (n == static_cast<ssize_t>(peek.size()))
                return owner_.refuse(*this, fmt::format("its request head exceeds {} bytes", peek.size()));
            if (ended) owner_.finished(*this, std::nullopt);
            return;
        }
        // Take exactly the head, which is there (it was just peeked at): the body is read from the
        // socket as it comes, and libfcgi gets the head alone (read_request).
        head_.resize(check.head_length);
        if (::recv(fd_.get(), head_.data(), head_.size(), MSG_DONTWAIT) != static_cast<ssize_t>(head_.size()))
            return owner_.refuse(*this, "its request head could not be read after it was peeked at");
        unsigned id = static_cast<unsigned char>(head_[2]) << 8 | static_cast<unsigned char>(head_[3]);
        body_.emplace(id, owner_.max_body_);
        // Level-triggered from now on: every byte is taken, and a wake-up that reads its bound with
        // more left must come again.
        if (!owner_.loop_.modify(fd_.get(), EPOLLIN | EPOLLRDHUP, this))
            return owner_.refuse(*this, "its socket could not be watched for the body");
        read_body();
    }

    // Waits for the end of the request body too, even of one too large to keep. Apache's
    // mod_proxy_fcgi sends the empty FCGI_STDIN record in a write of its own after the params; an
    // error or HEAD answered and closed before that write makes it fail, and Apache then answers 503
    // instead (measured: one such answer in five). And a web server still sending a body reads
    // a reset, not the 413, when the connection is closed under it.
    void read_body() {
        static std::array<char, read_size> buffer;
        for (int i = 0; i < max_reads; ++i) {
            ssize_t n = ::recv(fd_.get(), buffer.data(), buffer.size(), MSG_DONTWAIT);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
            if (n <= 0) return owner_.refuse(*this, "it closed the connection before its request body ended");
            body_->feed(std::string_view(buffer.data(), static_cast<size_t>(n)));
            using State = fastcgi::BodyReader::State;
            if (body_->state() == State::refused) {
                fastcgi::drain_input(fd_.get());
                return owner_.refuse(*this, body_->reason());
            }
            if (body_->state() == State::whole) return hand_on();
        }
    }

    void hand_on() {
        owner_.loop_.remove(fd_.get());
        auto connection = fastcgi::read_request(head_, std::move(fd_));
        if (connection) {
            connection->body_limit = owner_.max_body_;
            connection->body_whole = !body_->too_large();
            connection->body = std::move(body_->body());
        }
        owner_.finished(*this, std::move(connection));
    }

    Acceptor& owner_;
    UniqueFd fd_;
    EventLoop::Clock::time_point since_;
    int looks_ = 0;
    std::string head_;                           // taken from the socket once whole
    std::optional<fastcgi::BodyReader> body_;  // set once the head is taken
};

Acceptor::Acceptor(EventLoop& loop, int listen_fd, size_t max_conns, size_t max_body,
                   std::function<void(Connection)> on_request)
    : loop_(loop), listen_fd_(listen_fd), max_conns_(max_conns), max_body_(max_body), on_request_(std::move(on_request)) {
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
            ++metrics::counts.accept_errors;
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
    ++metrics::counts.accept_errors;
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
    ++metrics::counts.connections_refused;
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
