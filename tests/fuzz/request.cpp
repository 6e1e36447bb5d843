// What fastsse reads from a request's params: request_from_env() on any "NAME=value" strings,
// query_param() and last_event_id(). Properties:
// - request_from_env keeps the last of each CGI param and the first of each FASTSSE_* param (its
//   name lower-cased), and ignores strings without '=';
// - REQUEST_URI is kept as redact_uri() gives it: the value of an `authorization` query parameter
//   replaced, whatever precedes it; redact_uri changes nothing more on a second pass;
// - last_event_id is the Last-Event-ID header when there is one, else the lastEventId parameter;
// - query_param gives back any name's value, however it was percent-encoded ('+', %xx, %XX, raw),
//   after pairs with other names; a name without '=' has the empty value.
#include <fuzzer/FuzzedDataProvider.h>

#include <cctype>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "fastsse/http/request.hpp"
#include "fuzz.hpp"

namespace {

using fastsse_fuzz::check;

constexpr const char* known_names[] = {"REQUEST_METHOD", "REQUEST_URI", "QUERY_STRING", "HTTP_ACCEPT",
                                       "HTTP_LAST_EVENT_ID", "HTTP_AUTHORIZATION", "HTTP_COOKIE",
                                       "REQUEST_SCHEME", "HTTP_HOST", "FASTSSE_PRODUCER", "FASTSSE_Interval", "FASTSSE_"};

std::string fmt_hex(unsigned char c, const char* digits) { return {'%', digits[c >> 4], digits[c & 15]}; }

// One encoding of s that a browser or a hand-written URL might use, chosen by the fuzzer per byte.
std::string percent_encode(std::string_view s, FuzzedDataProvider& in) {
    std::string out;
    for (unsigned char c : s) {
        bool plain = std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~' || c == '/' || c == ':';
        switch (in.ConsumeIntegralInRange(0, 2)) {
        case 0:
            if (plain) {
                out += static_cast<char>(c);
                break;
            }
            if (c == ' ') {
                out += '+';
                break;
            }
            [[fallthrough]];
        case 1: out += fmt_hex(c, "0123456789ABCDEF"); break;
        default: out += fmt_hex(c, "0123456789abcdef"); break;
        }
    }
    return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* bytes, size_t size) {
    FuzzedDataProvider in(bytes, size);

    std::vector<std::string> strings;
    for (int n = in.ConsumeIntegralInRange(0, 8); n > 0; --n) {
        if (in.ConsumeBool())
            strings.push_back(std::string(known_names[in.ConsumeIntegralInRange<size_t>(0, std::size(known_names) - 1)]) +
                              "=" + in.ConsumeRandomLengthString(64));
        else
            strings.push_back(in.ConsumeRandomLengthString(64));
    }
    std::vector<const char*> envp;
    for (const auto& s : strings) envp.push_back(s.c_str());
    envp.push_back(nullptr);
    auto r = fastsse::request_from_env(envp.data());

    std::map<std::string, std::string> last;
    std::map<std::string, std::string, std::less<>> first_fastsse;
    for (const auto& s : strings) {
        std::string_view kv(s.c_str());  // as libfcgi hands them: C strings
        auto eq = kv.find('=');
        if (eq == kv.npos) continue;
        std::string name(kv.substr(0, eq)), value(kv.substr(eq + 1));
        last[name] = value;
        if (name.starts_with("FASTSSE_")) {
            std::string key = name.substr(8);
            for (auto& c : key) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
            first_fastsse.emplace(key, value);
        }
    }
    auto param = [&](const char* name) { return last.count(name) ? std::optional(last[name]) : std::nullopt; };
    check(r.method == param("REQUEST_METHOD").value_or(""), "REQUEST_METHOD");
    check(r.uri == fastsse::redact_uri(param("REQUEST_URI").value_or("")), "REQUEST_URI");
    check(fastsse::redact_uri(r.uri) == r.uri, "redact_uri: a second pass changes nothing");
    check(r.authorization == param("HTTP_AUTHORIZATION"), "HTTP_AUTHORIZATION");
    check(r.cookie == param("HTTP_COOKIE"), "HTTP_COOKIE");
    check(r.scheme == param("REQUEST_SCHEME").value_or(""), "REQUEST_SCHEME");
    check(r.host == param("HTTP_HOST").value_or(""), "HTTP_HOST");
    check(r.query == param("QUERY_STRING").value_or(""), "QUERY_STRING");
    check(r.accept == param("HTTP_ACCEPT"), "HTTP_ACCEPT");
    check(r.last_event_id == param("HTTP_LAST_EVENT_ID"), "HTTP_LAST_EVENT_ID");
    check(r.fastsse == first_fastsse, "the FASTSSE_* params");

    auto id = fastsse::last_event_id(r);
    check(id == (r.last_event_id ? *r.last_event_id : fastsse::query_param(r.query, "lastEventId").value_or("")),
          "last_event_id: the header first, then the query");

    auto name = in.ConsumeRandomLengthString(32);
    auto value = in.ConsumeRandomLengthString(128);
    auto rest = in.ConsumeRandomLengthString(64);
    auto query = "x" + percent_encode(name, in) + "=1&" + percent_encode(name, in) + "=" + percent_encode(value, in) +
                 "&" + rest;
    check(fastsse::query_param(query, name) == value, "query_param: a percent-encoded value");
    check(fastsse::query_param(percent_encode(name, in) + "&" + rest, name) == "", "query_param: a name without '='");
    fastsse::query_param(rest, name);  // anything: never a crash

    // A token after any query is never kept: only its name and REDACTED are.
    auto before = in.ConsumeRandomLengthString(64);
    auto secret = in.ConsumeRandomLengthString(64);
    if (secret.find('&') == std::string::npos) {
        auto redacted = fastsse::redact_uri("/h?" + before + "&" + (in.ConsumeBool() ? "authorization" : "Authoriz%61tion") +
                                            "=" + secret);
        check(redacted.ends_with("=REDACTED"), "redact_uri: the token's value replaced");
    }
    return 0;
}
