#include "fastsse/http/router.hpp"

#include <spdlog/spdlog.h>

#include <stdexcept>

#include "fastsse/http/response.hpp"
#include "fastsse/metrics/metrics.hpp"

namespace fastsse {

namespace {

void answer(Connection& c, const RequestError& error) {
    if (!c.fd) return;  // a Stream took the connection: it answers for itself (Stream::reject)
    if (!c.headers_sent) {
        metrics::counts.refused.add(error.status);
        return send_error(c, error);
    }
    spdlog::warn("{} {}: connection closed, the headers having left", c.request.method, c.request.uri);
    fastcgi::drain_input(c.fd.get());
    c.fd.reset();
}

}  // namespace

void refuse(Connection& c, const RequestError& error) {
    spdlog::info("{} {}: {} {}", c.request.method, c.request.uri, error.status, error.what());
    answer(c, error);
}

const std::string& request_body(const Connection& c) {
    if (!c.body_whole)
        throw RequestError(413, fmt::format("The request body is too large: fastsse takes up to {} bytes.",
                                            c.body_limit));
    return c.body;
}

void Router::add_producer_route(std::unique_ptr<Route> route) { producer_route_ = std::move(route); }

void Router::add_endpoint(std::string name, std::unique_ptr<Route> route) {
    auto [it, added] = endpoints_.try_emplace(std::move(name), std::move(route));
    if (!added) throw std::logic_error("an endpoint named '" + it->first + "' is registered already");
}

Route& Router::route_for(const Request& r) const {
    if (auto producer = r.fastsse.find("producer"); producer != r.fastsse.end()) {
        if (producer_route_) return *producer_route_;
        throw RequestError(404, fmt::format("No event stream here: no producer named '{}'.", producer->second));
    }
    if (auto endpoint = r.fastsse.find("endpoint"); endpoint != r.fastsse.end()) {
        if (auto it = endpoints_.find(endpoint->second); it != endpoints_.end()) return *it->second;
        throw RequestError(404, fmt::format("Nothing here: no endpoint named '{}'.", endpoint->second));
    }
    throw RequestError(404, "No event stream here: this location sets no FASTSSE_PRODUCER.");
}

void Router::dispatch(Connection c, Streams& streams) {
    try {
        route_for(c.request).handle(c, streams);
    } catch (const RequestError& e) {
        refuse(c, e);
    } catch (const std::exception& e) {
        spdlog::error("{} {}: {}", c.request.method, c.request.uri, e.what());
        answer(c, RequestError(500, e.what()));
    }
}

}  // namespace fastsse
