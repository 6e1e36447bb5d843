#pragma once
// A command as the config file declares it ([commands.NAME]), and what is decided from the
// declaration alone: its checks, and the argv of one request. The command producer owns this
// section of the config file: CommandSection reads it, and gives its part of --help.
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fastsse/config/options.hpp"
#include "fastsse/config/section.hpp"

namespace fastsse {

// A parameter's POSIX extended regex, which the whole value must match. It is compiled when it is
// set, that is when the config file is read, never per request: compiling a pattern such as
// "[a-z0-9.-]{0,1000}" takes milliseconds, and every request (refused ones too) would pay them on
// the event loop. Copies share the compiled form; matching does not change it.
class ParamPattern {
public:
    ParamPattern() = default;
    ParamPattern(std::string source);  // implicit: a pattern is written as its text
    ParamPattern(const char* source) : ParamPattern(std::string(source)) {}
    const std::string& source() const { return source_; }
    bool empty() const { return source_.empty(); }
    void clear() { *this = ParamPattern(); }
    bool valid() const { return compiled_ != nullptr; }  // false when empty or not a valid regex
    // False for an invalid pattern. `value` must hold no NUL byte (values with one are refused first).
    bool matches(const std::string& value) const;
    friend bool operator==(const ParamPattern& a, const ParamPattern& b) { return a.source_ == b.source_; }

private:
    class Compiled;
    std::string source_;
    std::shared_ptr<const Compiled> compiled_;
};

// A value taken from the query string, which becomes exactly one argv element ("{name}").
struct CommandParam {
    ParamPattern pattern;             // the regex the whole value must match, or
    std::vector<std::string> values;  // the allowed values
    std::optional<std::string> default_value;
    size_t max_length = 256;
    bool allow_leading_dash = false;  // else a value starting with '-' is refused: no option injection
    bool operator==(const CommandParam&) const = default;
};

// One command, as declared in the config file's [commands.NAME] table.
struct CommandSpec {
    std::string name;
    std::vector<std::string> argv;  // argv[0] absolute; an element "{p}" is parameter p's value
    std::string cwd = "/";
    std::map<std::string, std::string> env;  // the whole environment, with pass_env added
    std::vector<std::string> pass_env;       // names copied from fastsse's own environment
    std::map<std::string, CommandParam> params;
    bool shared = false;
    // The settings below are command_settings(), which sets them all (defaults included).
    std::chrono::seconds time_limit{0};       // 0: none
    size_t output_limit = 0;                  // bytes of stdout + stderr; 0: none
    size_t max_running = 0;
    std::string stdout_event, stderr_event;
    std::chrono::milliseconds retry{0};       // retry: hint after the exit event
    std::chrono::milliseconds grace{0};       // SIGTERM to SIGKILL
    size_t max_line = 0;                      // longer lines are cut into pieces of this size
    std::chrono::milliseconds quiet{0};       // a partial line is sent after this much silence
    size_t replay = 0;                        // shared: lines kept for late joiners
    std::chrono::seconds linger{0};           // shared: run on this long after the last viewer left
    // A reload keeps a command whose declaration is unchanged as it is: its shared run goes on
    // taking new viewers.
    bool operator==(const CommandSpec&) const = default;
};

// The scalar settings of a command (time_limit, output_limit, ...), each bound to its field.
const SettingTable<CommandSpec>& command_settings();

// Checks a declaration; returns the problem, or an empty string. (Used when the config is read.)
std::string check_command(const CommandSpec& spec);

// The argv for one request: each "{name}" element replaced by that parameter's value from the
// query string (or its default). Throws RequestError 400 naming the parameter; nothing else.
std::vector<std::string> command_argv(const CommandSpec& spec, std::string_view query);

// The config file's [commands] section: each [commands.NAME] table read into a CommandSpec (the
// program looked up in PATH, pass_env copied from our environment, checked by check_command), and
// handed whole to `apply` (a file without the section: no command).
class CommandSection final : public ConfigSection {
public:
    using Apply = std::function<void(std::map<std::string, CommandSpec>)>;
    explicit CommandSection(Apply apply) : apply_(std::move(apply)) {}
    // Into a map of the caller's (tests).
    explicit CommandSection(std::map<std::string, CommandSpec>& commands)
        : apply_([&commands](std::map<std::string, CommandSpec> read) { commands = std::move(read); }) {}
    std::string_view name() const override { return "commands"; }
    void read(const ConfigNode* section) override;
    void apply() override { apply_(std::move(read_)); }
    std::string help() const override;

private:
    Apply apply_;
    std::map<std::string, CommandSpec> read_;
};

}  // namespace fastsse
