// Option tables: checking one value, checking a set of given values with defaults, --help lines, and
// settings bound to their fields (SettingTable).
#include <doctest/doctest.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <span>
#include <string>

#include "fastsse/loop/event_loop.hpp"
#include "fastsse/config/options.hpp"
#include "fastsse/producers/clock.hpp"
#include "fastsse/producers/command.hpp"
#include "fastsse/producers/command_config.hpp"
#include "fastsse/config/settings.hpp"

using fastsse::check_option;
using fastsse::OptionError;
using fastsse::OptionSpec;
using Kind = fastsse::OptionSpec::Kind;
using Given = std::map<std::string, std::string, std::less<>>;

namespace {

constexpr OptionSpec interval{"interval", Kind::integer, "1000", 10, 86'400'000, {}, "ms", "time between two events"};
constexpr OptionSpec count{"count", Kind::integer, "0", 0, 5, {}, {}, "events per connection"};
constexpr OptionSpec offset{"offset", Kind::integer, "-3", -10, 10, {}, {}, "a signed one"};
constexpr OptionSpec format{"format", Kind::choice, "unix", 0, 0, "unix|unix_ms|json", {}, "data format"};
constexpr OptionSpec event{"event", Kind::text, "tick", 0, 0, {}, {}, "event name"};

constexpr OptionSpec table_a[] = {interval, format, event};
constexpr OptionSpec table_b[] = {count, offset};

std::string message(const OptionSpec& spec, std::string_view value) {
    try {
        check_option(spec, value);
    } catch (const OptionError& e) {
        return e.what();
    }
    return "(accepted)";
}

std::string params_error(std::span<const OptionSpec> table, const Given& given, bool as_params = false) {
    try {
        fastsse::check_params(table, given, as_params);
    } catch (const OptionError& e) {
        return e.what();
    }
    return "(accepted)";
}

}  // namespace

TEST_CASE("check_option: integers within the inclusive range") {
    CHECK_NOTHROW(check_option(interval, "10"));
    CHECK_NOTHROW(check_option(interval, "1000"));
    CHECK_NOTHROW(check_option(interval, "86400000"));
    CHECK_NOTHROW(check_option(offset, "-10"));
    CHECK_NOTHROW(check_option(offset, "0"));

    CHECK(message(interval, "9") == "interval: expected an integer from 10 to 86400000 ms, got '9'");
    CHECK(message(interval, "86400001") == "interval: expected an integer from 10 to 86400000 ms, got '86400001'");
    CHECK(message(count, "6") == "count: expected an integer from 0 to 5, got '6'");  // no unit, no trailing space
    CHECK(message(count, "-1") == "count: expected an integer from 0 to 5, got '-1'");
    CHECK(message(offset, "-11") == "offset: expected an integer from -10 to 10, got '-11'");

    SUBCASE("only a whole decimal integer") {
        for (auto bad : {"", "abc", "10ms", "1e3", "1.5", " 10", "10 ", "+10", "0x10", "--1", "99999999999999999999"}) {
            CAPTURE(bad);
            CHECK_THROWS_AS(check_option(interval, bad), OptionError);
        }
        CHECK(message(interval, "") == "interval: expected an integer from 10 to 86400000 ms, got ''");
    }
}

TEST_CASE("check_option: choices match one alternative exactly") {
    CHECK_NOTHROW(check_option(format, "unix"));
    CHECK_NOTHROW(check_option(format, "unix_ms"));
    CHECK_NOTHROW(check_option(format, "json"));
    for (auto bad : {"", "uni", "unix_", "JSON", "unix|json", "unix_ms|", " json", "xml"}) {
        CAPTURE(bad);
        CHECK_THROWS_AS(check_option(format, bad), OptionError);
    }
    CHECK(message(format, "xml") == "format: expected one of unix|unix_ms|json, got 'xml'");
}

TEST_CASE("check_option: text takes anything") {
    CHECK_NOTHROW(check_option(event, ""));
    CHECK_NOTHROW(check_option(event, "tick"));
    CHECK_NOTHROW(check_option(event, "a b\nc"));
}

TEST_CASE("OptionError is an invalid_argument") {
    CHECK_THROWS_AS(check_option(count, "x"), std::invalid_argument);
}

TEST_CASE("check_params: the defaults and given values that fit") {
    CHECK(params_error(table_a, {}) == "(accepted)");
    CHECK(params_error(table_a, {{"interval", "250"}, {"event", ""}}) == "(accepted)");
    CHECK(params_error(table_b, {{"count", "5"}, {"offset", "-10"}}) == "(accepted)");
}

TEST_CASE("check_params: a bad value names its option") {
    CHECK(params_error(table_a, {{"interval", "5"}}) == "interval: expected an integer from 10 to 86400000 ms, got '5'");
    CHECK(params_error(table_a, {{"format", "iso"}}) == "format: expected one of unix|unix_ms|json, got 'iso'");
    SUBCASE("as a FastCGI param") {
        CHECK(params_error(table_a, {{"interval", "5"}}, true) ==
              "FASTSSE_INTERVAL: expected an integer from 10 to 86400000 ms, got '5'");
        CHECK(params_error(table_a, {{"format", "iso"}}, true) ==
              "FASTSSE_FORMAT: expected one of unix|unix_ms|json, got 'iso'");
    }
    SUBCASE("the first bad one in the table's order") {
        CHECK(params_error(table_a, {{"format", "iso"}, {"interval", "5"}}) ==
              "interval: expected an integer from 10 to 86400000 ms, got '5'");
    }
}

TEST_CASE("check_params: defaults are checked like given values") {
    // An integer without a default must be given.
    constexpr OptionSpec needed[] = {{"needed", Kind::integer, "", 1, 3600, {}, "s", "no default"}};
    CHECK(params_error(needed, {}) == "needed: expected an integer from 1 to 3600 s, got ''");
    CHECK(params_error(needed, {{"needed", "15"}}) == "(accepted)");
}

TEST_CASE("check_params: an unknown option is an error naming it, before any bad value") {
    CHECK(params_error(table_a, {{"intervall", "100"}}) == "unknown option intervall");
    CHECK(params_error(table_a, {{"interval", "100"}, {"zzz", "1"}}) == "unknown option zzz");
    CHECK(params_error(table_a, {{"count", "1"}}) == "unknown option count");  // count is in table_b only
    CHECK(params_error(table_a, {{"interval", "5"}, {"zzz", "1"}}) == "unknown option zzz");
    SUBCASE("as a FastCGI param") {
        CHECK(params_error(table_a, {{"intervall", "100"}}, true) == "unknown option FASTSSE_INTERVALL");
    }
}

TEST_CASE("param_name") {
    CHECK(fastsse::param_name("interval") == "FASTSSE_INTERVAL");
    CHECK(fastsse::param_name("stream_buffer") == "FASTSSE_STREAM_BUFFER");
    CHECK(fastsse::param_name("") == "FASTSSE_");
}

TEST_CASE("describe: one help line per option") {
    auto text = fastsse::describe(table_a, false);
    CHECK(text ==
          "  interval           10..86400000 ms; default '1000': time between two events\n"
          "  format             unix|unix_ms|json; default 'unix': data format\n"
          "  event              text; default 'tick': event name\n");

    SUBCASE("as FastCGI params") {
        CHECK(fastsse::describe(table_b, true) ==
              "  FASTSSE_COUNT      0..5; default '0': events per connection\n"
              "  FASTSSE_OFFSET     -10..10; default '-3': a signed one\n");
    }
    SUBCASE("an option without a default of its own names the setting it comes from") {
        auto lines = fastsse::describe(fastsse::settings_table().overridable(), true);
        CHECK(lines.find("  FASTSSE_HEARTBEAT  1..3600 s; default the heartbeat setting: ") == 0);
        CHECK(lines.find("\n  FASTSSE_RETRY      0..86400000 ms; default the retry setting: ") != std::string::npos);
    }
    SUBCASE("an empty table") { CHECK(fastsse::describe(std::span<const OptionSpec>(), true).empty()); }
}

TEST_CASE("every declared default passes its own check") {
    fastsse::EventLoop loop;
    fastsse::ClockProducer clock(loop);
    for (auto table : {fastsse::settings_table().specs(), fastsse::command_settings().specs(), clock.options(),
                       fastsse::command_location_options().specs()}) {
        for (const auto& spec : table) {
            CAPTURE(spec.name);
            CHECK_NOTHROW(check_option(spec, spec.default_value));
        }
    }
    CHECK_NOTHROW(fastsse::check_params(fastsse::settings_table().specs(), {}));
}

// ---------------------------------------------------------------------------------------------
// Settings bound to their fields

namespace {

struct Part {
    std::chrono::seconds every{0};
};

struct Bound {
    int count = 0;
    size_t bytes = 0;
    std::chrono::milliseconds wait{0};
    std::string name, level;
    unsigned mode = 0;
    Part part;
};

const fastsse::SettingTable<Part>& part_table() {
    static const fastsse::SettingTable<Part> table{
        fastsse::per_location(fastsse::duration("every", &Part::every, "5", 1, 60, "how often")),
    };
    return table;
}

const fastsse::SettingTable<Bound>& bound_table() {
    static const fastsse::SettingTable<Bound> table = [] {
        fastsse::SettingTable<Bound> t{
            fastsse::integer("count", &Bound::count, "3", -5, 5, {}, "a count"),
            fastsse::integer("bytes", &Bound::bytes, "4096", 0, 1LL << 40, "bytes", "a size"),
            fastsse::per_location(fastsse::duration("wait", &Bound::wait, "250", 0, 10'000, "a wait")),
            fastsse::text("name", &Bound::name, "tick", "a name"),
            fastsse::choice("level", &Bound::level, "info", "info|warn", "a level"),
            fastsse::octal("mode", &Bound::mode, "0660", "permissions"),
        };
        t.add(&Bound::part, part_table());
        return t;
    }();
    return table;
}

std::string set_error(Bound& b, std::string_view name, std::string_view value, bool as_param = false) {
    try {
        bound_table().set(b, name, value, as_param);
    } catch (const OptionError& e) {
        return e.what();
    }
    return "(accepted)";
}

}  // namespace

TEST_CASE("SettingTable: each setting stores its value in its own field, typed") {
    using namespace std::chrono_literals;
    Bound b;
    bound_table().set_defaults(b);
    CHECK(b.count == 3);
    CHECK(b.bytes == 4096);
    CHECK(b.wait == 250ms);
    CHECK(b.name == "tick");
    CHECK(b.level == "info");
    CHECK(b.mode == 0660);
    CHECK(b.part.every == 5s);  // a nested table's field, through its member

    bound_table().set(b, "count", "-5");
    bound_table().set(b, "bytes", "1099511627776");
    bound_table().set(b, "wait", "10000");
    bound_table().set(b, "name", "");
    bound_table().set(b, "level", "warn");
    bound_table().set(b, "mode", "750");
    bound_table().set(b, "every", "60");
    CHECK(b.count == -5);
    CHECK(b.bytes == 1ULL << 40);
    CHECK(b.wait == 10s);
    CHECK(b.name == "");
    CHECK(b.level == "warn");
    CHECK(b.mode == 0750);
    CHECK(b.part.every == 60s);
}

TEST_CASE("SettingTable: a bad value or name changes nothing and names the setting") {
    Bound b;
    bound_table().set_defaults(b);
    CHECK(set_error(b, "count", "6") == "count: expected an integer from -5 to 5, got '6'");
    CHECK(set_error(b, "mode", "0999") == "mode: expected octal permissions such as 0660, got '0999'");
    CHECK(set_error(b, "mode", "07777") == "mode: expected octal permissions such as 0660, got '07777'");
    CHECK(set_error(b, "every", "0") == "every: expected an integer from 1 to 60 s, got '0'");
    CHECK(set_error(b, "level", "debug") == "level: expected one of info|warn, got 'debug'");
    CHECK(set_error(b, "cuont", "1") == "unknown option cuont");
    CHECK(set_error(b, "wait", "x", true) == "FASTSSE_WAIT: expected an integer from 0 to 10000 ms, got 'x'");
    CHECK(set_error(b, "cuont", "1", true) == "unknown option FASTSSE_CUONT");
    CHECK(b.count == 3);
    CHECK(b.mode == 0660);
    CHECK(b.level == "info");
}

TEST_CASE("SettingTable: the unit of a duration is its field's") {
    auto* wait = bound_table().find("wait");
    auto* every = bound_table().find("every");
    REQUIRE(wait);
    REQUIRE(every);
    CHECK(wait->unit == "ms");
    CHECK(every->unit == "s");
    CHECK(bound_table().find("bytes")->unit == "bytes");
    CHECK(bound_table().find("nothing") == nullptr);
}

TEST_CASE("SettingTable: load() takes the defaults, then the given values; an unknown name first") {
    using namespace std::chrono_literals;
    Bound b;
    bound_table().load(b, {{"count", "1"}, {"every", "2"}});
    CHECK(b.count == 1);
    CHECK(b.part.every == 2s);
    CHECK(b.bytes == 4096);
    Bound c;
    try {
        bound_table().load(c, {{"count", "99"}, {"zzz", "1"}});
        FAIL("no error");
    } catch (const OptionError& e) {
        CHECK(std::string(e.what()) == "unknown option zzz");
    }
}

TEST_CASE("SettingTable: a load() refused changes nothing, and names FastCGI params as such") {
    using namespace std::chrono_literals;
    Bound b;
    bound_table().load(b, {{"count", "1"}});
    CHECK_THROWS_WITH_AS(bound_table().load(b, {{"count", "2"}, {"wait", "x"}}, true),
                         "FASTSSE_WAIT: expected an integer from 0 to 10000 ms, got 'x'", OptionError);
    CHECK_THROWS_WITH_AS(bound_table().load(b, {{"count", "2"}, {"cuont", "1"}}, true), "unknown option FASTSSE_CUONT",
                         OptionError);
    CHECK_THROWS_WITH_AS(bound_table().load(b, {{"count", "2"}, {"wait", "x"}}),
                         "wait: expected an integer from 0 to 10000 ms, got 'x'", OptionError);
    CHECK(b.count == 1);
    CHECK(b.wait == 250ms);
}

TEST_CASE("SettingTable: a location overrides only the settings marked per_location") {
    using namespace std::chrono_literals;
    Bound b;
    bound_table().set_defaults(b);
    fastsse::Params params{{"wait", "9"}, {"every", "7"}, {"count", "1"}, {"interval", "100"}};
    bound_table().override_from(b, params);
    CHECK(b.wait == 9ms);
    CHECK(b.part.every == 7s);
    CHECK(b.count == 3);  // not a location's to set: left for the producer's table, which refuses it
    CHECK(params == fastsse::Params{{"count", "1"}, {"interval", "100"}});
    fastsse::Params bad{{"every", "0"}};
    CHECK_THROWS_WITH_AS(bound_table().override_from(b, bad), "FASTSSE_EVERY: expected an integer from 1 to 60 s, got '0'",
                         OptionError);
    std::vector<std::string> names;
    for (const auto& spec : bound_table().overridable()) names.emplace_back(spec.name);
    CHECK(names == std::vector<std::string>{"wait", "every"});
}

TEST_CASE("SettingTable: mistakes in a declaration are found when the table is built") {
    struct Small {
        uint8_t n = 0;
        std::string s;
    };
    using T = fastsse::SettingTable<Small>;
    CHECK_THROWS_AS(T({fastsse::integer("n", &Small::n, "0", 0, 256, {}, "too wide for its field")}), std::logic_error);
    CHECK_THROWS_AS(T({fastsse::integer("n", &Small::n, "0", -1, 2, {}, "negative")}), std::logic_error);
    CHECK_THROWS_AS(T({fastsse::text("s", &Small::s, "", "once"), fastsse::text("s", &Small::s, "", "twice")}),
                    std::logic_error);
    CHECK_NOTHROW(T({fastsse::integer("n", &Small::n, "0", 0, 255, {}, "fits")}));
}

TEST_CASE("the process settings: each declared once, the stream's among them, a location overrides two") {
    using namespace std::chrono_literals;
    std::vector<std::string> names, overridable;
    for (const auto& spec : fastsse::settings_table().specs()) names.emplace_back(spec.name);
    for (const auto& spec : fastsse::settings_table().overridable()) overridable.emplace_back(spec.name);
    CHECK(names == std::vector<std::string>{"listen", "socket_mode", "heartbeat", "retry", "stream_buffer",
                                            "write_timeout", "max_streams", "max_body", "publisher_jwt_key",
                                            "subscriber_jwt_key", "hub_history", "hub_history_bytes",
                                            "hub_max_selectors", "cors_origins", "one_request_per_process", "hub_subscriptions",
                                            "engine", "log_level"});
    CHECK(overridable == std::vector<std::string>{"heartbeat", "retry"});

    fastsse::Settings defaults;
    fastsse::settings_table().set_defaults(defaults);
    CHECK(defaults.max_body == 1024 * 1024);
    CHECK_THROWS(fastsse::settings_table().set(defaults, "max_body", std::to_string(64 * 1024 * 1024 + 1)));

    // A stream's limits as a default StreamLimits has them are the table's defaults.
    fastsse::StreamLimits from_table;
    fastsse::stream_settings().set_defaults(from_table);
    fastsse::StreamLimits plain;
    CHECK(from_table.heartbeat == plain.heartbeat);
    CHECK(from_table.retry == plain.retry);
    CHECK(from_table.max_buffer == plain.max_buffer);
    CHECK(from_table.write_timeout == plain.write_timeout);

    fastsse::Settings s;
    fastsse::settings_table().set(s, "heartbeat", "20");
    fastsse::settings_table().set(s, "stream_buffer", "8192");
    CHECK(s.limits.heartbeat == 20s);
    CHECK(s.limits.max_buffer == 8192);
}
