// Private to comm/: the control plane's messages between ranks and the coordinator. Includes
// CAF, so only comm/*.cc include it. Answers are strings: "accepted", "ok", "done", or
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

inline caf::actor_system_config& with_middleman(caf::actor_system_config& config) {
  config.load<caf::io::middleman>();
  return config;
}

// Addresses travel as one string: hex digits, ranks separated by ','.
std::string encode_addresses(const std::vector<std::string>& addresses);
std::vector<std::string> decode_addresses(const std::string& text);

}  // namespace tessel::comm
