// The command producer's LineSplitter on any output, fed in pieces of any size, with a flush (the
// quiet time passing) after any piece, and at the end:
// - no line is longer than max_line (a CR last in a flushed line belongs to its line break);
// - every byte fed but CR and LF comes out, in order (a CR is content, a line break, or half of a
//   CRLF, depending on what follows and on when the quiet time passed);
// - there are at least as many lines as LFs, but for the line break that completes a flushed line;
// - valid UTF-8 stays valid in every line: a long line is never cut inside a character (the quiet
//   time passing is another matter: what came is sent).
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

std::string without_cr_lf(std::string_view s) {
    std::string out;
    for (char c : s)
        if (c != '\r' && c != '\n') out += c;
    return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* bytes, size_t size) {
    FuzzedDataProvider in(bytes, size);
    auto max_line = in.ConsumeIntegralInRange<size_t>(1, 300);
    std::vector<std::pair<std::string, bool>> pieces;  // and whether the quiet time passes after it
    std::string input;
    while (in.remaining_bytes() > 0) {
        bool quiet = in.ConsumeBool();
        pieces.emplace_back(in.ConsumeRandomLengthString(512), quiet);
        input += pieces.back().first;
    }

    fastsse::LineSplitter splitter(max_line);
    std::vector<std::string> lines;
    auto line = [&](std::string_view l) { lines.emplace_back(l); };
    size_t flushes = 0;
    for (const auto& [piece, quiet] : pieces) {
        splitter.feed(piece, line);
        if (quiet && splitter.has_partial()) {
            splitter.flush(line);
            ++flushes;
        }
    }
    splitter.flush(line);
    check(!splitter.has_partial(), "a partial line after flush()");

    std::string joined;
    for (const auto& l : lines) {
        check(l.size() <= max_line, "a line longer than max_line");
        joined += l;
    }
    check(without_cr_lf(joined) == without_cr_lf(input), "the lines are not the bytes fed");
    check(lines.size() + flushes >= static_cast<size_t>(std::count(input.begin(), input.end(), '\n')),
          "fewer lines than LFs");
    // A flush after the quiet time sends what came, a character's first bytes included.
    if (max_line >= 4 && flushes == 0 && fastsse_fuzz::valid_utf8(input))
        for (const auto& l : lines) check(fastsse_fuzz::valid_utf8(l), "valid UTF-8 cut inside a character");
    return 0;
}
