// ChildProcesses on a real EventLoop: real children (/bin/sh, env, grep), their stdout and stderr
// read to the end on the loop, their exit statuses, process groups, and the reaping of everything
// (grandchildren included: the test process becomes a child subreaper). The loop is stopped once a
// condition holds (checked every couple of milliseconds); a guard timer stops it anyway after a
// generous deadline, so a bug fails the test instead of hanging it. Nothing is left running.
#include <doctest/doctest.h>

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "support.hpp"
#include "fastsse/loop/event_loop.hpp"
#include "fastsse/loop/process.hpp"

using namespace std::chrono_literals;
using fastsse::SpawnSpec;
using fastsse::UniqueFd;

namespace {

// ChildProcesses reads SIGCHLD from a signalfd: it must be blocked before one is constructed.
struct SigchldBlocked {
    SigchldBlocked() {
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGCHLD);
        REQUIRE(::pthread_sigmask(SIG_BLOCK, &set, nullptr) == 0);
    }
};

// Reads one of a child's pipes to its end on the loop.
class Collector final : public fastsse::IoHandler {
public:
    Collector(fastsse::EventLoop& loop, UniqueFd fd) : loop_(loop), fd_(std::move(fd)) {
        loop_.add(fd_.get(), EPOLLIN, this);
    }
    ~Collector() { close(); }
    void on_io(uint32_t) override {
        char buf[4096];
        while (fd_) {
            ssize_t n = ::read(fd_.get(), buf, sizeof buf);
            if (n > 0) {
                text.append(buf, static_cast<size_t>(n));
            } else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
                return;
            } else {
                close();
                eof = true;
            }
        }
    }
    std::string text;
    bool eof = false;

private:
    void close() {
        if (fd_) loop_.remove(fd_.get());
        fd_.reset();
    }
    fastsse::EventLoop& loop_;
    UniqueFd fd_;
};

// One spawned child: its output as it comes, and its wait status once on_exit ran.
struct Watched {
    pid_t pid = -1;
    std::unique_ptr<Collector> out, err;
    std::shared_ptr<std::optional<int>> status = std::make_shared<std::optional<int>>();
    bool exited() const { return status->has_value(); }
    bool done() const { return exited() && out->eof && err->eof; }
    // The first line of stdout, as a pid.
    pid_t first_pid() const { return static_cast<pid_t>(std::stol(out->text.substr(0, out->text.find('\n')))); }
};

struct Harness {
    SigchldBlocked blocked;
    fastsse::EventLoop loop;
    fastsse::ChildProcesses children{loop};

    Watched spawn(SpawnSpec spec) {
        Watched w;
        auto status = w.status;
        auto child = children.spawn(spec, [status](int s) { *status = s; });
        w.pid = child.pid;
        w.out = std::make_unique<Collector>(loop, std::move(child.out));
        w.err = std::make_unique<Collector>(loop, std::move(child.err));
        return w;
    }

    bool run_until(const std::function<bool()>& done, std::chrono::milliseconds deadline = 10s) {
        return fastsse_test::run_loop_until(loop, done, deadline);
    }

    // Spawns and runs the child to its end (both pipes closed, status known).
    Watched run(SpawnSpec spec) {
        auto w = spawn(std::move(spec));
        REQUIRE(run_until([&] { return w.done(); }));
        return w;
    }
};

SpawnSpec sh(std::string script, std::vector<std::string> env = {"PATH=/usr/bin:/bin"}) {
    SpawnSpec s;
    s.argv = {"/bin/sh", "-c", std::move(script)};
    s.env = std::move(env);
    return s;
}

// No such process: reaped (a zombie would still answer kill(pid, 0)).
bool gone(pid_t pid) { return ::kill(pid, 0) < 0 && errno == ESRCH; }

// The fields of /proc/PID/stat after the command name: state, ppid, pgrp, ...
std::vector<std::string> stat_fields(pid_t pid) {
    std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
    std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    std::vector<std::string> out;
    auto paren = text.rfind(')');
    if (paren == std::string::npos) return out;
    std::istringstream rest(text.substr(paren + 1));
    for (std::string field; rest >> field;) out.push_back(field);
    return out;
}

std::string read_comm(pid_t pid) {
    std::ifstream f("/proc/" + std::to_string(pid) + "/comm");
    std::string comm;
    std::getline(f, comm);
    return comm;
}

// Our zombies: /proc entries in state Z whose parent is this process.
std::vector<pid_t> our_zombies() {
    std::vector<pid_t> out;
    DIR* dir = ::opendir("/proc");
    REQUIRE(dir != nullptr);
    while (auto* entry = ::readdir(dir)) {
        char* end = nullptr;
        long pid = std::strtol(entry->d_name, &end, 10);
        if (pid <= 0 || *end != '\0') continue;
        auto fields = stat_fields(static_cast<pid_t>(pid));
        if (fields.size() >= 2 && fields[0] == "Z" && std::stol(fields[1]) == ::getpid())
            out.push_back(static_cast<pid_t>(pid));
    }
    ::closedir(dir);
    return out;
}

// This process has no child at all, alive or zombie (WNOWAIT: nothing is reaped by asking).
bool no_children() {
    siginfo_t info{};
    errno = 0;
    return ::waitid(P_ALL, 0, &info, WEXITED | WNOHANG | WNOWAIT) < 0 && errno == ECHILD;
}

using fastsse_test::TempDir;

}  // namespace

TEST_CASE("spawn: stdout and stderr are separate pipes; on_exit gets the exit code") {
    Harness h;
    auto w = h.run(sh("echo out; echo err >&2; echo more; exit 7"));
    CHECK(w.out->text == "out\nmore\n");
    CHECK(w.err->text == "err\n");
    REQUIRE(WIFEXITED(**w.status));
    CHECK(WEXITSTATUS(**w.status) == 7);
    CHECK(gone(w.pid));
    CHECK(h.children.alive() == 0);
    CHECK(no_children());
}

TEST_CASE("spawn: on_exit gets a death by signal") {
    Harness h;
    auto w = h.run(sh("echo before; kill -KILL $$; echo after"));
    CHECK(w.out->text == "before\n");
    REQUIRE(WIFSIGNALED(**w.status));
    CHECK(WTERMSIG(**w.status) == SIGKILL);
    CHECK(h.children.alive() == 0);
}

TEST_CASE("spawn: the child leads a process group of its own") {
    Harness h;
    auto w = h.spawn(sh("echo $$; cut -d' ' -f5 /proc/$$/stat"));
    // posix_spawn returns after the exec: the group is set by now (the child is alive or a zombie).
    CHECK(::getpgid(w.pid) == w.pid);
    CHECK(::getpgid(w.pid) != ::getpgrp());
    REQUIRE(h.run_until([&] { return w.done(); }));
    CHECK(w.out->text == std::to_string(w.pid) + "\n" + std::to_string(w.pid) + "\n");
    CHECK(w.err->text == "");
}

TEST_CASE("spawn: stdin is /dev/null, whatever fastsse's own stdin is") {
    Harness h;
    // Our own stdin becomes a pipe for the spawn, so that inheriting it would show.
    int p[2];
    REQUIRE(::pipe(p) == 0);
    int saved = ::dup(0);
    REQUIRE(saved >= 0);
    REQUIRE(::dup2(p[0], 0) == 0);
    std::optional<Watched> w;
    try {
        w = h.spawn(sh("readlink /proc/$$/fd/0"));
    } catch (...) {
        ::dup2(saved, 0);
        throw;
    }
    ::dup2(saved, 0);
    ::close(saved);
    ::close(p[0]);
    ::close(p[1]);
    REQUIRE(h.run_until([&] { return w->done(); }));
    CHECK(w->out->text == "/dev/null\n");
    CHECK(w->err->text == "");
}

TEST_CASE("spawn: no descriptor but 0, 1 and 2 reaches the child") {
    Harness h;
    // Inheritable descriptors of ours (no O_CLOEXEC), a low one and a high one.
    int low = ::open("/dev/null", O_RDONLY);
    REQUIRE(low >= 3);
    int high = ::dup2(low, 200);
    REQUIRE(high == 200);
    Watched w;
    try {
        // The shell's own descriptors: ls runs as its child and lists its parent's.
        w = h.spawn(sh("ls /proc/$$/fd"));
    } catch (...) {
        ::close(low);
        ::close(high);
        throw;
    }
    ::close(low);
    ::close(high);
    REQUIRE(h.run_until([&] { return w.done(); }));
    CHECK(w.out->text == "0\n1\n2\n");
    CHECK(w.err->text == "");
}

TEST_CASE("spawn: the environment is exactly the one given") {
    Harness h;
    REQUIRE(::setenv("FASTSSE_UNIT_LEAK", "ours", 1) == 0);
    SpawnSpec s;
    s.argv = {"/usr/bin/env"};
    SUBCASE("some variables") {
        s.env = {"A=1", "B=two words", "EMPTY=", "X=a=b"};
        auto w = h.run(s);
        CHECK(w.out->text == "A=1\nB=two words\nEMPTY=\nX=a=b\n");
    }
    SUBCASE("none") {
        auto w = h.run(s);
        CHECK(w.out->text == "");
        REQUIRE(WIFEXITED(**w.status));
        CHECK(WEXITSTATUS(**w.status) == 0);
    }
    ::unsetenv("FASTSSE_UNIT_LEAK");
}

TEST_CASE("spawn: the working directory") {
    Harness h;
    TempDir dir;
    SUBCASE("given") {
        auto s = sh("pwd -P");
        s.cwd = dir.path.string();
        auto w = h.run(s);
        CHECK(w.out->text == dir.path.string() + "\n");
    }
    SUBCASE("the default is /") {
        auto w = h.run(sh("pwd -P"));
        CHECK(w.out->text == "/\n");
    }
    SUBCASE("one that does not exist: an error, and no child") {
        auto s = sh("pwd -P");
        s.cwd = (dir.path / "missing").string();
        CHECK_THROWS_AS(h.children.spawn(s, [](int) {}), std::system_error);
        CHECK(h.children.alive() == 0);
        CHECK(no_children());
    }
}

TEST_CASE("spawn: an empty signal mask, and SIGPIPE not ignored, whatever fastsse's own") {
    Harness h;  // SIGCHLD is blocked in this thread
    sigset_t more, old_mask;
    sigemptyset(&more);
    sigaddset(&more, SIGUSR1);
    sigaddset(&more, SIGTERM);
    REQUIRE(::pthread_sigmask(SIG_BLOCK, &more, &old_mask) == 0);
    auto old_pipe = ::signal(SIGPIPE, SIG_IGN);  // as main() does
    std::optional<Watched> w;
    try {
        SpawnSpec s;
        s.argv = {"/usr/bin/grep", "-E", "^Sig(Blk|Ign):", "/proc/self/status"};
        w = h.spawn(s);
    } catch (...) {
        ::signal(SIGPIPE, old_pipe);
        ::pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
        throw;
    }
    ::signal(SIGPIPE, old_pipe);
    ::pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
    REQUIRE(h.run_until([&] { return w->done(); }));
    auto& text = w->out->text;
    REQUIRE(text.starts_with("SigBlk:\t"));
    auto ign = text.find("SigIgn:\t");
    REQUIRE(ign != std::string::npos);
    auto blocked = std::stoull(text.substr(8, 16), nullptr, 16);
    auto ignored = std::stoull(text.substr(ign + 8, 16), nullptr, 16);
    CHECK(blocked == 0);
    // None of the standard signals 1..31 is ignored (SIGPIPE is bit 12). glibc's posix_spawn
    // leaves its own internal signals 32 and 33 (SIGCANCEL, SIGSETXID) ignored in the child,
    // which fastsse cannot change; the real-time signals from 34 on must not be ignored either.
    CHECK((ignored & (1ULL << (SIGPIPE - 1))) == 0);
    CHECK((ignored & 0x7fffffffULL) == 0);
    CHECK((ignored >> 33) == 0);
}

TEST_CASE("spawn: a program that does not exist throws std::system_error and leaves nothing") {
    Harness h;
    SpawnSpec s;
    s.argv = {"/nonexistent/fastsse-unit-program"};
    bool called = false;
    CHECK_THROWS_AS(h.children.spawn(s, [&](int) { called = true; }), std::system_error);
    try {
        h.children.spawn(s, [](int) {});
    } catch (const std::system_error& e) {
        CHECK(e.code().value() == ENOENT);
        CHECK(std::string(e.what()).find("/nonexistent/fastsse-unit-program") != std::string::npos);
    }
    CHECK(h.children.alive() == 0);
    CHECK(no_children());
    CHECK_FALSE(called);
}

TEST_CASE("terminate: SIGTERM reaches the whole group, grandchildren included") {
    Harness h;
    auto w = h.spawn(sh("sleep 100 >/dev/null 2>&1 & echo $!; wait"));
    REQUIRE(h.run_until([&] { return w.out->text.find('\n') != std::string::npos; }));
    pid_t grandchild = w.first_pid();
    CHECK(::getpgid(grandchild) == w.pid);
    // A grace far beyond the deadline: only SIGTERM can end them within this test.
    h.children.terminate(w.pid, 600s);
    REQUIRE(h.run_until([&] { return w.done() && gone(grandchild); }));
    REQUIRE(WIFSIGNALED(**w.status));
    CHECK(WTERMSIG(**w.status) == SIGTERM);
    CHECK(our_zombies().empty());
    CHECK(no_children());
}

TEST_CASE("terminate: SIGKILL after the grace to a group that ignores SIGTERM") {
    Harness h;
    // Leader and grandchild both ignore SIGTERM (an ignored signal stays ignored across exec).
    auto w = h.spawn(sh("trap '' TERM; sleep 100 >/dev/null 2>&1 & echo $!; exec sleep 100"));
    REQUIRE(h.run_until([&] { return w.out->text.find('\n') != std::string::npos; }));
    pid_t grandchild = w.first_pid();
    h.children.terminate(w.pid, 50ms);
    h.children.terminate(w.pid, 600s);  // already ending: no new grace
    REQUIRE(h.run_until([&] { return w.done() && gone(grandchild); }));
    REQUIRE(WIFSIGNALED(**w.status));
    CHECK(WTERMSIG(**w.status) == SIGKILL);
    REQUIRE(h.run_until([&] { return h.children.alive() == 0; }));
    CHECK(no_children());
}

TEST_CASE("terminate: a group is no longer ending once its last member is reaped") {
    // Also when that member is not the leader: else the group stays "ending" (counted by alive())
    // until its grace timer, whose SIGKILL would go to a group id that is free again and may have
    // been reused by a new group (the next command run).
    Harness h;
    // The grandchild ignores SIGTERM, so that it outlives the leader.
    auto w = h.spawn(sh("sh -c \"trap '' TERM; exec sleep 100\" >/dev/null 2>&1 & echo $!; wait"));
    REQUIRE(h.run_until([&] { return w.out->text.find('\n') != std::string::npos; }));
    pid_t grandchild = w.first_pid();
    REQUIRE(h.run_until([&] { return stat_fields(grandchild).size() > 0 && read_comm(grandchild) == "sleep"; }));
    h.children.terminate(w.pid, 600s);
    REQUIRE(h.run_until([&] { return w.done(); }));
    CHECK_FALSE(gone(grandchild));  // SIGTERM ignored
    REQUIRE(::kill(grandchild, SIGKILL) == 0);
    REQUIRE(h.run_until([&] { return gone(grandchild); }));
    CHECK(::kill(-w.pid, 0) < 0);  // the group is empty
    CHECK(h.run_until([&] { return h.children.alive() == 0; }));
}

TEST_CASE("terminate: a group already gone is left alone") {
    Harness h;
    auto w = h.run(sh("exit 0"));
    h.children.terminate(w.pid, 600s);  // nothing to end: no timer kept for it
    CHECK(h.children.alive() == 0);
}

TEST_CASE("forget: no on_exit, but the child is still reaped") {
    Harness h;
    auto w = h.spawn(sh("echo $$; exit 3"));
    h.children.forget(w.pid);
    CHECK(h.children.alive() == 0);
    REQUIRE(h.run_until([&] { return w.out->eof && w.err->eof && gone(w.pid); }));
    CHECK(w.out->text == std::to_string(w.pid) + "\n");
    CHECK_FALSE(w.exited());
    CHECK(no_children());
}

TEST_CASE("orphaned grandchildren come back to us and are reaped: no zombie") {
    Harness h;
    auto w = h.spawn(sh("sleep 100 >/dev/null 2>&1 & echo $!; exit 0"));
    REQUIRE(h.run_until([&] { return w.done(); }));
    pid_t grandchild = w.first_pid();
    REQUIRE(grandchild > 0);
    // Its parent is gone: it is ours now (child subreaper), not init's.
    auto fields = stat_fields(grandchild);
    REQUIRE(fields.size() >= 2);
    CHECK(std::stol(fields[1]) == ::getpid());
    REQUIRE(::kill(grandchild, SIGKILL) == 0);
    REQUIRE(h.run_until([&] { return gone(grandchild); }));
    CHECK(our_zombies().empty());
    CHECK(no_children());
}

TEST_CASE("alive() counts the children not yet reaped") {
    Harness h;
    CHECK(h.children.alive() == 0);
    auto a = h.spawn(sh("exec sleep 100"));
    auto b = h.spawn(sh("exit 0"));
    CHECK(h.children.alive() == 2);
    REQUIRE(h.run_until([&] { return b.done(); }));
    CHECK(h.children.alive() == 1);
    CHECK_FALSE(a.exited());
    h.children.terminate(a.pid, 600s);
    REQUIRE(h.run_until([&] { return a.done() && h.children.alive() == 0; }));
    CHECK(gone(a.pid));
    CHECK(no_children());
}

TEST_CASE("stop_all ends every group, reaps everything, calls no on_exit") {
    Harness h;
    int called = 0;
    auto start = [&](std::string script) {
        auto child = h.children.spawn(sh(std::move(script)), [&](int) { ++called; });
        return std::make_unique<Collector>(h.loop, std::move(child.out));
    };
    auto plain = start("echo $$; exec sleep 100");
    auto stubborn = start("trap '' TERM; echo $$; exec sleep 100");
    auto parent = start("sleep 100 >/dev/null 2>&1 & echo $!; echo $$; wait");
    REQUIRE(h.run_until([&] {
        return plain->text.size() > 1 && stubborn->text.size() > 1 && std::count(parent->text.begin(), parent->text.end(), '\n') == 2;
    }));
    std::vector<pid_t> pids = {std::stoi(plain->text), std::stoi(stubborn->text), std::stoi(parent->text)};
    pids.push_back(std::stoi(parent->text.substr(parent->text.find('\n') + 1)));
    for (auto pid : pids) CHECK_FALSE(gone(pid));
    CHECK(h.children.alive() == 3);

    h.children.stop_all(100ms);  // the stubborn one gets its SIGKILL after 100 ms
    for (auto pid : pids) {
        CAPTURE(pid);
        CHECK(gone(pid));
    }
    CHECK(h.children.alive() == 0);
    CHECK(no_children());
    CHECK(our_zombies().empty());
    // Their SIGCHLDs are still in the signalfd: reading them calls nothing.
    h.run_until([&] { return plain->eof && stubborn->eof && parent->eof; });
    CHECK(called == 0);
}

TEST_CASE("the destructor kills and reaps whatever is left") {
    pid_t pid = -1, grandchild = -1;
    {
        Harness h;
        auto w = h.spawn(sh("sleep 100 >/dev/null 2>&1 & echo $!; echo $$; wait"));
        REQUIRE(h.run_until([&] { return std::count(w.out->text.begin(), w.out->text.end(), '\n') == 2; }));
        grandchild = w.first_pid();
        pid = std::stoi(w.out->text.substr(w.out->text.find('\n') + 1));
        CHECK(pid == w.pid);
        w.out.reset();
        w.err.reset();
    }
    CHECK(gone(pid));
    CHECK(gone(grandchild));
    CHECK(no_children());
}

TEST_CASE("running_groups: a group counts until its last member is reaped, leader or not") {
    // What the guardian is told: a group over is released at once, so that its id, free again, is
    // never killed on fastsse's death.
    Harness h;
    auto a = h.run(sh("exit 0"));
    CHECK(h.children.running_groups() == 0);
    auto w = h.spawn(sh("sleep 100 >/dev/null 2>&1 & echo $!; exit 0"));
    CHECK(h.children.running_groups() == 1);
    REQUIRE(h.run_until([&] { return w.done(); }));
    CHECK(h.children.running_groups() == 1);  // the leader is gone, its sleep is not
    REQUIRE(::kill(w.first_pid(), SIGKILL) == 0);
    REQUIRE(h.run_until([&] { return h.children.running_groups() == 0; }));
    CHECK(gone(w.first_pid()));
}

TEST_CASE("stop_all ends a group whose leader is gone: the command's leftovers") {
    Harness h;
    auto w = h.spawn(sh("sleep 100 >/dev/null 2>&1 & echo $!; exit 0"));
    REQUIRE(h.run_until([&] { return w.done(); }));
    pid_t leftover = w.first_pid();
    CHECK(::getpgid(leftover) == w.pid);
    CHECK(h.children.alive() == 0);  // no command left to wait for, but its group is not over
    h.children.stop_all(100ms);
    CHECK(gone(leftover));
    CHECK(no_children());
}

namespace {

// The state letter in /proc/PID/stat, or 0 once the process is gone. The guardian is not our child:
// once it exits it may stay a zombie of init's for a while (or for good, where pid 1 reaps nothing).
char state_of(pid_t pid) {
    auto fields = stat_fields(pid);
    return fields.empty() ? 0 : fields[0][0];
}
bool ended(pid_t pid) { return state_of(pid) == 0 || state_of(pid) == 'Z'; }

// Waits for a condition without a loop to run (the guardian works in its own process).
bool eventually(const std::function<bool()>& done, std::chrono::milliseconds deadline = 5s) {
    auto until = std::chrono::steady_clock::now() + deadline;
    while (!done()) {
        if (std::chrono::steady_clock::now() > until) return false;
        std::this_thread::sleep_for(2ms);
    }
    return true;
}

// A process of ours leading a group of its own, as a command does; waits for a signal.
pid_t group_leader() {
    pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        ::setpgid(0, 0);
        for (;;) ::pause();
    }
    ::setpgid(pid, pid);  // both sides: the group exists once either has run
    return pid;
}

// Its wait status, reaped; -1 if it is still running at the deadline (then it is killed and reaped).
int reap_within(pid_t pid, std::chrono::milliseconds deadline) {
    int status = 0;
    if (!eventually([&] { return ::waitpid(pid, &status, WNOHANG) == pid; }, deadline)) {
        ::kill(pid, SIGKILL);
        ::waitpid(pid, nullptr, 0);
        return -1;
    }
    return status;
}

}  // namespace

TEST_CASE("the guardian: not our child, in a session of its own, gone once stop_all stood it down") {
    pid_t guardian = -1;
    {
        Harness h;
        CHECK(h.children.guardian() == nullptr);  // none until the first command
        auto w = h.run(sh("true"));
        REQUIRE(h.children.guardian());
        guardian = h.children.guardian()->pid();
        REQUIRE(guardian > 0);
        // No descriptor of ours but its pipe, once it has set itself up: 0 and 1 are /dev/null,
        // 2 our stderr (its log), 3 the pipe.
        auto fds = [&] {
            std::vector<std::string> out;
            std::error_code ec;
            for (auto& entry : std::filesystem::directory_iterator("/proc/" + std::to_string(guardian) + "/fd", ec))
                out.push_back(entry.path().filename().string());
            std::sort(out.begin(), out.end());
            return out;
        };
        CHECK(eventually([&] { return fds() == std::vector<std::string>{"0", "1", "2", "3"}; }));
        CHECK(read_comm(guardian) == "fastsse-guard");
        auto fields = stat_fields(guardian);
        REQUIRE(fields.size() >= 5);
        CHECK(std::stol(fields[1]) != ::getpid());  // its parent: init, or a subreaper above us
        CHECK(::getsid(guardian) == guardian);
        CHECK(std::filesystem::read_symlink("/proc/" + std::to_string(guardian) + "/fd/0") == "/dev/null");
        CHECK(std::filesystem::read_symlink("/proc/" + std::to_string(guardian) + "/fd/3").string().starts_with("pipe:"));
        CHECK(no_children());
        h.children.stop_all(0ms);
        CHECK(eventually([&] { return ended(guardian); }));
    }
}

TEST_CASE("the guardian: when fastsse's end of the pipe closes without a stand-down, it kills each group") {
    SigchldBlocked blocked;
    fastsse::EventLoop loop;
    pid_t watched = group_leader();
    pid_t released = group_leader();
    pid_t guardian = -1;
    {
        fastsse::Guardian g(loop);
        guardian = g.pid();
        g.watch(watched);
        g.watch(released);
        g.release(released);  // over, as far as fastsse knows: its id is not to be touched
    }  // as if fastsse died: the pipe's end
    int status = reap_within(watched, 5s);
    CHECK((WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL));
    CHECK(eventually([&] { return ended(guardian); }));
    CHECK(reap_within(released, 0ms) == -1);  // still running when the guardian had ended
}

TEST_CASE("the guardian: after a stand-down it kills nothing") {
    SigchldBlocked blocked;
    fastsse::EventLoop loop;
    pid_t watched = group_leader();
    pid_t guardian = -1;
    {
        fastsse::Guardian g(loop);
        guardian = g.pid();
        g.watch(watched);
        g.stand_down();
    }
    CHECK(eventually([&] { return ended(guardian); }));
    CHECK(reap_within(watched, 0ms) == -1);
}

TEST_CASE("the guardian: a full pipe never blocks; what it did not take follows, in order") {
    SigchldBlocked blocked;
    fastsse::EventLoop loop;
    pid_t watched = group_leader();
    pid_t guardian = -1;
    {
        fastsse::Guardian g(loop);
        guardian = g.pid();
        REQUIRE(::kill(guardian, SIGSTOP) == 0);  // it reads nothing: the pipe fills
        // Far more than a pipe holds (64 KiB): ids no process can have, then the one that counts.
        const pid_t none = 999999999;
        for (int i = 0; i < 20000; ++i) {
            g.watch(none);
            g.release(none);
        }
        g.watch(watched);
        CHECK(g.queued() > 0);
        REQUIRE(::kill(guardian, SIGCONT) == 0);
        CHECK(fastsse_test::run_loop_until(loop, [&] { return g.queued() == 0; }, 5s));
    }  // the pipe's end: the last message must have arrived
    int status = reap_within(watched, 5s);
    CHECK((WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL));
    CHECK(eventually([&] { return ended(guardian); }));
}

TEST_CASE("the guardian killed: fastsse notices (an error line), and commands still run") {
    Harness h;
    auto old_pipe = ::signal(SIGPIPE, SIG_IGN);  // as main() does: a write to it would fail, not kill us
    h.run(sh("true"));
    pid_t guardian = h.children.guardian()->pid();
    REQUIRE(::kill(guardian, SIGKILL) == 0);
    CHECK(h.run_until([&] { return !h.children.guardian()->watching(); }));
    auto w = h.run(sh("echo still"));
    CHECK(w.out->text == "still\n");
    h.children.stop_all(0ms);
    CHECK(no_children());
    ::signal(SIGPIPE, old_pipe);
}
