// application/x-www-form-urlencoded bodies (parse_form), and the decoder it shares with query_param.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "fastsse/http/request.hpp"
#include "fastsse/hub/form.hpp"

using fastsse::FormError;
using fastsse::FormField;
using fastsse::parse_form;

using Fields = std::vector<FormField>;

TEST_CASE("parse_form: fields in order, repeated names kept") {
    CHECK(parse_form("") == Fields{});
    CHECK(parse_form("topic=a") == Fields{{"topic", "a"}});
    CHECK(parse_form("topic=a&data=x&topic=b&topic=c") ==
          Fields{{"topic", "a"}, {"data", "x"}, {"topic", "b"}, {"topic", "c"}});
    CHECK(parse_form("b=1&a=2") == Fields{{"b", "1"}, {"a", "2"}});
}

TEST_CASE("parse_form: '+' and percent escapes") {
    CHECK(parse_form("data=hello+world") == Fields{{"data", "hello world"}});
    CHECK(parse_form("topic=https%3A%2F%2Fexample.com%2Fbooks%2F%7Bid%7D") ==
          Fields{{"topic", "https://example.com/books/{id}"}});
    CHECK(parse_form("a=%2B%26%3D%25") == Fields{{"a", "+&=%"}});
    CHECK(parse_form("a=%c3%a9") == Fields{{"a", "\xc3\xa9"}});
    CHECK(parse_form("a=%00") == Fields{{"a", std::string(1, '\0')}});
    CHECK(parse_form("my+name=1") == Fields{{"my name", "1"}});
    CHECK(parse_form("n%61me=v") == Fields{{"name", "v"}});
}

TEST_CASE("parse_form: names and values without '=' or empty") {
    CHECK(parse_form("private") == Fields{{"private", ""}});
    CHECK(parse_form("private=") == Fields{{"private", ""}});
    CHECK(parse_form("=v") == Fields{{"", "v"}});
    CHECK(parse_form("=") == Fields{{"", ""}});
    CHECK(parse_form("a=b=c") == Fields{{"a", "b=c"}});
    CHECK(parse_form("&&a=1&&b&") == Fields{{"a", "1"}, {"b", ""}});
}

TEST_CASE("parse_form: a bad percent escape refuses the form, naming the field") {
    for (const char* body : {"a=%", "a=%4", "a=%zz", "a=%4g", "a=1&b=100%", "%=1", "a%2=1"}) {
        CAPTURE(body);
        CHECK_THROWS_AS(parse_form(body), FormError);
    }
    CHECK_THROWS_WITH(parse_form("topic=a&topic=b%zz"),
                      "field 2 of the form has a '%' not followed by two hex digits (in its value)");
    CHECK_THROWS_WITH(parse_form("to%pic=a"), "field 1 of the form has a '%' not followed by two hex digits (in its name)");
}

TEST_CASE("parse_form: at most max_fields fields") {
    CHECK(parse_form("a&b&c", 3).size() == 3);
    CHECK_THROWS_WITH(parse_form("a&b&c&d", 3), "the form has more than 3 fields");
    CHECK(parse_form("a&&&&&&&b", 2).size() == 2);  // empty pieces are not fields

    std::string many;
    for (size_t i = 0; i <= fastsse::default_max_form_fields; ++i) many += "topic=x&";
    CHECK_THROWS_AS(parse_form(many), FormError);
    many.resize(many.size() - 8);
    CHECK(parse_form(many).size() == fastsse::default_max_form_fields);
}

TEST_CASE("form_decode: one decoder, two answers to a bad escape") {
    using fastsse::BadEscape;
    using fastsse::form_decode;
    CHECK(form_decode("a+b%20c%2b", BadEscape::keep) == "a b c+");
    CHECK(form_decode("a+b%20c%2b", BadEscape::reject) == "a b c+");
    CHECK(form_decode("100%", BadEscape::keep) == "100%");
    CHECK(form_decode("%zz%4", BadEscape::keep) == "%zz%4");
    CHECK_FALSE(form_decode("100%", BadEscape::reject).has_value());
    CHECK_FALSE(form_decode("%zz", BadEscape::reject).has_value());
    CHECK(form_decode("", BadEscape::reject) == "");
}
