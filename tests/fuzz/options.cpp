// The option tables (parse_options, check_option) on any names and values, for each way fastsse
// uses them: a location's FASTSSE_* params for the clock and command producers (with the settings
// a location overrides), the process settings and a command's settings from the config file.
// Checked against a reading of the tables written apart:
// - parse_options succeeds exactly when every name is declared and every value (given, else the
//   default) fits its spec: an integer (optional '-', digits only) in range, one of the choices,
//   any text;
// - it then holds each option's value as given or defaulted, integers read back as written;
// - an error about a FastCGI param names it as a param (FASTSSE_...).
#include <fuzzer/FuzzedDataProvider.h>

#include <array>
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
#include "fuzz.hpp"

namespace {

using fastsse::OptionSpec;
using fastsse_fuzz::check;

// The producers as main.cpp registers them, for their option tables.
struct Program {
    Program() {
        registry.add("clock", std::make_unique<fastsse::ClockProducer>(loop));
        registry.add("command", std::make_unique<fastsse::CommandProducer>(loop, children));
        // The settings a location overrides, their defaults the process's (as the server has them).
        for (auto spec : fastsse::stream_settings().overridable()) stream_options.push_back(spec);
    }
    fastsse::EventLoop loop;
    fastsse::ChildProcesses children{loop};
    fastsse::Registry registry;
    std::vector<OptionSpec> stream_options;
};

struct Use {
    std::vector<std::span<const OptionSpec>> tables;
    bool as_params;
};

std::vector<Use> uses(const Program& p) {
    return {{{p.stream_options, p.registry.find("clock")->options()}, true},
            {{p.stream_options, p.registry.find("command")->options()}, true},
            {{fastsse::settings_table().specs()}, false},
            {{fastsse::command_settings().specs()}, false}};
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

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* bytes, size_t size) {
    static Program program;  // built once: an event loop and the producers, as the server has them
    static const auto all_uses = uses(program);
    FuzzedDataProvider in(bytes, size);
    const auto& use = all_uses[in.ConsumeIntegralInRange<size_t>(0, all_uses.size() - 1)];
    std::vector<const OptionSpec*> specs;
    for (auto table : use.tables)
        for (const auto& spec : table) specs.push_back(&spec);

    std::map<std::string, std::string, std::less<>> given;
    for (int n = in.ConsumeIntegralInRange(0, 6); n > 0; --n) {
        auto name = in.ConsumeBool() ? std::string(specs[in.ConsumeIntegralInRange<size_t>(0, specs.size() - 1)]->name)
                                     : in.ConsumeRandomLengthString(16);
        given[name] = in.ConsumeRandomLengthString(24);
    }

    bool should_pass = true;
    for (const auto& [name, value] : given) {
        bool declared = false;
        for (auto* spec : specs) declared = declared || spec->name == name;
        should_pass = should_pass && declared;
    }
    for (auto* spec : specs) {
        auto it = given.find(spec->name);
        std::string_view value = it == given.end() ? spec->default_value : std::string_view(it->second);
        bool ok = fits(*spec, value);
        bool passed = true;
        try {
            fastsse::check_option(*spec, value);
        } catch (const fastsse::OptionError&) {
            passed = false;
        }
        check(passed == ok, "check_option disagrees with the spec");
        should_pass = should_pass && ok;
    }

    try {
        auto values = fastsse::parse_options(use.tables, given, use.as_params);
        check(should_pass, "parse_options took a name or value it should refuse");
        for (auto* spec : specs) {
            auto it = given.find(spec->name);
            auto expected = it == given.end() ? std::string(spec->default_value) : it->second;
            check(values.text(spec->name) == expected, "a value other than the one given or the default");
            if (spec->kind == OptionSpec::Kind::integer)
                check(values.integer(spec->name) == *integer(expected), "an integer read back differently");
            if (spec->kind == OptionSpec::Kind::integer || spec->kind == OptionSpec::Kind::octal) {
                int base = spec->kind == OptionSpec::Kind::octal ? 8 : 10;
                check(fastsse::checked_integer(*spec, expected) == std::stoll(expected, nullptr, base),
                      "a checked integer read back differently");
            }
        }
    } catch (const fastsse::OptionError& e) {
        check(!should_pass, "parse_options refused good names and values");
        std::string_view message = e.what();
        if (use.as_params)
            check(message.starts_with("FASTSSE_") || message.starts_with("unknown option FASTSSE_"),
                  "an error that does not name the FastCGI param");
    }
    return 0;
}
