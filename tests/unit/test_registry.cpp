// Producers are registered by name, once each, where the program is assembled.
#include <doctest/doctest.h>

#include <stdexcept>

#include "fastsse/producers/producer.hpp"

namespace {
struct Nothing final : fastsse::Producer {
    std::span<const fastsse::OptionSpec> options() const override { return {}; }
    std::unique_ptr<fastsse::Subscription> open(fastsse::Sink&, const fastsse::StreamStart&) override { return nullptr; }
};
}  // namespace

TEST_CASE("Registry: finds by name, lists the names, refuses a name given twice") {
    fastsse::Registry registry;
    registry.add("clock", std::make_unique<Nothing>());
    auto* first = registry.find("clock");
    REQUIRE(first);
    registry.add("command", std::make_unique<Nothing>());
    CHECK(registry.names() == std::vector<std::string>{"clock", "command"});
    CHECK(registry.find("nope") == nullptr);
    CHECK_THROWS_AS(registry.add("clock", std::make_unique<Nothing>()), std::logic_error);
    CHECK(registry.find("clock") == first);  // the first one stays
}
