// Any bytes as the TOML config file, read through load_settings() exactly as `fastsse --config FILE`
// reads it, its [commands] section by the command producer's reader. A bad file is a UsageError
// (fastsse prints it and exits with status 2); any other exception escaping, or a crash, is a bug.
// A file that loads gives settings within their ranges and commands that pass check_command().
#include <stdlib.h>
#include <unistd.h>

#include <cstdio>
#include <map>
#include <memory>
#include <string>

#include "fastsse/config/settings.hpp"
#include "fastsse/producers/command_config.hpp"
#include "fuzz.hpp"

namespace {

using fastsse_fuzz::check;

// The config file the fuzzer writes, in its own temporary folder, removed at exit.
class ConfigFile {
public:
    ConfigFile() {
        char dir[] = "/tmp/fastsse-fuzz-config-XXXXXX";
        check(::mkdtemp(dir) != nullptr, "mkdtemp");
        dir_ = dir;
        path_ = dir_ + "/fastsse.toml";
    }
    ~ConfigFile() {
        ::unlink(path_.c_str());
        ::rmdir(dir_.c_str());
    }
    ConfigFile(const ConfigFile&) = delete;
    ConfigFile& operator=(const ConfigFile&) = delete;

    const std::string& write(const uint8_t* bytes, size_t size) {
        FILE* f = std::fopen(path_.c_str(), "wb");
        check(f != nullptr, "cannot write the config file");
        check(std::fwrite(bytes, 1, size, f) == size, "short write");
        std::fclose(f);
        return path_;
    }

private:
    std::string dir_, path_;
};

// The [commands] section's reader, as the command producer has it, running nothing.
struct Commands final : fastsse::Producer {
    explicit Commands(std::map<std::string, fastsse::CommandSpec>& commands) : section(commands) {}
    std::span<const fastsse::OptionSpec> options() const override { return {}; }
    std::unique_ptr<fastsse::Subscription> open(fastsse::Sink&, const fastsse::StreamStart&) override { return nullptr; }
    fastsse::ConfigSection* config_section() override { return &section; }
    fastsse::CommandSection section;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* bytes, size_t size) {
    static ConfigFile file;
    std::string path = file.write(bytes, size);
    std::string arg0 = "fastsse", flag = "--config";
    char* argv[] = {arg0.data(), flag.data(), path.data(), nullptr};
    static std::map<std::string, fastsse::CommandSpec> commands;
    static fastsse::Registry registry = [] {
        fastsse::Registry r;
        r.add("command", std::make_unique<Commands>(commands));
        return r;
    }();
    commands.clear();
    std::optional<fastsse::Settings> settings;
    try {
        settings = fastsse::load_settings(3, argv, registry);
    } catch (const fastsse::UsageError&) {
        return 0;
    }
    check(settings.has_value(), "no settings and no error without --help or --version");
    check(settings->socket_mode <= 07777, "socket_mode out of range");
    check(settings->max_streams >= 1 && settings->max_streams <= 1'000'000, "max_streams out of range");
    check(settings->limits.heartbeat.count() >= 1 && settings->limits.heartbeat.count() <= 3600, "heartbeat out of range");
    for (const auto& [name, spec] : commands) {
        check(name == spec.name, "a command under another name");
        check(fastsse::check_command(spec).empty(), "a command that check_command refuses was loaded");
        check(spec.max_line >= 64, "max_line under its floor");
    }
    return 0;
}
