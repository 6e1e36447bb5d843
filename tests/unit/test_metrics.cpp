// The metrics' pure parts: the text exposition (escaping, histogram buckets, families), the counts
// a Stream keeps on a real socket pair (opened, closed by reason, events, bytes, heartbeats), and
// /proc/self/stat's parsing. The format itself is checked by promtool on the page a real fastsse
// serves (tests/integration/test_metrics.py).
#include <doctest/doctest.h>

#include <fcntl.h>
#include <sys/socket.h>

#include <chrono>
#include <functional>
#include <memory>
#include <set>
#include <string>

#include "fastsse/http/stream.hpp"
#include "fastsse/loop/event_loop.hpp"
#include "fastsse/metrics/metrics.hpp"
#include "support.hpp"

using namespace std::chrono_literals;
namespace metrics = fastsse::metrics;
using metrics::StreamEnd;

namespace {

size_t occurrences(const std::string& text, std::string_view what) {
    size_t n = 0;
    for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
    return n;
}

// The lines of `text` that start with `prefix`.
std::vector<std::string> lines_starting(const std::string& text, std::string_view prefix) {
    std::vector<std::string> out;
    size_t pos = 0;
    while (pos < text.size()) {
        auto end = text.find('\n', pos);
        auto line = text.substr(pos, end - pos);
        if (line.starts_with(prefix)) out.push_back(line);
        pos = end == std::string::npos ? text.size() : end + 1;
    }
    return out;
}

struct Owner final : fastsse::StreamOwner {
    int retired = 0;
    std::function<void()> on_retire;
    void retire(fastsse::Stream&) noexcept override {
        ++retired;
        if (on_retire) on_retire();
    }
};

struct Nothing final : fastsse::Subscription {};

// A stream on a socket pair, counted as producer "test".
struct Counted {
    fastsse_test::LogCapture log;
    fastsse::EventLoop loop;
    Owner owner;
    fastsse_test::Peer peer;
    std::unique_ptr<fastsse::Stream> stream;
    metrics::ProducerStreams& producer = metrics::counts.producer("test");

    explicit Counted(fastsse::StreamLimits limits = {}, int sndbuf = 0) {
        metrics::counts.reset();
        int fds[2];
        REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) == 0);
        peer.fd = fastsse::UniqueFd(fds[1]);
        if (sndbuf > 0) REQUIRE(::setsockopt(fds[0], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf) == 0);
        ::fcntl(fds[0], F_SETFL, ::fcntl(fds[0], F_GETFL) | O_NONBLOCK);
        fastsse::Connection c;
        c.fd = fastsse::UniqueFd(fds[0]);
        c.request_id = 1;
        stream = std::make_unique<fastsse::Stream>(loop, owner, 1, std::move(c), limits, "test");
        stream->begin(std::make_unique<Nothing>(), &producer);
    }
    uint64_t closed(StreamEnd end) const { return producer.closed[static_cast<size_t>(end)]; }
    uint64_t closed_total() const {
        uint64_t n = 0;
        for (auto c : producer.closed) n += c;
        return n;
    }
};

fastsse::Event data_event(std::string_view data) {
    fastsse::Event e;
    e.data = data;
    return e;
}

}  // namespace

TEST_CASE("escape_label_value: backslash, quote and line feed, nothing else") {
    CHECK(metrics::escape_label_value("plain") == "plain");
    CHECK(metrics::escape_label_value(R"(a\b)") == R"(a\\b)");
    CHECK(metrics::escape_label_value(R"(say "hi")") == R"(say \"hi\")");
    CHECK(metrics::escape_label_value("two\nlines") == R"(two\nlines)");
    CHECK(metrics::escape_label_value("tab\tand {braces}, = signs") == "tab\tand {braces}, = signs");
}

TEST_CASE("TextWriter: HELP and TYPE once per family, then its samples with their labels") {
    metrics::TextWriter w;
    w.family("x_total", "counter", "Help with a \\ backslash\nand a line feed.");
    w.sample("x_total", {{"a", "1"}, {"b", "q\"uote"}}, uint64_t{3});
    w.sample("x_total", {}, 2.5);
    w.sample("x_total", {{"a", "2"}}, -1ll);
    CHECK(w.text() ==
          "# HELP x_total Help with a \\\\ backslash\\nand a line feed.\n"
          "# TYPE x_total counter\n"
          "x_total{a=\"1\",b=\"q\\\"uote\"} 3\n"
          "x_total 2.5\n"
          "x_total{a=\"2\"} -1\n");
}

TEST_CASE("Histogram: each observation in the first bucket whose bound holds it; the exposition adds them up") {
    metrics::Histogram h;
    h.observe(0.0);                                  // the first bucket
    h.observe(metrics::Histogram::bounds[0]);        // on a bound: in it (le)
    h.observe(std::chrono::microseconds(700));       // 0.0007 s: le 0.001
    h.observe(10.0);                                 // past every bound: +Inf only
    CHECK(h.count() == 4);
    CHECK(h.sum() == doctest::Approx(10.0 + 0.0007 + metrics::Histogram::bounds[0]));
    CHECK(h.buckets()[0] == 2);
    CHECK(h.buckets().back() == 1);

    metrics::TextWriter w;
    w.histogram("t_seconds", {{"source", "clock"}}, h);
    auto buckets = lines_starting(w.text(), "t_seconds_bucket{");
    REQUIRE(buckets.size() == metrics::Histogram::bounds.size() + 1);
    CHECK(buckets.front() == "t_seconds_bucket{source=\"clock\",le=\"5e-05\"} 2");
    CHECK(buckets.back() == "t_seconds_bucket{source=\"clock\",le=\"+Inf\"} 4");
    // Cumulative: never decreasing, and +Inf is the count.
    long long last = -1;
    for (const auto& line : buckets) {
        auto v = std::stoll(line.substr(line.rfind(' ') + 1));
        CHECK(v >= last);
        last = v;
    }
    CHECK(occurrences(w.text(), "le=\"0.001\"} 3") == 1);
    CHECK(lines_starting(w.text(), "t_seconds_count{source=\"clock\"} 4").size() == 1);
    CHECK(lines_starting(w.text(), "t_seconds_sum{source=\"clock\"} 10.0").size() == 1);
}

TEST_CASE("ByStatus: one series per status counted, anything outside 100-599 as one") {
    metrics::ByStatus s;
    s.add(404);
    s.add(404);
    s.add(503);
    s.add(-7);
    s.add(1'000'000);
    std::vector<std::pair<int, uint64_t>> seen;
    s.each([&](int status, uint64_t n) { seen.emplace_back(status, n); });
    CHECK(seen == std::vector<std::pair<int, uint64_t>>{{404, 2}, {503, 1}, {0, 2}});
}

TEST_CASE("exposition: each family once, labels bounded, the process's own figures") {
    metrics::Counts c;
    c.producer("clock").open = 2;
    c.producer("hub");
    c.refused.add(406);
    c.hub_publishes.add(200);
    c.clock_fan_out.observe(0.002);
    auto page = metrics::exposition(c, {1234});
    std::set<std::string> families;
    for (const auto& line : lines_starting(page, "# TYPE ")) {
        auto name = line.substr(7, line.find(' ', 7) - 7);
        CHECK_MESSAGE(families.insert(name).second, "twice: ", name);
    }
    for (const char* name : {"fastsse_streams_open", "fastsse_streams_closed_total", "fastsse_fanout_seconds",
                             "mercure_subscribers_connected", "mercure_updates_total", "mercure_subscribers_total",
                             "process_cpu_seconds_total", "process_open_fds", "process_max_fds",
                             "process_resident_memory_bytes", "process_virtual_memory_bytes",
                             "process_start_time_seconds"})
        CHECK_MESSAGE(families.contains(name), name);
    CHECK(occurrences(page, "fastsse_streams_open{producer=\"clock\"} 2\n") == 1);
    CHECK(occurrences(page, "fastsse_streams_open{producer=\"hub\"} 0\n") == 1);
    CHECK(occurrences(page, "fastsse_streams_max 1234\n") == 1);
    CHECK(occurrences(page, "fastsse_requests_refused_total{status=\"406\"} 1\n") == 1);
    CHECK(occurrences(page, "fastsse_hub_publishes_total{status=\"200\"} 1\n") == 1);
    // Every reason of every producer, from the start (a rate() needs the series before it moves).
    CHECK(lines_starting(page, "fastsse_streams_closed_total{").size() == 2 * metrics::stream_ends);
    CHECK(occurrences(page, "fastsse_streams_closed_total{producer=\"hub\",reason=\"token_expired\"} 0\n") == 1);
    // The Redis engine's lines only with it.
    CHECK(occurrences(page, "fastsse_redis_connected") == 0);
    c.redis_engine = true;
    c.redis_connected = true;
    CHECK(occurrences(metrics::exposition(c, {1}), "\nfastsse_redis_connected 1\n") == 1);
}

TEST_CASE("parse_proc_stat: the fields after the command name, whatever its name holds") {
    // Fields 22 (start time), 23 (vsize), 24 (rss) of a real line's shape.
    std::string rest = " S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 777 123456789 4242 18446744073709551615 1 1";
    auto plain = metrics::parse_proc_stat("42 (fastsse)" + rest);
    REQUIRE(plain);
    CHECK(plain->start_ticks == 777);
    CHECK(plain->vsize == 123456789);
    CHECK(plain->rss_pages == 4242);
    auto odd = metrics::parse_proc_stat("42 (a) b) 1 2 (x)" + rest);  // a name with ") " and spaces
    REQUIRE(odd);
    CHECK(odd->rss_pages == 4242);
    CHECK_FALSE(metrics::parse_proc_stat("42 (fastsse) S 1 2 3"));
    CHECK_FALSE(metrics::parse_proc_stat("no parenthesis at all"));
    CHECK_FALSE(metrics::parse_proc_stat("42 (x)" + std::string(" S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 z 1 2")));
    CHECK(metrics::parse_boot_time("cpu 1 2 3\nbtime 1764500000\nprocesses 9\n") == 1764500000);
    CHECK_FALSE(metrics::parse_boot_time("cpu 1 2 3\n"));
}

TEST_CASE("Stream: counted open from begin() to its close, by producer, and closed by reason") {
    SUBCASE("the client leaves") {
        Counted s;
        CHECK(s.producer.open == 1);
        CHECK(s.producer.opened == 1);
        s.peer.fd.reset();
        auto guard = s.loop.call_after(5s, [&] { s.loop.stop(); });
        s.owner.on_retire = [&] { s.loop.stop(); };
        s.loop.run();
        REQUIRE(s.owner.retired == 1);
        CHECK(s.producer.open == 0);
        CHECK(s.closed(StreamEnd::client_left) == 1);
        CHECK(s.closed_total() == 1);
    }
    SUBCASE("the producer finishes it") {
        Counted s;
        s.stream->finish(1s);
        CHECK(s.closed(StreamEnd::finished) == 1);
        CHECK(s.producer.open == 0);
    }
    SUBCASE("shutdown") {
        Counted s;
        s.stream->shut_down();
        CHECK(s.closed(StreamEnd::shutdown) == 1);
        CHECK(s.closed_total() == 1);
    }
    SUBCASE("the hub's token expires") {
        Counted s;
        s.stream->expire(std::nullopt);
        CHECK(s.closed(StreamEnd::token_expired) == 1);
        CHECK(s.closed_total() == 1);
    }
    SUBCASE("a slow client is dropped") {
        fastsse::StreamLimits limits;
        limits.max_buffer = 16 * 1024;
        Counted s(limits, 4096);
        std::string payload(1000, 'p');
        for (int i = 0; i < 10'000 && s.owner.retired == 0; ++i) s.stream->send(data_event(payload));
        REQUIRE(s.owner.retired == 1);
        CHECK(s.closed(StreamEnd::slow_client) == 1);
        CHECK(s.closed_total() == 1);
        CHECK(s.producer.open == 0);
    }
    SUBCASE("a client that takes nothing for write_timeout") {
        fastsse::StreamLimits limits;
        limits.write_timeout = 30s;
        Counted s(limits, 4096);
        std::string payload(1000, 'p');
        for (int i = 0; i < 8; ++i) s.stream->send(data_event(payload));
        s.stream->sweep(s.loop.now() + 31s);
        REQUIRE(s.owner.retired == 1);
        CHECK(s.closed(StreamEnd::write_timeout) == 1);
    }
    SUBCASE("destroyed open (the server stopped): shutdown") {
        Counted s;
        s.stream.reset();
        CHECK(s.closed(StreamEnd::shutdown) == 1);
        CHECK(s.producer.open == 0);
    }
}

TEST_CASE("Stream: events, bytes the socket took and heartbeats") {
    fastsse::StreamLimits limits;
    limits.heartbeat = 5s;
    Counted s(limits);
    auto head = metrics::counts.bytes_written;
    CHECK(head > 0);  // the headers and the opening comment
    s.stream->send(data_event("abc"));  // "data: abc\n\n" in one record: 8 + 11 bytes
    CHECK(metrics::counts.events_written == 1);
    CHECK(metrics::counts.bytes_written == head + 19);
    s.stream->send_encoded("data: x\n\n");
    CHECK(metrics::counts.events_written == 2);
    CHECK(metrics::counts.bytes_written == head + 19 + 17);
    s.stream->sweep(s.loop.now() + 5s);
    CHECK(metrics::counts.heartbeats == 1);
    CHECK(metrics::counts.events_written == 2);  // a heartbeat is no event
    CHECK(metrics::counts.bytes_written == head + 19 + 17 + 8 + 13);
}

TEST_CASE("Counts::reset: back to zero, each producer's block where it was (streams point at it)") {
    metrics::Counts c;
    auto& p = c.producer("x");
    p.open = 3;
    p.closed[0] = 2;
    c.events_written = 5;
    c.refused.add(404);
    c.reset();
    CHECK(&c.producer("x") == &p);
    CHECK(c.producers().size() == 1);
    CHECK(p.open == 0);
    CHECK(p.closed[0] == 0);
    CHECK(c.events_written == 0);
    CHECK(c.refused.at(404) == 0);
}
