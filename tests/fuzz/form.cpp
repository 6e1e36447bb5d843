// parse_form() on any body. Properties:
// - it refuses a body only for a bad percent escape (so only a body holding '%') or for too many
//   fields;
// - the fields it reads, encoded again (every byte as %XX, or '+' for a space) and joined with '&',
//   read back as the same fields: nothing is lost or invented between names, values and pieces;
// - a body without '%', '+' or '=' is its pieces, each a name with an empty value.
#include <string>
#include <vector>

#include "fastsse/hub/form.hpp"
#include "fuzz.hpp"

using fastsse::FormError;
using fastsse::FormField;
using fastsse_fuzz::check;

namespace {
std::string encode(const std::string& s, bool plus) {
    const char* hex = "0123456789ABCDEF";
    std::string out;
    for (unsigned char c : s) {
        if (plus && c == ' ') out += '+';
        else out += {'%', hex[c >> 4], hex[c & 15]};
    }
    return out;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string body(reinterpret_cast<const char*>(data), size);
    constexpr size_t max_fields = 64;
    std::vector<FormField> fields;
    try {
        fields = fastsse::parse_form(body, max_fields);
    } catch (const FormError& e) {
        std::string why = e.what();
        check(body.find('%') != std::string::npos || why.find("more than") != std::string::npos,
              "a form without '%' refused for something else than its size");
        return 0;
    }
    check(fields.size() <= max_fields, "more fields than the bound");

    std::string again;
    for (size_t i = 0; i < fields.size(); ++i) {
        if (i) again += '&';
        again += encode(fields[i].name, i % 2) + "=" + encode(fields[i].value, i % 3 == 0);
    }
    check(fastsse::parse_form(again, max_fields) == fields, "the fields, encoded again, read back differently");

    if (body.find_first_of("%+=") == std::string::npos) {
        std::vector<FormField> pieces;
        size_t start = 0;
        for (;;) {
            auto amp = body.find('&', start);
            auto piece = body.substr(start, amp == std::string::npos ? amp : amp - start);
            if (!piece.empty()) pieces.push_back({piece, ""});
            if (amp == std::string::npos) break;
            start = amp + 1;
        }
        check(fields == pieces, "a plain body is not its pieces");
    }
    return 0;
}
