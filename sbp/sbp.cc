#include "sbp/sbp.h"

#include <algorithm>
#include <cctype>
#include <set>

namespace tessel {

namespace {
std::string_view trim(std::string_view text) {
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.front()))) text.remove_prefix(1);
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) text.remove_suffix(1);
  return text;
}
}  // namespace

Sbp Sbp::split(int axis) {
  if (axis < 0) throw Error::InvalidArgument(concat("S(", axis, "): the split axis must not be negative"));
  return Sbp(Kind::split, axis);
}

Sbp S(int axis) { return Sbp::split(axis); }

std::string Sbp::to_string() const {
  switch (kind_) {
    case Kind::split:
      return concat("S(", axis_, ")");
    case Kind::broadcast:
      return "B";
    case Kind::partial_sum:
      return "P(sum)";
    case Kind::partial_max:
      return "P(max)";
  }
  return "?";
}

Sbp Sbp::parse(std::string_view text) {
  const std::string_view t = trim(text);
  if (t == "B") return broadcast();
  if (t == "P" || t == "P(sum)") return partial_sum();
  if (t == "P(max)") return partial_max();
  if (t.size() > 3 && t.substr(0, 2) == "S(" && t.back() == ')') {
    const std::string digits(trim(t.substr(2, t.size() - 3)));
    if (!digits.empty() && std::all_of(digits.begin(), digits.end(), [](char c) { return std::isdigit(c); })) {
      return split(std::stoi(digits));
    }
  }
  throw Error::InvalidArgument(concat("'", text, "' is not an SBP (expected S(axis), B, P, P(sum) or P(max))"));
}

std::string NdSbp::to_string() const {
  if (sbps_.size() == 1) return sbps_[0].to_string();
  std::string text = "(";
  for (size_t i = 0; i < sbps_.size(); ++i) text += (i ? ", " : "") + sbps_[i].to_string();
  return text + ")";
}

NdSbp NdSbp::parse(std::string_view text) {
  std::string_view t = trim(text);
  if (t.empty()) throw Error::InvalidArgument("an empty string is not an SBP");
  if (t.front() != '(') return NdSbp({Sbp::parse(t)});
  if (t.back() != ')') throw Error::InvalidArgument(concat("'", text, "' lacks its closing parenthesis"));
  t = t.substr(1, t.size() - 2);
  std::vector<Sbp> sbps;
  int depth = 0;
  size_t start = 0;
  for (size_t i = 0; i <= t.size(); ++i) {
    if (i < t.size() && t[i] == '(') ++depth;
    if (i < t.size() && t[i] == ')') --depth;
    if (i == t.size() || (t[i] == ',' && depth == 0)) {
      sbps.push_back(Sbp::parse(t.substr(start, i - start)));
      start = i + 1;
    }
  }
  return NdSbp(std::move(sbps));
}

void NdSbp::check_fits(const Shape& shape, int mesh_rank, std::string_view tensor) const {
  if (size() != mesh_rank) {
    throw Error::InvalidArgument(concat("tensor '", tensor, "': SBP ", to_string(), " has ", size(),
                                        " entries but the placement's mesh has ", mesh_rank, " axes"));
  }
  for (const Sbp& sbp : sbps_) {
    if (sbp.is_split() && sbp.axis() >= shape.rank()) {
      throw Error::InvalidArgument(concat("tensor '", tensor, "': ", sbp.to_string(), " splits axis ", sbp.axis(),
                                          " but its shape ", shape, " has ", shape.rank(), " axes"));
    }
  }
}

std::ostream& operator<<(std::ostream& out, const Sbp& sbp) { return out << sbp.to_string(); }
std::ostream& operator<<(std::ostream& out, const NdSbp& sbp) { return out << sbp.to_string(); }

void Placement::validate() const {
  if (devices.empty()) throw Error::InvalidArgument("a placement needs at least one device, got none");
  if (std::set<int>(devices.begin(), devices.end()).size() != devices.size()) {
    throw Error::InvalidArgument(concat("placement ", to_string(), " names a device twice"));
  }
  if (mesh.rank() < 1 || mesh.rank() > 2) {
    throw Error::InvalidArgument(concat("placement ", to_string(), ": the mesh must have 1 or 2 axes"));
  }
  if (mesh.numel() != static_cast<int64_t>(devices.size())) {
    throw Error::InvalidArgument(concat("placement ", to_string(), ": mesh ", mesh, " has ", mesh.numel(),
                                        " slots for ", devices.size(), " devices"));
  }
}

std::string Placement::to_string() const {
  std::string text = concat(name_of(device), ":{");
  for (size_t i = 0; i < devices.size(); ++i) text += concat(i ? "," : "", devices[i]);
  return text + concat("} mesh ", mesh);
}

std::pair<int64_t, int64_t> shard_range(int64_t extent, int count, int index) {
  const int64_t base = extent / count, extra = extent % count;
  const int64_t begin = index * base + std::min<int64_t>(index, extra);
  return {begin, begin + base + (index < extra ? 1 : 0)};
}

}  // namespace tessel
