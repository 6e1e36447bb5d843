// sse-load's parsers (bench/sse_parse.hpp): the HTTP response (head, chunked and identity bodies) and
// the event stream, fed in every possible split, as reads from a socket come; the timestamp readers;
// the latency histogram.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

#include "../../bench/sse_parse.hpp"

using sseload::ResponseParser;
using sseload::SseParser;

namespace {

std::string fmt_hex(std::size_t n) {
    char b[32];
    std::snprintf(b, sizeof b, "%zx", n);
    return b;
}

struct Ev {
    std::string type, data, id;
    bool operator==(const Ev&) const = default;
};

struct Collect : sseload::SseSink {
    std::vector<Ev> events;
    std::vector<std::string> comments;
    std::vector<std::uint64_t> retries;
    void on_event(std::string_view type, std::string_view data, std::string_view id) override {
        events.push_back({std::string(type), std::string(data), std::string(id)});
    }
    void on_comment(std::string_view c) override { comments.emplace_back(c); }
    void on_retry(std::uint64_t ms) override { retries.push_back(ms); }
};

// Feeds `text` to a fresh parser in pieces cut at `cuts`.
Collect parse_split(std::string_view text, const std::vector<std::size_t>& cuts) {
    Collect c;
    SseParser p(&c);
    std::size_t at = 0;
    for (std::size_t cut : cuts) {
        p.feed(text.data() + at, cut - at);
        at = cut;
    }
    p.feed(text.data() + at, text.size() - at);
    return c;
}

// Every way of cutting text in two and in three pieces gives the same result as one feed.
void check_all_splits(std::string_view text, const Collect& expect) {
    for (std::size_t a = 0; a <= text.size(); ++a) {
        auto two = parse_split(text, {a});
        REQUIRE_MESSAGE(two.events == expect.events, "cut at " << a);
        REQUIRE(two.comments == expect.comments);
        for (std::size_t b = a; b <= text.size(); ++b) {
            auto three = parse_split(text, {a, b});
            REQUIRE_MESSAGE(three.events == expect.events, "cuts at " << a << ", " << b);
        }
    }
    // and byte by byte
    std::vector<std::size_t> all;
    for (std::size_t k = 1; k < text.size(); ++k) all.push_back(k);
    auto bytes = parse_split(text, all);
    REQUIRE(bytes.events == expect.events);
    REQUIRE(bytes.comments == expect.comments);
}

struct Http : sseload::HttpSink {
    Collect sse_events;
    SseParser sse{&sse_events};
    sseload::ResponseHead head;
    bool heads = false, accept = true;
    std::string body;
    bool on_head(const sseload::ResponseHead& h) override {
        head = h;
        heads = true;
        return accept;
    }
    void on_body(const char* p, std::size_t n) override {
        body.append(p, n);
        sse.feed(p, n);
    }
};

// Feeds a whole response in pieces of `step` bytes; returns the last result.
ResponseParser::Result feed_steps(ResponseParser& r, std::string_view text, std::size_t step) {
    auto res = ResponseParser::Result::more;
    for (std::size_t at = 0; at < text.size(); at += step) {
        res = r.feed(text.data() + at, std::min(step, text.size() - at));
        if (res != ResponseParser::Result::more) return res;
    }
    return res;
}

}  // namespace

TEST_CASE("event stream: fields, dispatch on the blank line") {
    Collect c = parse_split("id: 7\nevent: tick\ndata: 1700000000\n\n", {});
    REQUIRE(c.events.size() == 1);
    CHECK(c.events[0] == Ev{"tick", "1700000000", "7"});

    SUBCASE("no event name: message; the id stays for the next events") {
        auto d = parse_split("id: 1\ndata: a\n\ndata: b\n\n", {});
        CHECK(d.events == std::vector<Ev>{{"message", "a", "1"}, {"message", "b", "1"}});
    }
    SUBCASE("multi-line data joined with LF; one leading space removed, not two") {
        auto d = parse_split("data: one\ndata:two\ndata:  three\ndata\n\n", {});
        CHECK(d.events == std::vector<Ev>{{"message", "one\ntwo\n three\n", ""}});
    }
    SUBCASE("no data: nothing dispatched, and the event name does not leak into the next") {
        auto d = parse_split("event: x\n\ndata: y\n\n", {});
        CHECK(d.events == std::vector<Ev>{{"message", "y", ""}});
    }
    SUBCASE("an unfinished event at the end is not dispatched") {
        auto d = parse_split("data: y\n\ndata: z\n", {});
        CHECK(d.events.size() == 1);
    }
    SUBCASE("comments, retry, unknown fields, an empty id, an id with NUL") {
        Collect e;
        SseParser p(&e);
        std::string s = ": fastsse stream open\nretry: 2000\nretry: 2x\nfoo: bar\nid: 5\ndata: a\n\nid\ndata: b\n\n";
        s += std::string("id: x\0y\ndata: c\n\n", 18);
        p.feed(s.data(), s.size());
        CHECK(e.comments == std::vector<std::string>{" fastsse stream open"});
        CHECK(e.retries == std::vector<std::uint64_t>{2000});
        CHECK(p.retry() == 2000u);
        CHECK(e.events == std::vector<Ev>{{"message", "a", "5"}, {"message", "b", ""}, {"message", "c", ""}});
    }
    SUBCASE("a leading BOM is ignored") {
        auto d = parse_split("\xEF\xBB\xBF" "data: x\n\n", {});
        CHECK(d.events == std::vector<Ev>{{"message", "x", ""}});
    }
}

TEST_CASE("event stream: LF, CRLF and CR line ends, split anywhere") {
    Collect expect;
    expect.events = {{"tick", "1\n2", "1"}, {"message", "3", "1"}, {"message", "4", "2"}, {"message", "5", "2"}};
    expect.comments = {" hi", ""};
    // LF, CRLF, CR, and mixed; a CR at the end of one read and an LF at the start of the next is ONE
    // line end (else the CRLF would end the event early with an empty line).
    std::string text = ": hi\r\nid: 1\revent: tick\r\ndata: 1\ndata: 2\r\r\ndata: 3\n\n:\rid: 2\r\ndata: 4\r\rdata: 5\r\n\r\n";
    check_all_splits(text, expect);

    SUBCASE("CRLF CRLF is one blank line, CR CR is two (an empty event is not dispatched)") {
        auto d = parse_split("data: a\r\n\r\ndata: b\r\r", {});
        CHECK(d.events == std::vector<Ev>{{"message", "a", ""}, {"message", "b", ""}});
    }
    SUBCASE("CR at the end of a read, LF at the start of the next") {
        auto d = parse_split("data: a\r\n\r\n", {8});
        CHECK(d.events == std::vector<Ev>{{"message", "a", ""}});
        auto e = parse_split("data: a\r\n\r\n", {8, 10});
        CHECK(e.events == std::vector<Ev>{{"message", "a", ""}});
    }
}

TEST_CASE("HTTP response: chunked body, the chunk headers split across reads") {
    std::string body = ": fastsse stream open\n\nid: 1\nevent: tick\ndata: 1763726400000000\n\n";
    std::string resp =
        "HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Type: text/event-stream; charset=utf-8\r\n"
        "Transfer-Encoding: chunked\r\nConnection: keep-alive\r\nX-Accel-Buffering: no\r\n\r\n";
    resp += "17\r\n" + body.substr(0, 0x17) + "\r\n";
    resp += "1c;ext=1\r\n" + body.substr(0x17, 0x1c) + "\r\n";
    std::string rest = body.substr(0x17 + 0x1c);
    resp += fmt_hex(rest.size()) + "\r\n" + rest + "\r\n0\r\nX-Trailer: 1\r\n\r\n";
    for (std::size_t step = 1; step <= resp.size(); ++step) {
        Http h;
        ResponseParser r(&h);
        auto res = feed_steps(r, resp, step);
        REQUIRE_MESSAGE(res == ResponseParser::Result::ended, "step " << step << " " << r.error());
        REQUIRE(h.heads);
        CHECK(h.head.status == 200);
        CHECK(h.head.event_stream);
        CHECK(h.head.chunked);
        REQUIRE(h.body == body);
        REQUIRE(h.sse_events.events == std::vector<Ev>{{"tick", "1763726400000000", "1"}});
    }
    // every two-piece split too
    for (std::size_t a = 0; a < resp.size(); ++a) {
        Http h;
        ResponseParser r(&h);
        auto x = r.feed(resp.data(), a);
        REQUIRE(x == ResponseParser::Result::more);
        auto y = r.feed(resp.data() + a, resp.size() - a);
        REQUIRE_MESSAGE(y == ResponseParser::Result::ended, "cut at " << a);
        REQUIRE(h.body == body);
    }
}

TEST_CASE("HTTP response: the end and the errors") {
    SUBCASE("a stream still open: more, and EOF is an early close") {
        Http h;
        ResponseParser r(&h);
        std::string s = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n5\r\ndata:";
        CHECK(r.feed(s.data(), s.size()) == ResponseParser::Result::more);
        CHECK(r.eof() == ResponseParser::Result::error);
    }
    SUBCASE("identity body until close (HTTP/1.0 style)") {
        Http h;
        ResponseParser r(&h);
        std::string s = "HTTP/1.0 200 OK\nContent-Type: Text/Event-Stream\n\ndata: x\n\n";
        CHECK(r.feed(s.data(), s.size()) == ResponseParser::Result::more);
        CHECK(h.head.event_stream);
        CHECK(h.head.content_length == -1);
        CHECK(r.eof() == ResponseParser::Result::ended);
        CHECK(h.sse_events.events.size() == 1);
    }
    SUBCASE("Content-Length body") {
        Http h;
        ResponseParser r(&h);
        std::string s = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: 9\r\n\r\ndata: x\n\nJUNK";
        CHECK(feed_steps(r, s, 3) == ResponseParser::Result::ended);
        CHECK(h.body == "data: x\n\n");
    }
    SUBCASE("a 503 is handed to the sink, which stops there") {
        Http h;
        h.accept = false;
        ResponseParser r(&h);
        std::string s = "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 5\r\nContent-Type: text/plain\r\n\r\nToo many";
        CHECK(r.feed(s.data(), s.size()) == ResponseParser::Result::stopped);
        CHECK(h.head.status == 503);
        CHECK_FALSE(h.head.event_stream);
    }
    SUBCASE("an interim 100 is skipped") {
        Http h;
        ResponseParser r(&h);
        std::string s = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n";
        CHECK(r.feed(s.data(), s.size()) == ResponseParser::Result::more);
        CHECK(h.head.status == 200);
    }
    SUBCASE("garbage") {
        Http h;
        ResponseParser r(&h);
        std::string s = "SSH-2.0-OpenSSH\r\n\r\n";
        CHECK(r.feed(s.data(), s.size()) == ResponseParser::Result::error);
        Http h2;
        ResponseParser r2(&h2);
        std::string s2 = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n";
        CHECK(r2.feed(s2.data(), s2.size()) == ResponseParser::Result::error);
        Http h3;
        ResponseParser r3(&h3);
        std::string s3 = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n";
        CHECK(r3.feed(s3.data(), s3.size()) == ResponseParser::Result::error);
    }
    SUBCASE("closed before the headers") {
        Http h;
        ResponseParser r(&h);
        CHECK(r.feed("HTTP/1.1 2", 10) == ResponseParser::Result::more);
        CHECK(r.eof() == ResponseParser::Result::error);
        CHECK_FALSE(h.heads);
    }
}

TEST_CASE("timestamps in the data") {
    CHECK(sseload::first_integer("1763726400123456") == 1763726400123456);
    CHECK(sseload::first_integer("{\"t\": 17, \"n\": 3}") == 17);
    CHECK_FALSE(sseload::first_integer("no digits").has_value());
    CHECK(sseload::first_unix_us("1795264600318158") == 1795264600318158);
    CHECK(sseload::first_unix_us("{\"t\": 1795264600.318158}") == 1795264600318158);  // PHP microtime(true)
    CHECK(sseload::first_unix_us("1795264600.5") == 1795264600500000);
    CHECK(sseload::first_unix_us("1795264600318158.9") == 1795264600318158);  // already µs
    CHECK(sseload::first_unix_us("tick 7.") == 7);
    CHECK_FALSE(sseload::first_unix_us("none").has_value());

    auto t = sseload::first_iso8601("{\"time\": \"2026-11-21T12:00:00+00:00\"}");
    REQUIRE(t);
    CHECK(t->unix_us == 1795262400LL * 1000000);
    CHECK_FALSE(t->has_fraction);
    CHECK(sseload::first_iso8601("2026-11-21T13:00:00+0100")->unix_us == 1795262400LL * 1000000);
    CHECK(sseload::first_iso8601("2026-11-21T07:00:00-05:00")->unix_us == 1795262400LL * 1000000);
    CHECK(sseload::first_iso8601("at 2026-11-21 12:00:00.25Z")->unix_us == 1795262400LL * 1000000 + 250000);
    CHECK(sseload::first_iso8601("1970-01-01T00:00:00")->unix_us == 0);
    CHECK_FALSE(sseload::first_iso8601("2026-13-21T12:00:00").has_value());
    CHECK_FALSE(sseload::first_iso8601("12:00:00").has_value());
}

TEST_CASE("latency histogram") {
    using H = sseload::LatencyHistogram;
    for (std::uint64_t v : {0ULL, 1ULL, 255ULL, 256ULL, 257ULL, 1000ULL, 123456ULL, 9999999ULL, 1ULL << 40}) {
        auto i = H::index(v);
        REQUIRE(i < H::buckets);
        CHECK(H::upper(i) >= v);
        CHECK(double(H::upper(i) - v) <= double(v) / 128 + 1);
        if (i > 0) CHECK(H::upper(i - 1) < v);
    }
    H h;
    for (std::uint64_t v = 1; v <= 1000; ++v) h.record(v);
    CHECK(h.count() == 1000);
    CHECK(h.max() == 1000);
    CHECK(h.quantile(0.5) >= 500);
    CHECK(h.quantile(0.5) <= 504);
    CHECK(h.quantile(0.99) >= 990);
    CHECK(h.quantile(0.99) <= 1000);
    CHECK(h.quantile(1.0) == 1000);
}
