// One client's stream over a real socket: a socketpair's one end is the Stream's Connection
// (non-blocking, as the Acceptor sets it), the test reads the other end and parses FastCGI records.
// The loop runs only where the Stream must notice something on it; it is stopped from callbacks,
// with a guard timer as a deadline, never by sleeping.
#include <doctest/doctest.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include <cerrno>
#include <chrono>
#include <functional>
#include <memory>
#include <algorithm>
#include <string>
#include <vector>

#include "fastsse/sse/event.hpp"
#include "fastsse/loop/event_loop.hpp"
#include "fastsse/fastcgi/records.hpp"
#include "fastsse/http/response.hpp"
#include "fastsse/http/stream.hpp"
#include "support.hpp"

using namespace std::chrono_literals;
using namespace std::string_view_literals;
using fastsse::Event;
using fastsse::Stream;
using fastsse::UniqueFd;

namespace {

using fastsse_test::Peer;
using fastsse_test::Record;
using fastsse_test::take_records;
using fastsse_test::type_end_request;
using fastsse_test::type_stdout;

constexpr std::string_view cgi_headers =
    "Status: 200 OK\r\n"
    "Content-Type: text/event-stream; charset=utf-8\r\n"
    "Cache-Control: no-cache\r\n"
    "X-Accel-Buffering: no\r\n"
    "\r\n";

struct Owner final : fastsse::StreamOwner {
    std::vector<uint64_t> retired;
    std::function<void()> on_retire;
    void retire(Stream& s) noexcept override {
        retired.push_back(s.id());
        if (on_retire) on_retire();
    }
};

struct Work final : fastsse::Subscription {
    explicit Work(bool& destroyed) : destroyed_(destroyed) {}
    ~Work() override { destroyed_ = true; }
    bool& destroyed_;
};

// One stream on one socketpair, with its loop, owner and log.
struct Fixture {
    fastsse_test::LogCapture log;
    fastsse::EventLoop loop;
    Owner owner;
    Peer peer;
    std::unique_ptr<Stream> stream;
    bool work_destroyed = false;
    uint16_t request_id = 1;
    int stream_fd = -1;  // the Stream's end of the socketpair (the Stream owns it)

    explicit Fixture(fastsse::StreamLimits limits = {}, uint16_t rid = 1, int sndbuf = 0) : request_id(rid) {
        int fds[2];
        REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) == 0);
        peer.fd = UniqueFd(fds[1]);
        if (sndbuf > 0) REQUIRE(::setsockopt(fds[0], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf) == 0);
        ::fcntl(fds[0], F_SETFL, ::fcntl(fds[0], F_GETFL) | O_NONBLOCK);
        fastsse::Connection c;
        c.fd = UniqueFd(fds[0]);
        stream_fd = fds[0];
        c.request_id = rid;
        c.request.method = "GET";
        stream = std::make_unique<Stream>(loop, owner, 7, std::move(c), limits, "test /events");
    }

    void begin() { stream->begin(std::make_unique<Work>(work_destroyed)); }

    // Runs the loop until done() holds after some callback, or the deadline passes.
    bool run_until(const std::function<bool()>& done, std::chrono::seconds deadline = 10s) {
        if (done()) return true;
        auto guard = loop.call_after(deadline, [&] { loop.stop(); });
        owner.on_retire = [&] {
            if (done()) loop.stop();
        };
        loop.run();
        owner.on_retire = nullptr;
        return done();
    }
};

// Reads the peer end from inside the loop, as a web server would; stops the loop once done() holds.
class PeerReader final : public fastsse::IoHandler {
public:
    PeerReader(fastsse::EventLoop& loop, Peer& peer, std::function<bool()> done)
        : loop_(loop), peer_(peer), done_(std::move(done)) {
        loop_.add(peer_.fd.get(), EPOLLIN | EPOLLRDHUP, this);
    }
    ~PeerReader() { loop_.remove(peer_.fd.get()); }
    void on_io(uint32_t) override {
        peer_.read_now();
        for (auto& r : take_records(peer_.buf)) received.push_back(std::move(r));
        if (done_()) loop_.stop();
    }
    std::vector<Record> received;

private:
    fastsse::EventLoop& loop_;
    Peer& peer_;
    std::function<bool()> done_;
};

Event data_event(std::string_view data) {
    Event e;
    e.data = data;
    return e;
}

bool is_end_request(const Record& r) { return r.type == type_end_request && r.content == std::string(8, '\0'); }

// Checks the first record: the CGI headers and the opening comment, nothing else.
void check_head(const Record& r, unsigned request_id = 1) {
    CHECK(r.type == type_stdout);
    CHECK(r.request_id == request_id);
    REQUIRE(r.content.starts_with(cgi_headers));
    auto body = std::string_view(r.content).substr(cgi_headers.size());
    // A comment block: it starts the body without firing any event in the browser.
    CHECK(body.starts_with(":"));
    CHECK(body.ends_with("\n\n"));
    CHECK(body.find("\ndata") == std::string_view::npos);
    CHECK(body.find("\n\n") == body.size() - 2);
}

}  // namespace

TEST_CASE("status_text") {
    CHECK(fastsse::status_text(200) == "OK");
    CHECK(fastsse::status_text(400) == "Bad Request");
    CHECK(fastsse::status_text(401) == "Unauthorized");
    CHECK(fastsse::status_text(403) == "Forbidden");
    CHECK(fastsse::status_text(404) == "Not Found");
    CHECK(fastsse::status_text(405) == "Method Not Allowed");
    CHECK(fastsse::status_text(406) == "Not Acceptable");
    CHECK(fastsse::status_text(413) == "Content Too Large");
    CHECK(fastsse::status_text(500) == "Internal Server Error");
    CHECK(fastsse::status_text(503) == "Service Unavailable");
    CHECK(fastsse::status_text(418) == "Error");
}

TEST_CASE("send_response: a complete short response, then the connection closed") {
    int fds[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) == 0);
    Peer peer;
    peer.fd = UniqueFd(fds[1]);
    fastsse::Connection c;
    c.fd = UniqueFd(fds[0]);
    c.request_id = 0x0203;

    SUBCASE("with extra headers and a body") {
        fastsse::send_response(c, 503, "Retry-After: 5\r\n", "Too many open streams (3).\n");
        CHECK_FALSE(c.fd);
        auto records = peer.records();
        CHECK(peer.eof);
        CHECK(peer.buf.empty());
        REQUIRE(records.size() == 3);
        CHECK(records[0].type == type_stdout);
        CHECK(records[0].request_id == 0x0203);
        CHECK(records[0].content ==
              "Status: 503 Service Unavailable\r\n"
              "Retry-After: 5\r\n"
              "Content-Type: text/plain; charset=utf-8\r\n"
              "\r\n"
              "Too many open streams (3).\n");
        CHECK(records[1].type == type_stdout);
        CHECK(records[1].content.empty());
        CHECK(records[1].request_id == 0x0203);
        CHECK(is_end_request(records[2]));
        CHECK(records[2].request_id == 0x0203);
    }
    SUBCASE("without a body: no Content-Type") {
        fastsse::send_response(c, 200, "Content-Type: text/event-stream; charset=utf-8\r\n", {});
        auto records = peer.records();
        CHECK(peer.eof);
        REQUIRE(records.size() == 3);
        CHECK(records[0].content == "Status: 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n\r\n");
        CHECK(records[1].content.empty());
        CHECK(is_end_request(records[2]));
    }
    SUBCASE("an unknown status") {
        fastsse::send_response(c, 418, {}, "x\n");
        auto records = peer.records();
        REQUIRE(records.size() == 3);
        CHECK(records[0].content == "Status: 418 Error\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nx\n");
    }
}

TEST_CASE("Stream: nothing is written before begin()") {
    Fixture f;
    f.stream->send(data_event("early"));
    f.stream->sweep(f.loop.now() + 1h);  // no heartbeat either
    f.peer.read_now();
    CHECK(f.peer.buf.empty());
    CHECK(f.owner.retired.empty());

    SUBCASE("begin() sends the headers, then what the producer already sent") {
        f.begin();
        auto records = f.peer.records();
        REQUIRE(records.size() == 2);
        check_head(records[0]);
        CHECK(records[1].type == type_stdout);
        CHECK(records[1].content == "data: early\n\n");
        CHECK(f.owner.retired.empty());
        CHECK(f.log.text().find("stream 7 opened: test /events") != std::string::npos);
    }
    SUBCASE("reject() drops what was queued and answers with the error alone") {
        f.stream->reject(fastsse::RequestError(406, "You must send a request with \"Accept: text/event-stream\"."));
        auto records = f.peer.records();
        CHECK(f.peer.eof);
        REQUIRE(records.size() == 3);
        CHECK(records[0].content ==
              "Status: 406 Not Acceptable\r\n"
              "Content-Type: text/plain; charset=utf-8\r\n"
              "\r\n"
              "You must send a request with \"Accept: text/event-stream\".\n");
        CHECK(records[1].type == type_stdout);
        CHECK(records[1].content.empty());
        CHECK(is_end_request(records[2]));
        CHECK(f.owner.retired == std::vector<uint64_t>{7});
        CHECK(f.log.text().find("406") != std::string::npos);
    }
}

TEST_CASE("Stream: begin() sends the CGI headers and the opening comment in one record") {
    Fixture f({}, 0x0102);
    f.begin();
    auto records = f.peer.records();
    REQUIRE(records.size() == 1);
    check_head(records[0], 0x0102);
    CHECK(f.peer.buf.empty());
    CHECK_FALSE(f.peer.eof);
    CHECK_FALSE(f.work_destroyed);
}

TEST_CASE("Stream: headers a producer adds while the stream opens go with the others; none after") {
    Fixture f;
    auto room = f.stream->room();
    f.stream->add_header("Last-Event-ID", "urn:uuid:1");
    CHECK(f.stream->room() == room - std::string_view("Last-Event-ID: urn:uuid:1\r\n").size());
    CHECK_THROWS_AS(f.stream->add_header("X", "a\nb"), std::invalid_argument);
    CHECK_THROWS_AS(f.stream->add_header("X", "a\rb"), std::invalid_argument);
    CHECK_THROWS_AS(f.stream->add_header("X", std::string_view("a\0b", 3)), std::invalid_argument);
    CHECK_THROWS_AS(f.stream->add_header("X:Y", "a"), std::invalid_argument);
    f.begin();
    auto records = f.peer.records();
    REQUIRE(records.size() == 1);
    CHECK(records[0].content.starts_with(std::string(cgi_headers.substr(0, cgi_headers.size() - 2)) +
                                         "Last-Event-ID: urn:uuid:1\r\n\r\n:"));
    CHECK_THROWS_WITH_AS(f.stream->add_header("X-Late", "1"), "a response header added after the headers left",
                         std::logic_error);
}

TEST_CASE("Stream: send() writes one FCGI_STDOUT record per event") {
    Fixture f({}, 9);
    f.begin();
    f.peer.records();

    Event tick;
    tick.event = "tick";
    tick.data = "1365685831";
    tick.id = "1";
    Event two_lines = data_event("un autre message\nsur deux lignes");
    Event reset;
    reset.data = "x";
    reset.id = "";
    f.stream->send(tick);
    f.stream->send(two_lines);
    f.stream->send(reset);

    auto records = f.peer.records();
    REQUIRE(records.size() == 3);
    CHECK(records[0].content == "event: tick\ndata: 1365685831\nid: 1\n\n");
    CHECK(records[1].content == "data: un autre message\ndata: sur deux lignes\n\n");
    CHECK(records[2].content == "data: x\nid\n\n");
    for (auto& r : records) {
        CHECK(r.type == type_stdout);
        CHECK(r.request_id == 9);
    }
    CHECK(f.peer.buf.empty());
    CHECK(f.owner.retired.empty());
}

TEST_CASE("Stream: send_encoded() writes the bytes it is given as send() would; room() counts them alike") {
    fastsse::StreamLimits limits;
    limits.max_buffer = 16 * 1024;
    Fixture f(limits, 5, 4096);
    Event tick;
    tick.event = "tick";
    tick.data = "two\nlines";
    tick.id = "7";
    auto bytes = fastsse::encode(tick);
    CHECK(fastsse::queued_size(bytes) == fastsse::queued_size(tick));
    std::string big(100'000, 'x');
    auto big_bytes = fastsse::encode(data_event(big));
    CHECK(fastsse::queued_size(big_bytes) == big_bytes.size() + 2 * 8);  // two records
    // Queued while the stream opens (a replay): each takes its queued_size of room().
    auto before = f.stream->room();
    f.stream->send_encoded(bytes);
    CHECK(f.stream->room() == before - fastsse::queued_size(bytes));
    f.stream->send(tick);
    CHECK(f.stream->room() == before - 2 * fastsse::queued_size(bytes));
    f.begin();
    auto records = f.peer.records();
    REQUIRE(records.size() == 3);
    check_head(records[0], 5);
    CHECK(records[1].content == bytes);
    CHECK(records[2].content == bytes);
    // Once the stream has ended, nothing more is written.
    f.stream->finish(std::nullopt);
    f.stream->send_encoded(bytes);
    records = f.peer.records();
    REQUIRE(records.size() == 2);  // the empty FCGI_STDOUT, then FCGI_END_REQUEST
    CHECK(records[0].content.empty());
    CHECK(is_end_request(records[1]));
}

TEST_CASE("Stream: an event larger than one record is split, in order") {
    Fixture f;
    f.begin();
    f.peer.records();
    std::string big(100'000, 'x');
    f.stream->send(data_event(big));
    f.stream->send(data_event("after"));
    // The socket's buffer may take the 100 KB in parts: let the loop flush while the peer reads.
    std::vector<Record>* got = nullptr;
    auto done = [&] { return got && !got->empty() && got->back().content == "data: after\n\n"; };
    PeerReader reader(f.loop, f.peer, done);
    got = &reader.received;
    REQUIRE(f.run_until(done));
    auto& records = reader.received;
    REQUIRE(records.size() == 3);
    CHECK(records[0].content.size() == fastsse::fastcgi::max_content);
    CHECK(records[0].content + records[1].content == "data: " + big + "\n\n");
    CHECK(records[2].content == "data: after\n\n");
}

TEST_CASE("Stream: an event with a bad name or id throws and writes nothing; the stream goes on") {
    Fixture f;
    f.begin();
    f.peer.records();
    Event bad = data_event("x");
    bad.event = "a\nb";
    CHECK_THROWS_AS(f.stream->send(bad), fastsse::EventError);
    Event bad_id = data_event("x");
    bad_id.id = "1\r";
    CHECK_THROWS_AS(f.stream->send(bad_id), fastsse::EventError);
    f.peer.read_now();
    CHECK(f.peer.buf.empty());
    f.stream->send(data_event("ok"));
    auto records = f.peer.records();
    REQUIRE(records.size() == 1);
    CHECK(records[0].content == "data: ok\n\n");
    CHECK(f.owner.retired.empty());
}

TEST_CASE("Stream: finish() ends the response and the stream retires itself") {
    Fixture f({}, 4);
    f.begin();
    f.peer.records();
    f.stream->send(data_event("last"));

    SUBCASE("with a retry hint") {
        f.stream->finish(2500ms);
        auto records = f.peer.records();
        REQUIRE(records.size() == 4);
        CHECK(records[0].content == "data: last\n\n");
        CHECK(records[1].type == type_stdout);
        CHECK(records[1].content == "retry: 2500\n\n");
        CHECK(records[2].type == type_stdout);
        CHECK(records[2].content.empty());
        CHECK(is_end_request(records[3]));
        for (auto& r : records) CHECK(r.request_id == 4);
    }
    SUBCASE("without a retry hint") {
        f.stream->finish(std::nullopt);
        auto records = f.peer.records();
        REQUIRE(records.size() == 3);
        CHECK(records[0].content == "data: last\n\n");
        CHECK(records[1].type == type_stdout);
        CHECK(records[1].content.empty());
        CHECK(is_end_request(records[2]));
    }
    CHECK(f.peer.buf.empty());
    CHECK(f.owner.retired == std::vector<uint64_t>{7});
    CHECK(f.log.text().find("stream 7 closed: finished") != std::string::npos);

    // Anything later is ignored: no bytes after END_REQUEST, no second retire.
    f.stream->send(data_event("too late"));
    f.stream->finish(1000ms);
    f.stream->sweep(f.loop.now() + 1h);
    f.peer.read_now();
    CHECK(f.peer.buf.empty());
    CHECK(f.owner.retired.size() == 1);

    // The stream keeps its work and its connection until the owner destroys it.
    CHECK_FALSE(f.work_destroyed);
    CHECK_FALSE(f.peer.eof);
    f.stream.reset();
    CHECK(f.work_destroyed);
    f.peer.read_now();
    CHECK(f.peer.eof);
    CHECK(f.peer.buf.empty());
}

TEST_CASE("Stream: finish() before begin() is written by begin()") {
    Fixture f;
    f.stream->send(data_event("one"));
    f.stream->finish(100ms);
    f.peer.read_now();
    CHECK(f.peer.buf.empty());
    CHECK(f.owner.retired.empty());
    f.begin();
    auto records = f.peer.records();
    REQUIRE(records.size() == 5);
    check_head(records[0]);
    CHECK(records[1].content == "data: one\n\n");
    CHECK(records[2].content == "retry: 100\n\n");
    CHECK(records[3].content.empty());
    CHECK(is_end_request(records[4]));
    CHECK(f.owner.retired == std::vector<uint64_t>{7});
}

TEST_CASE("Stream: the client leaving is noticed on the loop") {
    Fixture f;
    f.begin();
    f.peer.records();
    f.peer.fd.reset();  // nginx closes the upstream connection when the browser goes
    REQUIRE(f.run_until([&] { return !f.owner.retired.empty(); }));
    CHECK(f.owner.retired == std::vector<uint64_t>{7});
    CHECK(f.log.text().find("stream 7 closed: client gone") != std::string::npos);

    // Retired, not destroyed: the producer's work goes only when the owner destroys the stream.
    CHECK_FALSE(f.work_destroyed);
    f.stream->send(data_event("nobody listens"));  // ignored, no second retire
    f.stream->finish(1s);
    CHECK(f.owner.retired.size() == 1);
    f.stream.reset();
    CHECK(f.work_destroyed);
}

TEST_CASE("Stream: input from the web server is read and ignored") {
    Fixture f;
    f.begin();
    f.peer.records();
    // An empty FCGI_STDIN record, as nginx sends after the params.
    const char stdin_record[8] = {1, 5, 0, 1, 0, 0, 0, 0};
    REQUIRE(::send(f.peer.fd.get(), stdin_record, sizeof stdin_record, 0) == 8);
    // One loop iteration: the bytes are already there, so epoll reports them before the posted stop.
    f.loop.post([&] { f.loop.stop(); });
    auto guard = f.loop.call_after(10s, [&] { f.loop.stop(); });
    f.loop.run();
    CHECK(f.owner.retired.empty());
    f.stream->send(data_event("still here"));
    auto records = f.peer.records();
    REQUIRE(records.size() == 1);
    CHECK(records[0].content == "data: still here\n\n");

    SUBCASE("then the end of input means the client left") {
        REQUIRE(::shutdown(f.peer.fd.get(), SHUT_WR) == 0);
        REQUIRE(f.run_until([&] { return !f.owner.retired.empty(); }));
        CHECK(f.owner.retired.size() == 1);
        CHECK(f.log.text().find("closed: client gone") != std::string::npos);
    }
}

namespace {
volatile sig_atomic_t sigpipes = 0;
void count_sigpipe(int) { sigpipes = sigpipes + 1; }

// Installs a SIGPIPE disposition for one test and restores the previous one.
struct SigpipeGuard {
    struct sigaction old{};
    explicit SigpipeGuard(void (*handler)(int)) {
        struct sigaction sa{};
        sa.sa_handler = handler;
        sigemptyset(&sa.sa_mask);
        ::sigaction(SIGPIPE, &sa, &old);
    }
    ~SigpipeGuard() { ::sigaction(SIGPIPE, &old, nullptr); }
};
}  // namespace

TEST_CASE("Stream: a write to a client that left closes the stream at once") {
    SigpipeGuard ignore(SIG_IGN);  // as main() does
    Fixture f;
    f.begin();
    f.peer.records();
    f.peer.fd.reset();
    f.stream->send(data_event("into the void"));
    CHECK(f.owner.retired == std::vector<uint64_t>{7});
    CHECK(f.log.text().find("stream 7 closed: client gone (write failed)") != std::string::npos);
    f.stream->send(data_event("again"));
    CHECK(f.owner.retired.size() == 1);
    CHECK_FALSE(f.work_destroyed);
}

// A library must not kill a process that has not ignored SIGPIPE: every write uses MSG_NOSIGNAL.
TEST_CASE("Stream: writing to a client that left raises no SIGPIPE") {
    SigpipeGuard count(count_sigpipe);
    sigpipes = 0;
    Fixture f;
    f.begin();
    f.peer.records();
    f.peer.fd.reset();
    f.stream->send(data_event("into the void"));
    CHECK(f.owner.retired.size() == 1);
    CHECK(sigpipes == 0);
}

TEST_CASE("Stream: heartbeats after the heartbeat interval without output") {
    fastsse::StreamLimits limits;
    limits.heartbeat = 5s;
    Fixture f(limits);
    f.begin();
    f.peer.records();
    auto t0 = f.loop.now();  // the loop has not run: its clock is where the stream began

    f.stream->sweep(t0 + 5s - 1ms);
    f.peer.read_now();
    CHECK(f.peer.buf.empty());

    f.stream->sweep(t0 + 5s);
    auto records = f.peer.records();
    REQUIRE(records.size() == 1);
    CHECK(records[0].type == type_stdout);
    CHECK(records[0].content == ": heartbeat\n\n");
    CHECK(f.owner.retired.empty());
}

TEST_CASE("Stream: a slow client is dropped once its queue passes the limit") {
    fastsse::StreamLimits limits;
    limits.max_buffer = 16 * 1024;
    Fixture f(limits, 1, 4096);  // a small socket buffer, and the peer never reads
    f.begin();

    std::string payload(1000, 'p');
    int sent = 0;
    for (; sent < 10'000 && f.owner.retired.empty(); ++sent) f.stream->send(data_event(payload));
    REQUIRE(f.owner.retired == std::vector<uint64_t>{7});
    CHECK(f.log.text().find("stream 7 closed: dropped: output buffer full") != std::string::npos);
    // Dropped only when the limit was passed: the socket's buffer and the queue together held more.
    CHECK(sent * 1000 > static_cast<int>(limits.max_buffer));

    // Later calls are ignored.
    f.stream->send(data_event(payload));
    f.stream->finish(1s);
    f.stream->sweep(f.loop.now() + 1h);
    CHECK(f.owner.retired.size() == 1);
    CHECK_FALSE(f.work_destroyed);

    // What did reach the client is whole records, in order.
    auto records = f.peer.records();
    REQUIRE_FALSE(records.empty());
    check_head(records[0]);
    for (size_t i = 1; i < records.size(); ++i) CHECK(records[i].content == "data: " + payload + "\n\n");
    CHECK(static_cast<int>(records.size()) - 1 < sent);

    f.stream.reset();
    CHECK(f.work_destroyed);
}

TEST_CASE("Stream: a descriptor epoll refuses to watch closes the stream, and nothing throws") {
    // Before, EventLoop::modify threw out of the stream's write path, out of the loop's callback,
    // and ended the process with every other stream.
    Fixture f({}, 1, 4096);
    f.begin();
    f.loop.remove(f.stream_fd);  // epoll_ctl(MOD) now fails with ENOENT
    std::string payload(64 * 1024, 'p');  // more than the socket takes: the stream must watch for output
    CHECK_NOTHROW(f.stream->send(data_event(payload)));
    REQUIRE(f.owner.retired == std::vector<uint64_t>{7});
    CHECK(f.log.text().find("stream 7 closed: write error (epoll: No such file or directory)") != std::string::npos);
}

TEST_CASE("Stream: an event larger than the queue limit reaches a client that keeps up (one record)") {
    fastsse::StreamLimits limits;
    limits.max_buffer = 4096;  // the smallest stream_buffer setting
    Fixture f(limits);         // the default socket buffer has room for the whole event
    f.begin();
    f.peer.records();
    std::string big(20'000, 'b');
    f.stream->send(data_event(big));
    CHECK(f.owner.retired.empty());
    auto records = f.peer.records();
    REQUIRE(records.size() == 1);
    CHECK(records[0].content == "data: " + big + "\n\n");
}

// Only what the socket refused counts against the queue limit: an event over 64 KiB (several
// records) reaches a client with an empty socket buffer.
TEST_CASE("Stream: an event larger than the queue limit reaches a client that keeps up (several records)") {
    fastsse::StreamLimits limits;
    limits.max_buffer = 4096;
    Fixture f(limits);
    f.begin();
    f.peer.records();
    std::string big(70'000, 'b');
    f.stream->send(data_event(big));
    CHECK(f.owner.retired.empty());
    auto records = f.peer.records();
    REQUIRE(records.size() == 2);
    CHECK(records[0].content + records[1].content == "data: " + big + "\n\n");
}

// A Mercure update may be as big as max_body (1 MiB), four times stream_buffer: to a client that
// had caught up it goes whole even though the socket takes a few KiB of it, and the limit counts
// what piles up behind it, until the queue drains.
TEST_CASE("Stream: an event larger than the limit, queued behind nothing, waits whole; the limit counts what follows") {
    fastsse::StreamLimits limits;
    limits.max_buffer = 16 * 1024;
    Fixture f(limits, 1, 4096);  // the socket takes a few KiB; the peer reads only when told
    f.begin();
    f.peer.records();
    std::string big(1 << 20, 'b');
    f.stream->send(data_event(big));
    REQUIRE(f.owner.retired.empty());
    CHECK(f.stream->room() > 0);
    CHECK(f.stream->room() <= limits.max_buffer);

    // Behind it, up to the limit and no more.
    std::string small(1000, 's');
    int sent = 0;
    for (; sent < 100 && f.stream->room() >= fastsse::queued_size(data_event(small)); ++sent)
        f.stream->send(data_event(small));
    CHECK(f.owner.retired.empty());
    CHECK(sent >= 10);  // most of the 16 KiB, framing aside

    // The client reads: everything arrives, in order, and the queue is empty again.
    const std::string big_framed = "data: " + big + "\n\n";
    const size_t big_records = (big_framed.size() + 65534) / 65535;  // 17: records hold 65,535 bytes at most
    size_t expected_records = big_records + sent;
    std::vector<Record>* got = nullptr;
    auto done = [&] { return got && got->size() >= expected_records; };
    {
        PeerReader reader(f.loop, f.peer, done);
        got = &reader.received;
        REQUIRE(f.run_until(done));
        std::string first;
        REQUIRE(reader.received.size() == expected_records);
        for (size_t i = 0; i < big_records; ++i) first += reader.received[i].content;
        CHECK(first == big_framed);
        for (size_t i = big_records; i < reader.received.size(); ++i) CHECK(reader.received[i].content == "data: " + small + "\n\n");
    }
    CHECK(f.owner.retired.empty());
    CHECK(f.stream->room() == limits.max_buffer);  // the allowance went with the queue

    // Past the limit behind a big event, the client is dropped as any slow one is.
    f.stream->send(data_event(big));
    for (int i = 0; i < 100 && f.owner.retired.empty(); ++i) f.stream->send(data_event(small));
    CHECK(f.owner.retired == std::vector<uint64_t>{7});
}

TEST_CASE("Stream: what a producer queues while the stream opens counts against the limit") {
    // A replay of 100 KB, sent by the producer before begin(), to a stream that may hold 16 KiB.
    fastsse::StreamLimits limits;
    limits.max_buffer = 16 * 1024;
    Fixture f(limits, 1, 4096);  // a small socket buffer, and the peer never reads
    std::string payload(1000, 'p');
    for (int i = 0; i < 100; ++i) f.stream->send(data_event(payload));
    CHECK(f.owner.retired.empty());  // nothing is decided before begin(): reject() is still possible
    CHECK(f.stream->room() == 0);
    f.begin();
    REQUIRE(f.owner.retired == std::vector<uint64_t>{7});
    CHECK(f.log.text().find("stream 7 closed: dropped: output buffer full") != std::string::npos);
    CHECK(f.stream->room() == 0);
}

TEST_CASE("Stream: room() is what may still be queued; a producer that keeps to it is not dropped") {
    fastsse::StreamLimits limits;
    limits.max_buffer = 16 * 1024;
    Fixture f(limits, 1, 4096);
    // While the stream opens, the head that begin() puts first is counted already.
    CHECK(f.stream->room() < limits.max_buffer);
    CHECK(f.stream->room() > limits.max_buffer - 256);

    std::string payload(1000, 'p');
    auto e = data_event(payload);
    CHECK(fastsse::queued_size(e) == 8 + 6 + payload.size() + 2);  // one record: "data: ...\n\n"
    size_t sent = 0;
    while (fastsse::queued_size(e) <= f.stream->room()) {
        auto before = f.stream->room();
        f.stream->send(e);
        ++sent;
        CHECK(f.stream->room() == before - fastsse::queued_size(e));
    }
    CHECK(sent == (limits.max_buffer - 256) / fastsse::queued_size(e));  // 15: all the head left room for
    f.begin();
    CHECK(f.owner.retired.empty());

    std::vector<Record>* got = nullptr;
    auto all_came = [&] { return got && got->size() == 1 + sent; };
    PeerReader reader(f.loop, f.peer, all_came);
    got = &reader.received;
    REQUIRE(f.run_until(all_came));
    check_head(reader.received[0]);
    for (size_t i = 1; i < reader.received.size(); ++i) CHECK(reader.received[i].content == "data: " + payload + "\n\n");
    CHECK(f.owner.retired.empty());
    // A stream that ended has no room.
    f.stream->finish(std::nullopt);
    CHECK(f.stream->room() == 0);
}

TEST_CASE("Stream: a client that takes nothing for the write timeout is dropped") {
    fastsse::StreamLimits limits;
    limits.max_buffer = 1 << 20;
    limits.write_timeout = 30s;
    Fixture f(limits, 1, 4096);
    f.begin();
    auto t0 = f.loop.now();
    std::string payload(1000, 'p');
    for (int i = 0; i < 100; ++i) f.stream->send(data_event(payload));  // ~100 KB: far more than the socket holds
    REQUIRE(f.owner.retired.empty());

    f.stream->sweep(t0 + 30s - 1ms);
    CHECK(f.owner.retired.empty());
    f.stream->sweep(t0 + 30s);
    CHECK(f.owner.retired == std::vector<uint64_t>{7});
    CHECK(f.log.text().find("stream 7 closed: dropped: write timeout") != std::string::npos);
}

TEST_CASE("Stream: a client that catches up gets everything, in order, then the end") {
    fastsse::StreamLimits limits;
    limits.max_buffer = 1 << 20;
    Fixture f(limits, 1, 4096);
    f.begin();
    std::vector<std::string> expected;
    for (int i = 0; i < 200; ++i) {
        auto data = std::to_string(i) + ":" + std::string(500, static_cast<char>('a' + i % 26));
        expected.push_back("data: " + data + "\n\n");
        f.stream->send(data_event(data));
    }
    f.stream->finish(3000ms);  // with output still queued: the end waits for it
    CHECK(f.owner.retired.empty());

    std::vector<Record>* got = nullptr;
    auto done = [&] { return !f.owner.retired.empty() && got && !got->empty() && is_end_request(got->back()); };
    PeerReader reader(f.loop, f.peer, done);
    got = &reader.received;
    REQUIRE(f.run_until(done));
    auto& records = reader.received;
    REQUIRE(records.size() == 1 + expected.size() + 3);
    check_head(records[0]);
    for (size_t i = 0; i < expected.size(); ++i) {
        CAPTURE(i);
        CHECK(records[1 + i].content == expected[i]);
    }
    CHECK(records[records.size() - 3].content == "retry: 3000\n\n");
    CHECK(records[records.size() - 2].content.empty());
    CHECK(is_end_request(records.back()));
    CHECK(f.owner.retired == std::vector<uint64_t>{7});
    CHECK(f.log.text().find("stream 7 closed: finished") != std::string::npos);
}

TEST_CASE("Stream: reject() writes a complete error response") {
    Fixture f({}, 3);
    f.stream->reject(fastsse::RequestError::method_not_allowed("Method POST is not allowed.", "GET, HEAD"));
    auto records = f.peer.records();
    CHECK(f.peer.eof);
    REQUIRE(records.size() == 3);
    CHECK(records[0].type == type_stdout);
    CHECK(records[0].request_id == 3);
    CHECK(records[0].content ==
          "Status: 405 Method Not Allowed\r\n"
          "Allow: GET, HEAD\r\n"
          "Content-Type: text/plain; charset=utf-8\r\n"
          "\r\n"
          "Method POST is not allowed.\n");
    CHECK(records[1].content.empty());
    CHECK(is_end_request(records[2]));
    CHECK(records[2].request_id == 3);
    CHECK(f.owner.retired == std::vector<uint64_t>{7});

    // A rejected stream ignores the Sink calls of a producer that still holds it.
    f.stream->send(data_event("x"));
    f.stream->finish(1s);
    CHECK(f.owner.retired.size() == 1);
    f.stream.reset();  // and is destroyed cleanly, its connection already closed
}

TEST_CASE("CloseReason: each reason has its own words in the log") {
    using fastsse::CloseReason;
    std::vector<std::string_view> words;
    for (auto r : {CloseReason::client_gone, CloseReason::write_failed, CloseReason::write_error,
                   CloseReason::buffer_full, CloseReason::write_timeout, CloseReason::finished})
        words.push_back(fastsse::to_string(r));
    std::sort(words.begin(), words.end());
    CHECK(std::adjacent_find(words.begin(), words.end()) == words.end());
    CHECK(fastsse::to_string(CloseReason::buffer_full) == "dropped: output buffer full");
}
