#pragma once
// The Mercure hub (https://mercure.rocks; spec: dunglas/mercure spec/mercure.md, draft 07 "0.x" at
// tag v0.24.2 and draft 08 "1.0" at HEAD): a producer whose location takes GET to subscribe and
// POST to publish. Every update goes into one channel (channels/channel.hpp), whose fan-out and
// history serve every subscriber; each subscriber's Interest lets through what its topic selectors
// and its token allow. The pure parts it assembles are in hub/: jwt.hpp (tokens), topic_selector.hpp,
// form.hpp, update_id.hpp.
//
// This slice: 0.x publishing and subscribing, 1.0's subscriber side (match=, match_urlpattern=,
// last_event_id=, Mercure-Last-Event-ID); relative URL patterns are taken against the URL the
// request reached the hub at (REQUEST_SCHEME, Host, path), else default_hub_url; CORS (cors_origins,
// http/cors.hpp), its preflight answered by the route; `aud` and `iss` checked when jwt_audience
// and jwt_issuer are set. "Active Subscriptions" when hub_subscriptions is on: a private update as
// each subscription comes and goes (with its token's `payload`), and the subscription API (GET
// /.well-known/mercure/subscriptions...), both forms (hub/subscriptions.hpp).
#include <chrono>
#include <cstddef>
#include <list>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "fastsse/channels/memory_store.hpp"
#include "fastsse/config/options.hpp"
#include "fastsse/http/cors.hpp"
#include "fastsse/hub/update_id.hpp"
#include "fastsse/loop/event_loop.hpp"
#include "fastsse/producers/producer.hpp"

namespace fastsse {

// The hub's process settings (in settings_table(): flags, the config file, and for the keys the
// environment, as Mercure's own hub reads them).
struct HubSettings {
    std::string publisher_key;   // HS256 secret of publishers' tokens; empty: every publish is a 401
    std::string subscriber_key;  // HS256 secret of subscribers' tokens; empty: none is valid
    // Both sides' tokens must hold this `aud` (a string, or one of an array) and carry this `iss`;
    // empty: not checked. Draft 08 requires both; draft 07's tokens usually carry neither.
    std::string jwt_audience;
    std::string jwt_issuer;
    size_t history = 0;          // updates kept for subscribers that resume
    size_t history_bytes = 0;    // their encoded bytes and topics, at most
    size_t max_selectors = 0;    // topic selectors in one subscription
    CorsPolicy cors;             // cors_origins: the origins whose pages may subscribe and publish
    // 1 when each request gets a fastsse process of its own (mod_fcgid): publications could not
    // reach the subscribers of other processes, so the hub refuses to pretend (503).
    unsigned one_request_per_process = 0;
    // 1: "Active Subscriptions": subscription events and the subscription API. Off, neither costs
    // anything, and the API's paths answer 404.
    unsigned subscriptions = 0;
};
const SettingTable<HubSettings>& hub_settings();

class HubProducer final : public Producer, public Publisher {
public:
    explicit HubProducer(EventLoop& loop);

    // The settings, once they are read (the producer is registered before, for --help), and the
    // store of the hub's channel: main's (the engine setting: this process's memory, or Redis),
    // else one of the producer's own in memory. Before the first request: the channel is made here,
    // with the history limits of these settings, so that a store elsewhere loads it at its start.
    void configure(const HubSettings& settings, ChannelStore* store = nullptr);

    std::span<const OptionSpec> options() const override;
    // What open() would refuse (400, 401), subscribing nothing: a HEAD gets the answer a GET would.
    void check(const StreamStart& start) const override;
    std::unique_ptr<Subscription> open(Sink& sink, const StreamStart& start) override;
    Publisher* publisher() override { return this; }
    const CorsPolicy* cors() const override { return &settings_.cors; }

    void publish(const Request& request, std::string_view body, PublishDone done) override;
    // The subscription API, for a path under /.well-known/mercure/subscriptions; nullopt elsewhere.
    std::optional<Answer> answer(const Request& request) override;

    size_t subscribers() const { return channel_ ? channel_->subscribers() : 0; }

    // The most a subscriber's payloads (its token's, for its subscriptions) may take together while
    // hub_subscriptions is on: they are kept as long as it stays, and sent with each of its events.
    static constexpr size_t max_payload_bytes = 4096;
    // The most an answer of the subscription API lists, in bytes of its documents; beyond, the
    // answer says "truncated": true (draft 08 allows truncating a collection).
    static constexpr size_t max_answer_bytes = 1 << 20;

private:
    class Subscriber;
    struct Presence;
    std::unique_ptr<Subscriber> prepare(const StreamStart& start) const;
    void publish_update(const Request& request, std::string_view body, PublishDone done);
    Channel& channel();
    // Subscription events: one per topic selector of `subscriber`.
    void announce(const Subscriber& subscriber, bool active);
    void leave(Subscriber& subscriber) noexcept;

    EventLoop& loop_;
    HubSettings settings_;
    MemoryStore own_store_;
    ChannelStore* store_ = &own_store_;
    Channel* channel_ = nullptr;
    hub::UpdateIds ids_;
    // With hub_subscriptions: the subscribers announced, in the order they came (for the API), and
    // the id of the last update the hub sent (the API's lastEventID). Never walked by a publish.
    std::list<const Subscriber*> present_;
    std::string last_event_id_;
};

}  // namespace fastsse
