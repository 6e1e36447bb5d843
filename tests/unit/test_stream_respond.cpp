// Stream::respond(): a whole answer instead of an event stream (the hub's subscription API), over a
// real socketpair with a small send buffer, read from inside the loop as a web server would. An
// answer larger than the socket takes is not cut and does not hold the caller: the rest leaves as
// the peer reads, then the end of the request, and the stream retires itself.
#include <doctest/doctest.h>

#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "fastsse/http/stream.hpp"
#include "fastsse/loop/event_loop.hpp"
#include "support.hpp"

using namespace std::chrono_literals;
using fastsse::Stream;
using fastsse::UniqueFd;
using fastsse_test::Peer;
using fastsse_test::Record;

namespace {

struct Owner final : fastsse::StreamOwner {
    std::vector<uint64_t> retired;
    void retire(Stream& s) noexcept override { retired.push_back(s.id()); }
};

struct Reader final : fastsse::IoHandler {
    Reader(fastsse::EventLoop& loop, Peer& peer, std::function<bool(const std::vector<Record>&)> done)
        : loop_(loop), peer_(peer), done_(std::move(done)) {
        loop_.add(peer_.fd.get(), EPOLLIN | EPOLLRDHUP, this);
    }
    ~Reader() { loop_.remove(peer_.fd.get()); }
    void on_io(uint32_t) override {
        peer_.read_now();
        for (auto& r : fastsse_test::take_records(peer_.buf)) received.push_back(std::move(r));
        if (done_(received)) loop_.stop();
    }
    std::vector<Record> received;
    fastsse::EventLoop& loop_;
    Peer& peer_;
    std::function<bool(const std::vector<Record>&)> done_;
};

}  // namespace

TEST_CASE("Stream::respond: an answer larger than the socket takes leaves whole, as the peer reads") {
    fastsse_test::LogCapture log;
    fastsse::EventLoop loop;
    Owner owner;
    Peer peer;
    int fds[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) == 0);
    peer.fd = UniqueFd(fds[1]);
    int sndbuf = 4096;
    REQUIRE(::setsockopt(fds[0], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf) == 0);
    ::fcntl(fds[0], F_SETFL, ::fcntl(fds[0], F_GETFL) | O_NONBLOCK);
    fastsse::Connection c;
    c.fd = UniqueFd(fds[0]);
    c.request_id = 3;
    fastsse::StreamLimits limits;
    limits.max_buffer = 4096;  // the answer is not a slow client's backlog: no limit drops it
    auto stream = std::make_unique<Stream>(loop, owner, 9, std::move(c), limits, "answer test");

    std::string body(1 << 20, 'j');
    for (size_t i = 0; i < body.size(); i += 997) body[i] = static_cast<char>('a' + i % 26);
    stream->respond("Status: 200 OK\r\nContent-Type: application/json\r\n", body);
    CHECK(owner.retired.empty());  // returned with most of it queued

    auto done = [&](const std::vector<Record>& r) {
        return !owner.retired.empty() && !r.empty() && r.back().type == fastsse_test::type_end_request;
    };
    Reader reader(loop, peer, done);
    auto guard = loop.call_after(10s, [&] { loop.stop(); });
    loop.run();
    REQUIRE(done(reader.received));
    std::string stdout_bytes;
    for (size_t i = 0; i + 1 < reader.received.size(); ++i) {
        CHECK(reader.received[i].type == fastsse_test::type_stdout);
        CHECK(reader.received[i].request_id == 3);
        stdout_bytes += reader.received[i].content;
    }
    CHECK(reader.received[reader.received.size() - 2].content.empty());  // the end of stdout
    CHECK(stdout_bytes == "Status: 200 OK\r\nContent-Type: application/json\r\n\r\n" + body);
    CHECK(owner.retired == std::vector<uint64_t>{9});
    CHECK(log.text().find("stream 9 closed: finished") != std::string::npos);
    // No producer: a heartbeat never comes into an answer.
    CHECK(stdout_bytes.find(": heartbeat") == std::string::npos);
}

TEST_CASE("Stream::respond: only while the stream opens") {
    fastsse::EventLoop loop;
    Owner owner;
    int fds[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, fds) == 0);
    UniqueFd other(fds[1]);
    fastsse::Connection c;
    c.fd = UniqueFd(fds[0]);
    Stream stream(loop, owner, 1, std::move(c), {}, "twice");
    stream.respond("Status: 200 OK\r\n", "x");
    CHECK_THROWS_AS(stream.respond("Status: 200 OK\r\n", "y"), std::logic_error);
}
