#pragma once
// The process's settings: one table, read from the config file (TOML) and then the command line.
// Sections of the config file that a producer owns ([commands]) go to that producer.
#include <chrono>
#include <optional>
#include <string>

#include "fastsse/config/options.hpp"
#include "fastsse/config/section.hpp"
#include "fastsse/http/stream.hpp"
#include "fastsse/producers/hub.hpp"
#include "fastsse/producers/producer.hpp"
#include "fastsse/redis/url.hpp"

namespace fastsse {

// Every field is set from settings_table(), defaults included.
struct Settings {
    std::string listen;        // "unix:PATH" or "HOST:PORT"; empty: the listening socket is fd 0
    unsigned socket_mode = 0;  // for a unix socket
    StreamLimits limits;       // stream_settings(): heartbeat and retry (a location may override them), ...
    size_t max_streams = 0;
    size_t max_body = 0;       // bytes of a request body kept for a route (a hub publication)
    HubSettings hub;           // hub_settings(): the Mercure hub's keys and bounds
    redis::RedisUrl engine;    // where the hub's channels live: `memory` (this process) or a Redis
    std::string log_level;
};

// The settings of every stream (heartbeat, retry, stream_buffer, write_timeout); a location may
// override heartbeat and retry with FASTSSE_HEARTBEAT and FASTSSE_RETRY (override_from()).
const SettingTable<StreamLimits>& stream_settings();
// The process settings: flags, and keys of the config file; stream_settings() among them.
const SettingTable<Settings>& settings_table();

// Where the settings come from, kept for the process's life: the command line, the config file it
// names, and the environment as it was at start (main then unsets the keys there). A reload reads
// the file again, under the same flags and environment.
class SettingsSource {
public:
    // Parses the command line. Returns nullopt after printing --help or --version. Throws UsageError.
    static std::optional<SettingsSource> from_command_line(int argc, char** argv, Registry& registry);

    // The settings: defaults, then the config file, the environment, the flags (each wins over the
    // one before). The file's sections ([commands]) are read by the producers that own them, and
    // put in force only by apply_sections(). Throws UsageError naming the file:line, the variable or
    // the flag; then nothing read is kept.
    Settings read();
    void apply_sections();
    // SIGHUP: reads the settings again. A bad file changes nothing (one error line names it,
    // file:line) and returns false. Otherwise `live` takes the new settings, but for those only a
    // restart changes (OptionSpec::restart: each changed one is named in the log, its value never
    // shown, as it may be a key or a URL with a password), the sections are applied, and it returns true.
    bool reload(Settings& live);

private:
    std::map<std::string_view, ConfigSection*> sections_;
    std::string config_path_;
    Params environment_;  // the settings' variables that were set at start
    Params flags_;        // the settings given as flags
    Params values_;       // each setting's value, as text, that the last read() gave (or its default)
};

// Reads the settings once and puts the sections in force: the start of a process (and tests).
std::optional<Settings> load_settings(int argc, char** argv, Registry& registry);

}  // namespace fastsse
