#include "fastsse/hub/update_id.hpp"

#include <sys/random.h>

#include <cerrno>
#include <system_error>

namespace fastsse::hub {

UpdateIds::UpdateIds() { refill(); }

void UpdateIds::refill() {
    // Requests of more than 256 bytes may come back short (a signal): the rest is asked again.
    size_t got = 0;
    while (got < pool_.size()) {
        auto n = ::getrandom(pool_.data() + got, pool_.size() - got, 0);
        if (n < 0) {
            if (errno == EINTR) continue;
            throw std::system_error(errno, std::generic_category(), "getrandom");
        }
        got += static_cast<size_t>(n);
    }
    used_ = 0;
}

std::string UpdateIds::next() {
    if (pool_.size() - used_ < 16) refill();
    unsigned char* b = pool_.data() + used_;
    used_ += 16;
    b[6] = static_cast<unsigned char>((b[6] & 0x0f) | 0x40);  // version 4
    b[8] = static_cast<unsigned char>((b[8] & 0x3f) | 0x80);  // variant 10
    static constexpr char hex[] = "0123456789abcdef";
    std::string out = "urn:uuid:";
    out.reserve(45);
    for (int i = 0; i < 16; ++i) {
        if (i == 4 || i == 6 || i == 8 || i == 10) out += '-';
        out += hex[b[i] >> 4];
        out += hex[b[i] & 0x0f];
    }
    return out;
}

}  // namespace fastsse::hub
