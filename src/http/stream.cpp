#include "fastsse/http/stream.hpp"

#include <spdlog/spdlog.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <algorithm>
#include <cerrno>
#include <stdexcept>
#include <cstring>

#include "fastsse/http/response.hpp"

namespace fastsse {

namespace {

// Sent with the headers so that the body has begun: a browser then reports the stream open
// before the first event, and every proxy on the way has something to pass on.
constexpr std::string_view opening_comment = ": fastsse stream open\n\n";
constexpr std::string_view heartbeat_comment = ": heartbeat\n\n";
constexpr std::string_view status_ok = "Status: 200 OK\r\n";
// What begin() puts before everything a producer sent while the stream opened: one record.
constexpr size_t head_size =
    fastcgi::header_size + status_ok.size() + event_stream_headers.size() + 2 + opening_comment.size();

// A write that failed: the client left (the web server closed the connection), or something else.
CloseReason write_failure(int error) {
    return error == EPIPE || error == ECONNRESET ? CloseReason::write_failed : CloseReason::write_error;
}

metrics::StreamEnd counted_end(CloseReason reason, metrics::StreamEnd finish_end) {
    using metrics::StreamEnd;
    switch (reason) {
    case CloseReason::client_gone:
    case CloseReason::write_failed: return StreamEnd::client_left;
    case CloseReason::write_error: return StreamEnd::write_error;
    case CloseReason::buffer_full: return StreamEnd::slow_client;
    case CloseReason::write_timeout: return StreamEnd::write_timeout;
    case CloseReason::finished: return finish_end;
    }
    return StreamEnd::write_error;
}

void count_close(metrics::ProducerStreams* counted, metrics::StreamEnd end) {
    if (!counted) return;
    --counted->open;
    ++counted->closed[static_cast<size_t>(end)];
}

}  // namespace

std::string_view to_string(CloseReason reason) {
    switch (reason) {
    case CloseReason::client_gone: return "client gone";
    case CloseReason::write_failed: return "client gone (write failed)";
    case CloseReason::write_error: return "write error";
    case CloseReason::buffer_full: return "dropped: output buffer full";
    case CloseReason::write_timeout: return "dropped: write timeout";
    case CloseReason::finished: return "finished";
    }
    return "closed";
}

Stream::Stream(EventLoop& loop, StreamOwner& owner, uint64_t id, Connection connection, StreamLimits limits,
               std::string what)
    : loop_(loop), owner_(owner), id_(id), fd_(std::move(connection.fd)), request_id_(connection.request_id),
      limits_(limits), what_(std::move(what)), opened_(loop.now()), last_output_(opened_) {
    // Only the socket and the request id are kept: the request's params and body (hundreds of bytes
    // of heap, up to max_body) would otherwise stay for the stream's whole life, times every stream.
}

Stream::~Stream() {
    work_.reset();  // stop the producer's work first: it may still hold this Sink
    if (state_ != State::closed) {
        // Destroyed open: the server stopped with it (a client that did not take its end in time).
        count_close(counted_, metrics::StreamEnd::shutdown);
        loop_.remove(fd_.get());
    }
    if (fd_) fastcgi::drain_input(fd_.get());
}

void Stream::begin(std::unique_ptr<Subscription> work, metrics::ProducerStreams* counted) {
    work_ = std::move(work);
    if (state_ == State::closed) return;
    if (counted) {
        counted_ = counted;
        ++counted->open;
        ++counted->opened;
    }
    std::string head;
    fastcgi::append_stdout(head, request_id_,
                           fmt::format("{}{}{}\r\n{}", status_ok, event_stream_headers, extra_headers_,
                                       opening_comment));
    pending_.insert(0, head);
    std::string().swap(extra_headers_);
    loop_.add(fd_.get(), EPOLLIN | EPOLLRDHUP, this);
    spdlog::info("stream {} opened: {}", id_, what_);
    if (state_ == State::opening) state_ = State::open;
    flush();
    // What the producer queued while the stream opened (a replay) counts too, once the socket
    // took what it could.
    if (state_ != State::closed) drop_if_over_limit();
}

void Stream::reject(const RequestError& error) {
    work_.reset();
    metrics::counts.refused.add(error.status);
    spdlog::info("stream {} refused: {} {}: {}", id_, error.status, status_text(error.status), error.what());
    Connection connection;
    connection.fd = std::move(fd_);
    connection.request_id = request_id_;
    send_error(connection, error);
    state_ = State::closed;
    owner_.retire(*this);
}

void Stream::respond(std::string_view cgi_head, std::string_view body) {
    if (state_ != State::opening) throw std::logic_error("a stream answered after it began");
    fastcgi::append_stdout(pending_, request_id_, fmt::format("{}\r\n", cgi_head));
    fastcgi::append_stdout(pending_, request_id_, body);
    fastcgi::append_end(pending_, request_id_);
    loop_.add(fd_.get(), EPOLLIN | EPOLLRDHUP, this);
    spdlog::info("stream {} answered ({} bytes): {}", id_, body.size(), what_);
    state_ = State::finishing;
    stalled_since_ = loop_.now();
    flush();
}

void Stream::send(const Event& event) {
    if (state_ != State::open && state_ != State::opening) return;
    // One buffer reused for every event this thread encodes: the hot path allocates nothing.
    thread_local std::string encoded;
    encoded.clear();
    encode(event, encoded);
    send_encoded(encoded);
}

void Stream::send_encoded(std::string_view sse_bytes) {
    if (state_ != State::open && state_ != State::opening) return;
    ++events_;
    ++metrics::counts.events_written;
    queue(sse_bytes);
}

void Stream::finish(std::optional<std::chrono::milliseconds> retry) {
    if (state_ != State::open && state_ != State::opening) return;
    std::string tail;
    if (retry) {
        Event hint;
        hint.retry_ms = retry->count();
        encode(hint, tail);
    }
    queue(tail);
    if (state_ == State::closed) return;  // the client was already gone
    fastcgi::append_end(pending_, request_id_);
    bool started = state_ == State::open;
    state_ = State::finishing;
    stalled_since_ = loop_.now();
    if (started) flush();
}

void Stream::shut_down() {
    if (state_ == State::open || state_ == State::opening) finish_end_ = metrics::StreamEnd::shutdown;
    finish(limits_.retry);
}

void Stream::expire(std::optional<std::chrono::milliseconds> retry) {
    if (state_ == State::open || state_ == State::opening) finish_end_ = metrics::StreamEnd::token_expired;
    finish(retry);
}

void Stream::queue(std::string_view bytes) {
    if (bytes.empty()) return;
    last_output_ = loop_.now();
    bool caught_up = pending_off_ == pending_.size();
    if (state_ == State::open && caught_up && bytes.size() <= fastcgi::max_content) {
        // Nothing queued: hand the record straight to the socket, header and payload in one call.
        auto header = fastcgi::stdout_header(request_id_, bytes.size());
        iovec iov[2] = {{header.data(), header.size()}, {const_cast<char*>(bytes.data()), bytes.size()}};
        msghdr msg{};
        msg.msg_iov = iov;
        msg.msg_iovlen = 2;
        ssize_t n = ::sendmsg(fd_.get(), &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
        size_t total = header.size() + bytes.size();
        if (n == static_cast<ssize_t>(total)) {
            metrics::counts.bytes_written += total;
            return;
        }
        if (n < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK) return close(write_failure(errno));
            n = 0;
        }
        metrics::counts.bytes_written += static_cast<size_t>(n);
        pending_.clear();
        pending_off_ = 0;
        pending_.append(header.data() + std::min<size_t>(n, header.size()),
                        header.size() - std::min<size_t>(n, header.size()));
        pending_.append(bytes.substr(n > static_cast<ssize_t>(header.size()) ? n - header.size() : 0));
        stalled_since_ = loop_.now();
        watch_output(true);
    } else {
        if (pending_off_ == pending_.size()) {
            pending_.clear();
            pending_off_ = 0;
            stalled_since_ = loop_.now();
        }
        fastcgi::append_stdout(pending_, request_id_, bytes);
        if (state_ == State::open && !watching_output_) {
            flush();
            if (state_ == State::closed) return;
        }
    }
    // Only what the socket refused counts against the limit, and of that not the event that found the
    // queue empty: a big event to a client that keeps up passes. While the stream opens nothing is
    // sent yet: begin() checks.
    if (state_ == State::opening) return;
    if (caught_up) allowance_ = pending_.size() - pending_off_;
    drop_if_over_limit();
}

void Stream::drop_if_over_limit() {
    if (auto queued = pending_.size() - pending_off_; queued > limits_.max_buffer + allowance_) {
        spdlog::warn("stream {}: client too slow, {} bytes queued (limit {})", id_, queued, limits_.max_buffer);
        close(CloseReason::buffer_full);
    }
}

void Stream::add_header(std::string_view name, std::string_view value) {
    if (state_ != State::opening) throw std::logic_error("a response header added after the headers left");
    // RFC 9110 token characters only in a name; no byte that could end the line in a value.
    auto is_tchar = [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
    };
    if (name.empty() || !std::all_of(name.begin(), name.end(), is_tchar))
        throw std::invalid_argument("a response header name that is not an HTTP token");
    if (value.find_first_of(std::string_view("\r\n\0", 3)) != std::string_view::npos)
        throw std::invalid_argument(fmt::format("response header {}: a value with CR, LF or NUL", name));
    extra_headers_ += fmt::format("{}: {}\r\n", name, value);
}

size_t Stream::room() const {
    if (state_ != State::open && state_ != State::opening) return 0;
    auto queued = pending_.size() - pending_off_ + (state_ == State::opening ? head_size + extra_headers_.size() : 0);
    auto limit = limits_.max_buffer + allowance_;
    return queued < limit ? limit - queued : 0;
}

size_t queued_size(const Event& event) {
    thread_local std::string encoded;
    encoded.clear();
    encode(event, encoded);
    return queued_size(std::string_view(encoded));
}

size_t queued_size(std::string_view sse_bytes) {
    auto records = (sse_bytes.size() + fastcgi::max_content - 1) / fastcgi::max_content;
    return sse_bytes.size() + records * fastcgi::header_size;
}

void Stream::flush() {
    while (pending_off_ < pending_.size()) {
        ssize_t n = ::send(fd_.get(), pending_.data() + pending_off_, pending_.size() - pending_off_,
                           MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                watch_output(true);
                return;
            }
            return close(write_failure(errno));
        }
        pending_off_ += n;
        metrics::counts.bytes_written += static_cast<size_t>(n);
        stalled_since_ = loop_.now();
    }
    // Give the memory back: most of the time a stream has nothing queued (the next event goes
    // straight to the socket), and at 200,000 streams the heads, and the events that found nginx's
    // socket full during a fan-out, would otherwise stay allocated, 100-300 bytes a stream.
    std::string().swap(pending_);
    pending_off_ = 0;
    allowance_ = 0;
    watch_output(false);
    if (state_ == State::finishing) close(CloseReason::finished);
}

void Stream::watch_output(bool on) {
    if (on == watching_output_ || state_ == State::closed) return;
    watching_output_ = on;
    if (!loop_.modify(fd_.get(), EPOLLIN | EPOLLRDHUP | (on ? EPOLLOUT : 0u), this))
        close(CloseReason::write_error, fmt::format("epoll: {}", std::strerror(errno)));
}

void Stream::on_io(uint32_t events) {
    if (state_ == State::closed) return;
    if (events & (EPOLLERR | EPOLLHUP)) return close(CloseReason::client_gone);
    if (events & (EPOLLIN | EPOLLRDHUP)) {
        // The web server sends nothing more we need (an empty FCGI_STDIN, perhaps FCGI_ABORT_REQUEST);
        // end of input means it closed the connection because the client left.
        // A bounded amount per wake-up: a peer that keeps sending must not hold the loop here (the
        // descriptor stays readable, so the rest is read on the next round).
        char buf[4096];
        for (int reads = 0; reads < 16; ++reads) {
            ssize_t n = ::recv(fd_.get(), buf, sizeof buf, MSG_DONTWAIT);
            if (n > 0) continue;
            if (n == 0) return close(CloseReason::client_gone);
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) break;
            return close(CloseReason::client_gone);
        }
    }
    if (events & EPOLLOUT) flush();
}

void Stream::sweep(EventLoop::Clock::time_point now) {
    if (state_ == State::closed || state_ == State::opening) return;
    if (pending_off_ < pending_.size() && now - stalled_since_ >= limits_.write_timeout) {
        spdlog::warn("stream {}: client took nothing for {} s", id_, limits_.write_timeout.count());
        return close(CloseReason::write_timeout);
    }
    if (state_ == State::open && now - last_output_ >= limits_.heartbeat) {
        ++metrics::counts.heartbeats;
        queue(heartbeat_comment);
    }
}

void Stream::close(CloseReason reason, std::string_view detail) {
    if (state_ == State::closed) return;
    bool was_started = state_ != State::opening;
    state_ = State::closed;
    if (was_started) loop_.remove(fd_.get());
    count_close(counted_, counted_end(reason, finish_end_));
    auto seconds = std::chrono::duration<double>(loop_.now() - opened_).count();
    spdlog::info("stream {} closed: {}{} (after {:.1f} s, {} events)", id_, to_string(reason),
                 detail.empty() ? std::string() : fmt::format(" ({})", detail), seconds, events_);
    owner_.retire(*this);
}

}  // namespace fastsse
