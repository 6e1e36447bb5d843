// The HTTP rules applied to one request: Accept negotiation, query parameters, Last-Event-ID,
// and the Request built from libfcgi's "NAME=value" params.
#include <doctest/doctest.h>

#include <optional>
#include <string>

#include "fastsse/http/cors.hpp"
#include "fastsse/http/request.hpp"

using fastsse::accepts_event_stream;
using fastsse::query_param;

namespace {
bool accepts(const char* header) { return accepts_event_stream(std::string_view(header)); }
}  // namespace

TEST_CASE("accepts_event_stream: no preference accepts") {
    CHECK(accepts_event_stream(std::nullopt));
    CHECK(accepts(""));
    CHECK(accepts("   "));
    CHECK(accepts(" \t "));
}

TEST_CASE("accepts_event_stream: single ranges") {
    CHECK(accepts("text/event-stream"));
    CHECK(accepts("text/*"));
    CHECK(accepts("*/*"));  // Hoa: "comprend aussi */*"
    CHECK_FALSE(accepts("text/html"));  // Hoa's curl -H 'Accept: text/html' gets a 406
    CHECK_FALSE(accepts("application/json"));
    CHECK_FALSE(accepts("text/event-streams"));
    CHECK_FALSE(accepts("text/event"));
    CHECK_FALSE(accepts("application/*"));
    CHECK_FALSE(accepts("event-stream"));
}

TEST_CASE("accepts_event_stream: lists") {
    CHECK(accepts("text/html, text/event-stream"));
    CHECK(accepts("text/event-stream,text/html"));
    CHECK(accepts("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"));  // a browser's default
    CHECK_FALSE(accepts("text/html, application/json"));
    CHECK_FALSE(accepts("text/html,,application/json"));
    CHECK(accepts("text/html,,text/event-stream"));
}

TEST_CASE("accepts_event_stream: q-values") {
    CHECK_FALSE(accepts("text/event-stream;q=0"));
    CHECK_FALSE(accepts("text/event-stream;q=0.000"));
    CHECK(accepts("text/event-stream;q=0.001"));
    CHECK(accepts("text/event-stream;q=1"));
    CHECK(accepts("text/event-stream;q=1.000"));
    CHECK(accepts("*/*;q=0.1"));
    CHECK_FALSE(accepts("*/*;q=0"));
    CHECK_FALSE(accepts("text/*;q=0"));

    SUBCASE("the most specific range decides") {
        CHECK_FALSE(accepts("text/event-stream;q=0, */*"));
        CHECK_FALSE(accepts("*/*, text/event-stream;q=0"));
        CHECK_FALSE(accepts("text/event-stream;q=0, text/*"));
        CHECK_FALSE(accepts("text/*;q=0, */*"));
        CHECK(accepts("text/*;q=0, text/event-stream"));
        CHECK(accepts("*/*;q=0, text/event-stream"));
        CHECK(accepts("*/*;q=0, text/*;q=0.5"));
        CHECK(accepts("text/html, text/*;q=0.2, */*;q=0"));
    }
    SUBCASE("other parameters around q") {
        CHECK_FALSE(accepts("text/event-stream;charset=utf-8;q=0"));
        CHECK(accepts("text/event-stream;charset=utf-8"));
        CHECK(accepts("text/event-stream;q=0.5;level=1"));
        CHECK_FALSE(accepts("text/event-stream;level=1;q=0"));
    }
    SUBCASE("spacing and case of the q parameter") {
        CHECK_FALSE(accepts("text/event-stream ; q=0"));
        CHECK_FALSE(accepts("text/event-stream;Q=0"));
        CHECK_FALSE(accepts("text/event-stream; q = 0"));
        CHECK(accepts("text/event-stream; q = 0.7"));
    }
    SUBCASE("a malformed q-value makes its range unusable, not the whole header") {
        // Alone, nothing usable is left.
        CHECK_FALSE(accepts("text/event-stream;q=abc"));
        CHECK_FALSE(accepts("text/event-stream;q=2"));
        CHECK_FALSE(accepts("text/event-stream;q=1.5"));
        CHECK_FALSE(accepts("text/event-stream;q=0.0001"));
        CHECK_FALSE(accepts("text/event-stream;q=-1"));
        CHECK_FALSE(accepts("text/event-stream;q="));
        // A malformed q does not zero the range either: the other ranges still count.
        CHECK(accepts("text/event-stream;q=abc, */*"));
        CHECK(accepts("text/event-stream;q=2, text/*;q=0.5"));
        // ... and the malformed most specific range does not override a well-formed one's q=0.
        CHECK_FALSE(accepts("text/event-stream;q=abc, */*;q=0"));
    }
}

TEST_CASE("accepts_event_stream: case-insensitive, whitespace tolerant") {
    CHECK(accepts("Text/Event-Stream"));
    CHECK(accepts("TEXT/EVENT-STREAM"));
    CHECK(accepts("TEXT/*"));
    CHECK(accepts("  text/event-stream  "));
    CHECK(accepts("\ttext/event-stream\t"));
    CHECK(accepts("text/html ,  text/event-stream ;q=0.5 "));
    CHECK_FALSE(accepts("TEXT/EVENT-STREAM;Q=0, */*"));
    CHECK_FALSE(accepts("TEXT/HTML"));
}

TEST_CASE("query_param") {
    SUBCASE("plain values") {
        CHECK(query_param("a=1&b=2", "a") == "1");
        CHECK(query_param("a=1&b=2", "b") == "2");
        CHECK(query_param("lastEventId=42", "lastEventId") == "42");
    }
    SUBCASE("percent-decoding and '+'") {
        CHECK(query_param("q=hello+world", "q") == "hello world");
        CHECK(query_param("q=hello%20world", "q") == "hello world");
        CHECK(query_param("q=a%2Bb", "q") == "a+b");
        CHECK(query_param("q=a%2bb", "q") == "a+b");
        CHECK(query_param("q=%C3%A9t%C3%A9", "q") == "été");
        CHECK(query_param("q=%26%3D", "q") == "&=");
        CHECK(query_param("q=100%25", "q") == "100%");
        CHECK(query_param("q=%00", "q") == std::string(1, '\0'));
    }
    SUBCASE("malformed escapes are kept as they are") {
        CHECK(query_param("q=%zz", "q") == "%zz");
        CHECK(query_param("q=%4", "q") == "%4");
        CHECK(query_param("q=%", "q") == "%");
        CHECK(query_param("q=%4g1", "q") == "%4g1");
    }
    SUBCASE("names are decoded too") {
        CHECK(query_param("last%45ventId=7", "lastEventId") == "7");
        CHECK(query_param("a+b=1", "a b") == "1");
    }
    SUBCASE("missing") {
        CHECK_FALSE(query_param("", "a").has_value());
        CHECK_FALSE(query_param("b=1", "a").has_value());
        CHECK_FALSE(query_param("ab=1&ba=2", "a").has_value());
        CHECK_FALSE(query_param("A=1", "a").has_value());
        CHECK_FALSE(query_param("x=a=1", "a").has_value());
    }
    SUBCASE("empty values") {
        CHECK(query_param("a=&b=2", "a") == "");
        CHECK(query_param("a&b=2", "a") == "");
        CHECK(query_param("b=2&a", "a") == "");
        CHECK(query_param("a=", "a").has_value());
    }
    SUBCASE("the first occurrence wins") {
        CHECK(query_param("a=1&a=2", "a") == "1");
        CHECK(query_param("b=0&a=&a=2", "a") == "");
    }
    SUBCASE("a value may hold '='") { CHECK(query_param("a=x=y", "a") == "x=y"); }
    SUBCASE("empty pairs are skipped") { CHECK(query_param("&&a=1&", "a") == "1"); }
}

TEST_CASE("last_event_id") {
    fastsse::Request r;
    SUBCASE("neither: empty") { CHECK(fastsse::last_event_id(r) == ""); }
    SUBCASE("the Last-Event-ID header") {
        r.last_event_id = "41";
        CHECK(fastsse::last_event_id(r) == "41");
    }
    SUBCASE("the lastEventId query parameter (EventSource polyfills)") {
        r.query = "foo=1&lastEventId=abc%20d";
        CHECK(fastsse::last_event_id(r) == "abc d");
    }
    SUBCASE("the header wins over the query parameter") {
        r.last_event_id = "header";
        r.query = "lastEventId=query";
        CHECK(fastsse::last_event_id(r) == "header");
    }
    SUBCASE("other query parameters are not ids") {
        r.query = "lasteventid=1&id=2&Last-Event-ID=3";
        CHECK(fastsse::last_event_id(r) == "");
    }
}

TEST_CASE("request_from_env") {
    SUBCASE("the CGI params fastsse reads") {
        const char* env[] = {"REQUEST_METHOD=GET",
                             "REQUEST_URI=/events/clock?lastEventId=3",
                             "QUERY_STRING=lastEventId=3&x=a=b",
                             "HTTP_ACCEPT=text/event-stream",
                             "HTTP_LAST_EVENT_ID=41",
                             "FASTSSE_PRODUCER=clock",
                             "FASTSSE_INTERVAL=250",
                             "FASTSSE_EVENT=ping",
                             "HTTP_HOST=example.com",
                             "SERVER_SOFTWARE=nginx",
                             nullptr};
        auto r = fastsse::request_from_env(env);
        CHECK(r.method == "GET");
        CHECK(r.uri == "/events/clock?lastEventId=3");
        CHECK(r.query == "lastEventId=3&x=a=b");  // split at the first '=' only
        REQUIRE(r.accept.has_value());
        CHECK(*r.accept == "text/event-stream");
        REQUIRE(r.last_event_id.has_value());
        CHECK(*r.last_event_id == "41");
        CHECK(r.fastsse.size() == 3);  // HTTP_HOST and SERVER_SOFTWARE are not kept
        CHECK(r.fastsse.at("producer") == "clock");
        CHECK(r.fastsse.at("interval") == "250");
        CHECK(r.fastsse.at("event") == "ping");
        CHECK(r.fastsse.count("INTERVAL") == 0);
        CHECK(r.fastsse.count("FASTSSE_INTERVAL") == 0);
    }
    SUBCASE("HTTP_ACCEPT and HTTP_LAST_EVENT_ID absent") {
        const char* env[] = {"REQUEST_METHOD=GET", nullptr};
        auto r = fastsse::request_from_env(env);
        CHECK(r.method == "GET");
        CHECK_FALSE(r.accept.has_value());
        CHECK_FALSE(r.last_event_id.has_value());
        CHECK(r.fastsse.empty());
        CHECK(r.query == "");
    }
    SUBCASE("HTTP_ORIGIN, for CORS: kept up to max_origin bytes, else absent") {
        const char* env[] = {"REQUEST_METHOD=GET", "HTTP_ORIGIN=https://app.test", nullptr};
        CHECK(fastsse::request_from_env(env).origin == "https://app.test");
        auto longest = "HTTP_ORIGIN=https://" + std::string(fastsse::max_origin - 8, 'a');
        auto too_long = longest + "a";
        const char* at_bound[] = {longest.c_str(), nullptr};
        const char* over[] = {too_long.c_str(), nullptr};
        CHECK(fastsse::request_from_env(at_bound).origin->size() == fastsse::max_origin);
        CHECK_FALSE(fastsse::request_from_env(over).origin.has_value());
        const char* none[] = {"REQUEST_METHOD=GET", nullptr};
        CHECK_FALSE(fastsse::request_from_env(none).origin.has_value());
    }
    SUBCASE("a request with a body: CONTENT_TYPE and CONTENT_LENGTH as sent") {
        const char* env[] = {"REQUEST_METHOD=POST", "CONTENT_TYPE=application/json", "CONTENT_LENGTH=12", nullptr};
        auto r = fastsse::request_from_env(env);
        CHECK(r.content_type == "application/json");
        CHECK(r.content_length == "12");
        const char* none[] = {"REQUEST_METHOD=GET", "CONTENT_LENGTH=", nullptr};
        r = fastsse::request_from_env(none);
        CHECK(r.content_type.empty());
        CHECK(r.content_length.empty());
    }
    SUBCASE("HTTP_ACCEPT present but empty is present") {
        const char* env[] = {"HTTP_ACCEPT=", nullptr};
        auto r = fastsse::request_from_env(env);
        REQUIRE(r.accept.has_value());
        CHECK(r.accept->empty());
    }
    SUBCASE("values keep their spaces and case; FASTSSE_ keys are lower-cased") {
        const char* env[] = {"FASTSSE_Event_Name=Tick Tock", "FASTSSE_FORMAT=", nullptr};
        auto r = fastsse::request_from_env(env);
        CHECK(r.fastsse.at("event_name") == "Tick Tock");
        REQUIRE(r.fastsse.count("format") == 1);
        CHECK(r.fastsse.at("format") == "");
    }
    SUBCASE("entries without '=' are skipped") {
        const char* env[] = {"REQUEST_METHOD", "FASTSSE_INTERVAL", "QUERY_STRING=a=1", nullptr};
        auto r = fastsse::request_from_env(env);
        CHECK(r.method == "");
        CHECK(r.fastsse.empty());
        CHECK(r.query == "a=1");
    }
    SUBCASE("names match exactly") {
        const char* env[] = {"XREQUEST_METHOD=GET", "XFASTSSE_INTERVAL=5", "HTTP_ACCEPT_LANGUAGE=fr", nullptr};
        auto r = fastsse::request_from_env(env);
        CHECK(r.method == "");
        CHECK(r.fastsse.empty());
        CHECK_FALSE(r.accept.has_value());
    }
    SUBCASE("an empty or null environment") {
        const char* env[] = {nullptr};
        CHECK(fastsse::request_from_env(env).method.empty());
        auto r = fastsse::request_from_env(nullptr);
        CHECK(r.method.empty());
        CHECK(r.fastsse.empty());
    }
}

TEST_CASE("RequestError carries status, reason, and what its headers need") {
    auto e = fastsse::RequestError::method_not_allowed("no", "GET, HEAD");
    CHECK(e.status == 405);
    CHECK(std::string(e.what()) == "no");
    CHECK(e.allow == "GET, HEAD");
    CHECK_FALSE(e.retry_after);
    auto busy = fastsse::RequestError::unavailable("busy", std::chrono::seconds(7));
    CHECK(busy.status == 503);
    CHECK(busy.retry_after == std::chrono::seconds(7));
    fastsse::RequestError plain(404, "gone");
    CHECK(plain.allow.empty());
    CHECK_FALSE(plain.retry_after);
}

TEST_CASE("redact_uri: a token in the query never reaches the log") {
    using fastsse::redact_uri;
    CHECK(redact_uri("/.well-known/mercure?topic=a&authorization=eyJ.x.y&b=1") ==
          "/.well-known/mercure?topic=a&authorization=REDACTED&b=1");
    CHECK(redact_uri("/h?Authorization=t&authoriz%61tion=t&authorization") ==
          "/h?Authorization=REDACTED&authoriz%61tion=REDACTED&authorization");
    CHECK(redact_uri("/events/clock?lastEventId=3") == "/events/clock?lastEventId=3");
    CHECK(redact_uri("/events/clock") == "/events/clock");
    CHECK(redact_uri("/x?") == "/x?");
    const char* env[] = {"REQUEST_URI=/h?authorization=secret", nullptr};
    CHECK(fastsse::request_from_env(env).uri == "/h?authorization=REDACTED");
}
