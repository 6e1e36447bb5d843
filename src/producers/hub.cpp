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
#include "fastsse/hub/topic_selector.hpp"
#include "fastsse/http/request.hpp"

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

// The hub's URL as this request reached it (scheme, Host, path), for relative URL patterns; the
// reserved default when the request does not say, or says something that is not plainly a URL.
std::string hub_url_of(const Request* r) {
    if (!r || (r->scheme != "http" && r->scheme != "https") || r->host.empty() || r->host.size() > 255)
        return std::string(default_hub_url);
    auto host_char = [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == ':' || c == '[' || c == ']';
    };
    if (!std::all_of(r->host.begin(), r->host.end(), host_char)) return std::string(default_hub_url);
    std::string_view path = std::string_view(r->uri).substr(0, r->uri.find_first_of("?#"));
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

bool has_control(std::string_view s) { return s.find_first_of(std::string_view("\r\n\0", 3)) != s.npos; }

bool is_form(std::string_view content_type) {
    constexpr std::string_view form = "application/x-www-form-urlencoded";
    if (content_type.size() < form.size()) return false;
    for (size_t i = 0; i < form.size(); ++i)
        if (std::tolower(static_cast<unsigned char>(content_type[i])) != form[i]) return false;
    auto rest = content_type.substr(form.size());
    return rest.empty() || rest.front() == ';' || rest.front() == ' ';
}

// Under mod_fcgid a subscriber holds a process of its own, and a publication goes to another: it
// would be answered 200 and reach no one. Better said at once, to both.
// What a token is checked with besides its key: the `aud` and `iss` the settings name, if any.
hub::VerifyOptions verify_options(const HubSettings& s, const std::string& key) {
    hub::VerifyOptions o;
    o.key = key;
    if (!s.jwt_audience.empty()) o.audience = s.jwt_audience;
    if (!s.jwt_issuer.empty()) o.issuer = s.jwt_issuer;
    return o;
}

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
        integer("hub_history", &S::history, "1000", 0, 10'000'000, {},
                "updates the Mercure hub keeps for subscribers that resume (Last-Event-ID)"),
        integer("hub_history_bytes", &S::history_bytes, "8388608", 0, 1LL << 34, "bytes",
                "the hub's history at most, updates and their topics"),
        integer("hub_max_selectors", &S::max_selectors, "100", 1, 10'000, {},
                "topic selectors in one subscription at most; beyond, 400"),
        // Parsed once, here: a bad origin stops the start, and no request parses the list again.
        Setting<S>{{"cors_origins", OptionSpec::Kind::text, "", 0, 0, {}, {},
                    "origins whose pages may use the hub (CORS), space-separated: an exact origin "
                    "(https://example.com) with its cookies, or * for any other, without cookies; empty: none"},
                   [](S& s, std::string_view v) { s.cors = CorsPolicy::parse(v); }},
        from_env(integer("one_request_per_process", &S::one_request_per_process, "0", 0, 1, {},
                         "1: each request gets a fastsse process of its own (apache/fastsse-fcgid.conf sets "
                         "it): the hub answers 503, as a publication could not reach another process's "
                         "subscribers"),
                 "FASTSSE_ONE_REQUEST_PER_PROCESS"),
    };
    return table;
}

// One subscriber: what it asked for (its selectors), what its token lets it read (the private
// updates of these topics), its place in the channel, and the end of its token's life.
class HubProducer::Subscriber final : public Subscription, public Interest {
public:
    bool wants(const UpdateMeta& update) const override {
        if (!any_matches(selectors, update.topics)) return false;
        return !update.is_private || any_matches(may_read, update.topics);
    }

    SelectorSet selectors;
    SelectorSet may_read;
    std::optional<std::chrono::system_clock::time_point> expires;
    std::optional<std::string> last_id;  // the resume point the request gave
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
        return sub;
    }
    auto verdict = hub::verify_token(found.token, verify_options(settings_, settings_.subscriber_key),
                                     std::chrono::system_clock::now());
    if (!verdict)
        throw RequestError::bearer(BearerError::invalid_token, fmt::format("Invalid subscriber token: {}.", verdict.refusal));
    sub->may_read = compile_grant(verdict.grants->subscribe, hub_url);
    sub->expires = verdict.grants->expires;
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
    if (sub->expires) {
        // The token's life is the stream's: it ends then (the client comes back with a new one).
        auto left = *sub->expires - std::chrono::system_clock::now();
        sub->expiry = loop_.call_after(std::chrono::duration_cast<EventLoop::Clock::duration>(left),
                                       [&sink] { sink.finish(std::nullopt); });
    }
    return sub;
}

void HubProducer::publish(const Request& request, std::string_view body, PublishDone done) {
    if (settings_.one_request_per_process) throw one_process_per_request();
    // Who: a publisher's token comes in the Authorization header only (a cookie would let any page
    // the browser visits publish, and a URL ends up in logs).
    hub::TokenPlaces places;
    places.cookie_name.clear();
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
    if (topics.empty()) throw RequestError(400, "Missing \"topic\" field.");
    if (id && (has_control(*id) || id->starts_with('#') || *id == earliest_id))
        throw RequestError(400, "Invalid \"id\" field: no CR, LF or NUL, no leading '#', not \"earliest\".");
    if (type && has_control(*type)) throw RequestError(400, "Invalid \"type\" field: no CR, LF or NUL.");
    std::optional<long long> retry_ms;
    if (retry) {
        long long value = -1;
        auto [end, ec] = std::from_chars(retry->data(), retry->data() + retry->size(), value);
        if (retry->empty() || ec != std::errc() || end != retry->data() + retry->size() || value < 0)
            throw RequestError(400, "Invalid \"retry\" field: a number of milliseconds.");
        retry_ms = value;
    }

    // May it: every topic, the alternates too, within the token's publish claim.
    auto allowed = compile_grant(verdict.grants->publish, hub_url_of(&request));
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
        channel().publish(event, UpdateMeta{topics, is_private}, [done = std::move(done)](Published published) {
            if (!published.failure.empty())
                return done(RequestError::unavailable(
                    fmt::format("The update was not published: {}", published.failure), std::chrono::seconds(2)));
            done(PublishAnswer{std::move(published.id)});
        });
    } catch (const EventError& e) {
        throw RequestError(400, e.what());
    }
}

}  // namespace fastsse
