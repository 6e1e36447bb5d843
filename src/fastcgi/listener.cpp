#include "fastsse/fastcgi/listener.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <netdb.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <systemd/sd-daemon.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <stdexcept>

#include "fastsse/config/settings.hpp"

namespace fastsse {

namespace {

[[noreturn]] void fail(const std::string& what) {
    throw std::runtime_error(fmt::format("{}: {}", what, std::strerror(errno)));
}

}  // namespace

Listener::Listener(const Settings& s) {
    if (s.listen.empty()) {
        // systemd socket activation first (LISTEN_PID/LISTEN_FDS, fd 3), then spawn-fcgi/mod_fcgid's fd 0.
        int passed = ::sd_listen_fds(1);
        if (passed < 0) {
            errno = -passed;
            fail("the sockets passed by systemd (LISTEN_FDS)");
        }
        if (passed > 1)
            throw UsageError(fmt::format("systemd passed {} sockets (LISTEN_FDS); fastsse listens on one: "
                                         "give its .socket unit a single ListenStream=", passed));
        if (passed == 1) {
            if (::sd_is_socket(SD_LISTEN_FDS_START, AF_UNSPEC, SOCK_STREAM, 1) <= 0)
                throw UsageError("the socket passed by systemd is not a listening stream socket "
                                 "(use ListenStream= in the .socket unit, with Accept=no)");
            fd_ = UniqueFd(SD_LISTEN_FDS_START);
            address_ = "the socket passed by systemd (fd 3)";
            return;
        }
        int listening = 0;
        socklen_t len = sizeof listening;
        if (::getsockopt(0, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) < 0 || !listening)
            throw UsageError("no --listen given, no socket from systemd, and fd 0 is not a listening socket "
                             "(start fastsse with --listen unix:PATH or HOST:PORT, from fastsse.socket, "
                             "or from spawn-fcgi)");
        fd_ = UniqueFd(::fcntl(0, F_DUPFD_CLOEXEC, 3));
        if (!fd_) fail("fd 0");
        address_ = "inherited fd 0";
        return;
    }
    if (s.listen.starts_with("unix:")) {
        unix_path_ = s.listen.substr(5);
        sockaddr_un sa{};
        sa.sun_family = AF_UNIX;
        if (unix_path_.empty() || unix_path_.size() >= sizeof sa.sun_path)
            throw UsageError(fmt::format("--listen {}: the socket path must be 1 to {} bytes", s.listen,
                                                 sizeof sa.sun_path - 1));
        std::memcpy(sa.sun_path, unix_path_.data(), unix_path_.size());
        fd_ = UniqueFd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
        if (!fd_) fail("socket");
        struct stat st{};
        // A socket left by an earlier run is replaced, as php-fpm does; any other file is not.
        if (::lstat(unix_path_.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) ::unlink(unix_path_.c_str());
        if (::bind(fd_.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) < 0) {
            auto path = std::exchange(unix_path_, {});
            fail(fmt::format("cannot listen on unix:{}", path));
        }
        ::chmod(unix_path_.c_str(), s.socket_mode);
    } else {
        auto colon = s.listen.rfind(':');
        if (colon == std::string::npos)
            throw UsageError(fmt::format("--listen {}: expected unix:PATH or HOST:PORT", s.listen));
        auto host = s.listen.substr(0, colon);
        auto port = s.listen.substr(colon + 1);
        if (host.size() > 1 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
        addrinfo hints{};
        hints.ai_socktype = SOCK_STREAM;
        hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
        addrinfo* res = nullptr;
        if (int rc = ::getaddrinfo(host.empty() ? nullptr : host.c_str(), port.c_str(), &hints, &res); rc != 0)
            throw UsageError(fmt::format("--listen {}: {}", s.listen, ::gai_strerror(rc)));
        std::unique_ptr<addrinfo, decltype(&::freeaddrinfo)> guard(res, ::freeaddrinfo);
        fd_ = UniqueFd(::socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0));
        if (!fd_) fail("socket");
        int one = 1;
        ::setsockopt(fd_.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (::bind(fd_.get(), res->ai_addr, res->ai_addrlen) < 0) fail(fmt::format("cannot listen on {}", s.listen));
    }
    if (::listen(fd_.get(), SOMAXCONN) < 0) fail(fmt::format("cannot listen on {}", s.listen));
    address_ = s.listen;
}

Listener::~Listener() {
    if (!unix_path_.empty()) ::unlink(unix_path_.c_str());
}

}  // namespace fastsse
