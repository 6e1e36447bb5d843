#pragma once
// What several unit tests share: running a real EventLoop until a condition holds (with a deadline,
// so that a bug fails the test instead of hanging it), a Sink that records what a producer did, the
// log lines captured, and a temporary folder.
#include <doctest/doctest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "fastsse/http/request.hpp"
#include "fastsse/loop/event_loop.hpp"
#include "fastsse/loop/fd.hpp"
#include "fastsse/producers/producer.hpp"

namespace fastsse_test {

// The status a call refused with (0: it did not throw a RequestError).
template <class Fn>
int status_of(Fn fn) {
    try {
        fn();
    } catch (const fastsse::RequestError& e) {
        return e.status;
    }
    return 0;
}

// Runs the loop until done() holds (checked every 2 ms, and whenever something else stops the
// loop), or until the deadline; returns done().
inline bool run_loop_until(fastsse::EventLoop& loop, const std::function<bool()>& done,
                           std::chrono::milliseconds deadline) {
    using namespace std::chrono_literals;
    if (done()) return true;
    bool timed_out = false;
    auto guard = loop.call_after(deadline, [&] {
        timed_out = true;
        loop.stop();
    });
    fastsse::Timer poll;
    std::function<void()> check = [&] {
        if (done()) loop.stop();
        else poll = loop.call_after(2ms, check);
    };
    poll = loop.call_after(0ms, check);
    loop.run();
    if (timed_out) MESSAGE("the loop ran into its deadline");
    return done();
}

// A producer test's loop, run until a condition holds: checked after each call of a sink that
// notify()s (so the loop stops at the very call that made it true), and every 2 ms.
class LoopWaiter {
public:
    explicit LoopWaiter(fastsse::EventLoop& loop) : loop_(loop) {}
    bool run_until(std::function<bool()> done, std::chrono::milliseconds deadline = std::chrono::seconds(10)) {
        done_ = std::move(done);
        bool ok = run_loop_until(loop_, done_, deadline);
        done_ = nullptr;
        return ok;
    }
    void notify() {
        if (done_ && done_()) loop_.stop();
    }

private:
    fastsse::EventLoop& loop_;
    std::function<bool()> done_;
};

// One event as a producer sent it, copied out of the Event's views.
struct Sent {
    std::string event;
    std::optional<std::string> data, id;
    std::optional<long long> retry_ms;
};

// One entry per Sink call, in order: a send, or a finish (finished == true).
struct Call {
    bool finished = false;
    Sent sent;
    std::optional<std::chrono::milliseconds> retry;
    std::string encoded;  // the bytes of a send_encoded(), as they came
};

// One event as encode() writes it, read back: "event: ", "data: " (one line each), "id: " or a
// bare "id", "retry: ", then a blank line. Anything else fails the test. (Data that held a lone CR
// comes back with a LF there, as a browser reads it.)
inline Sent decode_event(std::string_view bytes) {
    Sent out;
    CHECK_MESSAGE(bytes.ends_with("\n\n"), "not one whole event: " << bytes);
    bytes.remove_suffix(std::min<size_t>(bytes.size(), 1));  // the blank line
    while (!bytes.empty()) {
        auto nl = bytes.find('\n');
        auto line = bytes.substr(0, nl);
        bytes.remove_prefix(nl == std::string_view::npos ? bytes.size() : nl + 1);
        auto field = [&](std::string_view name) {
            return line.starts_with(name) && line.substr(name.size()).starts_with(": ");
        };
        auto value = [&](std::string_view name) { return std::string(line.substr(name.size() + 2)); };
        if (field("event")) out.event = value("event");
        else if (field("data")) out.data = out.data ? *out.data + "\n" + value("data") : value("data");
        else if (line == "id") out.id = "";
        else if (field("id")) out.id = value("id");
        else if (field("retry")) out.retry_ms = std::stoll(value("retry"));
        else FAIL_CHECK("not a line encode() writes: " << line);
    }
    return out;
}

// Records every call; on_call runs after each one (a harness stops its loop there when it is done).
class RecordingSink : public fastsse::Sink {
public:
    explicit RecordingSink(std::function<void()> on_call) : on_call_(std::move(on_call)) {}

    void send(const fastsse::Event& e) override {
        Call c;
        c.sent.event = std::string(e.event);
        if (e.data) c.sent.data = std::string(*e.data);
        if (e.id) c.sent.id = std::string(*e.id);
        c.sent.retry_ms = e.retry_ms;
        calls.push_back(std::move(c));
        on_call_();
    }
    void send_encoded(std::string_view sse_bytes) override {
        Call c;
        c.sent = decode_event(sse_bytes);
        c.encoded = std::string(sse_bytes);
        calls.push_back(std::move(c));
        on_call_();
    }
    void finish(std::optional<std::chrono::milliseconds> retry) override {
        Call c;
        c.finished = true;
        c.retry = retry;
        calls.push_back(std::move(c));
        on_call_();
    }

    size_t room() const override { return room_left; }
    void add_header(std::string_view name, std::string_view value) override {
        headers.emplace_back(std::string(name), std::string(value));
    }

    std::vector<Call> calls;
    std::vector<std::pair<std::string, std::string>> headers;  // add_header()'s, in order
    size_t room_left = SIZE_MAX;  // what room() says; sends do not use it up
    size_t sends() const {
        size_t n = 0;
        for (auto& c : calls) n += !c.finished;
        return n;
    }
    size_t finishes() const { return calls.size() - sends(); }
    const Sent& sent(size_t i) const {
        size_t n = 0;
        for (auto& c : calls)
            if (!c.finished && n++ == i) return c.sent;
        FAIL("no send number " << i);
        throw 0;
    }

private:
    std::function<void()> on_call_;
};

// A sink for channel tests: it also remembers where the bytes it was given live (one encoding
// shared by every subscriber has one address), and may do something more when it is sent an event
// (leave, make another leave, subscribe another, publish).
class ChannelSink final : public RecordingSink {
public:
    ChannelSink() : RecordingSink([] {}) {}
    void send_encoded(std::string_view sse_bytes) override {
        where.push_back(sse_bytes.data());
        RecordingSink::send_encoded(sse_bytes);
        if (on_send) on_send();
    }
    std::vector<std::string> ids() const {
        std::vector<std::string> out;
        for (auto& c : calls)
            if (!c.finished) out.push_back(c.sent.id.value_or("<none>"));
        return out;
    }
    std::vector<const char*> where;
    std::function<void()> on_send;
};

// FastCGI records as a web server reads them back from fastsse.
constexpr unsigned type_end_request = 3;
constexpr unsigned type_stdout = 6;

// One record as it came; padding dropped.
struct Record {
    unsigned type = 0, request_id = 0;
    std::string content;
};

// Whole records from the front of buf (consumed); a trailing partial record stays in buf.
inline std::vector<Record> take_records(std::string& buf) {
    std::vector<Record> out;
    size_t i = 0;
    auto b = [&](size_t k) { return static_cast<unsigned>(static_cast<unsigned char>(buf[k])); };
    while (buf.size() - i >= 8) {
        size_t length = b(i + 4) << 8 | b(i + 5);
        size_t padding = b(i + 6);
        if (buf.size() - i - 8 < length + padding) break;
        CHECK(b(i) == 1);  // FCGI_VERSION_1
        Record r;
        r.type = b(i + 1);
        r.request_id = b(i + 2) << 8 | b(i + 3);
        r.content = buf.substr(i + 8, length);
        out.push_back(std::move(r));
        i += 8 + length + padding;
    }
    buf.erase(0, i);
    return out;
}

// What the peer can read right now (the writes on a socketpair are there as soon as send() returns).
struct Peer {
    fastsse::UniqueFd fd;
    std::string buf;
    bool eof = false;

    void read_now() {
        char chunk[65536];
        for (;;) {
            ssize_t n = ::recv(fd.get(), chunk, sizeof chunk, MSG_DONTWAIT);
            if (n > 0) {
                buf.append(chunk, n);
                continue;
            }
            if (n == 0) eof = true;
            else if (errno == EINTR) continue;
            else REQUIRE((errno == EAGAIN || errno == EWOULDBLOCK));
            return;
        }
    }
    std::vector<Record> records() {
        read_now();
        return take_records(buf);
    }
};

// Captures the log lines (the server logs through spdlog's default logger), until the end of the scope.
class LogCapture {
public:
    LogCapture() : previous_(spdlog::default_logger()) {
        auto logger = std::make_shared<spdlog::logger>("test", std::make_shared<spdlog::sinks::ostream_sink_mt>(lines_));
        logger->set_pattern("%v");
        logger->set_level(spdlog::level::debug);
        spdlog::set_default_logger(logger);
    }
    ~LogCapture() { spdlog::set_default_logger(previous_); }
    LogCapture(const LogCapture&) = delete;
    LogCapture& operator=(const LogCapture&) = delete;
    std::string text() const { return lines_.str(); }

private:
    std::ostringstream lines_;
    std::shared_ptr<spdlog::logger> previous_;
};

// A fresh folder under /tmp, removed with everything in it at the end of the scope.
struct TempDir {
    std::filesystem::path path;
    TempDir() {
        char name[] = "/tmp/fastsse-unit-XXXXXX";
        REQUIRE(::mkdtemp(name) != nullptr);
        path = std::filesystem::canonical(name);
    }
    ~TempDir() { std::filesystem::remove_all(path); }

    std::string write(const std::string& name, const std::string& text, mode_t mode = 0644) const {
        auto file = (path / name).string();
        std::ofstream(file) << text;
        REQUIRE(::chmod(file.c_str(), mode) == 0);
        return file;
    }
};

}  // namespace fastsse_test
