#include "fastsse/metrics/metrics.hpp"

#include <dirent.h>
#include <fmt/format.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <fstream>
#include <iterator>
#include <limits>
#include <sstream>

namespace fastsse::metrics {

Counts counts;

std::string_view label(StreamEnd end) {
    switch (end) {
    case StreamEnd::client_left: return "client_left";
    case StreamEnd::slow_client: return "slow_client";
    case StreamEnd::write_timeout: return "write_timeout";
    case StreamEnd::write_error: return "write_error";
    case StreamEnd::finished: return "finished";
    case StreamEnd::shutdown: return "shutdown";
    case StreamEnd::token_expired: return "token_expired";
    }
    return "other";
}

std::string_view label(RunEnd end) {
    switch (end) {
    case RunEnd::exit: return "exit";
    case RunEnd::timeout: return "timeout";
    case RunEnd::output_limit: return "output_limit";
    case RunEnd::unwatched: return "unwatched";
    }
    return "other";
}

void Histogram::observe(double seconds) noexcept {
    auto it = std::lower_bound(bounds.begin(), bounds.end(), seconds);  // le: a value on a bound is in it
    ++buckets_[static_cast<size_t>(it - bounds.begin())];
    sum_ += seconds;
    ++count_;
}

ProducerStreams& Counts::producer(std::string_view name) {
    for (auto& p : producers_)
        if (p.name == name) return p;
    auto& p = producers_.emplace_back();
    p.name = std::string(name);
    return p;
}

void Counts::reset() {
    // The producers' blocks stay where they are (streams point at them), at zero: a deque moved
    // keeps its elements in place.
    auto producers = std::move(producers_);
    *this = Counts();
    producers_ = std::move(producers);
    for (auto& p : producers_) {
        p.open = 0;
        p.opened = 0;
        p.closed = {};
    }
}

std::optional<ProcessStat> parse_proc_stat(std::string_view text) {
    // "pid (comm) state ppid ...": comm is the process's own name, up to 16 bytes of anything.
    auto close = text.rfind(')');
    if (close == std::string_view::npos) return std::nullopt;
    std::string_view rest = text.substr(close + 1);
    // Field 3 (state) is the first after it; we want 22, 23 and 24.
    ProcessStat out;
    int field = 2;
    size_t i = 0;
    bool got[3] = {false, false, false};
    while (i < rest.size() && field < 24) {
        while (i < rest.size() && rest[i] == ' ') ++i;
        auto end = rest.find(' ', i);
        if (end == std::string_view::npos) end = rest.size();
        if (end == i) break;
        ++field;
        auto word = rest.substr(i, end - i);
        auto parse = [&](auto& into) {
            auto [p, ec] = std::from_chars(word.data(), word.data() + word.size(), into);
            return ec == std::errc() && p == word.data() + word.size();
        };
        if (field == 22) {
            unsigned long long ticks = 0;
            got[0] = parse(ticks);
            out.start_ticks = static_cast<double>(ticks);
        } else if (field == 23) {
            got[1] = parse(out.vsize);
        } else if (field == 24) {
            got[2] = parse(out.rss_pages);
        }
        i = end;
    }
    if (!got[0] || !got[1] || !got[2]) return std::nullopt;
    return out;
}

std::optional<long long> parse_boot_time(std::string_view proc_stat) {
    size_t pos = 0;
    while (pos < proc_stat.size()) {
        auto end = proc_stat.find('\n', pos);
        if (end == std::string_view::npos) end = proc_stat.size();
        auto line = proc_stat.substr(pos, end - pos);
        if (line.starts_with("btime ")) {
            auto value = line.substr(6);
            long long t = 0;
            auto [p, ec] = std::from_chars(value.data(), value.data() + value.size(), t);
            if (ec == std::errc()) return t;
            return std::nullopt;
        }
        pos = end + 1;
    }
    return std::nullopt;
}

std::string escape_label_value(std::string_view value) {
    std::string out;
    out.reserve(value.size());
    for (char c : value) {
        if (c == '\\') out += "\\\\";
        else if (c == '"') out += "\\\"";
        else if (c == '\n') out += "\\n";
        else out += c;
    }
    return out;
}

namespace {

// HELP text escapes backslashes and line feeds (not quotes).
std::string escape_help(std::string_view help) {
    std::string out;
    for (char c : help) {
        if (c == '\\') out += "\\\\";
        else if (c == '\n') out += "\\n";
        else out += c;
    }
    return out;
}

std::string format_double(double v) {
    if (v == std::numeric_limits<double>::infinity()) return "+Inf";
    return fmt::format("{}", v);
}

}  // namespace

void TextWriter::family(std::string_view name, std::string_view type, std::string_view help) {
    fmt::format_to(std::back_inserter(out_), "# HELP {} {}\n# TYPE {} {}\n", name, escape_help(help), name, type);
}

void TextWriter::start(std::string_view name, std::initializer_list<Label> labels, std::optional<Label> extra) {
    out_ += name;
    if (labels.size() == 0 && !extra) {
        out_ += ' ';
        return;
    }
    char sep = '{';
    auto one = [&](const Label& l) {
        out_ += sep;
        sep = ',';
        fmt::format_to(std::back_inserter(out_), "{}=\"{}\"", l.name, escape_label_value(l.value));
    };
    for (const auto& l : labels) one(l);
    if (extra) one(*extra);
    out_ += "} ";
}

void TextWriter::sample(std::string_view name, std::initializer_list<Label> labels, double value) {
    start(name, labels);
    out_ += format_double(value);
    out_ += '\n';
}

void TextWriter::sample(std::string_view name, std::initializer_list<Label> labels, uint64_t value) {
    start(name, labels);
    fmt::format_to(std::back_inserter(out_), "{}\n", value);
}

void TextWriter::sample(std::string_view name, std::initializer_list<Label> labels, long long value) {
    start(name, labels);
    fmt::format_to(std::back_inserter(out_), "{}\n", value);
}

void TextWriter::histogram(std::string_view name, std::initializer_list<Label> labels, const Histogram& h) {
    std::string bucket = fmt::format("{}_bucket", name);
    uint64_t cumulative = 0;
    for (size_t i = 0; i < Histogram::bounds.size(); ++i) {
        cumulative += h.buckets()[i];
        auto le = format_double(Histogram::bounds[i]);
        start(bucket, labels, Label{"le", le});
        fmt::format_to(std::back_inserter(out_), "{}\n", cumulative);
    }
    cumulative += h.buckets().back();
    start(bucket, labels, Label{"le", "+Inf"});
    fmt::format_to(std::back_inserter(out_), "{}\n", cumulative);
    start(fmt::format("{}_sum", name), labels);
    out_ += format_double(h.sum());
    out_ += '\n';
    start(fmt::format("{}_count", name), labels);
    fmt::format_to(std::back_inserter(out_), "{}\n", h.count());
}

namespace {

std::optional<std::string> read_file(const char* path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) return std::nullopt;
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

long long open_descriptors() {
    DIR* dir = ::opendir("/proc/self/fd");
    if (!dir) return -1;
    long long n = 0;
    while (auto* entry = ::readdir(dir))
        if (entry->d_name[0] != '.') ++n;
    ::closedir(dir);
    return n - 1;  // not the one opendir took to read them
}

// The standard process_* metrics, as Prometheus's own client libraries name them, read now.
void process_metrics(TextWriter& w) {
    rusage usage{};
    if (::getrusage(RUSAGE_SELF, &usage) == 0) {
        auto seconds = [](const timeval& t) { return static_cast<double>(t.tv_sec) + t.tv_usec / 1e6; };
        w.family("process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.");
        w.sample("process_cpu_seconds_total", {}, seconds(usage.ru_utime) + seconds(usage.ru_stime));
    }
    if (auto fds = open_descriptors(); fds >= 0) {
        w.family("process_open_fds", "gauge", "Number of open file descriptors.");
        w.sample("process_open_fds", {}, fds);
    }
    if (rlimit lim{}; ::getrlimit(RLIMIT_NOFILE, &lim) == 0) {
        w.family("process_max_fds", "gauge", "Maximum number of open file descriptors.");
        w.sample("process_max_fds", {},
                 lim.rlim_cur == RLIM_INFINITY ? std::numeric_limits<double>::infinity()
                                               : static_cast<double>(lim.rlim_cur));
    }
    auto text = read_file("/proc/self/stat");
    auto stat = text ? parse_proc_stat(*text) : std::nullopt;
    if (!stat) return;
    w.family("process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.");
    w.sample("process_virtual_memory_bytes", {}, static_cast<uint64_t>(stat->vsize));
    w.family("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.");
    w.sample("process_resident_memory_bytes", {}, stat->rss_pages * static_cast<long long>(::sysconf(_SC_PAGESIZE)));
    auto system = read_file("/proc/stat");
    auto boot = system ? parse_boot_time(*system) : std::nullopt;
    if (!boot) return;
    w.family("process_start_time_seconds", "gauge", "Start time of the process since unix epoch in seconds.");
    w.sample("process_start_time_seconds", {},
             static_cast<double>(*boot) + stat->start_ticks / static_cast<double>(::sysconf(_SC_CLK_TCK)));
}

}  // namespace

std::string exposition(const Counts& c, const PageContext& context) {
    TextWriter w;
    w.family("fastsse_build_info", "gauge", "fastsse's version, as a label; always 1.");
    w.sample("fastsse_build_info", {{"version", FASTSSE_VERSION}}, uint64_t{1});

    w.family("fastsse_streams_open", "gauge", "Event streams open now, by producer.");
    for (const auto& p : c.producers()) w.sample("fastsse_streams_open", {{"producer", p.name}}, p.open);
    w.family("fastsse_streams_max", "gauge", "The max_streams setting: streams beyond it are refused (503).");
    w.sample("fastsse_streams_max", {}, static_cast<uint64_t>(context.max_streams));
    w.family("fastsse_streams_opened_total", "counter", "Event streams opened, by producer.");
    for (const auto& p : c.producers()) w.sample("fastsse_streams_opened_total", {{"producer", p.name}}, p.opened);
    w.family("fastsse_streams_closed_total", "counter",
             "Event streams closed, by producer and reason: client_left, slow_client (more than stream_buffer "
             "queued), write_timeout (took nothing for write_timeout), write_error, finished (by the producer), "
             "shutdown, token_expired (the hub's subscriber token).");
    for (const auto& p : c.producers())
        for (size_t i = 0; i < stream_ends; ++i)
            w.sample("fastsse_streams_closed_total", {{"producer", p.name}, {"reason", label(StreamEnd(i))}},
                     p.closed[i]);

    w.family("fastsse_events_written_total", "counter",
             "Events queued to streams (an event fanned out to N streams counts N).");
    w.sample("fastsse_events_written_total", {}, c.events_written);
    w.family("fastsse_written_bytes_total", "counter",
             "Bytes the web server took from fastsse's streams and answers, FastCGI framing included.");
    w.sample("fastsse_written_bytes_total", {}, c.bytes_written);
    w.family("fastsse_heartbeats_total", "counter", "Heartbeat comments sent to idle streams.");
    w.sample("fastsse_heartbeats_total", {}, c.heartbeats);

    w.family("fastsse_requests_refused_total", "counter", "Requests answered with an error, by HTTP status.");
    c.refused.each([&](int status, uint64_t n) {
        auto text = status ? std::to_string(status) : std::string("other");
        w.sample("fastsse_requests_refused_total", {{"status", text}}, n);
    });
    w.family("fastsse_accept_errors_total", "counter",
             "Failed accept() calls on the listening socket (out of descriptors, mostly).");
    w.sample("fastsse_accept_errors_total", {}, c.accept_errors);
    w.family("fastsse_connections_refused_total", "counter",
             "Connections dropped before routing: FastCGI records a responder does not take, or a request not "
             "complete in time.");
    w.sample("fastsse_connections_refused_total", {}, c.connections_refused);

    w.family("fastsse_fanout_seconds", "histogram",
             "Time to hand one event to every stream it goes to: a clock tick, or a channel's publish (hub "
             "updates, command lines).");
    w.histogram("fastsse_fanout_seconds", {{"source", "clock"}}, c.clock_fan_out);
    w.histogram("fastsse_fanout_seconds", {{"source", "channel"}}, c.channel_fan_out);

    w.family("fastsse_command_runs_started_total", "counter", "Command runs started (processes spawned).");
    w.sample("fastsse_command_runs_started_total", {}, c.runs_started);
    w.family("fastsse_command_runs_ended_total", "counter",
             "Command runs ended, by reason: exit (by itself), timeout (time_limit), output_limit, unwatched "
             "(stopped when its last viewer left).");
    for (size_t i = 0; i < run_ends; ++i)
        w.sample("fastsse_command_runs_ended_total", {{"reason", label(RunEnd(i))}}, c.runs_ended[i]);

    w.family("fastsse_hub_publishes_total", "counter", "Publishes to the Mercure hub, by the HTTP status answered.");
    c.hub_publishes.each([&](int status, uint64_t n) {
        auto text = status ? std::to_string(status) : std::string("other");
        w.sample("fastsse_hub_publishes_total", {{"status", text}}, n);
    });
    w.family("fastsse_history_entries", "gauge", "Events kept for replay (Last-Event-ID), in every channel.");
    w.sample("fastsse_history_entries", {}, c.history_entries);
    w.family("fastsse_history_bytes", "gauge", "Bytes of the events kept for replay, and their topics.");
    w.sample("fastsse_history_bytes", {}, c.history_bytes);
    if (c.redis_engine) {
        w.family("fastsse_redis_connected", "gauge", "1 while the Redis engine is connected and reading; 0 otherwise.");
        w.sample("fastsse_redis_connected", {}, static_cast<uint64_t>(c.redis_connected));
        w.family("fastsse_redis_reconnects_total", "counter", "Times the Redis engine connected again after losing Redis.");
        w.sample("fastsse_redis_reconnects_total", {}, c.redis_reconnects);
    }

    // As Prometheus's own prometheus_config_last_reload_successful: an alert on 0 finds a reload
    // that kept the old settings.
    w.family("fastsse_config_reloads_total", "counter", "SIGHUP reloads of the config file, by result.");
    w.sample("fastsse_config_reloads_total", {{"result", "applied"}}, c.reloads_applied);
    w.sample("fastsse_config_reloads_total", {{"result", "refused"}}, c.reloads_refused);
    w.family("fastsse_config_last_reload_successful", "gauge",
             "1 when the last reload applied (or none was asked for); 0 when it was refused, the old settings kept.");
    w.sample("fastsse_config_last_reload_successful", {}, uint64_t{c.last_reload_applied});

    // Mercure's own names, as its hub has them (metrics.go), for its dashboards.
    w.family("mercure_subscribers_connected", "gauge", "Mercure hub subscribers connected to this process now.");
    w.sample("mercure_subscribers_connected", {}, c.mercure_subscribers);
    w.family("mercure_subscribers_total", "counter", "Mercure hub subscribers this process has taken.");
    w.sample("mercure_subscribers_total", {}, c.mercure_subscribers_total);
    w.family("mercure_updates_total", "counter", "Updates the Mercure hub kept and sent (publishes answered 200).");
    w.sample("mercure_updates_total", {}, c.mercure_updates);

    process_metrics(w);
    return w.take();
}

}  // namespace fastsse::metrics
