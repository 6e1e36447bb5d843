// sse-load's incremental parsers: an HTTP/1.x response (status line, headers, then a chunked,
// Content-Length or read-until-close body) and the text/event-stream format (WHATWG HTML,
// "Parsing an event stream"), each fed whatever one read() returned, split anywhere. Plus the two
// timestamp readers for latency: the first integer in an event's data (microseconds since the
// epoch) and an ISO 8601 time in it.
//
// Header-only, standard library only, so that tests/unit/test_sse_load_parser.cpp tests this very
// code. Nothing here allocates per event once its buffers have grown to the stream's largest event.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace sseload {

// ------------------------------------------------------------------------------------------------
// The event stream

class SseSink {
public:
    virtual ~SseSink() = default;
    // type is "message" when the event named none; last_id is the stream's last event id.
    virtual void on_event(std::string_view type, std::string_view data, std::string_view last_id) = 0;
    virtual void on_comment(std::string_view /*text after ':'*/) {}
    virtual void on_retry(std::uint64_t /*ms*/) {}
};

class SseParser {
public:
    explicit SseParser(SseSink* sink = nullptr) : sink_(sink) {}
    void set_sink(SseSink* sink) { sink_ = sink; }

    void feed(const char* p, std::size_t n) {
        std::size_t i = 0;
        if (cr_pending_ && n > 0) {  // a CR ended the previous feed: an LF here belongs to it
            cr_pending_ = false;
            if (p[0] == '\n') i = 1;
        }
        while (i < n) {
            std::size_t j = i;
            while (j < n && p[j] != '\n' && p[j] != '\r') ++j;
            if (j == n) {  // an unfinished line: keep it for the next feed
                if (line_.size() + (n - i) <= max_line) line_.append(p + i, n - i);
                else overlong_ = true;
                break;
            }
            if (line_.empty() && !overlong_) {
                line(std::string_view(p + i, j - i));
            } else {
                if (line_.size() + (j - i) <= max_line) line_.append(p + i, j - i);
                else overlong_ = true;
                if (!overlong_) line(line_);
                line_.clear();
                overlong_ = false;
            }
            if (p[j] == '\r') {
                if (j + 1 < n) {
                    if (p[j + 1] == '\n') ++j;
                } else {
                    cr_pending_ = true;
                }
            }
            i = j + 1;
        }
    }

    const std::string& last_event_id() const { return id_; }
    std::optional<std::uint64_t> retry() const { return retry_; }
    std::uint64_t events() const { return events_; }
    std::uint64_t comments() const { return comments_; }
    // A line longer than this is dropped whole (a broken or hostile stream must not eat memory).
    std::size_t max_line = 1 << 20;

private:
    void line(std::string_view l) {
        if (first_line_) {
            first_line_ = false;
            if (l.substr(0, 3) == "\xEF\xBB\xBF") l.remove_prefix(3);  // a leading BOM is ignored
        }
        if (l.empty()) return dispatch();
        if (l[0] == ':') {
            ++comments_;
            if (sink_) sink_->on_comment(l.substr(1));
            return;
        }
        std::string_view field = l, value;
        if (auto c = l.find(':'); c != std::string_view::npos) {
            field = l.substr(0, c);
            value = l.substr(c + 1);
            if (!value.empty() && value[0] == ' ') value.remove_prefix(1);
        }
        if (field == "data") {
            data_.append(value);
            data_.push_back('\n');
        } else if (field == "event") {
            type_.assign(value);
        } else if (field == "id") {
            if (value.find('\0') == std::string_view::npos) id_.assign(value);
        } else if (field == "retry") {
            if (value.empty()) return;
            std::uint64_t v = 0;
            for (char c : value) {
                if (c < '0' || c > '9') return;
                v = v * 10 + std::uint64_t(c - '0');
            }
            retry_ = v;
            if (sink_) sink_->on_retry(v);
        }  // any other field is ignored
    }

    void dispatch() {
        if (data_.empty()) {  // nothing to dispatch; the event type is reset all the same
            type_.clear();
            return;
        }
        data_.pop_back();  // the last data line's LF
        ++events_;
        if (sink_) sink_->on_event(type_.empty() ? std::string_view("message") : std::string_view(type_), data_, id_);
        data_.clear();
        type_.clear();
    }

    SseSink* sink_;
    std::string line_, data_, type_, id_;
    std::optional<std::uint64_t> retry_;
    std::uint64_t events_ = 0, comments_ = 0;
    bool cr_pending_ = false, overlong_ = false, first_line_ = true;
};

// ------------------------------------------------------------------------------------------------
// The HTTP response

struct ResponseHead {
    int status = 0;
    int minor_version = 1;
    bool event_stream = false;  // Content-Type: text/event-stream (any parameters)
    bool chunked = false;
    std::int64_t content_length = -1;  // -1: none given
};

class HttpSink {
public:
    virtual ~HttpSink() = default;
    // Return false to stop (the response is not one to read on); the rest is then left unparsed.
    virtual bool on_head(const ResponseHead& head) = 0;
    virtual void on_body(const char* p, std::size_t n) = 0;
};

class ResponseParser {
public:
    enum class Result { more, stopped, ended, error };

    explicit ResponseParser(HttpSink* sink = nullptr) : sink_(sink) {}
    void set_sink(HttpSink* sink) { sink_ = sink; }

    Result feed(const char* p, std::size_t n) {
        std::size_t i = 0;
        while (i < n) {
            switch (state_) {
            case State::head: {
                std::size_t old = head_buf_.size();
                std::size_t take = n - i;
                if (old + take > max_head) take = max_head - old;
                head_buf_.append(p + i, take);
                std::size_t from = old >= 3 ? old - 3 : 0;
                std::size_t end = find_head_end(from);
                if (end == std::string::npos) {
                    if (head_buf_.size() >= max_head) return fail("response headers too large");
                    return Result::more;
                }
                i += end - old;  // the first body byte in p
                if (!parse_head(std::string_view(head_buf_).substr(0, end))) return Result::error;
                head_buf_.clear();
                head_buf_.shrink_to_fit();
                if (head_.status >= 100 && head_.status < 200) {  // an interim response: the real one follows
                    head_ = ResponseHead{};
                    continue;
                }
                if (!sink_ || !sink_->on_head(head_)) {
                    state_ = State::stopped;
                    return Result::stopped;
                }
                if (head_.chunked) state_ = State::chunk_size;
                else if (head_.content_length >= 0) {
                    remaining_ = std::uint64_t(head_.content_length);
                    state_ = State::identity;
                    if (remaining_ == 0) return end_body();
                } else state_ = State::until_close;
                break;
            }
            case State::identity: {
                std::size_t take = n - i;
                if (take > remaining_) take = std::size_t(remaining_);
                sink_->on_body(p + i, take);
                i += take;
                remaining_ -= take;
                if (remaining_ == 0) return end_body();
                break;
            }
            case State::until_close:
                sink_->on_body(p + i, n - i);
                i = n;
                break;
            case State::chunk_size: {
                char c = p[i++];
                int d = hex(c);
                if (d >= 0) {
                    if (++digits_ > 12) return fail("chunk size too large");
                    remaining_ = remaining_ * 16 + std::uint64_t(d);
                } else if (digits_ == 0) {
                    return fail("bad chunk size");
                } else if (c == ';' || c == ' ' || c == '\t') {
                    state_ = State::chunk_ext;
                } else if (c == '\r') {
                    state_ = State::chunk_size_lf;
                } else if (c == '\n') {
                    chunk_start();
                } else {
                    return fail("bad chunk size");
                }
                break;
            }
            case State::chunk_ext:
                if (p[i++] == '\n') chunk_start();
                break;
            case State::chunk_size_lf:
                if (p[i++] != '\n') return fail("bad chunk size line end");
                chunk_start();
                break;
            case State::chunk_data: {
                std::size_t take = n - i;
                if (take > remaining_) take = std::size_t(remaining_);
                sink_->on_body(p + i, take);
                i += take;
                remaining_ -= take;
                if (remaining_ == 0) state_ = State::chunk_data_cr;
                break;
            }
            case State::chunk_data_cr: {
                char c = p[i++];
                if (c == '\r') state_ = State::chunk_data_lf;
                else if (c == '\n') state_ = State::chunk_size;
                else return fail("chunk data longer than its size");
                break;
            }
            case State::chunk_data_lf:
                if (p[i++] != '\n') return fail("chunk data longer than its size");
                state_ = State::chunk_size;
                break;
            case State::trailer_line_start: {
                char c = p[i++];
                if (c == '\n') return end_body();
                state_ = c == '\r' ? State::trailer_cr : State::trailer_line;
                break;
            }
            case State::trailer_cr:
                if (p[i++] == '\n') return end_body();
                state_ = State::trailer_line;
                break;
            case State::trailer_line:
                if (p[i++] == '\n') state_ = State::trailer_line_start;
                break;
            case State::done:
                return Result::ended;  // bytes after the end of the response are ignored
            case State::stopped:
                return Result::stopped;
            case State::failed:
                return Result::error;
            }
        }
        return state_ == State::done ? Result::ended : Result::more;
    }

    // The connection closed: ended when the body runs until the close, an error otherwise.
    Result eof() {
        if (state_ == State::until_close) {
            state_ = State::done;
            return Result::ended;
        }
        if (state_ == State::done) return Result::ended;
        if (state_ == State::failed) return Result::error;
        return fail(state_ == State::head ? "closed before the response headers" : "closed before the end of the body");
    }

    bool head_done() const { return state_ != State::head; }
    const ResponseHead& head() const { return head_; }
    const std::string& error() const { return error_; }
    std::size_t max_head = 64 * 1024;

private:
    enum class State {
        head, identity, until_close, chunk_size, chunk_ext, chunk_size_lf, chunk_data, chunk_data_cr, chunk_data_lf,
        trailer_line_start, trailer_cr, trailer_line, done, stopped, failed
    };

    static int hex(char c) {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        if (c >= 'A' && c <= 'F') return c - 'A' + 10;
        return -1;
    }

    static char lower(char c) { return (c >= 'A' && c <= 'Z') ? char(c - 'A' + 'a') : c; }

    static bool iequals(std::string_view a, std::string_view b) {
        if (a.size() != b.size()) return false;
        for (std::size_t k = 0; k < a.size(); ++k)
            if (lower(a[k]) != lower(b[k])) return false;
        return true;
    }

    static bool icontains(std::string_view hay, std::string_view needle) {
        if (needle.size() > hay.size()) return false;
        for (std::size_t k = 0; k + needle.size() <= hay.size(); ++k)
            if (iequals(hay.substr(k, needle.size()), needle)) return true;
        return false;
    }

    static std::string_view trim(std::string_view s) {
        while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
        while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
        return s;
    }

    // The offset just past the blank line that ends the head ("\r\n\r\n" or a bare "\n\n"), or npos.
    std::size_t find_head_end(std::size_t from) const {
        const std::string& b = head_buf_;
        for (std::size_t k = from; k < b.size(); ++k) {
            if (b[k] != '\n') continue;
            if (k + 1 < b.size() && b[k + 1] == '\n') return k + 2;
            if (k + 2 < b.size() && b[k + 1] == '\r' && b[k + 2] == '\n') return k + 3;
        }
        return std::string::npos;
    }

    bool parse_head(std::string_view h) {
        head_ = ResponseHead{};
        std::size_t eol = h.find('\n');
        std::string_view status_line = trim(h.substr(0, eol));
        // HTTP/1.x SSS reason
        if (status_line.size() < 12 || status_line.substr(0, 7) != "HTTP/1." || status_line[8] != ' ') {
            fail("bad status line");
            return false;
        }
        head_.minor_version = status_line[7] - '0';
        int status = 0;
        for (std::size_t k = 9; k < 12; ++k) {
            char c = status_line[k];
            if (c < '0' || c > '9') {
                fail("bad status code");
                return false;
            }
            status = status * 10 + (c - '0');
        }
        head_.status = status;
        std::size_t pos = eol + 1;
        while (pos < h.size()) {
            std::size_t e = h.find('\n', pos);
            if (e == std::string_view::npos) e = h.size();
            std::string_view line = h.substr(pos, e - pos);
            pos = e + 1;
            if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
            if (line.empty()) break;
            std::size_t colon = line.find(':');
            if (colon == std::string_view::npos) continue;  // obs-fold or junk: ignored
            std::string_view name = trim(line.substr(0, colon)), value = trim(line.substr(colon + 1));
            if (iequals(name, "content-type")) {
                std::string_view media = trim(value.substr(0, value.find(';')));
                head_.event_stream = iequals(media, "text/event-stream");
            } else if (iequals(name, "transfer-encoding")) {
                head_.chunked = icontains(value, "chunked");
            } else if (iequals(name, "content-length")) {
                std::int64_t v = 0;
                if (value.empty()) continue;
                for (char c : value) {
                    if (c < '0' || c > '9' || v > (std::int64_t(1) << 50)) {
                        fail("bad Content-Length");
                        return false;
                    }
                    v = v * 10 + (c - '0');
                }
                head_.content_length = v;
            }
        }
        if (head_.chunked) head_.content_length = -1;  // Transfer-Encoding wins (RFC 9112 6.3)
        return true;
    }

    void chunk_start() {
        digits_ = 0;
        if (remaining_ == 0) {
            state_ = State::trailer_line_start;
        } else {
            state_ = State::chunk_data;
        }
    }

    Result end_body() {
        state_ = State::done;
        return Result::ended;
    }

    Result fail(const char* why) {
        error_ = why;
        state_ = State::failed;
        return Result::error;
    }

    HttpSink* sink_;
    State state_ = State::head;
    std::string head_buf_;
    ResponseHead head_;
    std::uint64_t remaining_ = 0;
    int digits_ = 0;
    std::string error_;
};

// ------------------------------------------------------------------------------------------------
// Timestamps in an event's data, for the latency from production to receipt

// The first run of ASCII digits in data, as an integer (microseconds since the epoch for fastsse's
// FASTSSE_FORMAT unix_us, or a PHP loop printing (int)(microtime(true) * 1e6)).
inline std::optional<std::int64_t> first_integer(std::string_view data, std::size_t* end = nullptr) {
    std::size_t k = 0;
    while (k < data.size() && (data[k] < '0' || data[k] > '9')) ++k;
    if (k == data.size()) return std::nullopt;
    std::int64_t v = 0;
    int digits = 0;
    for (; k < data.size() && data[k] >= '0' && data[k] <= '9'; ++k) {
        if (++digits > 18) return std::nullopt;
        v = v * 10 + (data[k] - '0');
    }
    if (end) *end = k;
    return v;
}

// The timestamp for --latency-from unix_us: the first number in data, in microseconds since the
// epoch; except that a number with a fraction and under 10^11 (PHP's microtime(true) printed as it
// is, "1795264600.318158") is read as seconds.
inline std::optional<std::int64_t> first_unix_us(std::string_view data) {
    std::size_t k = 0;
    auto v = first_integer(data, &k);
    if (!v || *v >= 100000000000 || k + 1 >= data.size() || data[k] != '.' || data[k + 1] < '0' || data[k + 1] > '9')
        return v;
    std::int64_t us = 0, scale = 100000;
    for (++k; k < data.size() && data[k] >= '0' && data[k] <= '9'; ++k, scale /= 10) us += (data[k] - '0') * scale;
    return *v * 1000000 + us;
}

// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil).
constexpr std::int64_t days_from_civil(std::int64_t y, unsigned m, unsigned d) {
    y -= m <= 2;
    const std::int64_t era = (y >= 0 ? y : y - 399) / 400;
    const unsigned yoe = unsigned(y - era * 400);
    const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + std::int64_t(doe) - 719468;
}

struct IsoTime {
    std::int64_t unix_us;
    bool has_fraction;  // false: only whole seconds (MDN's date(DATE_ISO8601), fastsse's json format)
};

// The first ISO 8601 date-time in data: YYYY-MM-DD(T| )HH:MM:SS[.fraction][Z|±HH:MM|±HHMM|±HH].
// No offset is read as UTC.
inline std::optional<IsoTime> first_iso8601(std::string_view s) {
    auto digit = [&](std::size_t k) { return k < s.size() && s[k] >= '0' && s[k] <= '9'; };
    auto num = [&](std::size_t k, int n) {
        int v = 0;
        for (int q = 0; q < n; ++q) v = v * 10 + (s[k + std::size_t(q)] - '0');
        return v;
    };
    for (std::size_t k = 0; k + 19 <= s.size(); ++k) {
        bool shape = true;
        for (std::size_t q : {0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18})
            if (!digit(k + q)) shape = false;
        if (!shape || s[k + 4] != '-' || s[k + 7] != '-' || (s[k + 10] != 'T' && s[k + 10] != 't' && s[k + 10] != ' ') ||
            s[k + 13] != ':' || s[k + 16] != ':')
            continue;
        int year = num(k, 4), month = num(k + 5, 2), day = num(k + 8, 2);
        int hour = num(k + 11, 2), minute = num(k + 14, 2), second = num(k + 17, 2);
        if (month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || minute > 59 || second > 60) continue;
        std::int64_t secs = days_from_civil(year, unsigned(month), unsigned(day)) * 86400 + hour * 3600 + minute * 60 + second;
        std::int64_t us = 0;
        bool fraction = false;
        std::size_t p = k + 19;
        if (p < s.size() && (s[p] == '.' || s[p] == ',') && digit(p + 1)) {
            fraction = true;
            ++p;
            std::int64_t scale = 100000;
            for (; digit(p); ++p) {
                us += (s[p] - '0') * scale;
                scale /= 10;
            }
        }
        std::int64_t offset = 0;
        if (p < s.size() && (s[p] == '+' || s[p] == '-') && digit(p + 1) && digit(p + 2)) {
            int sign = s[p] == '+' ? 1 : -1;
            int oh = num(p + 1, 2), om = 0;
            if (p + 3 < s.size() && s[p + 3] == ':' && digit(p + 4) && digit(p + 5)) om = num(p + 4, 2);
            else if (digit(p + 3) && digit(p + 4)) om = num(p + 3, 2);
            offset = sign * (oh * 3600 + om * 60);
        }
        return IsoTime{(secs - offset) * 1000000 + us, fraction};
    }
    return std::nullopt;
}

// ------------------------------------------------------------------------------------------------
// Latency histogram: log-linear (as HDR histograms), 128 sub-buckets per power of two, so any value
// is within 1/128 (0.8 %) of its bucket's bounds; exact below 256 µs. Recording is an index
// computation and an increment: cheap at millions of events a second.

class LatencyHistogram {
public:
    static constexpr int sub_bits = 7;
    static constexpr std::uint64_t sub = 1u << sub_bits;  // 128
    static constexpr int max_msb = 40;                   // 2^41 µs, 25 days: larger values are clamped
    static constexpr std::size_t buckets = 2 * sub + std::size_t(max_msb - sub_bits) * sub;

    static std::size_t index(std::uint64_t v) {
        if (v < 2 * sub) return std::size_t(v);
        int msb = 63 - __builtin_clzll(v);
        if (msb > max_msb) {
            msb = max_msb;
            v = (std::uint64_t(2) << max_msb) - 1;
        }
        int shift = msb - sub_bits;
        return std::size_t(2 * sub + std::uint64_t(msb - sub_bits - 1) * sub + ((v >> shift) - sub));
    }
    // The largest value that falls in bucket i.
    static std::uint64_t upper(std::size_t i) {
        if (i < 2 * sub) return i;
        std::size_t k = (i - 2 * sub) / sub, s = (i - 2 * sub) % sub;
        return ((sub + s + 1) << (k + 1)) - 1;
    }

    void record(std::uint64_t v) {
        ++counts_[index(v)];
        ++count_;
        if (v > max_) max_ = v;
    }
    void add(std::size_t i, std::uint64_t n) {
        counts_[i] += n;
        count_ += n;
    }
    void merge_max(std::uint64_t m) {
        if (m > max_) max_ = m;
    }
    void clear() {
        for (auto& c : counts_) c = 0;
        count_ = max_ = 0;
    }

    std::uint64_t count() const { return count_; }
    std::uint64_t max() const { return max_; }
    std::uint64_t at(std::size_t i) const { return counts_[i]; }
    // The q-quantile (0 < q <= 1): the upper bound of the bucket holding it, never above the max.
    std::uint64_t quantile(double q) const {
        if (count_ == 0) return 0;
        std::uint64_t target = std::uint64_t(q * double(count_));
        if (double(target) < q * double(count_)) ++target;
        if (target == 0) target = 1;
        std::uint64_t seen = 0;
        for (std::size_t i = 0; i < buckets; ++i) {
            seen += counts_[i];
            if (seen >= target) return upper(i) < max_ ? upper(i) : max_;
        }
        return max_;
    }

private:
    std::uint64_t counts_[buckets] = {};
    std::uint64_t count_ = 0, max_ = 0;
};

}  // namespace sseload
