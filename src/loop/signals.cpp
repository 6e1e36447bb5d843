#include "fastsse/loop/signals.hpp"

#include <fmt/format.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace fastsse {

Signals::Signals(EventLoop& loop, std::function<void(int)> on_signal) : loop_(loop), on_signal_(std::move(on_signal)) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    fd_ = UniqueFd(::signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK));
    if (!fd_) throw std::runtime_error(fmt::format("signalfd: {}", std::strerror(errno)));
    loop_.add(fd_.get(), EPOLLIN, this);
}

Signals::~Signals() { loop_.remove(fd_.get()); }

void Signals::on_io(uint32_t) {
    signalfd_siginfo info;
    while (::read(fd_.get(), &info, sizeof info) == sizeof info) on_signal_(static_cast<int>(info.ssi_signo));
}

}  // namespace fastsse
