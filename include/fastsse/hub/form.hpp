#pragma once
// An application/x-www-form-urlencoded body (a Mercure publication, or a subscription's body) read
// into its fields, in order: WHATWG URL, "application/x-www-form-urlencoded parsing", except that a
// bad percent escape refuses the form instead of being kept, as Go's url.ParseQuery does in
// Mercure's own hub: the client gets a 400 naming the field rather than a topic it never meant.
#include <cstddef>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace fastsse {

struct FormField {
    std::string name;
    std::string value;
    bool operator==(const FormField&) const = default;
};

// A form that cannot be read; what() is a one-line reason fit for a 400's body.
class FormError : public std::invalid_argument {
public:
    using std::invalid_argument::invalid_argument;
};

// More fields than any publication needs (a topic and its alternates, data, id, type, retry,
// private): a bound on the work a body can cause, not a limit on honest use.
constexpr size_t default_max_form_fields = 1000;

// The fields of `body` in order, repeated names kept (a publication repeats `topic`): split on '&',
// empty pieces skipped, the first '=' ends the name ("a=b=c" is a, "b=c"; "a" is a, ""), '+' is a
// space, %XX a byte. Throws FormError for a bad escape or more than `max_fields` fields. The
// bytes are not checked as UTF-8: what a field must be is for whoever reads it. The body's size
// is the caller's to bound: it holds the body.
std::vector<FormField> parse_form(std::string_view body, size_t max_fields = default_max_form_fields);

}  // namespace fastsse
