// The option tables (check_params, check_option, SettingTable::load) on any names and values, for
// each way fastsse uses them: a location's FASTSSE_* params for the clock and command producers
// (the stream settings a location overrides taken out first, as the stream route does), the process
// settings and a command's settings from the config file. Checked against a reading of the tables
// written apart:
// - the checks pass exactly when every name is declared and every value (given, else the default)
//   fits its spec: an integer (optional '-', digits only) in range, one of the choices, any text;
// - the real table's load() then succeeds too, and a table's load() stores each option's value as
//   given or defaulted, integers read back as written;
// - an error about a FastCGI param names it as a param (FASTSSE_...).
#include <fuzzer/FuzzedDataProvider.h>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "fastsse/loop/event_loop.hpp"
#include "fastsse/loop/process.hpp"
#include "fastsse/producers/clock.hpp"
#include "fastsse/producers/command.hpp"
#include "fastsse/producers/command_config.hpp"
#include "fastsse/config/settings.hpp"
#include "fastsse/http/cors.hpp"
#include "fuzz.hpp"

namespace {

using fastsse::OptionSpec;
using fastsse::Params;
using fastsse_fuzz::check;

// The producers as main.cpp registers them, for their option tables.
struct Program {
    Program() {
        registry.add("clock", std::make_unique<fastsse::ClockProducer>(loop));
        registry.add("command", std::make_unique<fastsse::CommandProducer>(loop, children));
    }
    fastsse::EventLoop loop;
    fastsse::ChildProcesses children{loop};
    fastsse::Registry registry;
};

// One way the tables are used: its options, and the check and load fastsse does with them.
struct Use {
    std::vector<OptionSpec> specs;  // every option a given name may be
    bool as_params;
    std::function<void(const Params&)> check;  // throws OptionError
    std::function<void(const Params&)> load;   // into the real fields; throws OptionError
};

// A location's params, as StreamRoute::handle checks them, then as the producer loads them.
template <class Options>
Use location(const fastsse::Producer& producer, const fastsse::SettingTable<Options>& table) {
    Use use;
    for (const auto& spec : fastsse::stream_settings().overridable()) use.specs.push_back(spec);
    for (const auto& spec : producer.options()) use.specs.push_back(spec);
    use.as_params = true;
    auto own = [](Params given) {
        fastsse::StreamLimits limits;
        fastsse::stream_settings().override_from(limits, given);
        return given;
    };
    use.check = [&producer, own](const Params& given) {
        fastsse::check_params(producer.options(), own(given), true);
    };
    use.load = [&table, own](const Params& given) {
        Options options;
        table.load(options, own(given), true);
    };
    return use;
}

// A config file's table.
template <class T>
Use config(const fastsse::SettingTable<T>& table) {
    Use use;
    use.specs.assign(table.specs().begin(), table.specs().end());
    use.as_params = false;
    use.check = [&table](const Params& given) { fastsse::check_params(table.specs(), given); };
    use.load = [&table](const Params& given) {
        T target;
        table.load(target, given);
    };
    return use;
}

std::vector<Use> uses(const Program& p) {
    return {location(*p.registry.find("clock"), fastsse::clock_options()),
            location(*p.registry.find("command"), fastsse::command_location_options()),
            config(fastsse::settings_table()), config(fastsse::command_settings())};
}

// Each option's value as a SettingTable stores it: a table like `specs` whose fields are a map.
struct Stored {
    std::map<std::string, std::string, std::less<>> values;
};

fastsse::SettingTable<Stored> recording_table(const std::vector<OptionSpec>& specs) {
    fastsse::SettingTable<Stored> table{};
    for (const auto& spec : specs)
        table.add({spec, [name = std::string(spec.name)](Stored& s, std::string_view v) { s.values[name] = v; }});
    return table;
}

std::optional<long long> integer(std::string_view s) {
    bool negative = s.starts_with('-');
    if (negative) s.remove_prefix(1);
    if (s.empty()) return std::nullopt;
    __int128 v = 0;
    for (char c : s) {
        if (c < '0' || c > '9') return std::nullopt;
        v = std::min<__int128>(v * 10 + (c - '0'), __int128(1) << 64);  // past any long long: out of range
    }
    if (negative) v = -v;
    if (v < std::numeric_limits<long long>::min() || v > std::numeric_limits<long long>::max()) return std::nullopt;
    return static_cast<long long>(v);
}

bool fits(const OptionSpec& spec, std::string_view value) {
    switch (spec.kind) {
    case OptionSpec::Kind::integer: {
        auto n = integer(value);
        return n && *n >= spec.min && *n <= spec.max;
    }
    case OptionSpec::Kind::choice: {
        std::string choices(spec.choices);
        for (size_t start = 0;;) {
            auto bar = choices.find('|', start);
            if (choices.substr(start, bar - start) == value) return true;
            if (bar == std::string::npos) return false;
            start = bar + 1;
        }
    }
    case OptionSpec::Kind::octal:
        return !value.empty() && value.size() <= 4 && value.find_first_not_of("01234567") == std::string_view::npos;
    case OptionSpec::Kind::text: return true;
    }
    return false;
}

// Settings whose field checks more than their kind says (a text parsed when it is stored): whether
// that parse takes `value`. check_option() only knows the kind; load() stores, so it refuses these.
bool stores(const OptionSpec& spec, std::string_view value) {
    try {
        if (spec.name == "cors_origins") fastsse::CorsPolicy::parse(value);
        if (spec.name == "engine") fastsse::redis::parse_redis_url(value);
        return true;
    } catch (const fastsse::OptionError&) {
        return false;
    } catch (const fastsse::redis::RedisUrlError&) {
        return false;
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* bytes, size_t size) {
    static Program program;  // built once: an event loop and the producers, as the server has them
    static const auto all_uses = uses(program);
    FuzzedDataProvider in(bytes, size);
    const auto& use = all_uses[in.ConsumeIntegralInRange<size_t>(0, all_uses.size() - 1)];
    const auto& specs = use.specs;

    Params given;
    for (int n = in.ConsumeIntegralInRange(0, 6); n > 0; --n) {
        auto name = in.ConsumeBool() ? std::string(specs[in.ConsumeIntegralInRange<size_t>(0, specs.size() - 1)].name)
                                     : in.ConsumeRandomLengthString(16);
        given[name] = in.ConsumeRandomLengthString(24);
    }

    bool should_pass = true;  // check_params() takes it (names and kinds)
    bool stored_ok = true;    // and the fields that parse their value take it too
    for (const auto& [name, value] : given) {
        bool declared = false;
        for (const auto& spec : specs) declared = declared || spec.name == name;
        should_pass = should_pass && declared;
    }
    for (const auto& spec : specs) {
        auto it = given.find(spec.name);
        std::string_view value = it == given.end() ? spec.default_value : std::string_view(it->second);
        bool ok = fits(spec, value);
        bool passed = true;
        try {
            fastsse::check_option(spec, value);
        } catch (const fastsse::OptionError&) {
            passed = false;
        }
        check(passed == ok, "check_option disagrees with the spec");
        should_pass = should_pass && ok;
        stored_ok = stored_ok && (!ok || stores(spec, value));
    }

    auto named_as_param = [&](const fastsse::OptionError& e) {
        std::string_view message = e.what();
        return !use.as_params || message.starts_with("FASTSSE_") || message.starts_with("unknown option FASTSSE_");
    };
    try {
        use.check(given);
        check(should_pass, "check_params took a name or value it should refuse");
    } catch (const fastsse::OptionError& e) {
        check(!should_pass, "check_params refused good names and values");
        check(named_as_param(e), "an error that does not name the FastCGI param");
    }
    try {
        use.load(given);
        check(should_pass && stored_ok, "load() took a name or value it should refuse");
    } catch (const fastsse::OptionError& e) {
        check(!(should_pass && stored_ok), "load() refused good names and values");
        check(named_as_param(e), "an error that does not name the FastCGI param");
    }

    // What load() stores: each value given, else the default.
    static const auto recording = [] {
        std::vector<fastsse::SettingTable<Stored>> tables;
        for (const auto& u : all_uses) tables.push_back(recording_table(u.specs));
        return tables;
    }();
    const auto& table = recording[static_cast<size_t>(&use - all_uses.data())];
    Stored stored;
    try {
        table.load(stored, given, use.as_params);
        check(should_pass, "load() took a name or value it should refuse");
        for (const auto& spec : specs) {
            auto it = given.find(spec.name);
            auto expected = it == given.end() ? std::string(spec.default_value) : it->second;
            check(stored.values.at(std::string(spec.name)) == expected, "a value other than the one given or the default");
            if (spec.kind == OptionSpec::Kind::integer || spec.kind == OptionSpec::Kind::octal) {
                int base = spec.kind == OptionSpec::Kind::octal ? 8 : 10;
                check(fastsse::checked_integer(spec, expected) == std::stoll(expected, nullptr, base),
                      "a checked integer read back differently");
            }
            if (spec.kind == OptionSpec::Kind::integer)
                check(fastsse::checked_integer(spec, expected) == *integer(expected), "an integer read back differently");
        }
    } catch (const fastsse::OptionError& e) {
        check(!should_pass, "load() refused good names and values");
        check(named_as_param(e), "an error that does not name the FastCGI param");
    }
    return 0;
}
