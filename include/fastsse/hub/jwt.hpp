#pragma once
// The Mercure hub's authorization, as pure functions: where a request carries its token
// (find_token), whether the token is genuine and current (verify_token), and what it allows
// (Grants). Both protocol versions:
// - Mercure 0.x (draft 07, the hub v0.24): any JWS whose claim `mercure` holds `publish` and
//   `subscribe`, arrays of topic selectors, and `payload`, any JSON;
// - Mercure 1.0 (draft 08): an RFC 9068 access token (header `typ: at+jwt`) whose
//   `authorization_details` (RFC 9396) hold entries of type
//   `https://mercure.rocks/authorization-detail`, each with `actions` and `topics` matchers.
// Only HS256 with one configured key. Matching a topic against the matchers is not done here.
#include <chrono>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace fastsse::hub {

// Which of the protocols' token shapes a token has; decided by its `typ` header alone.
enum class TokenProfile {
    v0,  // any `typ` but at+jwt: the `mercure` claim
    v1,  // `typ` at+jwt (or application/at+jwt): `authorization_details`, and `exp` is required
};

// How a matcher's text is read. Only the types the protocols define: a 1.0 token naming another
// `match_type` is refused, as draft 08 requires ("the grant cannot be evaluated").
enum class MatcherType {
    selector,    // 0.x topic selector: the topic itself, an RFC 6570 URI template, or "*"
    exact,       // 1.0 `exact` (the default when `match_type` is absent)
    urlpattern,  // 1.0 `urlpattern` (WHATWG URL Pattern)
};

// One matcher as the token wrote it. "*" matches every topic whatever its type (both drafts).
struct TopicMatcher {
    MatcherType type = MatcherType::exact;
    std::string match;

    bool operator==(const TopicMatcher&) const = default;
};

// The user data attached to subscriptions (draft 08, "Payloads"): the payload of the first entry
// whose `topics` match the subscription's own matcher. A 0.x token's `mercure.payload` applies to
// every subscription, so it comes as one entry whose only matcher is "*".
struct SubscribePayload {
    std::vector<TopicMatcher> topics;
    std::string json;  // serialized compactly; a 1.0 payload is always an object
};

// What a verified token allows.
struct Grants {
    TokenProfile profile = TokenProfile::v0;
    std::vector<TopicMatcher> publish;    // may publish to a topic that one of these matches
    std::vector<TopicMatcher> subscribe;  // may receive private updates on a topic one matches
    std::vector<SubscribePayload> payloads;  // in the token's order; the first match wins
    std::optional<std::chrono::system_clock::time_point> expires;  // `exp`: a stream ends then
    std::string subject;  // `sub` when a string (draft 08 derives subscription ids from it)
};

struct VerifyOptions {
    std::string key;  // the HS256 secret, raw bytes; an empty key refuses every token
    // Checked only when set: `aud` (a string, or an array of strings) must hold `audience`, and
    // `iss` must equal `issuer`. Draft 08 requires both checks: a 1.0 hub sets both.
    std::optional<std::string> audience;
    std::optional<std::string> issuer;
    bool accept_v0 = true;  // a 1.0-only hub refuses tokens without `typ: at+jwt` (ID tokens...)
    bool accept_v1 = true;
    std::chrono::seconds leeway{0};  // clock skew allowed on `exp` and `nbf`
    // Bounds on what a client may make us decode, parse and keep.
    std::size_t max_token_size = 8 * 1024;  // bytes of the compact JWS
    std::size_t max_depth = 16;             // nesting of the JSON header and claims
    std::size_t max_matchers = 256;         // topic matchers in the token, all entries together
};

// The outcome: grants, or a short reason for the log. The reason is a fixed string: it never
// holds any of the token's bytes.
struct Verdict {
    std::optional<Grants> grants;
    std::string_view refusal;  // empty exactly when grants is set

    explicit operator bool() const { return grants.has_value(); }
};

// Verifies a compact JWS (base64url header.payload.signature, no padding) signed with HS256 and
// options.key, at time `now`, then reads its grants. The signature is checked before any JSON is
// parsed, so only signed bytes reach the JSON parser. Refused: a size over the bound; malformed
// base64url or JSON; an `alg` other than HS256 (none included); a `crit` header; a missing or
// wrong signature; `exp` reached or `nbf` not yet (with leeway); a 1.0 token without `exp`;
// `aud`/`iss` not as configured; a profile not accepted; a malformed or oversized grant.
// Throws nothing but std::bad_alloc.
Verdict verify_token(std::string_view token, const VerifyOptions& options,
                     std::chrono::system_clock::time_point now);

// Where a token was found (find_token).
enum class TokenSource { none, header, query, cookie };

struct FoundToken {
    TokenSource source = TokenSource::none;
    std::string token;        // empty with TokenSource::none or a malformed presentation
    std::string_view malformed;  // set when the presentation itself is bad: 400 invalid_request
};

// Where to look for a token.
struct TokenPlaces {
    // The cookies browsers send (EventSource cannot set headers), the first found wins: 0.x
    // recommends mercureAuthorization, draft 08 __Secure-mercure_access_token. Empty: no cookie is read.
    std::vector<std::string> cookie_names = {"mercureAuthorization", "__Secure-mercure_access_token"};
    // The `authorization` query parameter: 0.x only (draft 08 forbids tokens in the URL).
    bool query = true;
    std::size_t max_cookie_header = 16 * 1024;  // a longer Cookie header is malformed
};

// Picks the request's token, per the drafts' precedence: the `Authorization: Bearer` header
// ("MUST be used" when present, the others ignored), else the `authorization` query parameter
// (0.x: it wins over the cookie), else the cookie. An Authorization header that is not
// "Bearer <token>" is malformed, not skipped: the client meant to authenticate. A missing header
// is nullopt (an empty one counts as absent: FastCGI params cannot tell them apart).
FoundToken find_token(std::optional<std::string_view> authorization_header,
                      std::optional<std::string_view> cookie_header, std::string_view query,
                      const TokenPlaces& places = {});

}  // namespace fastsse::hub
