#include "fastsse/http/response.hpp"

#include <fmt/format.h>
#include <sys/socket.h>

#include <string>

namespace fastsse {

std::string_view status_text(int status) {
    switch (status) {
    case 200: return "OK";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 406: return "Not Acceptable";
    case 413: return "Content Too Large";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    default: return "Error";
    }
}

void send_response(Connection& c, int status, std::string_view extra_headers, std::string_view body) {
    std::string cgi = fmt::format("Status: {} {}\r\n{}", status, status_text(status), extra_headers);
    if (!body.empty()) cgi += "Content-Type: text/plain; charset=utf-8\r\n";
    cgi += "\r\n";
    cgi += body;
    std::string out;
    fastcgi::append_stdout(out, c.request_id, cgi);
    fastcgi::append_end(out, c.request_id);
    c.headers_sent = true;
    // A fresh connection's send buffer is empty and this is well under a kilobyte: one write.
    [[maybe_unused]] auto n = ::send(c.fd.get(), out.data(), out.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    fastcgi::drain_input(c.fd.get());
    c.fd.reset();
}

std::string_view bearer_error_code(BearerError error) {
    switch (error) {
    case BearerError::none: return {};
    case BearerError::invalid_request: return "invalid_request";
    case BearerError::invalid_token: return "invalid_token";
    case BearerError::insufficient_scope: return "insufficient_scope";
    }
    return {};
}

std::string www_authenticate(BearerError error) {
    // RFC 6750 §3: "Bearer" followed by at least one auth-param, realm then error; no error code
    // when no token was presented. The reason stays in the body, for people, not in
    // error_description: draft 08 would not tell a client why its token failed.
    std::string out = R"(WWW-Authenticate: Bearer realm="fastsse")";
    if (auto code = bearer_error_code(error); !code.empty()) out += fmt::format(R"(, error="{}")", code);
    return out + "\r\n";
}

void send_error(Connection& c, const RequestError& error) {
    std::string headers;
    if (error.retry_after) headers += fmt::format("Retry-After: {}\r\n", error.retry_after->count());
    if (!error.allow.empty()) headers += fmt::format("Allow: {}\r\n", error.allow);
    if (error.bearer_challenge) headers += www_authenticate(*error.bearer_challenge);
    headers += error.location_headers;
    send_response(c, error.status, headers, std::string(error.what()) + "\n");
}

}  // namespace fastsse
