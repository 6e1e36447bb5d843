#include "fastsse/hub/form.hpp"

#include <fmt/format.h>

#include "fastsse/http/request.hpp"

namespace fastsse {

std::vector<FormField> parse_form(std::string_view body, size_t max_fields) {
    std::vector<FormField> fields;
    while (!body.empty()) {
        auto amp = body.find('&');
        auto piece = body.substr(0, amp);
        body = amp == std::string_view::npos ? std::string_view() : body.substr(amp + 1);
        if (piece.empty()) continue;
        if (fields.size() == max_fields) throw FormError(fmt::format("the form has more than {} fields", max_fields));

        auto eq = piece.find('=');
        auto raw_name = piece.substr(0, eq);
        auto raw_value = eq == std::string_view::npos ? std::string_view() : piece.substr(eq + 1);
        auto name = form_decode(raw_name, BadEscape::reject);
        auto value = name ? form_decode(raw_value, BadEscape::reject) : std::nullopt;
        if (!value) {
            // The field's number, not its text: the text may be long or binary, and the client has it.
            throw FormError(fmt::format("field {} of the form has a '%' not followed by two hex digits ({})",
                                        fields.size() + 1, name ? "in its value" : "in its name"));
        }
        fields.push_back({std::move(*name), std::move(*value)});
    }
    return fields;
}

}  // namespace fastsse
