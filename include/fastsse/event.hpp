#pragma once
// The one encoder of the text/event-stream format (WHATWG HTML, "Server-sent events").
// Every byte a producer sends to a client goes through encode().
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

}  // namespace fastsse
