// The ids the hub makes up (include/fastsse/hub/update_id.hpp): Mercure's own hub's format,
// `urn:uuid:` and a version 4 UUID, never the same twice, and from random bits.
#include <doctest/doctest.h>

#include <set>
#include <string>
#include <vector>

#include "fastsse/hub/update_id.hpp"

using fastsse::hub::UpdateIds;

namespace {

bool is_lower_hex(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }

// "urn:uuid:xxxxxxxx-xxxx-4xxx-Vxxx-xxxxxxxxxxxx", V one of 8, 9, a, b (RFC 9562: version 4, variant 10).
void check_format(const std::string& id) {
    CAPTURE(id);
    REQUIRE(id.size() == 45);
    CHECK(id.starts_with("urn:uuid:"));
    auto uuid = id.substr(9);
    for (size_t i = 0; i < uuid.size(); ++i) {
        CAPTURE(i);
        if (i == 8 || i == 13 || i == 18 || i == 23) CHECK(uuid[i] == '-');
        else CHECK(is_lower_hex(uuid[i]));
    }
    CHECK(uuid[14] == '4');
    CHECK(std::string_view("89ab").find(uuid[19]) != std::string_view::npos);
}

}  // namespace

TEST_CASE("UpdateIds: urn:uuid: and a version 4 UUID") {
    UpdateIds ids;
    for (int i = 0; i < 1000; ++i) check_format(ids.next());
}

TEST_CASE("UpdateIds: never the same twice, across many refills of the pool and between generators") {
    UpdateIds a, b;
    std::set<std::string> seen;
    for (int i = 0; i < 100'000; ++i) {
        CHECK(seen.insert(a.next()).second);
        CHECK(seen.insert(b.next()).second);
    }
    CHECK(seen.size() == 200'000);
}

TEST_CASE("UpdateIds: every digit but the fixed ones varies (the bits are random, all of them used)") {
    UpdateIds ids;
    std::vector<std::set<char>> digits(36);
    for (int i = 0; i < 2000; ++i) {
        auto uuid = ids.next().substr(9);
        for (size_t p = 0; p < uuid.size(); ++p) digits[p].insert(uuid[p]);
    }
    for (size_t p = 0; p < digits.size(); ++p) {
        CAPTURE(p);
        if (p == 8 || p == 13 || p == 18 || p == 23) CHECK(digits[p] == std::set<char>{'-'});
        else if (p == 14) CHECK(digits[p] == std::set<char>{'4'});
        else if (p == 19) CHECK(digits[p] == std::set<char>{'8', '9', 'a', 'b'});
        else CHECK(digits[p].size() == 16);  // missing one of 16 in 2000 draws: about 16 * e^-125
    }
}
