#pragma once
#include <string>

#include "fastsse/loop/fd.hpp"

namespace fastsse {

struct Settings;

// The listening socket: made from --listen (a unix socket is removed again on exit), or passed by
// systemd (LISTEN_FDS), or inherited on fd 0 (spawn-fcgi, mod_fcgid).
class Listener {
public:
    // Throws UsageError for an address that cannot be meant, std::runtime_error when listening fails.
    explicit Listener(const Settings& settings);
    ~Listener();
    Listener(const Listener&) = delete;
    Listener& operator=(const Listener&) = delete;
    int fd() const { return fd_.get(); }
    const std::string& address() const { return address_; }

private:
    UniqueFd fd_;
    std::string address_;
    std::string unix_path_;
};

}  // namespace fastsse
