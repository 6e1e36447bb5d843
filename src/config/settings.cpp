#include "fastsse/config/settings.hpp"

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <toml++/toml.h>

#include <unistd.h>

#include <cstdlib>
#include <map>

namespace fastsse {

namespace {

std::string flag_name(std::string_view name) {
    std::string flag(name);
    for (auto& c : flag)
        if (c == '_') c = '-';
    return flag;
}

int line_of(const toml::node& node) { return static_cast<int>(node.source().begin.line); }

// A TOML scalar as the text the option tables check; nullopt for any other type.
std::optional<std::string> scalar_text(const toml::node& node) {
    if (auto i = node.as_integer()) return std::to_string(i->get());
    if (auto s = node.as_string()) return s->get();
    return std::nullopt;
}

std::vector<std::string> string_array(const toml::node& node, const std::string& where) {
    auto* array = node.as_array();
    if (!array) throw UsageError(fmt::format("{}: expected an array of strings", where));
    std::vector<std::string> out;
    for (auto& item : *array) {
        auto* s = item.as_string();
        if (!s) throw UsageError(fmt::format("{}: expected an array of strings", where));
        out.push_back(s->get());
    }
    return out;
}

// A program named without a slash is looked up in fastsse's PATH once, when the config is read.
std::string resolve_program(const std::string& program) {
    if (program.find('/') != std::string::npos) return program;
    const char* path = std::getenv("PATH");
    std::string_view dirs = path && *path ? path : "/usr/local/bin:/usr/bin:/bin";
    while (!dirs.empty()) {
        auto colon = dirs.find(':');
        auto candidate = fmt::format("{}/{}", dirs.substr(0, colon), program);
        if (::access(candidate.c_str(), X_OK) == 0) return candidate;
        dirs = colon == std::string_view::npos ? std::string_view() : dirs.substr(colon + 1);
    }
    return program;  // check_command says it cannot be run
}

CommandParam read_param(const toml::table& table, const std::string& path, const std::string& label) {
    CommandParam p;
    for (auto&& [key, node] : table) {
        auto at = fmt::format("{}:{}: {}", path, line_of(node), label);
        if (key == "pattern" && node.is_string()) p.pattern = node.as_string()->get();
        else if (key == "values") p.values = string_array(node, at + ": values");
        else if (key == "default" && node.is_string()) p.default_value = node.as_string()->get();
        else if (key == "max_length" && node.is_integer() && node.as_integer()->get() > 0)
            p.max_length = static_cast<size_t>(node.as_integer()->get());
        else if (key == "allow_leading_dash" && node.is_boolean()) p.allow_leading_dash = node.as_boolean()->get();
        else
            throw UsageError(fmt::format("{}: '{}': expected pattern (string), values (strings), default (string), "
                                         "max_length (positive integer) or allow_leading_dash (boolean)",
                                         at, key.str()));
    }
    return p;
}

CommandSpec read_command(const std::string& name, const toml::table& table, const std::string& path) {
    CommandSpec spec;
    spec.name = name;
    std::map<std::string, std::string, std::less<>> given;
    std::map<std::string, int, std::less<>> lines;
    for (auto&& [key, node] : table) {
        auto at = fmt::format("{}:{}: commands.{}.{}", path, line_of(node), name, key.str());
        auto expect = [&](bool ok, std::string_view type) {
            if (!ok) throw UsageError(fmt::format("{}: expected {}", at, type));
        };
        if (key == "argv") {
            spec.argv = string_array(node, at);
            if (!spec.argv.empty()) spec.argv[0] = resolve_program(spec.argv[0]);
        } else if (key == "cwd") {
            expect(node.is_string(), "a string");
            spec.cwd = node.as_string()->get();
        } else if (key == "env") {
            expect(node.is_table(), "a table of strings");
            for (auto&& [var, value] : *node.as_table()) {
                if (!value.is_string()) throw UsageError(fmt::format("{}.{}: expected a string", at, var.str()));
                spec.env[std::string(var.str())] = value.as_string()->get();
            }
        } else if (key == "pass_env") {
            spec.pass_env = string_array(node, at);
        } else if (key == "shared") {
            expect(node.is_boolean(), "true or false");
            spec.shared = node.as_boolean()->get();
        } else if (key == "params") {
            expect(node.is_table(), "tables [commands.NAME.params.P]");
            for (auto&& [param, value] : *node.as_table()) {
                if (!value.is_table()) throw UsageError(fmt::format("{}.{}: expected a table", at, param.str()));
                spec.params[std::string(param.str())] =
                    read_param(*value.as_table(), path, fmt::format("commands.{}.params.{}", name, param.str()));
            }
        } else if (auto text = scalar_text(node)) {
            given[std::string(key.str())] = *text;
            lines[std::string(key.str())] = line_of(node);
        } else {
            throw UsageError(fmt::format("{}: unexpected type", at));
        }
    }
    for (const auto& var : spec.pass_env)
        if (const char* value = std::getenv(var.c_str())) spec.env[var] = value;
    try {
        command_settings().load(spec, given);
    } catch (const OptionError& e) {
        // Name the line of the offending key when there is one.
        std::string_view message = e.what();
        int line = line_of(table);
        for (const auto& [key, l] : lines)
            if (message.starts_with(key + ":") || message.ends_with(" " + key)) line = l;
        throw UsageError(fmt::format("{}:{}: commands.{}: {}", path, line, name, message));
    }
    if (auto problem = check_command(spec); !problem.empty())
        throw UsageError(fmt::format("{}:{}: commands.{}: {}", path, line_of(table), name, problem));
    return spec;
}

struct ConfigFile {
    std::map<std::string, std::pair<std::string, int>, std::less<>> settings;  // value and line
    std::map<std::string, CommandSpec> commands;
};

ConfigFile read_config(const std::string& path) {
    toml::table table;
    try {
        table = toml::parse_file(path);
    } catch (const toml::parse_error& e) {
        auto line = e.source().begin.line;
        if (line == 0) throw UsageError(fmt::format("{}: {}", path, e.description()));
        throw UsageError(fmt::format("{}:{}: {}", path, line, e.description()));
    }
    ConfigFile out;
    for (auto&& [key, node] : table) {
        int line = line_of(node);
        if (key == "commands") {
            if (!node.is_table()) throw UsageError(fmt::format("{}:{}: commands: expected tables [commands.NAME]", path, line));
            for (auto&& [name, command] : *node.as_table()) {
                if (!command.is_table())
                    throw UsageError(fmt::format("{}:{}: commands.{}: expected a table", path, line_of(command), name.str()));
                out.commands[std::string(name.str())] = read_command(std::string(name.str()), *command.as_table(), path);
            }
            continue;
        }
        if (!settings_table().find(key.str()))
            throw UsageError(fmt::format("{}:{}: unknown setting '{}'", path, line, key.str()));
        auto value = scalar_text(node);
        if (!value) throw UsageError(fmt::format("{}:{}: {}: expected a number or a string", path, line, key.str()));
        out.settings[std::string(key.str())] = {*value, line};
    }
    return out;
}

}  // namespace

const SettingTable<StreamLimits>& stream_settings() {
    using S = StreamLimits;
    static const SettingTable<StreamLimits> table{
        per_location(duration("heartbeat", &S::heartbeat, "15", 1, 3600, "a comment on idle streams this often")),
        per_location(
            duration("retry", &S::retry, "3000", 0, 86'400'000, "retry: hint sent when the server ends a stream")),
        integer("stream_buffer", &S::max_buffer, "262144", 4096, 64 * 1024 * 1024, "bytes",
                "output queued for one slow client before it is dropped"),
        duration("write_timeout", &S::write_timeout, "30", 1, 3600,
                 "a client that takes no output for this long is dropped"),
    };
    return table;
}

const SettingTable<Settings>& settings_table() {
    using S = Settings;
    static const SettingTable<Settings> table = [] {
        SettingTable<Settings> t{
            text("listen", &S::listen, "",
                 "unix:PATH or HOST:PORT; empty: the socket systemd passes (LISTEN_FDS), else the one on fd 0 "
                 "(spawn-fcgi, mod_fcgid)"),
            octal("socket_mode", &S::socket_mode, "0660", "permissions of a unix socket, in octal"),
        };
        t.add(&S::limits, stream_settings());
        t.add(integer("max_streams", &S::max_streams, "15000", 1, 1'000'000, {},
                      "open streams at most; beyond, 503 with Retry-After"));
        t.add(choice("log_level", &S::log_level, "info", "debug|info|warn|error", "least important log lines shown"));
        return t;
    }();
    return table;
}

std::optional<Settings> load_settings(int argc, char** argv, const Registry& registry) {
    const auto& table = settings_table();
    CLI::App app{"fastsse: Server-Sent Events over FastCGI, behind nginx or Apache", "fastsse"};
    app.set_version_flag("--version", std::string("fastsse ") + FASTSSE_VERSION);
    std::string config_path;
    app.add_option("--config", config_path, "TOML file with any of the settings below (flags win)");
    std::map<std::string, std::string, std::less<>> flags;
    for (const auto& spec : table.specs()) {
        auto help = fmt::format("{}{} [default: '{}'{}{}]", spec.help,
                                spec.location ? fmt::format(" ({})", param_name(spec.name)) : "", spec.default_value,
                                spec.kind == OptionSpec::Kind::choice ? ", one of " : "",
                                spec.kind == OptionSpec::Kind::choice ? spec.choices : "");
        app.add_option("--" + flag_name(spec.name), flags[std::string(spec.name)], help);
    }
    std::string footer = "Per-location options, set in nginx as fastcgi_param FASTSSE_<NAME> value;\n"
                         "(in Apache: SetEnv FASTSSE_<NAME> value). "
                         "FASTSSE_PRODUCER picks the producer (" ;
    auto names = registry.names();
    for (size_t i = 0; i < names.size(); ++i) footer += (i ? ", " : "") + names[i];
    footer += ").\nEvery location:\n" + describe(table.overridable(), true);
    for (const auto& [name, producer] : registry.all())
        footer += fmt::format("Producer {}:\n{}", name, describe(producer->options(), true));
    footer += "\nCommands, declared in the config file as [commands.NAME]:\n"
              "  argv               array of strings (required): the program and its arguments; no shell;\n"
              "                     an element \"{p}\" is replaced by parameter p's value\n"
              "  cwd                string; default '/': working directory\n"
              "  env                table of strings; default empty: the whole environment\n"
              "  pass_env           array of names copied from fastsse's environment\n"
              "  shared             boolean; default false: one run for every viewer of the same argv\n"
              "  params.P           table: pattern (POSIX ERE, whole value) or values (list), default,\n"
              "                     max_length (256), allow_leading_dash (false)\n" +
              describe(command_settings().specs(), false);
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

    // Each given value, and where it was given: "file:line" or "--flag". Flags win.
    std::map<std::string, std::pair<std::string, std::string>, std::less<>> given;
    ConfigFile config;
    if (!config_path.empty()) {
        config = read_config(config_path);
        for (auto& [name, value_line] : config.settings)
            given[name] = {value_line.first, fmt::format("{}:{}", config_path, value_line.second)};
    }
    for (auto& [name, value] : flags)
        if (app.count("--" + flag_name(name)) > 0) given[name] = {value, "--" + flag_name(name)};

    Settings s;
    table.set_defaults(s);
    for (const auto& spec : table.specs()) {
        auto it = given.find(spec.name);
        if (it == given.end()) continue;
        try {
            table.set(s, spec.name, it->second.first);
        } catch (const OptionError& e) {
            throw UsageError(fmt::format("{}: {}", it->second.second, e.what()));
        }
    }
    s.commands = std::move(config.commands);
    return s;
}

}  // namespace fastsse
