#include "apps/models/mlp.h"

#include "ops/ops.h"

namespace tessel::models {

Mlp build_mlp(Graph& g, const std::vector<int64_t>& widths, int64_t batch, double lr, MinimizeOptions options,
              DType matmuls) {
  if (widths.size() < 2) throw Error::InvalidArgument(concat("an MLP needs at least two widths, got ", widths.size()));
  for (int64_t width : widths) {
    if (width < 1) throw Error::InvalidArgument(concat("MLP width ", width, ", expected at least 1"));
  }
  if (batch < 1) throw Error::InvalidArgument(concat("MLP batch ", batch, ", expected at least 1"));
  Mlp mlp;
  mlp.x = g.input("x", {batch, widths.front()});
  mlp.target = g.input("target", {batch, widths.back()});
  Tensor h = mlp.x;
  for (size_t layer = 0; layer + 1 < widths.size(); ++layer) {
    if (layer > 0) h = relu(h);
    mlp.weights.push_back(g.param(concat("w", layer + 1), {widths[layer], widths[layer + 1]}, init::normal(0.02)));
    h = matmuls == DType::f32 ? matmul(h, mlp.weights.back())
                              : cast(matmul(cast(h, matmuls), cast(mlp.weights.back(), matmuls)), DType::f32);
    // Forward, input gradient (not for the first layer) and weight gradient.
    const double multiply_adds = static_cast<double>(batch) * widths[layer] * widths[layer + 1];
    mlp.flops_per_step += 2 * multiply_adds * (layer == 0 ? 2 : 3);
  }
  Tensor error = h - mlp.target;
  mlp.loss = mean(error * error);
  g.minimize(mlp.loss, SGD{.lr = lr}, options);
  return mlp;
}

}  // namespace tessel::models
