#include "fastsse/fastcgi/records.hpp"

#include <fcgiapp.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>
#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <system_error>
#include <vector>

namespace fastsse {

namespace fastcgi {

namespace {
// The record types and codes of the FastCGI 1.0 specification that fastsse reads or writes.
constexpr unsigned char version_1 = 1;
constexpr unsigned char type_begin_request = 1, type_abort_request = 2, type_end_request = 3, type_params = 4,
                        type_stdin = 5, type_stdout = 6, type_get_values = 9, type_get_values_result = 10,
                        type_unknown_type = 11;
constexpr unsigned role_responder = 1;
constexpr unsigned char request_complete = 0, cant_mpx_conn = 1, unknown_role = 3;  // protocolStatus

std::array<char, header_size> header(unsigned char type, uint16_t id, size_t length) {
    return {static_cast<char>(version_1), static_cast<char>(type), static_cast<char>(id >> 8),
            static_cast<char>(id & 0xff), static_cast<char>((length >> 8) & 0xff), static_cast<char>(length & 0xff),
            0, 0};
}
}  // namespace

std::array<char, header_size> stdout_header(uint16_t request_id, size_t length) {
    return header(type_stdout, request_id, length);
}

void append_stdout(std::string& out, uint16_t request_id, std::string_view content) {
    while (!content.empty()) {
        auto chunk = content.substr(0, max_content);
        auto h = header(type_stdout, request_id, chunk.size());
        out.append(h.data(), h.size());
        out.append(chunk);
        content.remove_prefix(chunk.size());
    }
}

void append_end(std::string& out, uint16_t request_id) {
    auto h = header(type_stdout, request_id, 0);
    out.append(h.data(), h.size());
    h = header(type_end_request, request_id, 8);
    out.append(h.data(), h.size());
    // FCGI_EndRequestBody: appStatus (4 bytes) = 0, protocolStatus, 3 reserved.
    const char body[8] = {0, 0, 0, 0, static_cast<char>(request_complete), 0, 0, 0};
    out.append(body, sizeof body);
}

void drain_input(int fd) noexcept {
    char buf[16 * 1024];
    // A peer that keeps sending gets its reset: the bound keeps it from holding the loop here.
    for (int i = 0; i < 64 && ::recv(fd, buf, sizeof buf, MSG_DONTWAIT) > 0; ++i) {
    }
}

namespace {

struct RecordHeader {
    unsigned version, type, request_id, content_length, padding;
    size_t size() const { return header_size + content_length + padding; }
};

unsigned byte_at(std::string_view s, size_t i) { return static_cast<unsigned char>(s[i]); }

RecordHeader read_header(std::string_view s) {
    return {byte_at(s, 0), byte_at(s, 1), byte_at(s, 2) << 8 | byte_at(s, 3), byte_at(s, 4) << 8 | byte_at(s, 5),
            byte_at(s, 6)};
}

// One length of a name-value pair (FastCGI spec 3.4): one byte, or four with the high bit set.
std::optional<size_t> take_length(std::string_view& s) {
    if (s.empty()) return std::nullopt;
    if (unsigned first = byte_at(s, 0); !(first & 0x80)) {
        s.remove_prefix(1);
        return first;
    }
    if (s.size() < 4) return std::nullopt;
    size_t n = static_cast<size_t>(byte_at(s, 0) & 0x7f) << 24 | byte_at(s, 1) << 16 | byte_at(s, 2) << 8 | byte_at(s, 3);
    s.remove_prefix(4);
    return n;
}

// Calls fn(name, value) for each pair; false when a length runs past the bytes there are, which is
// what libfcgi would otherwise allocate (up to 4 GiB) or abort on.
template <class Fn>
bool for_each_pair(std::string_view s, Fn fn) {
    while (!s.empty()) {
        auto name_length = take_length(s);
        auto value_length = name_length ? take_length(s) : std::nullopt;
        if (!value_length || *name_length > s.size() || *value_length > s.size() - *name_length) return false;
        fn(s.substr(0, *name_length), s.substr(*name_length, *value_length));
        s.remove_prefix(*name_length + *value_length);
    }
    return true;
}

std::string record(unsigned char type, unsigned request_id, std::string_view content) {
    auto h = header(type, static_cast<uint16_t>(request_id), content.size());
    return std::string(h.data(), h.size()).append(content);
}

std::string end_request(unsigned request_id, unsigned char protocol_status) {
    const char body[8] = {0, 0, 0, 0, static_cast<char>(protocol_status), 0, 0, 0};
    return record(type_end_request, request_id, std::string_view(body, sizeof body));
}

// The reply the spec asks for to a management record: the values fastsse knows for FCGI_GET_VALUES
// (each once, however often it is asked), FCGI_UNKNOWN_TYPE for any other type.
std::string management_answer(unsigned type, std::string_view content, size_t max_conns) {
    if (type != type_get_values) {
        const char body[8] = {static_cast<char>(type), 0, 0, 0, 0, 0, 0, 0};
        return record(type_unknown_type, 0, std::string_view(body, sizeof body));
    }
    std::string pairs;
    std::vector<std::string_view> seen;
    for_each_pair(content, [&](std::string_view name, std::string_view) {
        std::string value;
        if (name == "FCGI_MAX_CONNS" || name == "FCGI_MAX_REQS") value = std::to_string(max_conns);
        else if (name == "FCGI_MPXS_CONNS") value = "0";
        if (value.empty() || std::find(seen.begin(), seen.end(), name) != seen.end()) return;
        seen.push_back(name);
        pairs += static_cast<char>(name.size());
        pairs += static_cast<char>(value.size());
        pairs.append(name).append(value);
    });
    return record(type_get_values_result, 0, pairs);
}

}  // namespace

HeadCheck check_head(std::string_view bytes, size_t max_conns) {
    HeadCheck check;
    auto refuse = [&](std::string reason, std::string answer = {}) {
        check.verdict = HeadCheck::Verdict::refused;
        check.reason = std::move(reason);
        check.answer = std::move(answer);
        return check;
    };
    enum class Expect { begin, params } expect = Expect::begin;
    unsigned id = 0;
    std::string params;  // the FCGI_PARAMS stream: pairs may span records
    size_t at = 0;
    while (bytes.size() - at >= header_size) {
        auto h = read_header(bytes.substr(at));
        if (h.version != version_1) return refuse(fmt::format("not FastCGI (a record of version {})", h.version));
        if (bytes.size() - at < h.size()) break;  // the rest of this record has not come yet
        auto content = bytes.substr(at + header_size, h.content_length);
        at += h.size();
        if (h.request_id == 0 && h.type != type_begin_request)
            return refuse(fmt::format("a management record (type {}), answered; fastsse takes requests only", h.type),
                          management_answer(h.type, content, max_conns));
        if (h.type == type_begin_request && expect != Expect::begin)
            return refuse("a second FCGI_BEGIN_REQUEST: fastsse does not multiplex connections",
                          end_request(h.request_id, cant_mpx_conn));
        switch (expect) {
        case Expect::begin: {
            if (h.type != type_begin_request)
                return refuse(fmt::format("the first record is of type {}, not FCGI_BEGIN_REQUEST", h.type));
            if (h.request_id == 0 || h.content_length != 8) return refuse("a malformed FCGI_BEGIN_REQUEST");
            // libfcgi reads what follows the body as the next record: padding would hide records from us.
            if (h.padding != 0) return refuse("FCGI_BEGIN_REQUEST with padding");
            unsigned role = byte_at(content, 0) << 8 | byte_at(content, 1);
            if (role != role_responder)
                return refuse(fmt::format("role {}: fastsse is a responder", role), end_request(h.request_id, unknown_role));
            id = h.request_id;
            expect = Expect::params;
            break;
        }
        case Expect::params:
            if (h.request_id != id || h.type != type_params)
                return refuse(fmt::format("a record of type {} where the params of request {} go", h.type, id));
            if (h.content_length > 0) {
                params.append(content);
                break;
            }
            // libfcgi leaves the padding of the empty record unread, and would take it for records.
            if (h.padding != 0) return refuse("the end of FCGI_PARAMS with padding");
            if (!for_each_pair(params, [](std::string_view, std::string_view) {}))
                return refuse("a param whose length runs past the params that came");
            check.verdict = HeadCheck::Verdict::ready;
            check.head_length = at;
            return check;
        }
    }
    return check;
}

void BodyReader::start_record() {
    auto h = read_header(std::string_view(header_.data(), header_.size()));
    auto refuse = [&](std::string reason) {
        state_ = State::refused;
        reason_ = std::move(reason);
        body_.clear();
    };
    if (h.version != version_1) return refuse(fmt::format("not FastCGI (a record of version {})", h.version));
    if (h.request_id == id_ && h.type == type_abort_request) return refuse("the web server aborted the request");
    if (h.request_id != id_ || h.type != type_stdin)
        return refuse(fmt::format("a record of type {} where the body of request {} goes", h.type, id_));
    content_left_ = h.content_length;
    padding_left_ = h.padding;
    last_ = h.content_length == 0;
}

size_t BodyReader::feed(std::string_view bytes) {
    size_t used = 0;
    while (state_ == State::more) {
        if (header_have_ == header_size && content_left_ == 0 && padding_left_ == 0) {
            if (last_) {
                state_ = State::whole;
                break;
            }
            header_have_ = 0;  // the next record
        }
        auto rest = bytes.substr(used);
        if (rest.empty()) break;
        if (header_have_ < header_size) {
            size_t n = std::min(header_size - header_have_, rest.size());
            std::memcpy(header_.data() + header_have_, rest.data(), n);
            header_have_ += n;
            used += n;
            if (header_have_ == header_size) start_record();
        } else if (content_left_ > 0) {
            size_t n = std::min(content_left_, rest.size());
            if (!too_large_ && body_.size() + n > limit_) {
                too_large_ = true;  // the rest is only walked through, still checked
                std::string().swap(body_);
            }
            if (!too_large_) body_.append(rest.substr(0, n));
            content_left_ -= n;
            used += n;
        } else {
            size_t n = std::min(padding_left_, rest.size());
            padding_left_ -= n;
            used += n;
        }
    }
    return used;
}

std::optional<Connection> read_request(std::string_view head, UniqueFd fd) {
    int ends[2];
    if (::pipe2(ends, O_CLOEXEC) != 0) return std::nullopt;
    UniqueFd out(ends[0]), in(ends[1]);
    // A pipe holds 64 KiB unless asked for more; a head is rarely a tenth of that.
    constexpr size_t pipe_default = 64 * 1024;
    if (head.size() > pipe_default && ::fcntl(in.get(), F_SETPIPE_SZ, static_cast<int>(head.size())) < 0)
        return std::nullopt;
    ::fcntl(in.get(), F_SETFL, O_NONBLOCK);
    while (!head.empty()) {
        ssize_t n = ::write(in.get(), head.data(), head.size());
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return std::nullopt;
        head.remove_prefix(static_cast<size_t>(n));
    }
    in.reset();
    auto connection = read_request(std::move(out));
    if (connection) connection->fd = std::move(fd);
    return connection;
}

std::optional<Connection> read_request(UniqueFd fd) {
    FCGX_Request req;
    FCGX_InitRequest(&req, -1, 0);
    // libfcgi reads the head of a connection it did not accept itself when the request looks like the
    // next one on a kept-alive connection (keepConnection); `detached` makes its close on error a plain
    // close(), without the lingering shutdown that would wait on the peer.
    req.ipcFd = fd.release();
    req.keepConnection = 1;
    req.detached = 1;
    if (FCGX_Accept_r(&req) < 0) return std::nullopt;

    Connection c;
    c.request = request_from_env(req.envp);  // envp dies with req: copy now
    c.request_id = static_cast<uint16_t>(req.requestId);
    c.fd = UniqueFd(req.ipcFd);
    // Take the connection back: free libfcgi's buffers and params without closing or writing anything.
    FCGX_Free(&req, 0);
    return c;
}

}  // namespace fastcgi

}  // namespace fastsse
