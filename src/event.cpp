#include "fastsse/event.hpp"

#include <fmt/format.h>

namespace fastsse {

void check_field(std::string_view field, std::string_view value) {
    if (value.find_first_of(std::string_view("\r\n\0", 3)) != std::string_view::npos)
        throw EventError(fmt::format("event {} must not contain CR, LF or NUL", field));
}

namespace {

// Hoa's rule: \r\n, \r and \n each end one data line.
void append_data_lines(std::string_view data, std::string& out) {
    for (;;) {
        auto end = data.find_first_of("\r\n");
        out += "data: ";
        out += data.substr(0, end);
        out += '\n';
        if (end == std::string_view::npos) return;
        auto skip = (data[end] == '\r' && end + 1 < data.size() && data[end + 1] == '\n') ? 2 : 1;
        data.remove_prefix(end + skip);
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
    if (e.data) append_data_lines(*e.data, out);
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
    for (;;) {
        auto end = text.find_first_of("\r\n");
        out += ':';
        if (!text.empty() && end != 0) {
            out += ' ';
            out += text.substr(0, end);
        }
        out += '\n';
        if (end == std::string_view::npos) break;
        auto skip = (text[end] == '\r' && end + 1 < text.size() && text[end + 1] == '\n') ? 2 : 1;
        text.remove_prefix(end + skip);
    }
    out += '\n';
}

}  // namespace fastsse
