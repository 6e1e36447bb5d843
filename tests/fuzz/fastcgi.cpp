// The FastCGI gate with libfcgi in the loop: any bytes through check_head(), and whatever it lets
// through read by libfcgi 2.4.2 itself (read_request from a pipe holding the head), as the acceptor
// does; the bytes after the head through BodyReader. Under
// ASan this is where libfcgi's stack overflow, its abort on huge param lengths and its leak on
// unknown management records would show. Properties:
// - a refusal has a reason, and its answer is whole records of the null request id (management
//   answers) or of one request (FCGI_END_REQUEST);
// - whatever check_head calls ready, libfcgi reads whole, for the same request id;
// - a prefix of ready bytes is never refused: bytes still to come cannot make a good head bad;
// - the body kept for a route is bounded by the limit, and never kept once it passed it;
// - BodyReader reads the same, to the same end, whether its bytes come at once or cut in two.
#include <fcgiapp.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>

#include "fastsse/fastcgi/records.hpp"
#include "fuzz.hpp"

namespace {

using fastsse_fuzz::check;
namespace fcgi = fastsse::fastcgi;
using Verdict = fcgi::HeadCheck::Verdict;

void check_answer(std::string_view answer) {
    while (!answer.empty()) {
        check(answer.size() >= 8, "an answer is whole records");
        auto length = static_cast<unsigned char>(answer[4]) << 8 | static_cast<unsigned char>(answer[5]);
        check(answer[0] == 1 && answer.size() >= 8u + length + static_cast<unsigned char>(answer[6]),
              "an answer record is version 1 and whole");
        auto type = static_cast<unsigned char>(answer[1]);
        check(type == 3 || type == 10 || type == 11, "an answer is END_REQUEST, GET_VALUES_RESULT or UNKNOWN_TYPE");
        answer.remove_prefix(8 + length + static_cast<unsigned char>(answer[6]));
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static const bool initialised = FCGX_Init() == 0;
    check(initialised, "FCGX_Init");
    // What the acceptor peeks at most; a socketpair holds that much without a reader.
    std::string_view bytes(reinterpret_cast<const char*>(data), std::min<size_t>(size, 128 * 1024));
    auto head = fcgi::check_head(bytes, 100);
    if (head.verdict == Verdict::refused) {
        check(!head.reason.empty(), "a refusal has a reason");
        check_answer(head.answer);
        return 0;
    }
    if (head.verdict == Verdict::incomplete) return 0;
    check(head.head_length >= 8 && head.head_length <= bytes.size(), "the head is within the bytes");
    auto rest = bytes.substr(head.head_length);
    unsigned id = static_cast<unsigned char>(bytes[2]) << 8 | static_cast<unsigned char>(bytes[3]);
    size_t limit = size % 1000;  // small, so that both sides of it are reached
    fcgi::BodyReader whole(id, limit);
    size_t used = whole.feed(rest);
    check(used <= rest.size() && (whole.state() != fcgi::BodyReader::State::more || used == rest.size()),
          "the body reader uses all it is given until the body ends");
    check(whole.body().size() <= limit && whole.body().size() <= used, "the body kept is bounded");
    check(!whole.too_large() || whole.body().empty(), "a body too large is not kept");
    check(whole.state() != fcgi::BodyReader::State::refused || !whole.reason().empty(), "a refusal has a reason");
    fcgi::BodyReader cut(id, limit);
    size_t at = rest.size() / 3;
    size_t used_cut = cut.feed(rest.substr(0, at));
    if (cut.state() == fcgi::BodyReader::State::more) used_cut += cut.feed(rest.substr(at));
    check(cut.state() == whole.state() && used_cut == used && cut.body() == whole.body() &&
              cut.too_large() == whole.too_large(),
          "a body cut in two reads as the whole");
    for (size_t cut : {size_t{0}, head.head_length / 2, head.head_length - 1})
        check(fcgi::check_head(bytes.substr(0, cut), 100).verdict == Verdict::incomplete,
              "a prefix of a ready head is incomplete");

    int fds[2];
    check(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) == 0, "socketpair");
    fastsse::UniqueFd ours(fds[0]);
    auto connection = fcgi::read_request(bytes.substr(0, head.head_length), fastsse::UniqueFd(fds[1]));
    check(connection.has_value(), "libfcgi reads every head check_head lets through");
    check(connection->request_id == id, "the request id is BEGIN_REQUEST's");
    check(connection->fd.get() == fds[1], "the connection is the socket's, not the pipe's");
    return 0;
}
