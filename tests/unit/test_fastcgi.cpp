// FastCGI record framing, byte for byte (FastCGI 1.0 specification, sections 3.3, 5.3 and 5.5).
#include <doctest/doctest.h>
#include <arpa/inet.h>
#include <fcgiapp.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>

#include <string>
#include <string_view>
#include <vector>

#include "fastsse/fastcgi/acceptor.hpp"
#include "fastsse/fastcgi/records.hpp"
#include "fastsse/http/router.hpp"
#include "support.hpp"

using namespace std::string_literals;
using namespace std::string_view_literals;
namespace fcgi = fastsse::fastcgi;

namespace {

unsigned byte(const std::string& s, size_t i) { return static_cast<unsigned char>(s.at(i)); }

struct Record {
    unsigned version, type, request_id;
    std::string content;
    unsigned padding;
};

// Parses a buffer of whole records; fails the test on a truncated one.
std::vector<Record> parse(const std::string& s) {
    std::vector<Record> out;
    size_t i = 0;
    while (i < s.size()) {
        REQUIRE(s.size() - i >= 8);
        Record r;
        r.version = byte(s, i);
        r.type = byte(s, i + 1);
        r.request_id = byte(s, i + 2) << 8 | byte(s, i + 3);
        size_t length = byte(s, i + 4) << 8 | byte(s, i + 5);
        r.padding = byte(s, i + 6);
        CHECK(byte(s, i + 7) == 0);  // reserved
        REQUIRE(s.size() - i - 8 >= length + r.padding);
        r.content = s.substr(i + 8, length);
        i += 8 + length + r.padding;
        out.push_back(std::move(r));
    }
    return out;
}

}  // namespace

TEST_CASE("stdout_header") {
    SUBCASE("a small record") {
        auto h = fcgi::stdout_header(1, 23);
        CHECK(std::string(h.data(), h.size()) == "\x01\x06\x00\x01\x00\x17\x00\x00"sv);
    }
    SUBCASE("request id and length are big-endian") {
        auto h = fcgi::stdout_header(0x1234, 0xabcd);
        CHECK(std::string(h.data(), h.size()) == "\x01\x06\x12\x34\xab\xcd\x00\x00"sv);
    }
    SUBCASE("the largest record") {
        auto h = fcgi::stdout_header(0xffff, fcgi::max_content);
        CHECK(std::string(h.data(), h.size()) == "\x01\x06\xff\xff\xff\xff\x00\x00"sv);
    }
    SUBCASE("an empty record (the end of the stream)") {
        auto h = fcgi::stdout_header(1, 0);
        CHECK(std::string(h.data(), h.size()) == "\x01\x06\x00\x01\x00\x00\x00\x00"sv);
    }
    CHECK(fcgi::header_size == 8);
    CHECK(fcgi::max_content == 65535);
}

TEST_CASE("append_stdout") {
    SUBCASE("one record, appended after what is there") {
        std::string out = "xy";
        fcgi::append_stdout(out, 1, "data: x\n\n");
        CHECK(out == "xy\x01\x06\x00\x01\x00\x09\x00\x00"
                     "data: x\n\n"sv);
    }
    SUBCASE("empty content writes nothing: an empty STDOUT record would end the response") {
        std::string out = "xy";
        fcgi::append_stdout(out, 1, "");
        CHECK(out == "xy");
    }
    SUBCASE("exactly 65535 bytes is one record") {
        std::string content(65535, 'a');
        std::string out;
        fcgi::append_stdout(out, 3, content);
        CHECK(out.size() == 8 + 65535);
        auto records = parse(out);
        REQUIRE(records.size() == 1);
        CHECK(records[0].content == content);
        CHECK(out.substr(0, 8) == "\x01\x06\x00\x03\xff\xff\x00\x00"sv);
    }
    SUBCASE("65536 bytes is split into 65535 + 1") {
        std::string content(65535, 'a');
        content += 'b';
        std::string out;
        fcgi::append_stdout(out, 3, content);
        CHECK(out.size() == 2 * 8 + 65536);
        auto records = parse(out);
        REQUIRE(records.size() == 2);
        CHECK(records[0].content == std::string(65535, 'a'));
        CHECK(records[1].content == "b");
        CHECK(out.substr(8 + 65535, 8) == "\x01\x06\x00\x03\x00\x01\x00\x00"sv);
    }
    SUBCASE("a larger payload becomes several records that rebuild it exactly") {
        std::string content;
        for (size_t i = 0; i < 200'000; ++i) content += static_cast<char>('a' + i % 26);
        std::string out;
        fcgi::append_stdout(out, 0x0102, content);
        auto records = parse(out);
        REQUIRE(records.size() == 4);
        std::string joined;
        for (auto& r : records) {
            CHECK(r.version == 1);
            CHECK(r.type == 6);
            CHECK(r.request_id == 0x0102);
            CHECK(r.padding == 0);
            joined += r.content;
        }
        CHECK(records[0].content.size() == 65535);
        CHECK(records[1].content.size() == 65535);
        CHECK(records[2].content.size() == 65535);
        CHECK(records[3].content.size() == 200'000 - 3 * 65535);
        CHECK(joined == content);
    }
    SUBCASE("bytes are copied as they are, NUL included") {
        std::string out;
        fcgi::append_stdout(out, 1, "a\0b"sv);
        CHECK(out == "\x01\x06\x00\x01\x00\x03\x00\x00"
                     "a\0b"sv);
    }
}

TEST_CASE("append_end: an empty STDOUT record, then END_REQUEST with an 8-byte body") {
    std::string out = "z";
    fcgi::append_end(out, 1);
    CHECK(out == "z"
                 "\x01\x06\x00\x01\x00\x00\x00\x00"                                      // FCGI_STDOUT, empty
                 "\x01\x03\x00\x01\x00\x08\x00\x00"                                      // FCGI_END_REQUEST, 8 bytes
                 "\x00\x00\x00\x00\x00\x00\x00\x00"sv);                                  // appStatus 0, REQUEST_COMPLETE
    std::string other;
    fcgi::append_end(other, 0xbeef);
    auto records = parse(other);
    REQUIRE(records.size() == 2);
    CHECK(records[0].type == 6);
    CHECK(records[0].request_id == 0xbeef);
    CHECK(records[0].content.empty());
    CHECK(records[1].type == 3);
    CHECK(records[1].request_id == 0xbeef);
    CHECK(records[1].content == std::string(8, '\0'));
}

TEST_CASE("a whole response: headers, events, end") {
    std::string out;
    fcgi::append_stdout(out, 5, "Status: 200 OK\r\n\r\n");
    fcgi::append_stdout(out, 5, "data: 1\n\n");
    fcgi::append_end(out, 5);
    auto records = parse(out);
    REQUIRE(records.size() == 4);
    CHECK(records[0].content == "Status: 200 OK\r\n\r\n");
    CHECK(records[1].content == "data: 1\n\n");
    CHECK(records[2].type == 6);
    CHECK(records[2].content.empty());
    CHECK(records[3].type == 3);
    for (auto& r : records) CHECK(r.request_id == 5);
}

namespace {

// One FastCGI record as a web server sends it: header, content, padding.
std::string record(unsigned char type, std::string_view content, unsigned char padding = 0, unsigned id = 1) {
    std::string r = {1, static_cast<char>(type), static_cast<char>(id >> 8), static_cast<char>(id & 0xff),
                     static_cast<char>(content.size() >> 8), static_cast<char>(content.size() & 0xff),
                     static_cast<char>(padding), 0};
    r += content;
    r.append(padding, '\0');
    return r;
}

constexpr unsigned char begin_request = 1, abort_request = 2, params = 4, stdin_ = 5, get_values = 9;
const std::string responder = std::string("\0\1\0\0\0\0\0\0", 8);
const std::string begin = record(begin_request, responder);
const std::string head = begin + record(params, "\x0e\x03REQUEST_METHODGET", 5) + record(params, "");

using Verdict = fcgi::HeadCheck::Verdict;
fcgi::HeadCheck check(std::string_view bytes) { return fcgi::check_head(bytes, 15000); }

// A 4-byte name-value length (high bit set).
std::string long_length(uint32_t n) {
    return {static_cast<char>(0x80 | n >> 24), static_cast<char>(n >> 16 & 0xff), static_cast<char>(n >> 8 & 0xff),
            static_cast<char>(n & 0xff)};
}

}  // namespace

TEST_CASE("check_head: a request as nginx and Apache send it") {
    auto get = head + record(stdin_, "");
    auto post = head + record(stdin_, "x=1", 5) + record(stdin_, "");

    auto c = check(head);
    CHECK(c.verdict == Verdict::ready);
    CHECK(c.head_length == head.size());

    // What follows the head is not libfcgi's to read, nor check_head's to judge (BodyReader's).
    for (auto bytes : {get, post, get + "more", head + record(params, "x"), head + "\x07garbage"s}) {
        c = check(bytes);
        CHECK(c.verdict == Verdict::ready);
        CHECK(c.head_length == head.size());
    }

    SUBCASE("any shorter prefix is not all there yet, and never refused") {
        for (size_t cut = 0; cut < head.size(); ++cut) {
            CAPTURE(cut);
            CHECK(check(std::string_view(head).substr(0, cut)).verdict == Verdict::incomplete);
        }
        for (size_t cut = head.size(); cut < post.size(); ++cut) {
            CAPTURE(cut);
            CHECK(check(std::string_view(post).substr(0, cut)).verdict == Verdict::ready);
        }
    }
    SUBCASE("a name-value pair may span records, and lengths may take four bytes") {
        std::string pairs = long_length(14) + "\x03REQUEST_METHODGET";
        auto split = begin + record(params, pairs.substr(0, 3)) + record(params, pairs.substr(3), 7) + record(params, "");
        CHECK(check(split).verdict == Verdict::ready);
    }
    SUBCASE("an empty record of another type does not end the head") {
        CHECK(check(begin + record(stdin_, "")).verdict == Verdict::refused);
    }
}

TEST_CASE("check_head refuses what libfcgi must never read") {
    auto refused = [](std::string_view bytes) {
        auto c = check(bytes);
        CHECK(c.verdict == Verdict::refused);
        CHECK_FALSE(c.reason.empty());
        return c;
    };
    SUBCASE("bytes that are not FastCGI version 1") {
        CHECK(refused("GET / HTTP/1.1\r\n\r\n").answer.empty());
        refused(begin + record(params, "x") + std::string(8, '\x07'));
    }
    SUBCASE("FCGI_GET_VALUES naming FCGI_MAX_CONNS four times: answered once each, never by libfcgi") {
        std::string names;
        for (int i = 0; i < 4; ++i) names += "\x0e\x00" "FCGI_MAX_CONNS"s;
        names += "\x0f\x00" "FCGI_MPXS_CONNS"s + "\x03\x00" "FOO"s;
        auto c = refused(record(get_values, names, 0, 0) + head);
        auto answer = parse(c.answer);
        REQUIRE(answer.size() == 1);
        CHECK(answer[0].type == 10);  // FCGI_GET_VALUES_RESULT
        CHECK(answer[0].request_id == 0);
        CHECK(answer[0].content == "\x0e\x05" "FCGI_MAX_CONNS15000" "\x0f\x01" "FCGI_MPXS_CONNS0"s);
    }
    SUBCASE("an unknown management record gets FCGI_UNKNOWN_TYPE (libfcgi leaked 48 bytes on each)") {
        auto c = refused(record(200, "", 0, 0));
        auto answer = parse(c.answer);
        REQUIRE(answer.size() == 1);
        CHECK(answer[0].type == 11);
        CHECK(answer[0].content == "\xc8\0\0\0\0\0\0\0"s);
        refused(begin + record(77, "xyz", 0, 0));  // inside the params too
    }
    SUBCASE("param lengths past what came (libfcgi aborts past INT_MAX, allocates up to 2 GiB below)") {
        refused(begin + record(params, long_length(0x40000000) + long_length(0x40000000) + "x") + record(params, ""));
        refused(begin + record(params, long_length(0x7ffffff0) + "\x01" "ab") + record(params, ""));
        refused(begin + record(params, "\x05\x01" "abcde") + record(params, ""));  // one byte short
        refused(begin + record(params, "\x05") + record(params, ""));             // no value length
        refused(begin + record(params, long_length(3).substr(0, 2)) + record(params, ""));
        CHECK(check(begin + record(params, "\x05\x01" "abcdef") + record(params, "")).verdict == Verdict::ready);
    }
    SUBCASE("padding after FCGI_BEGIN_REQUEST, which libfcgi reads as records") {
        auto hidden = record(get_values, "\x0e\x00" "FCGI_MAX_CONNS"s, 0, 0);
        REQUIRE(hidden.size() <= 255);
        std::string padded = begin;
        padded[6] = static_cast<char>(hidden.size());
        refused(padded + hidden + record(params, "") + record(stdin_, ""));
        refused(record(begin_request, responder, 8) + record(params, ""));
    }
    SUBCASE("padding after the empty FCGI_PARAMS, which libfcgi would read as records too") {
        refused(begin + record(params, "", 8) + record(stdin_, ""));
    }
    SUBCASE("roles other than responder get FCGI_END_REQUEST with FCGI_UNKNOWN_ROLE") {
        auto c = refused(record(begin_request, std::string("\0\2\0\0\0\0\0\0", 8)) + record(params, ""));
        auto answer = parse(c.answer);
        REQUIRE(answer.size() == 1);
        CHECK(answer[0].type == 3);
        CHECK(answer[0].content == "\0\0\0\0\3\0\0\0"s);
    }
    SUBCASE("a malformed FCGI_BEGIN_REQUEST, or none first") {
        refused(record(begin_request, responder.substr(0, 7)));
        refused(record(begin_request, responder, 0, 0));  // request id 0
        refused(record(params, "") + head);
    }
    SUBCASE("records of another request or type in the middle") {
        refused(begin + record(params, "", 0, 2));
        refused(begin + record(stdin_, "x"));
        auto c = refused(begin + record(begin_request, responder, 0, 2));
        auto answer = parse(c.answer);
        REQUIRE(answer.size() == 1);
        CHECK(answer[0].type == 3);
        CHECK(answer[0].request_id == 2);
        CHECK(answer[0].content == "\0\0\0\0\1\0\0\0"s);  // FCGI_CANT_MPX_CONN
    }
}

namespace {
// Writes `bytes` into one end of a socketpair and lets libfcgi read the other, as the acceptor does.
std::optional<fastsse::Connection> read_from(const std::string& bytes) {
    int fds[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) == 0);
    fastsse::UniqueFd ours(fds[0]);
    REQUIRE(::send(ours.get(), bytes.data(), bytes.size(), 0) == static_cast<ssize_t>(bytes.size()));
    return fcgi::read_request(fastsse::UniqueFd(fds[1]));
}
}  // namespace

TEST_CASE("read_request: libfcgi reads a checked head, and only the head") {
    std::string pairs = "\x0e\x03REQUEST_METHODGET"s + "\x10\x05" "FASTSSE_PRODUCER" "clock"s +
                        long_length(12) + long_length(5) + "QUERY_STRINGa=b&c";
    auto bytes = record(begin_request, responder, 0, 0x1234) + record(params, pairs.substr(0, 20), 4, 0x1234) +
                 record(params, pairs.substr(20), 3, 0x1234) + record(params, "", 0, 0x1234) +
                 record(stdin_, "", 0, 0x1234);
    auto c = fcgi::check_head(bytes, 1);
    REQUIRE(c.verdict == Verdict::ready);
    REQUIRE(FCGX_Init() == 0);  // main() calls it once, at start
    auto connection = read_from(bytes);
    REQUIRE(connection);
    CHECK(connection->request_id == 0x1234);
    CHECK(connection->request.method == "GET");
    CHECK(connection->request.query == "a=b&c");
    CHECK(connection->request.fastsse.at("producer") == "clock");
}

namespace {
// The body after `head` in `bytes`, fed to a BodyReader in pieces of `piece` bytes.
struct Fed {
    fcgi::BodyReader::State state;
    std::string body;
    bool too_large;
    size_t used;
};
Fed feed(std::string_view bytes, size_t limit = 64, size_t piece = SIZE_MAX, unsigned id = 1) {
    fcgi::BodyReader reader(id, limit);
    size_t used = 0;
    while (used < bytes.size()) {
        auto part = bytes.substr(used, piece);
        auto n = reader.feed(part);
        used += n;
        if (reader.state() != fcgi::BodyReader::State::more) break;
        REQUIRE(n == part.size());  // all of it while more is expected
    }
    if (reader.state() == fcgi::BodyReader::State::refused) CHECK_FALSE(reader.reason().empty());
    return {reader.state(), reader.body(), reader.too_large(), used};
}
using State = fcgi::BodyReader::State;
}  // namespace

TEST_CASE("BodyReader: the request body, kept for a route") {
    SUBCASE("no body: empty, and whole") {
        auto f = feed(record(stdin_, ""));
        CHECK(f.state == State::whole);
        CHECK(f.body.empty());
        CHECK_FALSE(f.too_large);
    }
    SUBCASE("a body over several records, padding skipped, cut anywhere") {
        auto bytes = record(stdin_, "a=1", 5) + record(stdin_, "&b=", 0) + record(stdin_, "2", 7) + record(stdin_, "", 3);
        for (size_t piece : {size_t{1}, size_t{2}, size_t{7}, size_t{8}, size_t{9}, bytes.size()}) {
            CAPTURE(piece);
            auto f = feed(bytes, 64, piece);
            CHECK(f.state == State::whole);
            CHECK(f.body == "a=1&b=2");
            CHECK(f.used == bytes.size());  // the end record's padding too
        }
    }
    SUBCASE("bytes as they are, NUL and CR LF included") {
        auto content = "x\0y\r\n"s;
        CHECK(feed(record(stdin_, content, 3) + record(stdin_, "")).body == content);
    }
    SUBCASE("not whole until the empty record") {
        auto bytes = record(stdin_, "first", 3) + record(stdin_, "second", 2) + record(stdin_, "");
        for (size_t cut = 0; cut < bytes.size(); ++cut) {
            CAPTURE(cut);
            CHECK(feed(std::string_view(bytes).substr(0, cut)).state == State::more);
        }
        CHECK(feed(bytes).body == "firstsecond");
    }
    SUBCASE("what follows the end of the body is not the body, nor used") {
        auto end = record(stdin_, "a") + record(stdin_, "");
        auto f = feed(end + record(stdin_, "b"));
        CHECK(f.body == "a");
        CHECK(f.used == end.size());
    }
    SUBCASE("the limit exactly; one byte over: too large, nothing kept, the records still checked") {
        auto f = feed(record(stdin_, "1234") + record(stdin_, "5678") + record(stdin_, ""), 8);
        CHECK(f.state == State::whole);
        CHECK(f.body == "12345678");
        CHECK_FALSE(f.too_large);

        f = feed(record(stdin_, "1234") + record(stdin_, "56789") + record(stdin_, ""), 8, 3);
        CHECK(f.state == State::whole);  // the end of the body is still read, as for any request
        CHECK(f.too_large);
        CHECK(f.body.empty());
        CHECK(feed(record(stdin_, "123456789") + record(stdin_, "x", 0, 2), 8).state == State::refused);
        CHECK(feed(record(stdin_, "123456789") + record(abort_request, ""), 8).state == State::refused);
        CHECK(feed(record(stdin_, "x"), 0).too_large);
        CHECK_FALSE(feed(record(stdin_, ""), 0).too_large);
    }
    SUBCASE("records of another request or type, or not FastCGI, are refused") {
        CHECK(feed(record(stdin_, "x", 0, 2)).state == State::refused);
        CHECK(feed(record(stdin_, "x") + record(params, "y")).state == State::refused);
        CHECK(feed(record(stdin_, "x") + record(begin_request, responder)).state == State::refused);
        CHECK(feed(record(stdin_, "x") + record(get_values, "", 0, 0)).state == State::refused);
        CHECK(feed(record(stdin_, "x") + record(abort_request, "")).state == State::refused);
        CHECK(feed(record(abort_request, "")).state == State::refused);
        CHECK(feed("GET / HTTP/1.1\r\n"s).state == State::refused);
        auto f = feed(record(stdin_, "x", 0, 7), 64, SIZE_MAX, 7);
        CHECK(f.state == State::more);
        CHECK(f.body == "x");
    }
}

namespace {

// A loopback TCP listener on an ephemeral port, as a web server connects to fastsse.
struct Listening {
    fastsse::UniqueFd fd;
    uint16_t port = 0;
    Listening() {
        fd = fastsse::UniqueFd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
        REQUIRE(fd);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        REQUIRE(::bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
        REQUIRE(::listen(fd.get(), 16) == 0);
        socklen_t length = sizeof a;
        REQUIRE(::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&a), &length) == 0);
        port = ntohs(a.sin_port);
    }
    fastsse::UniqueFd connect() const {
        fastsse::UniqueFd c(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        a.sin_port = htons(port);
        REQUIRE(::connect(c.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
        return c;
    }
};

// Sends `bytes` to a fresh connection to the Acceptor and returns the Connection it hands on.
std::optional<fastsse::Connection> accept_request(const std::string& bytes, size_t max_body = 1024 * 1024) {
    REQUIRE(FCGX_Init() == 0);
    fastsse::EventLoop loop;
    Listening listening;
    std::optional<fastsse::Connection> got;
    fastsse::Acceptor acceptor(loop, listening.fd.get(), 10, max_body,
                               [&](fastsse::Connection c) { got = std::move(c); });
    auto client = listening.connect();
    // All sent before the loop runs, as a web server sends a small request in one or two writes.
    ::fcntl(client.get(), F_SETFL, ::fcntl(client.get(), F_GETFL) | O_NONBLOCK);
    REQUIRE(::send(client.get(), bytes.data(), bytes.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(bytes.size()));
    CHECK(fastsse_test::run_loop_until(loop, [&] { return got.has_value(); }, std::chrono::seconds(3)));
    return got;
}

// What the Acceptor did with a request sent `chunk` bytes every `interval` while the loop runs
// (and then nothing more once `stop_at` bytes have left).
struct Slow {
    std::optional<fastsse::Connection> got;
    bool closed = false;  // the connection was closed without being handed on
    int wakeups = 0;      // of the sender: how many writes the request took
    std::chrono::steady_clock::duration took{};
};
Slow send_slowly(const std::string& bytes, size_t max_body, size_t chunk, std::chrono::milliseconds interval,
                 size_t stop_at = SIZE_MAX, std::chrono::seconds deadline = std::chrono::seconds(10)) {
    REQUIRE(FCGX_Init() == 0);
    fastsse::EventLoop loop;
    Listening listening;
    Slow slow;
    fastsse::Acceptor acceptor(loop, listening.fd.get(), 10, max_body,
                               [&](fastsse::Connection c) { slow.got = std::move(c); });
    auto client = listening.connect();
    ::fcntl(client.get(), F_SETFL, ::fcntl(client.get(), F_GETFL) | O_NONBLOCK);
    size_t sent = 0;
    fastsse::Timer timer;
    std::function<void()> send_some = [&] {
        auto end = std::min({bytes.size(), stop_at, sent + chunk});
        if (sent < end) {
            ++slow.wakeups;
            ssize_t n = ::send(client.get(), bytes.data() + sent, end - sent, MSG_NOSIGNAL);
            if (n > 0) sent += static_cast<size_t>(n);
        }
        char c;
        ssize_t n = ::recv(client.get(), &c, 1, MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) slow.closed = true;
        timer = loop.call_after(interval, send_some);
    };
    auto start = std::chrono::steady_clock::now();
    send_some();
    fastsse_test::run_loop_until(loop, [&] { return slow.got.has_value() || slow.closed; }, deadline);
    slow.took = std::chrono::steady_clock::now() - start;
    return slow;
}

std::string body_records(std::string_view body) {
    std::string out;
    for (size_t at = 0; at < body.size(); at += fcgi::max_content)
        out += record(stdin_, body.substr(at, fcgi::max_content), static_cast<unsigned char>(at % 7));
    return out + record(stdin_, "");
}

std::string pattern(size_t size) {
    std::string body;
    for (size_t i = 0; i < size; ++i) body += static_cast<char>('a' + i % 26);
    return body;
}

}  // namespace

TEST_CASE("Acceptor: the request body comes with the Connection") {
    SUBCASE("no body") {
        auto c = accept_request(head + record(stdin_, ""));
        REQUIRE(c);
        CHECK(c->request.method == "GET");
        CHECK(c->body_whole);
        CHECK(c->body.empty());
    }
    SUBCASE("a small body in padded records") {
        auto c = accept_request(head + record(stdin_, "{\"a\":", 3) + record(stdin_, "1}", 6) + record(stdin_, ""));
        REQUIRE(c);
        CHECK(c->body_whole);
        CHECK(c->body == "{\"a\":1}");
    }
    SUBCASE("max_body exactly, over two records; one byte over: not whole, and the 413") {
        auto body = pattern(70000);
        auto c = accept_request(head + body_records(body), body.size());
        REQUIRE(c);
        CHECK(c->body_whole);
        CHECK(c->body == body);
        c = accept_request(head + body_records(body + "x"), body.size());
        REQUIRE(c);
        CHECK(c->request.method == "GET");
        CHECK_FALSE(c->body_whole);
        CHECK(c->body.empty());
        CHECK(c->body_limit == body.size());
        try {
            fastsse::request_body(*c);
            FAIL("no 413");
        } catch (const fastsse::RequestError& e) {
            CHECK(e.status == 413);
            CHECK(std::string(e.what()).find("70000 bytes") != std::string::npos);
        }
    }
    SUBCASE("the head alone first, then the end of the body in a write of its own (Apache)") {
        auto s = send_slowly(head + record(stdin_, ""), 1024, head.size(), std::chrono::milliseconds(20));
        REQUIRE(s.got);
        CHECK(s.got->body_whole);
        CHECK(s.wakeups == 2);
    }
    SUBCASE("bad records in the body: the connection is closed") {
        for (auto bad : {record(params, "x"), record(stdin_, "x", 0, 2), record(abort_request, ""), "junk\0\0\0\0"s}) {
            auto s = send_slowly(head + record(stdin_, "ok") + bad + record(stdin_, ""), 1024, 1 << 20,
                                 std::chrono::milliseconds(5));
            CHECK_FALSE(s.got);
            CHECK(s.closed);
        }
    }
}

TEST_CASE("Acceptor: a 1 MiB body in many records, arriving slowly over many wake-ups") {
    auto body = pattern(1024 * 1024);
    std::string records;
    for (size_t at = 0; at < body.size(); at += 1000)  // a thousand records and more
        records += record(stdin_, std::string_view(body).substr(at, 1000), static_cast<unsigned char>(at % 5));
    records += record(stdin_, "");
    auto s = send_slowly(head + records, body.size(), 48 * 1024, std::chrono::milliseconds(1));
    REQUIRE(s.got);
    CHECK(s.wakeups > 20);
    CHECK(s.got->body_whole);
    CHECK(s.got->body == body);

    SUBCASE("one byte more than max_body: read to its end, then handed on for the 413") {
        auto over = send_slowly(head + records, body.size() - 1, 48 * 1024, std::chrono::milliseconds(1));
        REQUIRE(over.got);
        CHECK_FALSE(over.got->body_whole);
        CHECK(over.got->body.empty());
    }
}

TEST_CASE("Acceptor: a body that stalls is dropped at the deadline") {
    auto bytes = head + record(stdin_, std::string(5000, 'x')) + record(stdin_, "");
    auto s = send_slowly(bytes, 1 << 20, 1 << 20, std::chrono::milliseconds(20), head.size() + 100);
    CHECK_FALSE(s.got);
    CHECK(s.closed);
    CHECK(s.took >= fastsse::Acceptor::head_timeout);
    CHECK(s.took < fastsse::Acceptor::head_timeout + std::chrono::seconds(2));
}
