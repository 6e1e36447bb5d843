#include "fastsse/fastcgi.hpp"

#include <fcgiapp.h>
#include <fcntl.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/eventfd.h>

#include <cerrno>
#include <cstring>
#include <system_error>

namespace fastsse {

namespace fastcgi {

namespace {
constexpr unsigned char version_1 = 1;
constexpr unsigned char type_end_request = 3;
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

}  // namespace fastcgi

Acceptor::Acceptor(int listen_fd, std::function<void(Connection)> on_accept)
    : listen_fd_(listen_fd), stop_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)), on_accept_(std::move(on_accept)) {
    if (!stop_) throw std::system_error(errno, std::generic_category(), "eventfd");
    // Non-blocking, so that libfcgi's accept() returns when another process sharing the socket
    // (spawn-fcgi, systemd) took the connection poll() announced; the accepted sockets stay blocking
    // for libfcgi's reads of the params.
    int flags = ::fcntl(listen_fd_, F_GETFL);
    ::fcntl(listen_fd_, F_SETFL, flags | O_NONBLOCK);
    thread_ = std::thread([this] { run(); });
}

Acceptor::~Acceptor() {
    stop();
    if (thread_.joinable()) thread_.join();
}

void Acceptor::stop() noexcept {
    uint64_t one = 1;
    [[maybe_unused]] auto n = ::write(stop_.get(), &one, sizeof one);
}

void Acceptor::run() {
    FCGX_Request req;
    FCGX_InitRequest(&req, listen_fd_, 0);
    for (;;) {
        pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {stop_.get(), POLLIN, 0}};
        if (::poll(fds, 2, -1) < 0) {
            if (errno == EINTR) continue;
            spdlog::error("accept: poll failed: {}", std::strerror(errno));
            return;
        }
        if (fds[1].revents) return;
        if (!(fds[0].revents & POLLIN)) continue;

        int rc = FCGX_Accept_r(&req);
        if (rc < 0) {
            if (rc != -EAGAIN && rc != -EWOULDBLOCK && rc != -EINTR && rc != -ECONNABORTED)
                spdlog::warn("accept failed: {}", rc < -9990 ? "libfcgi error" : std::strerror(-rc));
            continue;
        }
        Connection c;
        c.request = request_from_env(req.envp);  // envp is freed by the next accept: copy now
        c.request_id = static_cast<uint16_t>(req.requestId);
        c.fd = UniqueFd(req.ipcFd);
        // Take the connection from libfcgi: free its buffers and params without closing the fd or
        // writing anything, so the next FCGX_Accept_r starts from a clean request.
        FCGX_Free(&req, 0);
        req.ipcFd = -1;
        ::fcntl(c.fd.get(), F_SETFD, FD_CLOEXEC);
        ::fcntl(c.fd.get(), F_SETFL, ::fcntl(c.fd.get(), F_GETFL) | O_NONBLOCK);
        on_accept_(std::move(c));
    }
}

}  // namespace fastsse
