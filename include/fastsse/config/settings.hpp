#pragma once
// The process's settings: one table, read from the config file (TOML) and then the command line.
#include <chrono>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>

#include "fastsse/config/options.hpp"
#include "fastsse/http/stream.hpp"
#include "fastsse/producers/command.hpp"
#include "fastsse/producers/producer.hpp"

namespace fastsse {

// Every field is set from settings_table(), defaults included.
struct Settings {
    std::string listen;        // "unix:PATH" or "HOST:PORT"; empty: the listening socket is fd 0
    unsigned socket_mode = 0;  // for a unix socket
    StreamLimits limits;       // stream_settings(): heartbeat and retry (a location may override them), ...
    size_t max_streams = 0;
    std::string log_level;
    std::map<std::string, CommandSpec> commands;  // the config file's [commands.NAME] tables
};

// A bad flag, config file or value: the message names the problem (and file:line); exit status 2.
class UsageError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// The settings of every stream (heartbeat, retry, stream_buffer, write_timeout); a location may
// override heartbeat and retry with FASTSSE_HEARTBEAT and FASTSSE_RETRY (override_from()).
const SettingTable<StreamLimits>& stream_settings();
// The process settings: flags, and keys of the config file; stream_settings() among them.
const SettingTable<Settings>& settings_table();

// Parses the command line (and the --config file it names). Returns nullopt after printing
// --help or --version. Throws UsageError.
std::optional<Settings> load_settings(int argc, char** argv, const Registry& registry);

}  // namespace fastsse
