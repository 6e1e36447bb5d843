#pragma once
// What the harnesses share: a property check that stops the fuzzer on the input that broke it.
#include <cstdio>
#include <cstdlib>
#include <string_view>

namespace fastsse_fuzz {

// A broken property is a bug like a crash: abort() makes libFuzzer save the input and fail.
inline void check(bool ok, std::string_view what) {
    if (ok) return;
    std::fprintf(stderr, "fuzz: property broken: %.*s\n", static_cast<int>(what.size()), what.data());
    std::abort();
}

// Valid UTF-8 (Unicode's Table 3-7), decided by decoding each code point and checking its value
// (no overlong form, no surrogate, nothing past U+10FFFF): written apart from the code under test,
// which matches byte ranges.
inline bool valid_utf8(std::string_view s) {
    constexpr char32_t least[] = {0, 0x80, 0x800, 0x10000};  // by continuation bytes
    for (size_t i = 0; i < s.size();) {
        auto c = static_cast<unsigned char>(s[i]);
        size_t more = c < 0x80 ? 0 : (c & 0xe0) == 0xc0 ? 1 : (c & 0xf0) == 0xe0 ? 2 : (c & 0xf8) == 0xf0 ? 3 : 4;
        if (more == 4 || i + more >= s.size()) return false;
        char32_t cp = more == 0 ? c : c & (0x7f >> (more + 1));
        for (size_t k = 1; k <= more; ++k) {
            auto b = static_cast<unsigned char>(s[i + k]);
            if ((b & 0xc0) != 0x80) return false;
            cp = (cp << 6) | (b & 0x3f);
        }
        if (cp < least[more] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
        i += more + 1;
    }
    return true;
}

}  // namespace fastsse_fuzz
