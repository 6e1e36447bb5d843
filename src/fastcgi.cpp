#include "fastsse/fastcgi.hpp"

#include <fcgiapp.h>
#include <fcntl.h>

#include <cerrno>
#include <cstring>
#include <system_error>

namespace fastsse {

namespace fastcgi {

namespace {
constexpr unsigned char version_1 = 1;
constexpr unsigned char type_end_request = 3;
constexpr unsigned char type_params = 4;
constexpr unsigned char type_stdin = 5;
constexpr unsigned char type_stdout = 6;
constexpr unsigned char request_complete = 0;

std::array<char, header_size> header(unsigned char type, uint16_t id, size_t length) {
    return {static_cast<char>(version_1), static_cast<char>(type), static_cast<char>(id >> 8),
            static_cast<char>(id & 0xff), static_cast<char>((length >> 8) & 0xff), static_cast<char>(length & 0xff),
            0, 0};
}
}  // namespace

std::array<char, header_size> stdout_header(uint16_t request_id, size_t length) {
    return header(type_stdout, request_id, length);
}

void append_stdout(std::string& out, uint16_t request_id, std::string_view content) {
    while (!content.empty()) {
        auto chunk = content.substr(0, max_content);
        auto h = header(type_stdout, request_id, chunk.size());
        out.append(h.data(), h.size());
        out.append(chunk);
        content.remove_prefix(chunk.size());
    }
}

void append_end(std::string& out, uint16_t request_id) {
    auto h = header(type_stdout, request_id, 0);
    out.append(h.data(), h.size());
    h = header(type_end_request, request_id, 8);
    out.append(h.data(), h.size());
    // FCGI_EndRequestBody: appStatus (4 bytes) = 0, protocolStatus, 3 reserved.
    const char body[8] = {0, 0, 0, 0, static_cast<char>(request_complete), 0, 0, 0};
    out.append(body, sizeof body);
}

namespace {
// The length of the whole records up to and including the first empty record of `type` (the end of
// that stream); 0 when not all there yet, npos when the bytes are not FastCGI.
size_t through_end_of(std::string_view bytes, unsigned char type) {
    size_t at = 0;
    while (bytes.size() - at >= header_size) {
        auto byte = [&](size_t i) { return static_cast<unsigned char>(bytes[at + i]); };
        if (byte(0) != version_1) return npos;
        bool end_of_stream = byte(1) == type && byte(4) == 0 && byte(5) == 0;
        size_t record = header_size + (byte(4) << 8 | byte(5)) + byte(6);
        if (bytes.size() - at < record) return 0;
        at += record;
        if (end_of_stream) return at;
    }
    return 0;
}
}  // namespace

size_t request_head_length(std::string_view bytes) { return through_end_of(bytes, type_params); }

size_t request_length(std::string_view bytes) { return through_end_of(bytes, type_stdin); }

std::optional<Connection> read_request(UniqueFd fd) {
    FCGX_Request req;
    FCGX_InitRequest(&req, -1, 0);
    // libfcgi reads the head of a connection it did not accept itself when the request looks like the
    // next one on a kept-alive connection (keepConnection); `detached` makes its close on error a plain
    // close(), without the lingering shutdown that would wait on the peer.
    req.ipcFd = fd.release();
    req.keepConnection = 1;
    req.detached = 1;
    if (FCGX_Accept_r(&req) < 0) return std::nullopt;

    Connection c;
    c.request = request_from_env(req.envp);  // envp dies with req: copy now
    c.request_id = static_cast<uint16_t>(req.requestId);
    c.fd = UniqueFd(req.ipcFd);
    // Take the connection back: free libfcgi's buffers and params without closing or writing anything.
    FCGX_Free(&req, 0);
    return c;
}

}  // namespace fastcgi

}  // namespace fastsse
