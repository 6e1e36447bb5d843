#pragma once
// FastCGI on both sides of the hand-over. libfcgi accepts connections and reads the request's
// params (it does that well, blocking, on the Acceptor's own thread); then the connection's
// descriptor is handed to the event loop, which writes FCGI_STDOUT and FCGI_END_REQUEST records
// itself, non-blocking, because libfcgi's writes block and one stalled client must not stall others.
#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <thread>

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

// One accepted request, its params copied out of libfcgi, the connection now ours.
struct Connection {
    UniqueFd fd;
    uint16_t request_id = 1;
    Request request;
};

// Accepts on its own thread with libfcgi until stop(); each connection goes to on_accept.
class Acceptor {
public:
    Acceptor(int listen_fd, std::function<void(Connection)> on_accept);
    ~Acceptor();  // stops and joins
    Acceptor(const Acceptor&) = delete;
    Acceptor& operator=(const Acceptor&) = delete;
    void stop() noexcept;

private:
    void run();
    int listen_fd_;
    UniqueFd stop_;  // eventfd: wakes the thread out of poll()
    std::function<void(Connection)> on_accept_;
    std::thread thread_;
};

}  // namespace fastsse
