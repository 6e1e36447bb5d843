// parse_redis_url() on any text, and redacted(). Properties:
// - it returns or throws RedisUrlError, nothing else;
// - a refusal is one line of printable ASCII, "redis URL: " and a fixed phrase: it never echoes the
//   input, so never a password (a '~', in no phrase, must not appear in it);
// - what it accepts has a host and a port from 1 to 65535, a password only when not empty, and
//   redacted() writes a URL that reads back as the same, but for the password;
// - any bytes, percent-encoded as the user and the password of a URL, read back as themselves.
#include <string>

#include "fastsse/redis/url.hpp"
#include "fuzz.hpp"

using fastsse::redis::parse_redis_url;
using fastsse::redis::RedisUrl;
using fastsse::redis::RedisUrlError;
using fastsse_fuzz::check;

namespace {
std::string encode(const std::string& s) {
    const char* hex = "0123456789abcdef";
    std::string out;
    for (unsigned char c : s) out += {'%', hex[c >> 4], hex[c & 15]};
    return out;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string text(reinterpret_cast<const char*>(data), size);
    try {
        RedisUrl url = parse_redis_url(text);
        if (!url.memory) {
            check(!url.host.empty(), "accepted without a host");
            check(url.port >= 1, "accepted port 0");
            check(!url.password || !url.password->empty(), "accepted an empty password");
            check(text.size() <= fastsse::redis::max_redis_url, "accepted past the bound");
            auto again = parse_redis_url(fastsse::redis::redacted(url));
            check(again.password.has_value() == url.password.has_value(), "redacted() lost or made a password");
            again.password = url.password;
            check(again == url, "redacted() does not read back as the same URL");
            check((fastsse::redis::redacted(url).find(":***@") != std::string::npos) == url.password.has_value(),
                  "redacted() without its *** for the password");
        }
    } catch (const RedisUrlError& e) {
        std::string why = e.what();
        check(why.starts_with("redis URL: "), "a refusal without its prefix");
        check(why.size() < 200, "a refusal longer than a phrase");
        for (char c : why) check(c >= 0x20 && c < 0x7f && c != '~', "a refusal that echoes the input");
    }

    // The bytes as a user (first half) and a password (second half).
    std::string user = text.substr(0, size / 2), password = text.substr(size / 2);
    std::string url = "redis://" + encode(user) + ":" + encode(password) + "@h/1";
    if (url.size() > fastsse::redis::max_redis_url) return 0;
    try {
        auto parsed = parse_redis_url(url);
        check(parsed.user == user && parsed.password == password, "percent-encoded user info reads back differently");
        check(!password.empty(), "accepted an empty password");
    } catch (const RedisUrlError&) {
        check(password.empty(), "refused a well-encoded user info");
    }
    return 0;
}
