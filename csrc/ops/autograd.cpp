// Autograd for torch.ops.vggkern.conv3x3 and maxpool2x2, registered at the Autograd key.
//
// In C++ rather than torch.library.register_autograd because a call then costs the
// dispatcher's work, not a Python kernel's, on every conv of every eager forward, with
// or without gradients: a call to the op under torch.no_grad took 10.0 us with the
// Python kernel and 5.5 through this Function (3.9 now that such a call skips it, see
// records()); recording a training forward through Conv3x3 took 73 us and takes 15
// (benchmarks/host_overhead.py, best of 3 runs; Python 3.11, torch 2.14, this
// project's 2-core CPU machine).
//
// Each forward redispatches to the op itself below autograd (so traces, torch.compile's
// included, see vggkern::conv3x3, whose fake kernel is in vggkern/ops.py), and each
// backward is torch's own backward of conv2d -> relu -> max_pool2d built from aten ops
// only (so AOTAutograd and compiled autograd can trace it, and double backward works),
// recomputing the forward's intermediate values with torch where relu or pool need them.
#include <ATen/core/grad_mode.h>
#include <ATen/ops/convolution.h>
#include <ATen/ops/convolution_backward.h>
#include <ATen/ops/max_pool2d_with_indices.h>
#include <ATen/ops/max_pool2d_with_indices_backward.h>
#include <ATen/ops/relu.h>
#include <ATen/ops/threshold_backward.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/library.h>

#include <string>

namespace vk {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// The gradient of y = max_pool2d(a, 2, 2) for dy: torch's, which sends it to the first
// maximum of each window.
at::Tensor maxpool2x2_backward(const at::Tensor& dy, const at::Tensor& a) {
  const at::Tensor indices = std::get<1>(at::max_pool2d_with_indices(a, {2, 2}, {2, 2}));
  return at::max_pool2d_with_indices_backward(dy, a, {2, 2}, {2, 2}, {0, 0}, {1, 1}, false, indices);
}

// vggkern::maxpool2x2 below autograd.
at::Tensor maxpool2x2_below_autograd(const at::Tensor& x) {
  static const auto op =
      c10::Dispatcher::singleton().findSchemaOrThrow("vggkern::maxpool2x2", "").typed<at::Tensor(const at::Tensor&)>();
  at::AutoDispatchBelowADInplaceOrView guard;
  return op.call(x);
}

struct Maxpool2x2Function : torch::autograd::Function<Maxpool2x2Function> {
  static constexpr bool is_traceable = true;

  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x) {
    ctx->save_for_backward({x});
    return maxpool2x2_below_autograd(x);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const at::Tensor x = ctx->get_saved_variables()[0];
    return {maxpool2x2_backward(grads[0], x)};
  }
};

using Conv3x3Signature = at::Tensor(const at::Tensor&, const at::Tensor&, const std::optional<at::Tensor>&, bool,
                                    bool, c10::string_view, std::optional<bool>);

// vggkern::conv3x3 below autograd.
at::Tensor conv3x3_below_autograd(const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                                  bool relu, bool pool, c10::string_view algo, std::optional<bool> allow_tf32) {
  static const auto op =
      c10::Dispatcher::singleton().findSchemaOrThrow("vggkern::conv3x3", "").typed<Conv3x3Signature>();
  at::AutoDispatchBelowADInplaceOrView guard;
  return op.call(x, weight, bias, relu, pool, algo, allow_tf32);
}

struct Conv3x3Function : torch::autograd::Function<Conv3x3Function> {
  static constexpr bool is_traceable = true;

  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& weight,
                            const std::optional<at::Tensor>& bias, bool relu, bool pool, const std::string& algo,
                            std::optional<bool> allow_tf32) {
    ctx->save_for_backward({x, weight, bias.value_or(at::Tensor())});
    ctx->saved_data["relu"] = relu;
    ctx->saved_data["pool"] = pool;
    return conv3x3_below_autograd(x, weight, bias, relu, pool, algo, allow_tf32);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list saved = ctx->get_saved_variables();
    const at::Tensor &x = saved[0], &weight = saved[1], &bias = saved[2];
    TORCH_CHECK_NOT_IMPLEMENTED(weight.dim() == 4,
                                "vggkern.conv3x3: no backward through a pre-transformed (winograd_weight) weight; "
                                "pass the raw (K, C, 3, 3) weight to differentiate");
    const bool relu = ctx->saved_data["relu"].toBool(), pool = ctx->saved_data["pool"].toBool();
    const bool has_bias = bias.defined();
    at::Tensor grad = grads[0];
    if (relu || pool) {
      at::Tensor a = at::convolution(x, weight, bias, {1, 1}, {1, 1}, {1, 1}, false, {0, 0}, 1);
      if (relu) a = at::relu(a);
      if (pool) grad = maxpool2x2_backward(grad, a);
      if (relu) grad = at::threshold_backward(grad, a, 0);
    }
    // The tensor inputs' edges are x, weight and, when given, bias, in that order.
    const bool need_x = ctx->needs_input_grad(0), need_w = ctx->needs_input_grad(1);
    const bool need_b = has_bias && ctx->needs_input_grad(2);
    const int64_t k = weight.size(0);
    const at::OptionalIntArrayRef bias_sizes = has_bias ? at::OptionalIntArrayRef(at::IntArrayRef(k)) : std::nullopt;
    auto [gx, gw, gb] = at::convolution_backward(grad, x, weight, bias_sizes, {1, 1}, {1, 1}, {1, 1}, false, {0, 0}, 1,
                                                 {need_x, need_w, need_b});
    return {gx, gw, gb, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

// Whether autograd has anything to record. Where it has not, the op runs below autograd
// directly, as torch.library's Python kernel did: cheaper, and a torch.func transform
// (which refuses any C++ autograd::Function) can still run a call that no gradient
// flows through, such as a frozen backbone's. An undefined tensor (None passed as x or
// weight) goes there too, for the op to refuse by name: autograd would fail on it first
// with a message that names nothing.
bool records(const at::Tensor& x, const at::Tensor& weight = {}, const std::optional<at::Tensor>& bias = {}) {
  if (!x.defined() || !at::GradMode::is_enabled()) return false;
  if (x.requires_grad() || (weight.defined() && weight.requires_grad())) return true;
  return bias.has_value() && bias->defined() && bias->requires_grad();
}

at::Tensor maxpool2x2_autograd(const at::Tensor& x) {
  return records(x) ? Maxpool2x2Function::apply(x) : maxpool2x2_below_autograd(x);
}

at::Tensor conv3x3_autograd(const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                            bool relu, bool pool, c10::string_view algo, std::optional<bool> allow_tf32) {
  if (!weight.defined() || !records(x, weight, bias))
    return conv3x3_below_autograd(x, weight, bias, relu, pool, algo, allow_tf32);
  return Conv3x3Function::apply(x, weight, bias, relu, pool, std::string(algo), allow_tf32);
}

}  // namespace
}  // namespace vk

TORCH_LIBRARY_IMPL(vggkern, Autograd, m) {
  m.impl("conv3x3", &vk::conv3x3_autograd);
  m.impl("maxpool2x2", &vk::maxpool2x2_autograd);
}
