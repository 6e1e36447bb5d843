// Accept negotiation (accepts_event_stream) on any header: never a crash, and the answer obeys the
// rules it documents, checked as relations between headers rather than by a second implementation:
// - a missing, empty or blank header accepts;
// - case does not matter (media types and the q parameter);
// - the order of the ranges does not matter (the most specific decides, ties take the highest q);
// - a range that matches nothing changes nothing; a plain text/event-stream range always accepts;
// - text/event-stream with its q decides over text/* and */*, text/* over */*;
// - a header naming none of text/event-stream, text/* and */* refuses.
#include <algorithm>
#include <string>
#include <vector>

#include "fastsse/http/request.hpp"
#include "fuzz.hpp"

namespace {

using fastsse::accepts_event_stream;
using fastsse_fuzz::check;

std::string lower(std::string s) {
    for (auto& c : s)
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    return s;
}

std::string upper(std::string s) {
    for (auto& c : s)
        if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
    return s;
}

bool blank(std::string_view s) { return s.find_first_not_of(" \t") == s.npos; }

// The comma-separated ranges, in reverse order.
std::string reversed_ranges(std::string_view header) {
    std::vector<std::string_view> ranges;
    for (;;) {
        auto comma = header.find(',');
        ranges.push_back(header.substr(0, comma));
        if (comma == header.npos) break;
        header.remove_prefix(comma + 1);
    }
    std::string out;
    for (auto it = ranges.rbegin(); it != ranges.rend(); ++it) {
        if (it != ranges.rbegin()) out += ',';
        out += *it;
    }
    return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* bytes, size_t size) {
    std::string header(reinterpret_cast<const char*>(bytes), size);
    bool accepts = accepts_event_stream(header);

    check(accepts_event_stream(std::nullopt), "a missing Accept header refuses");
    if (blank(header)) check(accepts, "a blank Accept header refuses");
    check(accepts_event_stream(upper(header)) == accepts, "upper case changes the answer");
    check(accepts_event_stream(reversed_ranges(header)) == accepts, "the order of the ranges changes the answer");
    if (!blank(header)) {
        check(accepts_event_stream(header + ", application/json") == accepts, "a range that matches nothing changes the answer");
        check(accepts_event_stream(header + ",text/event-stream"), "an added text/event-stream range refuses");
    }
    auto l = lower(header);
    if (!blank(header) && l.find("text/event-stream") == l.npos) {
        // The most specific range decides, whatever text/* or */* say.
        check(!accepts_event_stream(header + ", text/event-stream;q=0"), "text/event-stream;q=0 accepts");
        check(accepts_event_stream(header + ", text/event-stream;q=0.5"), "text/event-stream;q=0.5 refuses");
        if (l.find("text/*") == l.npos) {  // and text/* over */*
            check(!accepts_event_stream(header + ", text/*;q=0"), "text/*;q=0 accepts");
            check(accepts_event_stream(header + ", text/*;q=0.5"), "text/*;q=0.5 refuses");
        }
    }
    if (!blank(header) && l.find("text/event-stream") == l.npos && l.find("text/*") == l.npos && l.find("*/*") == l.npos)
        check(!accepts, "a header naming no event-stream range accepts");
    return 0;
}
