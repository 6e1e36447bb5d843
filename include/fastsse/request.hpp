#pragma once
// What fastsse reads from one FastCGI request, copied out of libfcgi's memory at once,
// and the pure HTTP rules applied to it.
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace fastsse {

struct Request {
    std::string method;         // REQUEST_METHOD
    std::string uri;            // REQUEST_URI, for the log
    std::string query;          // QUERY_STRING
    std::optional<std::string> accept;         // HTTP_ACCEPT
    std::optional<std::string> last_event_id;  // HTTP_LAST_EVENT_ID
    std::map<std::string, std::string, std::less<>> fastsse;  // FASTSSE_* params: FASTSSE_INTERVAL is "interval"
};

// Builds a Request from CGI-style "NAME=value" strings (libfcgi's envp).
Request request_from_env(const char* const* envp);

// An answer given instead of a stream: an HTTP status and a one-line text/plain reason.
struct RequestError : std::runtime_error {
    RequestError(int status, std::string reason, std::string extra_headers = {})
        : std::runtime_error(std::move(reason)), status(status), headers(std::move(extra_headers)) {}
    int status;
    std::string headers;  // extra CGI header lines, each ending in "\r\n" (e.g. Allow, Retry-After)
};

// Accept negotiation as Hoa\Eventsource, with q-values: text/event-stream, text/* or */* with q > 0.
// The most specific matching range decides; a missing or empty header accepts.
bool accepts_event_stream(std::optional<std::string_view> accept);

// One query parameter, percent-decoded ('+' is a space); nullopt when absent.
std::optional<std::string> query_param(std::string_view query, std::string_view name);

// The id to resume after: the Last-Event-ID header, else the lastEventId query parameter
// (what EventSource polyfills send), else empty.
std::string last_event_id(const Request& request);

}  // namespace fastsse
