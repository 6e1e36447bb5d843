#pragma once
// The process's settings: one table, read from the config file (TOML) and then the command line.
#include <chrono>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>

#include "fastsse/config/options.hpp"
#include "fastsse/producers/producer.hpp"
#include "fastsse/producers/command.hpp"
#include "fastsse/http/stream.hpp"

namespace fastsse {

struct Settings {
    std::string listen;           // "unix:PATH" or "HOST:PORT"; empty: the listening socket is fd 0
    unsigned socket_mode = 0660;  // for a unix socket
    StreamLimits limits;          // heartbeat, stream_buffer, write_timeout
    std::chrono::milliseconds retry{3000};
    size_t max_streams = 15000;
    std::string log_level = "info";
    std::map<std::string, CommandSpec> commands;  // the config file's [commands.NAME] tables
};

// A bad flag, config file or value: the message names the problem (and file:line); exit status 2.
class UsageError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

std::span<const OptionSpec> settings_table();
// The per-location stream options (FASTSSE_HEARTBEAT, FASTSSE_RETRY), defaults from the settings.
std::span<const OptionSpec> stream_options_table();

// Parses the command line (and the --config file it names). Returns nullopt after printing
// --help or --version. Throws UsageError.
std::optional<Settings> load_settings(int argc, char** argv, const Registry& registry);

}  // namespace fastsse
