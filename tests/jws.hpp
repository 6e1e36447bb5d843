#pragma once
// Tokens for the tests and fuzzers of the hub: a compact JWS of exact JSON texts, MACed with
// OpenSSL's HMAC. Written once, for tests/unit and tests/fuzz, independently of src/hub/jwt.cpp (what
// it checks must not come from the code under test).
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <cstdint>
#include <string>
#include <string_view>

namespace fastsse_jws {

inline constexpr std::string_view alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

// Base64url without padding (RFC 7515, section 2).
inline std::string base64url(std::string_view bytes) {
    std::string out;
    uint32_t acc = 0;
    int bits = 0;
    for (unsigned char c : bytes) {
        acc = (acc << 8 | c) & 0xffff;
        bits += 8;
        while (bits >= 6) out += alphabet[(acc >> (bits -= 6)) & 63];
    }
    if (bits > 0) out += alphabet[(acc << (6 - bits)) & 63];
    return out;
}

inline std::string hmac(const EVP_MD* md, std::string_view key, std::string_view data) {
    unsigned char out[EVP_MAX_MD_SIZE];
    unsigned size = 0;
    HMAC(md, key.data(), int(key.size()), reinterpret_cast<const unsigned char*>(data.data()), data.size(), out, &size);
    return {reinterpret_cast<char*>(out), size};
}

// header.claims.signature, MACed with `md` (SHA-256 unless a test wants another).
inline std::string sign(std::string_view header, std::string_view claims, std::string_view key,
                        const EVP_MD* md = EVP_sha256()) {
    std::string input = base64url(header) + "." + base64url(claims);
    return input + "." + base64url(hmac(md, key, input));
}

}  // namespace fastsse_jws
