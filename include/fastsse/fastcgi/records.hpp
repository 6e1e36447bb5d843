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
    // The request body (the content of its FCGI_STDIN records), read by the acceptor before the
    // request is handed on. When it passed body_limit (the max_body setting), `body` is empty and
    // body_whole false: a route that needs the body answers 413 then (request_body() in router.hpp);
    // the others never look.
    std::string body;
    bool body_whole = true;
    size_t body_limit = 0;  // for the 413's text
    // The CGI headers have left: an error can no longer be answered, only the connection closed.
    bool headers_sent = false;
};

namespace fastcgi {

// What a connection's first bytes are, read as libfcgi will read them. libfcgi 2.4.2 is not safe
// with hostile records (a stack overflow on FCGI_GET_VALUES, an abort on huge param lengths, a leak
// per unknown management record, the padding of FCGI_BEGIN_REQUEST read as records), so only what a
// responder needs reaches it: FCGI_BEGIN_REQUEST (role responder, no padding), then FCGI_PARAMS
// records of that request whose name-value lengths fit the bytes that came. What follows the head
// (the body) is BodyReader's.
struct HeadCheck {
    enum class Verdict {
        incomplete,  // nothing wrong so far; the head has not all arrived
        ready,       // the head is all there and may be given to libfcgi
        refused,     // close the connection (after writing `answer`)
    };
    Verdict verdict = Verdict::incomplete;
    size_t head_length = 0;  // ready: the bytes through the empty FCGI_PARAMS record
    std::string reason;      // refused: why, for the log (never the peer's bytes)
    std::string answer;      // refused: the records the FastCGI spec asks for in reply, if any
};

// `max_conns` is what an FCGI_GET_VALUES query is told for FCGI_MAX_CONNS and FCGI_MAX_REQS.
// Bytes past the head are not looked at: they may be anything, for the head's verdict.
HeadCheck check_head(std::string_view bytes, size_t max_conns);

// The request body, read as its FCGI_STDIN records come, cut anywhere: the records are checked as
// the head's are (the same request, FCGI_STDIN only, padding skipped; FCGI_ABORT_REQUEST ends it),
// and their content kept up to `limit` bytes. Past the limit, nothing is kept and the records are
// still walked through to their end, so that the web server, having sent its whole request, reads
// a 413 rather than a reset.
class BodyReader {
public:
    enum class State {
        more,     // the empty FCGI_STDIN record has not come yet
        whole,    // it has: body() is the request body, unless too_large()
        refused,  // a record that does not belong here: close the connection (reason() says why)
    };
    BodyReader(unsigned request_id, size_t limit) : id_(request_id), limit_(limit) {}

    // Takes the next bytes from the connection; returns how many it used: all of them while the
    // state stays `more`, the bytes up to the end (or the refused header) otherwise.
    size_t feed(std::string_view bytes);

    State state() const { return state_; }
    bool too_large() const { return too_large_; }
    std::string& body() { return body_; }  // empty once too_large()
    const std::string& reason() const { return reason_; }

private:
    void start_record();

    unsigned id_;
    size_t limit_;
    State state_ = State::more;
    std::array<char, header_size> header_{};
    size_t header_have_ = 0;
    size_t content_left_ = 0, padding_left_ = 0;
    bool last_ = false;  // the record being read is the empty one that ends the body
    bool too_large_ = false;
    std::string body_;
    std::string reason_;
};

// Lets libfcgi read the request head from `fd`, which must already hold all of it, checked
// (check_head said ready), so that libfcgi's blocking reads return at once. Returns the connection
// with its params copied, or nullopt when libfcgi refused the request (it then closed the fd).
std::optional<Connection> read_request(UniqueFd fd);

// The same for a head already taken from the connection `fd` (exactly check_head's head_length
// bytes): libfcgi reads it from a pipe that holds it and nothing else, since it reads in chunks
// and would otherwise take bytes of the body too. The Connection gets `fd`. Nullopt as above, or
// when no pipe could hold the head.
std::optional<Connection> read_request(std::string_view head, UniqueFd fd);

}  // namespace fastcgi

}  // namespace fastsse
