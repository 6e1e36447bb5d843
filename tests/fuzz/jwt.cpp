// The hub's tokens: verify_token() and find_token() on hostile input. The last byte picks the mode:
// 0. any bytes as a token, with a fixed key: almost all refused at the signature, which tests the
//    bounds and the base64url decoder;
// 1. a header and claims of the fuzzer's, signed here with that key (OpenSSL's HMAC and an encoder
//    of the harness's own), so that the JSON and the grants code see every input;
// 2. an Authorization header, a Cookie header and a query through find_token().
// Properties: nothing crashes or throws; refused exactly when there is a reason, and the reason is
// a fixed short string, never the token's bytes; an accepted token's header says HS256 and has no
// crit; its matchers are within the bound; a 1.0 token has an expiry; changing any character of
// the signature refuses the token; find_token's token comes from the place it names.
#include <fuzzer/FuzzedDataProvider.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "../jws.hpp"

#include <chrono>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>

#include "fastsse/hub/jwt.hpp"
#include "fuzz.hpp"

using namespace fastsse::hub;
using fastsse_fuzz::check;

namespace {

constexpr std::string_view key = "fuzz-key-fuzz-key-fuzz-key-fuzz!";
using fastsse_jws::alphabet;
using fastsse_jws::base64url;

std::string sign(std::string_view header, std::string_view claims) { return fastsse_jws::sign(header, claims, key); }

size_t matchers(const Grants& g) {
    size_t n = 0;
    for (const auto& p : g.payloads) n += p.topics.size();
    return n;
}

Verdict verify_checked(std::string_view token, const VerifyOptions& options) {
    auto now = std::chrono::system_clock::time_point(std::chrono::seconds(1'800'000'000));
    auto verdict = verify_token(token, options, now);
    check(verdict.grants.has_value() == verdict.refusal.empty(), "a verdict is grants or a reason, not both");
    check(verdict.refusal.size() <= 80, "a refusal is short");
    // A fixed string: the same storage whatever copy of the token was verified, and none of it the
    // token's (the text itself may happen to contain the token: "a compact JWS (hea" did).
    if (!verdict) {
        std::string copy(token);
        check(verify_token(copy, options, now).refusal.data() == verdict.refusal.data(), "a refusal is not a fixed string");
        check(std::less<>()(verdict.refusal.data(), token.data()) ||
                  !std::less<>()(verdict.refusal.data(), token.data() + token.size()),
              "a refusal points into the token");
    }
    if (!verdict) return verdict;

    const auto& g = *verdict.grants;
    check(g.publish.size() + g.subscribe.size() <= 2 * options.max_matchers, "more matchers than the bound");
    check(matchers(g) <= options.max_matchers, "more payload matchers than the bound");
    if (g.profile == TokenProfile::v1) check(g.expires.has_value(), "a 1.0 token without expiry");
    if (g.expires) check(now < *g.expires + options.leeway, "an expired token accepted");
    check(token.size() <= options.max_token_size, "an oversized token accepted");

    // The header again, read apart from the code under test.
    auto header_b64 = token.substr(0, token.find('.'));
    std::string header;
    uint32_t bits = 0;
    int held = 0;
    for (char c : header_b64) {
        bits = (bits << 6 | static_cast<uint32_t>(std::string_view(alphabet).find(c))) & 0xffffff;
        held += 6;
        if (held >= 8) {
            held -= 8;
            header += static_cast<char>((bits >> held) & 0xff);
        }
    }
    auto json = nlohmann::json::parse(header, nullptr, false);
    check(json.is_object() && json.contains("alg") && json["alg"] == "HS256", "accepted without alg HS256");
    check(!json.contains("crit"), "accepted with crit");

    // Any other signature refuses it.
    auto dot = token.rfind('.');
    for (size_t i = dot + 1; i < token.size(); i += 7) {
        std::string forged(token);
        forged[i] = forged[i] == 'A' ? 'B' : 'A';
        check(!verify_token(forged, options, now), "a changed signature accepted");
    }
    return verdict;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    FuzzedDataProvider in(data, size);
    auto mode = in.ConsumeIntegral<uint8_t>() % 3;
    auto flags = in.ConsumeIntegral<uint8_t>();

    VerifyOptions options;
    options.key = key;
    if (flags & 1) options.audience = "https://hub.example/.well-known/mercure";
    if (flags & 2) options.issuer = "https://example.com";
    options.accept_v0 = !(flags & 4);
    options.accept_v1 = !(flags & 8);
    if (flags & 16) options.leeway = std::chrono::seconds(30);
    if (flags & 32) options.max_matchers = 4;

    if (mode == 0) {
        verify_checked(in.ConsumeRemainingBytesAsString(), options);
    } else if (mode == 1) {
        auto header = in.ConsumeRandomLengthString();
        auto claims = in.ConsumeRemainingBytesAsString();
        verify_checked(sign(header, claims), options);
    } else {
        auto authorization = in.ConsumeRandomLengthString();
        auto cookie = in.ConsumeRandomLengthString();
        auto query = in.ConsumeRemainingBytesAsString();
        TokenPlaces places;
        places.query = !(flags & 1);
        if (flags & 2) places.cookie_names = {"__Secure-mercure_access_token"};
        auto found = find_token(flags & 4 ? std::nullopt : std::optional<std::string_view>(authorization),
                                flags & 8 ? std::nullopt : std::optional<std::string_view>(cookie), query, places);
        check(found.malformed.empty() || found.token.empty(), "a token and a malformed presentation");
        switch (found.source) {
        case TokenSource::none:
            check(found.token.empty() && found.malformed.empty(), "no source, yet a token or an error");
            break;
        case TokenSource::header:
            check(!(flags & 4) && !authorization.empty(), "a header token without the header");
            check(authorization.find(found.token) != std::string::npos, "a header token not from the header");
            break;
        case TokenSource::query:
            check(places.query && (flags & 4 || authorization.empty()), "the query used while not allowed or not first");
            check(!found.token.empty(), "an empty query token");
            break;
        case TokenSource::cookie:
            check(!(flags & 8) && (flags & 4 || authorization.empty()), "a cookie token without the cookie, or not first");
            check(cookie.find(found.token) != std::string::npos, "a cookie token not from the cookie");
            break;
        }
        if (!found.token.empty()) verify_checked(found.token, options);
    }
    return 0;
}
