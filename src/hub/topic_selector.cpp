#include "fastsse/hub/topic_selector.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <cstdint>
#include <optional>

#include <fmt/format.h>

namespace fastsse {

namespace selector_detail {

// A set of bytes, one bit each.
struct ByteClass {
    std::array<uint64_t, 4> bits{};
    void add(unsigned char c) { bits[c >> 6] |= uint64_t{1} << (c & 63); }
    void add_range(unsigned char lo, unsigned char hi) {
        for (unsigned c = lo; c <= hi; ++c) add(static_cast<unsigned char>(c));
    }
    void add_all(std::string_view chars) {
        for (char c : chars) add(static_cast<unsigned char>(c));
    }
    bool has(unsigned char c) const { return bits[c >> 6] >> (c & 63) & 1; }
    bool operator==(const ByteClass&) const = default;
};

// A Thompson automaton over bytes: a state consumes one byte (a given one, or one of a class) and
// goes to `next`, or forks without consuming (split), or accepts. Run with the set of live states,
// so a topic is read once, left to right, whatever the selector: no backtracking to blow up.
struct State {
    enum Kind : uint8_t { byte, cls, split, match };
    Kind kind;
    uint8_t value;     // byte: the byte; cls: its index in `classes`
    int32_t next;      // where a consumed byte, or a split's first branch, leads
    int32_t alt = -1;  // a split's second branch
};

struct Nfa {
    std::vector<State> states;
    std::vector<ByteClass> classes;

    // Whether the automaton, started in state `start`, accepts `input`; false too once `budget`
    // steps are spent.
    bool run(std::string_view input, size_t& budget, int32_t start = 0) const;
};

// Reused between calls so that a match allocates nothing once warm: matches() runs for every
// subscription of every update.
struct Scratch {
    std::vector<uint32_t> mark;  // mark[s] == generation: s is already in the list being built
    uint32_t generation = 0;
    std::vector<int32_t> current, next, stack;

    void new_generation(size_t states) {
        if (mark.size() < states) mark.resize(states, 0);
        if (++generation == 0) {  // wrapped: old marks could look current
            std::fill(mark.begin(), mark.end(), 0);
            generation = 1;
        }
    }
};

namespace {
thread_local Scratch scratch;
}  // namespace

bool Nfa::run(std::string_view input, size_t& budget, int32_t start) const {
    auto& s = scratch;
    // Adds `from` and everything its splits reach to `list`; false once the budget is spent.
    auto add = [&](int32_t from, std::vector<int32_t>& list) {
        s.stack.clear();
        s.stack.push_back(from);
        while (!s.stack.empty()) {
            auto at = s.stack.back();
            s.stack.pop_back();
            if (s.mark[at] == s.generation) continue;
            s.mark[at] = s.generation;
            if (budget == 0) return false;
            --budget;
            const auto& st = states[at];
            if (st.kind == State::split) {
                s.stack.push_back(st.alt);
                s.stack.push_back(st.next);
            } else {
                list.push_back(at);
            }
        }
        return true;
    };

    s.new_generation(states.size());
    s.current.clear();
    if (!add(start, s.current)) return false;
    for (char ch : input) {
        auto c = static_cast<unsigned char>(ch);
        s.new_generation(states.size());
        s.next.clear();
        for (auto at : s.current) {
            const auto& st = states[at];
            bool takes = (st.kind == State::byte && st.value == c) || (st.kind == State::cls && classes[st.value].has(c));
            if (takes && !add(st.next, s.next)) return false;
        }
        std::swap(s.current, s.next);
        if (s.current.empty()) return false;
    }
    for (auto at : s.current)
        if (states[at].kind == State::match) return true;
    return false;
}

// Builds an Nfa front to back: each piece's states fall through to the state after it.
class Builder {
public:
    int32_t here() const { return static_cast<int32_t>(nfa_.states.size()); }

    void byte(unsigned char c) { nfa_.states.push_back({State::byte, c, here() + 1}); }
    void literal(std::string_view text) {
        for (char c : text) byte(static_cast<unsigned char>(c));
    }

    // Zero or more tokens (one or more with `at_least_one`), a token being a byte of `cls` or,
    // with `percent`, a %XX triplet.
    void repeat(const ByteClass& cls, bool percent, bool at_least_one = false) {
        auto c = class_index(cls);
        if (at_least_one) {  // one token, then the loop below: only used without `percent`
            nfa_.states.push_back({State::cls, c, here() + 1});
        }
        auto loop = here();
        if (!percent) {
            nfa_.states.push_back({State::split, 0, loop + 1, loop + 2});
            nfa_.states.push_back({State::cls, c, loop});
            return;
        }
        ByteClass hex;
        hex.add_range('0', '9');
        hex.add_range('a', 'f');
        hex.add_range('A', 'F');
        auto h = class_index(hex);
        nfa_.states.push_back({State::split, 0, loop + 1, loop + 2});
        nfa_.states.push_back({State::cls, c, loop});
        nfa_.states.push_back({State::split, 0, loop + 3, loop + 6});
        nfa_.states.push_back({State::byte, '%', loop + 4});
        nfa_.states.push_back({State::cls, h, loop + 5});
        nfa_.states.push_back({State::cls, h, loop});
    }

    // A fork whose second branch skips what follows, up to a point set later with skip_to.
    int32_t fork() {
        nfa_.states.push_back({State::split, 0, here() + 1, -1});
        return here() - 1;
    }
    void skip_to(int32_t split, int32_t to) { nfa_.states[split].alt = to; }
    void jump(int32_t to) { nfa_.states.push_back({State::split, 0, to, to}); }

    Nfa finish() {
        nfa_.states.push_back({State::match, 0, -1});
        return std::move(nfa_);
    }

private:
    uint8_t class_index(const ByteClass& cls) {
        for (size_t i = 0; i < nfa_.classes.size(); ++i)
            if (nfa_.classes[i] == cls) return static_cast<uint8_t>(i);
        nfa_.classes.push_back(cls);  // a handful at most: the classes are fixed sets
        return static_cast<uint8_t>(nfa_.classes.size() - 1);
    }

    Nfa nfa_;
};

// The URL components URL Pattern matches, in its order.
enum Component { protocol, username, password, hostname, port, pathname, search, hash, component_count };

struct UrlParts {
    std::array<std::string, component_count> part;
    bool has_authority = false;
};

struct Program {
    std::vector<Nfa> nfas;
    // URL patterns: which of `nfas` matches each component; -1 is the wildcard `*`.
    std::array<int, component_count> component{};
    std::optional<UrlParts> hub_url;  // URL patterns: what relative topics are taken against
    // Templates: the literal text before the first expression and after the last, which a topic
    // must start and end with. Most topics a subscription sees are refused here, by a compare;
    // the prefix's bytes are the automaton's first states, so a run starts after them.
    std::string prefix, suffix;
};

}  // namespace selector_detail

namespace {

using namespace selector_detail;

// ---------------------------------------------------------------------------------------------
// RFC 6570 URI templates, parsed as yosida95/uritemplate (Mercure's library) accepts them, and
// matched as the regular expression it derives from one (its Template.Regexp): each expression
// is optional, and matches its operator's first character, then the variables' values joined by
// the operator's separator, a value being any run of allowed characters and %XX triplets.

bool is_hex(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }
bool is_alnum(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

// One UTF-8 code point at s[i]; 0 bytes when the sequence is invalid.
size_t decode_utf8(std::string_view s, size_t i, char32_t& cp) {
    auto b = static_cast<unsigned char>(s[i]);
    size_t len = b < 0x80 ? 1 : (b & 0xe0) == 0xc0 ? 2 : (b & 0xf0) == 0xe0 ? 3 : (b & 0xf8) == 0xf0 ? 4 : 0;
    if (len == 0 || i + len > s.size()) return 0;
    cp = len == 1 ? b : b & (0x7f >> len);
    for (size_t k = 1; k < len; ++k) {
        auto c = static_cast<unsigned char>(s[i + k]);
        if ((c & 0xc0) != 0x80) return 0;
        cp = cp << 6 | (c & 0x3f);
    }
    constexpr char32_t least[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < least[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
    return len;
}

// RFC 6570 `literals` outside ASCII: ucschar and iprivate.
bool literal_code_point(char32_t cp) {
    if (cp < 0xa0) return false;
    if (cp <= 0xd7ff) return true;
    if (cp >= 0xe000 && cp <= 0xf8ff) return true;
    if (cp >= 0xf900 && cp <= 0xfdcf) return true;
    if (cp >= 0xfdf0 && cp <= 0xffef) return true;
    if (cp >= 0xe0000 && cp < 0xe1000) return false;
    return cp >= 0x10000 && (cp & 0xffff) <= 0xfffd;
}

// RFC 6570 `literals` in ASCII (with the errata that allows '\'').
bool literal_ascii(char c) {
    switch (c) {
    case '"': case '%': case '<': case '>': case '\\': case '^': case '`': case '{': case '|': case '}': return false;
    default: return c > ' ' && c < 0x7f;
    }
}

const ByteClass& unreserved() {
    static const ByteClass cls = [] {
        ByteClass c;
        c.add_range('0', '9');
        c.add_range('a', 'z');
        c.add_range('A', 'Z');
        c.add_all("-._~");
        return c;
    }();
    return cls;
}

struct Operator {
    char symbol;       // 0 for a simple {var}
    char first;        // written before the first value, 0 for none
    char separator;    // between values
    bool named;        // values are name=value
    bool reserved;     // values may hold reserved characters ({+var}, {#var})
};

constexpr Operator operators[] = {
    {0, 0, ',', false, false},   {'+', 0, ',', false, true},  {'#', '#', ',', false, true},
    {'.', '.', '.', false, false}, {'/', '/', '/', false, false}, {';', ';', ';', true, false},
    {'?', '?', '&', true, false},  {'&', '&', '&', true, false},
};

struct Expression {
    const Operator* op;
    size_t variables = 0;
    bool first_explodes = false;
    bool any_explodes = false;
};

// The characters one value may hold, besides %XX triplets.
ByteClass value_class(const Operator& op, bool with_equals) {
    ByteClass c = unreserved();
    if (op.reserved) {
        c.add_all(":/?#[]@!$&'()*+,;=");
    } else {
        c.add(',');
        if (with_equals) c.add('=');
    }
    return c;
}

void compile_expression(Builder& b, const Expression& e) {
    const auto& op = *e.op;
    auto optional = b.fork();
    if (op.first) b.byte(static_cast<unsigned char>(op.first));
    auto first = value_class(op, op.named || e.first_explodes);
    b.repeat(first, true);
    if (e.variables > 1 || e.any_explodes) {
        auto rest = value_class(op, op.named || e.any_explodes);
        if (rest.has(static_cast<unsigned char>(op.separator))) {
            // The separator is itself a value character: any number of further values reads the
            // same as one (or none, when both classes are equal), so one optional tail suffices.
            if (!(rest == first)) {
                auto tail = b.fork();
                b.byte(static_cast<unsigned char>(op.separator));
                b.repeat(rest, true);
                b.skip_to(tail, b.here());
            }
        } else if (e.any_explodes) {
            auto loop = b.fork();
            b.byte(static_cast<unsigned char>(op.separator));
            b.repeat(rest, true);
            b.jump(loop);
            b.skip_to(loop, b.here());
        } else {
            // At most variables - 1 more values: each separator read moves one copy on, so the
            // live states stay few.
            std::vector<int32_t> forks;
            for (size_t i = 1; i < e.variables; ++i) {
                forks.push_back(b.fork());
                b.byte(static_cast<unsigned char>(op.separator));
                b.repeat(rest, true);
            }
            for (auto f : forks) b.skip_to(f, b.here());
        }
    }
    b.skip_to(optional, b.here());
}

// Compiles a URI template; nullopt when the text is not one (then it is a plain topic). Throws
// SelectorError for a valid template past the bounds.
std::optional<Nfa> compile_template(std::string_view text) {
    Builder b;
    std::vector<Expression> expressions;
    size_t i = 0;
    while (i < text.size()) {
        char c = text[i];
        if (c == '%') {
            if (i + 2 >= text.size() || !is_hex(text[i + 1]) || !is_hex(text[i + 2])) return std::nullopt;
            b.literal(text.substr(i, 3));
            i += 3;
        } else if (c != '{') {
            char32_t cp;
            size_t len = static_cast<unsigned char>(c) < 0x80 ? (literal_ascii(c) ? 1 : 0) : decode_utf8(text, i, cp);
            if (len == 0 || (len > 1 && !literal_code_point(cp))) return std::nullopt;
            b.literal(text.substr(i, len));
            i += len;
        } else {
            ++i;
            if (i == text.size()) return std::nullopt;
            Expression e{&operators[0]};
            for (const auto& op : operators)
                if (op.symbol && op.symbol == text[i]) e.op = &op;
            if (e.op != &operators[0]) ++i;
            // Each variable: a name of [A-Za-z0-9_] and %XX, dots only between; then `:max-length`
            // (1 to 9999) or `*`; then ',' or '}'.
            for (;;) {
                size_t start = i;
                while (i < text.size()) {
                    if (is_alnum(text[i]) || text[i] == '_') {
                        ++i;
                    } else if (text[i] == '%' && i + 2 < text.size() && is_hex(text[i + 1]) && is_hex(text[i + 2])) {
                        i += 3;
                    } else if (text[i] == '.' && i > start && text[i - 1] != '.') {
                        ++i;
                    } else {
                        break;
                    }
                }
                if (i == start || text[i - 1] == '.' || i == text.size()) return std::nullopt;
                bool explode = false;
                if (text[i] == '*') {
                    explode = true;
                    ++i;
                } else if (text[i] == ':') {
                    ++i;
                    size_t digits = 0;
                    while (i < text.size() && text[i] >= '0' && text[i] <= '9' && digits < 5) ++i, ++digits;
                    auto n = text.substr(i - digits, digits);
                    if (digits == 0 || digits > 4 || n[0] == '0') return std::nullopt;
                }
                if (e.variables == 0) e.first_explodes = explode;
                e.any_explodes = e.any_explodes || explode;
                ++e.variables;
                if (i == text.size()) return std::nullopt;
                if (text[i++] == '}') break;
                if (text[i - 1] != ',') return std::nullopt;
            }
            expressions.push_back(e);
            if (expressions.size() > max_selector_expressions)
                throw SelectorError(fmt::format("the URI template has more than {} expressions", max_selector_expressions));
            compile_expression(b, e);
        }
    }
    if (expressions.empty()) return std::nullopt;  // no expression: only ever equal to itself
    return b.finish();
}

// ---------------------------------------------------------------------------------------------
// URLs, cut into URL Pattern's components, for topics and the hub's URL.

std::string lower(std::string_view s) {
    std::string out(s);
    for (auto& c : out)
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    return out;
}

std::string_view default_port(std::string_view scheme) {
    if (scheme == "http" || scheme == "ws") return "80";
    if (scheme == "https" || scheme == "wss") return "443";
    if (scheme == "ftp") return "21";
    return {};
}

bool special(std::string_view scheme) { return !default_port(scheme).empty() || scheme == "file"; }

// Path, search and hash from `rest` (what follows the authority or the scheme).
void split_tail(std::string_view rest, UrlParts& u, bool keep_path) {
    auto end = rest.find_first_of("?#");
    if (!keep_path) u.part[pathname] = rest.substr(0, end);
    rest = end == std::string_view::npos ? std::string_view() : rest.substr(end);
    if (rest.starts_with('?')) {
        auto h = rest.find('#');
        u.part[search] = rest.substr(1, h == std::string_view::npos ? h : h - 1);
        rest = h == std::string_view::npos ? std::string_view() : rest.substr(h);
    }
    if (rest.starts_with('#')) u.part[hash] = rest.substr(1);
}

bool parse_authority(std::string_view authority, UrlParts& u) {
    u.has_authority = true;
    auto at = authority.rfind('@');
    if (at != std::string_view::npos) {
        auto info = authority.substr(0, at);
        auto colon = info.find(':');
        u.part[username] = info.substr(0, colon);
        if (colon != std::string_view::npos) u.part[password] = info.substr(colon + 1);
        authority = authority.substr(at + 1);
    }
    size_t host_end = authority.starts_with('[') ? authority.find(']') : authority.find(':');
    if (authority.starts_with('[')) {
        if (host_end == std::string_view::npos) return false;
        ++host_end;
    }
    u.part[hostname] = lower(authority.substr(0, host_end));
    if (host_end < authority.size()) {
        if (authority[host_end] != ':') return false;
        auto digits = authority.substr(host_end + 1);
        if (!digits.empty()) {
            unsigned value = 0;
            auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
            if (ec != std::errc() || end != digits.data() + digits.size() || value > 65535) return false;
            u.part[port] = std::to_string(value);
        }
    }
    if (u.part[port] == default_port(u.part[protocol])) u.part[port].clear();
    return true;
}

// Cuts `text` into components, taking a relative reference against `base`; nullopt when it is
// not a URL (then a URL pattern cannot match it).
std::optional<UrlParts> parse_url(std::string_view text, const UrlParts* base) {
    UrlParts u;
    size_t colon = text.find(':');
    bool has_scheme = colon != std::string_view::npos && colon > 0 &&
                      ((text[0] >= 'a' && text[0] <= 'z') || (text[0] >= 'A' && text[0] <= 'Z')) &&
                      text.substr(0, colon).find_first_not_of(
                          "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+-.") == std::string_view::npos;
    std::string_view rest;
    if (has_scheme) {
        u.part[protocol] = lower(text.substr(0, colon));
        rest = text.substr(colon + 1);
    } else {
        if (!base) return std::nullopt;
        u = *base;
        u.part[search].clear();
        u.part[hash].clear();
        rest = text;
        if (!rest.starts_with("//")) {
            if (rest.starts_with('/')) {
                split_tail(rest, u, false);
            } else if (rest.starts_with('?') || rest.starts_with('#')) {
                if (rest.starts_with('#')) u.part[search] = base->part[search];
                split_tail(rest, u, true);
            } else {
                if (!base->has_authority && !base->part[pathname].starts_with('/')) return std::nullopt;  // opaque
                auto dir = base->part[pathname].substr(0, base->part[pathname].rfind('/') + 1);
                split_tail(rest, u, false);
                u.part[pathname] = dir + u.part[pathname];
            }
            return u;
        }
        u.part[username].clear();
        u.part[password].clear();
        u.part[port].clear();
    }
    if (rest.starts_with("//")) {
        rest.remove_prefix(2);
        auto end = rest.find_first_of("/?#");
        if (!parse_authority(rest.substr(0, end), u)) return std::nullopt;
        rest = end == std::string_view::npos ? std::string_view() : rest.substr(end);
    }
    split_tail(rest, u, false);
    if (u.part[pathname].empty() && special(u.part[protocol])) u.part[pathname] = "/";
    return u;
}

// ---------------------------------------------------------------------------------------------
// URL patterns: the constructor-string syntax of the WHATWG URL Pattern standard, in a subset.

struct Token {
    enum Kind { text, name, asterisk } kind;
    char c = 0;            // text: the character
    bool escaped = false;  // text: written as \c, so never a delimiter
};

std::vector<Token> tokenize_pattern(std::string_view s) {
    std::vector<Token> tokens;
    auto after_group = [&] { return !tokens.empty() && tokens.back().kind != Token::text; };
    auto ident_start = [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == '$'; };
    for (size_t i = 0; i < s.size(); ++i) {
        char c = s[i];
        if (c == '\\') {
            if (++i == s.size()) throw SelectorError("the URL pattern ends with a lone '\\'");
            tokens.push_back({Token::text, s[i], true});
        } else if (c == ':' && i + 1 < s.size() && ident_start(s[i + 1])) {
            ++i;
            while (i + 1 < s.size() && (ident_start(s[i + 1]) || (s[i + 1] >= '0' && s[i + 1] <= '9'))) ++i;
            tokens.push_back({Token::name});
        } else if ((c == '*' || c == '?' || c == '+') && after_group()) {
            throw SelectorError(fmt::format("the URL pattern's modifier '{}' after a group is not supported", c));
        } else if (c == '*') {
            tokens.push_back({Token::asterisk});
        } else if (c == '(' || c == ')') {
            throw SelectorError("regexp groups '(...)' in URL patterns are not supported");
        } else if (c == '{' || c == '}') {
            throw SelectorError("groups '{...}' in URL patterns are not supported");
        } else {
            tokens.push_back({Token::text, c});
        }
    }
    return tokens;
}

using Tokens = std::vector<Token>;

bool is_delimiter(const Token& t, char c) { return t.kind == Token::text && !t.escaped && t.c == c; }

size_t find_delimiter(const Tokens& t, size_t from, std::string_view delimiters) {
    for (size_t i = from; i < t.size(); ++i)
        for (char c : delimiters)
            if (is_delimiter(t[i], c)) return i;
    return t.size();
}

Tokens slice(const Tokens& t, size_t from, size_t to) { return Tokens(t.begin() + from, t.begin() + std::max(from, to)); }

Tokens literal_tokens(std::string_view s) {
    Tokens out;
    for (char c : s) out.push_back({Token::text, c, true});
    return out;
}

// A component's pattern: text matches itself, `:name` one or more characters other than the
// component's separator ('/' in the path, '.' in the host), `*` anything.
Nfa compile_component(const Tokens& tokens, char separator, bool lower_case) {
    Builder b;
    ByteClass any, segment;
    any.add_range(0, 255);
    segment = any;
    if (separator) segment.bits[static_cast<unsigned char>(separator) >> 6] &= ~(uint64_t{1} << (separator & 63));
    for (const auto& t : tokens) {
        if (t.kind == Token::text) {
            b.byte(static_cast<unsigned char>(lower_case && t.c >= 'A' && t.c <= 'Z' ? t.c - 'A' + 'a' : t.c));
        } else if (t.kind == Token::name) {
            b.repeat(segment, false, true);
        } else {
            b.repeat(any, false);
        }
    }
    return b.finish();
}

Program compile_url_pattern(std::string_view text, const UrlParts& hub) {
    auto tokens = tokenize_pattern(text);
    size_t groups = 0;
    for (const auto& t : tokens) groups += t.kind != Token::text;
    if (groups > max_selector_expressions)
        throw SelectorError(fmt::format("the URL pattern has more than {} groups", max_selector_expressions));

    std::array<std::optional<Tokens>, component_count> parts;  // nullopt: `*`
    size_t at = 0;
    if (!tokens.empty() && is_delimiter(tokens[0], '/')) {
        // Relative: the hub's URL gives what comes before the path.
        for (auto c : {protocol, username, password, hostname, port}) parts[c] = literal_tokens(hub.part[c]);
    } else {
        size_t colon = find_delimiter(tokens, 0, ":");
        if (colon == tokens.size() || colon == 0)
            throw SelectorError("a URL pattern must be an absolute URL (scheme:...) or a path starting with '/'");
        parts[protocol] = slice(tokens, 0, colon);
        at = colon + 1;
        parts[hostname] = Tokens();
        parts[port] = Tokens();
        if (at + 1 < tokens.size() && is_delimiter(tokens[at], '/') && is_delimiter(tokens[at + 1], '/')) {
            at += 2;
            auto end = find_delimiter(tokens, at, "/?#");
            if (find_delimiter(tokens, at, "@") < end)
                throw SelectorError("user names and passwords in URL patterns are not supported");
            // The port's ':' is the first one outside an IPv6 address's brackets.
            size_t port_colon = end;
            bool in_brackets = false;
            for (size_t i = at; i < end; ++i) {
                if (is_delimiter(tokens[i], '[')) in_brackets = true;
                if (is_delimiter(tokens[i], ']')) in_brackets = false;
                if (!in_brackets && is_delimiter(tokens[i], ':')) {
                    port_colon = i;
                    break;
                }
            }
            parts[hostname] = slice(tokens, at, port_colon);
            if (port_colon < end) parts[port] = slice(tokens, port_colon + 1, end);
            at = end;
        }
    }
    auto path_end = find_delimiter(tokens, at, "?#");
    parts[pathname] = slice(tokens, at, path_end);
    at = path_end;
    if (at < tokens.size() && is_delimiter(tokens[at], '?')) {
        auto end = find_delimiter(tokens, at + 1, "#");
        parts[search] = slice(tokens, at + 1, end);
        at = end;
    }
    if (at < tokens.size()) parts[hash] = slice(tokens, at + 1, tokens.size());

    // Canonical forms, as the topic's are: a default port is no port, an empty path of an
    // http(s)/ws(s) URL is "/".
    auto plain = [](const std::optional<Tokens>& t) {
        std::string s;
        for (const auto& token : *t) {
            if (token.kind != Token::text) return std::optional<std::string>();
            s += token.c;
        }
        return std::optional(s);
    };
    auto scheme = plain(parts[protocol]);
    if (scheme) {
        *scheme = lower(*scheme);
        auto p = plain(parts[port]);
        if (p && *p == default_port(*scheme)) parts[port] = Tokens();
        if (parts[pathname]->empty() && special(*scheme)) parts[pathname] = literal_tokens("/");
    }

    Program program;
    for (int c = 0; c < component_count; ++c) {
        const auto& t = parts[c];
        if (!t || (t->size() == 1 && (*t)[0].kind == Token::asterisk)) {
            program.component[c] = -1;
            continue;
        }
        char separator = c == pathname ? '/' : c == hostname ? '.' : 0;
        program.component[c] = static_cast<int>(program.nfas.size());
        program.nfas.push_back(compile_component(*t, separator, c == protocol || c == hostname));
    }
    program.hub_url = hub;
    return program;
}

}  // namespace

TopicSelector::TopicSelector(std::string_view text, SelectorSyntax syntax, std::string_view hub_url)
    : text_(text), syntax_(syntax) {
    if (text.size() > max_selector_bytes)
        throw SelectorError(fmt::format("the topic selector is longer than {} bytes", max_selector_bytes));
    // "*" matches every topic whatever the syntax (draft 08: recognised before the matcher type).
    if (text == "*") {
        kind_ = Kind::any;
        return;
    }
    switch (syntax) {
    case SelectorSyntax::exact: break;
    case SelectorSyntax::topic:
        if (text.find('{') != std::string_view::npos) {
            if (auto nfa = compile_template(text)) {
                auto program = std::make_unique<Program>();
                program->nfas.push_back(std::move(*nfa));
                program->prefix = text.substr(0, text.find('{'));
                program->suffix = text.substr(text.rfind('}') + 1);
                program_ = std::move(program);
                kind_ = Kind::uri_template;
            }
        }
        break;
    case SelectorSyntax::urlpattern: {
        auto hub = parse_url(hub_url, nullptr);
        if (!hub || !hub->has_authority) throw SelectorError("the hub's URL is not an absolute URL");
        program_ = std::make_unique<Program>(compile_url_pattern(text, *hub));
        kind_ = Kind::url_pattern;
        break;
    }
    }
}

TopicSelector::TopicSelector(TopicSelector&&) noexcept = default;
TopicSelector& TopicSelector::operator=(TopicSelector&&) noexcept = default;
TopicSelector::~TopicSelector() = default;

bool TopicSelector::matches(std::string_view topic) const {
    size_t budget = max_match_steps + match_steps_per_byte * std::min(topic.size(), size_t{1} << 40);
    switch (kind_) {
    case Kind::any: return true;
    case Kind::exact: return topic == text_;
    case Kind::uri_template: {
        if (topic == text_) return true;
        const auto& p = *program_;
        if (topic.size() < p.prefix.size() + p.suffix.size() || !topic.starts_with(p.prefix) || !topic.ends_with(p.suffix))
            return false;
        topic.remove_prefix(p.prefix.size());
        return p.nfas[0].run(topic, budget, static_cast<int32_t>(p.prefix.size()));
    }
    case Kind::url_pattern: {
        auto url = parse_url(topic, &*program_->hub_url);
        if (!url) return false;
        for (int c = 0; c < component_count; ++c) {
            auto i = program_->component[c];
            if (i >= 0 && !program_->nfas[i].run(url->part[c], budget)) return false;
        }
        return true;
    }
    }
    return false;
}

bool SelectorSet::matches_any(const std::vector<std::string>& topics) const {
    for (const auto& s : selectors_)
        for (const auto& t : topics)
            if (s.matches(t)) return true;
    return false;
}

bool SelectorSet::matches_any(const std::vector<std::string_view>& topics) const {
    for (const auto& s : selectors_)
        for (auto t : topics)
            if (s.matches(t)) return true;
    return false;
}

namespace {

// Unicode 15's general category Cf.
bool is_format_character(char32_t c) {
    struct Range {
        char32_t first, last;
    };
    static constexpr Range ranges[] = {
        {0x00AD, 0x00AD},   {0x0600, 0x0605},   {0x061C, 0x061C},   {0x06DD, 0x06DD},   {0x070F, 0x070F},
        {0x0890, 0x0891},   {0x08E2, 0x08E2},   {0x180E, 0x180E},   {0x200B, 0x200F},   {0x202A, 0x202E},
        {0x2060, 0x2064},   {0x2066, 0x206F},   {0xFEFF, 0xFEFF},   {0xFFF9, 0xFFFB},   {0x110BD, 0x110BD},
        {0x110CD, 0x110CD}, {0x13430, 0x1343F}, {0x1BCA0, 0x1BCA3}, {0x1D173, 0x1D17A}, {0xE0001, 0xE0001},
        {0xE0020, 0xE007F},
    };
    for (const auto& r : ranges)
        if (c >= r.first && c <= r.last) return true;
    return false;
}

// A path as draft 08 compares it: %XX of unreserved characters decoded, dot segments removed
// (RFC 3986, 5.2.4).
std::string normalized_path(std::string_view path) {
    std::string decoded;
    for (size_t i = 0; i < path.size(); ++i) {
        if (path[i] == '%' && i + 2 < path.size() && is_hex(path[i + 1]) && is_hex(path[i + 2])) {
            auto hex = [](char h) { return h <= '9' ? h - '0' : (h | 0x20) - 'a' + 10; };
            auto value = static_cast<char>(hex(path[i + 1]) * 16 + hex(path[i + 2]));
            if (is_alnum(value) || value == '-' || value == '.' || value == '_' || value == '~') {
                decoded += value;
                i += 2;
                continue;
            }
        }
        decoded += path[i];
    }
    std::vector<std::string_view> segments;
    std::string_view rest = decoded;
    bool absolute = rest.starts_with('/');
    if (absolute) rest.remove_prefix(1);
    bool trailing = false;
    while (true) {
        auto slash = rest.find('/');
        auto segment = rest.substr(0, slash);
        trailing = segment == "." || segment == "..";
        if (segment == "..") {
            if (!segments.empty()) segments.pop_back();
        } else if (segment != ".") {
            segments.push_back(segment);
        }
        if (slash == std::string_view::npos) break;
        rest.remove_prefix(slash + 1);
    }
    std::string out = absolute ? "/" : "";
    for (size_t i = 0; i < segments.size(); ++i) {
        if (i) out += '/';
        out += segments[i];
    }
    if (trailing && !out.ends_with('/')) out += '/';
    return out;
}

}  // namespace

std::optional<std::string_view> identifier_problem(std::string_view text) {
    for (size_t i = 0; i < text.size();) {
        char32_t c = 0;
        auto len = decode_utf8(text, i, c);
        if (len == 0) return "not valid UTF-8";
        if (c < 0x20 || c == 0x7F || (c >= 0x80 && c <= 0x9F)) return "a control character";
        if (is_format_character(c)) return "an invisible format character (Unicode Cf)";
        i += len;
    }
    return std::nullopt;
}

bool in_hub_namespace(std::string_view topic, std::string_view hub_url) {
    auto hub = parse_url(hub_url, nullptr);
    if (!hub) return false;
    auto url = parse_url(topic, &*hub);
    if (!url) return false;
    auto hub_path = normalized_path(hub->part[pathname]);
    while (hub_path.size() > 1 && hub_path.ends_with('/')) hub_path.pop_back();
    if (hub_path == "/") return false;  // a hub at the root would reserve every path: none is
    auto path = normalized_path(url->part[pathname]);
    return path == hub_path || path.starts_with(hub_path + "/");
}

}  // namespace fastsse
