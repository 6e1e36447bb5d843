// The encoder's round trip: a few events and comments from the fuzzer's bytes, encoded one after
// the other into one stream, then parsed back by sse-load's WHATWG event-stream parser
// (bench/sse_parse.hpp) fed in pieces of any size. The parser must see exactly what was encoded:
// each event with data dispatched with its type, its data (line breaks as LF) and the last id so far;
// each retry; each comment line. An event refused (EventError) must have a CR, LF or NUL in its
// name or id, and must leave the output untouched.
#include <fuzzer/FuzzedDataProvider.h>

#include <string>
#include <vector>

#include "bench/sse_parse.hpp"
#include "fastsse/sse/event.hpp"
#include "fuzz.hpp"

namespace {

using fastsse_fuzz::check;

bool breaks_framing(std::string_view s) { return s.find_first_of(std::string_view("\r\n\0", 3)) != s.npos; }

// Lines as the WHATWG parser cuts them: at CRLF, CR or LF.
std::vector<std::string> lines_of(std::string_view text) {
    std::vector<std::string> out(1);
    for (size_t i = 0; i < text.size(); ++i) {
        if (text[i] == '\r' || text[i] == '\n') {
            if (text[i] == '\r' && i + 1 < text.size() && text[i + 1] == '\n') ++i;
            out.emplace_back();
        } else {
            out.back() += text[i];
        }
    }
    return out;
}

// What the parser reports, one line per call, in order.
class Recorder final : public sseload::SseSink {
public:
    void on_event(std::string_view type, std::string_view data, std::string_view last_id) override {
        log.push_back("event [" + std::string(type) + "] [" + std::string(data) + "] [" + std::string(last_id) + "]");
    }
    void on_comment(std::string_view text) override { log.push_back("comment [" + std::string(text) + "]"); }
    void on_retry(std::uint64_t ms) override { log.push_back("retry " + std::to_string(ms)); }
    std::vector<std::string> log;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* bytes, size_t size) {
    FuzzedDataProvider in(bytes, size);
    std::string wire;
    std::vector<std::string> expected;
    std::string last_id;
    for (int n = in.ConsumeIntegralInRange(1, 4); n > 0; --n) {
        if (in.ConsumeBool()) {
            auto text = in.ConsumeRandomLengthString(128);
            fastsse::encode_comment(text, wire);
            for (const auto& line : lines_of(text)) expected.push_back("comment [" + (line.empty() ? "" : " " + line) + "]");
            continue;
        }
        auto name = in.ConsumeRandomLengthString(32);
        auto data = in.ConsumeBool() ? std::optional(in.ConsumeRandomLengthString(256)) : std::nullopt;
        auto id = in.ConsumeBool() ? std::optional(in.ConsumeRandomLengthString(32)) : std::nullopt;
        auto retry = in.ConsumeBool() ? std::optional(in.ConsumeIntegral<long long>()) : std::nullopt;
        fastsse::Event event{name, data ? std::optional<std::string_view>(*data) : std::nullopt,
                             id ? std::optional<std::string_view>(*id) : std::nullopt, retry};
        auto before = wire;
        try {
            fastsse::encode(event, wire);
        } catch (const fastsse::EventError&) {
            check(breaks_framing(name) || (id && breaks_framing(*id)), "an event refused without a CR, LF or NUL");
            check(wire == before, "a refused event changed the output");
            continue;
        }
        check(!breaks_framing(name) && !(id && breaks_framing(*id)), "an event with CR, LF or NUL in its name or id was encoded");
        if (id) last_id = *id;
        if (retry && *retry >= 0) expected.push_back("retry " + std::to_string(*retry));
        if (data) {
            auto lines = lines_of(*data);
            std::string joined = lines[0];
            for (size_t i = 1; i < lines.size(); ++i) joined += "\n" + lines[i];
            expected.push_back("event [" + (name.empty() ? std::string("message") : name) + "] [" + joined + "] [" +
                               last_id + "]");
        }
    }

    Recorder got;
    sseload::SseParser parser(&got);
    for (size_t at = 0; at < wire.size();) {
        size_t left = wire.size() - at;
        size_t piece = in.remaining_bytes() ? in.ConsumeIntegralInRange<size_t>(1, left) : left;
        parser.feed(wire.data() + at, piece);
        at += piece;
    }
    if (got.log != expected) {
        for (const auto& line : expected) std::fprintf(stderr, "expected: %s\n", line.c_str());
        for (const auto& line : got.log) std::fprintf(stderr, "parsed:   %s\n", line.c_str());
    }
    check(got.log == expected, "the parsed stream differs from the events encoded");
    check(parser.last_event_id() == last_id, "the stream's last event id differs");
    return 0;
}
