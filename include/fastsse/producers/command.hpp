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

#include "fastsse/channels/memory_store.hpp"
#include "fastsse/loop/event_loop.hpp"
#include "fastsse/loop/process.hpp"
#include "fastsse/producers/command_config.hpp"
#include "fastsse/producers/producer.hpp"

namespace fastsse {

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

// A location's command: its FASTSSE_COMMAND param.
struct CommandLocation {
    std::string command;  // a [commands.NAME] of the config file; empty: none named
};

// The command producer's per-location options, each bound to its field of CommandLocation.
const SettingTable<CommandLocation>& command_location_options();

class CommandProducer final : public Producer {
public:
    CommandProducer(EventLoop& loop, ChildProcesses& children);
    // The commands, from the config file (at start and at each reload) or from tests. Runs going on
    // keep the declaration they started under; a declaration that did not change is kept as it is.
    void set_commands(std::map<std::string, CommandSpec> commands);
    // The config file's [commands.NAME] tables, handed to set_commands().
    ConfigSection* config_section() override { return &section_; }
    ~CommandProducer() override;
    std::span<const OptionSpec> options() const override;
    void check(const StreamStart& start) const override { resolve(start); }
    std::unique_ptr<Subscription> open(Sink& sink, const StreamStart& start) override;
    // Ends every run at once, lingering shared ones included (fastsse's shutdown). Call it once the
    // streams are gone and the loop has returned: it destroys what the loop was to destroy later.
    void stop_runs();

    class Run;     // one process, publishing into a channel
    class Viewer;  // one stream watching a run: a subscriber of its channel

private:
    friend class Run;
    // The command a request names and its argv; throws RequestError (404, 400) or OptionError.
    std::pair<std::shared_ptr<const CommandSpec>, std::vector<std::string>> resolve(const StreamStart& start) const;
    void release(Run* run);  // ends a run no stream watches any more; destroyed later, on the loop
    size_t running(const std::string& command) const;

    EventLoop& loop_;
    ChildProcesses& children_;
    std::map<std::string, std::shared_ptr<const CommandSpec>> commands_;
    bool configured_ = false;  // set_commands() ran once: the next one is a reload, and logs what changed
    MemoryStore channels_;  // each run's channel; before runs_, which refer to it
    uint64_t runs_made_ = 0;
    CommandSection section_{[this](std::map<std::string, CommandSpec> read) { set_commands(std::move(read)); }};
    std::map<Run*, std::unique_ptr<Run>> runs_;
    // Shared runs still going, by command and argv.
    std::map<std::pair<std::string, std::vector<std::string>>, Run*> shared_;
    std::map<pid_t, std::string> unreaped_;  // processes of ended runs not yet reaped, and their command
};

}  // namespace fastsse
