// SBP: how a logical tensor is laid over the devices of a placement. S(axis) splits it along
// an axis, B broadcasts (every device holds all of it), P(sum) / P(max) hold full-shape
// partial values still to be reduced. On an n-D device mesh an NdSbp has one Sbp per mesh axis.
//
// Inference, signatures and boxing come with the SBP issue; these are the value types they use.
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
struct Placement {
  DeviceType device = DeviceType::cpu;
  std::vector<int> devices;
  Shape mesh;  // mesh.numel() == devices.size()

  // Error::InvalidArgument naming the fault: no devices, a repeated device, a mesh that is
  // not 1-D or 2-D or does not have one slot per device.
  void validate() const;
  std::string to_string() const;  // "cpu:{0,1,2,3} mesh [2, 2]"
  friend bool operator==(const Placement&, const Placement&) = default;
};

// The half-open range of `extent` that shard `index` of `count` holds under a split: the
// first extent % count shards hold one element more than the rest.
std::pair<int64_t, int64_t> shard_range(int64_t extent, int count, int index);

}  // namespace tessel
