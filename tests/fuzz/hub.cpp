// The Mercure hub producer on any publication body and any subscription query: what the parsers
// (parse_form, TopicSelector, find_token) give it, put together. Properties:
// - a publish either answers an id, and a subscriber of "*" allowed to read everything then got
//   exactly one more event, with that id; or it is refused with 400 or 403 (the token is valid),
//   and nobody got anything;
// - a publisher whose token covers only urn:a is refused (403) for any other topic;
// - a subscription is refused with 400 or 401 only, and when it opens, its response headers are
//   Last-Event-ID and Mercure-Last-Event-ID exactly when it gave a resume point, both the same
//   value, with no CR, LF or NUL.
#include <fuzzer/FuzzedDataProvider.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "../jws.hpp"
#include "../publish_now.hpp"

#include <chrono>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "fastsse/http/request.hpp"
#include "fastsse/producers/hub.hpp"
#include "fuzz.hpp"

using namespace std::chrono_literals;
using fastsse_fuzz::check;

namespace {

constexpr std::string_view pub_key = "fuzz-publisher-key";
constexpr std::string_view sub_key = "fuzz-subscriber-key";

std::string token(std::string_view claims, std::string_view key) {
    return fastsse_jws::sign(R"({"alg":"HS256"})", claims, key);
}

// Counts what it is sent; the headers a subscription adds.
class Sink final : public fastsse::Sink {
public:
    void send(const fastsse::Event& e) override { ids.emplace_back(e.id.value_or("")); }
    void send_encoded(std::string_view bytes) override {
        auto at = bytes.find("\nid: ");
        auto start = bytes.starts_with("id: ") ? 4 : at == bytes.npos ? bytes.npos : at + 5;
        ids.emplace_back(start == bytes.npos ? std::string() : std::string(bytes.substr(start, bytes.find('\n', start) - start)));
    }
    void finish(std::optional<std::chrono::milliseconds>) override {}
    size_t room() const override { return 1 << 20; }
    void add_header(std::string_view name, std::string_view value) override {
        headers.emplace_back(std::string(name), std::string(value));
    }
    std::vector<std::string> ids;
    std::vector<std::pair<std::string, std::string>> headers;
};

struct World {
    fastsse::EventLoop loop;
    fastsse::HubProducer hub{loop};
    fastsse::Params params{{"anonymous", "1"}};
    Sink everything;
    fastsse::Request everything_request;
    std::unique_ptr<fastsse::Subscription> everything_work;
    std::string all_topics = "Bearer " + token(R"({"mercure":{"publish":["*"]}})", pub_key);
    std::string only_a = "Bearer " + token(R"({"mercure":{"publish":["urn:a"]}})", pub_key);

    World() {
        fastsse::HubSettings s;
        fastsse::hub_settings().set_defaults(s);
        s.publisher_key = pub_key;
        s.subscriber_key = sub_key;
        s.history = 16;
        hub.configure(s);
        everything_request.method = "GET";
        everything_request.query = "topic=*";
        everything_request.authorization = "Bearer " + token(R"({"mercure":{"subscribe":["*"]}})", sub_key);
        everything_work = hub.open(everything, start(everything_request));
    }
    fastsse::StreamStart start(const fastsse::Request& r) { return {{}, r.query, params, 3000ms, &r}; }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static World w;
    FuzzedDataProvider in(data, size);
    bool narrow = in.ConsumeBool();
    auto body = in.ConsumeRandomLengthString(4096);
    auto query = in.ConsumeRandomLengthString(1024);
    std::optional<std::string> last_id;
    if (in.ConsumeBool()) last_id = in.ConsumeRandomLengthString(64);

    // Publish.
    fastsse::Request post;
    post.method = "POST";
    post.content_type = "application/x-www-form-urlencoded";
    post.authorization = narrow ? w.only_a : w.all_topics;
    w.everything.ids.clear();  // one run's events only: the fuzzer runs millions
    auto before = w.everything.ids.size();
    try {
        auto id = fastsse_test::publish_now(w.hub, post, body).body;
        check(w.everything.ids.size() == before + 1, "a publish reaches the subscriber of everything once");
        check(w.everything.ids.back() == id, "the event's id is the answer");
    } catch (const fastsse::RequestError& e) {
        check(e.status == 400 || (e.status == 403 && narrow), "a publish is refused with 400, or 403 when narrow");
        check(w.everything.ids.size() == before, "a refused publish sends nothing");
    }

    // Subscribe.
    fastsse::Request get;
    get.method = "GET";
    get.query = query;
    get.last_event_id = last_id;
    Sink sink;
    try {
        auto work = w.hub.open(sink, w.start(get));
        bool resumed = last_id && !last_id->empty();
        // A resume point may come from the query too (lastEventID=, last_event_id=).
        check(sink.headers.empty() || sink.headers.size() == 2, "both resume headers, or none");
        if (resumed) check(sink.headers.size() == 2, "a resume point given: the headers");
        if (!sink.headers.empty()) {
            check(sink.headers[0].first == "Last-Event-ID" && sink.headers[1].first == "Mercure-Last-Event-ID",
                  "the headers' names");
            check(sink.headers[0].second == sink.headers[1].second, "the same value in both");
            check(sink.headers[0].second.find_first_of(std::string_view("\r\n\0", 3)) == std::string::npos,
                  "no CR, LF or NUL in a header");
        }
    } catch (const fastsse::RequestError& e) {
        check(e.status == 400 || e.status == 401, "a subscription is refused with 400 or 401");
    }
    return 0;
}
