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

// Parses the command line (and the --config file it names, whose sections go to the registered
// producers that own them). Returns nullopt after printing --help or --version. Throws UsageError.
std::optional<Settings> load_settings(int argc, char** argv, Registry& registry);

}  // namespace fastsse
