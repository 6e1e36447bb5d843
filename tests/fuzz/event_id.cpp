// Last-Event-ID handling: the id a client sends back, from the header or from lastEventId in the
// query (percent-decoded), read by parse_event_number(). Properties:
// - a number comes back exactly when the id is ASCII digits whose value is at most
//   max_event_number (2^53 - 1), and it is that value: a client cannot make ids wrap;
// - the number, written out again without leading zeros, is the id without its leading zeros.
#include <string>

#include "fastsse/sse/event.hpp"
#include "fastsse/http/request.hpp"
#include "fuzz.hpp"

using fastsse_fuzz::check;

namespace {
std::string fmt_percent(unsigned char c) {
    const char* hex = "0123456789ABCDEF";
    return {'%', hex[c >> 4], hex[c & 15]};
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size == 0) return 0;
    bool from_header = data[0] & 1;  // the first byte: where the client put the id
    std::string id(reinterpret_cast<const char*>(data) + 1, size - 1);

    fastsse::Request r;
    if (from_header) {
        r.last_event_id = id;
    } else {
        std::string query = "x=1&lastEventId=";
        for (unsigned char c : id) query += fmt_percent(c);
        r.query = query;
    }
    auto text = fastsse::last_event_id(r);
    check(text == id, "the id reaches the producer as the client sent it");

    auto n = fastsse::parse_event_number(text);
    bool digits = !text.empty() && text.find_first_not_of("0123456789") == std::string::npos;
    auto significant = text.substr(std::min(text.find_first_not_of('0'), text.size()));
    // The reference: compare as decimal strings, so that no arithmetic can overflow here.
    auto max = std::to_string(fastsse::max_event_number);
    bool in_range = significant.size() < max.size() || (significant.size() == max.size() && significant <= max);
    check(n.has_value() == (digits && in_range), "a number exactly for digits within 2^53 - 1");
    if (n) check(std::to_string(*n) == (significant.empty() ? "0" : significant), "the number is the id's value");
    return 0;
}
