#include "fastsse/hub/jwt.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <climits>
#include <cstdint>
#include <nlohmann/json.hpp>

#include "fastsse/http/request.hpp"

namespace fastsse::hub {

namespace {

// ordered_json keeps members in the token's order, so that a payload is passed on as the issuer wrote it.
using json = nlohmann::ordered_json;
using std::chrono::system_clock;

constexpr std::string_view mercure_detail_type = "https://mercure.rocks/authorization-detail";
constexpr size_t hs256_size = 32;

int base64url_value(char c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '-') return 62;
    if (c == '_') return 63;
    return -1;
}

// RFC 7515 §2: base64url without padding. Strict: no '=', no other alphabet, no length that
// leaves a lone character, and the unused low bits of the last character zero, so that each
// byte string has one encoding only (a signature cannot be re-spelled).
std::optional<std::string> base64url_decode(std::string_view in) {
    if (in.size() % 4 == 1) return std::nullopt;
    std::string out;
    out.reserve(in.size() / 4 * 3 + 2);
    uint32_t bits = 0;
    int held = 0;
    for (char c : in) {
        int v = base64url_value(c);
        if (v < 0) return std::nullopt;
        bits = (bits << 6 | static_cast<uint32_t>(v)) & 0xffffff;
        held += 6;
        if (held >= 8) {
            held -= 8;
            out += static_cast<char>((bits >> held) & 0xff);
        }
    }
    if ((bits & ((1u << held) - 1)) != 0) return std::nullopt;
    return out;
}

bool iequals(std::string_view a, std::string_view b) {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
               return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
           });
}

// nlohmann's parser is iterative (its own stack of states), but dump() and the comparisons
// recurse: the nesting is bounded here, with the callback the library offers for it, and parse
// errors come back as a discarded value instead of an exception.
std::optional<json> parse_json(std::string_view text, size_t max_depth) {
    bool too_deep = false;
    json::parser_callback_t watch = [&](int depth, json::parse_event_t event, json&) {
        if ((event == json::parse_event_t::object_start || event == json::parse_event_t::array_start) &&
            static_cast<size_t>(depth) >= max_depth)
            too_deep = true;
        return !too_deep;  // past the bound, keep nothing more
    };
    json value = json::parse(text.begin(), text.end(), watch, /*allow_exceptions=*/false);
    if (too_deep || value.is_discarded()) return std::nullopt;
    return value;
}

// Compact JSON. Strings are valid UTF-8 (the parser checked), so nothing is replaced; replace
// rather than throw all the same.
std::string serialize(const json& value) { return value.dump(-1, ' ', false, json::error_handler_t::replace); }

// RFC 7519 NumericDate: seconds since the epoch, integer or not. Clamped to about year 2220 so that
// the conversion to system_clock's nanoseconds cannot overflow.
std::optional<system_clock::time_point> numeric_date(const json& value) {
    if (!value.is_number()) return std::nullopt;
    constexpr double limit = 8e9;
    double seconds = std::clamp(value.get<double>(), -limit, limit);
    return system_clock::time_point(
        std::chrono::duration_cast<system_clock::duration>(std::chrono::duration<double>(seconds)));
}

// RFC 9068 §2.1: "at+jwt", or "application/at+jwt" (RFC 7515 §4.1.9), case-insensitively.
bool is_access_token_type(std::string_view typ) {
    constexpr std::string_view application = "application/";
    if (typ.size() > application.size() && iequals(typ.substr(0, application.size()), application))
        typ.remove_prefix(application.size());
    return iequals(typ, "at+jwt");
}

// RFC 7519 §4.1.3: `aud` is one string or an array of them.
bool has_audience(const json& claims, std::string_view audience) {
    auto aud = claims.find("aud");
    if (aud == claims.end()) return false;
    if (aud->is_string()) return aud->get_ref<const std::string&>() == audience;
    if (!aud->is_array()) return false;
    return std::any_of(aud->begin(), aud->end(), [&](const json& one) {
        return one.is_string() && one.get_ref<const std::string&>() == audience;
    });
}

// An optional member: absent and null both count as absent (Go's encoding/json, which the
// reference hub uses, reads null as absent too).
const json* member(const json& object, const char* name) {
    auto it = object.find(name);
    return it == object.end() || it->is_null() ? nullptr : &*it;
}

// Counts the matchers a token holds against the bound, before they are copied.
class MatcherBudget {
public:
    explicit MatcherBudget(size_t limit) : left_(limit) {}
    bool take(size_t n) {
        if (n > left_) return false;
        left_ -= n;
        return true;
    }

private:
    size_t left_;
};

// Mercure 0.x (draft 07, "Publishers", "Subscribers", "Payload"): the claim `mercure` with
// `publish` and `subscribe`, arrays of topic selectors, and `payload`, any JSON.
std::string_view read_v0(const json& claims, MatcherBudget& budget, Grants& grants) {
    const json* mercure = member(claims, "mercure");
    if (!mercure) return {};  // a valid token that grants nothing
    if (!mercure->is_object()) return "mercure claim is not an object";
    for (auto [name, list] : {std::pair{"publish", &grants.publish}, std::pair{"subscribe", &grants.subscribe}}) {
        const json* selectors = member(*mercure, name);
        if (!selectors) continue;
        if (!selectors->is_array()) return "mercure claim: publish/subscribe is not an array";
        if (!budget.take(selectors->size())) return "too many topic matchers";
        for (const json& selector : *selectors) {
            if (!selector.is_string()) return "mercure claim: a topic selector is not a string";
            list->push_back({MatcherType::selector, selector.get<std::string>()});
        }
    }
    if (const json* payload = member(*mercure, "payload"))
        grants.payloads.push_back({{{MatcherType::selector, "*"}}, serialize(*payload)});
    return {};
}

// One entry of a 1.0 detail's `topics` (draft 08, "Topic Matcher List"): {match, match_type?}.
std::string_view read_matcher(const json& entry, std::vector<TopicMatcher>& out) {
    if (!entry.is_object()) return "authorization_details: a topic matcher is not an object";
    auto match = entry.find("match");
    if (match == entry.end() || !match->is_string()) return "authorization_details: a matcher has no match string";
    auto type = MatcherType::exact;
    if (auto given = entry.find("match_type"); given != entry.end()) {
        // Case-sensitive, and an unknown type refuses the token: skipping the matcher would
        // change what the token grants.
        if (*given == "exact") type = MatcherType::exact;
        else if (*given == "urlpattern") type = MatcherType::urlpattern;
        else return "authorization_details: unsupported match_type";
    }
    out.push_back({type, match->get<std::string>()});
    return {};
}

// Mercure 1.0 (draft 08, "Authorization Details"): the RFC 9396 claim `authorization_details`.
// Entries of other types are other APIs' and ignored; a malformed Mercure entry refuses the whole
// token ("partial acceptance is forbidden").
std::string_view read_v1(const json& claims, MatcherBudget& budget, Grants& grants) {
    const json* details = member(claims, "authorization_details");
    if (!details) return {};  // a valid token that grants nothing
    if (!details->is_array()) return "authorization_details is not an array";
    for (const json& detail : *details) {
        if (!detail.is_object()) return "authorization_details: an entry is not an object";
        auto type = detail.find("type");  // RFC 9396 §2: required in every entry
        if (type == detail.end() || !type->is_string()) return "authorization_details: an entry has no type";
        if (type->get_ref<const std::string&>() != mercure_detail_type) continue;

        auto actions = detail.find("actions");
        if (actions == detail.end() || !actions->is_array() || actions->empty())
            return "authorization_details: actions is not a non-empty array";
        bool publish = false, subscribe = false;
        for (const json& action : *actions) {
            if (!action.is_string()) return "authorization_details: an action is not a string";
            // Actions this hub does not know grant nothing, and do not refuse the token.
            publish = publish || action == "publish";
            subscribe = subscribe || action == "subscribe";
        }

        auto topics = detail.find("topics");
        if (topics == detail.end() || !topics->is_array() || topics->empty())
            return "authorization_details: topics is not a non-empty array";
        if (!budget.take(topics->size())) return "too many topic matchers";
        std::vector<TopicMatcher> matchers;
        matchers.reserve(topics->size());
        for (const json& topic : *topics)
            if (auto refusal = read_matcher(topic, matchers); !refusal.empty()) return refusal;

        const json* payload = member(detail, "payload");
        if (payload && !payload->is_object()) return "authorization_details: payload is not an object";

        if (publish) grants.publish.insert(grants.publish.end(), matchers.begin(), matchers.end());
        if (subscribe) grants.subscribe.insert(grants.subscribe.end(), matchers.begin(), matchers.end());
        // A payload is meaningful with the subscribe action only.
        if (subscribe && payload) grants.payloads.push_back({std::move(matchers), serialize(*payload)});
    }
    return {};
}

Verdict refuse(std::string_view why) { return {std::nullopt, why}; }

}  // namespace

Verdict verify_token(std::string_view token, const VerifyOptions& options, system_clock::time_point now) {
    if (options.key.empty()) return refuse("no key configured");
    if (token.size() > options.max_token_size) return refuse("token too long");
    auto first = token.find('.');
    auto second = first == std::string_view::npos ? first : token.find('.', first + 1);
    if (second == std::string_view::npos || token.find('.', second + 1) != std::string_view::npos)
        return refuse("not a compact JWS (header.payload.signature)");

    // The signature first, with the one algorithm we accept and our key, whatever the header says:
    // no algorithm confusion is possible, and only signed bytes reach the JSON parser.
    auto signature = base64url_decode(token.substr(second + 1));
    if (!signature) return refuse("signature is not base64url");
    if (signature->size() != hs256_size) return refuse("bad signature");
    std::array<unsigned char, EVP_MAX_MD_SIZE> expected{};
    unsigned expected_size = 0;
    auto signing_input = token.substr(0, second);
    if (options.key.size() > INT_MAX ||
        !HMAC(EVP_sha256(), options.key.data(), static_cast<int>(options.key.size()),
              reinterpret_cast<const unsigned char*>(signing_input.data()), signing_input.size(), expected.data(),
              &expected_size) ||
        expected_size != hs256_size)
        return refuse("HMAC failed");
    if (CRYPTO_memcmp(expected.data(), signature->data(), hs256_size) != 0) return refuse("bad signature");

    auto header_text = base64url_decode(token.substr(0, first));
    auto claims_text = base64url_decode(token.substr(first + 1, second - first - 1));
    if (!header_text || !claims_text) return refuse("header or payload is not base64url");
    auto header = parse_json(*header_text, options.max_depth);
    if (!header || !header->is_object()) return refuse("header is not a JSON object");

    // RFC 8725 §3.1: the algorithm is ours, not the token's; a token signed with our key that
    // names another one is refused all the same.
    auto alg = header->find("alg");
    if (alg == header->end() || *alg != "HS256") return refuse("alg is not HS256");
    // RFC 7515 §4.1.11: extensions listed in `crit` must be understood; we understand none.
    if (header->contains("crit")) return refuse("crit header not supported");
    auto profile = TokenProfile::v0;
    if (auto typ = header->find("typ"); typ != header->end()) {
        if (!typ->is_string()) return refuse("typ is not a string");
        if (is_access_token_type(typ->get_ref<const std::string&>())) profile = TokenProfile::v1;
    }
    if (profile == TokenProfile::v0 ? !options.accept_v0 : !options.accept_v1)
        return refuse(profile == TokenProfile::v0 ? "not an access token (typ at+jwt)" : "access tokens not accepted");

    auto claims = parse_json(*claims_text, options.max_depth);
    if (!claims || !claims->is_object()) return refuse("claims are not a JSON object");

    Grants grants;
    grants.profile = profile;
    // RFC 7519 §4.1.4: not accepted on or after `exp`.
    if (const json* exp = member(*claims, "exp")) {
        grants.expires = numeric_date(*exp);
        if (!grants.expires) return refuse("exp is not a NumericDate");
        if (now >= *grants.expires + options.leeway) return refuse("expired");
    } else if (profile == TokenProfile::v1) {
        return refuse("access token without exp");  // draft 08 and RFC 9068 §2.2 require it
    }
    // RFC 7519 §4.1.5: not accepted before `nbf`.
    if (const json* nbf = member(*claims, "nbf")) {
        auto not_before = numeric_date(*nbf);
        if (!not_before) return refuse("nbf is not a NumericDate");
        if (now + options.leeway < *not_before) return refuse("not yet valid");
    }
    if (options.audience && !has_audience(*claims, *options.audience)) return refuse("audience mismatch");
    if (options.issuer) {
        auto iss = claims->find("iss");
        if (iss == claims->end() || *iss != *options.issuer) return refuse("issuer mismatch");
    }
    if (auto sub = claims->find("sub"); sub != claims->end() && sub->is_string()) grants.subject = sub->get<std::string>();

    MatcherBudget budget(options.max_matchers);
    auto refusal = profile == TokenProfile::v0 ? read_v0(*claims, budget, grants) : read_v1(*claims, budget, grants);
    if (!refusal.empty()) return refuse(refusal);
    return {std::move(grants), {}};
}

namespace {

std::string_view trim_ows(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
}

// The first cookie named `name` in a Cookie header (RFC 6265 §4.2.1: "name=value; name=value").
// Names compare exactly; a value in double quotes loses them (§4.1.1 cookie-value).
std::optional<std::string_view> cookie_value(std::string_view header, std::string_view name) {
    while (!header.empty()) {
        auto semicolon = header.find(';');
        auto pair = trim_ows(header.substr(0, semicolon));
        header = semicolon == std::string_view::npos ? std::string_view() : header.substr(semicolon + 1);
        auto eq = pair.find('=');
        if (eq == std::string_view::npos || trim_ows(pair.substr(0, eq)) != name) continue;
        auto value = trim_ows(pair.substr(eq + 1));
        if (value.size() >= 2 && value.front() == '"' && value.back() == '"') value = value.substr(1, value.size() - 2);
        return value;
    }
    return std::nullopt;
}

}  // namespace

FoundToken find_token(std::optional<std::string_view> authorization_header,
                      std::optional<std::string_view> cookie_header, std::string_view query,
                      const TokenPlaces& places) {
    if (authorization_header && !authorization_header->empty()) {
        // RFC 6750 §2.1: "Bearer" 1*SP b64token, the scheme case-insensitive (RFC 9110 §11.1).
        auto value = trim_ows(*authorization_header);
        constexpr std::string_view scheme = "Bearer ";
        if (value.size() <= scheme.size() || !iequals(value.substr(0, scheme.size()), scheme))
            return {TokenSource::header, {}, "Authorization is not \"Bearer\" followed by one token"};
        auto token = trim_ows(value.substr(scheme.size()));
        if (token.empty() || token.find_first_of(" \t,") != std::string_view::npos)
            return {TokenSource::header, {}, "Authorization is not \"Bearer\" followed by one token"};
        return {TokenSource::header, std::string(token), {}};
    }
    // An empty parameter or cookie counts as none: what a client sends to forget its token.
    if (places.query) {
        if (auto token = query_param(query, "authorization"); token && !token->empty())
            return {TokenSource::query, std::move(*token), {}};
    }
    if (cookie_header && !places.cookie_names.empty()) {
        if (cookie_header->size() > places.max_cookie_header) return {TokenSource::cookie, {}, "Cookie header too long"};
        for (const auto& name : places.cookie_names)
            if (auto token = cookie_value(*cookie_header, name); token && !token->empty())
                return {TokenSource::cookie, std::string(*token), {}};
    }
    return {};
}

}  // namespace fastsse::hub
