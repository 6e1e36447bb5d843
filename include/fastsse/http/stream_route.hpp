#pragma once
// The event-stream route: GET (and HEAD) on a location that names a producer (FASTSSE_PRODUCER).
// It checks the method, the producer, Accept, room for one more stream and the location's
// FASTSSE_* options, then opens a Stream and starts the producer on it. A POST goes to the
// producer's Publisher when it has one (the Mercure hub), with the request body; otherwise, as any
// other method, it is a 405. A producer that takes cross-origin requests (its cors()) gets its
// preflights (OPTIONS) answered here, and its CORS headers on every answer. A request the producer
// answers whole (Producer::answer: the hub's subscription API) gets that answer, written by a Stream.
#include <string>
#include <vector>

#include "fastsse/config/options.hpp"
#include "fastsse/config/settings.hpp"
#include "fastsse/http/cors.hpp"
#include "fastsse/http/router.hpp"
#include "fastsse/producers/producer.hpp"

namespace fastsse {

class StreamRoute final : public Route {
public:
    // `settings` are the process's, which a reload may change: each request reads them anew.
    StreamRoute(const Registry& registry, const Settings& settings);

    void handle(Connection& connection, Streams& streams) override;

private:
    void serve(Connection& connection, Streams& streams, Producer* producer, const CorsPolicy* cors,
               const Headers& cors_headers);
    void publish(Connection& connection, Producer& producer, Publisher& publisher, const std::string& cors_lines);
    void respond(Connection& connection, Streams& streams, const Answer& answer, const std::string& cors_lines);

    const Registry& registry_;
    const Settings& settings_;
};

}  // namespace fastsse
