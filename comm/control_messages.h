// Private to comm/: the control plane's messages between ranks and the coordinator. Includes
// CAF, so only comm/*.cc include it. Answers are strings: "accepted", "joined MEMBER EPOCH" (a
// rank joined the running job as MEMBER, to re-form into EPOCH), "ok EPOCH", "done",
// "roster EPOCH MEMBER@NODE,... HOST:PORT,... ADDRESSES NEXT" (the members in rank order, with their
// nodes and standby coordinators, and the next joining member's name), "finished: <why>" (the job
// ended before a joining member could join it), "standby" (a standby coordinator not yet elected), "epoch EPOCH" (a
// reform for an epoch that already ended: ask again for this one), "removed: <why>" (this member is no longer in the
// job), or "refused: <why>" / "failed: <why>".
#pragma once

#include <caf/all.hpp>
#include <caf/io/all.hpp>

namespace tessel::comm {

// (token, rank or -1 to join the running job, the job's ranks as this rank knows them or 0, UCX
// address, presence, node, standby's host:port)
using join_atom =
    caf::atom_constant<caf::atom("join")>;
using roster_atom = caf::atom_constant<caf::atom("roster")>;        // (rank) -> every rank's address, once all joined
// (rank, steps done, the step its run goes to; -1 -1 unknown) -> "ok" or "failed: ..."
using heartbeat_atom = caf::atom_constant<caf::atom("heartbeat")>;
using leave_atom = caf::atom_constant<caf::atom("leave")>;  // (rank, steps done) -> "done" once every rank left
using check_atom = caf::atom_constant<caf::atom("check")>;          // the coordinator's own deadline timer
// Recovery (comm/job.h, JobConfig::recovery):
// To a presence: (epoch, why) the epoch before `epoch` ended.
using epoch_atom = caf::atom_constant<caf::atom("epoch")>;
// (member, epoch, UCX address, presence) -> "roster ..." once every member gave its address.
using reform_atom = caf::atom_constant<caf::atom("reform")>;
// (member, epoch, peer rank, why): this member's data plane to the peer broke.
using report_atom = caf::atom_constant<caf::atom("report")>;
// To a presence: (coordinator) to monitor from now on, after a coordinator took over.
using watch_atom = caf::atom_constant<caf::atom("watch")>;

inline caf::actor_system_config& with_middleman(caf::actor_system_config& config) {
  config.load<caf::io::middleman>();
  return config;
}

// Addresses travel as one string: hex digits, ranks separated by ','.
std::string encode_addresses(const std::vector<std::string>& addresses);
// Error::DataLoss for text that is not such a list (it comes over the network).
std::vector<std::string> decode_addresses(const std::string& text);

}  // namespace tessel::comm
