#include "actors/collective_layout.h"

#include "core/error.h"
#include "core/tensor.h"
#include "sbp/sbp.h"

namespace tessel::hosting {
namespace {

// The product of the extents before `axis`: 1 when the splits of `axis` are contiguous.
int64_t outer(const Shape& shape, int axis) {
  int64_t product = 1;
  for (int a = 0; a < axis; ++a) product *= shape[a];
  return product;
}

}  // namespace

CollectiveLayout::CollectiveLayout(CollectiveKind kind, const Shape& box, int from_axis, int to_axis, int members,
                                   int member, DType dtype, const Shape& input, const Shape& output)
    : kind_(kind),
      box_(box),
      from_axis_(from_axis),
      to_axis_(to_axis),
      members_(members),
      member_(member),
      dtype_(dtype) {
  const bool split_in = kind == CollectiveKind::all_gather || kind == CollectiveKind::all_to_all;
  const bool split_out = kind == CollectiveKind::reduce_scatter || kind == CollectiveKind::all_to_all;
  const auto valid_axis = [&](int axis, bool split) { return split ? axis >= 0 && axis < box.rank() : axis == -1; };
  if (members < 1 || member < 0 || member >= members || !valid_axis(from_axis, split_in) ||
      !valid_axis(to_axis, split_out) || (kind == CollectiveKind::all_to_all && from_axis == to_axis)) {
    throw Error::InvalidArgument(concat(name_of(kind), " member ", member, " of ", members, " over box ", box,
                                        " with axes ", from_axis, " -> ", to_axis, " does not hold together"));
  }
  for (int axis : {from_axis, to_axis}) {
    if (axis >= 0 && box[axis] < members) {
      throw Error::InvalidArgument(concat(name_of(kind), ": box ", box, " has ", box[axis], " along axis ", axis,
                                          ", fewer than its ", members, " members"));
    }
  }
  const Shape expected_in = split_in ? chunk(box, from_axis, member) : box;
  const Shape expected_out = split_out ? chunk(box, to_axis, member) : box;
  if (expected_in != input || expected_out != output) {
    throw Error::InvalidArgument(concat(name_of(kind), " member ", member, " of ", members, " over box ", box,
                                        " takes ", expected_in, " and gives ", expected_out, ", but its registers are ",
                                        input, " and ", output));
  }
  const size_t element = size_of(dtype);
  switch (kind) {
    case CollectiveKind::all_reduce:
      break;
    case CollectiveKind::reduce_scatter:
      recv_counts_ = counts(box, to_axis);
      pack_ = outer(box, to_axis) != 1;
      if (pack_) packed_.resize(box.numel() * element);
      break;
    case CollectiveKind::all_gather:
      recv_counts_ = counts(box, from_axis);
      unpack_ = outer(box, from_axis) != 1;
      if (unpack_) unpacked_.resize(box.numel() * element);
      break;
    case CollectiveKind::all_to_all:
      send_counts_ = counts(input, to_axis);
      for (int j = 0; j < members; ++j) {
        recv_counts_.push_back(static_cast<size_t>(chunk(chunk(box, from_axis, j), to_axis, member).numel()));
      }
      pack_ = unpack_ = true;
      packed_.resize(input.numel() * element);
      unpacked_.resize(output.numel() * element);
      break;
  }
}

Shape CollectiveLayout::chunk(const Shape& of, int axis, int index) const {
  std::vector<int64_t> dims = of.dims();
  const auto [begin, end] = shard_range(box_[axis], members_, index);
  dims[axis] = end - begin;
  return Shape(dims);
}

std::vector<int64_t> CollectiveLayout::start(int axis, int index) const {
  std::vector<int64_t> starts(box_.rank(), 0);
  starts[axis] = shard_range(box_[axis], members_, index).first;
  return starts;
}

std::vector<size_t> CollectiveLayout::counts(const Shape& of, int axis) const {
  std::vector<size_t> result;
  for (int j = 0; j < members_; ++j) result.push_back(static_cast<size_t>(chunk(of, axis, j).numel()));
  return result;
}

void CollectiveLayout::issue(comm::Communicator& communicator, comm::ReduceOp op, const std::byte* input,
                             std::byte* output, comm::Communicator::Done done) {
  const size_t element = size_of(dtype_);
  const std::vector<int64_t> origin(box_.rank(), 0);
  const int n = members_, m = member_;
  switch (kind_) {
    case CollectiveKind::all_reduce:
      return communicator.all_reduce(m, input, output, static_cast<size_t>(box_.numel()), dtype_, op, std::move(done));
    case CollectiveKind::reduce_scatter: {
      const std::byte* send = input;
      if (pack_) {  // chunk j of the box, one after another
        size_t offset = 0;
        for (int j = 0; j < n; ++j) {
          const Shape piece = chunk(box_, to_axis_, j);
          copy_block(input, box_, start(to_axis_, j), packed_.data() + offset, piece, origin, piece.dims(), element);
          offset += piece.numel() * element;
        }
        send = packed_.data();
      }
      return communicator.reduce_scatter(m, send, output, recv_counts_, dtype_, op, std::move(done));
    }
    case CollectiveKind::all_gather: {
      if (!unpack_) return communicator.all_gather(m, input, output, recv_counts_, dtype_, std::move(done));
      return communicator.all_gather(m, input, unpacked_.data(), recv_counts_, dtype_,
                                     [this, output, done = std::move(done)](const std::string& error) {
                                       if (error.empty()) {
                                         const size_t element = size_of(dtype_);
                                         const std::vector<int64_t> origin(box_.rank(), 0);
                                         size_t offset = 0;
                                         for (int j = 0; j < members_; ++j) {
                                           const Shape piece = chunk(box_, from_axis_, j);
                                           copy_block(unpacked_.data() + offset, piece, origin, output, box_,
                                                      start(from_axis_, j), piece.dims(), element);
                                           offset += piece.numel() * element;
                                         }
                                       }
                                       done(error);
                                     });
    }
    case CollectiveKind::all_to_all: {
      const Shape in = chunk(box_, from_axis_, m);
      size_t offset = 0;
      for (int j = 0; j < n; ++j) {  // the part of this member's input that member j's output holds
        const Shape piece = chunk(in, to_axis_, j);
        copy_block(input, in, start(to_axis_, j), packed_.data() + offset, piece, origin, piece.dims(), element);
        offset += piece.numel() * element;
      }
      return communicator.all_to_all(m, packed_.data(), unpacked_.data(), send_counts_, recv_counts_, dtype_,
                                     [this, output, done = std::move(done)](const std::string& error) {
                                       if (error.empty()) {
                                         const size_t element = size_of(dtype_);
                                         const std::vector<int64_t> origin(box_.rank(), 0);
                                         const Shape out = chunk(box_, to_axis_, member_);
                                         size_t offset = 0;
                                         for (int j = 0; j < members_; ++j) {  // member j's input, within this output
                                           const Shape piece = chunk(out, from_axis_, j);
                                           copy_block(unpacked_.data() + offset, piece, origin, output, out,
                                                      start(from_axis_, j), piece.dims(), element);
                                           offset += piece.numel() * element;
                                         }
                                       }
                                       done(error);
                                     });
    }
  }
}

}  // namespace tessel::hosting
