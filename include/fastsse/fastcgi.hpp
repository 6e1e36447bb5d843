#pragma once
// FastCGI records. libfcgi decodes a request's head (BEGIN_REQUEST and the params); fastsse writes
// the FCGI_STDOUT and FCGI_END_REQUEST records itself, non-blocking, because libfcgi's reads and
// writes block, and one stalled peer must not stall the others.
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "fastsse/fd.hpp"
#include "fastsse/request.hpp"

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

}  // namespace fastcgi

// One request whose params have been read, the connection now the event loop's.
struct Connection {
    UniqueFd fd;
    uint16_t request_id = 1;
    Request request;
};

namespace fastcgi {

// How many bytes at the start of `bytes` hold a whole request head: the records up to and including
// the empty FCGI_PARAMS record that ends the params. 0: not all there yet; npos: not FastCGI.
size_t request_head_length(std::string_view bytes);
// The same for the whole request: the records up to and including the empty FCGI_STDIN record
// that ends the request body.
size_t request_length(std::string_view bytes);
constexpr size_t npos = static_cast<size_t>(-1);

// Lets libfcgi read the request head from `fd`, which must already hold all of it (see
// request_head_length), so that libfcgi's blocking reads return at once. Returns the connection
// with its params copied, or nullopt when libfcgi refused the request (it then closed the fd).
std::optional<Connection> read_request(UniqueFd fd);

}  // namespace fastcgi

}  // namespace fastsse
