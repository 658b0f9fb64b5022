// Private to comm/: the control plane's messages between ranks and the coordinator. Includes
// CAF, so only comm/*.cc include it. Answers are strings: "accepted", "ok EPOCH", "done",
// "roster EPOCH RANK ADDRESSES", "epoch EPOCH" (a reform for an epoch that already ended: ask
// again for this one), "removed: <why>" (this member is no longer in the job), or
// "refused: <why>" / "failed: <why>".
#pragma once

#include <caf/all.hpp>
#include <caf/io/all.hpp>

namespace tessel::comm {

using join_atom = caf::atom_constant<caf::atom("join")>;            // (token, rank, UCX address, presence actor)
using roster_atom = caf::atom_constant<caf::atom("roster")>;        // (rank) -> every rank's address, once all joined
using heartbeat_atom = caf::atom_constant<caf::atom("heartbeat")>;  // (rank) -> "ok" or "failed: ..."
using leave_atom = caf::atom_constant<caf::atom("leave")>;          // (rank) -> "done" once every rank left
using check_atom = caf::atom_constant<caf::atom("check")>;          // the coordinator's own deadline timer
// Recovery (comm/job.h, JobConfig::recovery):
using epoch_atom = caf::atom_constant<caf::atom("epoch")>;  // to a presence: (epoch, why) the epoch before it ended
using reform_atom =
    caf::atom_constant<caf::atom("reform")>;  // (member, epoch, UCX address) -> "roster ..." once all gave theirs
using report_atom =
    caf::atom_constant<caf::atom("report")>;  // (member, epoch, peer rank, why): a peer's data plane broke

inline caf::actor_system_config& with_middleman(caf::actor_system_config& config) {
  config.load<caf::io::middleman>();
  return config;
}

// Addresses travel as one string: hex digits, ranks separated by ','.
std::string encode_addresses(const std::vector<std::string>& addresses);
std::vector<std::string> decode_addresses(const std::string& text);

}  // namespace tessel::comm
