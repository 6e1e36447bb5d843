#pragma once
// Ids for the updates a publisher sends without one. Mercure ("Publication") lets the hub make up
// any IRI; its own hub makes `urn:uuid:` and a random UUID (version 4, RFC 9562 section 5.4), and
// the 1.0 draft ("Reconnection, State Reconciliation, and Event Sourcing") asks hubs that carry
// private updates for opaque, random ids, so that a subscriber learns nothing from an id about the
// updates it may not read. fastsse makes the same: 122 random bits each, from the kernel.
//
// Random rather than counted: ids from two processes (mod_fcgid runs several; the Redis store will
// share one history between machines) or from before a restart never meet, with no coordination.
//
// Here in src/hub/, not src/channels/: a channel never makes ids, they are opaque to it (the
// publisher's, or later a store's such as Redis Streams'); this format is the hub's choice.
#include <array>
#include <cstddef>
#include <string>

namespace fastsse::hub {

// One per hub: no global state. Not shared across threads, nor across fork() (a child would hand
// out the parent's pooled bytes again; the command producer's children exec at once).
class UpdateIds {
public:
    // Fills its pool from getrandom(2); throws std::system_error if the kernel gives nothing.
    UpdateIds();
    UpdateIds(const UpdateIds&) = delete;
    UpdateIds& operator=(const UpdateIds&) = delete;

    // "urn:uuid:" and 8-4-4-4-12 lowercase hex digits, version 4, variant 10 (RFC 9562): 45 bytes.
    // A getrandom(2) call per 256 ids.
    std::string next();

private:
    void refill();
    std::array<unsigned char, 4096> pool_;
    size_t used_ = 0;
};

}  // namespace fastsse::hub
