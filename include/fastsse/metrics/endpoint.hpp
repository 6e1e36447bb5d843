#pragma once
// The metrics page: a location with `fastcgi_param FASTSSE_ENDPOINT metrics;` (and no producer)
// answers GET and HEAD with Prometheus's text format (metrics.hpp); any other method is a 405.
// The page is written through a Stream (Stream::respond), as the hub's subscription API is: a page
// larger than the socket takes at once never holds the loop.
#include "fastsse/config/settings.hpp"
#include "fastsse/http/router.hpp"
#include "fastsse/producers/producer.hpp"

namespace fastsse {

class MetricsEndpoint final : public Route {
public:
    // Every producer of `registry` shows on the page from the start, at 0.
    MetricsEndpoint(const Registry& registry, const Settings& settings);
    void handle(Connection& connection, Streams& streams) override;

    static constexpr std::string_view content_type = "text/plain; version=0.0.4; charset=utf-8";

private:
    const Settings& settings_;  // the process's, which a reload may change
};

}  // namespace fastsse
