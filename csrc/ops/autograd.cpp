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
//
// torch.func's transforms (grad, vjp, jvp, jacrev, hessian, vmap with a gradient) refuse
// a C++ autograd::Function, and it has no forward-mode derivative. conv3x3 has a Python
// autograd.Function for those (vggkern/ops.py, _Conv3x3Function): the same forward (the
// op below autograd), the same backward (vggkern::_conv3x3_backward, below), a forward
// derivative (vggkern::_conv3x3_jvp) and a vmap rule. A transform must apply it above its
// own dispatch, so vggkern.conv3x3 and the modules do that where a transform is on, and
// this kernel refuses such a call by name; forward-mode AD outside torch.func is sent to
// it from here (vggkern::_conv3x3_forward_ad). torch.compile over such a transform: dynamo
// (torch 2.14) traces into an autograd.Function's forward there, ignoring its derivatives,
// so the op reaches this kernel and is refused; without fullgraph=True that is a graph
// break, and the transform runs eagerly (its graph is not compiled). maxpool2x2, whose
// values are exactly F.max_pool2d's, runs as at::max_pool2d in both cases, which
// torch.func supports.
#include <ATen/core/grad_mode.h>
#include <ATen/ops/convolution.h>
#include <ATen/ops/convolution_backward.h>
#include <ATen/ops/einsum.h>
#include <ATen/ops/from_blob.h>
#include <ATen/ops/lift_fresh.h>
#include <ATen/ops/max_pool2d.h>
#include <ATen/ops/max_pool2d_with_indices.h>
#include <ATen/ops/max_pool2d_with_indices_backward.h>
#include <ATen/ops/relu.h>
#include <ATen/ops/threshold_backward.h>
#include <ATen/ops/zeros.h>
#include <c10/core/impl/LocalDispatchKeySet.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/library.h>

#include <array>
#include <string>
#include <tuple>
#include <vector>

#include "../common/backends.h"
#include "../common/op_support.h"

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

// F.conv2d(x, weight, bias, padding=1), torch's: the derivatives' recomputation of the
// forward's intermediate values.
at::Tensor padded_conv(const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& bias) {
  return at::convolution(x, weight, bias, {1, 1}, {1, 1}, {1, 1}, false, {0, 0}, 1);
}

// A pre-transformed weight U = winograd_weight(w, m) gives derivatives for x and bias
// (saliency maps, style transfer and adversarial inputs on a frozen model keep the
// transform done once), not for U itself.
void check_no_weight_derivative(const at::Tensor& weight, bool wanted) {
  TORCH_CHECK_NOT_IMPLEMENTED(weight.dim() == 4 || !wanted,
                              "vggkern.conv3x3: no derivative with respect to a pre-transformed (winograd_weight) "
                              "weight U; pass the raw (K, C, 3, 3) weight to differentiate it (winograd_weight(w, m) "
                              "itself is differentiable); x and bias have their derivatives with U");
}

// P (3 x alpha) = (G^T G)^-1 G^T, G's left inverse (P G = I), in float64: for each (k, c),
// U = G w G^T gives back w = P U P^T. G (alpha x 3) is the kernels' own.
std::vector<double> winograd_left_inverse(int64_t tile) {
  const int64_t alpha = tile + 2;
  std::vector<double> b(alpha * alpha), g(alpha * 3), a(alpha * tile);
  emu::winograd_matrices(static_cast<int>(tile), b.data(), g.data(), a.data());
  double gtg[3][3] = {}, inv[3][3];
  for (int r = 0; r < 3; ++r)
    for (int c = 0; c < 3; ++c)
      for (int64_t i = 0; i < alpha; ++i) gtg[r][c] += g[i * 3 + r] * g[i * 3 + c];
  // The inverse of the symmetric positive definite 3 x 3 G^T G by cofactors.
  const auto m = gtg;
  inv[0][0] = m[1][1] * m[2][2] - m[1][2] * m[2][1];
  inv[0][1] = m[0][2] * m[2][1] - m[0][1] * m[2][2];
  inv[0][2] = m[0][1] * m[1][2] - m[0][2] * m[1][1];
  inv[1][0] = m[1][2] * m[2][0] - m[1][0] * m[2][2];
  inv[1][1] = m[0][0] * m[2][2] - m[0][2] * m[2][0];
  inv[1][2] = m[0][2] * m[1][0] - m[0][0] * m[1][2];
  inv[2][0] = m[1][0] * m[2][1] - m[1][1] * m[2][0];
  inv[2][1] = m[0][1] * m[2][0] - m[0][0] * m[2][1];
  inv[2][2] = m[0][0] * m[1][1] - m[0][1] * m[1][0];
  const double det = m[0][0] * inv[0][0] + m[0][1] * inv[1][0] + m[0][2] * inv[2][0];
  std::vector<double> p(3 * alpha, 0.0);
  for (int r = 0; r < 3; ++r)
    for (int64_t i = 0; i < alpha; ++i)
      for (int c = 0; c < 3; ++c) p[r * alpha + i] += inv[r][c] / det * g[i * 3 + c];
  return p;
}

// The filters (K, C, 3, 3) that weight stands for, in dtype: weight itself, or, for a
// pre-transformed U ((m + 2)^2, C, K), the w of U = winograd_weight(w, m), as P U P^T
// computed in float64 and rounded once. A U that winograd_weight did not make (one
// outside the span of G g G^T) gives the filters of its projection onto that span.
at::Tensor filters_of(const at::Tensor& weight, at::ScalarType dtype) {
  if (weight.dim() == 4) return weight;
  const int64_t alpha = weight.size(0) == 16 ? 4 : 6;
  static const std::vector<double> p2 = winograd_left_inverse(2), p4 = winograd_left_inverse(4);
  const std::vector<double>& p = alpha == 4 ? p2 : p4;
  // A constant made without dispatch (at::tensor's would be wrapped under torch.func),
  // lifted so that a traced backward (fake tensors) takes it. Only read.
  const at::Tensor pm =
      at::lift_fresh(at::from_blob(const_cast<double*>(p.data()), {3, alpha}, at::kDouble)).to(weight.device());
  const at::Tensor u = weight.to(at::kDouble).view({alpha, alpha, weight.size(1), weight.size(2)});
  return at::einsum("ai,ijck,bj->kcab", {pm, u, pm}).to(dtype).contiguous();
}

// vggkern::_conv3x3_backward: the gradients of conv3x3 (x, weight, bias) for grad, those
// in output_mask (the others undefined). Composite (aten ops only), so differentiable.
std::tuple<at::Tensor, at::Tensor, at::Tensor> conv3x3_backward(const at::Tensor& grad_output, const at::Tensor& x,
                                                                const at::Tensor& weight,
                                                                const std::optional<at::Tensor>& bias, bool relu,
                                                                bool pool, std::array<bool, 3> output_mask) {
  check_no_weight_derivative(weight, output_mask[1]);
  const at::Tensor w = filters_of(weight, x.scalar_type());
  const bool has_bias = bias.has_value() && bias->defined();
  at::Tensor grad = grad_output;
  if (relu || pool) {
    at::Tensor a = padded_conv(x, w, bias);
    if (relu) a = at::relu(a);
    if (pool) grad = maxpool2x2_backward(grad, a);
    if (relu) grad = at::threshold_backward(grad, a, 0);
  }
  output_mask[2] = output_mask[2] && has_bias;
  const int64_t k = w.size(0);  // bias_sizes points at it
  const at::OptionalIntArrayRef bias_sizes = has_bias ? at::OptionalIntArrayRef(at::IntArrayRef(k)) : std::nullopt;
  return at::convolution_backward(grad, x, w, bias_sizes, {1, 1}, {1, 1}, {1, 1}, false, {0, 0}, 1, output_mask);
}

// vggkern::_conv3x3_jvp: conv3x3's forward derivative, the tangent of its output for the
// given tangents of x, weight and bias (None: zero). As torch's own for conv2d, relu and
// max_pool2d (the first maximum of each window carries the tangent). Composite.
at::Tensor conv3x3_jvp(const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                       const std::optional<at::Tensor>& x_tangent, const std::optional<at::Tensor>& weight_tangent,
                       const std::optional<at::Tensor>& bias_tangent, bool relu, bool pool) {
  auto given = [](const std::optional<at::Tensor>& t) { return t.has_value() && t->defined(); };
  check_no_weight_derivative(weight, given(weight_tangent));
  const at::Tensor w = filters_of(weight, x.scalar_type());
  // d(conv(x, w) + b) = conv(dx, w) + conv(x, dw) + db
  at::Tensor t = at::zeros({x.size(0), w.size(0), x.size(2), x.size(3)}, x.options());
  if (given(x_tangent)) t = t + padded_conv(*x_tangent, w, std::nullopt);
  if (given(weight_tangent)) t = t + padded_conv(x, *weight_tangent, std::nullopt);
  if (given(bias_tangent)) t = t + bias_tangent->view({1, -1, 1, 1});
  if (relu || pool) {
    at::Tensor a = padded_conv(x, w, bias);
    if (relu) {
      a = at::relu(a);
      t = at::threshold_backward(t, a, 0);
    }
    if (pool) {
      const at::Tensor indices = std::get<1>(at::max_pool2d_with_indices(a, {2, 2}, {2, 2}));
      t = t.flatten(2).gather(2, indices.flatten(2)).view_as(indices);
    }
  }
  return t;
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
    // The tensor inputs' edges are x, weight and, when given, bias, in that order.
    const bool need_bias = saved[2].defined() && ctx->needs_input_grad(2);
    auto [gx, gw, gb] = conv3x3_backward(grads[0], saved[0], saved[1], saved[2], ctx->saved_data["relu"].toBool(),
                                         ctx->saved_data["pool"].toBool(),
                                         {ctx->needs_input_grad(0), ctx->needs_input_grad(1), need_bias});
    return {gx, gw, gb, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

// Whether autograd has anything to record. Where it has not, the op runs below autograd
// directly, as torch.library's Python kernel did: cheaper, and a torch.func transform
// that differentiates nothing through it (a frozen backbone's) runs it as it is. An
// undefined tensor (None passed as x or weight) goes there too, for the op to refuse by
// name: autograd would fail on it first with a message that names nothing.
bool records(const at::Tensor& x, const at::Tensor& weight = {}, const std::optional<at::Tensor>& bias = {}) {
  if (!x.defined() || !at::GradMode::is_enabled()) return false;
  if (x.requires_grad() || (weight.defined() && weight.requires_grad())) return true;
  return bias.has_value() && bias->defined() && bias->requires_grad();
}

// Whether forward-mode AD (torch.autograd.forward_ad) carries a tangent for t.
bool has_tangent(const at::Tensor& t) { return t.defined() && t._fw_grad(/*level=*/0).defined(); }

// Whether a torch.func transform is running this call: its dynamic-layer keys are in the
// thread's included set while any transform is on (torch._C._are_functorch_transforms_active).
bool under_torch_func() {
  const c10::DispatchKeySet included = c10::impl::tls_local_dispatch_key_set().included_;
  return included.has(c10::DispatchKey::FuncTorchDynamicLayerFrontMode) ||
         included.has(c10::DispatchKey::FuncTorchDynamicLayerBackMode);
}

at::Tensor maxpool2x2_autograd(const at::Tensor& x) {
  if (has_tangent(x) || (x.defined() && under_torch_func())) {
    check_maxpool2x2_input(x, "vggkern.maxpool2x2");
    return at::max_pool2d(x, {2, 2}, {2, 2});
  }
  return records(x) ? Maxpool2x2Function::apply(x) : maxpool2x2_below_autograd(x);
}

// vggkern::_conv3x3_forward_ad, whose kernel vggkern/ops.py registers.
at::Tensor conv3x3_forward_ad(const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                              bool relu, bool pool, c10::string_view algo, std::optional<bool> allow_tf32) {
  static const auto op =
      c10::Dispatcher::singleton().findSchemaOrThrow("vggkern::_conv3x3_forward_ad", "").typed<Conv3x3Signature>();
  return op.call(x, weight, bias, relu, pool, algo, allow_tf32);
}

at::Tensor conv3x3_autograd(const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                            bool relu, bool pool, c10::string_view algo, std::optional<bool> allow_tf32) {
  if (!weight.defined()) return conv3x3_below_autograd(x, weight, bias, relu, pool, algo, allow_tf32);
  const bool tangents = has_tangent(x) || has_tangent(weight) || (bias.has_value() && has_tangent(*bias));
  const bool recorded = records(x, weight, bias);
  if (!recorded && !tangents) return conv3x3_below_autograd(x, weight, bias, relu, pool, algo, allow_tf32);
  // A transform's own dispatch has reached this kernel; the Function must be applied above it.
  TORCH_CHECK_NOT_IMPLEMENTED(!under_torch_func(),
                              "vggkern.conv3x3: under torch.func transforms (grad, vjp, jvp, jacrev, hessian, vmap "
                              "with a gradient) call vggkern.conv3x3 or the vggkern modules, which run a "
                              "transformable autograd.Function there, rather than torch.ops.vggkern.conv3x3 (under "
                              "torch.compile, whose tracing reaches the op inside that Function, compile such a "
                              "function without fullgraph=True: dynamo then runs the transform eagerly)");
  if (tangents) return conv3x3_forward_ad(x, weight, bias, relu, pool, algo, allow_tf32);
  return Conv3x3Function::apply(x, weight, bias, relu, pool, std::string(algo), allow_tf32);
}

}  // namespace
}  // namespace vk

TORCH_LIBRARY_IMPL(vggkern, Autograd, m) {
  m.impl("conv3x3", &vk::conv3x3_autograd);
  m.impl("maxpool2x2", &vk::maxpool2x2_autograd);
}

// Composite: decomposed into aten ops under autograd and backends, and under vmap too
// (else vmap would loop over the batch).
TORCH_LIBRARY_IMPL(vggkern, CompositeImplicitAutograd, m) {
  m.impl("_conv3x3_backward", &vk::conv3x3_backward);
  m.impl("_conv3x3_jvp", &vk::conv3x3_jvp);
}
TORCH_LIBRARY_IMPL(vggkern, FuncTorchBatchedDecomposition, m) {
  m.impl("_conv3x3_backward", &vk::conv3x3_backward);
  m.impl("_conv3x3_jvp", &vk::conv3x3_jvp);
}
