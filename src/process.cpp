#include "fastsse/process.hpp"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <spdlog/spdlog.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/wait.h>

#include <cerrno>
#include <system_error>
#include <thread>

namespace fastsse {

namespace {

[[noreturn]] void throw_errno(int err, const std::string& what) {
    throw std::system_error(err, std::generic_category(), what);
}

// A pipe whose read end is ours (non-blocking) and whose write end becomes the child's fd.
std::pair<UniqueFd, UniqueFd> output_pipe() {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) < 0) throw_errno(errno, "pipe");
    ::fcntl(fds[0], F_SETFL, O_NONBLOCK);
    return {UniqueFd(fds[0]), UniqueFd(fds[1])};
}

// posix_spawn's attribute and file-action objects, destroyed however spawn() leaves.
struct SpawnSetup {
    posix_spawnattr_t attr;
    posix_spawn_file_actions_t actions;
    SpawnSetup() {
        posix_spawnattr_init(&attr);
        posix_spawn_file_actions_init(&actions);
    }
    ~SpawnSetup() {
        posix_spawn_file_actions_destroy(&actions);
        posix_spawnattr_destroy(&attr);
    }
};

}  // namespace

ChildProcesses::ChildProcesses(EventLoop& loop) : loop_(loop) {
    // Orphaned grandchildren are re-parented to us rather than to init, so that we reap them.
    ::prctl(PR_SET_CHILD_SUBREAPER, 1);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    signals_ = UniqueFd(::signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK));
    if (!signals_) throw_errno(errno, "signalfd");
    loop_.add(signals_.get(), EPOLLIN, this);
}

ChildProcesses::~ChildProcesses() {
    stop_all(std::chrono::milliseconds(0));
    loop_.remove(signals_.get());
}

Child ChildProcesses::spawn(const SpawnSpec& spec, std::function<void(int)> on_exit) {
    auto [out_read, out_write] = output_pipe();
    auto [err_read, err_write] = output_pipe();

    SpawnSetup s;
    // Its own process group (so that the whole group can be ended), the signal mask and the
    // dispositions fastsse changed put back to the defaults a program expects.
    sigset_t none, defaults;
    sigemptyset(&none);
    sigemptyset(&defaults);
    for (int sig : {SIGPIPE, SIGTERM, SIGINT, SIGCHLD, SIGUSR1, SIGHUP}) sigaddset(&defaults, sig);
    posix_spawnattr_setflags(&s.attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    posix_spawnattr_setpgroup(&s.attr, 0);
    posix_spawnattr_setsigmask(&s.attr, &none);
    posix_spawnattr_setsigdefault(&s.attr, &defaults);
    posix_spawn_file_actions_addopen(&s.actions, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&s.actions, out_write.get(), 1);
    posix_spawn_file_actions_adddup2(&s.actions, err_write.get(), 2);
    posix_spawn_file_actions_addclosefrom_np(&s.actions, 3);
    posix_spawn_file_actions_addchdir_np(&s.actions, spec.cwd.c_str());

    std::vector<char*> argv, envp;
    for (const auto& a : spec.argv) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    for (const auto& e : spec.env) envp.push_back(const_cast<char*>(e.c_str()));
    envp.push_back(nullptr);

    pid_t pid = -1;
    if (int rc = ::posix_spawn(&pid, argv[0], &s.actions, &s.attr, argv.data(), envp.data()); rc != 0)
        throw_errno(rc, "cannot start " + spec.argv[0]);
    on_exit_.emplace(pid, std::move(on_exit));
    return Child{pid, std::move(out_read), std::move(err_read)};
}

void ChildProcesses::terminate(pid_t pgid, std::chrono::milliseconds grace) {
    if (ending_.count(pgid) || ::kill(-pgid, SIGTERM) < 0) return;  // already ending, or gone
    ending_[pgid] = loop_.call_after(grace, [this, pgid] {
        if (::kill(-pgid, SIGKILL) == 0) spdlog::info("process group {} killed after its grace period", pgid);
        ending_.erase(pgid);
    });
}

void ChildProcesses::on_io(uint32_t) {
    signalfd_siginfo info;
    while (::read(signals_.get(), &info, sizeof info) == sizeof info) {
    }
    reap();
}

void ChildProcesses::reap() {
    // One SIGCHLD may stand for several children: reap until none is left to reap.
    for (;;) {
        int status = 0;
        pid_t pid = ::waitpid(-1, &status, WNOHANG);
        if (pid <= 0) return;
        // A group is over once its last member is reaped, leader or not: forget its SIGKILL, which
        // could otherwise hit a new group that reused the id.
        std::erase_if(ending_, [](const auto& entry) { return ::kill(-entry.first, 0) < 0 && errno == ESRCH; });
        auto it = on_exit_.find(pid);
        if (it == on_exit_.end()) continue;  // a grandchild, or a child whose work was cancelled
        auto on_exit = std::move(it->second);
        on_exit_.erase(it);
        on_exit(status);
    }
}

void ChildProcesses::stop_all(std::chrono::milliseconds grace) {
    std::vector<pid_t> groups;
    for (auto& [pid, fn] : on_exit_) groups.push_back(pid);
    for (auto& [pid, timer] : ending_) groups.push_back(pid);
    on_exit_.clear();
    ending_.clear();
    for (auto pgid : groups) ::kill(-pgid, SIGTERM);
    auto deadline = std::chrono::steady_clock::now() + grace;
    auto any_left = [&] {
        while (::waitpid(-1, nullptr, WNOHANG) > 0) {
        }
        for (auto pgid : groups)
            if (::kill(-pgid, 0) == 0) return true;
        return false;
    };
    while (any_left() && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    for (auto pgid : groups) ::kill(-pgid, SIGKILL);
    // SIGKILL cannot be caught: these exits come at once. Reap every child, grandchildren included,
    // but never wait for long on one that left its group (setsid) and so was not killed.
    auto give_up = std::chrono::steady_clock::now() + std::chrono::milliseconds(300);
    while (std::chrono::steady_clock::now() < give_up) {
        pid_t pid = ::waitpid(-1, nullptr, WNOHANG);
        if (pid < 0) return;  // ECHILD: none left
        if (pid == 0) std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
}

}  // namespace fastsse
