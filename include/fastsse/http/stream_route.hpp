#pragma once
// The event-stream route: GET (and HEAD) on a location that names a producer (FASTSSE_PRODUCER).
// It checks the method, the producer, Accept, room for one more stream and the location's
// FASTSSE_* options, then opens a Stream and starts the producer on it.
#include <string>
#include <vector>

#include "fastsse/config/options.hpp"
#include "fastsse/config/settings.hpp"
#include "fastsse/http/router.hpp"
#include "fastsse/producers/producer.hpp"

namespace fastsse {

class StreamRoute final : public Route {
public:
    StreamRoute(const Registry& registry, const Settings& settings);

    void handle(Connection& connection, Streams& streams) override;

private:
    const Registry& registry_;
    Settings settings_;
};

}  // namespace fastsse
