#include "fastsse/producers/command.hpp"

#include <fcntl.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/epoll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "fastsse/http/request.hpp"
#include "fastsse/metrics/metrics.hpp"

namespace fastsse {

namespace {

size_t utf8_sequence_length(std::string_view s, size_t i) {
    auto c = static_cast<unsigned char>(s[i]);
    size_t len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xe ? 3 : (c >> 3) == 0x1e ? 4 : 0;
    if (len == 0 || i + len > s.size()) return 0;
    for (size_t k = 1; k < len; ++k)
        if ((static_cast<unsigned char>(s[i + k]) & 0xc0) != 0x80) return 0;
    // Overlong forms, surrogates and code points past U+10FFFF are invalid too.
    auto c1 = static_cast<unsigned char>(len > 1 ? s[i + 1] : 0);
    if ((len == 2 && c < 0xc2) || (len == 3 && c == 0xe0 && c1 < 0xa0) || (len == 3 && c == 0xed && c1 >= 0xa0) ||
        (len == 4 && c == 0xf0 && c1 < 0x90) || (len == 4 && (c > 0xf4 || (c == 0xf4 && c1 >= 0x90))))
        return 0;
    return len;
}

}  // namespace

const SettingTable<CommandLocation>& command_location_options() {
    static const SettingTable<CommandLocation> table{
        text("command", &CommandLocation::command, "",
             "name of the command, as declared in the config file's [commands.NAME]"),
    };
    return table;
}

std::string sanitize_utf8(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    for (size_t i = 0; i < s.size();) {
        if (auto len = utf8_sequence_length(s, i)) {
            out.append(s.substr(i, len));
            i += len;
        } else {
            out += "\xef\xbf\xbd";  // U+FFFD REPLACEMENT CHARACTER
            ++i;
        }
    }
    return out;
}

void LineSplitter::feed(std::string_view bytes, const std::function<void(std::string_view)>& line) {
    partial_ += bytes;
    size_t start = 0;
    if (flushed_ && !partial_.empty()) {
        // The line break that completes a flushed line ends nothing more: no empty line for it.
        if (partial_ == "\r") return;  // perhaps a CRLF: wait for what follows
        start = partial_.starts_with("\r\n") ? 2 : partial_[0] == '\n' || partial_[0] == '\r' ? 1 : 0;
        flushed_ = false;
    }
    for (;;) {
        auto nl = partial_.find('\n', start);
        auto end = nl == std::string::npos ? partial_.size() : nl;
        // A CR before the LF is not part of the line, nor is one last in the buffer (its LF may
        // come with the next read): a line is cut only once more than max_line of its bytes are known.
        auto content_end = end > start && partial_[end - 1] == '\r' ? end - 1 : end;
        if (content_end - start > max_line_) {
            // Cut a long line, but never inside a UTF-8 sequence: back up over continuation bytes.
            size_t cut = start + max_line_;
            for (int k = 0; k < 3 && cut > start && (static_cast<unsigned char>(partial_[cut]) & 0xc0) == 0x80; ++k) --cut;
            if (cut == start) cut = start + max_line_;
            line(std::string_view(partial_).substr(start, cut - start));
            start = cut;
            continue;
        }
        if (nl == std::string::npos) break;
        line(std::string_view(partial_).substr(start, content_end - start));
        start = nl + 1;
    }
    partial_.erase(0, start);
}

void LineSplitter::flush(const std::function<void(std::string_view)>& line) {
    if (!has_partial()) return;
    std::string rest = std::move(partial_);
    partial_.clear();
    // A CR last is the start of a CRLF (or a line break of its own): not part of the line.
    if (rest.ends_with('\r')) rest.pop_back();
    flushed_ = true;
    line(rest);
}

// ---------------------------------------------------------------------------------------------

// A stream watching a run: its place in the run's channel.
class CommandProducer::Viewer final : public Subscription {
public:
    Viewer(Run& run, ChannelSubscription subscription) : run_(run), subscription_(std::move(subscription)) {}
    ~Viewer() override;

private:
    Run& run_;
    ChannelSubscription subscription_;
};

// One process, publishing its lines into a channel of its own; its viewers are the channel's
// subscribers. A shared run's channel keeps the last `replay` lines, with ids "<run>.<n>" that no
// other run gives; any other run's channel has one subscriber and no history, its ids are "<n>".
class CommandProducer::Run {
public:
    Run(CommandProducer& owner, std::shared_ptr<const CommandSpec> spec, std::vector<std::string> argv)
        : owner_(owner), declared_(std::move(spec)), spec_(*declared_), argv_(std::move(argv)), started_(owner.loop_.now()),
          run_id_(std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::system_clock::now().time_since_epoch()).count()),
          // run_id_ is a time: two runs started within a millisecond would have the same one.
          channel_name_(fmt::format("command {} #{}", spec_.name, ++owner.runs_made_)),
          channel_(owner.channels_.channel(channel_name_, HistoryLimits{spec_.shared ? spec_.replay : 0})) {}

    ~Run() {
        let_go();
        owner_.channels_.remove(channel_name_);
    }

    void start() {
        SpawnSpec s;
        s.argv = argv_;
        s.cwd = spec_.cwd;
        for (const auto& [name, value] : spec_.env) s.env.push_back(name + "=" + value);
        auto child = owner_.children_.spawn(s, [this](int status) { exited(status); });
        pid_ = child.pid;
        out_ = std::make_unique<Pipe>(*this, std::move(child.out), false);
        err_ = std::make_unique<Pipe>(*this, std::move(child.err), true);
        spdlog::info("command {} started (pid {})", spec_.name, pid_);
        ++metrics::counts.runs_started;
        if (spec_.time_limit.count() > 0)
            limit_timer_ = owner_.loop_.call_after(spec_.time_limit, [this] { stop("timeout", metrics::RunEnd::timeout); });
    }

    bool done() const { return done_; }
    const CommandSpec& spec() const { return spec_; }
    // The declaration it runs under: a reload that changes or removes it leaves the run as it is.
    const std::shared_ptr<const CommandSpec>& declared() const { return declared_; }
    const std::vector<std::string>& argv() const { return argv_; }

    // A new stream: first what the channel keeps after its last id (or all of it), then live lines.
    ChannelSubscription join(Sink& sink, std::string_view last_event_id) {
        linger_timer_.cancel();
        return channel_.subscribe(sink, last_event_id);
    }

    // A viewer left (its subscription is gone already).
    void leave() {
        if (channel_.subscribers() > 0) return;
        if (spec_.shared && !done_ && spec_.linger.count() > 0) {
            linger_timer_ = owner_.loop_.call_after(spec_.linger, [this] { owner_.release(this); });
            return;
        }
        owner_.release(this);
    }

    // Nobody watches any more: the process (group) is ended now, and counts against max_running
    // until it is reaped; the run itself is destroyed later.
    void let_go() {
        if (pid_ <= 0 || exited_ || let_go_) return;
        let_go_ = true;
        // Its exit is not waited for here (nor counted in exited()): the run ends now.
        ++metrics::counts.runs_ended[static_cast<size_t>(stopping_ ? end_ : metrics::RunEnd::unwatched)];
        owner_.unreaped_[pid_] = spec_.name;
        owner_.children_.set_on_exit(pid_, [owner = &owner_, pid = pid_](int) { owner->unreaped_.erase(pid); });
        owner_.children_.terminate(pid_, spec_.grace);
        spdlog::info("command {} (pid {}) stopped: no one is watching", spec_.name, pid_);
    }

private:
    class Pipe final : public IoHandler {
    public:
        Pipe(Run& run, UniqueFd fd, bool is_stderr)
            : run_(run), fd_(std::move(fd)), is_stderr_(is_stderr), lines_(run.spec_.max_line) {
            run_.owner_.loop_.add(fd_.get(), EPOLLIN, this);
        }
        ~Pipe() { close(); }

        void on_io(uint32_t) override { run_.read_pipes(); }

        // Appends the complete lines of what the pipe holds to `lines`, reading at most `budget`
        // bytes; at end of file the partial line too, and the pipe is closed.
        void read(std::vector<std::string>& lines, size_t budget) {
            auto add = [&lines](std::string_view l) { lines.emplace_back(l); };
            char buf[16 * 1024];
            bool got = false;
            while (fd_ && budget > 0) {
                ssize_t n = ::read(fd_.get(), buf, std::min(sizeof buf, budget));
                if (n > 0) {
                    got = true;
                    budget -= static_cast<size_t>(n);
                    lines_.feed(std::string_view(buf, n), add);
                    continue;
                }
                if (n < 0 && (errno == EAGAIN || errno == EINTR)) break;
                lines_.flush(add);
                close();
                return;
            }
            if (!got) return;  // the quiet time counts from this pipe's last output
            quiet_.cancel();
            if (lines_.has_partial())
                quiet_ = run_.owner_.loop_.call_after(run_.spec_.quiet, [this] {
                    lines_.flush([this](std::string_view l) { run_.line(is_stderr_, l); });
                });
        }

        // At the end of the run: what is left in the pipe, then the partial line. The child is
        // gone, so the pipe holds at most its capacity; reading that much loses nothing, and a
        // grandchild still writing cannot keep us here.
        void drain(std::vector<std::string>& lines) {
            if (fd_) {
                int capacity = ::fcntl(fd_.get(), F_GETPIPE_SZ);
                read(lines, capacity > 0 ? static_cast<size_t>(capacity) : 64 * 1024);
            }
            lines_.flush([&lines](std::string_view l) { lines.emplace_back(l); });
            close();
        }

    private:
        void close() {
            quiet_.cancel();
            if (fd_) run_.owner_.loop_.remove(fd_.get());
            fd_.reset();
        }

        Run& run_;
        UniqueFd fd_;
        bool is_stderr_;
        LineSplitter lines_;
        Timer quiet_;
    };

    // Reads what both pipes hold (a bounded amount each per wake-up, so that a chatty command cannot
    // starve the other streams), then passes the lines on, one from each pipe in turn.
    void read_pipes() {
        std::vector<std::string> out, err;
        if (out_) out_->read(out, 64 * 1024);
        if (err_) err_->read(err, 64 * 1024);
        interleave(out, err);
    }

    // Which pipe a command wrote to first cannot be told from two pipes read later. Reading one
    // pipe to its end before the other (as one wake-up per pipe does when the loop comes late, or
    // when the command has exited) would put every line of one stream behind the other's; taking
    // one line from each in turn keeps neither stream's lines systematically last.
    void interleave(const std::vector<std::string>& out, const std::vector<std::string>& err) {
        for (size_t i = 0; i < std::max(out.size(), err.size()); ++i) {
            if (i < out.size()) line(false, out[i]);
            if (i < err.size()) line(true, err[i]);
        }
    }

    void line(bool is_stderr, std::string_view raw) {
        if (done_ || over_limit_) return;
        auto number = ++lines_;
        output_ += raw.size() + 1;
        auto text = sanitize_utf8(raw);
        auto id = spec_.shared ? fmt::format("{}.{}", run_id_, number) : std::to_string(number);
        channel_.publish(Event{is_stderr ? spec_.stderr_event : spec_.stdout_event, text, id, std::nullopt});
        if (spec_.output_limit > 0 && output_ > spec_.output_limit) {
            over_limit_ = true;  // nothing more is passed on, not even what is still in the pipes
            stop("limit", metrics::RunEnd::output_limit);
        }
    }

    // Ends the process group; the exit event follows when the child is reaped.
    void stop(const char* reason, metrics::RunEnd end) {
        if (stopping_ || exited_) return;
        stopping_ = true;
        reason_ = reason;
        end_ = end;
        spdlog::info("command {} (pid {}) stopped: {}", spec_.name, pid_, reason);
        owner_.children_.terminate(pid_, spec_.grace);
    }

    void exited(int status) {
        exited_ = true;
        ++metrics::counts.runs_ended[static_cast<size_t>(end_)];
        limit_timer_.cancel();
        std::vector<std::string> out, err;
        if (out_) out_->drain(out);
        if (err_) err_->drain(err);
        interleave(out, err);
        // Whatever the command left running in its group goes with it.
        owner_.children_.terminate(pid_, spec_.grace);
        auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(owner_.loop_.now() - started_).count();
        auto code = WIFEXITED(status) ? std::to_string(WEXITSTATUS(status)) : "null";
        auto sig = WIFSIGNALED(status) ? std::to_string(WTERMSIG(status)) : "null";
        auto data = fmt::format(R"({{"code": {}, "signal": {}, "duration_ms": {}, "reason": "{}"}})", code, sig, ms,
                                reason_);
        spdlog::info("command {} (pid {}) exited: {}", spec_.name, pid_, data);
        done_ = true;
        // A new viewer starts a new run (unless one under a reloaded declaration took its place).
        if (auto shared = owner_.shared_.find({spec_.name, argv_}); shared != owner_.shared_.end() && shared->second == this)
            owner_.shared_.erase(shared);
        // Without an id: not kept, nobody resumes after it.
        channel_.publish(Event{"exit", data, std::nullopt, std::nullopt});
        channel_.finish(spec_.retry);
        if (channel_.subscribers() == 0) owner_.release(this);
    }

    CommandProducer& owner_;
    std::shared_ptr<const CommandSpec> declared_;
    const CommandSpec& spec_;
    std::vector<std::string> argv_;
    EventLoop::Clock::time_point started_;
    long long run_id_;
    std::string channel_name_;
    Channel& channel_;
    pid_t pid_ = -1;
    std::unique_ptr<Pipe> out_, err_;
    uint64_t lines_ = 0;
    size_t output_ = 0;
    std::string reason_ = "exit";
    metrics::RunEnd end_ = metrics::RunEnd::exit;  // reason_, as the metrics count it
    bool stopping_ = false, exited_ = false, done_ = false, over_limit_ = false, let_go_ = false;
    Timer limit_timer_, linger_timer_;
};

CommandProducer::Viewer::~Viewer() {
    subscription_.reset();
    run_.leave();
}

CommandProducer::CommandProducer(EventLoop& loop, ChildProcesses& children) : loop_(loop), children_(children) {}

CommandProducer::~CommandProducer() {
    stop_runs();
    for (const auto& [pid, command] : unreaped_) children_.forget(pid);  // their callbacks point here
}

void CommandProducer::stop_runs() {
    // Streams retired but not destroyed yet may still watch a run; runs released but not destroyed
    // yet refer to this producer.
    loop_.destroy_doomed();
    shared_.clear();
    runs_.clear();
}

std::span<const OptionSpec> CommandProducer::options() const { return command_location_options().specs(); }

size_t CommandProducer::running(const std::string& command) const {
    size_t n = 0;
    for (const auto& [key, run] : runs_) n += !run->done() && run->spec().name == command;
    for (const auto& [pid, name] : unreaped_) n += name == command;
    return n;
}

void CommandProducer::set_commands(std::map<std::string, CommandSpec> commands) {
    std::map<std::string, std::shared_ptr<const CommandSpec>> next;
    std::vector<std::string_view> added, changed, removed;
    for (auto& [name, spec] : commands) {
        auto old = commands_.find(name);
        if (old != commands_.end() && *old->second == spec) {
            next.emplace(name, old->second);  // unchanged: its shared run takes new viewers still
            continue;
        }
        (old == commands_.end() ? added : changed).push_back(name);
        next.emplace(name, std::make_shared<const CommandSpec>(std::move(spec)));
    }
    for (const auto& [name, spec] : commands_)
        if (!next.contains(name)) removed.push_back(name);
    // Running runs keep the declaration they started under (Run::declared): nothing stops here.
    if (configured_ && (!added.empty() || !changed.empty() || !removed.empty()))
        spdlog::info("commands: added [{}], changed [{}], removed [{}]: for new runs; {} running go on as they are",
                     fmt::join(added, ", "), fmt::join(changed, ", "), fmt::join(removed, ", "), runs_.size());
    configured_ = true;
    commands_ = std::move(next);
}

std::pair<std::shared_ptr<const CommandSpec>, std::vector<std::string>> CommandProducer::resolve(
    const StreamStart& start) const {
    CommandLocation location;
    command_location_options().load(location, start.params, true);
    if (location.command.empty()) throw OptionError("FASTSSE_COMMAND: name the command to run");
    auto it = commands_.find(location.command);
    if (it == commands_.end()) throw RequestError(404, fmt::format("No command named '{}'.", location.command));
    return {it->second, command_argv(*it->second, start.query)};
}

std::unique_ptr<Subscription> CommandProducer::open(Sink& sink, const StreamStart& start) {
    auto [declared, argv] = resolve(start);  // 404 or 400 before anything starts
    const auto& spec = *declared;

    Run* run = nullptr;
    if (spec.shared) {
        // A run under a declaration that a reload changed is not joined: new viewers get the new one.
        if (auto found = shared_.find({spec.name, argv}); found != shared_.end() && found->second->declared() == declared)
            run = found->second;
    }
    if (!run) {
        if (running(spec.name) >= spec.max_running)
            throw RequestError::unavailable(
                fmt::format("Command '{}' is running {} times already, its limit.", spec.name, spec.max_running),
                std::chrono::seconds(10));
        auto owned = std::make_unique<Run>(*this, declared, argv);
        owned->start();  // throws when the program cannot start: a 500 before any header
        run = owned.get();
        runs_.emplace(run, std::move(owned));
        if (spec.shared) shared_[{spec.name, argv}] = run;
    }
    return std::make_unique<Viewer>(*run, run->join(sink, start.last_event_id));
}

void CommandProducer::release(Run* run) {
    // From the run's own callbacks (its exit, its linger timer) and from a viewer's destructor: the
    // run is destroyed once that returns. A run released already (its linger timer due in the round
    // it exited) is not found.
    auto it = runs_.find(run);
    if (it == runs_.end()) return;
    auto owned = std::move(it->second);
    runs_.erase(it);
    if (auto shared = shared_.find({run->spec().name, run->argv()}); shared != shared_.end() && shared->second == run)
        shared_.erase(shared);
    owned->let_go();  // its process counts in unreaped_ from now on, not in runs_
    loop_.destroy_later(std::move(owned));
}

}  // namespace fastsse
