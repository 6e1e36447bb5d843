// sse-load: the benchmark load client. Opens N HTTP/1.1 event streams to one host:port/path (through
// nginx, to fastsse or to PHP-FPM), at a given ramp rate, parses every response and event, and
// reports streams established and failed, events, bytes and the latency from production (a timestamp
// in each event's data) to receipt, over a measuring window. One epoll thread per process; with
// --processes P it forks P workers (each holds N/P streams, within the 20,000-descriptor limit) and
// the parent sums their results, which they send it through pipes.
//
// stdout: one JSON line per phase, flushed at once, for a driver (bench/compare) that samples the
// servers at those moments. stderr: progress and a summary. Exit 0 when the run happened (even if
// every stream failed), 2 on bad flags, 1 when it could not run (fork, pipe).
//
//   {"phase":"ramped","t":T,"streams":N,"established":E,"failed":F,"failures":{...}}
//       every stream attempted, each established or failed (--connect-timeout: connect_timeout or
//       headers_timeout). Then --settle seconds.
//   {"phase":"window_start","t":T,"established":E}
//   {"phase":"window_end","t":T,"window_s":S,"established":E,"failed":F,"failures":{reason:count},
//    "events":..,"bytes":..,"latency_us":{"count","p50","p99","max","unparsed","from","resolution_us"},
//    "streams_lost_in_window":..,"client_cpu_s":..,"client_cpu_max_process_s":..
//    [,"by_stamp":[{"t_us","deliveries","last_us"},...] with --by-stamp]}
//       by_stamp: per distinct timestamp (one a publish, bench/hub), the deliveries in the window and
//       the latency of the last one: publish-to-last-delivery.
//       events, bytes (all received: headers, chunk framing) and latency count what arrived inside
//       the window only; client_cpu_s is the workers' CPU in the window (the busiest one's apart:
//       near window_s means the client was the bottleneck).
//   {"phase":"closed","t":T (µs),"stream":i,"local_port":p}   (--close-one-per-second K, K times)
//   {"phase":"done","t":T,"events_total":..,"client_cpu_total_s":..}   all connections closed.
//
// Counting: "established" is the streams open right now (200 and text/event-stream); "failed" counts
// each stream at most once: those that never got established, and those established that ended
// since (ended_by_server: the response ended cleanly; closed_early[_ERRNO]: cut, or reset). So
// established + failed = streams once ramped. Failure reasons: connect_<ERRNO>, bind_<ERRNO>,
// socket_<ERRNO>, send_<ERRNO>, read_<ERRNO>, connect_timeout, headers_timeout, http_<status>,
// not_event_stream, closed_before_headers, bad_response, bad_body, ended_by_server, closed_early.
// Streams are not reopened. Latency: receipt (CLOCK_REALTIME at the read that completed the event)
// minus the timestamp in the data; an HDR-like log-linear histogram (< 0.8 % bucket error, exact
// below 256 µs); --latency-from iso has only the data's resolution (seconds for MDN's example).
#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "sse_parse.hpp"

namespace {

using sseload::LatencyHistogram;

// ------------------------------------------------------------------------------------------------
// Clocks

std::int64_t mono_ns() {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return std::int64_t(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

std::int64_t wall_us() {
    timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return std::int64_t(ts.tv_sec) * 1000000 + ts.tv_nsec / 1000;
}

double wall_s() { return double(wall_us()) / 1e6; }

double cpu_self_s() {
    rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return double(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) + double(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

std::string errno_name(int e) {
    const char* n = strerrorname_np(e);
    return n ? n : fmt::format("errno{}", e);
}

// ------------------------------------------------------------------------------------------------
// Options

enum class LatencyFrom { none, unix_us, iso };

struct Options {
    std::string host = "127.0.0.1";
    int port = 8080;
    std::string path = "/";
    int streams = 1;
    double ramp = 0;
    double hold = 10;
    double settle = 2;
    int processes = 1;
    std::string sources;
    std::string latency_from_name = "none";
    LatencyFrom latency_from = LatencyFrom::none;
    double connect_timeout = 10;
    std::vector<std::string> headers;
    int close_one_per_second = 0;
    int max_pending = 0;
    bool by_stamp = false;
    bool quiet = false;

    // derived
    sockaddr_storage target{};
    socklen_t target_len = 0;
    std::vector<sockaddr_storage> source_addrs;
    std::string request;
};

[[noreturn]] void usage_error(const std::string& msg) {
    fmt::print(stderr, "sse-load: {}\n", msg);
    std::exit(2);
}

bool resolve(const std::string& host, int port, sockaddr_storage& out, socklen_t& len, int family = AF_UNSPEC) {
    addrinfo hints{};
    hints.ai_family = family;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    addrinfo* res = nullptr;
    if (getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &res) != 0 || !res) return false;
    std::memcpy(&out, res->ai_addr, res->ai_addrlen);
    len = res->ai_addrlen;
    freeaddrinfo(res);
    return true;
}

bool iequals(std::string_view a, std::string_view b) {
    return a.size() == b.size() &&
           std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) { return std::tolower(x) == std::tolower(y); });
}

void finish_options(Options& o) {
    if (o.streams < 1) usage_error("--streams must be at least 1");
    if (o.processes < 1) usage_error("--processes must be at least 1");
    if (o.processes > o.streams) o.processes = o.streams;
    if (o.port < 1 || o.port > 65535) usage_error("--port must be 1..65535");
    if (o.ramp < 0 || o.hold < 0 || o.settle < 0 || o.connect_timeout <= 0)
        usage_error("--ramp, --hold and --settle must be >= 0, --connect-timeout > 0");
    if (o.path.empty() || o.path[0] != '/') usage_error("--path must start with /");
    if (o.latency_from_name == "unix_us") o.latency_from = LatencyFrom::unix_us;
    else if (o.latency_from_name == "iso") o.latency_from = LatencyFrom::iso;
    else if (o.latency_from_name == "none") o.latency_from = LatencyFrom::none;
    else usage_error("--latency-from must be unix_us, iso or none");
    if (!resolve(o.host, o.port, o.target, o.target_len)) usage_error(fmt::format("--host {}: cannot resolve", o.host));

    // --sources: a count K (127.0.0.1 .. 127.0.0.K) or a comma-separated list of addresses.
    if (!o.sources.empty()) {
        std::vector<std::string> names;
        bool count = o.sources.find_first_not_of("0123456789") == std::string::npos;
        if (count) {
            int k = std::atoi(o.sources.c_str());
            if (k < 1 || k > 254) usage_error("--sources: a count must be 1..254");
            for (int i = 1; i <= k; ++i) names.push_back(fmt::format("127.0.0.{}", i));
        } else {
            std::size_t pos = 0;
            while (pos <= o.sources.size()) {
                std::size_t c = o.sources.find(',', pos);
                if (c == std::string::npos) c = o.sources.size();
                if (c > pos) names.push_back(o.sources.substr(pos, c - pos));
                pos = c + 1;
            }
        }
        for (auto& n : names) {
            sockaddr_storage a{};
            socklen_t l = 0;
            if (!resolve(n, 0, a, l, o.target.ss_family)) usage_error(fmt::format("--sources: bad address {}", n));
            o.source_addrs.push_back(a);
        }
    }

    // The request: defaults, each replaced by a --header of the same name.
    std::vector<std::pair<std::string, std::string>> hs;
    std::string host_value = o.target.ss_family == AF_INET6 && o.host.find(':') != std::string::npos
                                 ? fmt::format("[{}]:{}", o.host, o.port)
                                 : fmt::format("{}:{}", o.host, o.port);
    hs.emplace_back("Host", host_value);
    hs.emplace_back("Accept", "text/event-stream");
    hs.emplace_back("Cache-Control", "no-cache");
    hs.emplace_back("User-Agent", "sse-load");
    for (auto& h : o.headers) {
        auto c = h.find(':');
        if (c == std::string::npos || c == 0) usage_error(fmt::format("--header '{}': expected 'Name: value'", h));
        std::string name = h.substr(0, c), value = h.substr(c + 1);
        while (!value.empty() && value.front() == ' ') value.erase(0, 1);
        auto it = std::find_if(hs.begin(), hs.end(), [&](auto& p) { return iequals(p.first, name); });
        if (it != hs.end()) it->second = value;
        else hs.emplace_back(name, value);
    }
    o.request = fmt::format("GET {} HTTP/1.1\r\n", o.path);
    for (auto& [n, v] : hs) o.request += fmt::format("{}: {}\r\n", n, v);
    o.request += "\r\n";
}

// ------------------------------------------------------------------------------------------------
// Worker: one process, one epoll loop, its share of the streams

struct Worker;

struct Conn final : sseload::HttpSink, sseload::SseSink {
    enum class St : std::uint8_t { unstarted, connecting, awaiting, established, closed };
    Worker* w = nullptr;
    int index = 0;  // the stream's number in the whole run
    int fd = -1;
    St st = St::unstarted;
    std::uint16_t local_port = 0;
    std::uint32_t sent = 0;
    std::int64_t started_ns = 0;
    sseload::ResponseParser http;
    sseload::SseParser sse;

    Conn() : http(this), sse(this) {}
    bool on_head(const sseload::ResponseHead& head) override;
    void on_body(const char* p, std::size_t n) override { sse.feed(p, n); }
    void on_event(std::string_view type, std::string_view data, std::string_view last_id) override;
};

struct Worker {
    const Options& o;
    int id;
    int ctrl_in;   // commands from the parent
    int report;    // lines to the parent
    std::vector<int> indices;  // the run's stream numbers this worker holds
    std::unique_ptr<Conn[]> conns;
    int n = 0;
    int epfd = -1;

    // progress
    int started = 0, pending = 0, established = 0, failed = 0;
    std::map<std::string, std::uint64_t> failures;
    bool ramped_sent = false;
    std::int64_t ramp_t0 = 0;
    std::vector<int> timeout_queue;  // streams in the order started (same timeout for all: FIFO)
    std::size_t timeout_head = 0;

    // the measuring window
    bool window_set = false, window_reported = false;
    std::int64_t win_start = 0, win_end = 0;
    bool in_window = false;
    double cpu_at_start = 0;
    std::uint64_t win_events = 0, win_bytes = 0, win_lost = 0, win_unparsed = 0;
    std::uint64_t events_total = 0, bytes_total = 0;
    LatencyHistogram hist;
    // --by-stamp: per timestamp seen (one a publish, in bench/hub), its deliveries and the latency of
    // the last one. Bounded: a clock's stamps (one per tick per stream) would otherwise grow it forever.
    static constexpr std::size_t max_stamps = 1000;
    std::map<std::int64_t, std::pair<std::uint64_t, std::int64_t>> by_stamp;
    std::int64_t now_wall_us = 0;  // the receipt time of the bytes being parsed

    std::string ctrl_buf;
    std::int64_t next_progress = 0;
    bool quitting = false;

    Worker(const Options& opt, int id_, int in, int out) : o(opt), id(id_), ctrl_in(in), report(out) {}

    void send(const std::string& line) {
        std::size_t off = 0;
        while (off < line.size()) {
            ssize_t r = ::write(report, line.data() + off, line.size() - off);
            if (r < 0) {
                if (errno == EINTR) continue;
                _exit(3);  // the parent is gone
            }
            off += std::size_t(r);
        }
    }

    void fail(Conn& c, const std::string& reason) {
        bool was_established = c.st == Conn::St::established;
        if (c.st == Conn::St::connecting || c.st == Conn::St::awaiting) --pending;
        if (was_established) {
            --established;
            if (in_window_now()) ++win_lost;
        }
        ++failed;
        ++failures[reason];
        close_conn(c);
    }

    bool in_window_now() const {
        if (!window_set) return false;
        auto t = mono_ns();
        return t >= win_start && t < win_end;
    }

    void close_conn(Conn& c) {
        if (c.fd >= 0) {
            ::close(c.fd);  // also removes it from epoll
            c.fd = -1;
        }
        c.st = Conn::St::closed;
    }

    void start(Conn& c) {
        ++started;
        c.started_ns = mono_ns();
        timeout_queue.push_back(int(&c - conns.get()));
        int fd = ::socket(o.target.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            ++failed;
            ++failures["socket_" + errno_name(errno)];
            c.st = Conn::St::closed;
            return;
        }
        c.fd = fd;
        c.st = Conn::St::connecting;
        ++pending;
        int one = 1;
        ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (!o.source_addrs.empty()) {
            const auto& src = o.source_addrs[std::size_t(c.index) % o.source_addrs.size()];
            // The port is chosen at connect(), per (source, destination): not 28,000 for all targets.
            ::setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
            socklen_t l = src.ss_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
            if (::bind(fd, reinterpret_cast<const sockaddr*>(&src), l) < 0) return fail(c, "bind_" + errno_name(errno));
        }
        if (::connect(fd, reinterpret_cast<const sockaddr*>(&o.target), o.target_len) < 0 && errno != EINPROGRESS)
            return fail(c, "connect_" + errno_name(errno));
        sockaddr_storage local{};
        socklen_t ll = sizeof local;
        if (::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &ll) == 0)
            c.local_port = ntohs(local.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6&>(local).sin6_port
                                                             : reinterpret_cast<sockaddr_in&>(local).sin_port);
        epoll_event ev{};
        ev.events = EPOLLIN | EPOLLOUT;
        ev.data.u64 = std::uint64_t(&c - conns.get());
        if (::epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0) return fail(c, "epoll_" + errno_name(errno));
    }

    void on_writable(Conn& c) {
        if (c.st != Conn::St::connecting) return;
        int err = 0;
        socklen_t l = sizeof err;
        ::getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &l);
        if (err) return fail(c, "connect_" + errno_name(err));
        while (c.sent < o.request.size()) {
            ssize_t r = ::send(c.fd, o.request.data() + c.sent, o.request.size() - c.sent, MSG_NOSIGNAL);
            if (r < 0) {
                if (errno == EAGAIN) return;
                if (errno == EINTR) continue;
                return fail(c, "send_" + errno_name(errno));
            }
            c.sent = std::uint32_t(c.sent + std::size_t(r));
        }
        c.st = Conn::St::awaiting;
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.u64 = std::uint64_t(&c - conns.get());
        ::epoll_ctl(epfd, EPOLL_CTL_MOD, c.fd, &ev);
    }

    static constexpr std::size_t read_size = 256 * 1024;
    std::unique_ptr<char[]> buf{new char[read_size]};

    void on_readable(Conn& c) {
        if (c.st == Conn::St::connecting) {  // an error (refused) shows as readable too
            int err = 0;
            socklen_t l = sizeof err;
            ::getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &l);
            if (err) return fail(c, "connect_" + errno_name(err));
            return on_writable(c);
        }
        ssize_t r = ::read(c.fd, buf.get(), read_size);
        if (r < 0) {
            if (errno == EAGAIN || errno == EINTR) return;
            return fail(c, c.st == Conn::St::established ? "closed_early_" + errno_name(errno)
                                                         : "read_" + errno_name(errno));
        }
        now_wall_us = wall_us();
        in_window = window_set && [&] { auto t = mono_ns(); return t >= win_start && t < win_end; }();
        if (r == 0) {
            bool est = c.st == Conn::St::established;
            auto res = c.http.eof();
            if (!est) return fail(c, c.http.head_done() ? "bad_response" : "closed_before_headers");
            return fail(c, res == sseload::ResponseParser::Result::ended ? "ended_by_server" : "closed_early");
        }
        bytes_total += std::uint64_t(r);
        if (in_window) win_bytes += std::uint64_t(r);
        auto res = c.http.feed(buf.get(), std::size_t(r));
        using R = sseload::ResponseParser::Result;
        if (c.st == Conn::St::closed) return;  // on_head failed it
        if (res == R::error) return fail(c, c.st == Conn::St::established ? "bad_body" : "bad_response");
        if (res == R::ended) return fail(c, c.st == Conn::St::established ? "ended_by_server" : "closed_before_headers");
    }

    void check_timeouts(std::int64_t now) {
        std::int64_t limit = std::int64_t(o.connect_timeout * 1e9);
        while (timeout_head < timeout_queue.size()) {
            Conn& c = conns[std::size_t(timeout_queue[timeout_head])];
            if (c.st != Conn::St::connecting && c.st != Conn::St::awaiting) {
                ++timeout_head;
                continue;
            }
            if (now - c.started_ns < limit) break;
            fail(c, c.st == Conn::St::connecting ? "connect_timeout" : "headers_timeout");
            ++timeout_head;
        }
        if (timeout_head == timeout_queue.size()) {
            timeout_queue.clear();
            timeout_head = 0;
        }
    }

    std::string failures_tokens() const {
        std::string s;
        for (auto& [k, v] : failures) s += fmt::format(" f:{}={}", k, v);
        return s;
    }

    void report_window() {
        std::string line = fmt::format("result est={} failed={} events={} bytes={} lost={} unparsed={} cpu={:.6f} max={}",
                                       established, failed, win_events, win_bytes, win_lost, win_unparsed,
                                       cpu_self_s() - cpu_at_start, hist.max());
        line += failures_tokens();
        for (std::size_t i = 0; i < LatencyHistogram::buckets; ++i)
            if (hist.at(i)) line += fmt::format(" h:{}={}", i, hist.at(i));
        for (auto& [stamp, seen] : by_stamp) line += fmt::format(" s:{}={},{}", stamp, seen.first, seen.second);
        line += "\n";
        send(line);
        window_reported = true;
    }

    void close_one() {
        for (int i = 0; i < n; ++i) {
            Conn& c = conns[std::size_t(i)];
            if (c.st != Conn::St::established) continue;
            --established;
            std::int64_t t = wall_us();
            close_conn(c);
            send(fmt::format("closed t={} stream={} port={}\n", t, c.index, c.local_port));
            return;
        }
        send("closed none\n");
    }

    void command(std::string_view line) {
        if (line.rfind("window ", 0) == 0) {
            long long s = 0, e = 0;
            std::sscanf(std::string(line).c_str(), "window %lld %lld", &s, &e);
            win_start = s;
            win_end = e;
            window_set = true;
            hist.clear();
            by_stamp.clear();
            win_events = win_bytes = win_lost = win_unparsed = 0;
            cpu_at_start = cpu_self_s();
            send(fmt::format("wstart est={}\n", established));
        } else if (line == "close1") {
            close_one();
        } else if (line == "quit") {
            quitting = true;
        }
    }

    void read_ctrl() {
        char b[4096];
        ssize_t r = ::read(ctrl_in, b, sizeof b);
        if (r <= 0) {
            if (r < 0 && (errno == EAGAIN || errno == EINTR)) return;
            _exit(3);  // the parent is gone: the kernel closes every socket
        }
        ctrl_buf.append(b, std::size_t(r));
        std::size_t nl;
        while ((nl = ctrl_buf.find('\n')) != std::string::npos) {
            std::string line = ctrl_buf.substr(0, nl);
            ctrl_buf.erase(0, nl + 1);
            command(line);
        }
    }

    int run() {
        n = int(indices.size());
        conns.reset(new Conn[std::size_t(n)]);
        for (int i = 0; i < n; ++i) {
            conns[std::size_t(i)].w = this;
            conns[std::size_t(i)].index = indices[std::size_t(i)];
        }
        timeout_queue.reserve(std::size_t(n));
        epfd = ::epoll_create1(EPOLL_CLOEXEC);
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.u64 = UINT64_MAX;
        ::epoll_ctl(epfd, EPOLL_CTL_ADD, ctrl_in, &ev);

        // Ramp: this worker's share of the rate; its streams start at offsets id/ramp, then every P/ramp.
        double rate = o.ramp > 0 ? o.ramp / o.processes : 0;
        double offset_s = o.ramp > 0 ? double(id) / o.ramp : 0;
        ramp_t0 = mono_ns();
        next_progress = ramp_t0 + 1000000000;
        std::vector<epoll_event> events(1024);
        while (!quitting) {
            std::int64_t now = mono_ns();
            // start what is due
            if (started < n) {
                int due = n;
                if (rate > 0) {
                    double el = double(now - ramp_t0) / 1e9 - offset_s;
                    due = el < 0 ? 0 : std::min<int>(n, int(std::floor(el * rate)) + 1);
                }
                int budget = 1024;
                while (started < due && budget-- > 0 && (o.max_pending <= 0 || pending < o.max_pending))
                    start(conns[std::size_t(started)]);
            }
            check_timeouts(now);
            if (!ramped_sent && started == n && pending == 0) {
                send(fmt::format("ramped est={} failed={}{}\n", established, failed, failures_tokens()));
                ramped_sent = true;
            }
            if (!ramped_sent && now >= next_progress) {
                send(fmt::format("progress started={} est={} failed={}\n", started, established, failed));
                next_progress += 1000000000;
            }
            if (window_set && !window_reported && now >= win_end) report_window();

            // how long to wait
            std::int64_t wait_ns = 100000000;
            bool may_start = started < n && (o.max_pending <= 0 || pending < o.max_pending);
            if (may_start) wait_ns = rate > 0 ? std::min<std::int64_t>(wait_ns, std::int64_t(1e9 / rate) / 2 + 1) : 0;
            if (pending > 0) wait_ns = std::min<std::int64_t>(wait_ns, 10000000);
            if (window_set && !window_reported) wait_ns = std::min(wait_ns, std::max<std::int64_t>(0, win_end - now));
            int timeout_ms = int((wait_ns + 999999) / 1000000);
            int k = ::epoll_wait(epfd, events.data(), int(events.size()), timeout_ms);
            if (k < 0) {
                if (errno == EINTR) continue;
                fmt::print(stderr, "sse-load: epoll_wait: {}\n", std::strerror(errno));
                return 1;
            }
            for (int e = 0; e < k; ++e) {
                if (events[std::size_t(e)].data.u64 == UINT64_MAX) {
                    read_ctrl();
                    continue;
                }
                Conn& c = conns[events[std::size_t(e)].data.u64];
                if (c.fd < 0) continue;
                auto mask = events[std::size_t(e)].events;
                if (c.st == Conn::St::connecting && (mask & (EPOLLOUT | EPOLLERR | EPOLLHUP)) && !(mask & EPOLLIN)) on_writable(c);
                else if (mask & (EPOLLIN | EPOLLERR | EPOLLHUP)) on_readable(c);
            }
        }
        for (int i = 0; i < n; ++i) close_conn(conns[std::size_t(i)]);
        send(fmt::format("bye events_total={} bytes_total={} cpu={:.6f}\n", events_total, bytes_total, cpu_self_s()));
        return 0;
    }
};

bool Conn::on_head(const sseload::ResponseHead& head) {
    if (head.status != 200) {
        w->fail(*this, fmt::format("http_{}", head.status));
        return false;
    }
    if (!head.event_stream) {
        w->fail(*this, "not_event_stream");
        return false;
    }
    st = St::established;
    --w->pending;
    ++w->established;
    return true;
}

void Conn::on_event(std::string_view, std::string_view data, std::string_view) {
    ++w->events_total;
    if (!w->in_window) return;
    ++w->win_events;
    std::int64_t produced = 0;
    switch (w->o.latency_from) {
    case LatencyFrom::none:
        return;
    case LatencyFrom::unix_us: {
        auto v = sseload::first_unix_us(data);
        if (!v) {
            ++w->win_unparsed;
            return;
        }
        produced = *v;
        break;
    }
    case LatencyFrom::iso: {
        auto t = sseload::first_iso8601(data);
        if (!t) {
            ++w->win_unparsed;
            return;
        }
        produced = t->unix_us;
        break;
    }
    }
    std::int64_t lat = w->now_wall_us - produced;
    w->hist.record(lat > 0 ? std::uint64_t(lat) : 0);
    if (w->o.by_stamp) {
        auto it = w->by_stamp.find(produced);
        if (it == w->by_stamp.end() && w->by_stamp.size() < Worker::max_stamps)
            it = w->by_stamp.emplace(produced, std::pair<std::uint64_t, std::int64_t>{0, lat}).first;
        if (it != w->by_stamp.end()) {
            ++it->second.first;
            it->second.second = std::max(it->second.second, lat);
        }
    }
}

// ------------------------------------------------------------------------------------------------
// Parent: forks the workers, sums what they report, prints the phases

struct Child {
    pid_t pid = -1;
    int ctrl = -1;    // we write commands
    int report = -1;  // we read lines
    std::string buf;
    bool alive = true;
};

struct Tokens {
    std::map<std::string, std::string> kv;
    std::vector<std::pair<std::string, std::uint64_t>> failures;
    std::vector<std::pair<std::size_t, std::uint64_t>> hist;
    std::vector<std::tuple<std::int64_t, std::uint64_t, std::int64_t>> stamps;  // stamp, deliveries, last latency
};

Tokens parse_tokens(std::string_view line) {
    Tokens t;
    std::size_t pos = line.find(' ');
    while (pos != std::string_view::npos && pos < line.size()) {
        std::size_t start = pos + 1;
        std::size_t end = line.find(' ', start);
        std::string_view tok = line.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start);
        pos = end;
        std::size_t eq = tok.rfind('=');
        if (eq == std::string_view::npos) continue;
        std::string key(tok.substr(0, eq)), value(tok.substr(eq + 1));
        if (key.rfind("f:", 0) == 0) t.failures.emplace_back(key.substr(2), std::strtoull(value.c_str(), nullptr, 10));
        else if (key.rfind("h:", 0) == 0)
            t.hist.emplace_back(std::strtoull(key.c_str() + 2, nullptr, 10), std::strtoull(value.c_str(), nullptr, 10));
        else if (key.rfind("s:", 0) == 0) {
            char* rest = nullptr;
            std::uint64_t count = std::strtoull(value.c_str(), &rest, 10);
            std::int64_t last = *rest == ',' ? std::strtoll(rest + 1, nullptr, 10) : 0;
            t.stamps.emplace_back(std::strtoll(key.c_str() + 2, nullptr, 10), count, last);
        } else t.kv[key] = value;
    }
    return t;
}

std::uint64_t u(const Tokens& t, const char* k) {
    auto it = t.kv.find(k);
    return it == t.kv.end() ? 0 : std::strtoull(it->second.c_str(), nullptr, 10);
}

double d(const Tokens& t, const char* k) {
    auto it = t.kv.find(k);
    return it == t.kv.end() ? 0 : std::strtod(it->second.c_str(), nullptr);
}

class Parent {
public:
    Parent(const Options& o, std::vector<Child>& cs) : o_(o), cs_(cs) {}

    // Reads until each child has sent a line starting with `kind` (other lines are handled on the
    // way); returns those lines, one per child. deadline_ns 0: none.
    std::vector<std::string> collect(const std::string& kind, std::vector<int> who = {}) {
        if (who.empty())
            for (int i = 0; i < int(cs_.size()); ++i) who.push_back(i);
        std::vector<std::string> got(cs_.size());
        std::vector<bool> have(cs_.size(), false);
        std::size_t need = who.size();
        std::int64_t next_print = mono_ns() + 1000000000;
        while (need > 0) {
            std::vector<pollfd> pfds;
            std::vector<int> idx;
            for (int i : who)
                if (!have[std::size_t(i)] && cs_[std::size_t(i)].alive) {
                    pfds.push_back({cs_[std::size_t(i)].report, POLLIN, 0});
                    idx.push_back(i);
                }
            if (pfds.empty()) break;
            int r = ::poll(pfds.data(), pfds.size(), 200);
            if (r < 0 && errno != EINTR) break;
            for (std::size_t k = 0; k < pfds.size(); ++k) {
                if (!pfds[k].revents) continue;
                Child& c = cs_[std::size_t(idx[k])];
                char b[65536];
                ssize_t n = ::read(c.report, b, sizeof b);
                if (n <= 0) {
                    if (n < 0 && errno == EINTR) continue;
                    c.alive = false;
                    fmt::print(stderr, "sse-load: worker {} (pid {}) ended unexpectedly\n", idx[k], c.pid);
                    --need;
                    continue;
                }
                c.buf.append(b, std::size_t(n));
                std::size_t nl;
                while ((nl = c.buf.find('\n')) != std::string::npos) {
                    std::string line = c.buf.substr(0, nl);
                    c.buf.erase(0, nl + 1);
                    if (line.rfind(kind, 0) == 0 && !have[std::size_t(idx[k])]) {
                        got[std::size_t(idx[k])] = line;
                        have[std::size_t(idx[k])] = true;
                        --need;
                    } else if (line.rfind("progress", 0) == 0) {
                        progress_[idx[k]] = parse_tokens(line);
                    }
                }
            }
            if (!o_.quiet && kind == "ramped" && !progress_.empty() && mono_ns() >= next_print) {
                next_print += 1000000000;
                std::uint64_t st = 0, est = 0, fl = 0;
                for (auto& [i, t] : progress_) {
                    st += u(t, "started");
                    est += u(t, "est");
                    fl += u(t, "failed");
                }
                fmt::print(stderr, "sse-load: ramping: {} started, {} established, {} failed\n", st, est, fl);
            }
        }
        return got;
    }

    void broadcast(const std::string& cmd) {
        for (auto& c : cs_)
            if (c.alive) (void)!::write(c.ctrl, cmd.data(), cmd.size());
    }

    void send_to(int i, const std::string& cmd) { (void)!::write(cs_[std::size_t(i)].ctrl, cmd.data(), cmd.size()); }

    // Waits `seconds` while the workers go on (nothing to read from them meanwhile but progress).
    void sleep_for(double seconds) {
        std::int64_t end = mono_ns() + std::int64_t(seconds * 1e9);
        while (true) {
            std::int64_t left = end - mono_ns();
            if (left <= 0) break;
            timespec ts{time_t(left / 1000000000), long(left % 1000000000)};
            nanosleep(&ts, nullptr);
        }
    }

    std::map<int, Tokens> progress_;

private:
    const Options& o_;
    std::vector<Child>& cs_;
};

void emit(const std::string& json) {
    std::fputs(json.c_str(), stdout);
    std::fputc('\n', stdout);
    std::fflush(stdout);
}

std::string json_failures(const std::map<std::string, std::uint64_t>& f) {
    std::string s = "{";
    bool first = true;
    for (auto& [k, v] : f) {
        s += fmt::format("{}\"{}\":{}", first ? "" : ",", k, v);  // reasons are [A-Za-z0-9_]
        first = false;
    }
    return s + "}";
}

int run(Options& o) {
    // Descriptors: each worker needs its streams plus a few.
    rlimit rl{};
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    getrlimit(RLIMIT_NOFILE, &rl);
    int per = (o.streams + o.processes - 1) / o.processes;
    if (rlim_t(per + 32) > rl.rlim_cur) {
        int need = int((std::uint64_t(o.streams) + rl.rlim_cur - 33) / (rl.rlim_cur - 32));
        usage_error(fmt::format("{} streams per process need {} descriptors; the limit is {}: use --processes {} or more",
                                per, per + 32, rl.rlim_cur, need));
    }
    std::size_t nsrc = std::max<std::size_t>(1, o.source_addrs.size());
    if (o.streams / nsrc > 28000)
        fmt::print(stderr, "sse-load: warning: {} streams per source address; loopback has ~28,000 ephemeral ports per "
                           "(source, destination): add --sources\n", o.streams / nsrc);

    ::signal(SIGPIPE, SIG_IGN);
    std::fflush(stdout);
    std::fflush(stderr);
    std::vector<Child> cs(std::size_t(o.processes));
    pid_t parent_pid = ::getpid();
    for (int w = 0; w < o.processes; ++w) {
        int down[2], up[2];
        if (::pipe2(down, O_CLOEXEC) < 0 || ::pipe2(up, O_CLOEXEC) < 0) {
            fmt::print(stderr, "sse-load: pipe: {}\n", std::strerror(errno));
            return 1;
        }
        pid_t pid = ::fork();
        if (pid < 0) {
            fmt::print(stderr, "sse-load: fork: {}\n", std::strerror(errno));
            return 1;
        }
        if (pid == 0) {
            ::prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (::getppid() != parent_pid) _exit(3);
            for (int k = 0; k < w; ++k) {  // the other workers' pipes are not ours
                ::close(cs[std::size_t(k)].ctrl);
                ::close(cs[std::size_t(k)].report);
            }
            ::close(down[1]);
            ::close(up[0]);
            ::fcntl(down[0], F_SETFL, O_NONBLOCK);
            Worker wk(o, w, down[0], up[1]);
            for (int i = w; i < o.streams; i += o.processes) wk.indices.push_back(i);
            int rc = wk.run();
            std::fflush(stderr);
            _exit(rc);
        }
        ::close(down[0]);
        ::close(up[1]);
        cs[std::size_t(w)] = Child{pid, down[1], up[0], {}, true};
    }

    Parent p(o, cs);
    auto t_start = mono_ns();
    if (!o.quiet)
        fmt::print(stderr, "sse-load: {} streams to {}:{}{} at {} per second, {} process(es), {} source address(es)\n",
                   o.streams, o.host, o.port, o.path, o.ramp > 0 ? fmt::format("{:g}", o.ramp) : std::string("max"),
                   o.processes, nsrc);

    // 1. ramped
    auto ramped = p.collect("ramped");
    std::uint64_t est = 0, failed = 0;
    std::map<std::string, std::uint64_t> failures;
    for (auto& l : ramped) {
        auto t = parse_tokens(l);
        est += u(t, "est");
        failed += u(t, "failed");
        for (auto& [k, v] : t.failures) failures[k] += v;
    }
    emit(fmt::format("{{\"phase\":\"ramped\",\"t\":{:.6f},\"streams\":{},\"established\":{},\"failed\":{},\"failures\":{}}}",
                     wall_s(), o.streams, est, failed, json_failures(failures)));
    if (!o.quiet)
        fmt::print(stderr, "sse-load: ramped in {:.1f} s: {} established, {} failed {}\n",
                   double(mono_ns() - t_start) / 1e9, est, failed, json_failures(failures));

    // 2. settle, then the window
    p.sleep_for(o.settle);
    std::int64_t ws = mono_ns();
    std::int64_t we = ws + std::int64_t(o.hold * 1e9);
    double ws_wall = wall_s();
    p.broadcast(fmt::format("window {} {}\n", ws, we));
    auto wstart = p.collect("wstart");
    est = 0;
    for (auto& l : wstart) est += u(parse_tokens(l), "est");
    emit(fmt::format("{{\"phase\":\"window_start\",\"t\":{:.6f},\"established\":{}}}", ws_wall, est));

    auto results = p.collect("result");
    double we_wall = ws_wall + o.hold;
    LatencyHistogram hist;
    std::uint64_t events = 0, bytes = 0, lost = 0, unparsed = 0;
    double cpu = 0, cpu_max = 0;
    std::map<std::int64_t, std::pair<std::uint64_t, std::int64_t>> stamps;
    est = failed = 0;
    failures.clear();
    for (auto& l : results) {
        auto t = parse_tokens(l);
        est += u(t, "est");
        failed += u(t, "failed");
        events += u(t, "events");
        bytes += u(t, "bytes");
        lost += u(t, "lost");
        unparsed += u(t, "unparsed");
        double c = d(t, "cpu");
        cpu += c;
        cpu_max = std::max(cpu_max, c);
        hist.merge_max(u(t, "max"));
        for (auto& [k, v] : t.failures) failures[k] += v;
        for (auto& [i, v] : t.hist)
            if (i < LatencyHistogram::buckets) hist.add(i, v);
        for (auto& [stamp, count, last] : t.stamps) {
            auto& s = stamps[stamp];
            s.first += count;
            s.second = std::max(s.second, last);
        }
    }
    std::string by_stamp;
    if (o.by_stamp) {
        by_stamp = ",\"by_stamp\":[";
        for (auto& [stamp, seen] : stamps)
            by_stamp += fmt::format("{}{{\"t_us\":{},\"deliveries\":{},\"last_us\":{}}}", by_stamp.back() == '[' ? "" : ",",
                                    stamp, seen.first, seen.second);
        by_stamp += "]";
    }
    std::string latency = fmt::format("{{\"count\":{},\"p50\":{},\"p99\":{},\"max\":{},\"unparsed\":{},\"from\":\"{}\",\"resolution_us\":{}}}",
                                      hist.count(), hist.quantile(0.5), hist.quantile(0.99), hist.max(), unparsed,
                                      o.latency_from_name, o.latency_from == LatencyFrom::iso ? 1000000 : 1);
    emit(fmt::format("{{\"phase\":\"window_end\",\"t\":{:.6f},\"window_s\":{:g},\"established\":{},\"failed\":{},\"failures\":{},"
                     "\"events\":{},\"bytes\":{},\"latency_us\":{},\"streams_lost_in_window\":{},\"client_cpu_s\":{:.3f},"
                     "\"client_cpu_max_process_s\":{:.3f}{}}}",
                     we_wall, o.hold, est, failed, json_failures(failures), events, bytes, latency, lost, cpu, cpu_max,
                     by_stamp));
    if (!o.quiet) {
        fmt::print(stderr, "sse-load: window {:g} s: {} established, {} failed, {} lost; {} events ({:.0f}/s), {} bytes\n",
                   o.hold, est, failed, lost, events, o.hold > 0 ? double(events) / o.hold : 0.0, bytes);
        if (o.latency_from != LatencyFrom::none)
            fmt::print(stderr, "sse-load: latency{}: p50 {} us, p99 {} us, max {} us over {} events{}\n",
                       o.latency_from == LatencyFrom::iso ? " (ISO time: 1 s resolution)" : "", hist.quantile(0.5),
                       hist.quantile(0.99), hist.max(), hist.count(),
                       unparsed ? fmt::format(" ({} without a timestamp)", unparsed) : std::string());
        fmt::print(stderr, "sse-load: client CPU {:.3f} s in the window ({:.1f} % of one core; busiest process {:.1f} %)\n",
                   cpu, o.hold > 0 ? 100 * cpu / o.hold : 0.0, o.hold > 0 ? 100 * cpu_max / o.hold : 0.0);
    }

    // 3. optional: close streams one a second, for the driver to time the servers noticing
    for (int k = 0; k < o.close_one_per_second; ++k) {
        std::int64_t due = mono_ns() + 1000000000;
        // the first worker (in turn) that still holds an established stream
        bool any = false;
        for (int tries = 0; tries < o.processes && !any; ++tries) {
            int w = (k + tries) % o.processes;
            if (!cs[std::size_t(w)].alive) continue;
            p.send_to(w, "close1\n");
            auto got = p.collect("closed", {w});
            if (got[std::size_t(w)].empty() || got[std::size_t(w)] == "closed none") continue;
            auto t = parse_tokens(got[std::size_t(w)]);
            std::uint64_t tus = u(t, "t");
            emit(fmt::format("{{\"phase\":\"closed\",\"t\":{}.{:06},\"stream\":{},\"local_port\":{}}}", tus / 1000000,
                             tus % 1000000, u(t, "stream"), u(t, "port")));
            any = true;
        }
        if (!any) break;
        if (k + 1 < o.close_one_per_second) p.sleep_for(double(due - mono_ns()) / 1e9);
    }

    // 4. done
    p.broadcast("quit\n");
    auto byes = p.collect("bye");
    std::uint64_t events_total = 0;
    for (auto& l : byes) events_total += u(parse_tokens(l), "events_total");
    double cpu_total = 0;
    for (auto& c : cs) {
        int status = 0;
        rusage ru{};
        ::wait4(c.pid, &status, 0, &ru);
        cpu_total += double(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) + double(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
        ::close(c.ctrl);
        ::close(c.report);
    }
    cpu_total += cpu_self_s();
    emit(fmt::format("{{\"phase\":\"done\",\"t\":{:.6f},\"events_total\":{},\"client_cpu_total_s\":{:.3f}}}", wall_s(),
                     events_total, cpu_total));
    if (!o.quiet)
        fmt::print(stderr, "sse-load: done in {:.1f} s; client CPU {:.3f} s in all\n", double(mono_ns() - t_start) / 1e9,
                   cpu_total);
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    Options o;
    CLI::App app{"sse-load: opens N event streams through a web server and measures them (events, bytes, latency)"};
    app.add_option("--host", o.host, "server address or name")->capture_default_str();
    app.add_option("--port", o.port, "server port")->capture_default_str();
    app.add_option("--path", o.path, "request path (and query)")->capture_default_str();
    app.add_option("--streams", o.streams, "event streams to open")->capture_default_str();
    app.add_option("--ramp", o.ramp, "new connections per second (0: as fast as possible)")->capture_default_str();
    app.add_option("--hold", o.hold, "the measuring window, seconds")->capture_default_str();
    app.add_option("--settle", o.settle, "seconds between ramped and the window")->capture_default_str();
    app.add_option("--processes", o.processes, "worker processes (each holds streams/processes)")->capture_default_str();
    app.add_option("--sources", o.sources, "source addresses: a count K (127.0.0.1..127.0.0.K) or a list a,b,c");
    app.add_option("--latency-from", o.latency_from_name, "timestamp in each event's data: unix_us (the first number: microseconds since the epoch, or seconds with a fraction), iso (ISO 8601, at its resolution) or none")
        ->capture_default_str();
    app.add_option("--connect-timeout", o.connect_timeout, "seconds for a stream to get its response headers")
        ->capture_default_str();
    app.add_option("--header", o.headers, "extra request header 'Name: value' (repeatable; replaces a default)");
    app.add_option("--close-one-per-second", o.close_one_per_second,
                   "after the window, close K streams one a second, printing each (phase closed)");
    app.add_option("--max-pending", o.max_pending, "at most this many connections awaiting their headers per process (0: no limit)")
        ->capture_default_str();
    app.add_flag("--by-stamp", o.by_stamp,
                 "with --latency-from: per timestamp (one a publish), its deliveries and the last one's latency "
                 "in window_end's by_stamp (at most 1,000 timestamps a process)");
    app.add_flag("--quiet", o.quiet, "no progress or summary on stderr");
    try {
        app.parse(argc, argv);
    } catch (const CLI::CallForHelp& e) {
        return app.exit(e);
    } catch (const CLI::ParseError& e) {
        app.exit(e);
        return 2;
    }
    finish_options(o);
    return run(o);
}
