#include "fastsse/config/settings.hpp"

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdlib>
#include <map>

#include "fastsse/config/toml.hpp"

namespace fastsse {

namespace {

std::string flag_name(std::string_view name) {
    std::string flag(name);
    for (auto& c : flag)
        if (c == '_') c = '-';
    return flag;
}

// The settings a config file gives (by name: value as text, and its line), after it has handed its
// sections to their readers.
std::map<std::string, std::pair<std::string, int>, std::less<>> read_config(
    const std::string& path, const std::map<std::string_view, ConfigSection*>& sections) {
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
        int line = line_of(node);
        if (auto section = sections.find(key.str()); section != sections.end()) {
            ConfigNode given{node, path};
            section->second->read(&given);
            continue;
        }
        if (!settings_table().find(key.str()))
            throw UsageError(fmt::format("{}:{}: unknown setting '{}'", path, line, key.str()));
        auto value = scalar_text(node);
        if (!value) throw UsageError(fmt::format("{}:{}: {}: expected a number or a string", path, line, key.str()));
        out[std::string(key.str())] = {*value, line};
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
            // The socket is made once: the web server keeps connecting to the one it knows.
            restart_only(text("listen", &S::listen, "",
                              "unix:PATH or HOST:PORT; empty: the socket systemd passes (LISTEN_FDS), else the one "
                              "on fd 0 (spawn-fcgi, mod_fcgid)")),
            restart_only(octal("socket_mode", &S::socket_mode, "0660", "permissions of a unix socket, in octal")),
        };
        t.add(&S::limits, stream_settings());
        t.add(integer("max_streams", &S::max_streams, "15000", 1, 1'000'000, {},
                      "open streams at most; beyond, 503 with Retry-After"));
        t.add(integer("max_body", &S::max_body, "1048576", 0, 64 * 1024 * 1024, "bytes",
                      "request body taken at most (a hub publication); beyond, 413"));
        t.add(&S::hub, hub_settings());
        // Parsed once, here: a bad URL stops the start with its reason (never the password).
        // Its store holds the hub's channel and every subscription to it: a restart changes it.
        Setting<S> engine{{"engine", OptionSpec::Kind::text, "memory", 0, 0, {}, {},
                           "where the hub's channels live: memory (this process), or "
                           "redis://[[user]:password@]host[:port][/db], shared by every process given the same URL"},
                          [](S& s, std::string_view v) {
                              try {
                                  s.engine = redis::parse_redis_url(v);
                              } catch (const redis::RedisUrlError& e) {
                                  throw OptionError(e.what());
                              }
                          }};
        t.add(restart_only(from_env(engine, "FASTSSE_ENGINE")));
        t.add(choice("log_level", &S::log_level, "info", "debug|info|warn|error", "least important log lines shown"));
        return t;
    }();
    return table;
}

std::optional<SettingsSource> SettingsSource::from_command_line(int argc, char** argv, Registry& registry) {
    const auto& table = settings_table();
    SettingsSource source;
    for (const auto& [name, producer] : registry.all())
        if (auto* section = producer->config_section())
            if (!source.sections_.emplace(section->name(), section).second)
                throw std::logic_error(fmt::format("two producers read the config section [{}]", section->name()));

    CLI::App app{"fastsse: Server-Sent Events over FastCGI, behind nginx or Apache", "fastsse"};
    app.set_version_flag("--version", std::string("fastsse ") + FASTSSE_VERSION);
    app.add_option("--config", source.config_path_,
                   "TOML file with any of the settings below (flags win); SIGHUP reads it again");
    std::map<std::string, std::string, std::less<>> flags;
    for (const auto& spec : table.specs()) {
        auto help = fmt::format("{}{}{}{} [default: '{}'{}{}]", spec.help,
                                spec.location ? fmt::format(" ({})", param_name(spec.name)) : "",
                                spec.env.empty() ? "" : fmt::format(" (environment: {})", spec.env),
                                spec.restart ? " (a reload keeps it: restart to change it)" : "",
                                spec.default_value, spec.kind == OptionSpec::Kind::choice ? ", one of " : "",
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
    for (const auto& [name, section] : source.sections_) footer += "\n" + section->help();
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
    for (auto& [name, value] : flags)
        if (app.count("--" + flag_name(name)) > 0) source.flags_[name] = value;
    // Read now, once: main unsets the keys' variables, which commands' children must not inherit.
    for (const auto& spec : table.specs())
        if (!spec.env.empty())
            if (const char* value = std::getenv(std::string(spec.env).c_str()))
                source.environment_[std::string(spec.name)] = value;
    return source;
}

Settings SettingsSource::read() {
    const auto& table = settings_table();
    // Each given value, and where it was given: "file:line", "$VARIABLE" or "--flag". Flags win.
    std::map<std::string, std::pair<std::string, std::string>, std::less<>> given;
    if (!config_path_.empty()) {
        for (auto& [name, value_line] : read_config(config_path_, sections_))
            given[name] = {value_line.first, fmt::format("{}:{}", config_path_, value_line.second)};
    } else {
        for (auto& [name, section] : sections_) section->read(nullptr);
    }
    // The environment between the two, as Mercure's hub reads its keys there. A value is never
    // shown (a key): an error names the variable only.
    for (const auto& [name, value] : environment_) given[name] = {value, fmt::format("${}", table.find(name)->env)};
    for (const auto& [name, value] : flags_) given[name] = {value, "--" + flag_name(name)};

    Settings s;
    Params values;
    for (const auto& spec : table.specs()) {
        auto it = given.find(spec.name);
        auto& value = values[std::string(spec.name)];
        value = it == given.end() ? std::string(spec.default_value) : it->second.first;
        try {
            table.set(s, spec.name, value);
        } catch (const OptionError& e) {
            throw UsageError(fmt::format("{}: {}", it == given.end() ? "default" : it->second.second, e.what()));
        }
    }
    values_ = std::move(values);
    return s;
}

void SettingsSource::apply_sections() {
    for (auto& [name, section] : sections_) section->apply();
}

std::optional<Settings> load_settings(int argc, char** argv, Registry& registry) {
    auto source = SettingsSource::from_command_line(argc, argv, registry);
    if (!source) return std::nullopt;
    auto settings = source->read();
    source->apply_sections();
    return settings;
}

bool SettingsSource::reload(Settings& live) {
    if (config_path_.empty()) {
        spdlog::warn("SIGHUP: fastsse was started without --config: there is no file to read again");
        return false;
    }
    auto started = std::chrono::steady_clock::now();
    auto before = values_;
    Settings fresh;
    try {
        fresh = read();
    } catch (const UsageError& e) {
        spdlog::error("SIGHUP: not reloaded, the settings stay as they were: {}", e.what());
        return false;
    }
    const auto& table = settings_table();
    std::vector<std::string_view> kept;
    for (const auto& spec : table.specs()) {
        if (!spec.restart) continue;
        const auto& was = before.at(std::string(spec.name));
        auto& now = values_.at(std::string(spec.name));
        if (now == was) continue;
        table.set(fresh, spec.name, was);
        now = was;  // what is in force, which the next reload compares with
        kept.push_back(spec.name);
    }
    if (!kept.empty())
        spdlog::warn("SIGHUP: {} changed, but only a restart applies {}: kept as they were until then",
                     fmt::join(kept, ", "), kept.size() == 1 ? "it" : "them");
    apply_sections();
    live = std::move(fresh);
    // How long the loop (and every stream on it) waited for this.
    std::chrono::duration<double, std::milli> took = std::chrono::steady_clock::now() - started;
    spdlog::info("SIGHUP: reloaded {} in {:.1f} ms: the new settings apply to new streams and requests", config_path_,
                 took.count());
    return true;
}

}  // namespace fastsse
