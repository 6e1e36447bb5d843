#pragma once
// Where the Redis store lives, as an admin writes it: `redis://[[user]:password@]host[:port][/db]`
// (the IANA "redis" URI scheme, provisional; what redis-cli -u, redis-py and node-redis read), or
// `memory` for the in-process store. Parsed by one pure function, so that it can be fuzzed and a
// mistake is refused at start with one line naming it (the caller exits with status 2).
//
// What is refused rather than guessed: `rediss://` (hiredis 0.14 has no TLS), a query (`?db=`,
// `?timeout=`: the settings have their own options), userinfo without ':' (is `redis://secret@h` a
// user or a password? clients disagree), an empty password, a bad percent escape.
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace fastsse::redis {

struct RedisUrl {
    bool memory = false;                  // `memory`: the in-process store, no Redis; nothing else set
    std::string host;                     // a name, or an IP literal (IPv6 without its brackets)
    uint16_t port = 6379;
    std::string user;                     // percent-decoded; empty: `AUTH password` (the default user)
    std::optional<std::string> password;  // percent-decoded; absent: no AUTH at all
    unsigned db = 0;                      // SELECTed when not 0

    bool operator==(const RedisUrl&) const = default;
};

// The message names the problem and never holds the password (nor the URL, which may hold it).
class RedisUrlError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

constexpr size_t max_redis_url = 4096;

// Throws RedisUrlError.
RedisUrl parse_redis_url(std::string_view text);

// The URL again for a log line, the password as `***`: `redis://alice:***@10.0.0.5:6379/2`.
std::string redacted(const RedisUrl& url);

}  // namespace fastsse::redis
