#pragma once
// FastCGI records. libfcgi decodes a request's head (BEGIN_REQUEST and the params); fastsse writes
// the FCGI_STDOUT and FCGI_END_REQUEST records itself, non-blocking, because libfcgi's reads and
// writes block, and one stalled peer must not stall the others.
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "fastsse/loop/fd.hpp"
#include "fastsse/http/request.hpp"

namespace fastsse {

namespace fastcgi {

constexpr size_t header_size = 8;
constexpr size_t max_content = 65535;

// The 8-byte header of an FCGI_STDOUT record carrying `length` (<= max_content) bytes.
std::array<char, header_size> stdout_header(uint16_t request_id, size_t length);
// Appends `content` as FCGI_STDOUT records (split at 64 KiB).
void append_stdout(std::string& out, uint16_t request_id, std::string_view content);
// Appends the end of a response: an empty FCGI_STDOUT record, then FCGI_END_REQUEST.
void append_end(std::string& out, uint16_t request_id);

// Reads (and drops) what the peer sent and we did not read, up to a bound, before the socket is
// closed: closing with unread input sends a reset, which destroys the answer still in flight.
void drain_input(int fd) noexcept;

}  // namespace fastcgi

// One request whose params have been read, the connection now the event loop's.
struct Connection {
    UniqueFd fd;
    uint16_t request_id = 1;
    Request request;
    // The request body (the content of its FCGI_STDIN records), read with the head. When it passed
    // fastcgi::max_body, or did not come whole, `body` is empty and body_whole false: a route that
    // needs the body answers 413 then (request_body() in router.hpp); the others never look.
    std::string body;
    bool body_whole = true;
    // The CGI headers have left: an error can no longer be answered, only the connection closed.
    bool headers_sent = false;
};

namespace fastcgi {

// What a connection's first bytes are, read as libfcgi will read them. libfcgi 2.4.2 is not safe
// with hostile records (a stack overflow on FCGI_GET_VALUES, an abort on huge param lengths, a leak
// per unknown management record, the padding of FCGI_BEGIN_REQUEST read as records), so only what a
// responder needs reaches it: FCGI_BEGIN_REQUEST (role responder, no padding), then FCGI_PARAMS
// records of that request whose name-value lengths fit the bytes that came, then its FCGI_STDIN.
struct HeadCheck {
    enum class Verdict {
        incomplete,  // nothing wrong so far; the head has not all arrived
        ready,       // the head is all there and may be given to libfcgi
        refused,     // close the connection (after writing `answer`)
    };
    Verdict verdict = Verdict::incomplete;
    size_t head_length = 0;  // ready: the bytes through the empty FCGI_PARAMS record
    bool whole = false;      // ready: the request body has ended too (the empty FCGI_STDIN record)
    std::string body;        // ready: the body's whole records so far, unless body_too_large
    bool body_too_large = false;  // ready: the body passed max_body (`body` is then empty)
    std::string reason;      // refused: why, for the log (never the peer's bytes)
    std::string answer;      // refused: the records the FastCGI spec asks for in reply, if any
};

// The largest request body kept for a route (a publish is one event, not an upload).
constexpr size_t max_body = 64 * 1024;

// `max_conns` is what an FCGI_GET_VALUES query is told for FCGI_MAX_CONNS and FCGI_MAX_REQS.
// The body is checked as the head is (its records: FCGI_STDIN of the same request, padding
// skipped) and kept up to `body_limit` bytes.
HeadCheck check_head(std::string_view bytes, size_t max_conns, size_t body_limit = max_body);

// Lets libfcgi read the request head from `fd`, which must already hold all of it, checked
// (check_head said ready), so that libfcgi's blocking reads return at once. Returns the connection
// with its params copied, or nullopt when libfcgi refused the request (it then closed the fd).
std::optional<Connection> read_request(UniqueFd fd);

}  // namespace fastcgi

}  // namespace fastsse
