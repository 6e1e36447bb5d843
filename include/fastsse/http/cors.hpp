#pragma once
// Cross-origin requests (CORS, https://fetch.spec.whatwg.org/#http-cors-protocol) for the locations
// of a producer that answers them (the Mercure hub): which origins may read its answers, and the
// header lines that say so. Pure: it sees the request's Origin and the admin's list, nothing else.
//
// The admin's list is Mercure's `cors_origins`: exact origins, or `*`. An exact origin gets its own
// name back with Access-Control-Allow-Credentials, so that its pages' cookies (mercureAuthorization)
// work; `*` lets every other origin read without credentials only (Access-Control-Allow-Origin: *).
// Mercure's hub answers `*` and credentials together (gorilla/handlers), which browsers refuse for a
// request with cookies; reflecting any origin with credentials instead would let every site on the
// web read a visitor's private updates with the visitor's cookie. Neither: a site that subscribes
// with its cookie is listed by name.
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace fastsse {

// The longest Origin a request may carry for CORS (scheme, a 253-byte host, a port): a longer one
// is not a browser's, and gets no CORS header.
constexpr size_t max_origin = 512;

// Response headers, name and value, in order.
using Headers = std::vector<std::pair<std::string, std::string>>;
// As CGI header lines, each ending in CRLF.
std::string cgi_lines(const Headers& headers);

class CorsPolicy {
public:
    // No CORS: no header at all, as without the setting.
    CorsPolicy() = default;
    // The setting: "" (none), "*", and exact origins ("https://example.com:8443"), separated by
    // spaces or commas. An origin's scheme and host are compared lowercase, and the scheme's default
    // port is dropped, as browsers send them. Throws OptionError ("cors_origins: ...") for an entry
    // that is not scheme://host[:port] (a path, a trailing slash, "null").
    static CorsPolicy parse(std::string_view setting);

    bool enabled() const { return any_ || !origins_.empty(); }

    // The headers of an answer to a request from `origin` (the Origin header; nullopt without
    // one): none when CORS is off; Vary: Origin alone when the origin is not allowed.
    Headers response_headers(const std::optional<std::string>& origin) const;
    // The headers of the answer to a preflight (OPTIONS) from `origin`: Vary, and when the origin
    // is allowed, who may read, the methods, the request headers and how long a browser may cache it.
    Headers preflight_headers(const std::optional<std::string>& origin) const;

    // For tests and the log: the origins as compared.
    const std::vector<std::string>& origins() const { return origins_; }
    bool any() const { return any_; }

private:
    enum class Grant { none, anonymous, credentials };
    Grant grant(const std::optional<std::string>& origin) const;
    void add_allow(Headers& out, Grant grant, const std::string& origin) const;

    std::vector<std::string> origins_;  // normalised; credentials allowed
    bool any_ = false;                  // `*`: any other origin, without credentials
};

}  // namespace fastsse
