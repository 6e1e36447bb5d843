#include "fastsse/http/stream_route.hpp"

#include <spdlog/spdlog.h>

#include "fastsse/http/cors.hpp"
#include "fastsse/http/response.hpp"
#include "fastsse/http/stream.hpp"
#include "fastsse/metrics/metrics.hpp"

namespace fastsse {

namespace {

void answer_publish(Connection& c, PublishOutcome outcome, const std::string& cors_lines) {
    if (auto* answer = std::get_if<PublishAnswer>(&outcome)) return send_response(c, 200, cors_lines, answer->body);
    auto& refusal = std::get<RequestError>(outcome);
    refusal.location_headers += cors_lines;
    refuse(c, refusal);
}

}  // namespace

StreamRoute::StreamRoute(const Registry& registry, const Settings& settings)
    : registry_(registry), settings_(settings) {}

void StreamRoute::handle(Connection& c, Streams& streams) {
    const auto& r = c.request;
    auto it = r.fastsse.find("producer");
    auto* producer = it == r.fastsse.end() ? nullptr : registry_.find(it->second);
    const CorsPolicy* cors = producer ? producer->cors() : nullptr;
    // A location that takes cross-origin requests says on every answer, refusals too, whether the
    // page that asked may read it.
    auto cors_headers = cors ? cors->response_headers(r.origin) : Headers();
    try {
        serve(c, streams, producer, cors, cors_headers);
    } catch (RequestError& e) {
        e.location_headers += cgi_lines(cors_headers);
        throw;
    }
}

void StreamRoute::serve(Connection& c, Streams& streams, Producer* producer, const CorsPolicy* cors,
                        const Headers& cors_headers) {
    const auto& r = c.request;
    auto it = r.fastsse.find("producer");
    auto* publisher = producer ? producer->publisher() : nullptr;
    if (r.method == "OPTIONS" && cors) {
        // A preflight: the browser asks whether the real request may follow. Allowed or not, the
        // answer is a 204 (OPTIONS is a method this location takes); the CORS headers decide.
        auto headers = "Allow: GET, HEAD, POST, OPTIONS\r\n" + cgi_lines(cors->preflight_headers(r.origin));
        return send_response(c, 204, headers, {});
    }
    if (r.method != "GET" && r.method != "HEAD" && !(r.method == "POST" && publisher))
        throw RequestError::method_not_allowed(
            fmt::format("Method {} is not allowed: an event stream is read with GET.", r.method),
            cors ? "GET, HEAD, POST, OPTIONS" : publisher ? "GET, HEAD, POST" : "GET, HEAD");
    if (it == r.fastsse.end())
        throw RequestError(404, "No event stream here: this location sets no FASTSSE_PRODUCER.");
    if (!producer) throw RequestError(404, fmt::format("No event stream here: no producer named '{}'.", it->second));
    if (auto answer = producer->answer(r)) return respond(c, streams, *answer, cgi_lines(cors_headers));
    if (r.method == "POST") return publish(c, *producer, *publisher, cgi_lines(cors_headers));
    if (!accepts_event_stream(r.accept))
        throw RequestError(406, "You must send a request with \"Accept: text/event-stream\".");
    streams.check_room();

    // An admin's mistake in the location, not the client's: 500, with the param named.
    auto producer_name = it->second;
    auto bad_param = [&](const OptionError& e) {
        return RequestError(500, fmt::format("Bad FastCGI param for producer {}: {}", producer_name, e.what()));
    };
    auto given = r.fastsse;
    given.erase("producer");
    StreamLimits limits = settings_.limits;
    try {
        stream_settings().override_from(limits, given);  // FASTSSE_HEARTBEAT, FASTSSE_RETRY
        // The rest are the producer's, which it reads into its own fields; they are checked here
        // too, so that a mistake is answered before a stream opens, whichever the producer.
        check_params(producer->options(), given, true);
    } catch (const OptionError& e) {
        throw bad_param(e);
    }

    auto last_id = last_event_id(r);
    auto query = r.query;  // c, and r with it, moves into the stream below
    StreamStart start{last_id, query, given, limits.retry, &r};
    if (r.method == "HEAD") {
        // The same answer as GET would get, without starting anything.
        try {
            producer->check(start);
        } catch (const OptionError& e) {
            throw bad_param(e);
        }
        return send_response(c, 200, fmt::format("{}{}", event_stream_headers, cgi_lines(cors_headers)), {});
    }

    auto what = fmt::format("producer={} uri={}{}", producer_name, r.uri,
                            last_id.empty() ? std::string() : fmt::format(" last-event-id={}", last_id));
    // The request stays here, for the producer's start: the stream takes only the connection (it
    // keeps no params for its whole life).
    Request request = std::move(c.request);
    start.request = &request;
    auto& stream = streams.open(std::move(c), limits, std::move(what));
    // The connection is the stream's now: it answers an error itself, with the same send_error and
    // the location's headers.
    auto reject = [&](RequestError e) {
        e.location_headers += cgi_lines(cors_headers);
        stream.reject(e);
    };
    try {
        for (const auto& [name, value] : cors_headers) stream.add_header(name, value);
        stream.begin(producer->open(stream, start), &metrics::counts.producer(producer_name));
    } catch (const RequestError& e) {
        reject(e);
    } catch (const OptionError& e) {
        reject(bad_param(e));
    } catch (const std::exception& e) {
        spdlog::error("stream {}: producer {} failed to start: {}", stream.id(), producer_name, e.what());
        reject(RequestError(500, fmt::format("The producer failed to start: {}", e.what())));
    }
}

void StreamRoute::publish(Connection& c, Producer& producer, Publisher& publisher, const std::string& cors_lines) {
    const auto& r = c.request;
    // The location's params are checked as for a stream: a mistake there is the admin's, a 500.
    auto given = r.fastsse;
    given.erase("producer");
    try {
        StreamLimits limits = settings_.limits;
        stream_settings().override_from(limits, given);
        check_params(producer.options(), given, true);
    } catch (const OptionError& e) {
        throw RequestError(500, fmt::format("Bad FastCGI param for producer {}: {}", r.fastsse.at("producer"), e.what()));
    }
    // The outcome may come while publish() runs (an update kept in this process: answered at once,
    // before its fan-out) or later (a store elsewhere said it kept it): then the connection waits
    // in the completion, which alone holds it, and goes with it if the store drops the completion
    // (the web server sees a 502).
    struct Waiting {
        Connection* during = nullptr;  // while publish() runs
        std::optional<Connection> after;
        bool answered = false;
    };
    auto waiting = std::make_shared<Waiting>();
    waiting->during = &c;
    publisher.publish(r, request_body(c), [waiting, cors_lines](PublishOutcome outcome) {
        auto* connection = waiting->during ? waiting->during : waiting->after ? &*waiting->after : nullptr;
        if (!connection || waiting->answered) return;
        waiting->answered = true;
        answer_publish(*connection, std::move(outcome), cors_lines);
        waiting->after.reset();
    });
    waiting->during = nullptr;
    if (!waiting->answered) waiting->after = std::move(c);
}

void StreamRoute::respond(Connection& c, Streams& streams, const Answer& answer, const std::string& cors_lines) {
    std::string head = fmt::format("Status: 200 OK\r\nContent-Type: {}\r\n", answer.content_type);
    for (const auto& [name, value] : answer.headers) fmt::format_to(std::back_inserter(head), "{}: {}\r\n", name, value);
    head += cors_lines;
    bool head_only = c.request.method == "HEAD";
    auto what = fmt::format("uri={}", c.request.uri);
    // On a Stream, whatever its size: the answer may be larger than the socket takes at once, and
    // a stream writes the rest as the web server reads, without holding the loop.
    streams.check_room();
    auto& stream = streams.open(std::move(c), settings_.limits, std::move(what));
    stream.respond(head, head_only ? std::string_view() : std::string_view(answer.body));
}

}  // namespace fastsse
