#pragma once
// fastsse's child processes: started in a process group of their own, ended group and all, and
// always reaped. fastsse is a child subreaper, so a command's orphaned grandchildren come back to it
// and are reaped too: no zombies, no orphans. A guardian process SIGKILLs every group still running
// if fastsse dies without ending them (SIGKILL, a crash).
#include <sys/types.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "fastsse/loop/event_loop.hpp"
#include "fastsse/loop/fd.hpp"

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

// A small process, forked once, that outlives fastsse by a moment: fastsse tells it through a pipe
// about each process group it starts and each one that is over; when the pipe reaches its end
// without a stand-down (fastsse died, even of SIGKILL), it SIGKILLs every group still registered
// and exits. It is not fastsse's child (a double fork, in a session of its own, so that neither
// fastsse's process tree nor a terminal's signals include it), and holds no descriptor of fastsse's
// but the pipe and stderr. Writes never block: what a full pipe does not take waits for EPOLLOUT.
class Guardian final : public IoHandler {
public:
    // Throws std::system_error when it cannot be started.
    explicit Guardian(EventLoop& loop);
    ~Guardian();  // without stand_down(): the guardian kills the groups still registered
    Guardian(const Guardian&) = delete;
    Guardian& operator=(const Guardian&) = delete;

    void watch(pid_t pgid) { send(pgid); }      // a group started
    void release(pid_t pgid) { send(-pgid); }  // a group is over: its id may be reused
    // fastsse ended its groups itself: the guardian exits without killing anything.
    void stand_down() noexcept;
    pid_t pid() const noexcept { return pid_; }
    size_t queued() const noexcept { return pending_.size(); }  // bytes waiting for room in the pipe
    bool watching() const noexcept { return bool(pipe_); }       // false once stood down, or gone

    void on_io(uint32_t events) override;

private:
    void send(pid_t message);
    void flush();
    void lost() noexcept;

    EventLoop& loop_;
    pid_t pid_ = -1;
    UniqueFd pipe_;         // the write end; the guardian holds the only read end
    std::string pending_;   // what the full pipe did not take yet, in order
    bool waiting_ = false;  // for EPOLLOUT
};

class ChildProcesses final : public IoHandler {
public:
    // SIGCHLD must already be blocked in every thread (main does it): it is read from a signalfd.
    // SIGPIPE must be ignored (main does it): a write to a guardian that was killed fails with EPIPE.
    // The first spawn() forks the guardian: fastsse has a single thread.
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
    // Process groups started and not yet over (a leader's leftovers keep its group running): what
    // the guardian would kill.
    size_t running_groups() const { return groups_.size(); }

    // At exit: SIGTERM to every group (a command's leftovers too), up to `grace` for them to go, then
    // SIGKILL; reaps all and stands the guardian down.
    void stop_all(std::chrono::milliseconds grace);

    // The guardian, started with the first command (nullptr before): a fastsse without commands,
    // one per stream under mod_fcgid say, has no process to spare.
    const Guardian* guardian() const noexcept { return guardian_.get(); }

    void on_io(uint32_t events) override;

private:
    void reap();

    EventLoop& loop_;
    std::unique_ptr<Guardian> guardian_;
    UniqueFd signals_;
    std::unordered_map<pid_t, std::function<void(int)>> on_exit_;
    std::unordered_map<pid_t, Timer> ending_;  // groups between SIGTERM and SIGKILL
    std::unordered_set<pid_t> groups_;         // groups the guardian watches: started, not yet over
};

}  // namespace fastsse
