#include "fastsse/http/request.hpp"

#include "fastsse/http/cors.hpp"

#include <algorithm>
#include <charconv>
#include <cstring>
#include <vector>

namespace fastsse {

namespace {

constexpr std::string_view fastsse_prefix = "FASTSSE_";

std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
}

bool iequals(std::string_view a, std::string_view b) {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
               return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
           });
}

// RFC 9110 qvalue: "0", "1", "0.xyz", "1.000". nullopt when malformed.
std::optional<double> parse_q(std::string_view s) {
    if (s.empty() || s.size() > 5 || (s[0] != '0' && s[0] != '1')) return std::nullopt;
    if (s.size() > 1 && s[1] != '.') return std::nullopt;
    double q = s[0] - '0', scale = 0.1;
    for (char c : s.substr(std::min<size_t>(2, s.size()))) {
        if (c < '0' || c > '9') return std::nullopt;
        q += (c - '0') * scale;
        scale /= 10;
    }
    return q <= 1.0 ? std::optional(q) : std::nullopt;
}

}  // namespace

std::string redact_uri(std::string_view uri) {
    auto q = uri.find('?');
    if (q == std::string_view::npos) return std::string(uri);
    std::string out(uri.substr(0, q + 1));
    auto rest = uri.substr(q + 1);
    bool first = true;
    while (true) {
        auto amp = rest.find('&');
        auto pair = rest.substr(0, amp);
        if (!first) out += '&';
        first = false;
        auto eq = pair.find('=');
        // The name as a form decoder reads it, so that "authoriz%61tion" is caught too.
        auto decoded = form_decode(pair.substr(0, eq), BadEscape::keep).value_or(std::string());
        if (eq != std::string_view::npos && iequals(decoded, "authorization")) {
            out += pair.substr(0, eq + 1);
            out += "REDACTED";
        } else {
            out += pair;
        }
        if (amp == std::string_view::npos) break;
        rest = rest.substr(amp + 1);
    }
    return out;
}

Request request_from_env(const char* const* envp) {
    Request r;
    for (; envp && *envp; ++envp) {
        std::string_view kv(*envp);
        auto eq = kv.find('=');
        if (eq == std::string_view::npos) continue;
        auto name = kv.substr(0, eq);
        auto value = kv.substr(eq + 1);
        if (name == "REQUEST_METHOD") r.method = value;
        else if (name == "REQUEST_URI") r.uri = redact_uri(value);
        else if (name == "QUERY_STRING") r.query = value;
        else if (name == "HTTP_ACCEPT") r.accept = std::string(value);
        else if (name == "HTTP_LAST_EVENT_ID") r.last_event_id = std::string(value);
        else if (name == "HTTP_AUTHORIZATION") r.authorization = std::string(value);
        else if (name == "HTTP_COOKIE") r.cookie = std::string(value);
        else if (name == "HTTP_ORIGIN") {
            if (value.size() <= max_origin) r.origin = std::string(value);
        }
        else if (name == "REQUEST_SCHEME") r.scheme = value;
        else if (name == "HTTP_HOST") r.host = value;
        else if (name == "CONTENT_TYPE") r.content_type = value;
        else if (name == "CONTENT_LENGTH") r.content_length = value;
        else if (name.starts_with(fastsse_prefix)) {
            std::string key(name.substr(fastsse_prefix.size()));
            for (auto& c : key) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
            r.fastsse.emplace(std::move(key), value);
        }
    }
    return r;
}

bool accepts_event_stream(std::optional<std::string_view> accept) {
    if (!accept || trim(*accept).empty()) return true;
    int best_specificity = -1;
    double best_q = 0;
    std::string_view rest = *accept;
    while (!rest.empty()) {
        auto comma = rest.find(',');
        auto range = rest.substr(0, comma);
        rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);

        auto semi = range.find(';');
        auto type = trim(range.substr(0, semi));
        int specificity = iequals(type, "text/event-stream") ? 2 : iequals(type, "text/*") ? 1 : iequals(type, "*/*") ? 0 : -1;
        if (specificity < 0) continue;

        double q = 1.0;
        bool valid = true;
        auto params = semi == std::string_view::npos ? std::string_view() : range.substr(semi + 1);
        while (!params.empty()) {
            auto next = params.find(';');
            auto param = trim(params.substr(0, next));
            params = next == std::string_view::npos ? std::string_view() : params.substr(next + 1);
            if (param.size() >= 2 && (param[0] == 'q' || param[0] == 'Q') && trim(param.substr(1)).starts_with('=')) {
                auto value = trim(trim(param.substr(1)).substr(1));
                auto parsed = parse_q(value);
                if (!parsed) valid = false;
                else q = *parsed;
            }
        }
        if (!valid) continue;  // a malformed q-value makes the range unusable, not the whole header
        if (specificity > best_specificity) {
            best_specificity = specificity;
            best_q = q;
        } else if (specificity == best_specificity) {
            best_q = std::max(best_q, q);
        }
    }
    return best_specificity >= 0 && best_q > 0;
}

std::optional<std::string> form_decode(std::string_view s, BadEscape bad) {
    auto hex_value = [](char c) {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        if (c >= 'A' && c <= 'F') return c - 'A' + 10;
        return -1;
    };
    std::string out;
    out.reserve(s.size());
    for (size_t i = 0; i < s.size(); ++i) {
        if (s[i] == '+') {
            out += ' ';
        } else if (s[i] != '%') {
            out += s[i];
        } else if (i + 2 < s.size() && hex_value(s[i + 1]) >= 0 && hex_value(s[i + 2]) >= 0) {
            out += static_cast<char>(hex_value(s[i + 1]) * 16 + hex_value(s[i + 2]));
            i += 2;
        } else if (bad == BadEscape::reject) {
            return std::nullopt;
        } else {
            out += '%';
        }
    }
    return out;
}

std::optional<std::string> query_param(std::string_view query, std::string_view name) {
    while (!query.empty()) {
        auto amp = query.find('&');
        auto pair = query.substr(0, amp);
        query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
        auto eq = pair.find('=');
        // Most names need no decoding: a query of many pairs then costs no allocation per pair.
        auto raw = pair.substr(0, eq);
        if (raw.find_first_of("%+") == std::string_view::npos ? raw != name : *form_decode(raw, BadEscape::keep) != name) continue;
        return eq == std::string_view::npos ? std::string() : form_decode(pair.substr(eq + 1), BadEscape::keep);
    }
    return std::nullopt;
}

std::string last_event_id(const Request& request) {
    if (request.last_event_id) return *request.last_event_id;
    return query_param(request.query, "lastEventId").value_or(std::string());
}

}  // namespace fastsse
