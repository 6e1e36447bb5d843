#pragma once
// The config file as a section reader sees it: a TOML node (toml++) and where it comes from. Only
// the readers include this; the rest of fastsse knows sections by ConfigSection (section.hpp).
#include <fmt/format.h>
#include <toml++/toml.h>

#include <optional>
#include <string>
#include <vector>

#include "fastsse/config/section.hpp"

namespace fastsse {

struct ConfigNode {
    const toml::node& node;
    const std::string& path;  // the config file, for "PATH:LINE: " in errors
};

inline int line_of(const toml::node& node) { return static_cast<int>(node.source().begin.line); }

// A TOML scalar as the text the option tables check; nullopt for any other type.
inline std::optional<std::string> scalar_text(const toml::node& node) {
    if (auto i = node.as_integer()) return std::to_string(i->get());
    if (auto s = node.as_string()) return s->get();
    return std::nullopt;
}

// `where` is the start of the error message: "PATH:LINE: commands.NAME.argv".
inline std::vector<std::string> string_array(const toml::node& node, const std::string& where) {
    auto* array = node.as_array();
    if (!array) throw UsageError(fmt::format("{}: expected an array of strings", where));
    std::vector<std::string> out;
    for (auto& item : *array) {
        auto* s = item.as_string();
        if (!s) throw UsageError(fmt::format("{}: expected an array of strings", where));
        out.push_back(s->get());
    }
    return out;
}

}  // namespace fastsse
