#include "fastsse/http/cors.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <iterator>

#include "fastsse/config/options.hpp"

namespace fastsse {

namespace {

// What a browser may send besides the CORS-safelisted headers: a publisher's or subscriber's token,
// EventSource's own Cache-Control and Last-Event-ID, a publication's form type (safelisted already,
// named for clients that send it with a charset).
constexpr std::string_view allowed_request_headers = "Authorization, Cache-Control, Last-Event-ID, Content-Type";
// What a script may read of an answer besides the safelisted headers: the resume point of a hub,
// and the subscription API's cursor (draft 08: its Link header "MUST" be exposed cross-origin).
constexpr std::string_view exposed_headers = "Last-Event-ID, Mercure-Last-Event-ID, Link";
// Browsers cap it lower (Chromium at 2 hours): they then ask again, no harm.
constexpr int preflight_max_age = 86400;

std::string lower(std::string_view s) {
    std::string out(s);
    for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return out;
}

// One entry of the setting, as a browser serialises an origin (RFC 6454 section 6.1): lowercase
// scheme and host, no default port. nullopt when it is not scheme://host[:port].
std::optional<std::string> normalise_origin(std::string_view entry) {
    auto sep = entry.find("://");
    if (sep == std::string_view::npos || sep == 0) return std::nullopt;
    auto scheme = lower(entry.substr(0, sep));
    if (!std::isalpha(static_cast<unsigned char>(scheme[0])) ||
        !std::all_of(scheme.begin(), scheme.end(), [](char c) {
            return std::isalnum(static_cast<unsigned char>(c)) || c == '+' || c == '-' || c == '.';
        }))
        return std::nullopt;
    auto authority = entry.substr(sep + 3);
    // The port follows the last ':' after an IPv6 literal's ']'.
    auto bracket = authority.rfind(']');
    auto colon = authority.rfind(':');
    std::string_view host = authority, port;
    if (colon != std::string_view::npos && (bracket == std::string_view::npos || colon > bracket)) {
        host = authority.substr(0, colon);
        port = authority.substr(colon + 1);
        if (port.empty() || port.size() > 5 || !std::all_of(port.begin(), port.end(), [](char c) {
                return c >= '0' && c <= '9';
            }))
            return std::nullopt;
    }
    if (host.empty() || !std::all_of(host.begin(), host.end(), [](char c) {
            return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == '[' || c == ']' ||
                   c == ':';
        }))
        return std::nullopt;
    if ((scheme == "https" && port == "443") || (scheme == "http" && port == "80")) port = {};
    return fmt::format("{}://{}{}{}", scheme, lower(host), port.empty() ? "" : ":", port);
}

}  // namespace

CorsPolicy CorsPolicy::parse(std::string_view setting) {
    CorsPolicy policy;
    while (!setting.empty()) {
        auto end = setting.find_first_of(" \t,");
        auto entry = setting.substr(0, end);
        setting = end == std::string_view::npos ? std::string_view() : setting.substr(end + 1);
        if (entry.empty()) continue;
        if (entry == "*") {
            policy.any_ = true;
            continue;
        }
        auto origin = entry.size() <= max_origin ? normalise_origin(entry) : std::nullopt;
        if (!origin)
            throw OptionError(fmt::format(
                "cors_origins: '{}' is not an origin: scheme://host or scheme://host:port, without a path "
                "(https://example.com), or *",
                entry.substr(0, 100)));
        if (std::find(policy.origins_.begin(), policy.origins_.end(), *origin) == policy.origins_.end())
            policy.origins_.push_back(std::move(*origin));
    }
    return policy;
}

std::string cgi_lines(const Headers& headers) {
    std::string out;
    for (const auto& [name, value] : headers) fmt::format_to(std::back_inserter(out), "{}: {}\r\n", name, value);
    return out;
}

CorsPolicy::Grant CorsPolicy::grant(const std::optional<std::string>& origin) const {
    if (!origin || origin->empty() || origin->size() > max_origin) return Grant::none;
    // Exact: a browser sends the origin serialised as normalise_origin() makes the list.
    if (std::find(origins_.begin(), origins_.end(), *origin) != origins_.end()) return Grant::credentials;
    return any_ ? Grant::anonymous : Grant::none;
}

void CorsPolicy::add_allow(Headers& out, Grant grant, const std::string& origin) const {
    switch (grant) {
    case Grant::none: return;
    case Grant::credentials:
        // The listed origin's own name, never the request's bytes: only a name from the setting is sent.
        out.emplace_back("Access-Control-Allow-Origin", *std::find(origins_.begin(), origins_.end(), origin));
        out.emplace_back("Access-Control-Allow-Credentials", "true");
        return;
    case Grant::anonymous: out.emplace_back("Access-Control-Allow-Origin", "*"); return;
    }
}

Headers CorsPolicy::response_headers(const std::optional<std::string>& origin) const {
    if (!enabled()) return {};
    // Whatever the origin, the answer depends on it: a cache must not give one origin's to another.
    Headers out{{"Vary", "Origin"}};
    auto g = grant(origin);
    if (g == Grant::none) return out;
    add_allow(out, g, *origin);
    out.emplace_back("Access-Control-Expose-Headers", exposed_headers);
    return out;
}

Headers CorsPolicy::preflight_headers(const std::optional<std::string>& origin) const {
    if (!enabled()) return {};
    Headers out{{"Vary", "Origin"}};
    auto g = grant(origin);
    if (g == Grant::none) return out;
    add_allow(out, g, *origin);
    out.emplace_back("Access-Control-Allow-Methods", "GET, POST, OPTIONS");
    out.emplace_back("Access-Control-Allow-Headers", allowed_request_headers);
    out.emplace_back("Access-Control-Max-Age", std::to_string(preflight_max_age));
    return out;
}

}  // namespace fastsse
