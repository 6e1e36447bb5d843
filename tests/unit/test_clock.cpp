// The clock producer: clock_data's formats at fixed instants, then ClockProducer on a real EventLoop
// with a recording Sink. The loop is stopped from Sink callbacks once a condition holds; a guard
// timer stops it anyway after a generous deadline, so a bug fails the test instead of hanging it.
#include <doctest/doctest.h>

#include <array>
#include <cstdlib>
#include <ctime>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "support.hpp"
#include "fastsse/loop/event_loop.hpp"
#include "fastsse/producers/clock.hpp"

using namespace std::chrono_literals;
using fastsse::clock_data;

namespace {

using Given = std::map<std::string, std::string, std::less<>>;

using fastsse_test::Sent;

using fastsse_test::Call;

class Harness;

class RecordingSink final : public fastsse_test::RecordingSink {
public:
    explicit RecordingSink(Harness& h);
};

class Harness {
public:
    fastsse::EventLoop loop;
    fastsse::ClockProducer clock{loop};

    std::unique_ptr<fastsse::Subscription> open(fastsse::Sink& sink, Given given, std::string_view last_id = "",
                                                std::chrono::milliseconds retry = 3000ms) {
        fastsse::StreamStart start{last_id, {}, given, retry};
        return clock.open(sink, start);
    }

    // Runs the loop until done() holds (checked after every Sink call), or until the deadline.
    bool run_until(std::function<bool()> done, std::chrono::milliseconds deadline = 10s) {
        return waiter_.run_until(std::move(done), deadline);
    }
    void notify() { waiter_.notify(); }

private:
    fastsse_test::LoopWaiter waiter_{loop};
};

RecordingSink::RecordingSink(Harness& h) : fastsse_test::RecordingSink([&h] { h.notify(); }) {}

bool all_digits(const std::string& s) {
    return !s.empty() && s.find_first_not_of("0123456789") == std::string::npos;
}

long long seconds_now() {
    return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
        .count();
}

}  // namespace

TEST_CASE("clock_data at a fixed instant") {
    using namespace std::chrono;
    // Hoa's curl transcript: 1365685831 is 2013-04-11 13:10:31 UTC.
    auto t = system_clock::time_point(seconds(1365685831)) + duration_cast<system_clock::duration>(123456789ns);
    CHECK(clock_data("unix", t) == "1365685831");
    CHECK(clock_data("unix_ms", t) == "1365685831123");
    CHECK(clock_data("unix_us", t) == "1365685831123456");
    CHECK(clock_data("json", t) == R"({"time": "2013-04-11T13:10:31+00:00"})");

    SUBCASE("the epoch") {
        auto epoch = system_clock::time_point{};
        CHECK(clock_data("unix", epoch) == "0");
        CHECK(clock_data("unix_ms", epoch) == "0");
        CHECK(clock_data("unix_us", epoch) == "0");
        CHECK(clock_data("json", epoch) == R"({"time": "1970-01-01T00:00:00+00:00"})");
    }
    SUBCASE("a leap day, one second before midnight, sub-second part truncated") {
        auto leap = system_clock::time_point(seconds(951868799)) + milliseconds(999);
        CHECK(clock_data("unix", leap) == "951868799");
        CHECK(clock_data("unix_ms", leap) == "951868799999");
        CHECK(clock_data("unix_us", leap) == "951868799999000");
        CHECK(clock_data("json", leap) == R"({"time": "2000-02-29T23:59:59+00:00"})");
    }
    SUBCASE("json is UTC whatever the local time zone") {
        const char* old = std::getenv("TZ");
        std::string saved = old ? old : "";
        ::setenv("TZ", "EST5EDT,M3.2.0,M11.1.0", 1);  // a POSIX rule: needs no tzdata
        ::tzset();
        auto y2038 = system_clock::time_point(seconds(2147483647));
        CHECK(clock_data("json", y2038) == R"({"time": "2038-01-19T03:14:07+00:00"})");
        CHECK(clock_data("json", t) == R"({"time": "2013-04-11T13:10:31+00:00"})");
        if (old) ::setenv("TZ", saved.c_str(), 1);
        else ::unsetenv("TZ");
        ::tzset();
    }
}

TEST_CASE("ClockProducer: the options table") {
    fastsse::EventLoop loop;
    fastsse::ClockProducer clock(loop);
    std::vector<std::string> names;
    for (const auto& spec : clock.options()) names.emplace_back(spec.name);
    CHECK(names == std::vector<std::string>{"interval", "event", "format", "count"});

    fastsse::ClockOptions options;
    fastsse::clock_options().load(options, {});
    CHECK(options.interval == 1000ms);
    CHECK(options.event == "tick");
    CHECK(options.format == "unix");
    CHECK(options.count == 0);
    fastsse::clock_options().load(options, Given{{"interval", "10"}, {"event", ""}, {"format", "json"}, {"count", "3"}});
    CHECK(options.interval == 10ms);
    CHECK(options.event == "");  // an empty name is a value, not "use the default"
    CHECK(options.format == "json");
    CHECK(options.count == 3);
    CHECK_THROWS_WITH_AS(fastsse::clock_options().load(options, Given{{"interval", "9"}}, true),
                         "FASTSSE_INTERVAL: expected an integer from 10 to 86400000 ms, got '9'", fastsse::OptionError);
    CHECK_THROWS_WITH_AS(fastsse::clock_options().load(options, Given{{"format", "iso"}}, true),
                         "FASTSSE_FORMAT: expected one of unix|unix_ms|unix_us|json, got 'iso'", fastsse::OptionError);
    CHECK(options.interval == 10ms);  // a refused load changes nothing
    CHECK(clock.timers() == 0);
}

TEST_CASE("ClockProducer: a bad or unknown param is refused naming it, before anything starts") {
    Harness h;
    RecordingSink sink(h);
    CHECK_THROWS_WITH_AS(h.open(sink, {{"interval", "soon"}}),
                         "FASTSSE_INTERVAL: expected an integer from 10 to 86400000 ms, got 'soon'", fastsse::OptionError);
    CHECK_THROWS_WITH_AS(h.open(sink, {{"intervall", "10"}}), "unknown option FASTSSE_INTERVALL", fastsse::OptionError);
    CHECK_THROWS_WITH_AS(h.open(sink, {{"event", "a\nb"}}), "event: event name must not contain CR, LF or NUL",
                         fastsse::OptionError);
    fastsse::Params bad{{"count", "-1"}};
    CHECK_THROWS_WITH_AS(h.clock.check(fastsse::StreamStart{{}, {}, bad, 3000ms}),
                         "FASTSSE_COUNT: expected an integer from 0 to 1000000000, got '-1'", fastsse::OptionError);
    CHECK(h.clock.timers() == 0);
    CHECK(sink.calls.empty());
}

TEST_CASE("ClockProducer: events arrive with ids 1, 2, 3") {
    Harness h;
    RecordingSink sink(h);
    auto before = seconds_now();
    auto sub = h.open(sink, {{"interval", "10"}});
    CHECK(sink.calls.empty());  // the first tick comes from the loop, not from open()
    CHECK(h.clock.timers() == 1);
    REQUIRE(h.run_until([&] { return sink.sends() >= 3; }));
    auto after = seconds_now();

    CHECK(sink.finishes() == 0);
    for (size_t i = 0; i < 3; ++i) {
        CAPTURE(i);
        const auto& e = sink.sent(i);
        CHECK(e.event == "tick");
        REQUIRE(e.id.has_value());
        CHECK(*e.id == std::to_string(i + 1));
        REQUIRE(e.data.has_value());
        REQUIRE(all_digits(*e.data));
        auto t = std::stoll(*e.data);
        CHECK(t >= before);
        CHECK(t <= after);
        CHECK_FALSE(e.retry_ms.has_value());
    }
    // Encodes as Hoa's `$server->tick->send(time(), $id)`.
    auto first = sink.sent(0);
    CHECK(fastsse::encode(fastsse::Event{first.event, *first.data, *first.id, std::nullopt}) ==
          "event: tick\ndata: " + *first.data + "\nid: 1\n\n");
}

TEST_CASE("ClockProducer: the event name and format options") {
    Harness h;
    RecordingSink unnamed(h), json(h), micros(h);
    auto before = seconds_now();
    auto a = h.open(unnamed, {{"interval", "10"}, {"event", ""}});
    auto b = h.open(json, {{"interval", "10"}, {"event", "ping"}, {"format", "json"}});
    auto c = h.open(micros, {{"interval", "10"}, {"format", "unix_us"}});
    REQUIRE(h.run_until([&] { return unnamed.sends() >= 1 && json.sends() >= 1 && micros.sends() >= 1; }));
    auto after = seconds_now();

    CHECK(unnamed.sent(0).event == "");
    CHECK(all_digits(*unnamed.sent(0).data));

    CHECK(json.sent(0).event == "ping");
    const auto& data = *json.sent(0).data;
    // {"time": "YYYY-MM-DDTHH:MM:SS+00:00"}, MDN's ssedemo.php ping.
    REQUIRE(data.size() == std::string(R"({"time": "2013-04-11T13:10:31+00:00"})").size());
    CHECK(data.starts_with(R"({"time": ")"));
    CHECK(data.ends_with(R"(+00:00"})"));
    CHECK(data[14] == '-');
    CHECK(data[17] == '-');
    CHECK(data[20] == 'T');
    CHECK(data[23] == ':');
    CHECK(data[26] == ':');

    CHECK(micros.sent(0).event == "tick");
    REQUIRE(all_digits(*micros.sent(0).data));
    auto us = std::stoll(*micros.sent(0).data);
    CHECK(us / 1'000'000 >= before);
    CHECK(us / 1'000'000 <= after);
}

TEST_CASE("ClockProducer: resuming after Last-Event-ID") {
    Harness h;
    struct Case {
        const char* last_id;
        const char* first;
    };
    const Case cases[] = {
        {"41", "42"},
        {"0", "1"},
        {"", "1"},
        {"abc", "1"},
        {"41x", "1"},
        {" 41", "1"},
        {"-5", "1"},
        {"+41", "1"},
        {"41 ", "1"},
        {"0041", "42"},
        // Ids stop at 2^53 - 1, JavaScript's largest safe integer; beyond, an id is no number.
        {"9007199254740990", "9007199254740991"},
        {"9007199254740991", "1"},
        {"9007199254740992", "1"},
        {"18446744073709551614", "1"},  // not 18446744073709551615, then 0
        {"18446744073709551615", "1"},
        {"99999999999999999999", "1"},  // out of range
    };
    std::vector<std::unique_ptr<RecordingSink>> sinks;
    std::vector<std::unique_ptr<fastsse::Subscription>> subs;
    for (const auto& c : cases) {
        sinks.push_back(std::make_unique<RecordingSink>(h));
        subs.push_back(h.open(*sinks.back(), {{"interval", "10"}}, c.last_id));
    }
    CHECK(h.clock.timers() == 1);
    REQUIRE(h.run_until([&] {
        for (auto& s : sinks)
            if (s->sends() < 3) return false;
        return true;
    }));
    for (size_t i = 0; i < std::size(cases); ++i) {
        CAPTURE(cases[i].last_id);
        CHECK(*sinks[i]->sent(0).id == cases[i].first);
    }
    CHECK(*sinks[0]->sent(1).id == "43");
    // After the largest id comes 1.
    auto& near_max = *sinks[10];
    REQUIRE(std::string(cases[10].last_id) == "9007199254740990");
    CHECK(*near_max.sent(1).id == "1");
    CHECK(*near_max.sent(2).id == "2");
}

TEST_CASE("ClockProducer: count ends the stream with the retry hint") {
    Harness h;
    RecordingSink bounded(h), endless(h);
    auto a = h.open(bounded, {{"interval", "10"}, {"count", "3"}}, "", 1234ms);
    auto b = h.open(endless, {{"interval", "10"}}, "", 1234ms);
    // Run until the unbounded twin on the same timer has seen three ticks more than the bounded one.
    REQUIRE(h.run_until([&] { return endless.sends() >= 6; }));

    REQUIRE(bounded.calls.size() == 4);
    for (size_t i = 0; i < 3; ++i) {
        CHECK_FALSE(bounded.calls[i].finished);
        CHECK(*bounded.calls[i].sent.id == std::to_string(i + 1));
    }
    CHECK(bounded.calls[3].finished);
    CHECK(bounded.calls[3].retry == std::optional(1234ms));
    CHECK(endless.finishes() == 0);
}

TEST_CASE("ClockProducer: count=1 finishes right after the first event") {
    Harness h;
    RecordingSink sink(h);
    auto sub = h.open(sink, {{"interval", "10"}, {"count", "1"}}, "7", 0ms);
    REQUIRE(h.run_until([&] { return sink.finishes() >= 1; }));
    REQUIRE(sink.calls.size() == 2);
    CHECK(*sink.calls[0].sent.id == "8");
    CHECK(sink.calls[1].finished);
    CHECK(sink.calls[1].retry == std::optional(0ms));
}

TEST_CASE("ClockProducer: streams with the same settings share one timer") {
    Harness h;  // its loop is never run here: open() and destruction alone manage the timers
    RecordingSink s1(h), s2(h), s3(h), s4(h), s5(h), s6(h);
    CHECK(h.clock.timers() == 0);
    auto a = h.open(s1, {{"interval", "20"}});
    CHECK(h.clock.timers() == 1);
    auto b = h.open(s2, {{"interval", "20"}}, "41");
    CHECK(h.clock.timers() == 1);
    auto c = h.open(s3, {{"interval", "50"}});
    CHECK(h.clock.timers() == 2);
    auto d = h.open(s4, {{"interval", "20"}, {"event", "other"}});
    CHECK(h.clock.timers() == 3);
    auto e = h.open(s5, {{"interval", "20"}, {"format", "json"}});
    CHECK(h.clock.timers() == 4);
    // count and the retry hint are per stream, not part of the timer.
    auto f = h.open(s6, {{"interval", "20"}, {"count", "5"}}, "", 10ms);
    CHECK(h.clock.timers() == 4);

    SUBCASE("a timer lives while one of its streams does") {
        a.reset();
        CHECK(h.clock.timers() == 4);
        f.reset();
        CHECK(h.clock.timers() == 4);
        b.reset();
        CHECK(h.clock.timers() == 3);
        c.reset();
        CHECK(h.clock.timers() == 2);
    }
    SUBCASE("destroying all subscriptions leaves no timer") {
        a.reset();
        b.reset();
        c.reset();
        d.reset();
        e.reset();
        f.reset();
        CHECK(h.clock.timers() == 0);
    }
}

TEST_CASE("ClockProducer: a destroyed subscription gets no more events; the others go on") {
    Harness h;
    RecordingSink gone(h), stays(h);
    auto a = h.open(gone, {{"interval", "10"}});
    auto b = h.open(stays, {{"interval", "10"}});
    REQUIRE(h.run_until([&] { return gone.sends() >= 1 && stays.sends() >= 1; }));
    a.reset();
    CHECK(h.clock.timers() == 1);
    auto seen = gone.calls.size();
    auto target = stays.sends() + 3;
    REQUIRE(h.run_until([&] { return stays.sends() >= target; }));
    CHECK(gone.calls.size() == seen);
    b.reset();
    CHECK(h.clock.timers() == 0);
}

TEST_CASE("ClockProducer: a timer dropped and made again starts afresh") {
    Harness h;
    RecordingSink first(h), second(h);
    auto a = h.open(first, {{"interval", "10"}});
    REQUIRE(h.run_until([&] { return first.sends() >= 2; }));
    a.reset();
    CHECK(h.clock.timers() == 0);
    auto b = h.open(second, {{"interval", "10"}}, "100");
    CHECK(h.clock.timers() == 1);
    REQUIRE(h.run_until([&] { return second.sends() >= 2; }));
    CHECK(*second.sent(0).id == "101");
    CHECK(*second.sent(1).id == "102");
    b.reset();
    CHECK(h.clock.timers() == 0);
}

TEST_CASE("ClockProducer: an event name that would break the framing is refused at open") {
    Harness h;
    RecordingSink sink(h);
    for (auto bad : {"a\nb", "tick\r", "\r\n"}) {
        CAPTURE(bad);
        CHECK_THROWS_AS(h.open(sink, {{"interval", "10"}, {"event", bad}}), fastsse::OptionError);
        CHECK_THROWS_WITH(h.open(sink, {{"interval", "10"}, {"event", bad}}), doctest::Contains("event"));
    }
    std::string with_nul("a\0b", 3);
    CHECK_THROWS_AS(h.open(sink, {{"interval", "10"}, {"event", with_nul}}), fastsse::OptionError);
    CHECK(h.clock.timers() == 0);  // no timer left behind
    CHECK(sink.calls.empty());
}
