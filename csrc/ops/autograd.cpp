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
// ReLU's mask taken from the saved output (as torch's relu takes it), the pre-activation
// recomputed with torch only where the pool needs its windows' maxima;
// with a pre-transformed Winograd weight U, the Winograd computation's own derivatives
// (winograd_conv below); with a laid-out tensor-core weight (K, 3, 3, Cp), those of the
// raw weight it holds, laid out the same way (raw_of_laid_out below).
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
#include <ATen/ops/constant_pad_nd.h>
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
#include <c10/core/InferenceMode.h>
#include <c10/core/impl/LocalDispatchKeySet.h>
#include <c10/core/impl/TorchDispatchModeTLS.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/library.h>

#include <array>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "../common/backends.h"
#include "../common/op_support.h"
#include "tensor_core_layout.h"

namespace vk {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Whether an optional tensor argument (a bias, a tangent) was given: None arrives as
// nullopt or as an undefined tensor.
bool given(const std::optional<at::Tensor>& t) { return t.has_value() && t->defined(); }

// A tensor the derivative ops take: strided, not quantized, not nested. (The other ops
// have kernels only at the dense keys; vggkern/ops.py gives theirs at the others the same
// words. The derivative ops are composite: their kernels see every kind of tensor.)
void check_dense(const at::Tensor& t, const char* op, const char* arg) {
  if (!t.defined() || (t.layout() == at::kStrided && !t.is_quantized() && !t.is_nested())) return;
  const char* kind = t.is_quantized() ? "quantized"
                     : t.is_nested()  ? "nested"
                     : t.layout() == at::kSparse    ? "sparse_coo"
                     : t.layout() == at::kSparseCsr ? "sparse_csr"
                     : t.layout() == at::kSparseCsc ? "sparse_csc"
                     : t.layout() == at::kSparseBsr ? "sparse_bsr"
                     : t.layout() == at::kSparseBsc ? "sparse_bsc"
                     : t.layout() == at::kMkldnn    ? "mkldnn"
                                                    : "non-strided";
  TORCH_CHECK_VALUE(false, op, ": expected ", arg, " to be a dense (strided) tensor, got a ", kind, " tensor");
}

// The gradient of y = max_pool2d(a, 2, 2) for dy: torch's, which sends it to the first
// maximum of each window.
at::Tensor maxpool2x2_backward(const at::Tensor& dy, const at::Tensor& a) {
  const at::Tensor indices = std::get<1>(at::max_pool2d_with_indices(a, {2, 2}, {2, 2}));
  return at::max_pool2d_with_indices_backward(dy, a, {2, 2}, {2, 2}, {0, 0}, {1, 1}, false, indices);
}

// The tangent of y = max_pool2d(a, 2, 2) for a's tangent t: t at the first maximum of
// each window of a, as torch's own.
at::Tensor maxpool2x2_jvp(const at::Tensor& t, const at::Tensor& a) {
  const at::Tensor indices = std::get<1>(at::max_pool2d_with_indices(a, {2, 2}, {2, 2}));
  return t.flatten(2).gather(2, indices.flatten(2)).view_as(indices);
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
                                    bool, c10::string_view, std::optional<bool>, bool, bool);

// vggkern::conv3x3 below autograd.
at::Tensor conv3x3_below_autograd(const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                                  bool relu, bool pool, c10::string_view algo, std::optional<bool> allow_tf32,
                                  bool x_tf32, bool y_tf32) {
  static const auto op =
      c10::Dispatcher::singleton().findSchemaOrThrow("vggkern::conv3x3", "").typed<Conv3x3Signature>();
  at::AutoDispatchBelowADInplaceOrView guard;
  return op.call(x, weight, bias, relu, pool, algo, allow_tf32, x_tf32, y_tf32);
}

// F.conv2d(x, weight, bias, padding=1), torch's: the derivatives' recomputation of the
// forward's intermediate values.
at::Tensor padded_conv(const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& bias) {
  return at::convolution(x, weight, bias, {1, 1}, {1, 1}, {1, 1}, false, {0, 0}, 1);
}

// A pre-transformed weight U = winograd_weight(w, m), ((m + 2)^2, C, K): the derivatives
// are those of the computation the Winograd kernels do with it, written in aten ops
// (float32, as the kernels compute), not those of a conv with some w. So they hold for
// any U, one that winograd_weight made or one trained or pruned in the Winograd domain
// (which is then no longer a 3x3 conv: its output depends on the position in the tile),
// and U has its own. Per output tile of m x m pixels, with its (m + 2)^2 input tile d
// (padding 1, tiles from (0, 0), zeros past the edge) and the kernels' B and A:
//   V = B^T d B,  M_k = sum_c U_ck (.) V_c,  y_k = A^T M_k A (+ bias),
// so for dy: dM_k = A dy_k A^T, dU_ck = sum over tiles of V_c (.) dM_k,
// dV_c = sum_k U_ck (.) dM_k, dd = B dV_c B^T, summed where the input tiles overlap.
// Each einsum's index letters: i, j the (m + 2)^2 transform positions; a, b a tile's
// rows and columns; n, c, k, t, s batch, channel, filter, tile row and tile column.
bool is_pre_transformed(const at::Tensor& weight) { return weight.dim() == 3; }

struct WinogradTransforms {
  int64_t m, alpha;
  at::Tensor b, a;  // B (alpha x alpha), A (alpha x m): float32 (exact: small integers)
};

// A plain eager call: no Python dispatch mode (fake tensors, FlopCounterMode, ...), no
// torch.func transform, and x neither a Python-keyed (fake) nor a functional tensor.
bool plain_eager(const at::Tensor& x) {
  // (A torch.func transform includes its front-mode key in the thread's dispatch keys.)
  return !c10::impl::dispatch_mode_enabled() &&
         !c10::impl::tls_is_dispatch_key_included(c10::DispatchKey::FuncTorchDynamicLayerFrontMode) &&
         !x.key_set().has(c10::DispatchKey::Python) && !x.key_set().has(c10::DispatchKey::Functionalize) &&
         !x.is_meta();
}

WinogradTransforms winograd_transforms(const at::Tensor& u, const at::Tensor& x) {
  const c10::Device device = x.device();
  const int64_t m = u.size(0) == 16 ? 2 : 4, alpha = m + 2;
  struct Constants {
    std::vector<float> b, a;
  };
  static const auto make = [](int tile) {
    const int n = tile + 2;
    std::vector<double> b(n * n), g(n * 3), a(n * tile);
    emu::winograd_matrices(tile, b.data(), g.data(), a.data());
    return Constants{std::vector<float>(b.begin(), b.end()), std::vector<float>(a.begin(), a.end())};
  };
  static const Constants c2 = make(2), c4 = make(4);
  const Constants& c = m == 2 ? c2 : c4;
  // Constants made without dispatch (at::tensor's would be wrapped under torch.func),
  // lifted so that a traced backward (fake tensors) takes them. Only read.
  auto constant = [&](const std::vector<float>& v, int64_t cols) {
    return at::lift_fresh(at::from_blob(const_cast<float*>(v.data()), {alpha, cols}, at::kFloat)).to(device);
  };
  if (!plain_eager(x)) return {m, alpha, constant(c.b, alpha), constant(c.a, m)};
  // Plain eager calls take them from a cache per (tile, device), made on the first such
  // call: a host-to-GPU copy of pageable memory synchronizes with the stream, which a
  // backward must not (torch.cuda.set_sync_debug_mode), and which a CUDA graph's capture
  // refuses (a warm-up call before the capture, as make_graphed_callables makes, fills it).
  // Never freed (no device memory released after the allocator's teardown at exit), and
  // never inference tensors (a backward taken under inference_mode would otherwise store
  // ones that a later double backward cannot save).
  static std::mutex mutex;
  static auto* const cache = new std::map<std::pair<int64_t, std::string>, std::pair<at::Tensor, at::Tensor>>();
  const std::lock_guard<std::mutex> lock(mutex);
  auto& entry = (*cache)[{m, device.str()}];
  if (!entry.first.defined()) {
    const c10::InferenceMode not_inference(false);
    entry = {constant(c.b, alpha), constant(c.a, m)};
  }
  return {m, alpha, entry.first, entry.second};
}

int64_t tiles_along(int64_t size, int64_t m) { return (size + m - 1) / m; }

// V = B^T d B of every input tile of x (N, C, H, W): (alpha, alpha, N, C, T, S), float32.
at::Tensor winograd_input_transform(const at::Tensor& x, const WinogradTransforms& t) {
  const int64_t rows = tiles_along(x.size(2), t.m) * t.m + 2, cols = tiles_along(x.size(3), t.m) * t.m + 2;
  const at::Tensor xp = at::constant_pad_nd(x.to(at::kFloat), {1, cols - 1 - x.size(3), 1, rows - 1 - x.size(2)});
  const at::Tensor d = xp.unfold(2, t.alpha, t.m).unfold(3, t.alpha, t.m);  // (N, C, T, S, alpha, alpha)
  return at::einsum("ai,nctsab,bj->ijncts", {t.b, d, t.b});
}

// dM = A dy A^T of every output tile of dy (N, K, H, W): (alpha, alpha, N, K, T, S), float32.
at::Tensor winograd_output_transform_backward(const at::Tensor& dy, const WinogradTransforms& t) {
  const int64_t T = tiles_along(dy.size(2), t.m), S = tiles_along(dy.size(3), t.m);
  const at::Tensor dyp = at::constant_pad_nd(dy.to(at::kFloat), {0, S * t.m - dy.size(3), 0, T * t.m - dy.size(2)});
  return at::einsum("ia,nktasb,jb->ijnkts", {t.a, dyp.reshape({dy.size(0), dy.size(1), T, t.m, S, t.m}), t.a});
}

at::Tensor u_of(const at::Tensor& u, const WinogradTransforms& t) {
  return u.to(at::kFloat).view({t.alpha, t.alpha, u.size(1), u.size(2)});
}

// conv3x3 of x with U as the Winograd kernels compute it (without their rounding order),
// from v = winograd_input_transform(x, t), in x's dtype: (N, K, H, W).
at::Tensor winograd_conv(const at::Tensor& v, const at::Tensor& x, const at::Tensor& u,
                         const std::optional<at::Tensor>& bias, const WinogradTransforms& t) {
  const at::Tensor mk = at::einsum("ijck,ijncts->ijnkts", {u_of(u, t), v});
  const int64_t N = x.size(0), K = u.size(2), T = v.size(4), S = v.size(5);
  at::Tensor y = at::einsum("ia,ijnkts,jb->nktasb", {t.a, mk, t.a})
                     .reshape({N, K, T * t.m, S * t.m})
                     .narrow(2, 0, x.size(2))
                     .narrow(3, 0, x.size(3));
  if (given(bias)) y = y + bias->to(at::kFloat).view({1, -1, 1, 1});
  return y.to(x.scalar_type()).contiguous();
}

// The sum of per-tile values v (..., T, alpha, ...) at dims (dim, dim + 1) where the
// input tiles overlap, a tile's last two rows being the next one's first two:
// (..., T m + 2, ...). The backward of unfold(dim, alpha, m), in ops that torch.func
// batches (unfold_backward has no batching rule: vmap would loop).
at::Tensor overlap_add(const at::Tensor& v, int64_t dim, int64_t m) {
  auto pad = [](const at::Tensor& t, int64_t d, int64_t before, int64_t after) {
    std::vector<int64_t> widths(2 * (t.dim() - d), 0);  // constant_pad_nd's: the last dim first
    widths[widths.size() - 2] = before;
    widths[widths.size() - 1] = after;
    return at::constant_pad_nd(t, widths);
  };
  const int64_t rows = v.size(dim) * m + 2;
  const at::Tensor head = pad(v.narrow(dim + 1, 0, m).flatten(dim, dim + 1), dim, 0, 2);
  const at::Tensor tail = pad(pad(v.narrow(dim + 1, m, 2), dim + 1, 0, m - 2).flatten(dim, dim + 1), dim, m, 0);
  return head + tail.narrow(dim, 0, rows);
}

// The gradients of winograd_conv (without bias) for dy (N, K, H, W): x's (x's dtype) if
// want_x, U's (float32) if want_u, which needs v = winograd_input_transform(x, t)
// (undefined otherwise).
std::pair<at::Tensor, at::Tensor> winograd_conv_backward(const at::Tensor& dy, const at::Tensor& x,
                                                         const at::Tensor& u, const at::Tensor& v,
                                                         const WinogradTransforms& t, bool want_x, bool want_u) {
  const at::Tensor dm = winograd_output_transform_backward(dy, t);
  at::Tensor gx, gu;
  if (want_x) {
    const at::Tensor dv = at::einsum("ijck,ijnkts->ijncts", {u_of(u, t), dm});
    const at::Tensor dd = at::einsum("ai,ijncts,bj->nctasb", {t.b, dv, t.b});  // (N, C, T, alpha, S, alpha)
    gx = overlap_add(overlap_add(dd, 4, t.m), 2, t.m)
             .narrow(2, 1, x.size(2))
             .narrow(3, 1, x.size(3))
             .to(x.scalar_type())
             .contiguous(x.suggest_memory_format());
  }
  if (want_u) gu = at::einsum("ijncts,ijnkts->ijck", {v, dm}).reshape(u.sizes()).to(u.scalar_type());
  return {gx, gu};
}

// conv3x3 before its epilogue, as the derivatives recompute it: torch's conv for a raw
// weight, the Winograd computation for a pre-transformed U, whose constants and x's input
// transform (wanted by the forward and by U's gradient) are made once per derivative.
class ConvBeforeEpilogue {
 public:
  ConvBeforeEpilogue(const at::Tensor& x, const at::Tensor& weight)
      : x_(x), pre_transformed_(is_pre_transformed(weight)) {
    if (pre_transformed_) t_ = winograd_transforms(weight, x);
  }
  bool pre_transformed() const { return pre_transformed_; }
  const WinogradTransforms& transforms() const { return *t_; }
  // V = B^T d B of x's tiles (U only), made on first use.
  const at::Tensor& x_tiles() {
    if (!v_.defined()) v_ = winograd_input_transform(x_, *t_);
    return v_;
  }
  // conv(x, w) + b, w the weight or (bilinear) its tangent.
  at::Tensor of_x(const at::Tensor& w, const std::optional<at::Tensor>& b) {
    return pre_transformed_ ? winograd_conv(x_tiles(), x_, w, b, *t_) : padded_conv(x_, w, b);
  }
  // conv(input, w) + b of another input of x's shape (x's tangent).
  at::Tensor of(const at::Tensor& input, const at::Tensor& w, const std::optional<at::Tensor>& b) {
    return pre_transformed_ ? winograd_conv(winograd_input_transform(input, *t_), input, w, b, *t_)
                            : padded_conv(input, w, b);
  }

 private:
  const at::Tensor& x_;
  bool pre_transformed_;
  std::optional<WinogradTransforms> t_;
  at::Tensor v_;
};

// A laid-out weight w = tensor_core_weight(g), (K, 3, 3, Cp): the conv is that of the raw
// (K, C, 3, 3) weight it holds, w[..., :C] (a view), as the kernel computes it (its
// channels past C meet x's zero padding). So the derivatives are the raw weight's, and
// w's gradient is the raw one's laid out the same way, zero past C.
at::Tensor raw_of_laid_out(const at::Tensor& w, int64_t C) { return w.narrow(3, 0, C).permute({0, 3, 1, 2}); }
at::Tensor laid_out_of_raw(const at::Tensor& g, int64_t Cp) {
  return at::constant_pad_nd(g.permute({0, 2, 3, 1}), {0, Cp - g.size(1)});
}

// The derivative ops' checks of x, weight and bias, as conv3x3's forward makes them: x an
// activation, weight raw (K, C, 3, 3), laid out (K, 3, 3, Cp) in x's dtype, or a Winograd
// U ((m + 2)^2, C, K) in float32, bias (K) in x's dtype, all on x's device. Returns the shape conv3x3 gives y. Symbolic
// sizes (torch.compile with dynamic shapes traces these) are compared as such.
std::vector<c10::SymInt> checked_conv3x3_output_shape(const at::Tensor& x, const at::Tensor& weight,
                                                      const std::optional<at::Tensor>& bias, bool pool,
                                                      const char* op) {
  TORCH_CHECK_VALUE(x.defined(), op, ": expected x to be a tensor, got None");
  check_device(x, op, "x");
  TORCH_CHECK_VALUE(x.dim() == 4, op, ": expected x to be a 4-D tensor (N, C, H, W), got shape ", x.sym_sizes());
  checked_dtype(x, op, "x");
  const c10::SymInt &N = x.sym_size(0), &C = x.sym_size(1), &H = x.sym_size(2), &W = x.sym_size(3);
  TORCH_CHECK_VALUE(!pool || (H >= 2 && W >= 2), op, ": pool=True: expected x with H >= 2 and W >= 2, got H=", H,
                    ", W=", W);
  TORCH_CHECK_VALUE(weight.defined(), op, ": expected weight to be a tensor, got None");
  const bool four = weight.dim() == 4, u = weight.dim() == 3;
  const bool raw = four && weight.sym_size(1) == C && weight.sym_size(2) == 3 && weight.sym_size(3) == 3;
  const bool laid_out =  // is_tensor_core_layout, symbolic (Cp, a multiple of 8, is never a raw weight's 3)
      four && weight.sym_size(1) == 3 && weight.sym_size(2) == 3 && weight.sym_size(3) == (C + 7) / 8 * 8;
  const bool pre_transformed =
      u && (weight.sym_size(0) == 16 || weight.sym_size(0) == 36) && weight.sym_size(1) == C;
  TORCH_CHECK_VALUE(raw || laid_out || pre_transformed, op, ": expected weight of shape [K, C, 3, 3] with C=", C,
                    " matching x, tensor_core_weight(weight)'s [K, 3, 3, Cp] (Cp: C rounded up to a multiple of 8) ",
                    "or winograd_weight(weight, m)'s [(m + 2)^2, C, K], got ", weight.sym_sizes());
  const c10::SymInt& K = u ? weight.sym_size(2) : weight.sym_size(0);
  TORCH_CHECK_VALUE(K >= 1, op, ": expected weight with at least one output channel (K >= 1), got ",
                    weight.sym_sizes());
  const at::ScalarType weight_dtype = u ? at::kFloat : x.scalar_type();
  TORCH_CHECK_VALUE(weight.scalar_type() == weight_dtype, op, ": expected weight of dtype ", dtype_name(weight_dtype),
                    ", got ", dtype_name(weight.scalar_type()));
  TORCH_CHECK_VALUE(weight.device() == x.device(), op, ": expected weight on the same device as x (", x.device(),
                    "), got ", weight.device());
  if (given(bias)) {
    TORCH_CHECK_VALUE(bias->dim() == 1 && bias->sym_size(0) == K, op, ": expected bias of shape [K] with K=", K,
                      " matching weight, got ", bias->sym_sizes());
    TORCH_CHECK_VALUE(bias->scalar_type() == x.scalar_type() && bias->device() == x.device(), op,
                      ": expected bias of x's dtype and device (", dtype_name(x.scalar_type()), ", ", x.device(),
                      "), got ", dtype_name(bias->scalar_type()), ", ", bias->device());
  }
  return {N, K, pool ? H / 2 : H, pool ? W / 2 : W};
}

// t (a gradient or tangent, named arg) has `shape` and `like`'s dtype and device.
void check_like(const at::Tensor& t, c10::SymIntArrayRef shape, const at::Tensor& like, const char* op,
                const char* arg) {
  bool same = t.dim() == static_cast<int64_t>(shape.size());
  for (int64_t d = 0; same && d < t.dim(); ++d) same = t.sym_size(d) == shape[d];
  TORCH_CHECK_VALUE(same, op, ": expected ", arg, " of shape ", shape, ", got ", t.sym_sizes());
  TORCH_CHECK_VALUE(t.scalar_type() == like.scalar_type() && t.device() == like.device(), op, ": expected ", arg,
                    " of dtype ", dtype_name(like.scalar_type()), " on ", like.device(), ", got ",
                    dtype_name(t.scalar_type()), " on ", t.device());
}

// Whether the derivatives take ReLU's mask from the forward's output y (given, with relu:
// y = relu(pre-activation), pooled or not, so y > 0 exactly where the kernel's value was,
// as torch's relu backward reads its result) rather than from a recomputed pre-activation.
// The recomputation is torch's conv, whose rounding (TF32 or not: the global
// cudnn.allow_tf32, not the call's) is not the kernel's, so near zero its sign could
// differ; and without the pool it is a third conv beside the two of the gradients, which y
// saves. With the pool y does not say which pixel of a window was its maximum: that
// (only that) still comes from the recomputation, torch's first maximum of the window.
bool mask_from_output(const std::optional<at::Tensor>& y, bool relu) { return given(y) && relu; }

// The gradients of conv3x3 (x, weight, bias) for grad, those in output_mask (the others
// undefined), for inputs the forward checked; y, the forward's output, or None (see
// mask_from_output). Composite (aten ops only), so differentiable.
std::tuple<at::Tensor, at::Tensor, at::Tensor> conv3x3_backward(const at::Tensor& grad_output, const at::Tensor& x,
                                                                const at::Tensor& weight,
                                                                const std::optional<at::Tensor>& bias, bool relu,
                                                                bool pool, std::array<bool, 3> output_mask,
                                                                const std::optional<at::Tensor>& y) {
  if (is_tensor_core_layout(weight)) {
    auto [gx, gw, gb] =
        conv3x3_backward(grad_output, x, raw_of_laid_out(weight, x.size(1)), bias, relu, pool, output_mask, y);
    return {gx, gw.defined() ? laid_out_of_raw(gw, weight.size(3)) : gw, gb};
  }
  const bool has_bias = given(bias);
  output_mask[2] = output_mask[2] && has_bias;
  ConvBeforeEpilogue conv(x, weight);
  at::Tensor grad = grad_output;
  if (mask_from_output(y, relu)) {
    grad = at::threshold_backward(grad, *y, 0);
    // The window maxima of the pre-activation itself: where y > 0 they are relu's too.
    if (pool) grad = maxpool2x2_backward(grad, conv.of_x(weight, bias));
  } else if (relu || pool) {
    at::Tensor a = conv.of_x(weight, bias);
    if (relu) a = at::relu(a);
    if (pool) grad = maxpool2x2_backward(grad, a);
    if (relu) grad = at::threshold_backward(grad, a, 0);
  }
  if (conv.pre_transformed()) {
    const at::Tensor v = output_mask[1] ? conv.x_tiles() : at::Tensor();
    auto [gx, gu] = winograd_conv_backward(grad, x, weight, v, conv.transforms(), output_mask[0], output_mask[1]);
    at::Tensor gb = output_mask[2] ? grad.sum({0, 2, 3}, false, at::kFloat).to(bias->scalar_type()) : at::Tensor();
    return {gx, gu, gb};
  }
  const int64_t k = weight.size(0);  // bias_sizes points at it
  const at::OptionalIntArrayRef bias_sizes = has_bias ? at::OptionalIntArrayRef(at::IntArrayRef(k)) : std::nullopt;
  return at::convolution_backward(grad, x, weight, bias_sizes, {1, 1}, {1, 1}, {1, 1}, false, {0, 0}, 1, output_mask);
}

// conv3x3's forward derivative, the tangent of its output for the given tangents of x,
// weight and bias (None: zero), for checked inputs; y, the forward's output, or None (see
// mask_from_output). As torch's own for conv2d, relu and max_pool2d (the first maximum of
// each window carries the tangent). Composite.
at::Tensor conv3x3_jvp(const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                       const std::optional<at::Tensor>& x_tangent, const std::optional<at::Tensor>& weight_tangent,
                       const std::optional<at::Tensor>& bias_tangent, bool relu, bool pool,
                       const std::optional<at::Tensor>& y) {
  if (is_tensor_core_layout(weight)) {  // the raw weight's (and tangent's) derivative: see raw_of_laid_out
    const int64_t C = x.size(1);
    return conv3x3_jvp(x, raw_of_laid_out(weight, C), bias, x_tangent,
                       given(weight_tangent) ? std::optional<at::Tensor>(raw_of_laid_out(*weight_tangent, C))
                                             : std::nullopt,
                       bias_tangent, relu, pool, y);
  }
  // d(conv(x, w) + b) = conv(dx, w) + conv(x, dw) + db (conv bilinear, the Winograd one too),
  // db added inside a conv, as torch's own convolution derivative adds it (to conv(x, dw)):
  // a 16-bit tangent is then rounded as often as torch's, not once more for db (which
  // measured up to 2.3x torch's error in bf16: tests/fuzz.py --derivatives).
  ConvBeforeEpilogue conv(x, weight);
  const std::optional<at::Tensor> db = given(bias_tangent) ? bias_tangent : std::nullopt;
  at::Tensor t;
  if (given(weight_tangent) && given(x_tangent)) {
    t = conv.of(*x_tangent, weight, std::nullopt) + conv.of_x(*weight_tangent, db);
  } else if (given(weight_tangent)) {
    t = conv.of_x(*weight_tangent, db);
  } else if (given(x_tangent)) {
    t = conv.of(*x_tangent, weight, db);
  } else {  // db alone, or no tangent at all
    const int64_t k = conv.pre_transformed() ? weight.size(2) : weight.size(0);
    t = at::zeros({x.size(0), k, x.size(2), x.size(3)}, x.options().memory_format(x.suggest_memory_format()));
    if (db) t = t + db->view({1, -1, 1, 1});
  }
  if (mask_from_output(y, relu)) {
    if (pool) t = maxpool2x2_jvp(t, conv.of_x(weight, bias));  // as in conv3x3_backward
    t = at::threshold_backward(t, *y, 0);
  } else if (relu || pool) {
    at::Tensor a = conv.of_x(weight, bias);
    if (relu) {
      a = at::relu(a);
      t = at::threshold_backward(t, a, 0);
    }
    if (pool) t = maxpool2x2_jvp(t, a);
  }
  return t;
}

// The ops' kernels, vggkern::_conv3x3_backward and vggkern::_conv3x3_jvp: the above, with
// the forward's checks (conv3x3's own backward calls conv3x3_backward, its inputs checked
// by the forward; a direct call gets named errors, not aten's from deep inside).
std::tuple<at::Tensor, at::Tensor, at::Tensor> conv3x3_backward_op(const at::Tensor& grad_output, const at::Tensor& x,
                                                                   const at::Tensor& weight,
                                                                   const std::optional<at::Tensor>& bias, bool relu,
                                                                   bool pool, std::array<bool, 3> output_mask,
                                                                   const std::optional<at::Tensor>& y) {
  constexpr const char* op = "vggkern._conv3x3_backward";
  check_dense(grad_output, op, "grad");
  check_dense(x, op, "x");
  check_dense(weight, op, "weight");
  if (given(bias)) check_dense(*bias, op, "bias");
  if (given(y)) check_dense(*y, op, "y");
  const std::vector<c10::SymInt> shape = checked_conv3x3_output_shape(x, weight, bias, pool, op);
  check_like(grad_output, shape, x, op, "grad");
  if (given(y)) check_like(*y, shape, x, op, "y");
  return conv3x3_backward(grad_output, x, weight, bias, relu, pool, output_mask, y);
}

at::Tensor conv3x3_jvp_op(const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                          const std::optional<at::Tensor>& x_tangent, const std::optional<at::Tensor>& weight_tangent,
                          const std::optional<at::Tensor>& bias_tangent, bool relu, bool pool,
                          const std::optional<at::Tensor>& y) {
  constexpr const char* op = "vggkern._conv3x3_jvp";
  check_dense(x, op, "x");
  check_dense(weight, op, "weight");
  for (const auto& [t, name] : {std::pair{&bias, "bias"}, {&x_tangent, "x_tangent"}, {&weight_tangent, "weight_tangent"},
                                {&bias_tangent, "bias_tangent"}, {&y, "y"}})
    if (given(*t)) check_dense(**t, op, name);
  const std::vector<c10::SymInt> shape = checked_conv3x3_output_shape(x, weight, bias, pool, op);
  if (given(y)) check_like(*y, shape, x, op, "y");
  if (given(x_tangent)) check_like(*x_tangent, x.sym_sizes(), x, op, "x_tangent");
  if (given(weight_tangent)) check_like(*weight_tangent, weight.sym_sizes(), weight, op, "weight_tangent");
  if (given(bias_tangent)) {
    TORCH_CHECK_VALUE(given(bias), op, ": expected no bias_tangent without a bias");
    check_like(*bias_tangent, bias->sym_sizes(), *bias, op, "bias_tangent");
  }
  return conv3x3_jvp(x, weight, bias, x_tangent, weight_tangent, bias_tangent, relu, pool, y);
}

struct Conv3x3Function : torch::autograd::Function<Conv3x3Function> {
  static constexpr bool is_traceable = true;

  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& weight,
                            const std::optional<at::Tensor>& bias, bool relu, bool pool, const std::string& algo,
                            std::optional<bool> allow_tf32, bool x_tf32, bool y_tf32) {
    ctx->saved_data["relu"] = relu;
    ctx->saved_data["pool"] = pool;
    at::Tensor y = conv3x3_below_autograd(x, weight, bias, relu, pool, algo, allow_tf32, x_tf32, y_tf32);
    // y too where ReLU's mask comes from it (mask_from_output); without relu, an undefined
    // tensor in its place.
    ctx->save_for_backward({x, weight, bias.value_or(at::Tensor()), relu ? y : at::Tensor()});
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list saved = ctx->get_saved_variables();
    // The tensor inputs' edges are x, weight and, when given, bias, in that order.
    const bool need_bias = saved[2].defined() && ctx->needs_input_grad(2);
    auto [gx, gw, gb] = conv3x3_backward(grads[0], saved[0], saved[1], saved[2], ctx->saved_data["relu"].toBool(),
                                         ctx->saved_data["pool"].toBool(),
                                         {ctx->needs_input_grad(0), ctx->needs_input_grad(1), need_bias}, saved[3]);
    // x_tf32 and y_tf32's roundings are passed through as the identity (straight
    // through, as TF32's rounding of the operands is): the derivatives are the conv's.
    return {gx, gw, gb, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
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
  return given(bias) && bias->requires_grad();
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
                              bool relu, bool pool, c10::string_view algo, std::optional<bool> allow_tf32,
                              bool x_tf32, bool y_tf32) {
  static const auto op =
      c10::Dispatcher::singleton().findSchemaOrThrow("vggkern::_conv3x3_forward_ad", "").typed<Conv3x3Signature>();
  return op.call(x, weight, bias, relu, pool, algo, allow_tf32, x_tf32, y_tf32);
}

at::Tensor conv3x3_autograd(const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                            bool relu, bool pool, c10::string_view algo, std::optional<bool> allow_tf32,
                            bool x_tf32, bool y_tf32) {
  if (!weight.defined())
    return conv3x3_below_autograd(x, weight, bias, relu, pool, algo, allow_tf32, x_tf32, y_tf32);
  const bool tangents = has_tangent(x) || has_tangent(weight) || (bias.has_value() && has_tangent(*bias));
  const bool recorded = records(x, weight, bias);
  if (!recorded && !tangents)
    return conv3x3_below_autograd(x, weight, bias, relu, pool, algo, allow_tf32, x_tf32, y_tf32);
  // A transform's own dispatch has reached this kernel; the Function must be applied above it.
  TORCH_CHECK_NOT_IMPLEMENTED(!under_torch_func(),
                              "vggkern.conv3x3: under torch.func transforms (grad, vjp, jvp, jacrev, hessian, vmap "
                              "with a gradient) call vggkern.conv3x3 or the vggkern modules, which run a "
                              "transformable autograd.Function there, rather than torch.ops.vggkern.conv3x3 (under "
                              "torch.compile, whose tracing reaches the op inside that Function, compile such a "
                              "function without fullgraph=True: dynamo then runs the transform eagerly)");
  if (tangents) return conv3x3_forward_ad(x, weight, bias, relu, pool, algo, allow_tf32, x_tf32, y_tf32);
  return Conv3x3Function::apply(x, weight, bias, relu, pool, std::string(algo), allow_tf32, x_tf32, y_tf32);
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
  m.impl("_conv3x3_backward", &vk::conv3x3_backward_op);
  m.impl("_conv3x3_jvp", &vk::conv3x3_jvp_op);
}
TORCH_LIBRARY_IMPL(vggkern, FuncTorchBatchedDecomposition, m) {
  m.impl("_conv3x3_backward", &vk::conv3x3_backward_op);
  m.impl("_conv3x3_jvp", &vk::conv3x3_jvp_op);
}
