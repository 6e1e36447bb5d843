#pragma once
// Settings declared once, in tables: each entry has its default, its range or choices, one line of
// help and, in a SettingTable, the field it sets (redis's createIntConfig("hz", ..., server.hz)).
// The process settings, a stream's settings, a command's settings and each producer's per-location
// options are such tables; --help and the README's option lists come from them.
#include <chrono>
#include <concepts>
#include <functional>
#include <limits>
#include <map>
#include <ratio>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace fastsse {

struct OptionSpec {
    enum class Kind { integer, text, choice, octal };
    std::string_view name;           // "interval"; as a FastCGI param FASTSSE_INTERVAL
    Kind kind;
    std::string_view default_value;  // as text, checked like any given value
    long long min = 0, max = 0;      // integer: inclusive range
    std::string_view choices;        // choice: "unix|json"
    std::string_view unit;           // "ms", "s", "bytes": shown in help
    std::string_view help;
    bool location = false;           // a location may override it with the FastCGI param FASTSSE_<NAME>
    // The environment variable that sets it (MERCURE_PUBLISHER_JWT_KEY), if any: it wins over the
    // config file, and a flag wins over it.
    std::string_view env = {};
    // A reload (SIGHUP) cannot change it (the listening socket, the engine): the process keeps the
    // value it started with until it restarts.
    bool restart = false;
};

class OptionError : public std::invalid_argument {
public:
    using std::invalid_argument::invalid_argument;
};

// Option values by name, as given (FastCGI params, a config table's scalars).
using Params = std::map<std::string, std::string, std::less<>>;

// Checks one value against its spec; throws OptionError("interval: expected an integer ...").
void check_option(const OptionSpec& spec, std::string_view value);

// Checks the given values (by option name) against one table, defaults included, storing nothing.
// A name the table does not declare is an error before any value is (a typo in a config must not
// pass silently); then each value, given or default, in the table's order. as_params names them in
// errors by their FastCGI param (FASTSSE_INTERVAL).
void check_params(std::span<const OptionSpec> table, const Params& given, bool as_params = false);

// The FastCGI param that sets a per-location option: "interval" is FASTSSE_INTERVAL.
std::string param_name(std::string_view option);

// "  FASTSSE_INTERVAL   10..86400000 ms; default '1000': help" lines for --help and the docs;
// as_params names options by their FastCGI param, else by their config-file key. A setting a
// location overrides is shown, as a param, with "default the NAME setting".
std::string describe(std::span<const OptionSpec> table, bool as_params);

// The value of an integer (or octal) option that passed check_option.
long long checked_integer(const OptionSpec& spec, std::string_view value);

// ---------------------------------------------------------------------------------------------
// Settings bound to their fields: a value is checked and stored in its field once, by the entry
// that declares it; nothing is looked up again by name, nothing is copied by hand.

template <class T>
struct Setting {
    OptionSpec spec;
    // Stores a value that passed check_option(spec, value) into its field of `target`.
    std::function<void(T&, std::string_view)> store;
};

namespace setting_detail {

template <class F>
void check_range(std::string_view name, long long min, long long max) {
    // Then every value that passes the check fits the field as it is.
    if (!std::in_range<F>(min) || !std::in_range<F>(max))
        throw std::logic_error("setting " + std::string(name) + ": its range does not fit its field");
}

template <class Period>
constexpr std::string_view unit_of() {
    if constexpr (std::is_same_v<Period, std::ratio<1>>) return "s";
    else if constexpr (std::is_same_v<Period, std::milli>) return "ms";
    else static_assert(std::is_same_v<Period, std::ratio<1>>, "a duration setting is in s or ms");
}

}  // namespace setting_detail

// An integer field (a count, a size): `unit` ("bytes", "lines") is shown in help.
template <class T, std::integral F>
Setting<T> integer(std::string_view name, F T::*field, std::string_view default_value, long long min, long long max,
                   std::string_view unit, std::string_view help) {
    setting_detail::check_range<F>(name, min, max);
    OptionSpec spec{name, OptionSpec::Kind::integer, default_value, min, max, {}, unit, help};
    return {spec, [field, spec](T& t, std::string_view v) { t.*field = static_cast<F>(checked_integer(spec, v)); }};
}

// A duration field: its unit (s or ms) is its type's, so a value means what the field holds.
template <class T, class Rep, class Period>
Setting<T> duration(std::string_view name, std::chrono::duration<Rep, Period> T::*field,
                    std::string_view default_value, long long min, long long max, std::string_view help) {
    setting_detail::check_range<Rep>(name, min, max);
    OptionSpec spec{name, OptionSpec::Kind::integer, default_value, min, max, {}, setting_detail::unit_of<Period>(),
                    help};
    return {spec, [field, spec](T& t, std::string_view v) {
                t.*field = std::chrono::duration<Rep, Period>(checked_integer(spec, v));
            }};
}

template <class T>
Setting<T> text(std::string_view name, std::string T::*field, std::string_view default_value, std::string_view help) {
    return {{name, OptionSpec::Kind::text, default_value, 0, 0, {}, {}, help},
            [field](T& t, std::string_view v) { t.*field = std::string(v); }};
}

// One of `choices` ("debug|info|warn|error").
template <class T>
Setting<T> choice(std::string_view name, std::string T::*field, std::string_view default_value,
                  std::string_view choices, std::string_view help) {
    return {{name, OptionSpec::Kind::choice, default_value, 0, 0, choices, {}, help},
            [field](T& t, std::string_view v) { t.*field = std::string(v); }};
}

// Permissions written in octal ("0660").
template <class T>
Setting<T> octal(std::string_view name, unsigned T::*field, std::string_view default_value, std::string_view help) {
    OptionSpec spec{name, OptionSpec::Kind::octal, default_value, 0, 07777, {}, {}, help};
    return {spec, [field, spec](T& t, std::string_view v) {
                t.*field = static_cast<unsigned>(checked_integer(spec, v));
            }};
}

// A setting a location may override with the FastCGI param FASTSSE_<NAME>.
template <class T>
Setting<T> per_location(Setting<T> setting) {
    setting.spec.location = true;
    return setting;
}

// A setting the environment variable `env` may set too (names fixed elsewhere, as Mercure's keys).
template <class T>
Setting<T> from_env(Setting<T> setting, std::string_view env) {
    setting.spec.env = env;
    return setting;
}

// A setting that only a restart changes (OptionSpec::restart).
template <class T>
Setting<T> restart_only(Setting<T> setting) {
    setting.spec.restart = true;
    return setting;
}

// One scope's settings (the process, a stream, a command), in the order --help shows them.
template <class T>
class SettingTable {
public:
    SettingTable(std::initializer_list<Setting<T>> settings) {
        for (const auto& s : settings) add(s);
    }

    void add(Setting<T> setting) {
        if (find(setting.spec.name))
            throw std::logic_error("setting " + std::string(setting.spec.name) + " is declared twice");
        specs_.push_back(setting.spec);
        stores_.push_back(std::move(setting.store));
    }
    // The settings of `inner`, stored in the member `part` of T (a Settings' StreamLimits).
    template <class Part>
    void add(Part T::*part, const SettingTable<Part>& inner) {
        for (size_t i = 0; i < inner.specs().size(); ++i)
            add({inner.specs()[i], [part, store = inner.store(i)](T& t, std::string_view v) { store(t.*part, v); }});
    }

    std::span<const OptionSpec> specs() const { return specs_; }
    const std::function<void(T&, std::string_view)>& store(size_t i) const { return stores_.at(i); }
    const OptionSpec* find(std::string_view name) const {
        auto i = index(name);
        return i < specs_.size() ? &specs_[i] : nullptr;
    }
    // The settings a location may override, for --help.
    std::vector<OptionSpec> overridable() const {
        std::vector<OptionSpec> out;
        for (const auto& spec : specs_)
            if (spec.location) out.push_back(spec);
        return out;
    }

    // Checks `value` and stores it in the field of the setting `name`. Throws OptionError naming
    // the setting (as_param: its FastCGI param), or "unknown option NAME".
    void set(T& target, std::string_view name, std::string_view value, bool as_param = false) const {
        auto i = index(name);
        if (i == specs_.size())
            throw OptionError("unknown option " + (as_param ? param_name(name) : std::string(name)));
        try {
            check_option(specs_[i], value);
        } catch (const OptionError& e) {
            if (!as_param) throw;
            throw OptionError(param_name(name) + (e.what() + name.size()));
        }
        stores_[i](target, value);
    }

    // Every setting's default.
    void set_defaults(T& target) const {
        for (const auto& spec : specs_) set(target, spec.name, spec.default_value);
    }

    // Each setting's given value, else its default, stored in its field once check_params has
    // passed them all: a bad name or value changes nothing.
    void load(T& target, const Params& given, bool as_params = false) const {
        check_params(specs_, given, as_params);
        for (size_t i = 0; i < specs_.size(); ++i) {
            auto it = given.find(specs_[i].name);
            stores_[i](target, it == given.end() ? specs_[i].default_value : std::string_view(it->second));
        }
    }

    // A location's FastCGI params that override settings of `target` are stored there and taken
    // out of `params`; the others stay for the producer.
    void override_from(T& target, Params& params) const {
        for (const auto& spec : specs_) {
            if (!spec.location) continue;
            auto it = params.find(spec.name);
            if (it == params.end()) continue;
            set(target, spec.name, it->second, true);
            params.erase(it);
        }
    }

private:
    size_t index(std::string_view name) const {
        size_t i = 0;
        while (i < specs_.size() && specs_[i].name != name) ++i;
        return i;
    }

    std::vector<OptionSpec> specs_;
    std::vector<std::function<void(T&, std::string_view)>> stores_;
};

}  // namespace fastsse
