#pragma once
// fastsse's log: one line on stderr per message, whatever the message holds. Messages carry what
// clients sent (URIs, Last-Event-ID, params), so the sink, not each call site, makes them safe: no
// client can start a line of its own or send a terminal escape sequence to whoever reads the log.
#include <memory>
#include <string>
#include <string_view>

#include <spdlog/logger.h>

namespace fastsse {

// `text` made safe for one log line: control bytes, DEL and bytes from 0x80 up become \xNN (\n, \r
// and \t as such); past max_bytes of that it is cut, saying how long it was.
std::string log_escape(std::string_view text, size_t max_bytes = 4096);

// A logger writing escaped messages to `sink` (a stderr sink in fastsse, a string one in tests).
std::shared_ptr<spdlog::logger> make_logger(std::string name, spdlog::sink_ptr sink);

// fastsse's default logger: stderr, with timestamps, at `level` (debug, info, warn, error).
void setup_logging(const std::string& level);

}  // namespace fastsse
