#include "fastsse/config/options.hpp"

#include <charconv>
#include <fmt/format.h>

namespace fastsse {

void check_option(const OptionSpec& spec, std::string_view value) {
    switch (spec.kind) {
    case OptionSpec::Kind::integer: {
        long long n = 0;
        auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
        if (ec != std::errc() || end != value.data() + value.size() || n < spec.min || n > spec.max)
            throw OptionError(fmt::format("{}: expected an integer from {} to {}{}{}, got '{}'", spec.name, spec.min,
                                          spec.max, spec.unit.empty() ? "" : " ", spec.unit, value));
        return;
    }
    case OptionSpec::Kind::choice: {
        std::string_view rest = spec.choices;
        while (!rest.empty()) {
            auto bar = rest.find('|');
            if (rest.substr(0, bar) == value) return;
            rest = bar == std::string_view::npos ? std::string_view() : rest.substr(bar + 1);
        }
        throw OptionError(fmt::format("{}: expected one of {}, got '{}'", spec.name, spec.choices, value));
    }
    case OptionSpec::Kind::octal:
        if (value.empty() || value.size() > 4 || value.find_first_not_of("01234567") != std::string_view::npos)
            throw OptionError(fmt::format("{}: expected octal permissions such as 0660, got '{}'", spec.name, value));
        return;
    case OptionSpec::Kind::text:
        return;
    }
}

long long checked_integer(const OptionSpec& spec, std::string_view value) {
    long long n = 0;
    std::from_chars(value.data(), value.data() + value.size(), n, spec.kind == OptionSpec::Kind::octal ? 8 : 10);
    return n;
}

void check_params(std::span<const OptionSpec> table, const Params& given, bool as_params) {
    for (const auto& [name, value] : given) {
        bool found = false;
        for (const auto& spec : table) found = found || spec.name == name;
        if (!found) throw OptionError(fmt::format("unknown option {}", as_params ? param_name(name) : name));
    }
    for (const auto& spec : table) {
        auto it = given.find(spec.name);
        std::string_view value = it == given.end() ? spec.default_value : std::string_view(it->second);
        try {
            check_option(spec, value);
        } catch (const OptionError& e) {
            if (!as_params) throw;
            throw OptionError(fmt::format("{}{}", param_name(spec.name), e.what() + spec.name.size()));
        }
    }
}

std::string param_name(std::string_view option) {
    std::string name = "FASTSSE_";
    for (char c : option) name += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    return name;
}

std::string describe(std::span<const OptionSpec> table, bool as_params) {
    std::string out;
    for (const auto& spec : table) {
        std::string kind;
        switch (spec.kind) {
        case OptionSpec::Kind::integer:
            kind = fmt::format("{}..{}{}{}", spec.min, spec.max, spec.unit.empty() ? "" : " ", spec.unit);
            break;
        case OptionSpec::Kind::choice: kind = std::string(spec.choices); break;
        case OptionSpec::Kind::text: kind = "text"; break;
        case OptionSpec::Kind::octal: kind = "octal"; break;
        }
        auto name = as_params ? param_name(spec.name) : std::string(spec.name);
        // A location's override starts from the process setting; a text option without a default
        // must be given.
        auto default_value = as_params && spec.location ? fmt::format("the {} setting", spec.name)
                             : spec.default_value.empty() && spec.kind == OptionSpec::Kind::text
                                 ? std::string("none, required")
                                 : fmt::format("'{}'", spec.default_value);
        fmt::format_to(std::back_inserter(out), "  {:<18} {}; default {}: {}\n", name, kind, default_value, spec.help);
    }
    return out;
}

}  // namespace fastsse
