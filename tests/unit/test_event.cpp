// The text/event-stream encoder: the seed documents' examples byte for byte, then the edge cases.
#include <doctest/doctest.h>

#include <string>
#include <string_view>

#include "fastsse/sse/event.hpp"

using namespace std::string_view_literals;
using fastsse::encode;
using fastsse::encode_comment;
using fastsse::Event;
using fastsse::EventError;

namespace {

Event data_event(std::string_view data) {
    Event e;
    e.data = data;
    return e;
}

Event named(std::string_view name, std::string_view data) {
    Event e;
    e.event = name;
    e.data = data;
    return e;
}

std::string comment(std::string_view text) {
    std::string out;
    encode_comment(text, out);
    return out;
}

}  // namespace

TEST_CASE("Hoa\\Eventsource's examples") {
    SUBCASE("send('last ID is 0')") { CHECK(encode(data_event("last ID is 0")) == "data: last ID is 0\n\n"); }

    SUBCASE("send(time(), $id)") {
        Event e = data_event("1365685831");
        e.id = "1";
        CHECK(encode(e) == "data: 1365685831\nid: 1\n\n");
    }

    SUBCASE("$server->tick->send(time())") {
        CHECK(encode(named("tick", "1365685831")) == "event: tick\ndata: 1365685831\n\n");
    }

    SUBCASE("$server->{'ti-ck'}->send(time())") {
        CHECK(encode(named("ti-ck", "1365685831")) == "event: ti-ck\ndata: 1365685831\n\n");
    }

    SUBCASE("the curl transcript, appended event after event") {
        std::string out;
        encode(data_event("last ID is 0"), out);
        for (auto t : {"1365685831"sv, "1365685832"sv, "1365685833"sv}) {
            Event e = data_event(t);
            e.id = "1";
            encode(e, out);
        }
        CHECK(out ==
              "data: last ID is 0\n"
              "\n"
              "data: 1365685831\n"
              "id: 1\n"
              "\n"
              "data: 1365685832\n"
              "id: 1\n"
              "\n"
              "data: 1365685833\n"
              "id: 1\n"
              "\n");
    }

    SUBCASE("setReconnectionTime(10000)") {
        Event e;
        e.retry_ms = 10000;
        CHECK(encode(e) == "retry: 10000\n\n");
    }
}

TEST_CASE("MDN's examples") {
    SUBCASE("ssedemo.php's ping") {
        CHECK(encode(named("ping", R"({"time": "2013-04-11T09:10:31-0400"})")) ==
              "event: ping\ndata: {\"time\": \"2013-04-11T09:10:31-0400\"}\n\n");
    }

    SUBCASE("ssedemo.php's plain message") {
        CHECK(encode(data_event("Message envoyé à 2013-04-11T09:10:31-0400")) ==
              "data: Message envoyé à 2013-04-11T09:10:31-0400\n\n");
    }

    SUBCASE("data-only messages: a comment, one line, two lines") {
        std::string out;
        encode_comment("this is a test stream", out);
        encode(data_event("du texte"), out);
        encode(data_event("un autre message\nsur deux lignes"), out);
        CHECK(out ==
              ": this is a test stream\n"
              "\n"
              "data: du texte\n"
              "\n"
              "data: un autre message\n"
              "data: sur deux lignes\n"
              "\n");
    }

    SUBCASE("named events") {
        std::string out;
        encode(named("userconnect", R"({"username": "bobby", "time": "02:33:48"})"), out);
        encode(named("usermessage", R"({"username": "bobby", "time": "02:34:11", "text": "Hi everyone."})"), out);
        encode(named("userdisconnect", R"({"username": "bobby", "time": "02:34:23"})"), out);
        encode(named("usermessage", R"({"username": "sean", "time": "02:34:36", "text": "Bye, bobby."})"), out);
        CHECK(out ==
              "event: userconnect\n"
              "data: {\"username\": \"bobby\", \"time\": \"02:33:48\"}\n"
              "\n"
              "event: usermessage\n"
              "data: {\"username\": \"bobby\", \"time\": \"02:34:11\", \"text\": \"Hi everyone.\"}\n"
              "\n"
              "event: userdisconnect\n"
              "data: {\"username\": \"bobby\", \"time\": \"02:34:23\"}\n"
              "\n"
              "event: usermessage\n"
              "data: {\"username\": \"sean\", \"time\": \"02:34:36\", \"text\": \"Bye, bobby.\"}\n"
              "\n");
    }

    SUBCASE("mixing named events and plain messages") {
        std::string out;
        encode(named("userconnect", R"({"username": "bobby", "time": "02:33:48"})"), out);
        encode(data_event("Ici un message système quelconque qui sera utilisé\npour accomplir une tâche."), out);
        encode(named("usermessage", R"({"username": "bobby", "time": "02:34:11", "text": "Hi everyone."})"), out);
        CHECK(out ==
              "event: userconnect\n"
              "data: {\"username\": \"bobby\", \"time\": \"02:33:48\"}\n"
              "\n"
              "data: Ici un message système quelconque qui sera utilisé\n"
              "data: pour accomplir une tâche.\n"
              "\n"
              "event: usermessage\n"
              "data: {\"username\": \"bobby\", \"time\": \"02:34:11\", \"text\": \"Hi everyone.\"}\n"
              "\n");
    }
}

TEST_CASE("the blog post's examples, with the standard event: field for its type:") {
    CHECK(encode(data_event("Des données")) == "data: Des données\n\n");
    CHECK(encode(data_event("Des données\nsur plusieurs lignes")) == "data: Des données\ndata: sur plusieurs lignes\n\n");
    CHECK(encode(named("status", "Nouveau statut")) == "event: status\ndata: Nouveau statut\n\n");
}

TEST_CASE("field order: event, data, id, retry") {
    Event e;
    e.event = "tick";
    e.data = "x";
    e.id = "7";
    e.retry_ms = 2500;
    CHECK(encode(e) == "event: tick\ndata: x\nid: 7\nretry: 2500\n\n");
}

TEST_CASE("data is split on LF, CR and CRLF (Hoa)") {
    CHECK(encode(data_event("a\nb")) == "data: a\ndata: b\n\n");
    CHECK(encode(data_event("a\rb")) == "data: a\ndata: b\n\n");
    CHECK(encode(data_event("a\r\nb")) == "data: a\ndata: b\n\n");

    SUBCASE("mixed line breaks") {
        CHECK(encode(data_event("a\nb\rc\r\nd")) == "data: a\ndata: b\ndata: c\ndata: d\n\n");
    }
    SUBCASE("consecutive line breaks give empty lines") {
        CHECK(encode(data_event("a\n\nb")) == "data: a\ndata: \ndata: b\n\n");
        CHECK(encode(data_event("a\r\rb")) == "data: a\ndata: \ndata: b\n\n");
        CHECK(encode(data_event("a\r\n\r\nb")) == "data: a\ndata: \ndata: b\n\n");
        // LF then CR is two line breaks, not one reversed CRLF.
        CHECK(encode(data_event("a\n\rb")) == "data: a\ndata: \ndata: b\n\n");
        // CR, then CRLF: two breaks.
        CHECK(encode(data_event("a\r\r\nb")) == "data: a\ndata: \ndata: b\n\n");
    }
    SUBCASE("leading line break") {
        CHECK(encode(data_event("\nb")) == "data: \ndata: b\n\n");
        CHECK(encode(data_event("\r\nb")) == "data: \ndata: b\n\n");
    }
    SUBCASE("trailing line break keeps an empty last line, so the client gets it back") {
        CHECK(encode(data_event("a\n")) == "data: a\ndata: \n\n");
        CHECK(encode(data_event("a\r")) == "data: a\ndata: \n\n");
        CHECK(encode(data_event("a\r\n")) == "data: a\ndata: \n\n");
    }
    SUBCASE("only line breaks") {
        CHECK(encode(data_event("\n")) == "data: \ndata: \n\n");
        CHECK(encode(data_event("\r\n")) == "data: \ndata: \n\n");
    }
    SUBCASE("empty data is one empty data line") { CHECK(encode(data_event("")) == "data: \n\n"); }
    SUBCASE("no data at all writes no data line") {
        Event e;
        e.event = "tick";
        e.id = "3";
        CHECK(encode(e) == "event: tick\nid: 3\n\n");
    }
}

TEST_CASE("NUL inside data is passed through") {
    auto data = "a\0b"sv;
    REQUIRE(data.size() == 3);
    CHECK(encode(data_event(data)) == "data: a\0b\n\n"sv);
}

TEST_CASE("retry") {
    SUBCASE("positive") {
        Event e = data_event("x");
        e.retry_ms = 10000;
        CHECK(encode(e) == "data: x\nretry: 10000\n\n");
    }
    SUBCASE("zero is written") {
        Event e;
        e.retry_ms = 0;
        CHECK(encode(e) == "retry: 0\n\n");
    }
    SUBCASE("negative is ignored, as Hoa's setReconnectionTime") {
        Event e = data_event("x");
        e.retry_ms = -1;
        CHECK(encode(e) == "data: x\n\n");
    }
    SUBCASE("negative alone writes nothing at all") {
        Event e;
        e.retry_ms = -5000;
        CHECK(encode(e).empty());
        std::string out = "before";
        encode(e, out);
        CHECK(out == "before");
    }
}

TEST_CASE("ids") {
    SUBCASE("an empty id is a bare id line, which resets the client's last id (Hoa)") {
        Event e = data_event("x");
        e.id = "";
        CHECK(encode(e) == "data: x\nid\n\n");
        Event alone;
        alone.id = "";
        CHECK(encode(alone) == "id\n\n");
    }
    SUBCASE("an id is a string, not only a number") {
        Event e = data_event("x");
        e.id = "étape-2 b";
        CHECK(encode(e) == "data: x\nid: étape-2 b\n\n");
    }
    SUBCASE("no id writes no id line") { CHECK(encode(data_event("x")) == "data: x\n\n"); }
}

TEST_CASE("an empty event encodes to nothing") {
    CHECK(encode(Event{}).empty());
    std::string out = "kept";
    encode(Event{}, out);
    CHECK(out == "kept");
}

TEST_CASE("encode appends to what the buffer holds") {
    std::string out = "prefix|";
    encode(data_event("x"), out);
    CHECK(out == "prefix|data: x\n\n");
}

TEST_CASE("names and ids with CR, LF or NUL are refused, the buffer untouched") {
    const std::string_view bad_values[] = {"a\rb"sv, "a\nb"sv, "a\0b"sv, "\n"sv, "end\r"sv, "\0"sv};
    SUBCASE("name") {
        for (auto bad : bad_values) {
            CAPTURE(std::string(bad));
            Event e = data_event("x");
            e.event = bad;
            std::string out = "before";
            CHECK_THROWS_AS(encode(e, out), EventError);
            CHECK(out == "before");
            CHECK_THROWS_WITH_AS(encode(e), doctest::Contains("event name"), EventError);
        }
    }
    SUBCASE("id") {
        for (auto bad : bad_values) {
            CAPTURE(std::string(bad));
            Event e = data_event("x");
            e.id = bad;
            std::string out = "before";
            CHECK_THROWS_AS(encode(e, out), EventError);
            CHECK(out == "before");
            CHECK_THROWS_WITH_AS(encode(e), doctest::Contains("event id"), EventError);
        }
    }
}

TEST_CASE("EventError is an invalid_argument") {
    Event e;
    e.event = "a\nb";
    CHECK_THROWS_AS(encode(e), std::invalid_argument);
}

TEST_CASE("check_field") {
    CHECK_NOTHROW(fastsse::check_field("name", "tick"));
    CHECK_NOTHROW(fastsse::check_field("name", ""));
    CHECK_NOTHROW(fastsse::check_field("id", "a b\tc:d"));
    CHECK_THROWS_AS(fastsse::check_field("id", "a\rb"), EventError);
    CHECK_THROWS_AS(fastsse::check_field("id", "a\nb"), EventError);
    CHECK_THROWS_AS(fastsse::check_field("id", "a\0b"sv), EventError);
    CHECK_THROWS_WITH(fastsse::check_field("colour", "\n"), doctest::Contains("colour"));
}

TEST_CASE("encode_comment") {
    SUBCASE("one line") { CHECK(comment("this is a test stream") == ": this is a test stream\n\n"); }
    SUBCASE("several lines, each its own comment line") {
        CHECK(comment("one\ntwo") == ": one\n: two\n\n");
        CHECK(comment("one\rtwo\r\nthree") == ": one\n: two\n: three\n\n");
    }
    SUBCASE("an empty line inside stays a comment line") { CHECK(comment("one\n\ntwo") == ": one\n:\n: two\n\n"); }
    SUBCASE("empty text is a bare colon") { CHECK(comment("") == ":\n\n"); }
    SUBCASE("appends") {
        std::string out = "data: x\n\n";
        encode_comment("heartbeat", out);
        CHECK(out == "data: x\n\n: heartbeat\n\n");
    }
}

TEST_CASE("parse_event_number: digits only, at most 2^53 - 1") {
    using fastsse::parse_event_number;
    CHECK(parse_event_number("0") == 0u);
    CHECK(parse_event_number("42") == 42u);
    CHECK(parse_event_number("0042") == 42u);
    CHECK(parse_event_number("9007199254740991") == fastsse::max_event_number);
    CHECK(fastsse::max_event_number == 9007199254740991u);
    CHECK(parse_event_number("00000000000000000000009007199254740991") == fastsse::max_event_number);
    for (std::string_view bad : {""sv, "-5"sv, "+5"sv, " 5"sv, "5 "sv, "5x"sv, "0x10"sv, "1e3"sv, "1.5"sv, "\xd9\xa1"sv,
                                 "9007199254740992"sv, "18446744073709551615"sv, "18446744073709551616"sv,
                                 "99999999999999999999999999999999"sv, "5\0"sv}) {
        CAPTURE(bad);
        CHECK_FALSE(parse_event_number(bad));
    }
}
