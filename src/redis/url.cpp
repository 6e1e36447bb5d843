#include "fastsse/redis/url.hpp"

#include <arpa/inet.h>

#include <cctype>

namespace fastsse::redis {

namespace {

[[noreturn]] void fail(const std::string& what) { throw RedisUrlError("redis URL: " + what); }

int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

// %XX to its byte; every other byte as it is. `what` names the part in the message.
std::string percent_decode(std::string_view s, const char* what) {
    std::string out;
    out.reserve(s.size());
    for (size_t i = 0; i < s.size(); ++i) {
        if (s[i] != '%') {
            out += s[i];
            continue;
        }
        int hi = i + 2 < s.size() ? hex_value(s[i + 1]) : -1;
        int lo = i + 2 < s.size() ? hex_value(s[i + 2]) : -1;
        if (hi < 0 || lo < 0) fail(std::string("a '%' without two hex digits after it in the ") + what);
        out += static_cast<char>(hi << 4 | lo);
        i += 2;
    }
    return out;
}

// Digits only, at most `max`; no sign, no spaces (std::stoul would take both).
std::optional<unsigned long> number(std::string_view s, unsigned long max) {
    if (s.empty() || s.size() > 10) return std::nullopt;
    unsigned long v = 0;
    for (char c : s) {
        if (c < '0' || c > '9') return std::nullopt;
        v = v * 10 + static_cast<unsigned long>(c - '0');
    }
    if (v > max) return std::nullopt;
    return v;
}

bool name_char(char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.' || c == '_';
}

bool starts_with_nocase(std::string_view s, std::string_view prefix) {
    if (s.size() < prefix.size()) return false;
    for (size_t i = 0; i < prefix.size(); ++i)
        if (std::tolower(static_cast<unsigned char>(s[i])) != prefix[i]) return false;
    return true;
}

void parse_host_port(std::string_view hp, RedisUrl& url) {
    std::string_view port;
    if (hp.starts_with('[')) {
        auto close = hp.find(']');
        if (close == std::string_view::npos) fail("an IPv6 address without its closing ']'");
        url.host = std::string(hp.substr(1, close - 1));
        in6_addr a;
        if (url.host.empty() || url.host.size() > 45 || ::inet_pton(AF_INET6, url.host.c_str(), &a) != 1)
            fail("not an IPv6 address between '[' and ']' (zone ids are not supported)");
        auto after = hp.substr(close + 1);
        if (!after.empty()) {
            if (after[0] != ':') fail("something after the IPv6 address's ']' that is not ':port'");
            port = after.substr(1);
            if (port.empty()) fail("a ':' without a port after it");
        }
    } else {
        auto colon = hp.find(':');
        if (colon != hp.rfind(':')) fail("more than one ':' after the host (an IPv6 address goes between '[' and ']')");
        auto host = hp.substr(0, colon);
        if (host.empty()) fail("no host (write redis://localhost or an address)");
        if (host.size() > 253) fail("a host name longer than 253 bytes");
        for (char c : host)
            if (!name_char(c))
                fail("a host with a character other than letters, digits, '-', '.' and '_' "
                     "(an IPv6 address goes between '[' and ']')");
        url.host = std::string(host);
        if (colon != std::string_view::npos) {
            port = hp.substr(colon + 1);
            if (port.empty()) fail("a ':' without a port after it");
        }
    }
    if (!port.empty()) {
        auto p = number(port, 65535);
        if (!p || *p == 0) fail("the port is not a number from 1 to 65535");
        url.port = static_cast<uint16_t>(*p);
    }
}

}  // namespace

RedisUrl parse_redis_url(std::string_view text) {
    RedisUrl url;
    if (text == "memory") {
        url.memory = true;
        return url;
    }
    if (text.size() > max_redis_url) fail("longer than " + std::to_string(max_redis_url) + " bytes");
    for (char c : text) {
        auto u = static_cast<unsigned char>(c);
        if (u <= 0x20 || u == 0x7f) fail("a space or a control character (percent-encode it: a space is %20)");
        if (u >= 0x80) fail("a byte outside ASCII (percent-encode it)");
    }
    if (starts_with_nocase(text, "rediss://"))
        fail("rediss:// (Redis over TLS) is not supported: hiredis 0.14 has no TLS");
    if (!starts_with_nocase(text, "redis://")) fail("it must start with redis:// (or be `memory`)");
    auto rest = text.substr(8);
    if (auto q = rest.find_first_of("?#"); q != std::string_view::npos)
        fail(std::string(rest[q] == '?' ? "a query ('?')" : "a fragment ('#')") +
             " is not supported (in a password, write '?' as %3F and '#' as %23)");

    auto slash = rest.find('/');
    auto authority = rest.substr(0, slash);
    auto path = slash == std::string_view::npos ? std::string_view() : rest.substr(slash + 1);

    if (path.find('@') != std::string_view::npos)
        fail("a '@' after the host (in a password, write '/' as %2F and '@' as %40)");
    if (auto at = authority.rfind('@'); at != std::string_view::npos) {
        auto userinfo = authority.substr(0, at);
        auto colon = userinfo.find(':');
        if (colon == std::string_view::npos)
            fail("user info without ':' (a password alone is redis://:password@host, a user's "
                 "redis://user:password@host)");
        url.user = percent_decode(userinfo.substr(0, colon), "user");
        url.password = percent_decode(userinfo.substr(colon + 1), "password");
        if (url.password->empty()) fail("an empty password (leave out the user info for none)");
        authority = authority.substr(at + 1);
    }
    parse_host_port(authority, url);

    if (!path.empty()) {
        auto db = number(path, 2147483647);
        if (!db) fail("the database (after the '/') is not a number from 0 to 2147483647");
        url.db = static_cast<unsigned>(*db);
    }
    return url;
}

std::string redacted(const RedisUrl& url) {
    if (url.memory) return "memory";
    std::string out = "redis://";
    if (url.password) {
        const char* hex = "0123456789ABCDEF";
        for (unsigned char c : url.user) {
            if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') out += static_cast<char>(c);
            else out += {'%', hex[c >> 4], hex[c & 15]};
        }
        out += ":***@";
    }
    if (url.host.find(':') != std::string::npos) out += "[" + url.host + "]";
    else out += url.host;
    out += ":" + std::to_string(url.port) + "/" + std::to_string(url.db);
    return out;
}

}  // namespace fastsse::redis
