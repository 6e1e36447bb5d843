#pragma once
// Publishing from a unit test or a fuzzer, where the outcome must come before publish() returns (the
// memory store): the answer, or the refusal thrown as the route would answer it.
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <variant>

#include "fastsse/producers/producer.hpp"

namespace fastsse_test {

inline fastsse::PublishAnswer publish_now(fastsse::Publisher& publisher, const fastsse::Request& request,
                                          std::string_view body) {
    std::optional<fastsse::PublishOutcome> outcome;
    publisher.publish(request, body, [&](fastsse::PublishOutcome o) { outcome = std::move(o); });
    if (!outcome) throw std::logic_error("publish() returned without its outcome");
    if (auto* refusal = std::get_if<fastsse::RequestError>(&*outcome)) throw *refusal;
    return std::get<fastsse::PublishAnswer>(std::move(*outcome));
}

}  // namespace fastsse_test
