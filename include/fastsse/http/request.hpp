#pragma once
// What fastsse reads from one FastCGI request, copied out of libfcgi's memory at once,
// and the pure HTTP rules applied to it.
#include <chrono>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace fastsse {

struct Request {
    std::string method;         // REQUEST_METHOD
    // REQUEST_URI, for the log: the value of an `authorization` query parameter (a Mercure
    // subscriber's token, 0.x) replaced by "REDACTED", so that no credential reaches a log line.
    std::string uri;
    std::string query;          // QUERY_STRING
    std::optional<std::string> accept;         // HTTP_ACCEPT
    std::optional<std::string> last_event_id;  // HTTP_LAST_EVENT_ID
    // HTTP_AUTHORIZATION and HTTP_COOKIE: where a Mercure client puts its token. Their size is
    // bounded by the request head's (the acceptor peeks at most 128 KiB); the hub's token reader
    // bounds them again, tighter.
    std::optional<std::string> authorization;
    std::optional<std::string> cookie;
    // HTTP_ORIGIN, for CORS (http/cors.hpp); absent when longer than max_origin bytes, which no
    // browser sends.
    std::optional<std::string> origin;
    // REQUEST_SCHEME and HTTP_HOST: the URL the client asked for (the hub's own URL, against which
    // relative URL patterns are taken). Client-controlled: only that client's own matching reads them.
    std::string scheme;
    std::string host;
    std::string content_type;                  // CONTENT_TYPE, empty without a body
    std::string content_length;                // CONTENT_LENGTH as sent, empty without a body
    std::map<std::string, std::string, std::less<>> fastsse;  // FASTSSE_* params: FASTSSE_INTERVAL is "interval"
};

// `uri` with the value of every `authorization` query parameter (any case) replaced by "REDACTED".
std::string redact_uri(std::string_view uri);

// Builds a Request from CGI-style "NAME=value" strings (libfcgi's envp).
Request request_from_env(const char* const* envp);

// RFC 6750 §3: why a request was refused over its access token, as the WWW-Authenticate: Bearer
// challenge says it; each code has its status (Mercure draft 08, "Error Responses", the same).
enum class BearerError {
    none,                // 401 without an error code: no token was presented
    invalid_request,     // 400: the token's presentation is malformed (not "Bearer <token>"...)
    invalid_token,       // 401: a token was presented and refused (bad, expired, not for this hub)
    insufficient_scope,  // 403: a valid token that does not allow the operation
};

constexpr int bearer_status(BearerError error) {
    switch (error) {
    case BearerError::invalid_request: return 400;
    case BearerError::insufficient_scope: return 403;
    case BearerError::none:
    case BearerError::invalid_token: break;
    }
    return 401;
}

// An answer given instead of a stream: an HTTP status and a one-line text/plain reason. Typed, so
// that whoever raises it writes no header text: one place (send_error) makes it HTTP.
struct RequestError : std::runtime_error {
    RequestError(int status, std::string reason) : std::runtime_error(std::move(reason)), status(status) {}
    // 503: the server or a limit is busy; the client may try again after `retry_after`.
    static RequestError unavailable(std::string reason, std::chrono::seconds retry_after) {
        RequestError e(503, std::move(reason));
        e.retry_after = retry_after;
        return e;
    }
    // 405: the location takes `allow` ("GET, HEAD") only.
    static RequestError method_not_allowed(std::string reason, std::string allow) {
        RequestError e(405, std::move(reason));
        e.allow = std::move(allow);
        return e;
    }

    // A refusal over the request's access token: the status goes with the code, and the answer
    // carries the Bearer challenge (WWW-Authenticate).
    static RequestError bearer(BearerError error, std::string reason) {
        RequestError e(bearer_status(error), std::move(reason));
        e.bearer_challenge = error;
        return e;
    }

    int status;
    std::optional<std::chrono::seconds> retry_after;  // Retry-After
    std::optional<BearerError> bearer_challenge;      // WWW-Authenticate: Bearer
    std::string allow;                                // Allow
    // Header lines (CGI, each ending in CRLF) that the location adds to every answer of its own,
    // refusals too (CORS: a page on another origin may then read why). Added by the route, which
    // made them (CorsPolicy), never from the text of whoever raised the error.
    std::string location_headers;
};

// Accept negotiation as Hoa\Eventsource, with q-values: text/event-stream, text/* or */* with q > 0.
// The most specific matching range decides; a missing or empty header accepts.
bool accepts_event_stream(std::optional<std::string_view> accept);

// What to do with a '%' not followed by two hex digits. WHATWG's form decoding keeps it as it is
// (`keep`); Go's url.ParseQuery, which Mercure's hub uses, refuses the whole form (`reject`).
enum class BadEscape { keep, reject };

// Decodes one name or value of application/x-www-form-urlencoded text (a query or a form body):
// '+' is a space, %XX the byte XX. nullopt only with BadEscape::reject, on a bad escape.
// The one decoder: query_param and parse_form (hub/form.hpp) both use it.
std::optional<std::string> form_decode(std::string_view s, BadEscape bad);

// One query parameter, percent-decoded ('+' is a space); nullopt when absent.
std::optional<std::string> query_param(std::string_view query, std::string_view name);

// The id to resume after: the Last-Event-ID header, else the lastEventId query parameter
// (what EventSource polyfills send), else empty.
std::string last_event_id(const Request& request);

}  // namespace fastsse
