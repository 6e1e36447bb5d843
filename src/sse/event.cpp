#include "fastsse/sse/event.hpp"

#include <fmt/format.h>

namespace fastsse {

void check_field(std::string_view field, std::string_view value) {
    if (value.find_first_of(std::string_view("\r\n\0", 3)) != std::string_view::npos)
        throw EventError(fmt::format("event {} must not contain CR, LF or NUL", field));
}

std::optional<uint64_t> parse_event_number(std::string_view text) {
    if (text.empty()) return std::nullopt;
    uint64_t n = 0;
    for (char c : text) {
        if (c < '0' || c > '9') return std::nullopt;
        n = n * 10 + static_cast<uint64_t>(c - '0');
        if (n > max_event_number) return std::nullopt;  // checked at each digit: n * 10 never overflows
    }
    return n;
}

namespace {

// Calls fn on each line of text, lines ending at \r\n, \r or \n (Hoa's rule); text without a line
// break is one line, and a trailing break leaves a last, empty line.
template <class Fn>
void for_each_line(std::string_view text, Fn fn) {
    for (;;) {
        auto end = text.find_first_of("\r\n");
        fn(text.substr(0, end));
        if (end == std::string_view::npos) return;
        auto skip = (text[end] == '\r' && end + 1 < text.size() && text[end + 1] == '\n') ? 2 : 1;
        text.remove_prefix(end + skip);
    }
}

}  // namespace

void encode(const Event& e, std::string& out) {
    check_field("name", e.event);
    if (e.id) check_field("id", *e.id);

    auto start = out.size();
    if (!e.event.empty()) {
        out += "event: ";
        out += e.event;
        out += '\n';
    }
    if (e.data) {
        for_each_line(*e.data, [&](std::string_view line) {
            out += "data: ";
            out += line;
            out += '\n';
        });
    }
    if (e.id) {
        // As Hoa: a bare "id" line resets the client's last event id.
        out += e.id->empty() ? std::string_view("id\n") : std::string_view("id: ");
        if (!e.id->empty()) {
            out += *e.id;
            out += '\n';
        }
    }
    if (e.retry_ms && *e.retry_ms >= 0) fmt::format_to(std::back_inserter(out), "retry: {}\n", *e.retry_ms);
    if (out.size() != start) out += '\n';
}

std::string encode(const Event& e) {
    std::string out;
    encode(e, out);
    return out;
}

void encode_comment(std::string_view text, std::string& out) {
    for_each_line(text, [&](std::string_view line) {
        out += line.empty() ? std::string_view(":") : std::string_view(": ");
        out += line;
        out += '\n';
    });
    out += '\n';
}

}  // namespace fastsse
