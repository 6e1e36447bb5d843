#pragma once
// Which topics a Mercure subscription wants: one selector, compiled once from the client's text,
// then matched against every update's topics. Three syntaxes, as the subscriber named them:
//   - topic (Mercure 0.x, `topic=`; draft 07 "Topic Selectors"): `*` matches every topic; otherwise
//     a topic matches when it equals the selector, or when the selector is a valid RFC 6570 URI
//     template that the topic matches. A selector that is not a valid template is not an error:
//     the spec allows any string, it then matches by equality alone (as Mercure's hub does).
//   - exact (Mercure 1.0, `match=` and `match_exact=`; draft 08 "Exact Matching"): `*`, or a
//     byte-for-byte comparison; never a template.
//   - urlpattern (Mercure 1.0, `match_urlpattern=`; draft 08 "URL Pattern"): `*`, or a WHATWG URL
//     Pattern in the subset real clients send (see below); relative patterns and topics are taken
//     against the hub's URL.
//
// No std::regex and no recursion on client text: templates and patterns compile to a small
// automaton that is run over the topic once, with the set of live states (never a backtracking
// search), under a bound on the work per topic.
#include <cstddef>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace fastsse {

enum class SelectorSyntax { topic, exact, urlpattern };

// A selector that cannot be used; what() is a short reason fit for a 400's body.
class SelectorError : public std::invalid_argument {
public:
    using std::invalid_argument::invalid_argument;
};

// Bounds on what one selector may cost. Longer selectors, or templates with more expressions, are
// refused (draft 08: "hubs SHOULD apply implementation-defined maximums ... to the length of each
// matcher's pattern").
constexpr size_t max_selector_bytes = 2048;
constexpr size_t max_selector_expressions = 32;  // URI template expressions, or URL pattern groups
// The most automaton steps one matches() may take: max_match_steps, and match_steps_per_byte more
// for each byte of the topic, so that the work stays linear in the topic. Past it the topic does
// not match (draft 08 asks exactly this of URL patterns: "treated as not matching and the
// evaluation MUST be aborted"). Real selectors take a few steps per byte; only a crafted one
// (dozens of adjacent expressions, or a long literal run after one) comes near.
constexpr size_t max_match_steps = size_t{1} << 20;
constexpr size_t match_steps_per_byte = 64;

// The base for relative URL patterns and topics when the hub has no URL of its own: a reserved
// name (RFC 6761), so that relative matches relative and never a real origin.
inline constexpr std::string_view default_hub_url = "http://mercure.invalid/";

namespace selector_detail {
struct Program;
}

// One compiled selector. URL patterns support: literal text, `\`-escapes, named groups `:name`
// (one or more characters, not crossing a '/' in the path nor a '.' in the host), and `*` (any
// text, even empty), in the protocol, host, port, path, search (`?`) and hash (`#`). An absolute
// pattern leaves user name, password, search and hash as `*` when it does not give them, and the
// port as the default one; a relative one ("/books/:id") takes what precedes the path from the
// hub's URL. Regexp groups `(...)`, `{...}` groups and the modifiers `?`, `+`, `*`
// after a group are refused with a reason. Topics are compared as URLs after a light
// canonicalisation (scheme and host lower-cased, a default port dropped, an empty path of an
// http(s)/ws(s) URL made "/"); no IDNA, no dot segments, no re-encoding.
class TopicSelector {
public:
    // Throws SelectorError. `hub_url` (absolute) is what relative URL patterns and relative topics
    // are taken against; the other syntaxes ignore it.
    explicit TopicSelector(std::string_view text, SelectorSyntax syntax = SelectorSyntax::topic,
                           std::string_view hub_url = default_hub_url);
    TopicSelector(TopicSelector&&) noexcept;
    TopicSelector& operator=(TopicSelector&&) noexcept;
    ~TopicSelector();

    bool matches(std::string_view topic) const;

    const std::string& text() const { return text_; }
    SelectorSyntax syntax() const { return syntax_; }
    bool is_wildcard() const { return kind_ == Kind::any; }
    // A topic selector that compiled as a URI template (one with at least one expression).
    bool is_template() const { return kind_ == Kind::uri_template; }

private:
    enum class Kind { any, exact, uri_template, url_pattern };
    std::string text_;
    SelectorSyntax syntax_;
    Kind kind_ = Kind::exact;
    std::unique_ptr<const selector_detail::Program> program_;  // templates and URL patterns
};

// What draft 08 asks of every topic, topic matcher, update id and event type ("Terminology"):
// valid UTF-8 without C0 or C1 control characters, DEL, or Unicode format characters (general
// category Cf, Unicode 15: the invisible ones that let a text pass for another). nullopt when the
// text is fine, else why not (a short reason for a 400).
std::optional<std::string_view> identifier_problem(std::string_view text);

// Whether a topic names the hub's own namespace, which draft 08 reserves for the updates the hub
// makes (subscription events): its path, taken against the hub's URL with dot segments removed and
// the %-encoded unreserved characters decoded, is the hub's path or under it, whatever the scheme
// or host. A topic that is no URL reference names none, and a hub at "/" reserves nothing.
bool in_hub_namespace(std::string_view topic, std::string_view hub_url);

// The selectors of one subscription: it receives an update when any of them matches any of the
// update's topics (the canonical topic, then its alternates).
class SelectorSet {
public:
    void add(TopicSelector selector) { selectors_.push_back(std::move(selector)); }
    bool matches_any(const std::vector<std::string>& topics) const;
    bool matches_any(const std::vector<std::string_view>& topics) const;
    bool empty() const { return selectors_.empty(); }
    size_t size() const { return selectors_.size(); }
    const std::vector<TopicSelector>& selectors() const { return selectors_; }

private:
    std::vector<TopicSelector> selectors_;
};

}  // namespace fastsse
