#pragma once
// Short complete answers: a status, CGI headers and a one-line text/plain body, written at once as
// FastCGI records, then the connection closed. An error becomes HTTP here, and nowhere else.
#include <string>
#include <string_view>

#include "fastsse/fastcgi/records.hpp"
#include "fastsse/http/request.hpp"

namespace fastsse {

// A short complete response: CGI headers and body, written at once, then the connection closed.
void send_response(Connection& connection, int status, std::string_view extra_headers, std::string_view body);
std::string_view status_text(int status);
// The one place an error becomes HTTP: its status, its headers (Retry-After, Allow,
// WWW-Authenticate), its reason.
void send_error(Connection& connection, const RequestError& error);
// The WWW-Authenticate header line (CGI, CRLF-ended) of a Bearer refusal (RFC 6750 §3).
std::string www_authenticate(BearerError error);

}  // namespace fastsse
