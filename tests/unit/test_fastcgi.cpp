// FastCGI record framing, byte for byte (FastCGI 1.0 specification, sections 3.3, 5.3 and 5.5).
#include <doctest/doctest.h>

#include <string>
#include <string_view>
#include <vector>

#include "fastsse/fastcgi.hpp"

using namespace std::string_view_literals;
namespace fcgi = fastsse::fastcgi;

namespace {

unsigned byte(const std::string& s, size_t i) { return static_cast<unsigned char>(s.at(i)); }

struct Record {
    unsigned version, type, request_id;
    std::string content;
    unsigned padding;
};

// Parses a buffer of whole records; fails the test on a truncated one.
std::vector<Record> parse(const std::string& s) {
    std::vector<Record> out;
    size_t i = 0;
    while (i < s.size()) {
        REQUIRE(s.size() - i >= 8);
        Record r;
        r.version = byte(s, i);
        r.type = byte(s, i + 1);
        r.request_id = byte(s, i + 2) << 8 | byte(s, i + 3);
        size_t length = byte(s, i + 4) << 8 | byte(s, i + 5);
        r.padding = byte(s, i + 6);
        CHECK(byte(s, i + 7) == 0);  // reserved
        REQUIRE(s.size() - i - 8 >= length + r.padding);
        r.content = s.substr(i + 8, length);
        i += 8 + length + r.padding;
        out.push_back(std::move(r));
    }
    return out;
}

}  // namespace

TEST_CASE("stdout_header") {
    SUBCASE("a small record") {
        auto h = fcgi::stdout_header(1, 23);
        CHECK(std::string(h.data(), h.size()) == "\x01\x06\x00\x01\x00\x17\x00\x00"sv);
    }
    SUBCASE("request id and length are big-endian") {
        auto h = fcgi::stdout_header(0x1234, 0xabcd);
        CHECK(std::string(h.data(), h.size()) == "\x01\x06\x12\x34\xab\xcd\x00\x00"sv);
    }
    SUBCASE("the largest record") {
        auto h = fcgi::stdout_header(0xffff, fcgi::max_content);
        CHECK(std::string(h.data(), h.size()) == "\x01\x06\xff\xff\xff\xff\x00\x00"sv);
    }
    SUBCASE("an empty record (the end of the stream)") {
        auto h = fcgi::stdout_header(1, 0);
        CHECK(std::string(h.data(), h.size()) == "\x01\x06\x00\x01\x00\x00\x00\x00"sv);
    }
    CHECK(fcgi::header_size == 8);
    CHECK(fcgi::max_content == 65535);
}

TEST_CASE("append_stdout") {
    SUBCASE("one record, appended after what is there") {
        std::string out = "xy";
        fcgi::append_stdout(out, 1, "data: x\n\n");
        CHECK(out == "xy\x01\x06\x00\x01\x00\x09\x00\x00"
                     "data: x\n\n"sv);
    }
    SUBCASE("empty content writes nothing: an empty STDOUT record would end the response") {
        std::string out = "xy";
        fcgi::append_stdout(out, 1, "");
        CHECK(out == "xy");
    }
    SUBCASE("exactly 65535 bytes is one record") {
        std::string content(65535, 'a');
        std::string out;
        fcgi::append_stdout(out, 3, content);
        CHECK(out.size() == 8 + 65535);
        auto records = parse(out);
        REQUIRE(records.size() == 1);
        CHECK(records[0].content == content);
        CHECK(out.substr(0, 8) == "\x01\x06\x00\x03\xff\xff\x00\x00"sv);
    }
    SUBCASE("65536 bytes is split into 65535 + 1") {
        std::string content(65535, 'a');
        content += 'b';
        std::string out;
        fcgi::append_stdout(out, 3, content);
        CHECK(out.size() == 2 * 8 + 65536);
        auto records = parse(out);
        REQUIRE(records.size() == 2);
        CHECK(records[0].content == std::string(65535, 'a'));
        CHECK(records[1].content == "b");
        CHECK(out.substr(8 + 65535, 8) == "\x01\x06\x00\x03\x00\x01\x00\x00"sv);
    }
    SUBCASE("a larger payload becomes several records that rebuild it exactly") {
        std::string content;
        for (size_t i = 0; i < 200'000; ++i) content += static_cast<char>('a' + i % 26);
        std::string out;
        fcgi::append_stdout(out, 0x0102, content);
        auto records = parse(out);
        REQUIRE(records.size() == 4);
        std::string joined;
        for (auto& r : records) {
            CHECK(r.version == 1);
            CHECK(r.type == 6);
            CHECK(r.request_id == 0x0102);
            CHECK(r.padding == 0);
            joined += r.content;
        }
        CHECK(records[0].content.size() == 65535);
        CHECK(records[1].content.size() == 65535);
        CHECK(records[2].content.size() == 65535);
        CHECK(records[3].content.size() == 200'000 - 3 * 65535);
        CHECK(joined == content);
    }
    SUBCASE("bytes are copied as they are, NUL included") {
        std::string out;
        fcgi::append_stdout(out, 1, "a\0b"sv);
        CHECK(out == "\x01\x06\x00\x01\x00\x03\x00\x00"
                     "a\0b"sv);
    }
}

TEST_CASE("append_end: an empty STDOUT record, then END_REQUEST with an 8-byte body") {
    std::string out = "z";
    fcgi::append_end(out, 1);
    CHECK(out == "z"
                 "\x01\x06\x00\x01\x00\x00\x00\x00"                                      // FCGI_STDOUT, empty
                 "\x01\x03\x00\x01\x00\x08\x00\x00"                                      // FCGI_END_REQUEST, 8 bytes
                 "\x00\x00\x00\x00\x00\x00\x00\x00"sv);                                  // appStatus 0, REQUEST_COMPLETE
    std::string other;
    fcgi::append_end(other, 0xbeef);
    auto records = parse(other);
    REQUIRE(records.size() == 2);
    CHECK(records[0].type == 6);
    CHECK(records[0].request_id == 0xbeef);
    CHECK(records[0].content.empty());
    CHECK(records[1].type == 3);
    CHECK(records[1].request_id == 0xbeef);
    CHECK(records[1].content == std::string(8, '\0'));
}

TEST_CASE("a whole response: headers, events, end") {
    std::string out;
    fcgi::append_stdout(out, 5, "Status: 200 OK\r\n\r\n");
    fcgi::append_stdout(out, 5, "data: 1\n\n");
    fcgi::append_end(out, 5);
    auto records = parse(out);
    REQUIRE(records.size() == 4);
    CHECK(records[0].content == "Status: 200 OK\r\n\r\n");
    CHECK(records[1].content == "data: 1\n\n");
    CHECK(records[2].type == 6);
    CHECK(records[2].content.empty());
    CHECK(records[3].type == 3);
    for (auto& r : records) CHECK(r.request_id == 5);
}

namespace {

// One FastCGI record as a web server sends it: header, content, padding.
std::string record(unsigned char type, std::string_view content, unsigned char padding = 0) {
    std::string r = {1, static_cast<char>(type), 0, 1, static_cast<char>(content.size() >> 8),
                     static_cast<char>(content.size() & 0xff), static_cast<char>(padding), 0};
    r += content;
    r.append(padding, '\0');
    return r;
}

constexpr unsigned char begin_request = 1, params = 4, stdin_ = 5;

}  // namespace

TEST_CASE("request_head_length: the head ends with the empty FCGI_PARAMS record") {
    auto head = record(begin_request, std::string("\0\1\0\0\0\0\0\0", 8)) +
                record(params, "\x0e\x03REQUEST_METHODGET", 5) + record(params, "");
    auto with_stdin = head + record(stdin_, "");

    CHECK(fcgi::request_head_length(head) == head.size());
    CHECK(fcgi::request_head_length(with_stdin) == head.size());  // what follows the head is not counted

    SUBCASE("any shorter prefix is not all there yet") {
        for (size_t cut = 0; cut < head.size(); ++cut) {
            CAPTURE(cut);
            CHECK(fcgi::request_head_length(std::string_view(head).substr(0, cut)) == 0);
        }
    }
    SUBCASE("an empty record of another type does not end the head") {
        auto no_end = record(begin_request, std::string(8, '\0')) + record(stdin_, "");
        CHECK(fcgi::request_head_length(no_end) == 0);
    }
    SUBCASE("a record with padding that merely looks empty is skipped whole") {
        auto padded = record(params, "", 3);  // content 0: this one does end the params, padding included
        CHECK(fcgi::request_head_length(padded) == padded.size());
    }
    SUBCASE("bytes that are not FastCGI version 1") {
        CHECK(fcgi::request_head_length("GET / HTTP/1.1\r\n\r\n") == fcgi::npos);
        CHECK(fcgi::request_head_length(record(params, "x") + std::string(8, '\x07')) == fcgi::npos);
    }
}

TEST_CASE("request_length: the whole request ends with the empty FCGI_STDIN record") {
    auto head = record(begin_request, std::string("\0\1\0\0\0\0\0\0", 8)) +
                record(params, "\x0e\x03REQUEST_METHODGET", 5) + record(params, "");
    auto get = head + record(stdin_, "");
    auto post = head + record(stdin_, "x=1", 5) + record(stdin_, "");

    CHECK(fcgi::request_length(get) == get.size());
    CHECK(fcgi::request_length(post) == post.size());
    // Apache's mod_proxy_fcgi sends the head and the end of stdin in two writes: the head alone is
    // not the whole request.
    CHECK(fcgi::request_length(head) == 0);
    CHECK(fcgi::request_length(head + record(stdin_, "x=1")) == 0);
    for (size_t cut = head.size(); cut < post.size(); ++cut) {
        CAPTURE(cut);
        CHECK(fcgi::request_length(std::string_view(post).substr(0, cut)) == 0);
    }
    CHECK(fcgi::request_length(get + "more") == get.size());
    CHECK(fcgi::request_length(head + "GET / HTTP/1.1\r\n\r\n") == fcgi::npos);
}
