#pragma once
// Settings declared once, in tables: each entry has its default, its range or choices and one line
// of help. The process settings (settings.hpp), the per-location stream options and each producer's
// options are such tables; --help and the README's option lists come from them.
#include <map>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace fastsse {

struct OptionSpec {
    enum class Kind { integer, text, choice };
    std::string_view name;           // "interval"; as a FastCGI param FASTSSE_INTERVAL
    Kind kind;
    std::string_view default_value;  // as text, checked like any given value
    long long min = 0, max = 0;      // integer: inclusive range
    std::string_view choices;        // choice: "unix|json"
    std::string_view unit;           // "ms", "s", "bytes": shown in help
    std::string_view help;
};

class OptionError : public std::invalid_argument {
public:
    using std::invalid_argument::invalid_argument;
};

// Checked values of one option table.
class OptionValues {
public:
    long long integer(std::string_view name) const;
    const std::string& text(std::string_view name) const;
    void set(std::string name, std::string value) { values_[std::move(name)] = std::move(value); }

private:
    std::map<std::string, std::string, std::less<>> values_;
};

// Checks one value against its spec; throws OptionError("interval: expected an integer ...").
void check_option(const OptionSpec& spec, std::string_view value);

// The given values (by option name) checked against the tables, defaults filled in.
// Names present in no table are an error (a typo in a config must not pass silently);
// as_params names them in errors by their FastCGI param (FASTSSE_INTERVAL).
OptionValues parse_options(std::span<const std::span<const OptionSpec>> tables,
                           const std::map<std::string, std::string, std::less<>>& given, bool as_params = false);

// The FastCGI param that sets a per-location option: "interval" is FASTSSE_INTERVAL.
std::string param_name(std::string_view option);

// "  FASTSSE_INTERVAL   10..86400000 ms; default '1000': help" lines for --help and the docs;
// as_params names options by their FastCGI param, else by their config-file key.
std::string describe(std::span<const OptionSpec> table, bool as_params);

}  // namespace fastsse
