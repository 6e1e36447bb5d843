#pragma once
// A part of the config file that a producer owns and reads itself ([commands] for the command
// producer): the loader hands it the section as it finds it, and adds its help to --help. Reading
// and applying are two steps, so that a reload (SIGHUP) applies nothing of a file that turns out
// bad further down: every section is read, then, once the whole file is good, every one applied.
#include <stdexcept>
#include <string>
#include <string_view>

namespace fastsse {

// A bad flag, config file or value: the message names the problem (and file:line); exit status 2.
class UsageError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

struct ConfigNode;  // the section's TOML node and the file's path (fastsse/config/toml.hpp)

class ConfigSection {
public:
    // The config file's top-level key of the section: "commands".
    virtual std::string_view name() const = 0;
    // Reads the section (null: the file has none) and keeps what it read, changing nothing yet;
    // throws UsageError whose message starts with "PATH:LINE: ".
    virtual void read(const ConfigNode* section) = 0;
    // Puts in force what the last read() kept.
    virtual void apply() = 0;
    // Its part of --help: a title line, then one line per key.
    virtual std::string help() const = 0;

protected:
    ~ConfigSection() = default;
};

}  // namespace fastsse
