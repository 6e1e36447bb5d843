// The subscription API's paths (hub/subscriptions.hpp) on any bytes after the hub's path, and the
// documents made of any strings. Properties:
// - decode_segment(encode_variable(x)) is x, for any bytes;
// - a path parse_api_path() reads, written again from what it read (each part encoded), reads the
//   same; a path it refuses has an empty segment, more than three, a bad escape, or three whose
//   first is no matcher type;
// - subscription_json() and collection_json() are valid JSON holding what they were given, and the
//   topic is the document's id, whatever the strings (nlohmann parses them back; U+FFFD stands for
//   bytes that are not UTF-8).
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "fastsse/hub/subscriptions.hpp"
#include "fuzz.hpp"

using fastsse_fuzz::check;
namespace hub = fastsse::hub;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string input(reinterpret_cast<const char*>(data), size);

    auto decoded = hub::decode_segment(hub::encode_variable(input));
    check(decoded && *decoded == input, "a variable encoded does not decode back");

    std::string path = std::string(hub::hub_path) + "/subscriptions" + input;
    auto query = hub::parse_api_path(path);
    if (query) {
        using Kind = hub::ApiQuery::Kind;
        std::string again = std::string(hub::hub_path) + "/subscriptions";
        switch (query->kind) {
        case Kind::all: break;
        case Kind::topic: again += "/" + hub::encode_variable(query->match); break;
        case Kind::one_v0:
            again += "/" + hub::encode_variable(query->match) + "/" + hub::encode_variable(query->subscriber);
            break;
        case Kind::match: again += "/" + query->match_type + "/" + hub::encode_variable(query->match); break;
        case Kind::one_v1:
            again += "/" + query->match_type + "/" + hub::encode_variable(query->match) + "/" +
                     hub::encode_variable(query->subscriber);
            break;
        }
        auto reread = hub::parse_api_path(again);
        check(reread && reread->kind == query->kind && reread->match == query->match &&
                  reread->subscriber == query->subscriber && reread->match_type == query->match_type,
              "a path written again from what was read reads differently");
    } else if (hub::is_api_path(path)) {
        size_t segments = 0;
        bool empty = false, bad = false;
        std::string first;
        std::string_view rest(input);
        while (!rest.empty()) {
            rest.remove_prefix(1);
            auto slash = rest.find('/');
            auto segment = rest.substr(0, slash);
            empty = empty || segment.empty();
            bad = bad || !hub::decode_segment(segment);
            if (segments == 0) first = hub::decode_segment(segment).value_or("");
            ++segments;
            rest = slash == std::string_view::npos ? std::string_view() : rest.substr(slash);
        }
        check(empty || bad || segments > 3 || (segments == 3 && first != "exact" && first != "urlpattern"),
              "a well-formed path refused");
    }

    // The input cut in three: the match, the subscriber, the payload's string.
    auto third = input.size() / 3;
    std::string match = input.substr(0, third), subscriber = input.substr(third, third);
    hub::SubscriptionView view;
    view.form = input.size() % 2 ? hub::DocumentForm::v0 : hub::DocumentForm::v1;
    view.match_type = "exact";
    view.match = match;
    view.subscriber = subscriber;
    auto payload = nlohmann::json(input.substr(2 * third)).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    view.payload = payload;
    auto doc = nlohmann::json::parse(hub::subscription_json(view, true, input), nullptr, false);
    check(!doc.is_discarded() && doc.is_object(), "a subscription document that is not a JSON object");
    check(doc["id"] == hub::subscription_topic(view), "the document's id is not its topic");
    check(doc["payload"] == nlohmann::json::parse(payload), "the payload changed on its way");
    auto collection = nlohmann::json::parse(
        hub::collection_json(view.form, input, input, std::vector<std::string>{hub::subscription_json(view)}, size % 3),
        nullptr, false);
    check(!collection.is_discarded() && collection["subscriptions"].size() == 1, "a collection that is not JSON");
    return 0;
}
