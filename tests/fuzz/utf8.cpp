// sanitize_utf8() on any bytes, against a decoder written apart (fuzz.hpp's valid_utf8):
// - what comes out is valid UTF-8, and valid input comes out unchanged;
// - each byte is kept or replaced by U+FFFD (3 bytes), so the output grows by an even count;
// - it resynchronises: garbage followed by valid text gives the garbage's result, then that text.
#include <fuzzer/FuzzedDataProvider.h>

#include <string>

#include "fastsse/producers/command.hpp"
#include "fuzz.hpp"

using fastsse::sanitize_utf8;
using fastsse_fuzz::check;
using fastsse_fuzz::valid_utf8;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* bytes, size_t size) {
    FuzzedDataProvider in(bytes, size);
    auto split = in.ConsumeIntegral<uint16_t>();
    auto text = in.ConsumeRemainingBytesAsString();

    auto out = sanitize_utf8(text);
    check(valid_utf8(out), "the output is not valid UTF-8");
    if (valid_utf8(text)) check(out == text, "valid UTF-8 was changed");
    check(out.size() >= text.size() && (out.size() - text.size()) % 2 == 0, "bytes lost, or not replaced one by one");

    auto head = text.substr(0, split % (text.size() + 1)), tail = text.substr(head.size());
    if (valid_utf8(tail)) check(sanitize_utf8(head + tail) == sanitize_utf8(head) + tail, "no resynchronisation");
    return 0;
}
