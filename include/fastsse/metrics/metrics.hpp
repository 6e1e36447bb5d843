#pragma once
// What fastsse counts for Prometheus, and the page that shows it (the `metrics` endpoint,
// metrics/endpoint.hpp). Everything runs on the loop's one thread, so the counts are plain integers:
// no atomic, no lock, and the per-event path is an increment. One object for the process
// (`metrics::counts`): the parts that count (a stream, the acceptor, a channel...) are far apart and
// many, and a pointer handed to each would cost more code than it saves; a test reads it before and
// after, or resets it.
//
// Every label's values are bounded by construction: enums (a stream's end, a command run's end),
// the producers main registers, the statuses our own code answers (an array indexed by status, so
// no map on the way). Never a topic, a URL or a client's address.
//
// The names follow Prometheus's conventions (base units in the name, _total on counters), and the
// hub's also under Mercure's own names (dunglas/mercure, metrics.go) so that its dashboards work.
#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>

namespace fastsse::metrics {

// Why a stream ended, as the metrics count it (fewer than Stream's CloseReason: a client that left
// is one thing to an operator, however fastsse noticed; more too: a finish is the producer's, the
// shutdown's, or the hub token's expiry).
enum class StreamEnd { client_left, slow_client, write_timeout, write_error, finished, shutdown, token_expired };
inline constexpr size_t stream_ends = 7;
std::string_view label(StreamEnd end);

// Why a command run ended: its process exited by itself, or was stopped for its time_limit, its
// output_limit, or because nobody watched it any more (the last viewer left, or shutdown).
enum class RunEnd { exit, timeout, output_limit, unwatched };
inline constexpr size_t run_ends = 4;
std::string_view label(RunEnd end);

// One producer's streams (a label value: the name main registered it under).
struct ProducerStreams {
    std::string name;
    long long open = 0;
    uint64_t opened = 0;
    std::array<uint64_t, stream_ends> closed{};
};

// A count per HTTP status, 100 to 599, without a map: the label set is bounded by the array.
class ByStatus {
public:
    void add(int status) noexcept { ++counts_[index(status)]; }
    uint64_t at(int status) const noexcept { return counts_[index(status)]; }
    // Calls fn(status, count) for each status counted at least once, in order; 0 stands for the
    // statuses outside 100-599 (none of ours).
    template <class Fn>
    void each(Fn fn) const {
        for (size_t i = 1; i < counts_.size(); ++i)
            if (counts_[i]) fn(static_cast<int>(i + 99), counts_[i]);
        if (counts_[0]) fn(0, counts_[0]);
    }

private:
    static size_t index(int status) noexcept { return status >= 100 && status <= 599 ? status - 99 : 0; }
    std::array<uint64_t, 501> counts_{};
};

// A Prometheus histogram of durations in seconds, with fixed buckets. Each bucket counts its own
// observations; the exposition adds them up (Prometheus's buckets are cumulative).
class Histogram {
public:
    // From 50 µs (a fan-out to a few streams) to 2.5 s (one that holds the loop much too long).
    static constexpr std::array<double, 14> bounds{0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                                   0.01,    0.025,  0.05,    0.1,    0.25,   0.5,    2.5};
    void observe(double seconds) noexcept;
    void observe(std::chrono::steady_clock::duration d) noexcept {
        observe(std::chrono::duration<double>(d).count());
    }
    // Counts per bucket, the last one past the largest bound (+Inf); not cumulative.
    const std::array<uint64_t, bounds.size() + 1>& buckets() const noexcept { return buckets_; }
    double sum() const noexcept { return sum_; }
    uint64_t count() const noexcept { return count_; }

private:
    std::array<uint64_t, bounds.size() + 1> buckets_{};
    double sum_ = 0;
    uint64_t count_ = 0;
};

// Times a fan-out into a histogram: two clock reads per fan-out, none per stream.
class FanOutTimer {
public:
    explicit FanOutTimer(Histogram& into) noexcept : into_(into), started_(std::chrono::steady_clock::now()) {}
    ~FanOutTimer() { into_.observe(std::chrono::steady_clock::now() - started_); }
    FanOutTimer(const FanOutTimer&) = delete;
    FanOutTimer& operator=(const FanOutTimer&) = delete;

private:
    Histogram& into_;
    std::chrono::steady_clock::time_point started_;
};

struct Counts {
    // The streams of one producer, found by name, made the first time (main's registered names
    // only: the route asks for a producer it found in the registry). Its address never changes.
    ProducerStreams& producer(std::string_view name);
    const std::deque<ProducerStreams>& producers() const { return producers_; }

    // Per event and per write: increments only.
    uint64_t events_written = 0;  // events queued to streams (one fan-out to N streams: N)
    uint64_t bytes_written = 0;   // bytes the web server took from streams, FastCGI framing included
    uint64_t heartbeats = 0;

    ByStatus refused;                  // requests answered with an error, by status
    uint64_t accept_errors = 0;        // accept() failures (out of descriptors, mostly)
    uint64_t connections_refused = 0;  // a peer's bad FastCGI records, or a head/body not complete in time

    Histogram clock_fan_out;    // a clock tick to every stream of its timer
    Histogram channel_fan_out;  // a channel's event to its subscribers (hub updates, command lines)

    uint64_t runs_started = 0;
    std::array<uint64_t, run_ends> runs_ended{};

    ByStatus hub_publishes;               // the hub's answers to publishes
    uint64_t mercure_updates = 0;         // publishes the hub kept (Mercure's mercure_updates_total)
    long long mercure_subscribers = 0;    // subscribers connected now
    uint64_t mercure_subscribers_total = 0;

    long long history_entries = 0;  // events kept for replay, in every channel's history
    long long history_bytes = 0;    // their encoded bytes and topics

    bool redis_engine = false;  // the hub's engine is Redis: its two lines below are shown
    bool redis_connected = false;
    uint64_t redis_reconnects = 0;  // times the engine connected again after losing Redis

    // SIGHUP: reloads applied, and refused (a bad file, or none to read); whether the last one applied.
    uint64_t reloads_applied = 0;
    uint64_t reloads_refused = 0;
    bool last_reload_applied = true;  // none yet: the file read at start was good

    // Back to zero, for tests: the producers stay, at zero, where they were.
    void reset();

private:
    std::deque<ProducerStreams> producers_;
};

// The process's counts.
extern Counts counts;

// What is read from /proc/self/stat for the process_* metrics.
struct ProcessStat {
    double start_ticks = 0;           // field 22: start time, in clock ticks after boot
    unsigned long long vsize = 0;     // field 23: bytes
    long long rss_pages = 0;          // field 24
};
// Parses /proc/self/stat's text (the command name may hold spaces and parentheses: the fields
// are counted after its last ')'). nullopt when it does not have those fields.
std::optional<ProcessStat> parse_proc_stat(std::string_view text);
// The `btime` line of /proc/stat: the boot time, Unix seconds.
std::optional<long long> parse_boot_time(std::string_view proc_stat);

// Prometheus's text format, version 0.0.4: one family after the other, each with its HELP and
// TYPE lines then its samples. The caller keeps a family's samples together.
class TextWriter {
public:
    struct Label {
        std::string_view name;
        std::string_view value;
    };
    void family(std::string_view name, std::string_view type, std::string_view help);
    void sample(std::string_view name, std::initializer_list<Label> labels, double value);
    void sample(std::string_view name, std::initializer_list<Label> labels, uint64_t value);
    void sample(std::string_view name, std::initializer_list<Label> labels, long long value);
    // The _bucket lines (cumulative, le="+Inf" last), _sum and _count, with `labels` on each.
    void histogram(std::string_view name, std::initializer_list<Label> labels, const Histogram& h);
    const std::string& text() const { return out_; }
    std::string take() { return std::move(out_); }

private:
    void start(std::string_view name, std::initializer_list<Label> labels, std::optional<Label> extra = {});
    std::string out_;
};

// A label value as the format writes it between quotes: \ " and line feeds escaped.
std::string escape_label_value(std::string_view value);

// What the page shows besides the counts.
struct PageContext {
    size_t max_streams = 0;
};

// The whole page: the counts, then the process_* metrics read from /proc now.
std::string exposition(const Counts& counts, const PageContext& context);

}  // namespace fastsse::metrics
