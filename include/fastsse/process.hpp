#pragma once
// fastsse's child processes: started in a process group of their own, ended group and all, and
// always reaped. fastsse is a child subreaper, so a command's orphaned grandchildren come back to it
// and are reaped too: no zombies, no orphans.
#include <sys/types.h>

#include <chrono>
#include <functional>
#include <string>
#include <unordered_map>
#include <vector>

#include "fastsse/event_loop.hpp"
#include "fastsse/fd.hpp"

namespace fastsse {

struct SpawnSpec {
    std::vector<std::string> argv;  // argv[0] an absolute path: no shell, no PATH search
    std::vector<std::string> env;   // "NAME=value", the child's whole environment
    std::string cwd = "/";
};

struct Child {
    pid_t pid = -1;  // also the process group id
    UniqueFd out;    // the child's stdout and stderr, non-blocking read ends
    UniqueFd err;
};

class ChildProcesses final : public IoHandler {
public:
    // SIGCHLD must already be blocked in every thread (main does it): it is read from a signalfd.
    explicit ChildProcesses(EventLoop& loop);
    ~ChildProcesses();  // kills and reaps whatever is left
    ChildProcesses(const ChildProcesses&) = delete;
    ChildProcesses& operator=(const ChildProcesses&) = delete;

    // Starts a child with stdin from /dev/null and every other descriptor closed. on_exit gets the
    // wait status when it is reaped. Throws std::system_error when it cannot be started.
    Child spawn(const SpawnSpec& spec, std::function<void(int status)> on_exit);

    // Ends a child's process group: SIGTERM now, SIGKILL after `grace` to whatever is left.
    // Its on_exit is still called when the child is reaped, unless forget() was called.
    void terminate(pid_t pgid, std::chrono::milliseconds grace);
    // No on_exit for this child any more (it is still reaped), or another one.
    void forget(pid_t pid) { on_exit_.erase(pid); }
    void set_on_exit(pid_t pid, std::function<void(int)> on_exit) {
        if (auto it = on_exit_.find(pid); it != on_exit_.end()) it->second = std::move(on_exit);
    }

    // Children not yet reaped, and groups still being ended.
    size_t alive() const { return on_exit_.size() + ending_.size(); }

    // At exit: SIGTERM to every group, up to `grace` for them to go, then SIGKILL; reaps all.
    void stop_all(std::chrono::milliseconds grace);

    void on_io(uint32_t events) override;

private:
    void reap();

    EventLoop& loop_;
    UniqueFd signals_;
    std::unordered_map<pid_t, std::function<void(int)>> on_exit_;
    std::unordered_map<pid_t, Timer> ending_;  // groups between SIGTERM and SIGKILL
};

}  // namespace fastsse
