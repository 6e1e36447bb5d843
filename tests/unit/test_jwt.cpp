// The hub's tokens: verify_token() on HS256 compact JWS (signature, algorithm, time, audience,
// issuer, malformed input, bounds), the grants of both Mercure drafts, and find_token().
// Tokens are made here with OpenSSL's HMAC and a base64url encoder of the test's own, apart from
// the code under test, and checked against jwt.io's published HS256 example.
#include <doctest/doctest.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "../jws.hpp"

#include <chrono>
#include <string>
#include <vector>

#include "fastsse/hub/jwt.hpp"

using namespace fastsse::hub;
using namespace std::chrono_literals;
using std::chrono::system_clock;

namespace {

constexpr const char* key = "test-key-of-32-bytes-for-hs256!!";
const system_clock::time_point now = system_clock::time_point(1'800'000'000s);

using fastsse_jws::base64url;
using fastsse_jws::hmac;

// A compact JWS of these exact JSON texts, MACed with `md` (SHA-256 unless a test wants another).
std::string sign(std::string_view header, std::string_view claims, std::string_view k = key,
                 const EVP_MD* md = EVP_sha256()) {
    return fastsse_jws::sign(header, claims, k, md);
}

std::string hs256(std::string_view claims) { return sign(R"({"alg":"HS256","typ":"JWT"})", claims); }
std::string at_jwt(std::string_view claims) { return sign(R"({"alg":"HS256","typ":"at+jwt"})", claims); }

VerifyOptions options() {
    VerifyOptions o;
    o.key = key;
    return o;
}

Verdict verify(std::string_view token, const VerifyOptions& o = options()) { return verify_token(token, o, now); }

// Refused, with a reason that does not repeat the token.
std::string refusal(std::string_view token, const VerifyOptions& o = options()) {
    auto verdict = verify(token, o);
    CHECK_FALSE(verdict);
    CHECK_FALSE(verdict.grants.has_value());
    CHECK_FALSE(verdict.refusal.empty());
    if (token.size() >= 4) CHECK(verdict.refusal.find(token) == std::string_view::npos);
    return std::string(verdict.refusal);
}

TopicMatcher selector(std::string s) { return {MatcherType::selector, std::move(s)}; }
TopicMatcher exact(std::string s) { return {MatcherType::exact, std::move(s)}; }
TopicMatcher urlpattern(std::string s) { return {MatcherType::urlpattern, std::move(s)}; }

std::string v1_detail(std::string_view actions, std::string_view topics, std::string_view extra = "") {
    return R"({"exp":1800000100,"authorization_details":[{"type":"https://mercure.rocks/authorization-detail","actions":)" +
           std::string(actions) + R"(,"topics":)" + std::string(topics) + std::string(extra) + "}]}";
}

}  // namespace

TEST_CASE("jwt.io's HS256 example verifies with its secret, and with no other") {
    const std::string example =
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ."
        "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c";
    auto o = options();
    o.key = "your-256-bit-secret";
    auto verdict = verify(example, o);
    REQUIRE(verdict);
    CHECK(verdict.refusal.empty());
    CHECK(verdict.grants->profile == TokenProfile::v0);
    CHECK(verdict.grants->subject == "1234567890");
    CHECK(verdict.grants->publish.empty());
    CHECK(verdict.grants->subscribe.empty());
    CHECK_FALSE(verdict.grants->expires);
    // The test's own signer makes the same token: it can be trusted for the tests below.
    CHECK(sign(R"({"alg":"HS256","typ":"JWT"})", R"({"sub":"1234567890","name":"John Doe","iat":1516239022})",
               "your-256-bit-secret") == example);

    CHECK(refusal(example) == "bad signature");  // our key, not theirs
    o.key = "your-256-bit-secreT";
    CHECK(refusal(example, o) == "bad signature");
    o.key.clear();
    CHECK(refusal(example, o) == "no key configured");
}

TEST_CASE("0.x: the mercure claim's publish, subscribe and payload") {
    auto verdict = verify(hs256(R"({"exp":1800000060,"mercure":{"publish":["*"],)"
                                R"("subscribe":["https://example.com/my-private-topic","{scheme}://{+host}/demo/books/{id}.jsonld"],)"
                                R"("payload":{"user":"https://example.com/users/dunglas","remoteAddr":"127.0.0.1"}}})"));
    REQUIRE(verdict);
    const auto& g = *verdict.grants;
    CHECK(g.profile == TokenProfile::v0);
    CHECK(g.publish == std::vector{selector("*")});
    CHECK(g.subscribe ==
          std::vector{selector("https://example.com/my-private-topic"), selector("{scheme}://{+host}/demo/books/{id}.jsonld")});
    REQUIRE(g.payloads.size() == 1);
    CHECK(g.payloads[0].topics == std::vector{selector("*")});  // 0.x: the payload of every subscription
    CHECK(g.payloads[0].json == R"({"user":"https://example.com/users/dunglas","remoteAddr":"127.0.0.1"})");
    REQUIRE(g.expires);
    CHECK(*g.expires == system_clock::time_point(1'800'000'060s));

    SUBCASE("any JSON payload, kept as its text") {
        auto v = verify(hs256(R"({"mercure":{"payload":[1, "two", {"three": null}]}})"));
        REQUIRE(v);
        REQUIRE(v.grants->payloads.size() == 1);
        CHECK(v.grants->payloads[0].json == R"([1,"two",{"three":null}])");
        CHECK(v.grants->publish.empty());
    }
    SUBCASE("absent or null lists grant nothing") {
        for (auto claims : {R"({})", R"({"mercure":null})", R"({"mercure":{}})", R"({"mercure":{"publish":null}})",
                            R"({"mercure":{"publish":[],"subscribe":[]}})"}) {
            CAPTURE(claims);
            auto v = verify(hs256(claims));
            REQUIRE(v);
            CHECK(v.grants->publish.empty());
            CHECK(v.grants->subscribe.empty());
            CHECK(v.grants->payloads.empty());
        }
    }
    SUBCASE("a malformed claim refuses the token") {
        for (auto claims : {R"({"mercure":[]})", R"({"mercure":"*"})", R"({"mercure":{"publish":"*"}})",
                            R"({"mercure":{"subscribe":["a",1]}})", R"({"mercure":{"publish":[["a"]]}})"}) {
            CAPTURE(claims);
            refusal(hs256(claims));
        }
    }
    SUBCASE("a 1.0 claim in a 0.x token grants nothing") {
        auto v = verify(hs256(v1_detail(R"(["publish"])", R"([{"match":"*"}])")));
        REQUIRE(v);
        CHECK(v.grants->publish.empty());
    }
}

TEST_CASE("1.0: access tokens' authorization_details") {
    auto claims = R"({"iss":"https://example.com","aud":"https://hub.example.com/.well-known/mercure",)"
                  R"("sub":"urn:uuid:bb3de268","client_id":"https://example.com","iat":1799999900,"exp":1800000300,)"
                  R"("jti":"urn:uuid:e70ff8d7","authorization_details":[)"
                  R"({"type":"https://mercure.rocks/authorization-detail","actions":["subscribe"],)"
                  R"("topics":[{"match":"https://example.com/books/:id","match_type":"urlpattern"},)"
                  R"({"match":"https://example.com/books/1","match_type":"exact"}],"payload":{"z":1,"a":2}},)"
                  R"({"type":"openid_credential","topics":"not Mercure's: ignored"},)"
                  R"({"type":"https://mercure.rocks/authorization-detail","actions":["publish","archive"],)"
                  R"("topics":[{"match":"*"}],"payload":{"ignored":"without subscribe"}},)"
                  R"({"type":"https://mercure.rocks/authorization-detail","actions":["subscribe","publish"],)"
                  R"("topics":[{"match":"https://example.com/both"}]}]})";
    auto verdict = verify(at_jwt(claims));
    REQUIRE(verdict);
    const auto& g = *verdict.grants;
    CHECK(g.profile == TokenProfile::v1);
    CHECK(g.subject == "urn:uuid:bb3de268");
    CHECK(g.subscribe == std::vector{urlpattern("https://example.com/books/:id"), exact("https://example.com/books/1"),
                                     exact("https://example.com/both")});
    CHECK(g.publish == std::vector{exact("*"), exact("https://example.com/both")});
    REQUIRE(g.payloads.size() == 1);  // the publish-only detail's payload means nothing
    CHECK(g.payloads[0].topics == std::vector{urlpattern("https://example.com/books/:id"), exact("https://example.com/books/1")});
    CHECK(g.payloads[0].json == R"({"z":1,"a":2})");  // as the issuer wrote it
    CHECK(*g.expires == system_clock::time_point(1'800'000'300s));

    SUBCASE("typ at+jwt in its spellings; anything else is a 0.x token") {
        auto body = v1_detail(R"(["publish"])", R"([{"match":"t"}])");
        for (auto typ : {"at+jwt", "AT+JWT", "application/at+jwt", "Application/At+Jwt"}) {
            CAPTURE(typ);
            auto v = verify(sign(std::string(R"({"alg":"HS256","typ":")") + typ + "\"}", body));
            REQUIRE(v);
            CHECK(v.grants->profile == TokenProfile::v1);
            CHECK(v.grants->publish == std::vector{exact("t")});
        }
        for (auto header : {R"({"alg":"HS256"})", R"({"alg":"HS256","typ":"JWT"})", R"({"alg":"HS256","typ":"application/jwt"})",
                            R"({"alg":"HS256","typ":"at+jwt2"})", R"({"alg":"HS256","typ":"application/"})"}) {
            CAPTURE(header);
            auto v = verify(sign(header, body));
            REQUIRE(v);
            CHECK(v.grants->profile == TokenProfile::v0);
            CHECK(v.grants->publish.empty());
        }
        refusal(sign(R"({"alg":"HS256","typ":["at+jwt"]})", body));
    }
    SUBCASE("exp is required") {
        CHECK(refusal(at_jwt(R"({"sub":"x"})")) == "access token without exp");
        CHECK(verify(hs256(R"({"sub":"x"})")));  // 0.x: optional
    }
    SUBCASE("no details, or none of Mercure's: a valid token that grants nothing") {
        for (auto c : {R"({"exp":1800000100})", R"({"exp":1800000100,"authorization_details":[]})",
                       R"({"exp":1800000100,"authorization_details":[{"type":"other","actions":["publish"]}]})",
                       R"({"exp":1800000100,"mercure":{"publish":["*"]}})"}) {
            CAPTURE(c);
            auto v = verify(at_jwt(c));
            REQUIRE(v);
            CHECK(v.grants->publish.empty());
            CHECK(v.grants->subscribe.empty());
        }
    }
    SUBCASE("actions the hub does not know grant nothing") {
        auto v = verify(at_jwt(v1_detail(R"(["archive"])", R"([{"match":"t"}])")));
        REQUIRE(v);
        CHECK(v.grants->publish.empty());
        CHECK(v.grants->subscribe.empty());
    }
    SUBCASE("one malformed Mercure detail refuses the whole token") {
        const std::string t = R"([{"match":"t"}])";
        const std::vector<std::string> bad = {
            R"({"exp":1800000100,"authorization_details":{"type":"https://mercure.rocks/authorization-detail"}})",
            R"({"exp":1800000100,"authorization_details":["https://mercure.rocks/authorization-detail"]})",
            R"({"exp":1800000100,"authorization_details":[{"actions":["publish"],"topics":[{"match":"t"}]}]})",
            v1_detail(R"([])", t),
            v1_detail(R"("publish")", t),
            v1_detail(R"(["publish",7])", t),
            v1_detail(R"(["publish"])", R"([])"),
            v1_detail(R"(["publish"])", R"("t")"),
            v1_detail(R"(["publish"])", R"(["t"])"),
            v1_detail(R"(["publish"])", R"([{"topic":"t"}])"),
            v1_detail(R"(["publish"])", R"([{"match":null}])"),
            v1_detail(R"(["publish"])", R"([{"match":"t","match_type":"regex"}])"),
            v1_detail(R"(["publish"])", R"([{"match":"t","match_type":"Exact"}])"),  // case-sensitive
            v1_detail(R"(["publish"])", R"([{"match":"*","match_type":"uri_template"}])"),
            v1_detail(R"(["subscribe"])", t, R"(,"payload":"a string")"),
            v1_detail(R"(["subscribe"])", t, R"(,"payload":[1])"),
            // good first, bad second: still refused ("partial acceptance is forbidden")
            R"({"exp":1800000100,"authorization_details":[{"type":"https://mercure.rocks/authorization-detail","actions":["publish"],"topics":[{"match":"t"}]},{"type":"https://mercure.rocks/authorization-detail","actions":["publish"],"topics":[]}]})",
        };
        for (const auto& c : bad) {
            CAPTURE(c);
            refusal(at_jwt(c));
        }
        // The 0.x "mercure" type name is not draft 08's: such an entry is another API's.
        auto v = verify(at_jwt(R"({"exp":1800000100,"authorization_details":[{"type":"mercure","actions":["publish"],"topics":["*"]}]})"));
        REQUIRE(v);
        CHECK(v.grants->publish.empty());
    }
}

TEST_CASE("which profiles a hub accepts") {
    auto v0 = hs256(R"({"mercure":{"publish":["*"]}})");
    auto v1 = at_jwt(v1_detail(R"(["publish"])", R"([{"match":"*"}])"));
    auto o = options();
    o.accept_v0 = false;
    CHECK(refusal(v0, o) == "not an access token (typ at+jwt)");
    CHECK(verify(v1, o));
    o = options();
    o.accept_v1 = false;
    CHECK(verify(v0, o));
    CHECK(refusal(v1, o) == "access tokens not accepted");
}

TEST_CASE("only HS256: alg none, other algorithms and crit are refused") {
    const std::string claims = R"({"mercure":{"publish":["*"]}})";
    auto unsigned_input = base64url(R"({"alg":"none"})") + "." + base64url(claims);
    refusal(unsigned_input + ".");          // the classic: no signature at all
    refusal(unsigned_input);                // nor even the last dot
    // alg none with a valid HS256 signature of our key: still not HS256.
    CHECK(refusal(sign(R"({"alg":"none"})", claims)) == "alg is not HS256");
    CHECK(refusal(sign(R"({"alg":"None"})", claims)) == "alg is not HS256");
    // Other HMACs with our key, named truly or falsely.
    refusal(sign(R"({"alg":"HS384"})", claims, key, EVP_sha384()));
    refusal(sign(R"({"alg":"HS512"})", claims, key, EVP_sha512()));
    CHECK(refusal(sign(R"({"alg":"HS384"})", claims)) == "alg is not HS256");
    // Algorithm confusion: an RS256/ES256 header over an HMAC made with the key the hub holds.
    CHECK(refusal(sign(R"({"alg":"RS256"})", claims)) == "alg is not HS256");
    CHECK(refusal(sign(R"({"alg":"ES256","typ":"at+jwt"})", claims)) == "alg is not HS256");
    CHECK(refusal(sign(R"({"alg":"hs256"})", claims)) == "alg is not HS256");
    CHECK(refusal(sign(R"({"typ":"JWT"})", claims)) == "alg is not HS256");
    CHECK(refusal(sign(R"({"alg":["HS256"]})", claims)) == "alg is not HS256");
    CHECK(refusal(sign(R"({"alg":"HS256","crit":["exp"],"exp":1})", claims)) == "crit header not supported");
    // Key material or hints in the header change nothing: the key is the configured one.
    CHECK(verify(sign(R"({"alg":"HS256","kid":"other","jku":"https://evil.example/keys"})", claims)));
    refusal(sign(R"({"alg":"HS256","jwk":{"kty":"oct","k":"AAAA"}})", claims, "AAAA"));
}

TEST_CASE("a signature that does not match") {
    auto good = hs256(R"({"mercure":{"subscribe":["a"]}})");
    auto dot = good.rfind('.');
    CHECK(refusal(hs256(R"({"mercure":{"subscribe":["a"]}})").substr(0, dot) + "." + base64url("short")) == "bad signature");
    // The payload changed under the same signature.
    auto forged = base64url(R"({"alg":"HS256","typ":"JWT"})") + "." + base64url(R"({"mercure":{"subscribe":["*"]}})") +
                  good.substr(dot);
    CHECK(refusal(forged) == "bad signature");
    // Another key.
    CHECK(refusal(sign(R"({"alg":"HS256"})", R"({})", "another key")) == "bad signature");
    // Each byte of the signature matters.
    for (size_t i = dot + 1; i < good.size(); i += 5) {
        auto t = good;
        t[i] = t[i] == 'A' ? 'B' : 'A';
        CAPTURE(i);
        refusal(t);
    }
    // The signature's last character has two unused bits: set, they re-spell the same bytes, and a
    // strict decoder refuses that spelling.
    static const std::string alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    auto respelled = good;
    respelled.back() = alphabet[alphabet.find(good.back()) ^ 1];
    CHECK(refusal(respelled) == "signature is not base64url");
    CHECK(refusal(good + "=") == "signature is not base64url");
    CHECK(verify(good));
}

TEST_CASE("exp and nbf, with leeway") {
    auto at = [](long long exp_seconds) { return hs256(R"({"exp":)" + std::to_string(exp_seconds) + "}"); };
    CHECK(refusal(at(1'800'000'000 - 1)) == "expired");
    CHECK(refusal(at(1'800'000'000)) == "expired");  // "on or after" (RFC 7519 §4.1.4)
    CHECK(verify(at(1'800'000'001)));
    CHECK(refusal(hs256(R"({"exp":1799999999.5})")) == "expired");
    CHECK(verify(hs256(R"({"exp":1800000000.5})")));
    CHECK(refusal(hs256(R"({"exp":-1})")) == "expired");
    CHECK(refusal(hs256(R"({"exp":"1900000000"})")) == "exp is not a NumericDate");
    CHECK(refusal(hs256(R"({"exp":true})")) == "exp is not a NumericDate");
    // Far futures do not overflow: they expire very late.
    for (auto far : {"1e300", "18446744073709551615", "99999999999999999999999"}) {
        CAPTURE(far);
        auto v = verify(hs256(std::string(R"({"exp":)") + far + "}"));
        REQUIRE(v);
        CHECK(*v.grants->expires > now + 24h * 365 * 100);
    }
    CHECK(refusal(hs256(R"({"exp":-1e300})")) == "expired");

    CHECK(refusal(hs256(R"({"nbf":1800000001})")) == "not yet valid");
    CHECK(verify(hs256(R"({"nbf":1800000000})")));
    CHECK(verify(hs256(R"({"nbf":1})")));
    CHECK(refusal(hs256(R"({"nbf":"soon"})")) == "nbf is not a NumericDate");

    auto o = options();
    o.leeway = 5s;
    CHECK(verify(at(1'800'000'000 - 4), o));
    CHECK(refusal(at(1'800'000'000 - 5), o) == "expired");
    CHECK(verify(hs256(R"({"nbf":1800000005})"), o));
    CHECK(refusal(hs256(R"({"nbf":1800000006})"), o) == "not yet valid");
}

TEST_CASE("aud and iss are checked only when configured") {
    auto token = hs256(R"({"aud":"https://other-hub.example","iss":"https://someone.example"})");
    CHECK(verify(token));  // nothing configured: nothing checked

    auto o = options();
    o.audience = "https://hub.example/.well-known/mercure";
    CHECK(refusal(token, o) == "audience mismatch");
    CHECK(refusal(hs256("{}"), o) == "audience mismatch");
    CHECK(verify(hs256(R"({"aud":"https://hub.example/.well-known/mercure"})"), o));
    CHECK(verify(hs256(R"({"aud":["https://other-hub.example","https://hub.example/.well-known/mercure"]})"), o));
    CHECK(refusal(hs256(R"({"aud":["https://other-hub.example"]})"), o) == "audience mismatch");
    CHECK(refusal(hs256(R"({"aud":[["https://hub.example/.well-known/mercure"]]})"), o) == "audience mismatch");
    CHECK(refusal(hs256(R"({"aud":"https://hub.example/.well-known/mercure/"})"), o) == "audience mismatch");

    o = options();
    o.issuer = "https://example.com";
    CHECK(refusal(token, o) == "issuer mismatch");
    CHECK(refusal(hs256("{}"), o) == "issuer mismatch");
    CHECK(refusal(hs256(R"({"iss":["https://example.com"]})"), o) == "issuer mismatch");
    CHECK(verify(hs256(R"({"iss":"https://example.com"})"), o));
}

TEST_CASE("aud and iss on both drafts' tokens, as a hub configured with both checks them") {
    auto o = options();
    o.audience = "https://localhost/.well-known/mercure";
    o.issuer = "https://localhost";
    // Draft 08's shape (its conformance suite's token): an access token granting through
    // authorization_details, `aud` a string.
    auto v = verify(at_jwt(R"({"aud":"https://localhost/.well-known/mercure","iss":"https://localhost",)"
                           R"("authorization_details":[{"type":"https://mercure.rocks/authorization-detail",)"
                           R"("actions":["publish","subscribe"],"topics":[{"match":"*"}]}],"exp":4102444800})"),
                    o);
    REQUIRE(v);
    CHECK(v.grants->profile == TokenProfile::v1);
    CHECK(v.grants->publish == std::vector<TopicMatcher>{exact("*")});
    // A 0.x token carries neither, usually: once a hub checks them it refuses such tokens.
    CHECK(refusal(hs256(R"({"mercure":{"publish":["*"]}})"), o) == "audience mismatch");
    CHECK(verify(hs256(R"({"mercure":{"publish":["*"]},"aud":["https://localhost/.well-known/mercure"],)"
                       R"("iss":"https://localhost"})"),
                 o));
    // An array holding other things besides: the one string that matches is enough.
    CHECK(verify(hs256(R"({"aud":[1,null,{"a":"b"},"https://localhost/.well-known/mercure"],"iss":"https://localhost"})"), o));
    // Compared exactly: no case folding, no trailing slash, no prefix.
    CHECK(refusal(hs256(R"({"aud":"https://LOCALHOST/.well-known/mercure","iss":"https://localhost"})"), o) ==
          "audience mismatch");
    CHECK(refusal(hs256(R"({"aud":"https://localhost/.well-known/mercure","iss":"https://localhost/"})"), o) ==
          "issuer mismatch");
    CHECK(refusal(hs256(R"({"aud":"https://localhost/.well-known/mercure","iss":null})"), o) == "issuer mismatch");
    CHECK(refusal(hs256(R"({"aud":null,"iss":"https://localhost"})"), o) == "audience mismatch");
}

TEST_CASE("malformed tokens") {
    auto good = hs256(R"({"mercure":{"publish":["*"]}})");
    auto first = good.find('.'), second = good.rfind('.');
    for (const std::string& t : std::vector<std::string>{"", ".", "..", "...", "abc", "a.b", "a.b.c.d", good.substr(0, second), good + ".",
                          "." + good, good.substr(0, first) + good.substr(second)}) {
        CAPTURE(t);
        refusal(t);
    }
    CHECK(refusal("a.b") == "not a compact JWS (header.payload.signature)");
    CHECK(refusal(good + "." + good.substr(second + 1)) == "not a compact JWS (header.payload.signature)");

    // Bad base64url in a signed part: the signature covers the text, so only the decoder stops it.
    auto signed_text = [](std::string header_b64, std::string claims_b64) {
        auto input = header_b64 + "." + claims_b64;
        return input + "." + base64url(hmac(EVP_sha256(), key, input));
    };
    auto header = base64url(R"({"alg":"HS256"})");
    CHECK(refusal(signed_text(header + "=", base64url("{}"))) == "header or payload is not base64url");
    CHECK(refusal(signed_text(header, "e30+")) == "header or payload is not base64url");  // '+' is base64, not base64url
    CHECK(refusal(signed_text(header, "e30=")) == "header or payload is not base64url");
    CHECK(refusal(signed_text(header, "e")) == "header or payload is not base64url");    // a lone character
    CHECK(refusal(signed_text(header, "e31")) == "header or payload is not base64url");  // unused bits set
    CHECK(verify(signed_text(header, "e30")));                                           // "{}"
    CHECK(refusal(signed_text("", base64url("{}"))) == "header is not a JSON object");
    CHECK(refusal(signed_text(header, "")) == "claims are not a JSON object");

    // Bad JSON, signed.
    CHECK(refusal(sign(R"({"alg":"HS256")", "{}")) == "header is not a JSON object");
    CHECK(refusal(sign(R"(["HS256"])", "{}")) == "header is not a JSON object");
    for (auto claims : {"{not json", "[]", "\"a\"", "42", "null", R"({"a":1}x)", R"({"a":1,})", "{\"a\":\"\xff\"}",
                        R"({"a":1} // comment)"}) {
        CAPTURE(claims);
        CHECK(refusal(hs256(claims)) == "claims are not a JSON object");
    }
}

TEST_CASE("bounds: size, nesting, matchers") {
    auto o = options();
    // A signed token just under and over the size bound.
    auto sized = [](size_t size) {
        auto t0 = hs256(R"({"pad":""})");
        return hs256(R"({"pad":")" + std::string((size - t0.size()) * 3 / 4 - 1, 'x') + "\"}");
    };
    auto fits = sized(8 * 1024);  // base64 grows by 4/3: this lands just below the bound
    REQUIRE(fits.size() <= 8 * 1024);
    REQUIRE(fits.size() > 8 * 1024 - 4);
    CHECK(verify(fits));
    CHECK(refusal(sized(8 * 1024 + 100)) == "token too long");
    CHECK(refusal(std::string(1 << 20, 'a')) == "token too long");

    auto nested = [](int depth) {
        return R"({"mercure":{"payload":)" + std::string(depth, '[') + std::string(depth, ']') + "}}";
    };
    // The claims object and mercure are two levels: 14 arrays inside make 16.
    CHECK(verify(hs256(nested(14))));
    CHECK(refusal(hs256(nested(15))) == "claims are not a JSON object");
    CHECK(refusal(hs256(nested(3000))) == "claims are not a JSON object");
    o.max_depth = 64;
    CHECK(verify(hs256(nested(62)), o));
    CHECK(refusal(sign(std::string(20, '[') + std::string(20, ']'), "{}")) == "header is not a JSON object");

    auto selectors = [](int n) {
        std::string list;
        for (int i = 0; i < n; ++i) list += (i ? ",\"t" : "\"t") + std::to_string(i) + "\"";
        return list;
    };
    o = options();
    o.max_matchers = 10;
    CHECK(verify(hs256(R"({"mercure":{"publish":[)" + selectors(5) + R"(],"subscribe":[)" + selectors(5) + "]}}"), o));
    CHECK(refusal(hs256(R"({"mercure":{"publish":[)" + selectors(5) + R"(],"subscribe":[)" + selectors(6) + "]}}"), o) ==
          "too many topic matchers");
    std::string topics;
    for (int i = 0; i < 11; ++i) topics += std::string(i ? "," : "") + R"({"match":"t"})";
    CHECK(refusal(at_jwt(v1_detail(R"(["publish","subscribe"])", "[" + topics + "]")), o) == "too many topic matchers");
    o.max_matchers = 11;  // a detail's matchers count once, however many actions they serve
    CHECK(verify(at_jwt(v1_detail(R"(["publish","subscribe"])", "[" + topics + "]", R"(,"payload":{})")), o));
    CHECK(verify(hs256(R"({"mercure":{"publish":[)" + selectors(256) + "]}}")));  // the default bound
    CHECK(refusal(hs256(R"({"mercure":{"publish":[)" + selectors(257) + "]}}")) == "too many topic matchers");
}

TEST_CASE("find_token: the Authorization header first") {
    CHECK(find_token("Bearer abc.def.ghi", "mercureAuthorization=cookie", "authorization=query").token == "abc.def.ghi");
    CHECK(find_token("Bearer abc.def.ghi", std::nullopt, "").source == TokenSource::header);
    CHECK(find_token("bearer   abc", std::nullopt, "").token == "abc");  // scheme case-insensitive, 1*SP
    CHECK(find_token("BEARER abc ", std::nullopt, "").token == "abc");
    for (auto bad : {"Basic dXNlcjpwYXNz", "Bearer", "Bearer ", "Bearerabc", "Bearer a b", "Bearer a,b", "Token abc"}) {
        CAPTURE(bad);
        auto found = find_token(bad, "mercureAuthorization=cookie", "authorization=query");
        CHECK(found.source == TokenSource::header);  // a bad header is not skipped for the others
        CHECK(found.token.empty());
        CHECK_FALSE(found.malformed.empty());
    }
    // An empty header is no header (FastCGI params cannot tell them apart).
    CHECK(find_token("", "mercureAuthorization=cookie", "").token == "cookie");
}

TEST_CASE("find_token: then the query (0.x), then the cookie") {
    auto found = find_token(std::nullopt, "mercureAuthorization=cookie", "topic=x&authorization=query");
    CHECK(found.source == TokenSource::query);
    CHECK(found.token == "query");
    CHECK(found.malformed.empty());
    CHECK(find_token(std::nullopt, std::nullopt, "authorization=a%2Eb%2Ec").token == "a.b.c");  // percent-decoded
    // Draft 08 forbids tokens in the URL: without the query, the cookie.
    TokenPlaces v1;
    v1.query = false;
    v1.cookie_names = {"__Secure-mercure_access_token"};
    found = find_token(std::nullopt, "mercureAuthorization=old; __Secure-mercure_access_token=new", "authorization=query", v1);
    CHECK(found.source == TokenSource::cookie);
    CHECK(found.token == "new");
    CHECK(find_token(std::nullopt, std::nullopt, "authorization=query", v1).source == TokenSource::none);

    // An empty parameter or cookie is none.
    CHECK(find_token(std::nullopt, "mercureAuthorization=cookie", "authorization=").token == "cookie");
    CHECK(find_token(std::nullopt, "mercureAuthorization=", "").source == TokenSource::none);
    auto none = find_token(std::nullopt, std::nullopt, "topic=x");
    CHECK(none.source == TokenSource::none);
    CHECK(none.token.empty());
    CHECK(none.malformed.empty());
}

TEST_CASE("find_token: the Cookie header") {
    auto cookie = [](std::string_view header) { return find_token(std::nullopt, header, "").token; };
    CHECK(cookie("mercureAuthorization=t") == "t");
    // Both drafts' names by default: 0.x's first, then draft 08's.
    CHECK(cookie("__Secure-mercure_access_token=v1") == "v1");
    CHECK(cookie("__Secure-mercure_access_token=v1; mercureAuthorization=v0") == "v0");
    CHECK(cookie("__Secure-mercure_access_token=v1; mercureAuthorization=") == "v1");
    CHECK(cookie("a=1; mercureAuthorization=t; b=2") == "t");
    CHECK(cookie("a=1;mercureAuthorization=t;b=2") == "t");
    CHECK(cookie("  mercureAuthorization = t  ") == "t");
    CHECK(cookie("mercureAuthorization=\"t\"") == "t");
    CHECK(cookie("mercureAuthorization=first; mercureAuthorization=second") == "first");
    CHECK(cookie("xmercureAuthorization=no; mercureAuthorizationx=no") == "");
    CHECK(cookie("MercureAuthorization=no") == "");  // names are case-sensitive
    CHECK(cookie("mercureAuthorization") == "");
    CHECK(cookie("a=1; b=mercureAuthorization=no") == "");
    CHECK(cookie(";;; ;") == "");
    CHECK(cookie("") == "");

    TokenPlaces no_cookie;
    no_cookie.cookie_names.clear();
    CHECK(find_token(std::nullopt, "mercureAuthorization=t", "", no_cookie).source == TokenSource::none);

    std::string huge = "a=" + std::string(16 * 1024, 'x') + "; mercureAuthorization=t";
    auto found = find_token(std::nullopt, huge, "");
    CHECK(found.source == TokenSource::cookie);
    CHECK(found.token.empty());
    CHECK(found.malformed == "Cookie header too long");
}

TEST_CASE("a token from find_token verifies") {
    auto token = at_jwt(v1_detail(R"(["subscribe"])", R"([{"match":"https://example.com/books/1"}])"));
    TokenPlaces places;
    places.query = false;
    auto found = find_token(std::nullopt, "session=1; mercureAuthorization=" + token, "", places);
    REQUIRE(found.source == TokenSource::cookie);
    auto verdict = verify(found.token);
    REQUIRE(verdict);
    CHECK(verdict.grants->subscribe == std::vector{exact("https://example.com/books/1")});
}
