#pragma once
// The command producer: a declared command's live output, line by line, as typed events; its
// process (group) stopped the moment nobody watches. A shared command runs once for every viewer,
// with the last lines kept for late joiners and for clients that reconnect with Last-Event-ID.
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fastsse/loop/event_loop.hpp"
#include "fastsse/loop/process.hpp"
#include "fastsse/producers/producer.hpp"

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
    friend bool operator==(const ParamPattern& p, std::string_view text) { return p.source_ == text; }

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
};

// The scalar settings of a command (time_limit, output_limit, ...), each bound to its field.
const SettingTable<CommandSpec>& command_settings();

// Checks a declaration; returns the problem, or an empty string. (Used when the config is read.)
std::string check_command(const CommandSpec& spec);

// The argv for one request: each "{name}" element replaced by that parameter's value from the
// query string (or its default). Throws RequestError 400 naming the parameter; nothing else.
std::vector<std::string> command_argv(const CommandSpec& spec, std::string_view query);

// Text made safe for an event stream: invalid UTF-8 replaced by U+FFFD.
std::string sanitize_utf8(std::string_view bytes);

// Cuts a byte stream into lines: at \n (a \r before it is dropped), or after max_line bytes
// (at a UTF-8 character boundary), or when flush() is called for a partial line. A flushed line
// loses a last \r, and the line break that later completes it (\n, \r\n or \r) gives no line of
// its own: "progress 10%", flushed, then "\n" is one line, not two.
class LineSplitter {
public:
    explicit LineSplitter(size_t max_line) : max_line_(max_line) {}
    void feed(std::string_view bytes, const std::function<void(std::string_view)>& line);
    void flush(const std::function<void(std::string_view)>& line);
    // A lone \r after a flushed line is that line's break, not a partial line.
    bool has_partial() const { return !partial_.empty() && !(flushed_ && partial_ == "\r"); }

private:
    size_t max_line_;
    std::string partial_;
    bool flushed_ = false;  // the last line went out by flush(): its line break may still come
};

class CommandProducer final : public Producer {
public:
    CommandProducer(EventLoop& loop, ChildProcesses& children);
    // The commands declared in the config file (read after the producers are registered).
    void set_commands(std::map<std::string, CommandSpec> commands) { commands_ = std::move(commands); }
    ~CommandProducer() override;
    std::span<const OptionSpec> options() const override;
    void check(const StreamStart& start) const override { resolve(start); }
    std::unique_ptr<Subscription> open(Sink& sink, const StreamStart& start) override;
    // Ends every run at once, lingering shared ones included (fastsse's shutdown).
    void stop_runs();

    class Run;     // one process and the streams watching it
    class Viewer;  // one stream watching a run

private:
    friend class Run;
    // The command a request names and its argv; throws RequestError (404, 400) or OptionError.
    std::pair<const CommandSpec&, std::vector<std::string>> resolve(const StreamStart& start) const;
    void release(Run* run);  // destroys a run no stream watches any more (later, on the loop)
    size_t running(const std::string& command) const;

    EventLoop& loop_;
    ChildProcesses& children_;
    std::map<std::string, CommandSpec> commands_;
    std::map<Run*, std::unique_ptr<Run>> runs_;
    // Shared runs still going, by command and argv.
    std::map<std::pair<std::string, std::vector<std::string>>, Run*> shared_;
    std::map<pid_t, std::string> unreaped_;  // processes of ended runs not yet reaped, and their command
};

}  // namespace fastsse
