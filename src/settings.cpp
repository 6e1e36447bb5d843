#include "fastsse/settings.hpp"

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <toml++/toml.h>

#include <map>

namespace fastsse {

namespace {

using Kind = OptionSpec::Kind;

constexpr OptionSpec settings_specs[] = {
    {"listen", Kind::text, "", 0, 0, {}, {},
     "unix:PATH or HOST:PORT; empty: the listening socket is inherited on fd 0 (spawn-fcgi, mod_fcgid)"},
    {"socket_mode", Kind::text, "0660", 0, 0, {}, {}, "permissions of a unix socket, in octal"},
    {"heartbeat", Kind::integer, "15", 1, 3600, {}, "s", "a comment on idle streams this often (FASTSSE_HEARTBEAT)"},
    {"retry", Kind::integer, "3000", 0, 86'400'000, {}, "ms",
     "retry: hint sent when the server ends a stream (FASTSSE_RETRY)"},
    {"max_streams", Kind::integer, "15000", 1, 1'000'000, {}, {}, "open streams at most; beyond, 503 with Retry-After"},
    {"stream_buffer", Kind::integer, "262144", 4096, 64 * 1024 * 1024, {}, "bytes",
     "output queued for one slow client before it is dropped"},
    {"write_timeout", Kind::integer, "30", 1, 3600, {}, "s", "a client that takes no output for this long is dropped"},
    {"log_level", Kind::choice, "info", 0, 0, "debug|info|warn|error", {}, "least important log lines shown"},
};

constexpr OptionSpec stream_specs[] = {
    // No default of their own: the server fills in the process's heartbeat and retry settings.
    {"heartbeat", Kind::integer, "", 1, 3600, {}, "s", "a comment on this location's idle streams this often"},
    {"retry", Kind::integer, "", 0, 86'400'000, {}, "ms", "retry: hint when the server ends one of its streams"},
};

std::string flag_name(std::string_view name) {
    std::string flag(name);
    for (auto& c : flag)
        if (c == '_') c = '-';
    return flag;
}

std::string octal_ok(std::string_view s) {
    if (s.empty() || s.size() > 4 || s.find_first_not_of("01234567") != std::string_view::npos)
        return fmt::format("socket_mode: expected octal permissions such as 0660, got '{}'", s);
    return {};
}

// The config file's settings as text, each remembered with its line for error messages.
std::map<std::string, std::pair<std::string, int>, std::less<>> read_config(const std::string& path) {
    toml::table table;
    try {
        table = toml::parse_file(path);
    } catch (const toml::parse_error& e) {
        auto line = e.source().begin.line;
        if (line == 0) throw UsageError(fmt::format("{}: {}", path, e.description()));
        throw UsageError(fmt::format("{}:{}: {}", path, line, e.description()));
    }
    std::map<std::string, std::pair<std::string, int>, std::less<>> out;
    for (auto&& [key, node] : table) {
        int line = static_cast<int>(node.source().begin.line);
        bool known = false;
        for (const auto& spec : settings_specs) known = known || spec.name == key.str();
        if (!known) throw UsageError(fmt::format("{}:{}: unknown setting '{}'", path, line, key.str()));
        std::string value;
        if (auto i = node.as_integer()) value = std::to_string(i->get());
        else if (auto s = node.as_string()) value = s->get();
        else throw UsageError(fmt::format("{}:{}: {}: expected a number or a string", path, line, key.str()));
        out[std::string(key.str())] = {value, line};
    }
    return out;
}

}  // namespace

std::span<const OptionSpec> settings_table() { return settings_specs; }
std::span<const OptionSpec> stream_options_table() { return stream_specs; }

std::optional<Settings> load_settings(int argc, char** argv, const Registry& registry) {
    CLI::App app{"fastsse: Server-Sent Events over FastCGI, behind nginx or Apache", "fastsse"};
    app.set_version_flag("--version", std::string("fastsse ") + FASTSSE_VERSION);
    std::string config_path;
    app.add_option("--config", config_path, "TOML file with any of the settings below (flags win)");
    std::map<std::string, std::string, std::less<>> flags;
    for (const auto& spec : settings_specs) {
        auto help = fmt::format("{} [default: '{}'{}{}]", spec.help, spec.default_value,
                                spec.kind == Kind::choice ? ", one of " : "",
                                spec.kind == Kind::choice ? spec.choices : "");
        app.add_option("--" + flag_name(spec.name), flags[std::string(spec.name)], help);
    }
    std::string footer = "Per-location options, set in nginx as fastcgi_param FASTSSE_<NAME> value;\n"
                         "FASTSSE_PRODUCER picks the producer (" ;
    auto names = registry.names();
    for (size_t i = 0; i < names.size(); ++i) footer += (i ? ", " : "") + names[i];
    footer += ").\nEvery location:\n" + describe(stream_specs, true);
    for (const auto& [name, producer] : registry.all())
        footer += fmt::format("Producer {}:\n{}", name, describe(producer->options(), true));
    app.footer(footer);

    try {
        app.parse(argc, argv);
    } catch (const CLI::CallForHelp&) {
        fmt::print("{}", app.help());
        return std::nullopt;
    } catch (const CLI::CallForVersion&) {
        fmt::print("fastsse {}\n", FASTSSE_VERSION);
        return std::nullopt;
    } catch (const CLI::ParseError& e) {
        throw UsageError(fmt::format("{} (see fastsse --help)", e.what()));
    }

    std::map<std::string, std::string, std::less<>> given;
    std::map<std::string, std::string, std::less<>> where;  // setting -> "file:line" or "--flag"
    if (!config_path.empty()) {
        for (auto& [name, value_line] : read_config(config_path)) {
            given[name] = value_line.first;
            where[name] = fmt::format("{}:{}", config_path, value_line.second);
        }
    }
    for (auto& [name, value] : flags) {
        if (app.count("--" + flag_name(name)) == 0) continue;
        given[name] = value;
        where[name] = "--" + flag_name(name);
    }
    for (const auto& spec : settings_specs) {
        auto it = given.find(spec.name);
        if (it == given.end()) continue;
        try {
            check_option(spec, it->second);
        } catch (const OptionError& e) {
            throw UsageError(fmt::format("{}: {}", where[std::string(spec.name)], e.what()));
        }
        if (spec.name == "socket_mode")
            if (auto problem = octal_ok(it->second); !problem.empty())
                throw UsageError(fmt::format("{}: {}", where[std::string(spec.name)], problem));
    }
    auto values = parse_options(std::array{std::span<const OptionSpec>(settings_specs)}, given);

    Settings s;
    s.listen = values.text("listen");
    s.socket_mode = static_cast<unsigned>(std::stoul(values.text("socket_mode"), nullptr, 8));
    s.limits.heartbeat = std::chrono::seconds(values.integer("heartbeat"));
    s.limits.max_buffer = static_cast<size_t>(values.integer("stream_buffer"));
    s.limits.write_timeout = std::chrono::seconds(values.integer("write_timeout"));
    s.retry = std::chrono::milliseconds(values.integer("retry"));
    s.max_streams = static_cast<size_t>(values.integer("max_streams"));
    s.log_level = values.text("log_level");
    return s;
}

}  // namespace fastsse
