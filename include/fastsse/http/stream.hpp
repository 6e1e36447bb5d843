#pragma once
// One client's event stream: the one place that owns a stream's lifetime, from the response
// headers to the FastCGI end of request, and the producer work behind it.
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "fastsse/loop/event_loop.hpp"
#include "fastsse/fastcgi/records.hpp"
#include "fastsse/metrics/metrics.hpp"
#include "fastsse/producers/producer.hpp"

namespace fastsse {

struct StreamLimits {
    std::chrono::seconds heartbeat{15};       // a comment after this long without output
    size_t max_buffer = 256 * 1024;           // bytes queued for a slow client before it is dropped
    std::chrono::seconds write_timeout{30};   // a client that takes nothing for this long is dropped
    std::chrono::milliseconds retry{3000};    // the retry: hint when the server ends the stream
};

class Stream;

// Why a stream ended, as the log says it (the metrics count fewer: metrics::StreamEnd).
enum class CloseReason {
    client_gone,    // the web server closed the connection: the client left
    write_failed,   // a write found the connection closed: the client left
    write_error,    // any other failure of the connection
    buffer_full,    // a slow client: more than stream_buffer queued
    write_timeout,  // a client that took nothing for write_timeout
    finished,       // the server ended the stream (the producer, or shutdown)
};
std::string_view to_string(CloseReason reason);

// Who destroys streams: retire() is called once per stream, which is destroyed later on the loop.
class StreamOwner {
public:
    virtual void retire(Stream& stream) noexcept = 0;

protected:
    ~StreamOwner() = default;
};

// The headers of every event stream (and of the answer to HEAD), as CGI header lines.
constexpr std::string_view event_stream_headers =
    "Content-Type: text/event-stream; charset=utf-8\r\n"
    "Cache-Control: no-cache\r\n"
    "X-Accel-Buffering: no\r\n";  // nginx then never buffers, even where fastcgi_buffering is on

class Stream final : public Sink, public IoHandler {
public:
    Stream(EventLoop& loop, StreamOwner& owner, uint64_t id, Connection connection, StreamLimits limits,
           std::string what);
    ~Stream();
    Stream(const Stream&) = delete;
    Stream& operator=(const Stream&) = delete;

    uint64_t id() const noexcept { return id_; }

    // The producer is running: the headers, the opening comment and anything the producer already
    // sent leave now. Until then nothing is written, so reject() can still answer with an error.
    // `counted`: the metrics of its producer (null: none, in tests), from now until it closes.
    void begin(std::unique_ptr<Subscription> work, metrics::ProducerStreams* counted = nullptr);
    void reject(const RequestError& error);
    // Instead of begin(): a whole answer rather than an event stream (the hub's subscription API,
    // JSON that may take more than one write). The CGI head (its lines, each ending in CRLF) and
    // the body are queued with the end of the request; the stream closes once the socket took them,
    // or when the client takes nothing for write_timeout. No producer, no heartbeat.
    void respond(std::string_view cgi_head, std::string_view body);

    // Sink
    void send(const Event& event) override;
    void send_encoded(std::string_view sse_bytes) override;
    void finish(std::optional<std::chrono::milliseconds> retry) override;
    void expire(std::optional<std::chrono::milliseconds> retry) override;
    size_t room() const override;
    void add_header(std::string_view name, std::string_view value) override;

    // The server is shutting down: the stream ends with its location's retry: hint.
    void shut_down();

    // Called about once a second: heartbeats, and dropping clients stalled past the write timeout.
    void sweep(EventLoop::Clock::time_point now);

    void on_io(uint32_t events) override;

private:
    enum class State { opening, open, finishing, closed };

    void queue(std::string_view sse_bytes);
    void drop_if_over_limit();
    void flush();
    void watch_output(bool on);
    void close(CloseReason reason, std::string_view detail = {});

    EventLoop& loop_;
    StreamOwner& owner_;
    uint64_t id_;
    UniqueFd fd_;
    uint16_t request_id_;
    StreamLimits limits_;
    std::string what_;  // "clock /events/clock", for the log
    std::string extra_headers_;  // add_header()'s, as CGI header lines, sent by begin()
    State state_ = State::opening;
    bool watching_output_ = false;

    std::unique_ptr<Subscription> work_;
    std::string pending_;  // framed bytes the socket has not taken yet
    size_t pending_off_ = 0;
    // What was left of the event that found the queue empty: counted beside stream_buffer, not
    // against it, until the queue drains. The limit is for what piles up behind, so that a client
    // that keeps up gets an update bigger than the limit whole instead of being dropped for it.
    size_t allowance_ = 0;

    EventLoop::Clock::time_point opened_;
    EventLoop::Clock::time_point last_output_;
    EventLoop::Clock::time_point stalled_since_;
    unsigned long long events_ = 0;
    metrics::ProducerStreams* counted_ = nullptr;  // its producer's metrics, from begin() to close()
    // What a finish() that completes counts as: the producer's end, the shutdown's, a token's expiry.
    metrics::StreamEnd finish_end_ = metrics::StreamEnd::finished;
};

}  // namespace fastsse
