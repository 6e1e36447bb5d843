// The command producer. First its pure parts (sanitize_utf8, LineSplitter, command_argv,
// check_command), then CommandProducer on a real EventLoop and real ChildProcesses with a recording
// Sink: /bin/sh scripts as commands. The loop is stopped once a condition holds (checked after every
// Sink call and every couple of milliseconds); a guard timer stops it anyway after a generous
// deadline, so a bug fails the test instead of hanging it. Every child is ended and reaped by the
// ChildProcesses destructor at the end of each test.
#include <doctest/doctest.h>

#include <dlfcn.h>
#include <fcntl.h>
#include <regex.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <regex>
#include <string>
#include <system_error>
#include <vector>

#include <fmt/format.h>

#include "support.hpp"
#include "fastsse/loop/event_loop.hpp"
#include "fastsse/loop/process.hpp"
#include "fastsse/producers/command.hpp"
#include "fastsse/http/request.hpp"

// Every regcomp() this program makes, counted: the executable's own definition comes before
// glibc's, whose regcomp it calls through dlsym(RTLD_NEXT).
namespace {
size_t regcomp_calls = 0;
}

extern "C" int regcomp(regex_t* re, const char* pattern, int flags) {
    ++regcomp_calls;
    using Regcomp = int (*)(regex_t*, const char*, int);
    static auto real = reinterpret_cast<Regcomp>(::dlsym(RTLD_NEXT, "regcomp"));
    return real(re, pattern, flags);
}

using namespace std::chrono_literals;
using namespace std::string_literals;
using fastsse::CommandParam;
using fastsse::CommandSpec;
using fastsse::LineSplitter;
using fastsse::RequestError;
using fastsse::sanitize_utf8;

namespace {

using Given = std::map<std::string, std::string, std::less<>>;
using Lines = std::vector<std::string>;

const std::string fffd = "\xef\xbf\xbd";  // U+FFFD REPLACEMENT CHARACTER

std::string repeat(const std::string& s, size_t n) {
    std::string out;
    for (size_t i = 0; i < n; ++i) out += s;
    return out;
}

// ---------------------------------------------------------------------------------------------
// LineSplitter helpers

Lines split(size_t max_line, const std::vector<std::string>& chunks, bool flush = true) {
    LineSplitter splitter(max_line);
    Lines out;
    auto add = [&](std::string_view l) { out.emplace_back(l); };
    for (const auto& c : chunks) splitter.feed(c, add);
    if (flush) splitter.flush(add);
    return out;
}

// Text of 1- to 4-byte characters.
const std::string mixed_line = "a\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80z\xf0\x9f\x98\x80\xc3\xa9\xc3\xa9"
                               "\xe2\x82\xac" "bc\xe2\x82\xac\xf0\x9f\x98\x80.";

// ---------------------------------------------------------------------------------------------
// Command specs

CommandSpec make_spec(std::string name, std::vector<std::string> argv, Given settings = {}) {
    CommandSpec spec;
    spec.name = std::move(name);
    spec.argv = std::move(argv);
    spec.env = {{"PATH", "/usr/bin:/bin"}};
    fastsse::command_settings().load(spec, settings);
    return spec;
}

CommandSpec sh_spec(std::string name, std::string script, Given settings = {}) {
    return make_spec(std::move(name), {"/bin/sh", "-c", std::move(script)}, std::move(settings));
}

CommandParam with_pattern(std::string pattern, size_t max_length = 256, bool allow_leading_dash = false) {
    CommandParam p;
    p.pattern = std::move(pattern);
    p.max_length = max_length;
    p.allow_leading_dash = allow_leading_dash;
    return p;
}

CommandParam with_values(std::vector<std::string> values) {
    CommandParam p;
    p.values = std::move(values);
    return p;
}

// /bin/echo {host}, host a hostname-like value.
CommandSpec echo_spec(CommandParam host = with_pattern("[a-z0-9.-]+")) {
    auto spec = make_spec("echo", {"/bin/echo", "{host}"});
    spec.params["host"] = std::move(host);
    return spec;
}

// The RequestError command_argv throws, or a failed check.
std::optional<RequestError> argv_error(const CommandSpec& spec, std::string_view query) {
    try {
        auto argv = fastsse::command_argv(spec, query);
        FAIL_CHECK("no error; argv[1] = '" << (argv.size() > 1 ? argv[1] : "") << "'");
    } catch (const RequestError& e) {
        return e;
    }
    return std::nullopt;
}

// ---------------------------------------------------------------------------------------------
// A recording Sink and a loop harness

using fastsse_test::Sent;

using fastsse_test::Call;

class Harness;

class RecordingSink final : public fastsse_test::RecordingSink {
public:
    explicit RecordingSink(Harness& h);
    // The sends that are lines (not the exit event).
    std::vector<Sent> lines() const {
        std::vector<Sent> out;
        for (auto& c : calls)
            if (!c.finished && c.sent.event != "exit") out.push_back(c.sent);
        return out;
    }
    const std::optional<std::string>& sent_data(size_t i) const { return sent(i).data; }
    std::optional<Sent> exit_event() const {
        for (auto& c : calls)
            if (!c.finished && c.sent.event == "exit") return c.sent;
        return std::nullopt;
    }
};

// ChildProcesses reads SIGCHLD from a signalfd: it must be blocked before one is constructed.
struct SigchldBlocked {
    SigchldBlocked() {
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGCHLD);
        REQUIRE(::pthread_sigmask(SIG_BLOCK, &set, nullptr) == 0);
    }
};

class Harness {
public:
    SigchldBlocked blocked;
    fastsse::EventLoop loop;
    fastsse::ChildProcesses children{loop};
    fastsse::CommandProducer producer{loop, children};

    // Declares the commands, as the config file does at start and at each reload.
    void commands(std::vector<CommandSpec> specs) {
        std::map<std::string, CommandSpec> map;
        for (auto& s : specs) {
            CAPTURE(s.name);
            REQUIRE(fastsse::check_command(s) == "");
            map[s.name] = std::move(s);
        }
        producer.set_commands(std::move(map));
    }

    std::unique_ptr<fastsse::Subscription> open(fastsse::Sink& sink, const std::string& command,
                                                std::string_view query = "", std::string_view last_id = "") {
        fastsse::Params params{{"command", command}};
        fastsse::StreamStart start{last_id, query, params, 3000ms};
        return producer.open(sink, start);
    }

    // Runs the loop until done() holds (checked after every Sink call and every 2 ms), or until
    // the deadline.
    bool run_until(std::function<bool()> done, std::chrono::milliseconds deadline = 10s) {
        return waiter_.run_until(std::move(done), deadline);
    }
    void notify() { waiter_.notify(); }

private:
    fastsse_test::LoopWaiter waiter_{loop};
};

RecordingSink::RecordingSink(Harness& h) : fastsse_test::RecordingSink([&h] { h.notify(); }) {}

bool gone(pid_t pid) { return ::kill(pid, 0) < 0 && errno == ESRCH; }

// The exit event's data, checked against its one format.
struct ExitData {
    std::string code, signal, reason;
    long long duration_ms = -1;
};

ExitData parse_exit(const std::string& data) {
    static const std::regex format(
        R"re(\{"code": (null|\d+), "signal": (null|\d+), "duration_ms": (\d+), "reason": "([a-z]+)"\})re");
    std::smatch m;
    ExitData out;
    if (!std::regex_match(data, m, format)) {
        FAIL_CHECK("exit data in an unexpected format: " << data);
        return out;
    }
    out.code = m[1];
    out.signal = m[2];
    out.duration_ms = std::stoll(m[3]);
    out.reason = m[4];
    return out;
}

using fastsse_test::TempDir;

bool all_digits(std::string_view s) {
    return !s.empty() && s.find_first_not_of("0123456789") == std::string_view::npos;
}

// A shared command: numbered lines, every 10 ms, forever. Its argv names it (": NAME"), so that
// two of them never have the same argv (but see the test of that case).
CommandSpec ticks(std::string name = "ticks", Given settings = {{"linger", "0"}}) {
    auto script = ": " + name + "; i=0; while :; do i=$((i+1)); echo line$i; sleep 0.01; done";
    auto spec = sh_spec(std::move(name), script, settings);
    spec.shared = true;
    return spec;
}

// "<run>.<n>": the run part, checking the form and n.
std::string run_part(const Sent& e, size_t n) {
    REQUIRE(e.id);
    auto dot = e.id->find('.');
    REQUIRE(dot != std::string::npos);
    auto run = e.id->substr(0, dot);
    CHECK(all_digits(run));
    CHECK(e.id->substr(dot + 1) == std::to_string(n));
    return run;
}

}  // namespace

// =============================================================================================
// sanitize_utf8

TEST_CASE("sanitize_utf8: valid text passes unchanged") {
    const std::string valid[] = {
        "",
        "plain ASCII, punctuation !\"#$%&'()*+,-./ and ~\x7f",
        "\xc3\xa9t\xc3\xa9",                          // été: 2-byte sequences
        "\xe2\x82\xac 100",                           // € : 3 bytes
        "\xf0\x9f\x98\x80",                           // 😀: 4 bytes
        "\xc2\x80 \xdf\xbf",                          // U+0080, U+07FF
        "\xe0\xa0\x80 \xed\x9f\xbf \xee\x80\x80 \xef\xbf\xbf",  // U+0800, U+D7FF, U+E000, U+FFFF
        "\xf0\x90\x80\x80 \xf4\x8f\xbf\xbf",          // U+10000, U+10FFFF
        "tab\there, CR\r and LF\n stay",
        std::string("NUL\0inside", 10),
        std::string(1, '\0'),
    };
    for (const auto& s : valid) {
        CAPTURE(s);
        CHECK(sanitize_utf8(s) == s);
    }
}

TEST_CASE("sanitize_utf8: each byte of an invalid sequence becomes U+FFFD") {
    struct Case {
        std::string in, out;
    };
    const Case cases[] = {
        {"\x80", fffd},                                     // a lone continuation byte
        {"a\xbf" "b", "a" + fffd + "b"},
        {"\x80\x80\x80", fffd + fffd + fffd},
        {"\xc3", fffd},                                     // truncated at the end
        {"ab\xe2\x82", "ab" + fffd + fffd},
        {"\xf0\x9f\x98", fffd + fffd + fffd},
        {"\xe2\x82" "A", fffd + fffd + "A"},                // truncated by an ASCII byte
        {"\xc3\xc3\xa9", fffd + "\xc3\xa9"},                // a lead byte, then a whole sequence
        {"\xc0\x80", fffd + fffd},                          // overlong NUL
        {"\xc1\xbf", fffd + fffd},                          // overlong 2-byte
        {"\xe0\x80\x80", fffd + fffd + fffd},               // overlong 3-byte
        {"\xe0\x9f\xbf", fffd + fffd + fffd},
        {"\xf0\x80\x80\x80", fffd + fffd + fffd + fffd},    // overlong 4-byte
        {"\xf0\x8f\xbf\xbf", fffd + fffd + fffd + fffd},
        {"\xed\xa0\x80", fffd + fffd + fffd},               // UTF-16 surrogate U+D800
        {"\xed\xbf\xbf", fffd + fffd + fffd},               // U+DFFF
        {"\xf4\x90\x80\x80", fffd + fffd + fffd + fffd},    // U+110000
        {"\xf5\x80\x80\x80", fffd + fffd + fffd + fffd},
        {"\xff", fffd},
        {"\xfe", fffd},
        {"x\xff\xfey", "x" + fffd + fffd + "y"},
        {"\xf8\x88\x80\x80\x80", repeat(fffd, 5)},           // the old 5-byte form
    };
    for (const auto& c : cases) {
        CAPTURE(c.in);
        CHECK(sanitize_utf8(c.in) == c.out);
    }
}

TEST_CASE("sanitize_utf8: the output is valid UTF-8 whatever the input") {
    // Every byte value after every byte value: sanitizing the result changes nothing.
    for (int a = 0; a < 256; ++a) {
        std::string s;
        for (int b = 0; b < 256; ++b) {
            s += static_cast<char>(a);
            s += static_cast<char>(b);
        }
        auto once = sanitize_utf8(s);
        CAPTURE(a);
        CHECK(sanitize_utf8(once) == once);
    }
}

// =============================================================================================
// LineSplitter

TEST_CASE("LineSplitter: lines end at LF; a CR before it is dropped, a CR elsewhere kept") {
    CHECK(split(100, {"one\ntwo\n"}) == Lines{"one", "two"});
    CHECK(split(100, {"one\r\ntwo\r\n"}) == Lines{"one", "two"});
    CHECK(split(100, {"a\rb\n"}) == Lines{"a\rb"});
    CHECK(split(100, {"\r\n"}) == Lines{""});
    CHECK(split(100, {"x\r\r\n"}) == Lines{"x\r"});  // only the CR right before the LF goes
    CHECK(split(100, {"\n\n\nz\n"}) == Lines{"", "", "", "z"});
    CHECK(split(100, {""}) == Lines{});
    CHECK(split(100, {std::string("a\0b\n", 4)}) == Lines{std::string("a\0b", 3)});
}

TEST_CASE("LineSplitter: a partial line is kept until flush()") {
    LineSplitter s(100);
    Lines out;
    auto add = [&](std::string_view l) { out.emplace_back(l); };
    CHECK_FALSE(s.has_partial());
    s.feed("first\nsec", add);
    CHECK(out == Lines{"first"});
    CHECK(s.has_partial());
    s.feed("ond", add);
    CHECK(out == Lines{"first"});
    s.flush(add);
    CHECK(out == Lines{"first", "second"});
    CHECK_FALSE(s.has_partial());
    s.flush(add);  // nothing left: no empty line
    CHECK(out == Lines{"first", "second"});
    s.feed("\n", add);  // the break that completes the flushed line: no line of its own
    CHECK(out == Lines{"first", "second"});
    s.feed("end\n", add);
    CHECK(out == Lines{"first", "second", "end"});
    CHECK_FALSE(s.has_partial());
}

TEST_CASE("LineSplitter: the line break after a flushed line gives no empty line") {
    struct Case {
        std::vector<std::string> before, after;  // fed before and after the flush
        Lines lines;
    };
    const Case cases[] = {
        {{"progress 10%"}, {"\n"}, {"progress 10%"}},
        {{"progress 10%"}, {"\n", "\n"}, {"progress 10%", ""}},  // a genuinely empty line still is one
        {{"progress 10%"}, {"\nnext\n"}, {"progress 10%", "next"}},
        {{"x\r"}, {"\n"}, {"x"}},  // the CR of a CRLF, flushed alone: not data
        {{"x\r"}, {"\nnext\n"}, {"x", "next"}},
        {{"x"}, {"\r\n"}, {"x"}},
        {{"x"}, {"\r", "\n"}, {"x"}},
        {{"x"}, {"\r", "y\n"}, {"x", "y"}},  // a lone CR: the break, then the next line
        {{"x"}, {"\r\r\n"}, {"x", ""}},
        {{"x"}, {"more\n"}, {"x", "more"}},  // what follows is a line of its own
        {{"a\n", "\r"}, {"\n"}, {"a", ""}},   // an empty CRLF line cut by the flush is one empty line
    };
    for (const auto& c : cases) {
        CAPTURE(c.before);
        CAPTURE(c.after);
        LineSplitter s(100);
        Lines out;
        auto add = [&](std::string_view l) { out.emplace_back(l); };
        for (const auto& b : c.before) s.feed(b, add);
        s.flush(add);
        for (const auto& a : c.after) s.feed(a, add);
        s.flush(add);
        CHECK(out == c.lines);
    }
    // After a flushed line a lone CR waits, as a CRLF's first half; it is no partial line then.
    LineSplitter s(100);
    Lines out;
    auto add = [&](std::string_view l) { out.emplace_back(l); };
    s.feed("x", add);
    s.flush(add);
    s.feed("\r", add);
    CHECK_FALSE(s.has_partial());
    s.flush(add);
    CHECK(out == Lines{"x"});
}

TEST_CASE("LineSplitter: a flushed line is at most max_line bytes, its last CR dropped") {
    LineSplitter s(4);
    Lines out;
    auto add = [&](std::string_view l) { out.emplace_back(l); };
    s.feed("abcd\r", add);  // four bytes and the first half of a CRLF: not cut yet
    CHECK(out.empty());
    s.flush(add);
    CHECK(out == Lines{"abcd"});
    s.feed("\nef\n", add);
    CHECK(out == Lines{"abcd", "ef"});
}

TEST_CASE("LineSplitter: bytes split across feed() calls at every point") {
    const std::string sample = "one\r\ntwo\n\nth\rree\n\xe2\x82\xac\r\nlast";
    const Lines expected = {"one", "two", "", "th\rree", "\xe2\x82\xac", "last"};
    for (size_t i = 0; i <= sample.size(); ++i) {
        for (size_t j = i; j <= sample.size(); ++j) {
            CAPTURE(i);
            CAPTURE(j);
            CHECK(split(100, {sample.substr(0, i), sample.substr(i, j - i), sample.substr(j)}) == expected);
        }
    }
    std::vector<std::string> bytes;
    for (char c : sample) bytes.emplace_back(1, c);
    CHECK(split(100, bytes) == expected);
    CHECK(split(100, {sample}, false) == Lines(expected.begin(), expected.end() - 1));
}

TEST_CASE("LineSplitter: long lines are cut into pieces of max_line bytes") {
    CHECK(split(4, {"abcdefghij\n"}) == Lines{"abcd", "efgh", "ij"});
    CHECK(split(4, {"abcdefghi\n"}) == Lines{"abcd", "efgh", "i"});
    CHECK(split(4, {"abcde\r\n"}) == Lines{"abcd", "e"});
    CHECK(split(4, {"abc\n"}) == Lines{"abc"});
    // Without a newline the pieces go as soon as they are whole; the rest waits.
    LineSplitter s(4);
    Lines out;
    auto add = [&](std::string_view l) { out.emplace_back(l); };
    s.feed("abcdefghij", add);
    CHECK(out == Lines{"abcd", "efgh"});
    CHECK(s.has_partial());
    s.feed("k", add);
    CHECK(out == Lines{"abcd", "efgh"});
    s.flush(add);
    CHECK(out == Lines{"abcd", "efgh", "ijk"});
}

TEST_CASE("LineSplitter: a cut never splits a UTF-8 sequence") {
    // a b € c d: the cut at 4 would fall inside €, so the first piece is "ab".
    CHECK(split(4, {"ab\xe2\x82\xac" "cd\n"}) == Lines{"ab", "\xe2\x82\xac" "c", "d"});
    CHECK(split(4, {"\xf0\x9f\x98\x80\xf0\x9f\x98\x80x\n"}) == Lines{"\xf0\x9f\x98\x80", "\xf0\x9f\x98\x80", "x"});
    CHECK(split(6, {"ab\xf0\x9f\x98\x80\xf0\x9f\x98\x80\n"}) == Lines{"ab\xf0\x9f\x98\x80", "\xf0\x9f\x98\x80"});
    CHECK(split(5, {"abcd\xc3\xa9\n"}) == Lines{"abcd", "\xc3\xa9"});
    CHECK(split(5, {"\xf0\x9f\x98\x80\xf0\x9f\x98\x80\n"}) == Lines{"\xf0\x9f\x98\x80", "\xf0\x9f\x98\x80"});

    // Mixed text at several widths: pieces of at most max_line bytes, each whole UTF-8, together
    // the line.
    for (size_t max_line = 4; max_line <= 12; ++max_line) {
        CAPTURE(max_line);
        for (const auto& chunks : {std::vector<std::string>{mixed_line + "\n"},
                                   std::vector<std::string>{mixed_line + "\n", "more\n"},
                                   std::vector<std::string>{"x\n" + mixed_line + "\n"}}) {
            auto pieces = split(max_line, chunks);
            std::string joined;
            for (const auto& p : pieces) {
                CHECK(p.size() <= max_line);
                CHECK(sanitize_utf8(p) == p);
                joined += p;
            }
            CHECK(joined.find(mixed_line) != std::string::npos);
        }
    }
}

TEST_CASE("LineSplitter: no cut splits a UTF-8 sequence, not even when a chunk ends at max_line") {
    // A cut is made only once the byte after max_line is known: a chunk that ends inside a UTF-8
    // sequence right at max_line must not split it. (In fastsse the pipe is read 16 KiB at a time
    // and max_line's default is 16384 bytes.)
    for (size_t max_line = 4; max_line <= 12; ++max_line) {
        for (size_t i = 0; i <= mixed_line.size(); ++i) {
            CAPTURE(max_line);
            CAPTURE(i);
            auto pieces = split(max_line, {mixed_line.substr(0, i), mixed_line.substr(i) + "\n"});
            std::string joined;
            for (const auto& p : pieces) {
                CHECK(p.size() <= max_line);
                CHECK(sanitize_utf8(p) == p);
                CHECK_FALSE(p.empty());
                joined += p;
            }
            CHECK(joined == mixed_line);
        }
    }
    // The case of the producer: 16384-byte chunks of a long line of 3-byte characters.
    std::string euros;
    for (int i = 0; i < 12000; ++i) euros += "\xe2\x82\xac";
    auto pieces = split(16384, {euros.substr(0, 16384), euros.substr(16384, 16384), euros.substr(32768) + "\n"});
    std::string joined;
    for (const auto& p : pieces) {
        CHECK(sanitize_utf8(p) == p);
        joined += p;
    }
    CHECK(joined == euros);
}

TEST_CASE("LineSplitter: invalid UTF-8 is still cut at max_line") {
    // Continuation bytes only: no character boundary to back up to. The pieces stay within
    // max_line (a few bytes shorter: the cut backs up over at most 3 continuation bytes).
    const std::string line(100, '\x80');
    for (size_t max_line : {4, 8, 64}) {
        CAPTURE(max_line);
        auto pieces = split(max_line, {line + "x\n"});
        std::string joined;
        for (const auto& p : pieces) {
            CHECK(p.size() <= max_line);
            CHECK(p.size() > 0);
            joined += p;
        }
        CHECK(joined == line + "x");
    }
}

TEST_CASE("LineSplitter: a line of exactly max_line bytes is one line") {
    CHECK(split(4, {"abcd\n"}) == Lines{"abcd"});
    CHECK(split(4, {"abcd\nefgh\n"}) == Lines{"abcd", "efgh"});
    CHECK(split(4, {"abc\r\n"}) == Lines{"abc"});
    CHECK(split(4, {"abc\r", "\n"}) == Lines{"abc"});
    CHECK(split(4, {"abcd", "\n"}) == Lines{"abcd"});
    CHECK(split(4, {"abcdefgh\n"}) == Lines{"abcd", "efgh"});
    CHECK(split(4, {"\xf0\x9f\x98\x80\n"}) == Lines{"\xf0\x9f\x98\x80"});
    // Waiting for its next byte, a partial line of max_line bytes is whole at flush().
    CHECK(split(4, {"abcd"}) == Lines{"abcd"});
    CHECK(split(4, {"abcd"}, false) == Lines{});
}

TEST_CASE("LineSplitter: a CRLF line of exactly max_line bytes is one line") {
    // The CR before the LF (or last in the buffer, its LF still to come) does not count toward
    // max_line: no cut before it, and no empty line after.
    CHECK(split(4, {"abcd\r\n"}) == Lines{"abcd"});
    CHECK(split(4, {"abcd\r\nefgh\r\n"}) == Lines{"abcd", "efgh"});
    CHECK(split(4, {"abcdefgh\r\n"}) == Lines{"abcd", "efgh"});
    CHECK(split(4, {"abcd\r", "\n"}) == Lines{"abcd"});
    CHECK(split(4, {"abcd\r"}) == Lines{"abcd"});          // flushed without the CR: max_line bytes
    CHECK(split(4, {"abcd\r", "x\n"}) == Lines{"abcd", "\rx"});  // a CR not before LF is kept
}

// =============================================================================================
// command_argv

TEST_CASE("command_argv: the value becomes exactly one argv element") {
    auto spec = echo_spec();
    CHECK(fastsse::command_argv(spec, "host=example.com") == std::vector<std::string>{"/bin/echo", "example.com"});
    CHECK(fastsse::command_argv(spec, "x=1&host=a-b.c&y=2") == std::vector<std::string>{"/bin/echo", "a-b.c"});
    // Percent-decoded before it is checked.
    CHECK(fastsse::command_argv(spec, "host=ex%61mple%2Ecom") == std::vector<std::string>{"/bin/echo", "example.com"});
    CHECK(fastsse::command_argv(spec, "h%6Fst=abc") == std::vector<std::string>{"/bin/echo", "abc"});
    // The first occurrence wins.
    CHECK(fastsse::command_argv(spec, "host=one&host=two") == std::vector<std::string>{"/bin/echo", "one"});
    auto e = argv_error(spec, "host=bad%21&host=good");
    REQUIRE(e);
    CHECK(e->status == 400);

    // A permissive pattern: whatever the value, it is one element, passed as is (no shell).
    spec.params["host"].pattern = ".*";
    for (std::string value : {"; rm -rf /", "$(id)", "`id`", "a\nb", "a b", "*", "'\"", ""}) {
        CAPTURE(value);
        std::string query = "host=";
        for (unsigned char c : value) query += fmt::format("%{:02X}", c);
        CHECK(fastsse::command_argv(spec, query) == std::vector<std::string>{"/bin/echo", value});
    }

    // Elements that only look like placeholders are literal.
    auto literal = make_spec("literal", {"/bin/echo", "{}", "{host", "x{host}", "{host}y", "{host}"});
    literal.params["host"] = with_pattern("[a-z]+");
    CHECK(fastsse::command_argv(literal, "host=abc") ==
          std::vector<std::string>{"/bin/echo", "{}", "{host", "x{host}", "{host}y", "abc"});
}

TEST_CASE("command_argv: several parameters, one used twice") {
    auto spec = make_spec("two", {"/bin/echo", "{a}", "--", "{b}", "{a}"});
    spec.params["a"] = with_pattern("[0-9]+");
    spec.params["b"] = with_values({"x", "y"});
    CHECK(fastsse::command_argv(spec, "b=y&a=42") == std::vector<std::string>{"/bin/echo", "42", "--", "y", "42"});
    auto e = argv_error(spec, "a=42");
    REQUIRE(e);
    CHECK(e->status == 400);
    CHECK(std::string(e->what()) == "Missing parameter 'b'.");
}

TEST_CASE("command_argv: a missing parameter is a 400, unless it has a default") {
    auto spec = echo_spec();
    for (auto query : {"", "other=1", "hostname=x", "Host=x"}) {
        CAPTURE(query);
        auto e = argv_error(spec, query);
        REQUIRE(e);
        CHECK(e->status == 400);
        CHECK(std::string(e->what()) == "Missing parameter 'host'.");
        CHECK_FALSE(e->retry_after);
    }
    spec.params["host"].default_value = "localhost";
    CHECK(fastsse::command_argv(spec, "") == std::vector<std::string>{"/bin/echo", "localhost"});
    CHECK(fastsse::command_argv(spec, "host=given") == std::vector<std::string>{"/bin/echo", "given"});
    // Present but empty is not missing: the empty value is checked (and refused by the pattern).
    auto e = argv_error(spec, "host=");
    REQUIRE(e);
    CHECK(std::string(e->what()) == "Parameter 'host' does not match its pattern.");
    // The default is checked like a given value.
    spec.params["host"].default_value = "-oops";
    e = argv_error(spec, "");
    REQUIRE(e);
    CHECK(std::string(e->what()) == "Parameter 'host' must not start with '-'.");
}

TEST_CASE("command_argv: attacks are refused with a 400 naming the parameter") {
    auto spec = echo_spec();
    struct Case {
        std::string query, message;
    };
    const std::string no_match = "Parameter 'host' does not match its pattern.";
    const Case cases[] = {
        {"host=%3B%20rm%20-rf%20%2F", no_match},  // ; rm -rf /
        {"host=;%20rm%20-rf%20/", no_match},
        {"host=example.com;rm", no_match},
        {"host=%24(id)", no_match},               // $(id)
        {"host=$(id)", no_match},
        {"host=%60id%60", no_match},              // `id`
        {"host=a%0Ab", no_match},                 // newline
        {"host=a%0Db", no_match},                 // CR
        {"host=a%0A", no_match},                  // a trailing newline: '$' matches only at the end
        {"host=a+b", no_match},                   // '+' is a space
        {"host=a%00b", "Parameter 'host' contains a NUL byte."},
        {"host=%00", "Parameter 'host' contains a NUL byte."},
        {"host=--option", "Parameter 'host' must not start with '-'."},
        {"host=-x", "Parameter 'host' must not start with '-'."},
        {"host=%2Dx", "Parameter 'host' must not start with '-'."},
        {"host=-", "Parameter 'host' must not start with '-'."},
        {"host=" + std::string(100 * 1024, 'a'), "Parameter 'host' is longer than 256 bytes."},
        {"host=" + std::string(257, 'a'), "Parameter 'host' is longer than 256 bytes."},
        {"host=%zz", no_match},
        {"host=EXAMPLE", no_match},               // the pattern is case-sensitive
    };
    for (const auto& c : cases) {
        CAPTURE(c.query.substr(0, 60));
        auto e = argv_error(spec, c.query);
        REQUIRE(e);
        CHECK(e->status == 400);
        CHECK(std::string(e->what()) == c.message);
    }
    // At the limit it passes.
    CHECK(fastsse::command_argv(spec, "host=" + std::string(256, 'a'))[1] == std::string(256, 'a'));
    // max_length counts the decoded bytes.
    spec.params["host"].max_length = 5;
    CHECK(fastsse::command_argv(spec, "host=%61%61%61%61%61")[1] == "aaaaa");
    auto e = argv_error(spec, "host=aaaaaa");
    REQUIRE(e);
    CHECK(std::string(e->what()) == "Parameter 'host' is longer than 5 bytes.");
}

TEST_CASE("command_argv: the pattern must match the whole value") {
    auto spec = echo_spec(with_pattern("a|b"));
    CHECK(fastsse::command_argv(spec, "host=a")[1] == "a");
    CHECK(fastsse::command_argv(spec, "host=b")[1] == "b");
    for (auto query : {"host=ab", "host=xa", "host=bx", "host=a%0Ab"}) {
        CAPTURE(query);
        auto e = argv_error(spec, query);
        REQUIRE(e);
        CHECK(std::string(e->what()) == "Parameter 'host' does not match its pattern.");
    }
    // A long value is matched without trouble (glibc's matcher does not recurse per character).
    auto long_spec = echo_spec(with_pattern("(a|b)*", 1 << 20));
    std::string value(1 << 20, 'a');
    CHECK(fastsse::command_argv(long_spec, "host=" + value)[1] == value);
}

TEST_CASE("command_argv: allow_leading_dash") {
    auto spec = echo_spec(with_pattern("-?[a-z]+", 256, true));
    CHECK(fastsse::command_argv(spec, "host=-x")[1] == "-x");
    CHECK(fastsse::command_argv(spec, "host=x")[1] == "x");
    auto e = argv_error(spec, "host=--x");  // still the pattern
    REQUIRE(e);
    CHECK(std::string(e->what()) == "Parameter 'host' does not match its pattern.");
}

TEST_CASE("command_argv: values lists") {
    auto spec = echo_spec(with_values({"eth0", "wlan0", "a b"}));
    CHECK(fastsse::command_argv(spec, "host=eth0")[1] == "eth0");
    CHECK(fastsse::command_argv(spec, "host=a+b")[1] == "a b");
    CHECK(fastsse::command_argv(spec, "host=a%20b")[1] == "a b");
    for (auto query : {"host=eth1", "host=ETH0", "host=eth0%20", "host=eth", "host=", "host=eth0%00"}) {
        CAPTURE(query);
        auto e = argv_error(spec, query);
        REQUIRE(e);
        CHECK(e->status == 400);
        CHECK(std::string(e->what()).starts_with("Parameter 'host' "));
    }
    auto e = argv_error(spec, "host=eth1");
    REQUIRE(e);
    CHECK(std::string(e->what()) == "Parameter 'host' is not one of the allowed values.");
    // The leading-dash rule holds for listed values too, unless allowed.
    auto dash = echo_spec(with_values({"-v"}));
    e = argv_error(dash, "host=-v");
    REQUIRE(e);
    CHECK(std::string(e->what()) == "Parameter 'host' must not start with '-'.");
    dash.params["host"].allow_leading_dash = true;
    CHECK(fastsse::command_argv(dash, "host=-v")[1] == "-v");
}

TEST_CASE("command_argv: a pattern is compiled when it is set, never per request") {
    // The README's ping-host pattern: compiling it costs far more than a request should.
    auto before = regcomp_calls;
    auto spec = echo_spec(with_pattern("[a-z0-9][a-z0-9.-]{0,252}"));
    CHECK(regcomp_calls > before);  // when the config is read
    REQUIRE(fastsse::check_command(spec) == "");
    auto copy = spec;  // as the producer keeps it
    auto set = regcomp_calls;

    constexpr int requests = 2000;
    auto started = std::chrono::steady_clock::now();
    for (int i = 0; i < requests; ++i) {
        auto e = argv_error(copy, "host=example.org%2Fetc%2Fpasswd");
        REQUIRE(e);
        CHECK(e->status == 400);
    }
    std::chrono::duration<double, std::micro> took = std::chrono::steady_clock::now() - started;
    CHECK(fastsse::command_argv(copy, "host=example.org") == std::vector<std::string>{"/bin/echo", "example.org"});
    CHECK(regcomp_calls == set);
    MESSAGE(fmt::format("a refused request's command_argv: {:.1f} us", took.count() / requests));
}

// =============================================================================================
// check_command

TEST_CASE("check_command: a valid declaration passes") {
    CHECK(fastsse::check_command(echo_spec()) == "");
    auto with_default = echo_spec();
    with_default.params["host"].default_value = "localhost";
    CHECK(fastsse::check_command(with_default) == "");
    CHECK(fastsse::check_command(echo_spec(with_values({"a", "b"}))) == "");
    CHECK(fastsse::check_command(make_spec("date", {"/bin/date"})) == "");
}

TEST_CASE("check_command: each problem is named") {
    TempDir dir;
    auto plain_file = (dir.path / "not-executable").string();
    std::ofstream(plain_file) << "#!/bin/sh\necho hi\n";
    REQUIRE(::chmod(plain_file.c_str(), 0644) == 0);

    struct Case {
        const char* what;
        std::function<void(CommandSpec&)> change;
        std::string problem;
    };
    const Case cases[] = {
        {"empty argv", [](CommandSpec& s) { s.argv.clear(); }, "argv: must name the program"},
        {"relative program", [](CommandSpec& s) { s.argv[0] = "echo"; },
         "argv: 'echo' was not found in PATH (or give an absolute path)"},
        {"relative path", [](CommandSpec& s) { s.argv[0] = "bin/echo"; },
         "argv: 'bin/echo' was not found in PATH (or give an absolute path)"},
        {"no such file", [](CommandSpec& s) { s.argv[0] = "/nonexistent/prog"; },
         "argv: cannot execute '/nonexistent/prog'"},
        {"not executable", [&](CommandSpec& s) { s.argv[0] = plain_file; },
         "argv: cannot execute '" + plain_file + "'"},
        {"placeholder naming no parameter", [](CommandSpec& s) { s.argv.push_back("{port}"); },
         "argv: '{port}' names no parameter declared in [commands.echo.params]"},
        {"parameter not used", [](CommandSpec& s) { s.params["port"] = with_pattern("[0-9]+"); },
         "params.port: not used in argv (write \"{port}\" there)"},
        {"both pattern and values", [](CommandSpec& s) { s.params["host"].values = {"a"}; },
         "params.host: give either pattern or values"},
        {"neither pattern nor values", [](CommandSpec& s) { s.params["host"].pattern.clear(); },
         "params.host: give either pattern or values"},
        {"a pattern that does not compile", [](CommandSpec& s) { s.params["host"].pattern = "[a-"; },
         "params.host: pattern '[a-' is not a valid POSIX extended regex"},
        {"an unbalanced parenthesis", [](CommandSpec& s) { s.params["host"].pattern = "(a"; },
         "params.host: pattern '(a' is not a valid POSIX extended regex"},
        {"LF in stdout_event", [](CommandSpec& s) { s.stdout_event = "out\nevent: x"; },
         "stdout_event: must not contain CR, LF or NUL"},
        {"CR in stderr_event", [](CommandSpec& s) { s.stderr_event = "err\r"; },
         "stderr_event: must not contain CR, LF or NUL"},
        {"NUL in stderr_event", [](CommandSpec& s) { s.stderr_event = "a\0b"s; },
         "stderr_event: must not contain CR, LF or NUL"},
        {"a default the pattern refuses", [](CommandSpec& s) { s.params["host"].default_value = "Bad!"; },
         "params.host: the default 'Bad!' does not match its pattern"},
        {"a default with a leading dash", [](CommandSpec& s) { s.params["host"].default_value = "-x"; },
         "params.host: the default '-x' must not start with '-'"},
        {"a default too long", [](CommandSpec& s) { s.params["host"].default_value = std::string(300, 'a'); },
         "params.host: the default '" + std::string(300, 'a') + "' is longer than 256 bytes"},
        {"a default not in values",
         [](CommandSpec& s) {
             s.params["host"] = with_values({"a", "b"});
             s.params["host"].default_value = "c";
         },
         "params.host: the default 'c' is not one of the allowed values"},
    };
    for (const auto& c : cases) {
        CAPTURE(c.what);
        auto spec = echo_spec();
        c.change(spec);
        CHECK(fastsse::check_command(spec) == c.problem);
    }
}

TEST_CASE("check_command: a directory is not a program") {
    // access(X_OK) alone is true for a directory (search permission).
    CHECK(fastsse::check_command(make_spec("dir", {"/tmp"})) == "argv: cannot execute '/tmp'");
    CHECK(fastsse::check_command(make_spec("dir", {"/"})) == "argv: cannot execute '/'");
}

TEST_CASE("check_command: a pattern cannot escape its anchoring") {
    // Wrapped as ^(PATTERN)$, "[a-z]+)|(.*" would compile as ^([a-z]+)|(.*)$ and match anything:
    // the pattern must be valid on its own.
    for (std::string pattern : {"[a-z]+)|(.*", "a)|(b", ")("}) {
        CAPTURE(pattern);
        auto spec = echo_spec(with_pattern(pattern));
        CHECK(fastsse::check_command(spec) ==
              "params.host: pattern '" + pattern + "' is not a valid POSIX extended regex");
        auto e = argv_error(spec, "host=%3B%20rm%20-rf%20%2F");
        REQUIRE(e);
        CHECK(e->status == 400);
        CHECK(std::string(e->what()) == "Parameter 'host' does not match its pattern.");
    }
}

// =============================================================================================
// CommandProducer

TEST_CASE("CommandProducer: the options table and the settings defaults") {
    SigchldBlocked blocked;
    fastsse::EventLoop loop;
    fastsse::ChildProcesses children(loop);
    fastsse::CommandProducer producer(loop, children);
    REQUIRE(producer.options().size() == 1);
    CHECK(producer.options()[0].name == "command");
    fastsse::CommandLocation location{"leftover"};
    fastsse::command_location_options().load(location, {});
    CHECK(location.command == "");  // none named: refused at open, naming FASTSSE_COMMAND
    fastsse::command_location_options().load(location, {{"command", "tail"}});
    CHECK(location.command == "tail");
    CHECK_THROWS_WITH_AS(fastsse::command_location_options().load(location, {{"comand", "tail"}}, true),
                         "unknown option FASTSSE_COMAND", fastsse::OptionError);

    auto spec = make_spec("x", {"/bin/true"});
    CHECK(spec.time_limit == 0s);
    CHECK(spec.output_limit == 16777216);
    CHECK(spec.max_running == 4);
    CHECK(spec.stdout_event == "stdout");
    CHECK(spec.stderr_event == "stderr");
    CHECK(spec.retry == 60000ms);
    CHECK(spec.grace == 2000ms);
    CHECK(spec.max_line == 16384);
    CHECK(spec.quiet == 200ms);
    CHECK(spec.replay == 100);
    CHECK(spec.linger == 10s);
    CHECK_THROWS_AS(make_spec("x", {"/bin/true"}, {{"max_line", "63"}}), fastsse::OptionError);
    CHECK_THROWS_AS(make_spec("x", {"/bin/true"}, {{"quiet", "9"}}), fastsse::OptionError);
    CHECK_THROWS_AS(make_spec("x", {"/bin/true"}, {{"max_running", "0"}}), fastsse::OptionError);
    CHECK_THROWS_AS(make_spec("x", {"/bin/true"}, {{"time_limit", "-1"}}), fastsse::OptionError);
    CHECK_THROWS_AS(make_spec("x", {"/bin/true"}, {{"bogus", "1"}}), fastsse::OptionError);
}

TEST_CASE("CommandProducer: lines as stdout/stderr events with ids 1, 2, 3, then exit, then finish") {
    Harness h;
    h.commands({sh_spec("three", "echo one; echo two >&2; echo three; exit 7", {{"retry", "1234"}})});
    RecordingSink sink(h);
    auto sub = h.open(sink, "three");
    CHECK(h.children.alive() == 1);
    REQUIRE(h.run_until([&] { return sink.finishes() >= 1; }));

    REQUIRE(sink.calls.size() == 5);
    std::vector<std::string> out, err;
    for (size_t i = 0; i < 3; ++i) {
        CAPTURE(i);
        const auto& c = sink.calls[i];
        CHECK_FALSE(c.finished);
        REQUIRE(c.sent.id);
        CHECK(*c.sent.id == std::to_string(i + 1));
        CHECK_FALSE(c.sent.retry_ms);
        REQUIRE(c.sent.data);
        if (c.sent.event == "stdout") out.push_back(*c.sent.data);
        else if (c.sent.event == "stderr") err.push_back(*c.sent.data);
        else FAIL_CHECK("event " << c.sent.event);
    }
    // The order between the two pipes is the order they are read in; within one it is kept.
    CHECK(out == std::vector<std::string>{"one", "three"});
    CHECK(err == std::vector<std::string>{"two"});

    const auto& exit = sink.calls[3];
    CHECK_FALSE(exit.finished);
    CHECK(exit.sent.event == "exit");
    CHECK_FALSE(exit.sent.id);
    REQUIRE(exit.sent.data);
    auto data = parse_exit(*exit.sent.data);
    CHECK(data.code == "7");
    CHECK(data.signal == "null");
    CHECK(data.reason == "exit");
    CHECK(data.duration_ms >= 0);

    CHECK(sink.calls[4].finished);
    CHECK(sink.calls[4].retry == std::optional(1234ms));
    CHECK(h.children.alive() == 0);
}

TEST_CASE("CommandProducer: event names, CRLF, invalid UTF-8 and long lines") {
    Harness h;
    h.commands({sh_spec("text",
                        "printf 'crlf\\r\\n'; printf 'bad\\377\\300\\n'; printf 'e\\303\\251\\n'; "
                        "head -c 150 /dev/zero | tr '\\000' a; echo; printf '\\n'; printf 'oops' >&2",
                        {{"stdout_event", "out"}, {"stderr_event", "err"}, {"max_line", "64"}})});
    RecordingSink sink(h);
    auto sub = h.open(sink, "text");
    REQUIRE(h.run_until([&] { return sink.finishes() >= 1; }));
    std::vector<std::string> out, err;
    for (const auto& l : sink.lines()) (l.event == "out" ? out : err).push_back(l.data.value_or("<none>"));
    CHECK(out == std::vector<std::string>{"crlf", "bad" + fffd + fffd, "e\xc3\xa9", std::string(64, 'a'),
                                          std::string(64, 'a'), std::string(22, 'a'), ""});
    CHECK(err == std::vector<std::string>{"oops"});  // a partial line at the end is sent
    auto lines = sink.lines();
    for (size_t i = 0; i < lines.size(); ++i) CHECK(lines[i].id == std::to_string(i + 1));
}

TEST_CASE("CommandProducer: a long line of non-ASCII text arrives intact, in pieces") {
    // The pipe is read 16 KiB at a time and the default max_line is 16384 bytes: the first piece
    // must not be cut at the end of a read inside a 3-byte character.
    Harness h;
    h.commands({sh_spec("euros", "x=\xe2\x82\xac; for i in 1 2 3 4 5 6 7 8 9 10 11 12 13; do x=$x$x; done; "
                                 "printf '%s\\n' \"$x\"")});
    RecordingSink sink(h);
    auto sub = h.open(sink, "euros");
    REQUIRE(h.run_until([&] { return sink.finishes() >= 1; }));
    std::string joined;
    for (const auto& l : sink.lines()) {
        CHECK(l.data->size() <= 16384);
        joined += *l.data;
    }
    CHECK(joined.size() == 8192 * 3);
    CHECK(joined.find(fffd) == std::string::npos);
    CHECK(joined == repeat("\xe2\x82\xac", 8192));
}

TEST_CASE("CommandProducer: a partial line is sent after `quiet`; what follows is a line of its own") {
    Harness h;
    TempDir dir;
    auto fifo = (dir.path / "go").string();
    REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
    h.commands({sh_spec("prompt", "printf 'abc'; read x < " + fifo + "; echo \"def $x\"", {{"quiet", "20"}})});
    RecordingSink sink(h);
    auto sub = h.open(sink, "prompt");
    REQUIRE(h.run_until([&] { return sink.sends() >= 1; }));
    REQUIRE(sink.calls.size() == 1);  // the process is still waiting on the fifo
    CHECK(sink.calls[0].sent.event == "stdout");
    CHECK(sink.calls[0].sent.data == "abc");
    CHECK(sink.calls[0].sent.id == "1");

    // Now let it go on: open the fifo once its reader is there (ENXIO before), write, close.
    int fd = -1;
    REQUIRE(h.run_until([&] {
        fd = ::open(fifo.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC);
        return fd >= 0;
    }));
    REQUIRE(::write(fd, "go\n", 3) == 3);
    ::close(fd);
    REQUIRE(h.run_until([&] { return sink.finishes() >= 1; }));
    auto lines = sink.lines();
    REQUIRE(lines.size() == 2);
    CHECK(lines[1].data == "def go");
    CHECK(lines[1].id == "2");
    REQUIRE(sink.exit_event());
    CHECK(parse_exit(*sink.exit_event()->data).code == "0");
}

// The process's state letter (R, S, Z...) from /proc, or 0 once it is gone.
char proc_state(pid_t pid) {
    std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
    std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
    auto paren = text.rfind(')');
    return paren == std::string::npos || paren + 2 >= text.size() ? 0 : text[paren + 2];
}

TEST_CASE("CommandProducer: lines both pipes hold come one from each in turn, at the exit too") {
    // The command writes its stdout and stderr lines alternately and exits while the loop does not
    // run: then both pipes are full of lines and the exit is pending. Neither pipe's lines may all
    // come before the other's.
    TempDir dir;
    Harness h;
    auto spec = sh_spec("alternate", "echo $$; while [ ! -e go ]; do sleep 0.01; done; "
                                     "for i in 1 2 3 4 5 6; do echo out$i; echo err$i >&2; done");
    spec.cwd = dir.path.string();
    h.commands({spec});
    RecordingSink sink(h);
    auto sub = h.open(sink, "alternate");
    REQUIRE(h.run_until([&] { return sink.sends() >= 1; }));
    pid_t pid = std::stoi(*sink.sent_data(0));
    dir.write("go", "");
    // Not reaped while the loop does not run: a zombie once it has exited.
    auto deadline = std::chrono::steady_clock::now() + 10s;
    while (proc_state(pid) != 'Z' && std::chrono::steady_clock::now() < deadline) ::usleep(1000);
    REQUIRE(proc_state(pid) == 'Z');

    REQUIRE(h.run_until([&] { return sink.finishes() >= 1; }));
    std::string got, expected = fmt::format("stdout:{} ", pid);
    for (const auto& l : sink.lines()) got += l.event + ":" + *l.data + " ";
    for (int i = 1; i <= 6; ++i) expected += fmt::format("stdout:out{} stderr:err{} ", i, i);
    CHECK(got == expected);
}

TEST_CASE("CommandProducer: a command killed by a signal") {
    Harness h;
    h.commands({sh_spec("killed", "echo bye; kill -KILL $$")});
    RecordingSink sink(h);
    auto sub = h.open(sink, "killed");
    REQUIRE(h.run_until([&] { return sink.finishes() >= 1; }));
    REQUIRE(sink.lines().size() == 1);
    CHECK(sink.lines()[0].data == "bye");
    REQUIRE(sink.exit_event());
    auto data = parse_exit(*sink.exit_event()->data);
    CHECK(data.code == "null");
    CHECK(data.signal == "9");
    CHECK(data.reason == "exit");
}

TEST_CASE("CommandProducer: time_limit ends the run, reason \"timeout\"") {
    Harness h;
    h.commands({sh_spec("slow", "echo started; exec sleep 100", {{"time_limit", "1"}, {"retry", "5"}})});
    RecordingSink sink(h);
    auto sub = h.open(sink, "slow");
    REQUIRE(h.run_until([&] { return sink.finishes() >= 1; }));
    REQUIRE(sink.calls.size() == 3);
    CHECK(sink.calls[0].sent.data == "started");
    REQUIRE(sink.exit_event());
    auto data = parse_exit(*sink.exit_event()->data);
    CHECK(data.code == "null");
    CHECK(data.signal == std::to_string(SIGTERM));
    CHECK(data.reason == "timeout");
    CHECK(data.duration_ms >= 1000);  // not before its time
    CHECK(sink.calls[2].finished);
    CHECK(sink.calls[2].retry == std::optional(5ms));
    REQUIRE(h.run_until([&] { return h.children.alive() == 0; }));
}

TEST_CASE("CommandProducer: output_limit ends the run, reason \"limit\"") {
    Harness h;
    h.commands({make_spec("count", {"/usr/bin/seq", "1", "100000000"}, {{"output_limit", "1000"}})});
    RecordingSink sink(h);
    auto sub = h.open(sink, "count");
    REQUIRE(h.run_until([&] { return sink.finishes() >= 1; }));
    REQUIRE(sink.exit_event());
    auto data = parse_exit(*sink.exit_event()->data);
    CHECK(data.reason == "limit");
    CHECK(data.code == "null");
    CHECK(data.signal == std::to_string(SIGTERM));
    // The lines sent are the start of the output, with consecutive ids.
    auto lines = sink.lines();
    REQUIRE(lines.size() >= 1);
    size_t bytes = 0;
    for (size_t i = 0; i < lines.size(); ++i) {
        CAPTURE(i);
        CHECK(lines[i].id == std::to_string(i + 1));
        CHECK(lines[i].data == std::to_string(i + 1));
        bytes += lines[i].data->size() + 1;
    }
    // Ended right after the line that passed the limit: no line beyond it.
    CHECK(bytes > 1000);
    CHECK(bytes - (lines.back().data->size() + 1) <= 1000);
}

TEST_CASE("CommandProducer: max_running; beyond it a 503 with Retry-After") {
    Harness h;
    h.commands({sh_spec("one", "echo $$; exec sleep 100", {{"max_running", "1"}}),
                sh_spec("other", "exec sleep 100", {{"max_running", "1"}})});
    RecordingSink a(h), b(h), c(h), d(h);
    auto first = h.open(a, "one");
    try {
        h.open(b, "one");
        FAIL("no 503");
    } catch (const RequestError& e) {
        CHECK(e.status == 503);
        CHECK(e.retry_after == std::chrono::seconds(10));
        CHECK(std::string(e.what()).find("'one'") != std::string::npos);
    }
    CHECK(b.calls.empty());
    CHECK(h.children.alive() == 1);
    auto other = h.open(c, "other");  // the limit is per command
    CHECK(h.children.alive() == 2);

    // Once the first run is gone, the command can run again.
    REQUIRE(h.run_until([&] { return a.sends() >= 1; }));
    pid_t pid = std::stoi(*a.sent_data(0));
    first.reset();
    REQUIRE(h.run_until([&] { return gone(pid) && h.children.alive() == 1; }));
    auto again = h.open(d, "one");
    CHECK(h.children.alive() == 2);
}

TEST_CASE("CommandProducer: a run ended but not yet reaped still counts against max_running") {
    Harness h;
    h.commands({sh_spec("stubborn", "trap '' TERM; echo $$; exec sleep 100", {{"max_running", "1"}, {"grace", "200"}})});
    RecordingSink a(h), b(h), c(h);
    auto sa = h.open(a, "stubborn");
    REQUIRE(h.run_until([&] { return a.sends() >= 1; }));
    pid_t pid = std::stoi(*a.sent_data(0));
    sa.reset();
    // Released on the loop: SIGTERM sent (the group is ending: alive() counts it once more) and
    // ignored. Until the SIGKILL after the grace, which only the loop can send, it lives on.
    REQUIRE(h.run_until([&] { return h.children.alive() == 2; }));
    CHECK_FALSE(gone(pid));
    try {
        h.open(b, "stubborn");
        FAIL("no 503");
    } catch (const RequestError& e) {
        CHECK(e.status == 503);
        CHECK(e.retry_after == std::chrono::seconds(10));
    }
    REQUIRE(h.run_until([&] { return gone(pid); }));
    auto sc = h.open(c, "stubborn");
    REQUIRE(h.run_until([&] { return c.sends() >= 1; }));
    CHECK(std::stoi(*c.sent_data(0)) != pid);
    CHECK(b.calls.empty());
}

TEST_CASE("CommandProducer: the producer can go while a process is still ending") {
    pid_t pid = -1;
    {
        Harness h;
        h.commands({sh_spec("stubborn", "trap '' TERM; echo $$; exec sleep 100", {{"grace", "60000"}})});
        RecordingSink a(h);
        auto sa = h.open(a, "stubborn");
        REQUIRE(h.run_until([&] { return a.sends() >= 1; }));
        pid = std::stoi(*a.sent_data(0));
        sa.reset();
        REQUIRE(h.run_until([&] { return h.children.alive() == 2; }));
        CHECK_FALSE(gone(pid));
    }  // the producer, then ChildProcesses (which kills and reaps what is left)
    CHECK(gone(pid));
}

TEST_CASE("CommandProducer: stop_runs() ends every run, a lingering shared one too") {
    Harness h;
    h.commands({ticks("lingering", {{"linger", "600"}}), sh_spec("plain", "exec sleep 100")});
    RecordingSink a(h), b(h), c(h);
    auto sa = h.open(a, "lingering");
    REQUIRE(h.run_until([&] { return a.sends() >= 2; }));
    sa.reset();
    auto sb = h.open(b, "plain");
    CHECK(h.children.alive() == 2);
    sb.reset();  // a viewer that leaves before the shutdown, like every stream then
    h.producer.stop_runs();
    REQUIRE(h.run_until([&] { return h.children.alive() == 0; }));
    // Afterwards a viewer starts a new run, not the old one's replay.
    auto sc = h.open(c, "lingering");
    CHECK(c.sends() == 0);
    REQUIRE(h.run_until([&] { return c.sends() >= 1; }));
    CHECK(c.sent(0).data == "line1");
    CHECK(c.sent(0).id != a.sent(0).id);
}

TEST_CASE("CommandProducer: destroying the subscription of a run ends its process group") {
    Harness h;
    h.commands({sh_spec("watched", "sleep 100 >/dev/null 2>&1 & echo $!; echo $$; wait", {{"grace", "60000"}})});
    RecordingSink sink(h);
    auto sub = h.open(sink, "watched");
    REQUIRE(h.run_until([&] { return sink.sends() >= 2; }));
    pid_t grandchild = std::stoi(*sink.sent_data(0));
    pid_t pid = std::stoi(*sink.sent_data(1));
    CHECK(::getpgid(pid) == pid);
    CHECK(::getpgid(grandchild) == pid);
    sub.reset();
    // SIGTERM, not the SIGKILL a minute later: both are gone within the deadline.
    REQUIRE(h.run_until([&] { return gone(pid) && gone(grandchild); }));
    CHECK(sink.calls.size() == 2);  // no exit event to a stream that left
    // Nothing is left ending either: the group was forgotten once its last member was reaped.
    REQUIRE(h.run_until([&] { return h.children.alive() == 0; }));
}

TEST_CASE("CommandProducer: a shared run has one process and the same ids for every viewer") {
    Harness h;
    h.commands({ticks()});
    RecordingSink a(h), b(h);
    auto sa = h.open(a, "ticks");
    REQUIRE(h.run_until([&] { return a.sends() >= 3; }));
    auto at_join = a.sends();
    auto sb = h.open(b, "ticks");
    CHECK(h.children.alive() == 1);
    // The late joiner gets what the ring holds (all of it so far) at once, then the live lines.
    CHECK(b.sends() == at_join);
    REQUIRE(h.run_until([&] { return b.sends() >= at_join + 3; }));
    CHECK(h.children.alive() == 1);
    REQUIRE(b.sends() <= a.sends());
    auto run = run_part(a.sent(0), 1);
    for (size_t i = 0; i < b.sends(); ++i) {
        CAPTURE(i);
        CHECK(b.sent(i).id == a.sent(i).id);
        CHECK(run_part(a.sent(i), i + 1) == run);
        CHECK(b.sent(i).event == "stdout");
        CHECK(b.sent(i).data == "line" + std::to_string(i + 1));
        CHECK(a.sent(i).data == b.sent(i).data);
    }

    // One viewer leaves: the run goes on for the other.
    sa.reset();
    auto seen = b.sends();
    REQUIRE(h.run_until([&] { return b.sends() >= seen + 3; }));
    CHECK(h.children.alive() == 1);
    // The last one leaves (linger 0): the run ends.
    sb.reset();
    REQUIRE(h.run_until([&] { return h.children.alive() == 0; }));
    CHECK(a.finishes() == 0);
    CHECK(b.finishes() == 0);
}

TEST_CASE("CommandProducer: a shared run replays after Last-Event-ID <run>.<n>") {
    Harness h;
    h.commands({ticks()});
    RecordingSink a(h);
    auto sa = h.open(a, "ticks");
    REQUIRE(h.run_until([&] { return a.sends() >= 5; }));
    auto run = run_part(a.sent(0), 1);

    struct Case {
        std::string last_id;
        size_t first;  // the first line replayed
    };
    const Case cases[] = {
        {run + ".2", 3},
        {run + ".0", 1},
        {"", 1},
        {"2", 1},                 // not an id of this run: everything
        {"1.2", 1},               // another run
        {run + "x.2", 1},
        {run + ".abc", 1},
        // Only a line number this run gave counts: anything else replays all the ring holds.
        {run + ".-5", 1},         // strtoull would read 2^64 - 5: nothing replayed
        {run + ".+2", 1},
        {run + ". 2", 1},
        {run + ".2x", 1},
        {run + ".", 1},
        {run + ".18446744073709551615", 1},
        {run + ".9007199254740991", 1},  // beyond the run's last line
    };
    for (const auto& c : cases) {
        CAPTURE(c.last_id);
        RecordingSink r(h);
        auto now = a.sends();
        auto sub = h.open(r, "ticks", "", c.last_id);
        REQUIRE(r.sends() == now - (c.first - 1));
        for (size_t i = 0; i < r.sends(); ++i) {
            CHECK(r.sent(i).id == a.sent(c.first - 1 + i).id);
            CHECK(r.sent(i).data == a.sent(c.first - 1 + i).data);
        }
    }
    // After the newest line: nothing to replay; the next live line is the next one.
    RecordingSink up_to_date(h);
    auto newest = *a.sent(a.sends() - 1).id;
    auto count = a.sends();
    auto sub = h.open(up_to_date, "ticks", "", newest);
    CHECK(up_to_date.sends() == 0);
    REQUIRE(h.run_until([&] { return up_to_date.sends() >= 1; }));
    CHECK(up_to_date.sent(0).id == run + "." + std::to_string(count + 1));
    CHECK(h.children.alive() == 1);
}

TEST_CASE("CommandProducer: the replay ring keeps the last `replay` lines") {
    Harness h;
    h.commands({ticks("two", {{"linger", "0"}, {"replay", "2"}}), ticks("none", {{"linger", "0"}, {"replay", "0"}})});
    RecordingSink a(h), b(h), c(h), d(h);
    auto sa = h.open(a, "two");
    REQUIRE(h.run_until([&] { return a.sends() >= 5; }));
    auto n = a.sends();
    auto sb = h.open(b, "two");
    REQUIRE(b.sends() == 2);
    CHECK(b.sent(0).id == a.sent(n - 2).id);
    CHECK(b.sent(1).id == a.sent(n - 1).id);
    // Asking for more than the ring holds gives what it holds.
    auto sc = h.open(c, "two", "", *a.sent(0).id);
    CHECK(c.sends() == 2);

    auto sd = h.open(d, "none");
    REQUIRE(h.run_until([&] { return d.sends() >= 3; }));
    RecordingSink e(h);
    auto se = h.open(e, "none");
    CHECK(e.sends() == 0);
    CHECK(h.children.alive() == 2);
}

TEST_CASE("CommandProducer: a replay gives the newest lines that fit in the stream's room") {
    Harness h;
    h.commands({ticks("roomy", {{"linger", "0"}, {"replay", "100"}})});
    RecordingSink a(h);
    auto sa = h.open(a, "roomy");
    REQUIRE(h.run_until([&] { return a.sends() >= 6; }));
    // The loop does not run below: the ring holds lines 1 to n.
    auto n = a.sends();
    auto cost = [&](size_t i) {
        const auto& e = a.sent(i);
        return fastsse::queued_size(fastsse::Event{e.event, *e.data, *e.id, std::nullopt});
    };
    auto last3 = cost(n - 1) + cost(n - 2) + cost(n - 3);
    struct Case {
        size_t room, replayed;
        std::string last_id;
    };
    const Case cases[] = {
        {SIZE_MAX, n, ""},
        {last3, 3, ""},
        {last3 - 1, 2, ""},
        {cost(n - 1), 1, ""},
        {cost(n - 1) - 1, 0, ""},
        {0, 0, ""},
        {last3, 2, *a.sent(n - 3).id},  // after Last-Event-ID: what is left of it, as ever
    };
    for (const auto& c : cases) {
        CAPTURE(c.room);
        CAPTURE(c.last_id);
        RecordingSink r(h);
        r.room_left = c.room;
        auto sub = h.open(r, "roomy", "", c.last_id);
        REQUIRE(r.sends() == c.replayed);
        for (size_t i = 0; i < r.sends(); ++i) CHECK(r.sent(i).id == a.sent(n - c.replayed + i).id);
    }
    CHECK(h.children.alive() == 1);
}

TEST_CASE("CommandProducer: a shared run lingers after its last viewer left") {
    Harness h;
    h.commands({ticks("lingering", {{"linger", "60"}})});
    RecordingSink a(h), b(h);
    auto sa = h.open(a, "lingering");
    REQUIRE(h.run_until([&] { return a.sends() >= 2; }));
    sa.reset();
    CHECK(h.children.alive() == 1);
    auto sb = h.open(b, "lingering");  // joins the same run
    REQUIRE(b.sends() >= 2);
    CHECK(b.sent(0).id == a.sent(0).id);
    CHECK(b.sent(1).id == a.sent(1).id);
    CHECK(h.children.alive() == 1);
}

TEST_CASE("CommandProducer: a shared run that ends ends every viewer; the next viewer starts anew") {
    Harness h;
    auto spec = sh_spec("once", "echo $$; echo hello", {{"retry", "7"}});
    spec.shared = true;
    h.commands({spec});
    RecordingSink a(h), b(h);
    auto sa = h.open(a, "once");
    REQUIRE(h.run_until([&] { return a.finishes() >= 1; }));
    REQUIRE(a.lines().size() == 2);
    CHECK(a.lines()[1].data == "hello");
    REQUIRE(a.exit_event());
    CHECK(parse_exit(*a.exit_event()->data).code == "0");
    CHECK(a.calls.back().retry == std::optional(7ms));

    auto sb = h.open(b, "once");  // the run is over: a new one, not its replay
    REQUIRE(h.run_until([&] { return b.finishes() >= 1; }));
    REQUIRE(b.lines().size() == 2);
    CHECK(b.lines()[0].data != a.lines()[0].data);  // another process
    run_part(b.lines()[0], 1);
    run_part(b.lines()[1], 2);
    CHECK(h.children.alive() == 0);
}

TEST_CASE("CommandProducer: a reload's declarations apply to new runs; the runs going on keep theirs") {
    Harness h;
    h.commands({ticks()});
    RecordingSink a(h), b(h), c(h), d(h);
    auto sa = h.open(a, "ticks");
    REQUIRE(h.run_until([&] { return a.sends() >= 2; }));
    auto first_run = run_part(a.sent(0), 1);

    // The same declaration again: the shared run goes on taking viewers.
    h.commands({ticks()});
    auto sb = h.open(b, "ticks");
    CHECK(h.children.alive() == 1);
    CHECK(run_part(b.sent(0), 1) == first_run);

    // A changed one: the next viewer starts a run of the new declaration beside the old one.
    h.commands({ticks("ticks", {{"linger", "0"}, {"replay", "5"}})});
    auto sc = h.open(c, "ticks");
    CHECK(h.children.alive() == 2);
    REQUIRE(h.run_until([&] { return c.sends() >= 2; }));
    CHECK(run_part(c.sent(0), 1) != first_run);

    // Removed: new requests get 404, and the runs going on go on.
    h.commands({});
    CHECK(fastsse_test::status_of([&] { h.open(d, "ticks"); }) == 404);
    auto seen_a = a.sends(), seen_c = c.sends();
    REQUIRE(h.run_until([&] { return a.sends() >= seen_a + 3 && c.sends() >= seen_c + 3; }));
    CHECK(h.children.alive() == 2);
    CHECK(a.finishes() + b.finishes() + c.finishes() == 0);

    // Each run ends with its last viewer, as ever.
    sa.reset();
    sb.reset();
    REQUIRE(h.run_until([&] { return h.children.alive() == 1; }));
    sc.reset();
    REQUIRE(h.run_until([&] { return h.children.alive() == 0; }));
}

TEST_CASE("CommandProducer: shared runs of two commands with the same argv are separate") {
    // Each command has its own event names, env, cwd and limits: a viewer of "y" must not join a
    // run of "x" because their argv are equal.
    Harness h;
    auto x = ticks("x");
    x.stdout_event = "x-line";
    auto y = x;
    y.name = "y";
    y.stdout_event = "y-line";
    h.commands({x, y});
    RecordingSink a(h), b(h);
    auto sa = h.open(a, "x");
    REQUIRE(h.run_until([&] { return a.sends() >= 1; }));
    auto sb = h.open(b, "y");
    CHECK(h.children.alive() == 2);
    REQUIRE(h.run_until([&] { return b.sends() >= 1; }));
    CHECK(b.sent(0).event == "y-line");
    CHECK(a.sent(0).event == "x-line");
}

TEST_CASE("CommandProducer: a non-shared run ignores Last-Event-ID; each stream has its own process") {
    Harness h;
    h.commands({sh_spec("mine", "echo $$; exec sleep 100")});
    RecordingSink a(h), b(h);
    auto sa = h.open(a, "mine", "", "41");
    auto sb = h.open(b, "mine", "", "41");
    CHECK(h.children.alive() == 2);
    REQUIRE(h.run_until([&] { return a.sends() >= 1 && b.sends() >= 1; }));
    CHECK(a.sent(0).id == "1");
    CHECK(b.sent(0).id == "1");
    CHECK(a.sent(0).data != b.sent(0).data);
}

TEST_CASE("CommandProducer: errors before anything starts") {
    Harness h;
    auto spec = echo_spec();
    auto broken = make_spec("broken", {"/nonexistent/fastsse-unit-program"});
    h.producer.set_commands({{"echo", spec}, {"broken", broken}});
    RecordingSink sink(h);

    SUBCASE("an unknown command is a 404") {
        try {
            h.open(sink, "nope");
            FAIL("no error");
        } catch (const RequestError& e) {
            CHECK(e.status == 404);
            CHECK(std::string(e.what()) == "No command named 'nope'.");
        }
    }
    SUBCASE("no command named: an OptionError naming FASTSSE_COMMAND") {
        CHECK_THROWS_AS(h.open(sink, ""), fastsse::OptionError);
        CHECK_THROWS_WITH(h.open(sink, ""), doctest::Contains("FASTSSE_COMMAND"));
    }
    SUBCASE("a bad parameter is a 400") {
        try {
            h.open(sink, "echo", "host=$(id)");
            FAIL("no error");
        } catch (const RequestError& e) {
            CHECK(e.status == 400);
            CHECK(std::string(e.what()) == "Parameter 'host' does not match its pattern.");
        }
    }
    SUBCASE("a program that cannot start throws std::system_error") {
        CHECK_THROWS_AS(h.open(sink, "broken"), std::system_error);
        CHECK_THROWS_AS(h.open(sink, "broken"), std::system_error);
    }
    CHECK(sink.calls.empty());
    CHECK(h.children.alive() == 0);
    // And the command still works afterwards.
    auto sub = h.open(sink, "echo", "host=fine");
    REQUIRE(h.run_until([&] { return sink.finishes() >= 1; }));
    REQUIRE(sink.lines().size() == 1);
    CHECK(sink.lines()[0].data == "fine");
}
