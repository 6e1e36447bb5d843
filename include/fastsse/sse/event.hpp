#pragma once
// The one encoder of the text/event-stream format (WHATWG HTML, "Server-sent events").
// Every byte a producer sends to a client goes through encode().
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace fastsse {

struct Event {
    std::string_view event;                // empty: unnamed, the browser fires "message"
    std::optional<std::string_view> data;  // split on CRLF, CR and LF into one data: line each
    std::optional<std::string_view> id;    // present but empty: the client forgets its last id
    std::optional<long long> retry_ms;     // a negative value is ignored, as Hoa's setReconnectionTime
};

// An event name or id that would break the framing (CR, LF or NUL): such an event is never written,
// since it would let one producer forge events in the stream.
class EventError : public std::invalid_argument {
public:
    using std::invalid_argument::invalid_argument;
};

// Appends the encoded event to out; throws EventError (out untouched) for a bad name or id.
void encode(const Event& event, std::string& out);
std::string encode(const Event& event);

// A comment block (": text" per line, then a blank line): keep-alive and the opening line.
void encode_comment(std::string_view text, std::string& out);

// Checks an event name or id the way encode() does; throws EventError naming the field.
void check_field(std::string_view field, std::string_view value);

// The largest number an event id may count to: JavaScript's Number.MAX_SAFE_INTEGER (2^53 - 1),
// so that a page that reads an id as a number holds it exactly.
constexpr uint64_t max_event_number = (uint64_t{1} << 53) - 1;

// The number in an event id that a client sent back (Last-Event-ID), read strictly: ASCII digits
// only (no sign, space or suffix), at most max_event_number. Anything else is no number: a
// producer then resumes as if the client had sent no id.
std::optional<uint64_t> parse_event_number(std::string_view text);

}  // namespace fastsse
