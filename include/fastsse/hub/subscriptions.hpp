#pragma once
// Mercure's "Active Subscriptions" (draft 07 at v0.24.2 and draft 08, both spec/mercure.md), as
// pure functions: the topic of a subscription event, its JSON document, the collections the
// subscription API answers, and the API's paths. Who subscribes, when events are published and who
// may read the API is the hub's (producers/hub.cpp).
//
// A subscription is described in the protocol it was made with: a `topic=` selector (0.x) as draft
// 07's JSON-LD (`"type": "Subscription"`, `topic`, on /subscriptions/{topic}/{subscriber}), a
// `match=` / `match_urlpattern=` matcher (1.0) as draft 08's JSON (`"type": "subscription"`,
// `match_type`, `match`, on /subscriptions/{match_type}/{match}/{subscriber}).
#include <cstddef>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace fastsse::hub {

// The hub's path, under which the events' topics and the API live: the URL Mercure's clients
// expect (draft 07 names it alone; fastsse's shipped nginx and Apache configs serve the hub there).
inline constexpr std::string_view hub_path = "/.well-known/mercure";

enum class DocumentForm {
    v0,  // draft 07: JSON-LD, "Subscription"/"Subscriptions", `lastEventID` in the body
    v1,  // draft 08: JSON, "subscription"/"subscriptions", the cursor in the Link header
};

// RFC 6570 simple string expansion of one variable's value: every byte but the unreserved ones
// (ALPHA / DIGIT / "-" / "." / "_" / "~") percent-encoded, exactly once (a '%' becomes "%25"),
// with uppercase hex digits, as both drafts' examples do.
std::string encode_variable(std::string_view raw);

// One path segment of the API decoded: %XX to its byte ('+' stays '+': a path is not a form).
// nullopt for a '%' without two hex digits.
std::optional<std::string> decode_segment(std::string_view segment);

// One subscription as its documents show it. Views: whoever makes one holds the strings.
struct SubscriptionView {
    DocumentForm form = DocumentForm::v0;
    std::string_view match_type;    // v1: "exact" or "urlpattern"; v0: unused
    std::string_view match;         // the selector or matcher, as the subscriber sent it
    std::string_view subscriber;    // the hub's id for the subscriber (urn:uuid:...)
    bool active = true;
    std::optional<std::string_view> payload;  // compact JSON, as the token gave it (jwt.hpp)
};

// The topic of its events, which is also its document's `id`.
std::string subscription_topic(const SubscriptionView& s);

// Its document, compact JSON: the data of a subscription event, an element of a collection, or the
// API's answer for it alone. `context` adds draft 07's "@context" (a top-level v0 document);
// `last_event_id` adds draft 07's "lastEventID" (the API's answer for one v0 subscription).
std::string subscription_json(const SubscriptionView& s, bool context = false,
                              std::optional<std::string_view> last_event_id = std::nullopt);

// A collection, compact JSON: `id` the path asked, `documents` each a subscription_json() already.
// v0 has "@context" and "lastEventID"; v1 has neither (its cursor goes in the Link header).
// `truncated` adds "truncated": true (a property of ours: the answer had a bound, and more
// subscriptions were left out).
std::string collection_json(DocumentForm form, std::string_view id, std::string_view last_event_id,
                            std::span<const std::string> documents, bool truncated);

// What a path of the API asks for (the path after hub_path, decoded).
struct ApiQuery {
    enum class Kind {
        all,           // /subscriptions
        topic,         // /subscriptions/{topic}: v0 subscriptions with that selector
        one_v0,        // /subscriptions/{topic}/{subscriber}
        match,         // /subscriptions/{match_type}/{match}: v1 subscriptions with that matcher
        one_v1,        // /subscriptions/{match_type}/{match}/{subscriber}
    };
    Kind kind = Kind::all;
    std::string match_type;  // match, one_v1
    std::string match;       // the topic selector (v0) or matcher (v1)
    std::string subscriber;  // one_v0, one_v1
};

// Whether `path` (no query) is the API's: hub_path + "/subscriptions", or below it.
bool is_api_path(std::string_view path);

// Reads an API path (is_api_path). Two segments are v1's when the first is a matcher type
// ("exact", "urlpattern": no 0.x selector is spelled so in practice), else v0's topic and
// subscriber. nullopt (a 404) for an empty segment, more than three, or a bad escape.
std::optional<ApiQuery> parse_api_path(std::string_view path);

}  // namespace fastsse::hub
