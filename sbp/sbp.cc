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
      if (digits.size() > 4)
        throw Error::InvalidArgument(concat("'", text, "' splits axis ", digits, ", expected an axis below 10000"));
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
  for (size_t i = 0; i < devices.size(); ++i) {  // no stream per device: placements may hold thousands
    if (i) text += ',';
    text += std::to_string(devices[i]);
  }
  text += concat("} mesh ", mesh);
  if (devices_per_rank > 0) text += concat(" per rank ", devices_per_rank);
  return text;
}

Placement Placement::cpu_mesh_for(int devices, const std::vector<int64_t>& axes) {
  std::string shape;
  for (int64_t axis : axes) shape += concat(shape.empty() ? "" : ", ", axis);
  const auto refuse = [&](const std::string& why) {
    return Error::InvalidArgument(concat("a mesh of shape [", shape, "] over ", devices, " devices: ", why));
  };
  if (axes.empty() || axes.size() > 2) throw refuse("expected one or two axes");
  int64_t known = 1;
  int rest = -1;
  for (size_t a = 0; a < axes.size(); ++a) {
    if (axes[a] == -1 && rest < 0) {
      rest = static_cast<int>(a);
    } else if (axes[a] < 1) {
      throw refuse("expected positive extents and at most one -1 (the axis that takes the rest)");
    } else {
      known *= axes[a];
    }
  }
  std::vector<int64_t> mesh = axes;
  if (rest >= 0) {
    if (devices % known != 0)
      throw refuse(concat("the other axes take ", known, " devices, which do not divide ", devices));
    mesh[rest] = devices / known;
  } else if (known != devices) {
    throw refuse(concat("it holds ", known, " devices"));
  }
  std::vector<int> list;
  for (int i = 0; i < devices; ++i) list.push_back(i);
  Placement placement{.device = DeviceType::cpu, .devices = std::move(list), .mesh = Shape(mesh)};
  placement.validate();
  return placement;
}

Placement Placement::cpu(int count, int first) {
  std::vector<int> devices;
  for (int i = 0; i < count; ++i) devices.push_back(first + i);
  Placement placement{.device = DeviceType::cpu, .devices = devices, .mesh = Shape{count}};
  placement.validate();
  return placement;
}

Placement Placement::cpu_devices(std::vector<int> devices) {
  const int64_t count = static_cast<int64_t>(devices.size());
  Placement placement{.device = DeviceType::cpu, .devices = std::move(devices), .mesh = Shape{count}};
  placement.validate();
  return placement;
}

Placement Placement::cpu_mesh(int rows, int cols, int first) {
  Placement placement = cpu(rows * cols, first);
  placement.mesh = Shape{rows, cols};
  placement.validate();
  return placement;
}

Placement Placement::parse(std::string_view text) {
  const std::string_view t = trim(text);
  const auto fail = [&](std::string_view why) {
    return Error::InvalidArgument(concat("'", text, "' is not a placement (", why,
                                         "; expected e.g. \"cpu:{0,1,2,3}\" or \"cpu:{0,1,2,3} mesh [2, 2]\")"));
  };
  const size_t colon = t.find(':');
  if (colon == std::string_view::npos) throw fail("no device type");
  Placement placement;
  const std::string_view type = t.substr(0, colon);
  if (type == "cpu")
    placement.device = DeviceType::cpu;
  else if (type == "cuda")
    placement.device = DeviceType::cuda;
  else
    throw fail(concat("unknown device type '", type, "'"));
  const size_t open = t.find('{', colon), close = t.find('}', colon);
  if (open != colon + 1 || close == std::string_view::npos) throw fail("no {device list}");
  // "0, 1, 2": the numbers of a comma-separated list, each a run of digits.
  const auto numbers = [&](std::string_view list, std::string_view what) {
    std::vector<int64_t> values;
    while (!trim(list).empty()) {
      const size_t comma = list.find(',');
      const std::string number(trim(list.substr(0, comma)));
      if (number.empty() || !std::all_of(number.begin(), number.end(), [](char c) { return std::isdigit(c); })) {
        throw fail(concat("'", number, "' is not ", what));
      }
      // Device indices and extents are ints: no more than 9 digits, so 4294967296 is refused
      // rather than wrapped to 0.
      if (number.size() > 9) throw fail(concat("'", number, "' is too large for ", what, " (expected below 10^9)"));
      values.push_back(std::stoll(number));
      if (comma == std::string_view::npos) break;
      list.remove_prefix(comma + 1);
    }
    return values;
  };
  for (int64_t device : numbers(t.substr(open + 1, close - open - 1), "a device index")) {
    placement.devices.push_back(static_cast<int>(device));
  }
  placement.mesh = Shape{static_cast<int64_t>(placement.devices.size())};
  std::string_view rest = trim(t.substr(close + 1));
  if (rest.substr(0, 4) == "mesh") {
    rest = trim(rest.substr(4));
    const size_t end = rest.find(']');
    if (rest.empty() || rest.front() != '[' || end == std::string_view::npos) throw fail("a mesh needs [extents]");
    placement.mesh = Shape(numbers(rest.substr(1, end - 1), "a mesh extent"));
    rest = trim(rest.substr(end + 1));
  }
  if (rest.substr(0, 8) == "per rank") {
    const std::vector<int64_t> count = numbers(rest.substr(8), "a device count");
    if (count.size() != 1) throw fail("'per rank' needs one device count");
    placement.devices_per_rank = static_cast<int>(count[0]);
    rest = {};
  }
  if (!rest.empty()) throw fail(concat("unexpected '", rest, "'"));
  placement.validate();
  return placement;
}

std::vector<int> Placement::coordinates(int index) const {
  std::vector<int> coords(mesh.rank());
  for (int axis = mesh.rank() - 1; axis >= 0; --axis) {
    coords[axis] = static_cast<int>(index % mesh[axis]);
    index = static_cast<int>(index / mesh[axis]);
  }
  return coords;
}

int Placement::index_at(const std::vector<int>& coordinates) const {
  int index = 0;
  for (int axis = 0; axis < mesh.rank(); ++axis) index = index * static_cast<int>(mesh[axis]) + coordinates[axis];
  return index;
}

int Placement::index_of(int device) const {
  auto it = std::find(devices.begin(), devices.end(), device);
  return it == devices.end() ? -1 : static_cast<int>(it - devices.begin());
}

std::string Layout::to_string() const { return concat(sbp.to_string(), " on ", placement.to_string()); }

Region Region::intersect(const Region& other) const {
  Region result;
  for (size_t i = 0; i < starts.size(); ++i) {
    const int64_t begin = std::max(starts[i], other.starts[i]);
    const int64_t end = std::min(starts[i] + extents[i], other.starts[i] + other.extents[i]);
    result.starts.push_back(begin);
    result.extents.push_back(std::max<int64_t>(0, end - begin));
  }
  return result;
}

bool Region::empty() const {
  return std::any_of(extents.begin(), extents.end(), [](int64_t e) { return e == 0; });
}

Region shard_region(const Shape& shape, const Placement& placement, const NdSbp& sbp, int index) {
  Region region{.starts = std::vector<int64_t>(shape.rank(), 0), .extents = shape.dims()};
  const std::vector<int> coords = placement.coordinates(index);
  for (int axis = 0; axis < sbp.size(); ++axis) {
    if (!sbp[axis].is_split()) continue;
    const int a = sbp[axis].axis();
    const auto [begin, end] = shard_range(region.extents[a], static_cast<int>(placement.mesh[axis]), coords[axis]);
    region.starts[a] += begin;
    region.extents[a] = end - begin;
  }
  return region;
}

bool NdSbp::has_partial() const {
  return std::any_of(sbps_.begin(), sbps_.end(), [](const Sbp& s) { return s.is_partial(); });
}

namespace {
// P(sum) on one mesh axis and P(max) on another would leave the order of the two reductions
// undefined.
bool mixes_partials(const NdSbp& sbp) {
  bool sum = false, max = false;
  for (const Sbp& s : sbp.sbps()) {
    sum = sum || s.kind() == Sbp::Kind::partial_sum;
    max = max || s.kind() == Sbp::Kind::partial_max;
  }
  return sum && max;
}
}  // namespace

bool layout_fits(const Shape& shape, const Layout& layout) {
  if (layout.sbp.size() != layout.placement.mesh_rank() || mixes_partials(layout.sbp)) return false;
  std::vector<int64_t> pieces(shape.rank(), 1);
  for (int axis = 0; axis < layout.sbp.size(); ++axis) {
    const Sbp& sbp = layout.sbp[axis];
    if (!sbp.is_split()) continue;
    if (sbp.axis() >= shape.rank()) return false;
    pieces[sbp.axis()] *= layout.placement.mesh[axis];
  }
  for (int a = 0; a < shape.rank(); ++a) {
    if (shape[a] < pieces[a]) return false;
  }
  return true;
}

void check_layout(const Shape& shape, const Layout& layout, std::string_view tensor) {
  layout.placement.validate();
  layout.sbp.check_fits(shape, layout.placement.mesh_rank(), tensor);
  if (mixes_partials(layout.sbp)) {
    throw Error::InvalidArgument(concat("tensor '", tensor, "': ", layout.sbp.to_string(),
                                        " mixes P(sum) and P(max), whose order of reduction would be undefined; "
                                        "expected one kind of partial value"));
  }
  std::vector<int64_t> pieces(shape.rank(), 1);
  for (int axis = 0; axis < layout.sbp.size(); ++axis) {
    if (layout.sbp[axis].is_split()) pieces[layout.sbp[axis].axis()] *= layout.placement.mesh[axis];
  }
  for (int a = 0; a < shape.rank(); ++a) {
    if (shape[a] < pieces[a]) {
      throw Error::InvalidArgument(concat("tensor '", tensor, "': ", layout.sbp.to_string(), " splits axis ", a,
                                          " of extent ", shape[a], " (shape ", shape, ") into ", pieces[a],
                                          " shards, so some device would hold nothing; expected an extent of at least ",
                                          pieces[a]));
    }
  }
}

std::pair<int64_t, int64_t> shard_range(int64_t extent, int count, int index) {
  const int64_t base = extent / count, extra = extent % count;
  const int64_t begin = index * base + std::min<int64_t>(index, extra);
  return {begin, begin + base + (index < extra ? 1 : 0)};
}

}  // namespace tessel
