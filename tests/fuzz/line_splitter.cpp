// The command producer's LineSplitter on any output, fed in pieces of any size, then flushed:
// - no line is longer than max_line, but for a CR last in it: a CR waits for a possible LF and does
//   not count (a partial line is flushed with it, see test_command.cpp);
// - every byte fed comes out, in order, but the line ends: each LF and a CR just before it;
// - there are at least as many lines as LFs;
// - valid UTF-8 stays valid in every line: a long line is never cut inside a character.
// max_line is taken from 1 to 300 (the command setting's floor is 64): small values reach the
// cutting code with short inputs.
#include <fuzzer/FuzzedDataProvider.h>

#include <algorithm>
#include <string>
#include <vector>

#include "fastsse/producers/command.hpp"
#include "fuzz.hpp"

namespace {

using fastsse_fuzz::check;

// What the lines must add up to: the input without its LFs, nor the CR just before each.
std::string without_line_ends(std::string_view s) {
    std::string out;
    for (size_t i = 0; i < s.size(); ++i) {
        if (s[i] == '\n' || (s[i] == '\r' && i + 1 < s.size() && s[i + 1] == '\n')) continue;
        out += s[i];
    }
    return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* bytes, size_t size) {
    FuzzedDataProvider in(bytes, size);
    auto max_line = in.ConsumeIntegralInRange<size_t>(1, 300);
    std::vector<std::string> pieces;
    std::string input;
    while (in.remaining_bytes() > 0) {
        pieces.push_back(in.ConsumeRandomLengthString(512));
        input += pieces.back();
    }

    fastsse::LineSplitter splitter(max_line);
    std::vector<std::string> lines;
    auto line = [&](std::string_view l) { lines.emplace_back(l); };
    for (const auto& piece : pieces) splitter.feed(piece, line);
    splitter.flush(line);
    check(!splitter.has_partial(), "a partial line after flush()");

    std::string joined;
    for (const auto& l : lines) {
        check(l.size() <= max_line || (l.size() == max_line + 1 && l.back() == '\r'), "a line longer than max_line");
        joined += l;
    }
    check(joined == without_line_ends(input), "the lines are not the bytes fed");
    check(lines.size() >= static_cast<size_t>(std::count(input.begin(), input.end(), '\n')), "fewer lines than LFs");
    if (max_line >= 4 && fastsse_fuzz::valid_utf8(input))
        for (const auto& l : lines) check(fastsse_fuzz::valid_utf8(l), "valid UTF-8 cut inside a character");
    return 0;
}
