// TopicSelector on any selector text in any syntax, then matches() on any topic: never a crash, and
// never more than the step bound. The first byte picks the syntax (and, for URL patterns, whether
// the hub has a URL of its own); the rest is the selector, a NUL byte, then the topic. Properties:
// - `*` matches every topic; an exact selector matches a topic exactly when they are equal;
// - a topic selector (0.x `topic=`) matches its own text, template or not;
// - a selector that compiles has at most max_selector_bytes; matching twice gives the same answer.
#include <string>
#include <string_view>

#include "fastsse/hub/topic_selector.hpp"
#include "fuzz.hpp"

using fastsse::SelectorError;
using fastsse::SelectorSyntax;
using fastsse::TopicSelector;
using fastsse_fuzz::check;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size == 0) return 0;
    auto syntax = static_cast<SelectorSyntax>(data[0] % 3);
    std::string_view hub = data[0] & 4 ? "https://hub.example.com/.well-known/mercure" : fastsse::default_hub_url;
    std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
    auto nul = rest.find('\0');
    auto text = rest.substr(0, nul);
    auto topic = nul == std::string_view::npos ? text : rest.substr(nul + 1);

    try {
        TopicSelector selector(text, syntax, hub);
        check(text.size() <= fastsse::max_selector_bytes, "a selector past the length bound compiled");
        bool matches = selector.matches(topic);
        check(selector.matches(topic) == matches, "matching twice gave two answers");
        if (text == "*") check(matches, "`*` did not match");
        if (syntax == SelectorSyntax::exact && text != "*") check(matches == (topic == text), "exact is not equality");
        if (syntax == SelectorSyntax::topic) check(selector.matches(text), "a topic selector does not match itself");
        if (syntax != SelectorSyntax::urlpattern) check(!selector.matches(std::string(text) + '\x01') || selector.is_wildcard(),
                                                       "a control byte after the selector matched");
    } catch (const SelectorError&) {
        check(syntax == SelectorSyntax::urlpattern || text.size() > fastsse::max_selector_bytes ||
                  text.find('{') != std::string_view::npos,
              "a topic or exact selector refused without being long or a template");
    }
    // The rules for a topic itself: total functions on any bytes; a text they pass has no control byte.
    bool reserved = fastsse::in_hub_namespace(topic, hub);
    check(reserved == fastsse::in_hub_namespace(topic, hub), "the namespace check gave two answers");
    if (!fastsse::identifier_problem(topic))
        for (unsigned char c : topic) check(c >= 0x20 && c != 0x7f, "a control byte passed as an identifier");
    return 0;
}
