// SBP: how a logical tensor is laid over the devices of a placement. S(axis) splits it along
// an axis, B broadcasts (every device holds all of it), P(sum) / P(max) hold full-shape
// partial values still to be reduced. On an n-D device mesh an NdSbp has one Sbp per mesh axis.
//
// These are the value types that signatures (ops/registry.h), inference (sbp/inference.h) and
// the boxing planner (sbp/boxing.h) share.
#pragma once

#include <cstdint>
#include <ostream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/shape.h"
#include "core/tensor.h"

namespace tessel {

class Sbp {
 public:
  enum class Kind : uint8_t { split, broadcast, partial_sum, partial_max };

  static Sbp split(int axis);
  static Sbp broadcast() { return Sbp(Kind::broadcast, 0); }
  static Sbp partial_sum() { return Sbp(Kind::partial_sum, 0); }
  static Sbp partial_max() { return Sbp(Kind::partial_max, 0); }

  Kind kind() const { return kind_; }
  bool is_split() const { return kind_ == Kind::split; }
  bool is_partial() const { return kind_ == Kind::partial_sum || kind_ == Kind::partial_max; }
  int axis() const { return axis_; }  // meaningful for splits only

  std::string to_string() const;  // "S(0)", "B", "P(sum)", "P(max)"
  // Parses to_string()'s forms ("P" alone means P(sum)); Error::InvalidArgument otherwise.
  static Sbp parse(std::string_view text);

  friend bool operator==(const Sbp&, const Sbp&) = default;

 private:
  Sbp(Kind kind, int axis) : kind_(kind), axis_(axis) {}
  Kind kind_;
  int axis_;
};

// The DSL's spellings: {S(0), B}, P.
Sbp S(int axis);
inline const Sbp B = Sbp::broadcast();
inline const Sbp P = Sbp::partial_sum();

class NdSbp {
 public:
  NdSbp() = default;
  NdSbp(std::initializer_list<Sbp> sbps) : sbps_(sbps) {}
  explicit NdSbp(std::vector<Sbp> sbps) : sbps_(std::move(sbps)) {}

  int size() const { return static_cast<int>(sbps_.size()); }
  const Sbp& operator[](int mesh_axis) const { return sbps_[mesh_axis]; }
  const std::vector<Sbp>& sbps() const { return sbps_; }
  // A copy with the entry of `mesh_axis` replaced.
  NdSbp with(int mesh_axis, const Sbp& sbp) const {
    NdSbp copy = *this;
    copy.sbps_[mesh_axis] = sbp;
    return copy;
  }
  bool has_partial() const;

  // "S(0)" for one mesh axis, "(S(0), B)" for several.
  std::string to_string() const;
  static NdSbp parse(std::string_view text);

  // Error naming `tensor` when an Sbp splits an axis the shape does not have, or when the
  // number of Sbps differs from the mesh's rank.
  void check_fits(const Shape& shape, int mesh_rank, std::string_view tensor) const;

  friend bool operator==(const NdSbp&, const NdSbp&) = default;

 private:
  std::vector<Sbp> sbps_;
};

std::ostream& operator<<(std::ostream& out, const Sbp& sbp);
std::ostream& operator<<(std::ostream& out, const NdSbp& sbp);

// A device mesh: which devices (global indices), of which type, arranged in a 1-D or 2-D mesh.
// Device g lives on rank g / devices_per_rank (0: every device is on rank 0, one process).
struct Placement {
  DeviceType device = DeviceType::cpu;
  std::vector<int> devices;
  Shape mesh;  // mesh.numel() == devices.size()
  int devices_per_rank = 0;

  // cpu:{first .. first+count-1} as a 1-D mesh.
  static Placement cpu(int count, int first = 0);
  // The listed CPU devices as a 1-D mesh.
  static Placement cpu_devices(std::vector<int> devices);
  // rows x cols CPU devices starting at `first`, row-major: device first + r * cols + c.
  static Placement cpu_mesh(int rows, int cols, int first = 0);
  // A mesh that follows the job: cpu:0 ... cpu:devices-1 shaped by `axes`, where one axis of
  // -1 takes what the others leave, the way torch's init_device_mesh does: {-1, 2} on 8 devices
  // is 4 x 2 (data parallel x 2-way tensor parallel), on 2 devices 1 x 2. Error::InvalidArgument
  // naming the shape when no such mesh has exactly `devices` devices.
  static Placement cpu_mesh_for(int devices, const std::vector<int64_t>& axes);
  // Parses to_string()'s form; "cpu:{0,1}" alone is a 1-D mesh. Error::InvalidArgument otherwise.
  static Placement parse(std::string_view text);

  int size() const { return static_cast<int>(devices.size()); }
  int mesh_rank() const { return mesh.rank(); }
  // Mesh coordinates of the device at `index` in `devices` (row-major).
  std::vector<int> coordinates(int index) const;
  // Index in `devices` of the device at mesh coordinates `coordinates`.
  int index_at(const std::vector<int>& coordinates) const;
  // Index in `devices` of global device `device`, or -1.
  int index_of(int device) const;

  // Error::InvalidArgument naming the fault: no devices, a repeated device, a mesh that is
  // not 1-D or 2-D or does not have one slot per device.
  void validate() const;
  std::string to_string() const;  // "cpu:{0,1,2,3} mesh [2, 2]"
  friend bool operator==(const Placement&, const Placement&) = default;
};

// Where a logical tensor lives and how it is laid over those devices.
struct Layout {
  Placement placement;
  NdSbp sbp;
  std::string to_string() const;  // "(S(0), B) on cpu:{0,1,2,3} mesh [2, 2]"
  friend bool operator==(const Layout&, const Layout&) = default;
};

// A box of a logical tensor: `starts` and `extents` per axis.
struct Region {
  std::vector<int64_t> starts, extents;
  Shape shape() const { return Shape(extents); }
  int64_t numel() const { return shape().numel(); }
  // The overlap of two boxes (extents of 0 where they do not meet).
  Region intersect(const Region& other) const;
  bool empty() const;
  friend bool operator==(const Region&, const Region&) = default;
};

// The box of a logical tensor of `shape` that device `index` (in placement.devices) holds under
// `sbp`: splits apply in mesh-axis order, so (S(0), S(0)) splits each row block again.
// B and P hold the whole extent along their mesh axis.
Region shard_region(const Shape& shape, const Placement& placement, const NdSbp& sbp, int index);

// Error naming `tensor` when the layout cannot hold a tensor of `shape`: an SBP with the
// wrong number of entries for the mesh, a split of a missing axis, or a split that leaves a
// device with nothing (an extent smaller than the devices splitting it).
void check_layout(const Shape& shape, const Layout& layout, std::string_view tensor);
// check_layout() as a test, for the compiler's search: true when the layout holds the shape.
bool layout_fits(const Shape& shape, const Layout& layout);

// The half-open range of `extent` that shard `index` of `count` holds under a split: the
// first extent % count shards hold one element more than the rest.
std::pair<int64_t, int64_t> shard_range(int64_t extent, int count, int index);

}  // namespace tessel
