#include "fastsse/loop/process.hpp"

#include <fcntl.h>
#include <fmt/chrono.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <spdlog/spdlog.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <cerrno>
#include <cstring>
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

// One line in fastsse's log format, straight to stderr: the guardian has no logger of its own.
void guardian_log(const std::string& what) {
    auto now = std::chrono::system_clock::now();
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
    auto line = fmt::format("{:%Y-%m-%dT%H:%M:%S}.{:03} warning {}\n",
                            fmt::localtime(std::chrono::system_clock::to_time_t(now)), ms, what);
    (void)!::write(2, line.data(), line.size());
}

// The guardian's whole life, in the grandchild of a fork from a single-threaded fastsse.
[[noreturn]] void guard(int pipe_fd, pid_t fastsse) {
    // A session of its own: a terminal's SIGINT or hangup, or a signal to fastsse's process group,
    // does not reach it. Nor do these signals meant for fastsse (systemd's SIGTERM to every process of
    // the unit): it ends when fastsse does, and SIGKILL still ends it.
    ::setsid();
    for (int sig : {SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGPIPE, SIGUSR1, SIGUSR2, SIGTTOU}) ::signal(sig, SIG_IGN);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);

    // No descriptor of fastsse's but the pipe (on 3) and stderr, its log; stderr too is replaced if
    // it is a listening socket. fd 0 is the listening socket under spawn-fcgi and mod_fcgid.
    int listening = 0;
    socklen_t len = sizeof listening;
    bool keep_stderr = ::fcntl(2, F_GETFD) >= 0 &&
                       !(::getsockopt(2, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) == 0 && listening);
    int pipe = ::fcntl(pipe_fd, F_DUPFD, 3);
    int null = ::open("/dev/null", O_RDWR);
    if (pipe < 0 || null < 0) ::_exit(1);
    ::dup2(null, 0);
    ::dup2(null, 1);
    if (!keep_stderr) ::dup2(null, 2);
    ::dup2(pipe, 3);
    ::close_range(4, ~0U, 0);

    // Messages are pid_t: a group started (> 0), a group over (< 0), stand down (0).
    std::unordered_set<pid_t> groups;
    char buf[4096];
    size_t have = 0;
    for (;;) {
        ssize_t n = ::read(3, buf + have, sizeof buf - have);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;  // the end of the pipe: fastsse is gone without standing us down
        have += static_cast<size_t>(n);
        size_t used = 0;
        for (; have - used >= sizeof(pid_t); used += sizeof(pid_t)) {
            pid_t m;
            std::memcpy(&m, buf + used, sizeof m);
            if (m == 0) ::_exit(0);
            if (m > 0) groups.insert(m);
            else groups.erase(-m);
        }
        std::memmove(buf, buf + used, have - used);
        have -= used;
    }
    size_t killed = 0;
    for (auto pgid : groups) killed += ::kill(-pgid, SIGKILL) == 0;
    if (killed > 0)
        guardian_log(fmt::format("guardian: fastsse (pid {}) ended without stopping its commands: "
                                 "killed {} process group(s)", fastsse, killed));
    ::_exit(0);
}

}  // namespace

Guardian::Guardian(EventLoop& loop) : loop_(loop) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) < 0) throw_errno(errno, "guardian: pipe");
    UniqueFd read_end(fds[0]), write_end(fds[1]);
    if (::pipe2(fds, O_CLOEXEC) < 0) throw_errno(errno, "guardian: pipe");
    UniqueFd report_read(fds[0]), report_write(fds[1]);
    pid_t fastsse = ::getpid();

    // Not our child: the middle process forks the guardian and exits, so that the guardian goes to
    // init (or the nearest subreaper above us). While we are a subreaper ourselves (a second
    // ChildProcesses in one process) it would come back to us: the flag is off for that moment.
    int subreaper = 0;
    ::prctl(PR_GET_CHILD_SUBREAPER, &subreaper);
    if (subreaper) ::prctl(PR_SET_CHILD_SUBREAPER, 0);
    pid_t middle = ::fork();
    if (middle == 0) {
        ::prctl(PR_SET_NAME, "fastsse-guard");  // the guardian's name from its first moment
        pid_t guardian = ::fork();
        if (guardian == 0) guard(read_end.get(), fastsse);
        int report[2] = {guardian, errno};
        (void)!::write(report_write.get(), report, sizeof report);
        ::_exit(0);
    }
    int fork_errno = errno;
    // Until the middle process is gone: the guardian is orphaned only then.
    while (middle > 0 && ::waitpid(middle, nullptr, 0) < 0 && errno == EINTR) {
    }
    if (subreaper) ::prctl(PR_SET_CHILD_SUBREAPER, 1);
    if (middle < 0) throw_errno(fork_errno, "cannot start the guardian");
    read_end.reset();
    report_write.reset();
    int report[2] = {-1, EIO};
    if (::read(report_read.get(), report, sizeof report) != sizeof report || report[0] < 0)
        throw_errno(report[1], "cannot start the guardian");
    pid_ = report[0];
    ::fcntl(write_end.get(), F_SETFL, O_NONBLOCK);
    pipe_ = std::move(write_end);
    loop_.add(pipe_.get(), 0, this);  // no events asked: EPOLLERR alone, when the guardian is gone
}

Guardian::~Guardian() {
    if (pipe_) loop_.remove(pipe_.get());
}

void Guardian::send(pid_t message) {
    if (!pipe_) return;
    pending_.append(reinterpret_cast<const char*>(&message), sizeof message);
    flush();
}

void Guardian::flush() {
    while (pipe_ && !pending_.empty()) {
        ssize_t n = ::write(pipe_.get(), pending_.data(), pending_.size());
        if (n > 0) {
            pending_.erase(0, static_cast<size_t>(n));
        } else if (n < 0 && errno == EAGAIN) {
            if (!waiting_ && !loop_.modify(pipe_.get(), EPOLLOUT, this)) return lost();
            waiting_ = true;
            return;
        } else if (n < 0 && errno != EINTR) {
            return lost();  // EPIPE: the guardian is gone
        }
    }
    if (pipe_ && waiting_ && !loop_.modify(pipe_.get(), 0, this)) return lost();
    waiting_ = false;
}

void Guardian::on_io(uint32_t events) {
    if (events & (EPOLLERR | EPOLLHUP)) return lost();
    flush();
}

void Guardian::lost() noexcept {
    spdlog::error("the guardian (pid {}) is gone: commands would outlive fastsse if it were killed", pid_);
    loop_.remove(pipe_.get());
    pipe_.reset();
    pending_.clear();
}

void Guardian::stand_down() noexcept {
    if (!pipe_) return;
    send(0);
    // At exit, a full pipe may have a moment to drain; a guardian that reads nothing (stopped) is
    // not waited for: at the pipe's end it kills groups that are dead already.
    auto give_up = std::chrono::steady_clock::now() + std::chrono::milliseconds(200);
    while (pipe_ && !pending_.empty() && std::chrono::steady_clock::now() < give_up) {
        pollfd p{pipe_.get(), POLLOUT, 0};
        ::poll(&p, 1, 10);
        flush();
    }
    if (pipe_) loop_.remove(pipe_.get());
    pipe_.reset();
    pending_.clear();
}

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
    if (!guardian_) {
        guardian_ = std::make_unique<Guardian>(loop_);
        spdlog::info("started the guardian of the commands (pid {})", guardian_->pid());
    }
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
    groups_.insert(pid);
    guardian_->watch(pid);
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
    auto over = [](pid_t pgid) { return ::kill(-pgid, 0) < 0 && errno == ESRCH; };
    for (;;) {
        siginfo_t info{};
        if (::waitid(P_ALL, 0, &info, WEXITED | WNOHANG | WNOWAIT) < 0 || info.si_pid == 0) return;
        pid_t pid = info.si_pid;
        pid_t pgid = ::getpgid(pid);  // asked while it is a zombie: its group still holds it
        int status = 0;
        if (::waitpid(pid, &status, WNOHANG) != pid) return;
        // A group is over once its last member is reaped, leader or not: forget its SIGKILL, and
        // tell the guardian, whose SIGKILL could otherwise hit a new group that reused the id.
        if (groups_.count(pgid) && over(pgid)) {
            groups_.erase(pgid);
            guardian_->release(pgid);
        }
        std::erase_if(ending_, [&](const auto& entry) { return over(entry.first); });
        auto it = on_exit_.find(pid);
        if (it == on_exit_.end()) continue;  // a grandchild, or a child whose work was cancelled
        auto on_exit = std::move(it->second);
        on_exit_.erase(it);
        on_exit(status);
    }
}

void ChildProcesses::stop_all(std::chrono::milliseconds grace) {
    // Also the groups whose leader is gone but not every member (a command's `sleep &`).
    std::unordered_set<pid_t> groups = groups_;
    for (auto& [pid, fn] : on_exit_) groups.insert(pid);
    for (auto& [pid, timer] : ending_) groups.insert(pid);
    on_exit_.clear();
    ending_.clear();
    groups_.clear();
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
    if (guardian_) guardian_->stand_down();  // nothing is left for it to kill
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
