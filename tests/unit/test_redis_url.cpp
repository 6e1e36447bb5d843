// parse_redis_url() and redacted(): what an admin writes for the Redis store.
#include <doctest/doctest.h>

#include <string>

#include "fastsse/redis/url.hpp"

using fastsse::redis::parse_redis_url;
using fastsse::redis::redacted;
using fastsse::redis::RedisUrl;
using fastsse::redis::RedisUrlError;

namespace {
// The message parse_redis_url() refuses text with; fails the test when it accepts it.
std::string refusal(const std::string& text) {
    try {
        parse_redis_url(text);
    } catch (const RedisUrlError& e) {
        return e.what();
    }
    FAIL_CHECK("accepted: " << text);
    return {};
}
}  // namespace

TEST_CASE("memory, and the smallest URL") {
    CHECK(parse_redis_url("memory").memory);
    auto u = parse_redis_url("redis://localhost");
    CHECK_FALSE(u.memory);
    CHECK(u.host == "localhost");
    CHECK(u.port == 6379);
    CHECK(u.db == 0);
    CHECK(u.user.empty());
    CHECK_FALSE(u.password);
    CHECK(parse_redis_url("redis://localhost/") == u);
    CHECK(parse_redis_url("REDIS://localhost") == u);  // a scheme is case-insensitive (RFC 3986)
}

TEST_CASE("every part") {
    auto u = parse_redis_url("redis://alice:s3cret@10.0.0.5:6380/7");
    CHECK(u.host == "10.0.0.5");
    CHECK(u.port == 6380);
    CHECK(u.user == "alice");
    CHECK(u.password == "s3cret");
    CHECK(u.db == 7);

    auto p = parse_redis_url("redis://:only@redis.internal");  // the default user: AUTH password
    CHECK(p.user.empty());
    CHECK(p.password == "only");
    CHECK(p.host == "redis.internal");
}

TEST_CASE("IPv6 between brackets") {
    auto u = parse_redis_url("redis://[::1]:7000/2");
    CHECK(u.host == "::1");
    CHECK(u.port == 7000);
    CHECK(u.db == 2);
    CHECK(parse_redis_url("redis://[2001:db8::5]").port == 6379);
    CHECK(refusal("redis://[::1").find("closing ']'") != std::string::npos);
    CHECK(refusal("redis://[nothex]").find("IPv6") != std::string::npos);
    CHECK(refusal("redis://[fe80::1%25eth0]").find("IPv6") != std::string::npos);
    CHECK(refusal("redis://[::1]x").find("':port'") != std::string::npos);
    CHECK(refusal("redis://::1").find("'['") != std::string::npos);
}

TEST_CASE("percent-decoding in the user and the password, and only there") {
    auto u = parse_redis_url("redis://al%69ce:p%40ss%2Fw%3Ard%25%3F%23%20%00x@h");
    CHECK(u.user == "alice");
    CHECK(*u.password == std::string("p@ss/w:rd%?# \0x", 15));
    CHECK(parse_redis_url("redis://u:a@b@h").password == "a@b");  // the last '@' ends the user info
    CHECK(parse_redis_url("redis://u:a:b@h").password == "a:b");   // the first ':' ends the user
    CHECK(refusal("redis://u:%4@h").find("'%' without two hex digits after it in the password") != std::string::npos);
    CHECK(refusal("redis://u:ab%@h").find("password") != std::string::npos);
    CHECK(refusal("redis://%zz:pw@h").find("in the user") != std::string::npos);
    CHECK(refusal("redis://h%41st").find("host") != std::string::npos);
}

TEST_CASE("the port") {
    CHECK(parse_redis_url("redis://h:1").port == 1);
    CHECK(parse_redis_url("redis://h:65535").port == 65535);
    for (auto bad : {"redis://h:0", "redis://h:65536", "redis://h:-1", "redis://h:+1", "redis://h:6379x",
                     "redis://h:99999999999999999999"})
        CHECK_MESSAGE(refusal(bad).find("port is not a number from 1 to 65535") != std::string::npos, bad);
    CHECK(refusal("redis://h:").find("without a port") != std::string::npos);
}

TEST_CASE("the database") {
    CHECK(parse_redis_url("redis://h/15").db == 15);
    CHECK(parse_redis_url("redis://h/2147483647").db == 2147483647u);
    for (auto bad : {"redis://h/2147483648", "redis://h/x", "redis://h/1/2", "redis://h/-1", "redis://h//"})
        CHECK_MESSAGE(refusal(bad).find("database") != std::string::npos, bad);
}

TEST_CASE("each refusal names its problem, never the password") {
    CHECK(refusal("").find("redis://") != std::string::npos);
    CHECK(refusal("http://h").find("must start with redis://") != std::string::npos);
    CHECK(refusal("rediss://h").find("TLS") != std::string::npos);
    CHECK(refusal("redis://").find("no host") != std::string::npos);
    CHECK(refusal("redis://:pw@").find("no host") != std::string::npos);
    CHECK(refusal("redis://h?db=1").find("query") != std::string::npos);
    CHECK(refusal("redis://u:pw#x@h").find("fragment") != std::string::npos);
    CHECK(refusal("redis://secret@h").find("without ':'") != std::string::npos);
    CHECK(refusal("redis://u:@h").find("empty password") != std::string::npos);
    CHECK(refusal("redis://u:a/b@h").find("%2F") != std::string::npos);
    CHECK(refusal("redis://h st").find("space") != std::string::npos);
    CHECK(refusal("redis://h\n").find("control") != std::string::npos);
    CHECK(refusal("redis://u:p\xc3\xa9@h").find("ASCII") != std::string::npos);
    CHECK(refusal("redis://" + std::string(5000, 'a')).find("longer than 4096") != std::string::npos);
    CHECK(refusal("redis://" + std::string(254, 'a')).find("253") != std::string::npos);

    for (auto bad : {"redis://u:hunter2@h:0", "redis://u:hunter2@h/x", "redis://u:hunter2@h?x", "redis://u:hunter2@",
                     "redis://u:hunter2%@h", "redis://u:hunter2 @h", "redis://u:hunter2@[::1"})
        CHECK_MESSAGE(refusal(bad).find("hunter2") == std::string::npos, bad);
    for (auto bad : {"redis://u:hunter2@h:0", "redis://h?"})
        CHECK(refusal(bad).starts_with("redis URL: "));
}

TEST_CASE("redacted: the URL for a log line, without the password") {
    CHECK(redacted(parse_redis_url("memory")) == "memory");
    CHECK(redacted(parse_redis_url("redis://h")) == "redis://h:6379/0");
    CHECK(redacted(parse_redis_url("redis://:hunter2@h/3")) == "redis://:***@h:6379/3");
    CHECK(redacted(parse_redis_url("redis://al%20ice:hunter2@[::1]:7/1")) == "redis://al%20ice:***@[::1]:7/1");
    // What it writes reads back as the same URL, but for the password.
    auto u = parse_redis_url("redis://a%3Ab:pw@[2001:db8::1]:6000/9");
    auto back = parse_redis_url(redacted(u));
    back.password = u.password;
    CHECK(back == u);
}
