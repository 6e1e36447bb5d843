#pragma once
// A redis-server of a test's own (Debian's /usr/bin/redis-server), on a free loopback port, stopped
// by its PID: for the tests of the Redis connection and of the Redis store.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <string>
#include <vector>

#include "fastsse/loop/fd.hpp"
#include "fastsse/redis/connection.hpp"

extern char** environ;

namespace fastsse_test {

using namespace std::chrono_literals;
using fastsse::UniqueFd;
using fastsse::redis::RedisOptions;

// A loopback TCP socket bound to a port the kernel picked, not listening: connecting to it is
// refused for as long as it is open; closed, its port is free for a server.
inline UniqueFd bound_socket(uint16_t& port) {
    UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    REQUIRE(fd);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    socklen_t len = sizeof a;
    REQUIRE(::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&a), &len) == 0);
    port = ntohs(a.sin_port);
    return fd;
}

// One redis-server of the test's own: no persistence, logging to a pipe that is read until it says
// it is ready (no sleep). Stopped (SIGKILL) and reaped at the end of the scope.
class RedisServer {
public:
    // port: 0 for a free one; else that one (a Redis started again where clients look for it).
    explicit RedisServer(std::vector<std::string> extra = {}, uint16_t port = 0) : fixed_port_(port != 0) {
        port_ = port;
        // Another process may take the port between our close and Redis's bind: then try another.
        for (int attempt = 0; attempt < 5 && pid_ < 0; ++attempt) try_start(extra);
        REQUIRE_MESSAGE(pid_ > 0, "redis-server did not start: " << log_);
    }
    ~RedisServer() {
        if (pid_ > 0) {
            ::kill(pid_, SIGCONT);
            ::kill(pid_, SIGKILL);
            ::waitpid(pid_, nullptr, 0);
        }
    }
    RedisServer(const RedisServer&) = delete;
    RedisServer& operator=(const RedisServer&) = delete;

    uint16_t port() const { return port_; }
    pid_t pid() const { return pid_; }
    void signal(int sig) const { REQUIRE(::kill(pid_, sig) == 0); }
    void kill_now() {
        signal(SIGKILL);
        ::waitpid(pid_, nullptr, 0);
        pid_ = -1;
    }
    RedisOptions options() const {
        RedisOptions o;
        o.address = "127.0.0.1";
        o.port = port_;
        o.connect_timeout = 5s;
        o.command_timeout = 5s;
        return o;
    }

private:
    void try_start(const std::vector<std::string>& extra) {
        if (!fixed_port_) UniqueFd probe = bound_socket(port_);
        std::vector<std::string> args = {"/usr/bin/redis-server", "--port", std::to_string(port_), "--bind", "127.0.0.1",
                                         "--save", "", "--appendonly", "no", "--logfile", ""};
        args.insert(args.end(), extra.begin(), extra.end());
        std::vector<char*> argv;
        for (auto& a : args) argv.push_back(a.data());
        argv.push_back(nullptr);
        int fds[2];
        REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
        UniqueFd read_end(fds[0]), write_end(fds[1]);
        posix_spawn_file_actions_t actions;
        posix_spawn_file_actions_init(&actions);
        posix_spawn_file_actions_adddup2(&actions, write_end.get(), 1);
        posix_spawn_file_actions_adddup2(&actions, write_end.get(), 2);
        pid_t pid;
        int rc = ::posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), environ);
        posix_spawn_file_actions_destroy(&actions);
        REQUIRE_MESSAGE(rc == 0, "posix_spawn redis-server: " << std::strerror(rc));
        write_end.reset();
        auto deadline = std::chrono::steady_clock::now() + 10s;
        log_.clear();
        while (std::chrono::steady_clock::now() < deadline) {
            pollfd p{read_end.get(), POLLIN, 0};
            if (::poll(&p, 1, 100) <= 0) continue;
            char buf[4096];
            ssize_t n = ::read(read_end.get(), buf, sizeof buf);
            if (n <= 0) break;  // it exited
            log_.append(buf, n);
            if (log_.find("Ready to accept connections") != std::string::npos) {
                pid_ = pid;
                // Its later lines go nowhere: the pipe is closed, and Redis ignores SIGPIPE.
                return;
            }
        }
        ::kill(pid, SIGKILL);
        ::waitpid(pid, nullptr, 0);
    }

    bool fixed_port_ = false;
    pid_t pid_ = -1;
    uint16_t port_ = 0;
    std::string log_;
};

}  // namespace fastsse_test
