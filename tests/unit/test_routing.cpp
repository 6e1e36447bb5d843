// Routing over a socketpair: a request is built as the Acceptor hands it on (a Connection whose fd is
// one end of a socketpair, and its Request), dispatched through the Router as the Server does, and
// the FastCGI records of the answer are read from the other end. Every error answer is written
// before dispatch() returns: no loop needs to run, each case takes microseconds.
#include <doctest/doctest.h>

#include <fcntl.h>
#include <sys/socket.h>

#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "fastsse/config/settings.hpp"
#include "fastsse/fastcgi/records.hpp"
#include "fastsse/http/cors.hpp"
#include "fastsse/http/response.hpp"
#include "fastsse/http/router.hpp"
#include "fastsse/http/server.hpp"
#include "fastsse/http/stream_route.hpp"
#include "fastsse/loop/event_loop.hpp"
#include "fastsse/producers/clock.hpp"
#include "support.hpp"

using namespace std::string_literals;
using namespace std::chrono_literals;
using fastsse::Connection;
using fastsse::Request;
using fastsse::UniqueFd;

namespace {

// What the web server's end of the connection received.
struct Answer {
    std::string stdout_text;  // the FCGI_STDOUT content, records joined
    int stdout_records = 0;
    bool end_of_stdout = false;  // the empty FCGI_STDOUT record
    bool end_request = false;    // FCGI_END_REQUEST, REQUEST_COMPLETE
    bool closed = false;         // the connection was closed after
    std::vector<unsigned> request_ids;

    // "Status: 404 Not Found", the first line.
    std::string status() const { return stdout_text.substr(0, stdout_text.find("\r\n")); }
    std::string headers() const { return stdout_text.substr(0, stdout_text.find("\r\n\r\n") + 4); }
    std::string body() const { return stdout_text.substr(stdout_text.find("\r\n\r\n") + 4); }
};

Answer read_answer(fastsse_test::Peer& peer) {
    Answer a;
    for (auto& r : peer.records()) {
        a.request_ids.push_back(r.request_id);
        if (r.type == fastsse_test::type_stdout && !r.content.empty()) {
            CHECK_FALSE(a.end_of_stdout);
            a.stdout_text += r.content;
            ++a.stdout_records;
        } else if (r.type == fastsse_test::type_stdout) {
            a.end_of_stdout = true;
        } else {
            CHECK(r.type == fastsse_test::type_end_request);
            CHECK(r.content == std::string(8, '\0'));
            a.end_request = true;
        }
    }
    CHECK(peer.buf.empty());  // whole records only
    a.closed = peer.eof;
    return a;
}

// A producer whose open() fails as a bug would.
struct FailingProducer final : fastsse::Producer {
    std::span<const fastsse::OptionSpec> options() const override { return {}; }
    std::unique_ptr<fastsse::Subscription> open(fastsse::Sink&, const fastsse::StreamStart&) override {
        throw std::runtime_error("no such file");
    }
};

// A producer that also publishes (as the hub): its answer names what it got. Its streams add
// response headers while they open, one of them refused.
struct PublishingProducer final : fastsse::Producer, fastsse::Publisher {
    std::span<const fastsse::OptionSpec> options() const override { return {}; }
    std::unique_ptr<fastsse::Subscription> open(fastsse::Sink& sink, const fastsse::StreamStart& start) override {
        sink.add_header("X-Resumed-From", "id-1");
        CHECK_THROWS_AS(sink.add_header("X-Bad", "a\r\nSet-Cookie: x=1"), std::invalid_argument);
        CHECK_THROWS_AS(sink.add_header("X Bad", "a"), std::invalid_argument);
        CHECK_THROWS_AS(sink.add_header("", "a"), std::invalid_argument);
        CHECK(start.request != nullptr);
        if (start.request) CHECK(start.request->authorization == "Bearer t");
        return std::make_unique<fastsse::Subscription>();
    }
    Publisher* publisher() override { return this; }
    const fastsse::CorsPolicy* cors() const override { return &cors_policy; }
    void publish(const Request& request, std::string_view body, fastsse::PublishDone done) override {
        if (body == "refuse") throw fastsse::RequestError(403, "Not yours.");
        if (body == "later") {
            later = std::move(done);  // as a store elsewhere would: the test answers
            return;
        }
        done(fastsse::PublishAnswer{fmt::format("{} {} {}", request.content_type, request.authorization.value_or("-"), body)});
    }
    fastsse::CorsPolicy cors_policy;  // none unless a test sets it
    fastsse::PublishDone later;       // the completion of the last publish of "later"
};

// A producer that refuses over the request's token, as the hub does: no token, a bad one (GET and
// HEAD alike), and a publication its token does not cover.
struct GuardedProducer final : fastsse::Producer, fastsse::Publisher {
    std::span<const fastsse::OptionSpec> options() const override { return {}; }
    void check(const fastsse::StreamStart& start) const override {
        using fastsse::BearerError;
        auto auth = start.request ? start.request->authorization : std::nullopt;
        if (!auth) throw fastsse::RequestError::bearer(BearerError::none, "A token is required.");
        if (*auth == "Basic x") throw fastsse::RequestError::bearer(BearerError::invalid_request, "Not Bearer.");
        if (*auth != "Bearer good") throw fastsse::RequestError::bearer(BearerError::invalid_token, "Bad token.");
    }
    std::unique_ptr<fastsse::Subscription> open(fastsse::Sink&, const fastsse::StreamStart& start) override {
        check(start);
        return std::make_unique<fastsse::Subscription>();
    }
    Publisher* publisher() override { return this; }
    void publish(const Request&, std::string_view, fastsse::PublishDone) override {
        throw fastsse::RequestError::bearer(fastsse::BearerError::insufficient_scope, "Not this topic.");
    }
};

// Test-only endpoints: one that throws (a bug in a route), one that throws after its headers left,
// one that answers with the request body.
struct ThrowingRoute final : fastsse::Route {
    void handle(Connection&, fastsse::Streams&) override { throw std::runtime_error("the route broke"); }
};

struct LateThrowingRoute final : fastsse::Route {
    void handle(Connection& c, fastsse::Streams&) override {
        std::string out;
        fastsse::fastcgi::append_stdout(out, c.request_id, "Status: 200 OK\r\nContent-Type: text/plain\r\n\r\nhalf");
        REQUIRE(::send(c.fd.get(), out.data(), out.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(out.size()));
        c.headers_sent = true;
        throw std::runtime_error("failed half way");
    }
};

struct EchoRoute final : fastsse::Route {
    void handle(Connection& c, fastsse::Streams&) override {
        const auto& body = fastsse::request_body(c);
        fastsse::send_response(c, 200, fmt::format("X-Content-Type: {}\r\n", c.request.content_type), body);
    }
};

// The program as main() assembles it (the clock, the stream route, a Server keeping the streams),
// with test producers and endpoints besides.
struct Fixture {
    fastsse_test::LogCapture log;
    fastsse::EventLoop loop;
    fastsse::Registry registry;
    fastsse::Settings settings;
    fastsse::Router routes;
    std::unique_ptr<fastsse::Server> server;
    std::vector<fastsse_test::Peer> peers;  // the web server's ends, kept open as a web server would
    PublishingProducer* publishing = nullptr;

    explicit Fixture(size_t max_streams = 10) {
        registry.add("clock", std::make_unique<fastsse::ClockProducer>(loop));
        registry.add("failing", std::make_unique<FailingProducer>());
        auto p = std::make_unique<PublishingProducer>();
        publishing = p.get();
        registry.add("publishing", std::move(p));
        registry.add("guarded", std::make_unique<GuardedProducer>());
        settings.max_streams = max_streams;
        routes.add_producer_route(std::make_unique<fastsse::StreamRoute>(registry, settings));
        routes.add_endpoint("throws", std::make_unique<ThrowingRoute>());
        routes.add_endpoint("late", std::make_unique<LateThrowingRoute>());
        routes.add_endpoint("echo", std::make_unique<EchoRoute>());
        server = std::make_unique<fastsse::Server>(loop, routes, settings, -1, nullptr);
    }
    ~Fixture() { server.reset(); }  // the streams end before the producers they use

    // Dispatches `request` on a fresh connection, as the Server does with what the Acceptor hands on,
    // and reads what was answered by then.
    Answer send(Request request, std::string body = {}, bool body_whole = true) {
        auto peer = start(std::move(request), std::move(body), body_whole);
        auto answer = read_answer(peer);
        for (auto id : answer.request_ids) CHECK(id == 0x0102);
        peers.push_back(std::move(peer));
        return answer;
    }

    // Dispatches `request`; the web server's end, to read the answer from.
    fastsse_test::Peer start(Request request, std::string body = {}, bool body_whole = true) {
        int fds[2];
        REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) == 0);
        fastsse_test::Peer peer;
        peer.fd = UniqueFd(fds[1]);
        ::fcntl(fds[0], F_SETFL, ::fcntl(fds[0], F_GETFL) | O_NONBLOCK);
        Connection c;
        c.fd = UniqueFd(fds[0]);
        c.request_id = 0x0102;
        c.request = std::move(request);
        c.body = std::move(body);
        c.body_whole = body_whole;
        c.body_limit = 65536;  // the max_body setting, for the 413s text
        routes.dispatch(std::move(c), *server);
        return peer;
    }
};

Request request(std::string method, std::map<std::string, std::string, std::less<>> fastsse_params,
                std::optional<std::string> accept = "text/event-stream") {
    Request r;
    r.method = std::move(method);
    r.uri = "/events/test";
    r.accept = std::move(accept);
    r.fastsse = std::move(fastsse_params);
    return r;
}

// A complete short error answer: status, headers, one line of text, the end of the request, closed.
void check_error(const Answer& a, const std::string& status_line, const std::string& reason,
                 const std::string& extra_headers = {}) {
    CHECK(a.stdout_text == status_line + "\r\n" + extra_headers + "Content-Type: text/plain; charset=utf-8\r\n\r\n" +
                               reason + "\n");
    CHECK(a.end_of_stdout);
    CHECK(a.end_request);
    CHECK(a.closed);
}

const std::string event_stream_headers =
    "Status: 200 OK\r\n"
    "Content-Type: text/event-stream; charset=utf-8\r\n"
    "Cache-Control: no-cache\r\n"
    "X-Accel-Buffering: no\r\n"
    "\r\n";

}  // namespace

TEST_CASE("routing: 404 where no route or no producer answers") {
    Fixture f;
    SUBCASE("a location with neither FASTSSE_PRODUCER nor FASTSSE_ENDPOINT") {
        check_error(f.send(request("GET", {})), "Status: 404 Not Found",
                    "No event stream here: this location sets no FASTSSE_PRODUCER.");
        // Whatever the method: no route, nothing to allow.
        check_error(f.send(request("POST", {})), "Status: 404 Not Found",
                    "No event stream here: this location sets no FASTSSE_PRODUCER.");
    }
    SUBCASE("a producer nobody registered") {
        check_error(f.send(request("GET", {{"producer", "nope"}})), "Status: 404 Not Found",
                    "No event stream here: no producer named 'nope'.");
    }
    SUBCASE("an endpoint nobody registered") {
        check_error(f.send(request("GET", {{"endpoint", "metricz"}})), "Status: 404 Not Found",
                    "Nothing here: no endpoint named 'metricz'.");
    }
    CHECK(f.log.text().find("GET /events/test: 404 ") != std::string::npos);
}

TEST_CASE("routing: 405 for a method a stream does not take, with Allow") {
    Fixture f;
    for (auto method : {"POST", "PUT", "DELETE"}) {
        CAPTURE(method);
        check_error(f.send(request(method, {{"producer", "clock"}}), "x=1"), "Status: 405 Method Not Allowed",
                    fmt::format("Method {} is not allowed: an event stream is read with GET.", method),
                    "Allow: GET, HEAD\r\n");
    }
    // The method is checked first, before the producer is looked up.
    check_error(f.send(request("POST", {{"producer", "nope"}})), "Status: 405 Method Not Allowed",
                "Method POST is not allowed: an event stream is read with GET.", "Allow: GET, HEAD\r\n");
}

TEST_CASE("routing: 406 without Accept: text/event-stream") {
    Fixture f;
    for (auto accept : {"application/json", "text/event-stream;q=0", "text/html, */*;q=0"}) {
        CAPTURE(accept);
        check_error(f.send(request("GET", {{"producer", "clock"}}, accept)), "Status: 406 Not Acceptable",
                    "You must send a request with \"Accept: text/event-stream\".");
    }
}

TEST_CASE("routing: 500 for an admin's bad param or a bug, with the reason") {
    Fixture f;
    SUBCASE("a bad FASTSSE_ value") {
        auto a = f.send(request("GET", {{"producer", "clock"}, {"interval", "soon"}}));
        CHECK(a.status() == "Status: 500 Internal Server Error");
        CHECK(a.body().starts_with("Bad FastCGI param for producer clock: FASTSSE_INTERVAL"));
        CHECK(a.end_request);
    }
    SUBCASE("a FASTSSE_ param no table knows") {
        auto a = f.send(request("HEAD", {{"producer", "clock"}, {"intervall", "5"}}));
        CHECK(a.status() == "Status: 500 Internal Server Error");
        CHECK(a.body().starts_with("Bad FastCGI param for producer clock: "));
        CHECK(a.body().find("FASTSSE_INTERVALL") != std::string::npos);
    }
    SUBCASE("a route that throws std::runtime_error") {
        check_error(f.send(request("GET", {{"endpoint", "throws"}})), "Status: 500 Internal Server Error",
                    "the route broke");
        CHECK(f.log.text().find("GET /events/test: the route broke") != std::string::npos);
    }
    SUBCASE("a producer that throws as it starts: the stream answers, with the same one-line reason") {
        check_error(f.send(request("GET", {{"producer", "failing"}})), "Status: 500 Internal Server Error",
                    "The producer failed to start: no such file");
        CHECK(f.log.text().find("stream 1 refused: 500 Internal Server Error") != std::string::npos);
    }
}

TEST_CASE("routing: 503 with Retry-After once max_streams are open") {
    Fixture f(1);
    auto open = f.send(request("GET", {{"producer", "clock"}}));
    CHECK(open.headers() == event_stream_headers);
    CHECK_FALSE(open.end_request);
    CHECK_FALSE(open.closed);

    check_error(f.send(request("GET", {{"producer", "clock"}})), "Status: 503 Service Unavailable",
                "Too many open streams (1).", "Retry-After: 5\r\n");
    // What is not a stream is still answered as before: the limit counts streams only.
    CHECK(f.send(request("HEAD", {{"producer", "clock"}})).status() == "Status: 503 Service Unavailable");
    CHECK(f.send(request("GET", {{"producer", "nope"}})).status() == "Status: 404 Not Found");
}

TEST_CASE("routing: a stream, and the answer to HEAD") {
    Fixture f;
    auto head = f.send(request("HEAD", {{"producer", "clock"}, {"interval", "250"}}));
    CHECK(head.stdout_text == event_stream_headers);
    CHECK(head.end_request);
    CHECK(head.closed);

    auto get = f.send(request("GET", {{"producer", "clock"}, {"interval", "250"}}));
    CHECK(get.headers() == event_stream_headers);
    CHECK(get.body().starts_with(":"));  // the opening comment
    CHECK_FALSE(get.end_request);
    CHECK(f.log.text().find("stream 1 opened: producer=clock uri=/events/test") != std::string::npos);
}

TEST_CASE("routing: an exception after the headers left closes the connection, with no second status") {
    Fixture f;
    auto a = f.send(request("GET", {{"endpoint", "late"}}));
    CHECK(a.stdout_text == "Status: 200 OK\r\nContent-Type: text/plain\r\n\r\nhalf");
    CHECK(a.stdout_records == 1);
    // No end of the response: the web server sees it cut short, and passes that on.
    CHECK_FALSE(a.end_of_stdout);
    CHECK_FALSE(a.end_request);
    CHECK(a.closed);
    CHECK(f.log.text().find("GET /events/test: failed half way") != std::string::npos);
}

TEST_CASE("routing: a route reads the request body; 413 when it did not fit") {
    Fixture f;
    auto r = request("POST", {{"endpoint", "echo"}});
    r.content_type = "application/json";
    auto a = f.send(r, "{\"data\":1}");
    CHECK(a.stdout_text ==
          "Status: 200 OK\r\nX-Content-Type: application/json\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
          "{\"data\":1}");
    check_error(f.send(r, "", false), "Status: 413 Content Too Large",
                "The request body is too large: fastsse takes up to 65536 bytes.");
}

TEST_CASE("routing: a POST goes to a producer that publishes, with the body; 413 when it did not fit") {
    Fixture f;
    auto r = request("POST", {{"producer", "publishing"}});
    r.content_type = "application/x-www-form-urlencoded";
    r.authorization = "Bearer t";
    auto a = f.send(r, "topic=a");
    CHECK(a.stdout_text == "Status: 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
                           "application/x-www-form-urlencoded Bearer t topic=a");
    CHECK(a.end_request);
    check_error(f.send(r, "refuse"), "Status: 403 Forbidden", "Not yours.");
    check_error(f.send(r, "", false), "Status: 413 Content Too Large",
                "The request body is too large: fastsse takes up to 65536 bytes.");
    // Other methods: 405, POST among those allowed.
    check_error(f.send(request("PUT", {{"producer", "publishing"}}), "x"), "Status: 405 Method Not Allowed",
                "Method PUT is not allowed: an event stream is read with GET.", "Allow: GET, HEAD, POST, OPTIONS\r\n");
}

// A store elsewhere (Redis) says it kept an update after publish() returned: the connection waits
// for that, and a store that could not keep it answers a refusal, never a 200.
TEST_CASE("routing: a publish answered later waits for its outcome: 200, a refusal, or nothing") {
    Fixture f;
    auto r = request("POST", {{"producer", "publishing"}});
    r.content_type = "application/x-www-form-urlencoded";
    f.publishing->cors_policy = fastsse::CorsPolicy::parse("https://app.example");
    r.origin = "https://app.example";
    const std::string cors = "Vary: Origin\r\nAccess-Control-Allow-Origin: https://app.example\r\n"
                             "Access-Control-Allow-Credentials: true\r\n"
                             "Access-Control-Expose-Headers: Last-Event-ID, Mercure-Last-Event-ID, Link\r\n";

    auto peer = f.start(r, "later");
    REQUIRE(f.publishing->later);
    auto before = read_answer(peer);
    CHECK(before.stdout_text.empty());
    CHECK_FALSE(before.closed);
    std::exchange(f.publishing->later, nullptr)(fastsse::PublishAnswer{"urn:kept"});
    auto a = read_answer(peer);
    CHECK(a.stdout_text == "Status: 200 OK\r\n" + cors + "Content-Type: text/plain; charset=utf-8\r\n\r\nurn:kept");
    CHECK(a.end_request);
    CHECK(a.closed);

    peer = f.start(r, "later");
    std::exchange(f.publishing->later, nullptr)(fastsse::RequestError::unavailable("The store is away.", 2s));
    check_error(read_answer(peer), "Status: 503 Service Unavailable", "The store is away.", "Retry-After: 2\r\n" + cors);
    CHECK(f.log.text().find("POST /events/test: 503 The store is away.") != std::string::npos);

    // A completion dropped without a word closes the connection, unanswered: the web server says 502.
    peer = f.start(r, "later");
    f.publishing->later = nullptr;
    auto dropped = read_answer(peer);
    CHECK(dropped.stdout_text.empty());
    CHECK_FALSE(dropped.end_request);
    CHECK(dropped.closed);
}

TEST_CASE("routing: a refusal over the token carries its Bearer challenge (RFC 6750), GET, HEAD and POST") {
    Fixture f;
    auto with = [](std::string method, std::optional<std::string> authorization) {
        auto r = request(std::move(method), {{"producer", "guarded"}});
        r.authorization = std::move(authorization);
        return r;
    };
    const std::string bare = "WWW-Authenticate: Bearer realm=\"fastsse\"\r\n";
    const std::string invalid_token = "WWW-Authenticate: Bearer realm=\"fastsse\", error=\"invalid_token\"\r\n";
    // GET: refused by the producer's open(), once the stream took the connection (Stream::reject).
    check_error(f.send(with("GET", std::nullopt)), "Status: 401 Unauthorized", "A token is required.", bare);
    check_error(f.send(with("GET", "Bearer bad")), "Status: 401 Unauthorized", "Bad token.", invalid_token);
    check_error(f.send(with("GET", "Basic x")), "Status: 400 Bad Request", "Not Bearer.",
                "WWW-Authenticate: Bearer realm=\"fastsse\", error=\"invalid_request\"\r\n");
    // HEAD: by its check(), before any stream (the router's answer).
    auto head = f.send(with("HEAD", "Bearer bad"));
    check_error(head, "Status: 401 Unauthorized", "Bad token.", invalid_token);
    // POST: the publisher's refusal.
    check_error(f.send(with("POST", "Bearer good"), "topic=a"), "Status: 403 Forbidden", "Not this topic.",
                "WWW-Authenticate: Bearer realm=\"fastsse\", error=\"insufficient_scope\"\r\n");
    // Any other error has none.
    check_error(f.send(with("PUT", "Bearer good"), "x"), "Status: 405 Method Not Allowed",
                "Method PUT is not allowed: an event stream is read with GET.", "Allow: GET, HEAD, POST\r\n");
    CHECK(f.send(with("GET", "Bearer good")).stdout_text.starts_with("Status: 200 OK\r\n"));
}

TEST_CASE("bearer_status: each RFC 6750 error code's status") {
    using fastsse::BearerError;
    CHECK(fastsse::bearer_status(BearerError::none) == 401);
    CHECK(fastsse::bearer_status(BearerError::invalid_request) == 400);
    CHECK(fastsse::bearer_status(BearerError::invalid_token) == 401);
    CHECK(fastsse::bearer_status(BearerError::insufficient_scope) == 403);
    CHECK(fastsse::RequestError::bearer(BearerError::insufficient_scope, "x").status == 403);
    CHECK(fastsse::www_authenticate(BearerError::none) == "WWW-Authenticate: Bearer realm=\"fastsse\"\r\n");
}

TEST_CASE("routing: a producer adds response headers while its stream opens, never a bad one") {
    Fixture f;
    auto r = request("GET", {{"producer", "publishing"}});
    r.authorization = "Bearer t";
    auto a = f.send(r);
    auto headers = event_stream_headers;
    headers.insert(headers.size() - 2, "X-Resumed-From: id-1\r\n");
    CHECK(a.headers() == headers);
}

TEST_CASE("Router: an endpoint name given twice is refused where the program is assembled") {
    fastsse::Router routes;
    routes.add_endpoint("metrics", std::make_unique<ThrowingRoute>());
    CHECK_THROWS_AS(routes.add_endpoint("metrics", std::make_unique<ThrowingRoute>()), std::logic_error);
}

TEST_CASE("CorsPolicy: the setting's origins, as browsers serialise them; a bad one refused") {
    using fastsse::CorsPolicy;
    CHECK_FALSE(CorsPolicy::parse("").enabled());
    CHECK_FALSE(CorsPolicy::parse("  ").enabled());
    auto p = CorsPolicy::parse("https://Example.COM:443 http://a.test:8080,http://b.test:80  *  http://[::1]:9000");
    CHECK(p.enabled());
    CHECK(p.any());
    CHECK(p.origins() == std::vector<std::string>{"https://example.com", "http://a.test:8080", "http://b.test",
                                                  "http://[::1]:9000"});
    CHECK(CorsPolicy::parse("*").origins().empty());
    for (auto bad : {"https://example.com/", "https://example.com/app", "null", "example.com", "://x",
                     "https://", "https://a.test:", "https://a.test:99999x", "https://a b", "ht tp://a"}) {
        CAPTURE(bad);
        CHECK_THROWS_AS(CorsPolicy::parse(bad), fastsse::OptionError);
    }
    CHECK_THROWS_AS(CorsPolicy::parse("https://" + std::string(600, 'a') + ".test"), fastsse::OptionError);
}

TEST_CASE("CorsPolicy: a listed origin gets its name and credentials, * any other without, the rest nothing") {
    using fastsse::CorsPolicy;
    using fastsse::Headers;
    auto listed = CorsPolicy::parse("https://app.test");
    CHECK(listed.response_headers("https://app.test") ==
          Headers{{"Vary", "Origin"},
                  {"Access-Control-Allow-Origin", "https://app.test"},
                  {"Access-Control-Allow-Credentials", "true"},
                  {"Access-Control-Expose-Headers", "Last-Event-ID, Mercure-Last-Event-ID, Link"}});
    CHECK(listed.response_headers("https://evil.test") == Headers{{"Vary", "Origin"}});
    CHECK(listed.response_headers("https://app.test.evil.test") == Headers{{"Vary", "Origin"}});
    CHECK(listed.response_headers("http://app.test") == Headers{{"Vary", "Origin"}});
    CHECK(listed.response_headers("null") == Headers{{"Vary", "Origin"}});
    CHECK(listed.response_headers(std::nullopt) == Headers{{"Vary", "Origin"}});
    CHECK(listed.preflight_headers("https://app.test") ==
          Headers{{"Vary", "Origin"},
                  {"Access-Control-Allow-Origin", "https://app.test"},
                  {"Access-Control-Allow-Credentials", "true"},
                  {"Access-Control-Allow-Methods", "GET, POST, OPTIONS"},
                  {"Access-Control-Allow-Headers", "Authorization, Cache-Control, Last-Event-ID, Content-Type"},
                  {"Access-Control-Max-Age", "86400"}});
    CHECK(listed.preflight_headers("https://evil.test") == Headers{{"Vary", "Origin"}});

    auto any = CorsPolicy::parse("* https://app.test");
    auto anonymous = any.response_headers("https://other.test");
    // Never * with credentials: browsers refuse it, and reflecting the origin would hand any site
    // the visitor's cookie.
    CHECK(anonymous == Headers{{"Vary", "Origin"},
                               {"Access-Control-Allow-Origin", "*"},
                               {"Access-Control-Expose-Headers", "Last-Event-ID, Mercure-Last-Event-ID, Link"}});
    CHECK(any.response_headers("https://app.test")[2] == std::pair<std::string, std::string>{"Access-Control-Allow-Credentials", "true"});
    CHECK(any.response_headers(std::nullopt) == Headers{{"Vary", "Origin"}});

    CHECK(CorsPolicy().response_headers("https://app.test").empty());
    CHECK(CorsPolicy().preflight_headers("https://app.test").empty());
}

TEST_CASE("routing: a location that takes cross-origin requests answers preflights, and says so on every answer") {
    Fixture f;
    f.publishing->cors_policy = fastsse::CorsPolicy::parse("https://app.test");
    const std::string allowed = "Vary: Origin\r\n"
                                "Access-Control-Allow-Origin: https://app.test\r\n"
                                "Access-Control-Allow-Credentials: true\r\n"
                                "Access-Control-Expose-Headers: Last-Event-ID, Mercure-Last-Event-ID, Link\r\n";
    auto from = [](std::string method, std::optional<std::string> origin) {
        auto r = request(std::move(method), {{"producer", "publishing"}});
        r.origin = std::move(origin);
        r.authorization = "Bearer t";
        r.content_type = "application/x-www-form-urlencoded";
        return r;
    };

    SUBCASE("a preflight from a listed origin: 204 with what may follow") {
        auto a = f.send(from("OPTIONS", "https://app.test"));
        CHECK(a.stdout_text == "Status: 204 No Content\r\n"
                               "Allow: GET, HEAD, POST, OPTIONS\r\n"
                               "Vary: Origin\r\n"
                               "Access-Control-Allow-Origin: https://app.test\r\n"
                               "Access-Control-Allow-Credentials: true\r\n"
                               "Access-Control-Allow-Methods: GET, POST, OPTIONS\r\n"
                               "Access-Control-Allow-Headers: Authorization, Cache-Control, Last-Event-ID, Content-Type\r\n"
                               "Access-Control-Max-Age: 86400\r\n"
                               "\r\n");
        CHECK(a.end_request);
        CHECK(a.closed);
    }
    SUBCASE("a preflight from another origin: no CORS header, the browser stops there") {
        auto a = f.send(from("OPTIONS", "https://evil.test"));
        CHECK(a.stdout_text == "Status: 204 No Content\r\nAllow: GET, HEAD, POST, OPTIONS\r\nVary: Origin\r\n\r\n");
    }
    SUBCASE("the stream, the publish answer and a refusal carry them") {
        auto headers = event_stream_headers;
        headers.insert(headers.size() - 2, allowed + "X-Resumed-From: id-1\r\n");
        CHECK(f.send(from("GET", "https://app.test")).headers() == headers);
        CHECK(f.send(from("HEAD", "https://app.test")).stdout_text ==
              event_stream_headers.substr(0, event_stream_headers.size() - 2) + allowed + "\r\n");
        CHECK(f.send(from("POST", "https://app.test"), "topic=a").stdout_text ==
              "Status: 200 OK\r\n" + allowed +
                  "Content-Type: text/plain; charset=utf-8\r\n\r\napplication/x-www-form-urlencoded Bearer t topic=a");
        check_error(f.send(from("POST", "https://app.test"), "refuse"), "Status: 403 Forbidden", "Not yours.", allowed);
        check_error(f.send(from("PUT", "https://app.test")), "Status: 405 Method Not Allowed",
                    "Method PUT is not allowed: an event stream is read with GET.",
                    "Allow: GET, HEAD, POST, OPTIONS\r\n" + allowed);
        auto no_accept = from("GET", "https://app.test");
        no_accept.accept = "text/html";
        check_error(f.send(no_accept), "Status: 406 Not Acceptable",
                    "You must send a request with \"Accept: text/event-stream\".", allowed);
    }
    SUBCASE("another origin's requests: Vary only") {
        CHECK(f.send(from("POST", "https://evil.test"), "topic=a").stdout_text ==
              "Status: 200 OK\r\nVary: Origin\r\n"
              "Content-Type: text/plain; charset=utf-8\r\n\r\napplication/x-www-form-urlencoded Bearer t topic=a");
    }
}

TEST_CASE("routing: OPTIONS stays a 405 where the producer takes no cross-origin request") {
    Fixture f;
    check_error(f.send(request("OPTIONS", {{"producer", "clock"}})), "Status: 405 Method Not Allowed",
                "Method OPTIONS is not allowed: an event stream is read with GET.", "Allow: GET, HEAD\r\n");
    auto r = request("GET", {{"producer", "clock"}});
    r.origin = "https://app.test";
    auto a = f.send(r);
    CHECK(a.headers().find("Access-Control") == std::string::npos);
    CHECK(a.headers().find("Vary") == std::string::npos);
}
