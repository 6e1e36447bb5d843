#include "fastsse/producers/command_config.hpp"

#include <fmt/format.h>
#include <regex.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>

#include "fastsse/config/toml.hpp"
#include "fastsse/http/request.hpp"

namespace fastsse {

namespace {

std::optional<std::string_view> placeholder(std::string_view element) {
    if (element.size() > 2 && element.front() == '{' && element.back() == '}') return element.substr(1, element.size() - 2);
    return std::nullopt;
}

// Why `value` is refused for `param` ("is longer than 256 bytes"), or empty when it is allowed.
std::string refusal(const CommandParam& param, const std::string& value) {
    if (value.size() > param.max_length) return fmt::format("is longer than {} bytes", param.max_length);
    if (value.find('\0') != std::string::npos) return "contains a NUL byte";
    if (value.starts_with('-') && !param.allow_leading_dash) return "must not start with '-'";
    if (!param.values.empty())
        return std::find(param.values.begin(), param.values.end(), value) == param.values.end()
                   ? "is not one of the allowed values"
                   : "";
    return param.pattern.matches(value) ? "" : "does not match its pattern";
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

// Where a key of [commands.NAME] is: "PATH:LINE: commands.NAME.KEY", to start its errors.
struct KeyAt {
    const std::string& path;
    const std::string& command;
    const std::string& at;
};

void expect(bool ok, const KeyAt& where, std::string_view type) {
    if (!ok) throw UsageError(fmt::format("{}: expected {}", where.at, type));
}

// The keys of [commands.NAME] that are not scalar settings: each read by its own function, and
// described in --help by its label and text (a "\n" there continues the description).
struct CommandKey {
    std::string_view key, label, help;
    void (*read)(CommandSpec& spec, const toml::node& node, const KeyAt& where);
};

constexpr CommandKey command_keys[] = {
    {"argv", "argv",
     "array of strings (required): the program and its arguments; no shell;\n"
     "an element \"{p}\" is replaced by parameter p's value",
     [](CommandSpec& spec, const toml::node& node, const KeyAt& where) {
         spec.argv = string_array(node, where.at);
         if (!spec.argv.empty()) spec.argv[0] = resolve_program(spec.argv[0]);
     }},
    {"cwd", "cwd", "string; default '/': working directory",
     [](CommandSpec& spec, const toml::node& node, const KeyAt& where) {
         expect(node.is_string(), where, "a string");
         spec.cwd = node.as_string()->get();
     }},
    {"env", "env", "table of strings; default empty: the whole environment",
     [](CommandSpec& spec, const toml::node& node, const KeyAt& where) {
         expect(node.is_table(), where, "a table of strings");
         for (auto&& [var, value] : *node.as_table()) {
             if (!value.is_string()) throw UsageError(fmt::format("{}.{}: expected a string", where.at, var.str()));
             spec.env[std::string(var.str())] = value.as_string()->get();
         }
     }},
    {"pass_env", "pass_env", "array of names copied from fastsse's environment",
     [](CommandSpec& spec, const toml::node& node, const KeyAt& where) {
         spec.pass_env = string_array(node, where.at);
     }},
    {"shared", "shared", "boolean; default false: one run for every viewer of the same argv",
     [](CommandSpec& spec, const toml::node& node, const KeyAt& where) {
         expect(node.is_boolean(), where, "true or false");
         spec.shared = node.as_boolean()->get();
     }},
    {"params", "params.P",
     "table: pattern (POSIX ERE, whole value) or values (list), default,\n"
     "max_length (256), allow_leading_dash (false)",
     [](CommandSpec& spec, const toml::node& node, const KeyAt& where) {
         expect(node.is_table(), where, "tables [commands.NAME.params.P]");
         for (auto&& [param, value] : *node.as_table()) {
             if (!value.is_table()) throw UsageError(fmt::format("{}.{}: expected a table", where.at, param.str()));
             spec.params[std::string(param.str())] = read_param(
                 *value.as_table(), where.path, fmt::format("commands.{}.params.{}", where.command, param.str()));
         }
     }},
};

CommandSpec read_command(const std::string& name, const toml::table& table, const std::string& path) {
    CommandSpec spec;
    spec.name = name;
    Params given;  // the scalar settings, for command_settings()
    std::map<std::string, int, std::less<>> lines;
    for (auto&& [key, node] : table) {
        auto at = fmt::format("{}:{}: commands.{}.{}", path, line_of(node), name, key.str());
        std::string_view key_name = key.str();  // clang 14 cannot capture a structured binding
        auto known = std::find_if(std::begin(command_keys), std::end(command_keys),
                                  [key_name](const CommandKey& k) { return k.key == key_name; });
        if (known != std::end(command_keys)) {
            known->read(spec, node, KeyAt{path, name, at});
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

}  // namespace

const SettingTable<CommandSpec>& command_settings() {
    using S = CommandSpec;
    static const SettingTable<CommandSpec> table{
        duration("time_limit", &S::time_limit, "0", 0, 86400 * 365, "the run is ended after this long (0: never)"),
        integer("output_limit", &S::output_limit, "16777216", 0, 1LL << 40, "bytes",
                "the run is ended once its stdout and stderr pass this (0: never)"),
        integer("max_running", &S::max_running, "4", 1, 100000, {}, "runs at once; beyond, 503 with Retry-After"),
        text("stdout_event", &S::stdout_event, "stdout", "event name of a stdout line"),
        text("stderr_event", &S::stderr_event, "stderr", "event name of a stderr line"),
        duration("retry", &S::retry, "60000", 0, 86'400'000,
                 "retry: hint after the exit event, so that the browser does not run the command again at once"),
        duration("grace", &S::grace, "2000", 0, 60'000, "from SIGTERM to SIGKILL when a run is ended"),
        integer("max_line", &S::max_line, "16384", 64, 16 << 20, "bytes",
                "longer lines are sent in pieces of this size"),
        duration("quiet", &S::quiet, "200", 10, 60'000, "a line without its newline is sent after this silence"),
        integer("replay", &S::replay, "100", 0, 1'000'000, "lines",
                "shared: lines kept for late joiners and reconnects"),
        duration("linger", &S::linger, "10", 0, 86400, "shared: the run goes on this long after its last viewer left"),
    };
    return table;
}

// glibc's matcher does not recurse per character, so a long value cannot exhaust the stack
// (std::regex can). It builds its automaton's states lazily and keeps them in the regex_t, so a
// pattern used again matches faster than a fresh one.
class ParamPattern::Compiled {
public:
    explicit Compiled(const std::string& anchored) {
        ok_ = ::regcomp(&re_, anchored.c_str(), REG_EXTENDED | REG_NOSUB) == 0;
    }
    ~Compiled() {
        if (ok_) ::regfree(&re_);
    }
    Compiled(const Compiled&) = delete;
    Compiled& operator=(const Compiled&) = delete;
    bool ok() const { return ok_; }
    // Anchored at both ends, and the value holds no NUL: a match is a match of the whole value.
    bool matches(const std::string& value) const { return ::regexec(&re_, value.c_str(), 0, nullptr, 0) == 0; }

private:
    regex_t re_{};
    bool ok_ = false;
};

ParamPattern::ParamPattern(std::string source) : source_(std::move(source)) {
    if (source_.empty()) return;
    // Valid on its own too: "a)|(.*" would otherwise close the anchoring group and escape it.
    regex_t alone;
    if (::regcomp(&alone, source_.c_str(), REG_EXTENDED | REG_NOSUB) != 0) return;
    ::regfree(&alone);
    auto compiled = std::make_shared<const Compiled>("^(" + source_ + ")$");
    if (compiled->ok()) compiled_ = std::move(compiled);
}

bool ParamPattern::matches(const std::string& value) const { return compiled_ && compiled_->matches(value); }

std::string check_command(const CommandSpec& spec) {
    if (spec.argv.empty()) return "argv: must name the program";
    if (!spec.argv[0].starts_with('/'))
        return fmt::format("argv: '{}' was not found in PATH (or give an absolute path)", spec.argv[0]);
    struct stat st{};
    if (::stat(spec.argv[0].c_str(), &st) != 0 || !S_ISREG(st.st_mode) || ::access(spec.argv[0].c_str(), X_OK) != 0)
        return fmt::format("argv: cannot execute '{}'", spec.argv[0]);
    for (const auto& [name, event] : {std::pair{"stdout_event", &spec.stdout_event}, {"stderr_event", &spec.stderr_event}})
        if (event->find_first_of(std::string_view("\r\n\0", 3)) != std::string::npos)
            return fmt::format("{}: must not contain CR, LF or NUL", name);
    std::map<std::string, int> used;
    for (const auto& element : spec.argv)
        if (auto name = placeholder(element)) {
            if (!spec.params.count(std::string(*name)))
                return fmt::format("argv: '{}' names no parameter declared in [commands.{}.params]", element, spec.name);
            ++used[std::string(*name)];
        }
    for (const auto& [name, p] : spec.params) {
        if (!used.count(name)) return fmt::format("params.{}: not used in argv (write \"{{{}}}\" there)", name, name);
        if (p.pattern.empty() == p.values.empty()) return fmt::format("params.{}: give either pattern or values", name);
        if (!p.pattern.empty() && !p.pattern.valid())
            return fmt::format("params.{}: pattern '{}' is not a valid POSIX extended regex", name,
                               p.pattern.source());
        if (p.default_value)
            if (auto why = refusal(p, *p.default_value); !why.empty())
                return fmt::format("params.{}: the default '{}' {}", name, *p.default_value, why);
    }
    return {};
}

std::vector<std::string> command_argv(const CommandSpec& spec, std::string_view query) {
    std::vector<std::string> argv;
    for (const auto& element : spec.argv) {
        auto name = placeholder(element);
        if (!name) {
            argv.push_back(element);
            continue;
        }
        const auto& param = spec.params.at(std::string(*name));
        auto value = query_param(query, *name);
        if (!value) value = param.default_value;
        if (!value) throw RequestError(400, fmt::format("Missing parameter '{}'.", *name));
        if (auto why = refusal(param, *value); !why.empty())
            throw RequestError(400, fmt::format("Parameter '{}' {}.", *name, why));
        argv.push_back(std::move(*value));
    }
    return argv;
}


void CommandSection::read(const ConfigNode* section) {
    read_.clear();
    if (!section) return;
    const auto& path = section->path;
    auto* commands = section->node.as_table();
    if (!commands)
        throw UsageError(fmt::format("{}:{}: commands: expected tables [commands.NAME]", path, line_of(section->node)));
    std::map<std::string, CommandSpec> read;
    for (auto&& [name, command] : *commands) {
        if (!command.is_table())
            throw UsageError(fmt::format("{}:{}: commands.{}: expected a table", path, line_of(command), name.str()));
        read[std::string(name.str())] = read_command(std::string(name.str()), *command.as_table(), path);
    }
    read_ = std::move(read);
}

std::string CommandSection::help() const {
    std::string out = "Commands, declared in the config file as [commands.NAME]:\n";
    for (const auto& key : command_keys) {
        std::string text(key.help);
        for (size_t nl = text.find('\n'); nl != std::string::npos; nl = text.find('\n', nl + 1))
            text.insert(nl + 1, std::string(21, ' '));  // under the description above
        fmt::format_to(std::back_inserter(out), "  {:<18} {}\n", key.label, text);
    }
    return out + describe(command_settings().specs(), false);
}

}  // namespace fastsse
