#pragma once
// Routing: which code answers a request, chosen by the params its location sets, and the one place
// a request's exceptions become HTTP (as cpp-httplib's process_request). Routes are registered
// explicitly where the program is assembled (main.cpp), as producers are.
//
// A location that sets FASTSSE_PRODUCER goes to the producer route (event streams; a hub producer
// will also take a publish there); one that sets FASTSSE_ENDPOINT <name> and no producer goes to
// that endpoint (a metrics page, for example); one that sets neither gets a 404.
#include <map>
#include <memory>
#include <string>

#include "fastsse/fastcgi/records.hpp"
#include "fastsse/http/request.hpp"

namespace fastsse {

class Stream;
struct StreamLimits;

// The open streams, as a route sees them. The Server keeps them, sweeps them and ends them.
class Streams {
public:
    // Throws RequestError::unavailable (503) when no stream may open now: the server is shutting
    // down, or max_streams are open.
    virtual void check_room() const = 0;
    // A new stream on `connection`, not begun yet, kept until it ends.
    virtual Stream& open(Connection connection, const StreamLimits& limits, std::string what) = 0;

protected:
    ~Streams() = default;
};

// The code that answers one kind of request.
class Route {
public:
    virtual ~Route() = default;
    // Answers `connection`: writes a whole answer (send_response), takes the connection (into a
    // Stream, which then answers for itself), or throws. While no header has left
    // (connection.headers_sent), a RequestError becomes its answer and anything else a 500; after,
    // the connection is closed.
    virtual void handle(Connection& connection, Streams& streams) = 0;
};

// What a request that is refused gets, logged: the error as its answer while no header has left;
// after, the connection is closed without FCGI_END_REQUEST, which tells the web server (and through
// it the client) that the response was cut short. Router::dispatch calls it for what a route throws;
// a route that answers later (a publish a store keeps elsewhere) calls it then.
void refuse(Connection& connection, const RequestError& error);

// The request body for a route that needs it; a 413 when it passed the max_body setting
// (Connection::body_whole false).
const std::string& request_body(const Connection& connection);

class Router {
public:
    // The route of every location that sets FASTSSE_PRODUCER, whichever producer it names.
    void add_producer_route(std::unique_ptr<Route> route);
    // The route of the locations that set FASTSSE_ENDPOINT `name` (and no FASTSSE_PRODUCER). A name
    // given twice is a mistake where the program is assembled: it throws std::logic_error.
    void add_endpoint(std::string name, std::unique_ptr<Route> route);

    // Runs the request's route: the one place a request's exceptions are caught.
    void dispatch(Connection connection, Streams& streams);

private:
    Route& route_for(const Request& request) const;

    std::unique_ptr<Route> producer_route_;
    std::map<std::string, std::unique_ptr<Route>, std::less<>> endpoints_;
};

}  // namespace fastsse
