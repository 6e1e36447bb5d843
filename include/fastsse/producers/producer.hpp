#pragma once
// The producer interface: the only thing a new kind of event source implements.
// A producer knows events and time (the EventLoop's timers), never FastCGI, sockets or threads.
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "fastsse/sse/event.hpp"
#include "fastsse/config/options.hpp"
#include "fastsse/http/request.hpp"  // Request and RequestError: plain data, no FastCGI in them

namespace fastsse {

class ConfigSection;  // fastsse/config/section.hpp
class CorsPolicy;     // fastsse/http/cors.hpp

// One client's stream, as a producer sees it. Calls never block and never destroy anything
// synchronously: a stream whose client left ignores further calls, and its Subscription is
// destroyed soon after, on the loop, outside the producer's callback.
class Sink {
public:
    // Queues one event; throws EventError for a bad name or id (nothing is written then).
    virtual void send(const Event& event) = 0;
    // Queues one event that encode() made already: a channel encodes an event once and sends the
    // same bytes to every subscriber. It takes queued_size(sse_bytes) of room().
    virtual void send_encoded(std::string_view sse_bytes) = 0;
    // Ends the stream from the server's side: a retry: hint (if given), then the end of the response.
    virtual void finish(std::optional<std::chrono::milliseconds> retry) = 0;
    // Ends it as finish() does, because what let the client in ran out (the hub: its token
    // expired); the metrics count it apart.
    virtual void expire(std::optional<std::chrono::milliseconds> retry) { finish(retry); }
    // Bytes the stream can still queue before it is dropped as too slow (0 once it has ended); an
    // event takes queued_size(event) of them. A producer that sends many events at once (a replay)
    // sends no more than fit.
    virtual size_t room() const = 0;
    // Adds a response header (a Mercure hub's Last-Event-ID). Only while the stream opens, that is
    // inside the producer's open(): after, the headers have left and this throws std::logic_error.
    // A name that is not an HTTP token, or a value with CR, LF or NUL, throws
    // std::invalid_argument (nothing is added): a header must never split the response.
    virtual void add_header(std::string_view name, std::string_view value) {
        (void)name, (void)value;
        throw std::logic_error("this stream takes no response header");
    }

protected:
    ~Sink() = default;
};

// What sending `event` takes of a Sink's room(): the event encoded, and the stream's own framing.
size_t queued_size(const Event& event);
// The same for an event encode() made already.
size_t queued_size(std::string_view sse_bytes);

// The work a producer does for one stream. Destroying it stops that work at once.
class Subscription {
public:
    virtual ~Subscription() = default;
};

// What a producer gets to start one stream.
struct StreamStart {
    std::string_view last_event_id;     // Last-Event-ID or lastEventId; the producer decides how to resume
    std::string_view query;             // the request's query string, for producers that take parameters
    // The location's own FASTSSE_<NAME> params for the producer, by option name ("interval"): all
    // but FASTSSE_PRODUCER and the stream settings (FASTSSE_HEARTBEAT, FASTSSE_RETRY). The producer
    // reads them into its fields with the table its options() come from (SettingTable::load).
    const Params& params;
    std::chrono::milliseconds retry;    // the location's retry hint, for a stream the producer ends
    // The whole request, for a producer that reads more of it (the hub: its token's headers).
    // Null only in tests that start a producer without one.
    const Request* request = nullptr;
};

// What a publish is answered: 200 and a text/plain body (a Mercure hub: the update's id).
struct PublishAnswer {
    std::string body;
};

// How a publish ended: its answer, or its refusal (a store that could not keep it: 503).
using PublishOutcome = std::variant<PublishAnswer, RequestError>;
using PublishDone = std::function<void(PublishOutcome)>;

// A whole answer a producer gives to a GET or HEAD instead of a stream (the Mercure hub's
// subscription API): 200, its content type, its headers, its body (which may take many writes).
struct Answer {
    std::string content_type;
    std::vector<std::pair<std::string, std::string>> headers;
    std::string body;
};

// A producer that also takes events from the outside, as a POST to its location (the Mercure hub).
// Optional: a POST to the location of a producer without one is a 405, as any other method.
class Publisher {
public:
    // Publishes what `body` (the request body, within the server's bound) holds, and calls `done`
    // once: before returning when the update is kept in this process, later when a store elsewhere
    // (Redis) has to say it kept it first, so that a 200 never answers an update that was lost.
    // Throws RequestError (http/request.hpp) for a refusal found before it publishes (400, 401,
    // 403...), and then never calls `done`: nothing is published.
    virtual void publish(const Request& request, std::string_view body, PublishDone done) = 0;

protected:
    ~Publisher() = default;
};

class Producer {
public:
    virtual ~Producer() = default;
    // The options a location may set as FASTSSE_<NAME> params. Before a stream opens, the route
    // checks a location's params against them (check_params): an unknown or bad one is answered
    // there, as the admin's mistake, for every producer.
    virtual std::span<const OptionSpec> options() const = 0;
    // Checks what open() would check, starting nothing: a HEAD request gets the answer a GET would.
    // Throws as open() does; the default accepts everything.
    virtual void check(const StreamStart& start) const { (void)start; }
    // Starts the work for one stream. May throw RequestError (an HTTP error before any header went
    // out) or OptionError; may call sink.send() at once (those events follow the headers).
    virtual std::unique_ptr<Subscription> open(Sink& sink, const StreamStart& start) = 0;
    // The section of the config file this producer reads itself ([commands] for the command
    // producer), or none. The loader reads it before the server starts.
    virtual ConfigSection* config_section() { return nullptr; }
    // Its publishing side, when it has one: the route hands it a POST.
    virtual Publisher* publisher() { return nullptr; }
    // A request the producer answers whole instead of streaming (the hub's subscription API, by
    // the request's path), before Accept is looked at; nullopt: a stream (or a publish), as usual.
    // Throws RequestError for a refusal. The default answers nothing.
    virtual std::optional<Answer> answer(const Request& request) {
        (void)request;
        return std::nullopt;
    }
    // The cross-origin requests its locations answer (the hub's cors_origins), when it takes them:
    // its locations then answer OPTIONS (a preflight) and say which origins may read every answer.
    // Null: no CORS header, and OPTIONS is a 405 as any method a location does not take.
    virtual const CorsPolicy* cors() const { return nullptr; }
};

// Producers by name, assembled explicitly in one place (main.cpp).
class Registry {
public:
    // A name given twice is a mistake where the program is assembled: it throws std::logic_error.
    void add(std::string name, std::unique_ptr<Producer> producer) {
        auto [it, added] = producers_.try_emplace(std::move(name), std::move(producer));
        if (!added) throw std::logic_error("a producer named '" + it->first + "' is registered already");
    }
    Producer* find(std::string_view name) const {
        auto it = producers_.find(name);
        return it == producers_.end() ? nullptr : it->second.get();
    }
    std::vector<std::string> names() const {
        std::vector<std::string> out;
        for (const auto& [name, p] : producers_) out.push_back(name);
        return out;
    }
    const auto& all() const { return producers_; }

private:
    std::map<std::string, std::unique_ptr<Producer>, std::less<>> producers_;
};

}  // namespace fastsse
