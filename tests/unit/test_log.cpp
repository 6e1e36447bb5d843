// The log sink: whatever a message holds, it is one line, without terminal escapes.
#include <doctest/doctest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <sstream>

#include "fastsse/log.hpp"

using fastsse::log_escape;
using namespace std::string_literals;

TEST_CASE("log_escape") {
    CHECK(log_escape("stream 1 opened: uri=/events?x=1") == "stream 1 opened: uri=/events?x=1");
    CHECK(log_escape("5\n2026-01-01 info forged\r\x1b[2J") == "5\\n2026-01-01 info forged\\r\\x1b[2J");
    CHECK(log_escape("a\tb\0c\x7f"s) == "a\\tb\\x00c\\x7f");
    CHECK(log_escape("caf\xc3\xa9 \xc2\x9b") == "caf\\xc3\\xa9 \\xc2\\x9b");  // C1 CSI too
    CHECK(log_escape(std::string(10, 'a'), 4) == "aaaa... (10 bytes in all)");
    CHECK(log_escape("\n\n\n", 4) == "\\n\\n... (3 bytes in all)");
}

TEST_CASE("the logger escapes every message, whatever the call site") {
    std::ostringstream out;
    auto logger = fastsse::make_logger("test", std::make_shared<spdlog::sinks::ostream_sink_mt>(out));
    logger->set_pattern("%l %v");
    logger->info("last-event-id={}", "5\n2026-11-30T00:00:00.000 info stream 9 closed\x1b[2J");
    logger->warn("plain");
    logger->info("{}", std::string(5000, 'x'));
    std::istringstream lines(out.str());
    std::string line;
    std::getline(lines, line);
    CHECK(line == "info last-event-id=5\\n2026-11-30T00:00:00.000 info stream 9 closed\\x1b[2J");
    std::getline(lines, line);
    CHECK(line == "warning plain");
    std::getline(lines, line);
    CHECK(line.ends_with("... (5000 bytes in all)"));
    CHECK_FALSE(std::getline(lines, line));
}
