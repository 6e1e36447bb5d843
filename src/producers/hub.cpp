#include "fastsse/producers/hub.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <optional>
#include <utility>
#include <vector>

#include "fastsse/hub/form.hpp"
#include "fastsse/hub/jwt.hpp"
#include "fastsse/hub/subscriptions.hpp"
#include "fastsse/hub/topic_selector.hpp"
#include "fastsse/http/request.hpp"
#include "fastsse/metrics/metrics.hpp"

namespace fastsse {

namespace {

// The one channel every update goes into: subscribers pick theirs by topic, not by channel.
constexpr std::string_view channel_name = "mercure";

// A location's own options.
struct HubLocation {
    unsigned anonymous = 0;
};

const SettingTable<HubLocation>& hub_location_options() {
    static const SettingTable<HubLocation> table{
        integer("anonymous", &HubLocation::anonymous, "0", 0, 1, {},
                "1: subscribers without a token are let in, to public updates only (Mercure's anonymous)"),
    };
    return table;
}

// 0.x selectors (`topic=`), and 1.0's matchers, as a token or a query names them.
SelectorSyntax syntax_of(hub::MatcherType type) {
    switch (type) {
    case hub::MatcherType::selector: return SelectorSyntax::topic;
    case hub::MatcherType::exact: return SelectorSyntax::exact;
    case hub::MatcherType::urlpattern: return SelectorSyntax::urlpattern;
    }
    return SelectorSyntax::exact;
}

std::string_view path_of(const Request& r) { return std::string_view(r.uri).substr(0, r.uri.find_first_of("?#")); }

// The hub's URL as this request reached it (scheme, Host, and its path or `path`), for relative URL
// patterns; the reserved default when the request does not say, or says something that is not
// plainly a URL.
std::string hub_url_of(const Request* r, std::optional<std::string_view> path_instead = std::nullopt) {
    if (!r || (r->scheme != "http" && r->scheme != "https") || r->host.empty() || r->host.size() > 255)
        return std::string(default_hub_url);
    auto host_char = [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == ':' || c == '[' || c == ']';
    };
    if (!std::all_of(r->host.begin(), r->host.end(), host_char)) return std::string(default_hub_url);
    std::string_view path = path_instead ? *path_instead : path_of(*r);
    auto path_char = [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || std::string_view("/-._~%!$&'()*+,;=:@").find(c) != std::string_view::npos;
    };
    if (!path.starts_with('/') || path.size() > 2048 || !std::all_of(path.begin(), path.end(), path_char)) path = "/";
    return fmt::format("{}://{}{}", r->scheme, r->host, path);
}

// A token's matchers, compiled. One that does not compile matches nothing: the token's author
// meant something we cannot read, and granting less is the safe reading.
SelectorSet compile_grant(const std::vector<hub::TopicMatcher>& matchers, std::string_view hub_url) {
    SelectorSet out;
    for (const auto& m : matchers) {
        try {
            out.add(TopicSelector(m.match, syntax_of(m.type), hub_url));
        } catch (const SelectorError& e) {
            spdlog::debug("hub: a token's topic matcher ignored: {}", e.what());
        }
    }
    return out;
}

bool any_matches(const SelectorSet& set, std::span<const std::string> topics) {
    for (const auto& selector : set.selectors())
        for (const auto& topic : topics)
            if (selector.matches(topic)) return true;
    return false;
}

std::optional<std::string_view> present(const std::optional<std::string>& header) {
    if (!header || header->empty()) return std::nullopt;  // FastCGI cannot tell empty from absent
    return std::string_view(*header);
}

bool is_form(std::string_view content_type) {
    constexpr std::string_view form = "application/x-www-form-urlencoded";
    if (content_type.size() < form.size()) return false;
    for (size_t i = 0; i < form.size(); ++i)
        if (std::tolower(static_cast<unsigned char>(content_type[i])) != form[i]) return false;
    auto rest = content_type.substr(form.size());
    return rest.empty() || rest.front() == ';' || rest.front() == ' ';
}

// Which of the token's payloads each of a subscriber's selectors carries (draft 08, "Payloads": the
// first whose topics match the selector's own text, read as a topic; a 0.x token's one
// `mercure.payload` comes under "*" and goes with every selector). Each chosen payload is kept once.
struct PayloadChoice {
    std::vector<std::string> payloads;
    std::vector<int> payload_of;  // per selector: an index in payloads, or -1
};

PayloadChoice choose_payloads(const SelectorSet& selectors, const std::vector<hub::SubscribePayload>& offered,
                              std::string_view hub_url, size_t max_bytes) {
    PayloadChoice out;
    if (offered.empty()) return out;
    std::vector<SelectorSet> matchers;
    matchers.reserve(offered.size());
    for (const auto& p : offered) matchers.push_back(compile_grant(p.topics, hub_url));
    std::vector<int> kept(offered.size(), -1);  // offered payload -> its index in out.payloads
    size_t bytes = 0;
    for (const auto& selector : selectors.selectors()) {
        int chosen = -1;
        for (size_t j = 0; j < offered.size() && chosen < 0; ++j) {
            if (!any_matches(matchers[j], std::span(&selector.text(), 1))) continue;
            if (kept[j] < 0) {
                // Refused rather than dropped: the issuer meant the others to see it, and a
                // subscription shown without it (a presence list without the user's name) would
                // mislead them; the token's author sees why at once.
                bytes += offered[j].json.size();
                if (bytes > max_bytes)
                    throw RequestError(401, fmt::format("Invalid subscriber token: its payload is larger than the {} "
                                                        "bytes the hub keeps for a subscriber.",
                                                        max_bytes));
                kept[j] = static_cast<int>(out.payloads.size());
                out.payloads.push_back(offered[j].json);
            }
            chosen = kept[j];
        }
        out.payload_of.push_back(chosen);
    }
    return out;
}

// What a token is checked with besides its key: the `aud` and `iss` the settings name, if any.
hub::VerifyOptions verify_options(const HubSettings& s, const std::string& key) {
    hub::VerifyOptions o;
    o.key = key;
    if (!s.jwt_audience.empty()) o.audience = s.jwt_audience;
    if (!s.jwt_issuer.empty()) o.issuer = s.jwt_issuer;
    return o;
}

// Under mod_fcgid a subscriber holds a process of its own, and a publication goes to another: it
// would be answered 200 and reach no one. Better said at once, to both.
RequestError one_process_per_request() {
    return RequestError(503, "The Mercure hub cannot work here: each request gets a fastsse process of its own "
                             "(mod_fcgid), so a publication could not reach the subscribers. Serve the hub with "
                             "mod_proxy_fcgi or nginx.");
}

}  // namespace

const SettingTable<HubSettings>& hub_settings() {
    using S = HubSettings;
    static const SettingTable<HubSettings> table{
        from_env(text("publisher_jwt_key", &S::publisher_key, "",
                      "the Mercure hub's HS256 key for publishers' tokens (empty: no publish is allowed)"),
                 "MERCURE_PUBLISHER_JWT_KEY"),
        from_env(text("subscriber_jwt_key", &S::subscriber_key, "",
                      "the Mercure hub's HS256 key for subscribers' tokens (empty: anonymous subscribers only)"),
                 "MERCURE_SUBSCRIBER_JWT_KEY"),
        // Mercure's hub derives its audience from each request unless `resource_identifier` pins
        // one (no variable of its own); its issuer is MERCURE_TRUSTED_ISSUERS, one identifier.
        text("jwt_audience", &S::jwt_audience, "",
             "the `aud` every hub token must hold, e.g. https://example.com/.well-known/mercure "
             "(empty: not checked)"),
        from_env(text("jwt_issuer", &S::jwt_issuer, "",
                      "the `iss` every hub token must carry, e.g. https://example.com (empty: not checked)"),
                 "MERCURE_TRUSTED_ISSUERS"),
        // The history's bounds are the channel's, made once: a restart changes them.
        restart_only(integer("hub_history", &S::history, "1000", 0, 10'000'000, {},
                             "updates the Mercure hub keeps for subscribers that resume (Last-Event-ID)")),
        restart_only(integer("hub_history_bytes", &S::history_bytes, "8388608", 0, 1LL << 34, "bytes",
                             "the hub's history at most, updates and their topics")),
        integer("hub_max_selectors", &S::max_selectors, "100", 1, 10'000, {},
                "topic selectors in one subscription at most; beyond, 400"),
        // Parsed once, here: a bad origin stops the start, and no request parses the list again.
        Setting<S>{{"cors_origins", OptionSpec::Kind::text, "", 0, 0, {}, {},
                    "origins whose pages may use the hub (CORS), space-separated: an exact origin "
                    "(https://example.com) with its cookies, or * for any other, without cookies; empty: none"},
                   [](S& s, std::string_view v) { s.cors = CorsPolicy::parse(v); }},
        restart_only(from_env(integer("one_request_per_process", &S::one_request_per_process, "0", 0, 1, {},
                                      "1: each request gets a fastsse process of its own (apache/fastsse-fcgid.conf "
                                      "sets it): the hub answers 503, as a publication could not reach another "
                                      "process's subscribers"),
                              "FASTSSE_ONE_REQUEST_PER_PROCESS")),
        // Open subscriptions said they came under one value: their "gone" must follow the same one.
        restart_only(integer("hub_subscriptions", &S::subscriptions, "0", 0, 1, {},
                             "1: the Mercure hub publishes a private update as each subscription comes and goes, "
                             "and answers the subscription API (GET /.well-known/mercure/subscriptions...); 0: "
                             "neither (404)")),
    };
    return table;
}

// What the other subscribers learn of one subscriber, with hub_subscriptions only: a subscriber
// without it holds a null pointer and nothing more.
struct HubProducer::Presence {
    HubProducer* hub = nullptr;  // set once its coming was announced: its leaving will be too
    std::string id;              // urn:uuid:..., one per connection, the same for each of its selectors
    std::vector<std::string> payloads;  // the token's payloads its selectors carry, each once
    std::vector<int> payload_of;        // per selector: its index in payloads, or -1 (none)
    std::list<const Subscriber*>::iterator place;  // in present_

    std::optional<std::string_view> payload(size_t selector) const {
        if (selector >= payload_of.size() || payload_of[selector] < 0) return std::nullopt;
        return payloads[static_cast<size_t>(payload_of[selector])];
    }
};

// One subscriber: what it asked for (its selectors), what its token lets it read (the private
// updates of these topics), its place in the channel, and the end of its token's life.
class HubProducer::Subscriber final : public Subscription, public Interest {
public:
    ~Subscriber() override {
        // Whatever ends it (the client gone, its token expired, dropped as too slow, shutdown), the
        // stream destroys it later on the loop, never inside a fan-out: the others may hear of it.
        if (presence && presence->hub) presence->hub->leave(*this);
        if (counted) --metrics::counts.mercure_subscribers;
    }

    bool wants(const UpdateMeta& update) const override {
        if (!any_matches(selectors, update.topics)) return false;
        return !update.is_private || any_matches(may_read, update.topics);
    }

    SelectorSet selectors;
    SelectorSet may_read;
    std::optional<std::chrono::system_clock::time_point> expires;
    std::optional<std::string> last_id;  // the resume point the request gave
    std::unique_ptr<Presence> presence;  // hub_subscriptions only
    bool counted = false;                // in mercure_subscribers_connected
    // Last: destroyed first, so that the channel never asks a half-destroyed Interest.
    Timer expiry;
    ChannelSubscription subscription;
};

HubProducer::HubProducer(EventLoop& loop) : loop_(loop) { hub_settings().set_defaults(settings_); }

void HubProducer::configure(const HubSettings& settings, ChannelStore* store) {
    settings_ = settings;
    if (store) store_ = store;
    channel_ = nullptr;
    channel();
}

Channel& HubProducer::channel() {
    if (!channel_) channel_ = &store_->channel(channel_name, {settings_.history, settings_.history_bytes});
    return *channel_;
}

std::span<const OptionSpec> HubProducer::options() const { return hub_location_options().specs(); }

std::unique_ptr<HubProducer::Subscriber> HubProducer::prepare(const StreamStart& start) const {
    if (settings_.one_request_per_process) throw one_process_per_request();
    HubLocation location;
    hub_location_options().load(location, start.params, true);
    auto sub = std::make_unique<Subscriber>();

    // The query: topic= (0.x), match= / match_exact= / match_urlpattern= (1.0), the resume point.
    std::vector<FormField> fields;
    try {
        fields = parse_form(start.query);
    } catch (const FormError& e) {
        throw RequestError(400, fmt::format("Malformed query: {}", e.what()));
    }
    auto hub_url = hub_url_of(start.request);
    std::optional<std::string> query_last_0x, query_last_1;
    size_t selectors = 0;
    for (auto& f : fields) {
        std::optional<SelectorSyntax> syntax;
        if (f.name == "topic") syntax = SelectorSyntax::topic;
        else if (f.name == "match" || f.name == "match_exact") syntax = SelectorSyntax::exact;
        else if (f.name == "match_urlpattern") syntax = SelectorSyntax::urlpattern;
        else if (f.name == "lastEventID" && !query_last_0x) query_last_0x = std::move(f.value);
        else if (f.name == "last_event_id" && !query_last_1) query_last_1 = std::move(f.value);
        if (!syntax) continue;
        if (++selectors > settings_.max_selectors)
            throw RequestError(400, fmt::format("Too many topic selectors: at most {}.", settings_.max_selectors));
        if (auto problem = identifier_problem(f.value))
            throw RequestError(400, fmt::format("Invalid topic selector: {}.", *problem));
        try {
            sub->selectors.add(TopicSelector(f.value, *syntax, hub_url));
        } catch (const SelectorError& e) {
            throw RequestError(400, fmt::format("Invalid topic selector: {}", e.what()));
        }
    }
    if (sub->selectors.empty()) throw RequestError(400, "Missing \"topic\" parameter.");

    // The resume point: the header, else 0.x's query parameter, else 1.0's. Empty is none.
    if (start.request && present(start.request->last_event_id)) sub->last_id = *start.request->last_event_id;
    else if (query_last_0x && !query_last_0x->empty()) sub->last_id = std::move(query_last_0x);
    else if (query_last_1 && !query_last_1->empty()) sub->last_id = std::move(query_last_1);

    // The token: its absence lets an anonymous location in; a bad one never does.
    auto found = start.request
                     ? hub::find_token(present(start.request->authorization), present(start.request->cookie),
                                       start.query)
                     : hub::find_token(std::nullopt, std::nullopt, start.query);
    // The refusals over the token carry RFC 6750's challenge, as draft 08 asks.
    if (!found.malformed.empty()) throw RequestError::bearer(BearerError::invalid_request, std::string(found.malformed));
    if (found.source == hub::TokenSource::none) {
        if (!location.anonymous) throw RequestError::bearer(BearerError::none, "A subscriber token is required.");
        if (settings_.subscriptions) sub->presence = std::make_unique<Presence>();
        return sub;
    }
    auto verdict = hub::verify_token(found.token, verify_options(settings_, settings_.subscriber_key),
                                     std::chrono::system_clock::now());
    if (!verdict)
        throw RequestError::bearer(BearerError::invalid_token, fmt::format("Invalid subscriber token: {}.", verdict.refusal));
    sub->may_read = compile_grant(verdict.grants->subscribe, hub_url);
    sub->expires = verdict.grants->expires;
    if (settings_.subscriptions) {
        auto choice = choose_payloads(sub->selectors, verdict.grants->payloads, hub_url, max_payload_bytes);
        sub->presence = std::make_unique<Presence>();
        sub->presence->payloads = std::move(choice.payloads);
        sub->presence->payload_of = std::move(choice.payload_of);
    }
    return sub;
}

void HubProducer::check(const StreamStart& start) const { prepare(start); }

std::unique_ptr<Subscription> HubProducer::open(Sink& sink, const StreamStart& start) {
    auto sub = prepare(start);
    auto* interest = static_cast<const Interest*>(sub.get());
    if (sub->last_id) {
        auto joined = channel().subscribe(sink, *sub->last_id, interest);
        sub->subscription = std::move(joined.subscription);
        // draft 07 names it Last-Event-ID, draft 08 Mercure-Last-Event-ID: both, for both clients.
        sink.add_header("Last-Event-ID", joined.resume.last_event_id);
        sink.add_header("Mercure-Last-Event-ID", joined.resume.last_event_id);
    } else {
        sub->subscription = channel().subscribe(sink, std::nullopt, interest).subscription;
    }
    if (sub->presence) {
        auto& presence = *sub->presence;
        presence.id = ids_.next();
        presence.place = present_.insert(present_.end(), sub.get());
        presence.hub = this;
        // After it joined: a subscriber of subscription events hears of itself too.
        announce(*sub, true);
    }
    if (sub->expires) {
        // The token's life is the stream's: it ends then (the client comes back with a new one).
        auto left = *sub->expires - std::chrono::system_clock::now();
        sub->expiry = loop_.call_after(std::chrono::duration_cast<EventLoop::Clock::duration>(left),
                                       [&sink] { sink.expire(std::nullopt); });
    }
    sub->counted = true;
    ++metrics::counts.mercure_subscribers;
    ++metrics::counts.mercure_subscribers_total;
    return sub;
}

void HubProducer::publish(const Request& request, std::string_view body, PublishDone done) {
    // Counted by the status it is answered: a refusal thrown now, or the outcome, now or later.
    try {
        publish_update(request, body, [done = std::move(done)](PublishOutcome outcome) {
            if (auto* refusal = std::get_if<RequestError>(&outcome)) {
                metrics::counts.hub_publishes.add(refusal->status);
            } else {
                metrics::counts.hub_publishes.add(200);
                ++metrics::counts.mercure_updates;
            }
            done(std::move(outcome));
        });
    } catch (const RequestError& e) {
        metrics::counts.hub_publishes.add(e.status);
        throw;
    }
}

void HubProducer::publish_update(const Request& request, std::string_view body, PublishDone done) {
    if (settings_.one_request_per_process) throw one_process_per_request();
    // Who: a publisher's token comes in the Authorization header only (a cookie would let any page
    // the browser visits publish, and a URL ends up in logs).
    hub::TokenPlaces places;
    places.cookie_names.clear();
    places.query = false;
    auto found = hub::find_token(present(request.authorization), std::nullopt, {}, places);
    if (!found.malformed.empty())
        throw RequestError::bearer(BearerError::invalid_request, std::string(found.malformed));
    if (found.source == hub::TokenSource::none)
        throw RequestError::bearer(BearerError::none,
                                   "A publisher token is required, as Authorization: Bearer followed by the JWT.");
    auto verdict = hub::verify_token(found.token, verify_options(settings_, settings_.publisher_key),
                                     std::chrono::system_clock::now());
    if (!verdict)
        throw RequestError::bearer(BearerError::invalid_token, fmt::format("Invalid publisher token: {}.", verdict.refusal));

    // What: the form's fields; the first of a repeated one counts (as Go's PostForm.Get), but every topic.
    if (!is_form(request.content_type))
        throw RequestError(400, "A publication is a form: Content-Type: application/x-www-form-urlencoded.");
    std::vector<FormField> fields;
    try {
        fields = parse_form(body);
    } catch (const FormError& e) {
        throw RequestError(400, fmt::format("Malformed form: {}", e.what()));
    }
    std::vector<std::string> topics;
    std::optional<std::string> data, id, type, retry;
    bool is_private = false;
    for (auto& f : fields) {
        if (f.name == "topic") topics.push_back(std::move(f.value));
        else if (f.name == "data" && !data) data = std::move(f.value);
        else if (f.name == "id" && !id) id = std::move(f.value);
        else if (f.name == "type" && !type) type = std::move(f.value);
        else if (f.name == "retry" && !retry) retry = std::move(f.value);
        else if (f.name == "private") is_private = true;
    }
    // Draft 08 ("Publication"): each rule holds whatever the token says.
    if (topics.empty()) throw RequestError(400, "Missing \"topic\" field.");
    auto hub_url = hub_url_of(&request);
    for (const auto& topic : topics) {
        if (auto problem = identifier_problem(topic))
            throw RequestError(400, fmt::format("Invalid \"topic\" field: {}.", *problem));
        if (topic == "*") throw RequestError(400, "Invalid \"topic\" field: \"*\" is the wildcard, not a topic.");
        // The hub's URL as requested, and the well-known one its subscription events are under.
        if (in_hub_namespace(topic, hub_url) || in_hub_namespace(topic, "http://mercure.invalid/.well-known/mercure"))
            throw RequestError(400, "Invalid \"topic\" field: the hub's own paths (/.well-known/mercure/...) are for "
                                    "the updates the hub makes.");
    }
    if (id && (identifier_problem(*id) || id->starts_with('#') || *id == earliest_id))
        throw RequestError(400, "Invalid \"id\" field: no control or format character, no leading '#', not "
                                "\"earliest\".");
    if (type && identifier_problem(*type))
        throw RequestError(400, "Invalid \"type\" field: no control or format character.");
    if (type && *type == "mercure")
        throw RequestError(400, "Invalid \"type\" field: \"mercure\" is for the updates the hub makes.");
    std::optional<long long> retry_ms;
    if (retry) {
        long long value = -1;
        auto [end, ec] = std::from_chars(retry->data(), retry->data() + retry->size(), value);
        if (retry->empty() || ec != std::errc() || end != retry->data() + retry->size() || value < 0)
            throw RequestError(400, "Invalid \"retry\" field: a number of milliseconds.");
        retry_ms = value;
    }

    // May it: every topic, the alternates too, within the token's publish claim.
    auto allowed = compile_grant(verdict.grants->publish, hub_url);
    for (const auto& topic : topics)
        if (!any_matches(allowed, std::span(&topic, 1)))
            throw RequestError::bearer(BearerError::insufficient_scope,
                                       "The token may not publish to every topic of this update.");

    // The id: the publisher's, else one the store gives (Redis: its stream entry's), else ours.
    if (id && id->empty()) id.reset();
    if (!id && !channel().assigns_ids()) id = ids_.next();
    Event event;
    event.event = type ? std::string_view(*type) : std::string_view();
    event.data = data ? std::string_view(*data) : std::string_view();
    if (id) event.id = *id;
    event.retry_ms = retry_ms;
    try {
        channel().publish(event, UpdateMeta{topics, is_private}, [this, done = std::move(done)](Published published) {
            if (!published.failure.empty())
                return done(RequestError::unavailable(
                    fmt::format("The update was not published: {}", published.failure), std::chrono::seconds(2)));
            if (settings_.subscriptions) last_event_id_ = published.id;
            done(PublishAnswer{std::move(published.id)});
        });
    } catch (const EventError& e) {
        throw RequestError(400, e.what());
    }
}

namespace {

hub::SubscriptionView view_of(const TopicSelector& selector, std::string_view subscriber, bool active,
                              std::optional<std::string_view> payload) {
    hub::SubscriptionView view;
    view.form = selector.syntax() == SelectorSyntax::topic ? hub::DocumentForm::v0 : hub::DocumentForm::v1;
    view.match_type = selector.syntax() == SelectorSyntax::urlpattern ? "urlpattern" : "exact";
    view.match = selector.text();
    view.subscriber = subscriber;
    view.active = active;
    view.payload = payload;
    return view;
}

// A quoted-string of RFC 9110 (a Link header's attribute).
std::string quoted(std::string_view s) {
    std::string out = "\"";
    for (char c : s) {
        if (c == '"' || c == '\\') out += '\\';
        out += c;
    }
    out += '"';
    return out;
}

}  // namespace

void HubProducer::announce(const Subscriber& s, bool active) {
    const auto& presence = *s.presence;
    const auto& selectors = s.selectors.selectors();
    for (size_t i = 0; i < selectors.size(); ++i) {
        auto view = view_of(selectors[i], presence.id, active, presence.payload(i));
        std::string topic = hub::subscription_topic(view);
        std::string data = hub::subscription_json(view, true);
        std::string id = ids_.next();
        Event event;
        // Draft 08 gives the hub's own updates the reserved type `mercure`; draft 07, none.
        event.event = view.form == hub::DocumentForm::v1 ? "mercure" : "";
        event.data = data;
        event.id = id;
        // Private: only subscribers whose token may read the subscription's topic get it.
        channel().publish(event, UpdateMeta{std::span(&topic, 1), true});
        last_event_id_ = std::move(id);
    }
}

void HubProducer::leave(Subscriber& s) noexcept {
    s.subscription.reset();  // its own departure is not for it
    present_.erase(s.presence->place);
    s.presence->hub = nullptr;
    try {
        announce(s, false);
    } catch (const std::exception& e) {
        spdlog::error("hub: a subscription's end could not be published: {}", e.what());
    }
}

std::optional<Answer> HubProducer::answer(const Request& request) {
    auto path = path_of(request);
    if (!hub::is_api_path(path)) return std::nullopt;
    if (settings_.one_request_per_process) throw one_process_per_request();
    if (!settings_.subscriptions)
        throw RequestError(404, "No subscription API here: the hub's hub_subscriptions setting is off.");
    if (request.method != "GET" && request.method != "HEAD")
        throw RequestError::method_not_allowed(
            fmt::format("Method {} is not allowed: the subscription API is read with GET.", request.method),
            settings_.cors.enabled() ? "GET, HEAD, OPTIONS" : "GET, HEAD");

    // Who: a subscriber whose token may subscribe to the path asked, as a topic (draft 07: "The
    // requested URL MUST match at least one of the topic selectors"; draft 08: its absolute path,
    // without the query). Never anonymous: the answer shows every subscriber's payload.
    auto found = hub::find_token(present(request.authorization), present(request.cookie), request.query);
    if (!found.malformed.empty()) throw RequestError(400, std::string(found.malformed));
    if (found.source == hub::TokenSource::none)
        throw RequestError(401, "A subscriber token is required for the subscription API.");
    hub::VerifyOptions verify;
    verify.key = settings_.subscriber_key;
    auto verdict = hub::verify_token(found.token, verify, std::chrono::system_clock::now());
    if (!verdict) throw RequestError(401, fmt::format("Invalid subscriber token: {}.", verdict.refusal));
    auto hub_url = hub_url_of(&request, hub::hub_path);
    std::string topic(path);
    if (!any_matches(compile_grant(verdict.grants->subscribe, hub_url), std::span(&topic, 1)))
        throw RequestError(403, "The token may not subscribe to this subscription resource.");
    auto query = hub::parse_api_path(path);
    if (!query) throw RequestError(404, "No such subscription resource.");

    using Kind = hub::ApiQuery::Kind;
    std::string last_id = last_event_id_.empty() ? std::string(earliest_id) : last_event_id_;
    auto wanted = [&](const hub::SubscriptionView& v) {
        switch (query->kind) {
        case Kind::all: return true;
        case Kind::topic:
        case Kind::one_v0: return v.form == hub::DocumentForm::v0 && v.match == query->match;
        case Kind::match:
        case Kind::one_v1:
            return v.form == hub::DocumentForm::v1 && v.match_type == query->match_type && v.match == query->match;
        }
        return false;
    };
    bool one = query->kind == Kind::one_v0 || query->kind == Kind::one_v1;
    auto form = query->kind == Kind::topic || query->kind == Kind::one_v0 ? hub::DocumentForm::v0
                : query->kind == Kind::all ? (verdict.grants->profile == hub::TokenProfile::v1 ? hub::DocumentForm::v1
                                                                                         : hub::DocumentForm::v0)
                                           : hub::DocumentForm::v1;
    Answer out;
    out.content_type = form == hub::DocumentForm::v0 ? "application/ld+json" : "application/json";
    // Draft 08's cursor; draft 07 puts it in the body, and a client of it ignores the header.
    out.headers.emplace_back("Link", fmt::format("<{}>; rel=\"mercure\"; last-event-id={}; type=\"mercure\"; "
                                                 "content-type=\"application/json\"",
                                                 hub_url, quoted(last_id)));
    out.headers.emplace_back("Cache-Control", "must-revalidate");

    // A walk over the subscribers announced, bounded by their number, and by max_answer_bytes.
    std::vector<std::string> documents;
    size_t bytes = 0;
    bool truncated = false;
    for (const Subscriber* s : present_) {
        if (one && s->presence->id != query->subscriber) continue;
        const auto& selectors = s->selectors.selectors();
        for (size_t i = 0; i < selectors.size() && !truncated; ++i) {
            auto view = view_of(selectors[i], s->presence->id, true, s->presence->payload(i));
            if (!wanted(view)) continue;
            if (one) {
                out.body = hub::subscription_json(view, true, last_id);
                return out;
            }
            auto document = hub::subscription_json(view);
            bytes += document.size();
            if (bytes > max_answer_bytes) {
                truncated = true;
                break;
            }
            documents.push_back(std::move(document));
        }
        if (truncated) break;
    }
    if (one) throw RequestError(404, "No such subscription.");
    out.body = hub::collection_json(form, path, last_id, documents, truncated);
    return out;
}

}  // namespace fastsse
