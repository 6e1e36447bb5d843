#include "fastsse/metrics/endpoint.hpp"

#include <fmt/format.h>

#include "fastsse/http/stream.hpp"
#include "fastsse/metrics/metrics.hpp"

namespace fastsse {

MetricsEndpoint::MetricsEndpoint(const Registry& registry, const Settings& settings) : settings_(settings) {
    for (const auto& name : registry.names()) metrics::counts.producer(name);
}

void MetricsEndpoint::handle(Connection& c, Streams& streams) {
    const auto& r = c.request;
    if (r.method != "GET" && r.method != "HEAD")
        throw RequestError::method_not_allowed(
            fmt::format("Method {} is not allowed: the metrics page is read with GET.", r.method), "GET, HEAD");
    auto page = metrics::exposition(metrics::counts, {settings_.max_streams});
    auto head = fmt::format("Status: 200 OK\r\nContent-Type: {}\r\nCache-Control: no-store\r\n", content_type);
    bool head_only = r.method == "HEAD";
    auto what = fmt::format("metrics uri={}", r.uri);
    // Not streams.check_room(): the page is wanted most when the streams are at max_streams, and
    // it is one short answer, not a stream (it is not counted as one).
    auto& stream = streams.open(std::move(c), settings_.limits, std::move(what));
    stream.respond(head, head_only ? std::string_view() : std::string_view(page));
}

}  // namespace fastsse
