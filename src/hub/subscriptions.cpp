#include "fastsse/hub/subscriptions.hpp"

#include <fmt/format.h>

#include <iterator>
#include <nlohmann/json.hpp>
#include <vector>

namespace fastsse::hub {

namespace {

constexpr std::string_view jsonld_context = "https://mercure.rocks/";

// A JSON string. nlohmann escapes it; a selector is the client's bytes and need not be UTF-8, so
// a bad sequence becomes U+FFFD instead of an exception.
std::string quote(std::string_view s) {
    return nlohmann::json(std::string(s)).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

bool is_unreserved(unsigned char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
           c == '_' || c == '~';
}

constexpr std::string_view subscriptions_segment = "/subscriptions";

}  // namespace

std::string encode_variable(std::string_view raw) {
    static constexpr char hex[] = "0123456789ABCDEF";
    std::string out;
    out.reserve(raw.size() * 3);
    for (char ch : raw) {
        auto c = static_cast<unsigned char>(ch);
        if (is_unreserved(c)) {
            out += ch;
        } else {
            out += '%';
            out += hex[c >> 4];
            out += hex[c & 0x0f];
        }
    }
    return out;
}

std::optional<std::string> decode_segment(std::string_view segment) {
    std::string out;
    out.reserve(segment.size());
    for (size_t i = 0; i < segment.size(); ++i) {
        if (segment[i] != '%') {
            out += segment[i];
            continue;
        }
        if (i + 2 >= segment.size()) return std::nullopt;
        int high = hex_value(segment[i + 1]), low = hex_value(segment[i + 2]);
        if (high < 0 || low < 0) return std::nullopt;
        out += static_cast<char>(high << 4 | low);
        i += 2;
    }
    return out;
}

std::string subscription_topic(const SubscriptionView& s) {
    if (s.form == DocumentForm::v0)
        return fmt::format("{}/subscriptions/{}/{}", hub_path, encode_variable(s.match), encode_variable(s.subscriber));
    return fmt::format("{}/subscriptions/{}/{}/{}", hub_path, s.match_type, encode_variable(s.match),
                       encode_variable(s.subscriber));
}

std::string subscription_json(const SubscriptionView& s, bool context, std::optional<std::string_view> last_event_id) {
    // Written field by field, in the order of the drafts' examples; the payload is spliced in as the
    // token's own compact JSON (valid: jwt.cpp serialized it), never parsed again per event.
    std::string out = "{";
    auto out_it = std::back_inserter(out);
    if (context && s.form == DocumentForm::v0) fmt::format_to(out_it, "\"@context\":{},", quote(jsonld_context));
    fmt::format_to(out_it, "\"id\":{},", quote(subscription_topic(s)));
    if (s.form == DocumentForm::v0)
        fmt::format_to(out_it, "\"type\":\"Subscription\",\"topic\":{},", quote(s.match));
    else
        fmt::format_to(out_it, "\"type\":\"subscription\",\"match_type\":{},\"match\":{},", quote(s.match_type),
                       quote(s.match));
    fmt::format_to(out_it, "\"subscriber\":{},\"active\":{}", quote(s.subscriber), s.active ? "true" : "false");
    if (s.payload) fmt::format_to(out_it, ",\"payload\":{}", *s.payload);
    if (last_event_id && s.form == DocumentForm::v0) fmt::format_to(out_it, ",\"lastEventID\":{}", quote(*last_event_id));
    out += '}';
    return out;
}

std::string collection_json(DocumentForm form, std::string_view id, std::string_view last_event_id,
                            std::span<const std::string> documents, bool truncated) {
    size_t size = 160 + id.size() + last_event_id.size();
    for (const auto& d : documents) size += d.size() + 1;
    std::string out;
    out.reserve(size);
    auto out_it = std::back_inserter(out);
    if (form == DocumentForm::v0)
        fmt::format_to(out_it, "{{\"@context\":{},\"id\":{},\"type\":\"Subscriptions\",\"lastEventID\":{},",
                       quote(jsonld_context), quote(id), quote(last_event_id));
    else
        fmt::format_to(out_it, "{{\"id\":{},\"type\":\"subscriptions\",", quote(id));
    if (truncated) out += "\"truncated\":true,";
    out += "\"subscriptions\":[";
    for (size_t i = 0; i < documents.size(); ++i) {
        if (i) out += ',';
        out += documents[i];
    }
    out += "]}";
    return out;
}

bool is_api_path(std::string_view path) {
    if (!path.starts_with(hub_path)) return false;
    path.remove_prefix(hub_path.size());
    if (!path.starts_with(subscriptions_segment)) return false;
    path.remove_prefix(subscriptions_segment.size());
    return path.empty() || path.front() == '/';
}

std::optional<ApiQuery> parse_api_path(std::string_view path) {
    if (!is_api_path(path)) return std::nullopt;
    path.remove_prefix(hub_path.size() + subscriptions_segment.size());
    std::vector<std::string> segments;
    while (!path.empty()) {
        path.remove_prefix(1);  // the '/'
        auto slash = path.find('/');
        auto raw = path.substr(0, slash);
        path = slash == std::string_view::npos ? std::string_view() : path.substr(slash);
        if (raw.empty() || segments.size() == 3) return std::nullopt;
        auto decoded = decode_segment(raw);
        if (!decoded) return std::nullopt;
        segments.push_back(std::move(*decoded));
    }
    ApiQuery q;
    auto is_matcher_type = [](const std::string& s) { return s == "exact" || s == "urlpattern"; };
    switch (segments.size()) {
    case 0: q.kind = ApiQuery::Kind::all; break;
    case 1:
        q.kind = ApiQuery::Kind::topic;
        q.match = std::move(segments[0]);
        break;
    case 2:
        if (is_matcher_type(segments[0])) {
            q.kind = ApiQuery::Kind::match;
            q.match_type = std::move(segments[0]);
            q.match = std::move(segments[1]);
        } else {
            q.kind = ApiQuery::Kind::one_v0;
            q.match = std::move(segments[0]);
            q.subscriber = std::move(segments[1]);
        }
        break;
    default:
        if (!is_matcher_type(segments[0])) return std::nullopt;
        q.kind = ApiQuery::Kind::one_v1;
        q.match_type = std::move(segments[0]);
        q.match = std::move(segments[1]);
        q.subscriber = std::move(segments[2]);
        break;
    }
    return q;
}

}  // namespace fastsse::hub
