// torch.ops.vggkern.conv3x3(Tensor x, Tensor weight, Tensor? bias=None, bool relu=False,
// bool pool=False, str algo="auto", bool? allow_tf32=None, bool x_tf32=False, bool
// y_tf32=False) -> Tensor: checks, output allocation, launch.
// y = [max_pool2d(., 2, 2)](ReLU?(conv2d(x, weight, bias, stride=1, padding=1))), fused.
// The Winograd algorithms also take weight = winograd_weight(w, m) (csrc/ops/winograd.cpp),
// float32 (alpha^2, C, K); given a raw weight they transform it per call into a U
// allocated here. Likewise the tensor-core algorithm takes weight = tensor_core_weight(w)
// (csrc/ops/tensor_core_weight.cpp), (K, 3, 3, Cp) in x's dtype, and lays a raw weight out
// per call.
#include <ATen/Context.h>
#include <torch/library.h>

#include <string>

#include "../common/backends.h"
#include "../common/conv3x3_implicit_gemm_plan.h"
#include "../common/conv3x3_tables.h"
#include "../common/op_support.h"
#include "conv3x3.h"
#include "tensor_core_layout.h"
#include "winograd.h"

namespace vk {
namespace {

using Conv3x3Launcher = void (*)(const Conv3x3Args&);

struct Conv3x3Algorithm {
  const char* name;
  Conv3x3Launcher cuda;
  Conv3x3Launcher emu;
  int winograd_tile = 0;  // m of F(m x m, 3x3); 0: not Winograd (weight is used as it is)
  // Tensor-core algorithms take fp16/bf16, or fp32 with TF32 math where TF32 is allowed
  // (tf32_allowed), NHWC activations with C a multiple of 8 and the weight as (K, 3, 3,
  // C): the op prepares those (see run_tensor_core).
  bool tensor_core = false;
};

// Every algorithm this build has. Keep vggkern/ops.py's _CONV3X3_ALGORITHMS in step.
// "auto" resolves by conv3x3_auto (the measured table; with an empty one, the first).
const Conv3x3Algorithm kConv3x3Algorithms[] = {
    {"direct", VK_CUDA_LAUNCHER(cuda::conv3x3_direct), &emu::conv3x3_direct},
    {"winograd_f2x2", VK_CUDA_LAUNCHER(cuda::conv3x3_winograd_f2x2), &emu::conv3x3_winograd_f2x2, 2},
    {"winograd_f4x4", VK_CUDA_LAUNCHER(cuda::conv3x3_winograd_f4x4), &emu::conv3x3_winograd_f4x4, 4},
    {"implicit_gemm", VK_CUDA_LAUNCHER(cuda::conv3x3_implicit_gemm), &emu::conv3x3_implicit_gemm, 0, true},
};

const Conv3x3Algorithm& conv3x3_algorithm(const std::string& name, const char* op) {
  std::string valid = "\"auto\"";
  for (const auto& a : kConv3x3Algorithms) {
    if (name == a.name) return a;
    valid += std::string(", \"") + a.name + "\"";
  }
  TORCH_CHECK_VALUE(false, op, ": unknown algo \"", name, "\"; expected one of ", valid);
}

void check_same(const at::Tensor& t, const at::Tensor& x, const char* op, const char* arg) {
  TORCH_CHECK_VALUE(t.scalar_type() == x.scalar_type(), op, ": expected ", arg, " of the same dtype as x (",
                    dtype_name(x.scalar_type()), "), got ", dtype_name(t.scalar_type()));
  TORCH_CHECK_VALUE(t.device() == x.device(), op, ": expected ", arg, " on the same device as x (", x.device(),
                    "), got ", t.device());
}

// y's values rounded to TF32 in place, as cvt.rna.tf32.f32 rounds them (kernels/
// tensor_core.cuh, to_tf32): on the bits, + half an ulp of 10 mantissa bits, then the low 13
// bits cleared; Inf and NaN kept (a finite value may round up to Inf, as cvt.rna's does).
void round_to_tf32_(at::Tensor& y) {
  at::Tensor bits = y.view(at::kInt);
  const at::Tensor finite = bits.bitwise_and(0x7f800000).ne(0x7f800000);
  bits.copy_(at::where(finite, bits.add(0x1000).bitwise_and(~0x1fff), bits));
}

}  // namespace

// torch's own conv asks the same question (allowTF32CuDNN(CONV)), which unlike the
// operator-less query does not fail when the conv and RNN settings differ.
bool tf32_allowed(std::optional<bool> allow_tf32) {
  return allow_tf32.has_value() ? *allow_tf32 : at::globalContext().allowTF32CuDNN(at::Float32Op::CONV);
}

const char* conv3x3_auto(DType dtype, Layout layout, int64_t N, int64_t C, int64_t H, int64_t W, int64_t K,
                         bool pool, bool tf32) {
  const TunedTables tables = tuned_tables();
  const TunedAlgo a = tuned_auto(tables.autos, tables.n_autos, dtype, layout, N, C, K, H, W, pool, tf32);
  return a == TunedAlgo::implicit_gemm ? "implicit_gemm" : kConv3x3Algorithms[0].name;
}

namespace {

// NCHW calls to the tensor-core algorithm: y is written NCHW by the kernel's epilogue,
// or with VGGKERN_IMPLICIT_GEMM_NCHW_Y=convert written NHWC and converted after (the
// earlier path, kept so that a GPU run measures the two: benchmarks/cases.py).
bool nchw_y_direct() { return !env_switch("VGGKERN_IMPLICIT_GEMM_NCHW_Y", "direct", "convert", "convert"); }

// A tensor-core algorithm: NCHW input is converted to channels_last at the boundary
// and C zero-padded to a multiple of 8 (VGG's first layer: 3 -> 8), in one pass of our
// own kernel (tensor_core_input_layout); y is written NCHW by the kernel (nchw_y_direct).
// A raw weight is laid out (K, 3, 3, Cp) by tensor_core_layout (one launch, whatever
// its strides; float32 rounded to TF32 there, so no main loop converts it), except a
// 16-bit one already so (channels_last with C a multiple of 8). A laid-out weight
// (`laid_out`: tensor_core_weight's, as nn.Conv3x3 caches it) is used as it is, float32
// not rounded again. Copies only where needed.
at::Tensor run_tensor_core(const Conv3x3Algorithm& algorithm, const at::Tensor& x, const at::Tensor& weight,
                           bool laid_out, const at::Tensor& bias, bool relu, bool pool, DType dtype,
                           std::optional<bool> allow_tf32, bool x_tf32, bool y_tf32, const char* op) {
  // float32 runs with TF32 math (inputs rounded to 10 mantissa bits), so only where the
  // caller allows it, as cuDNN does. vggkern/ops.py words the same refusal.
  TORCH_CHECK_VALUE(dtype != DType::float32 || tf32_allowed(allow_tf32), op, ": algo \"", algorithm.name,
                    "\": float32 on tensor cores needs TF32: allow it with torch.backends.cudnn.allow_tf32 = True "
                    "or allow_tf32=True, or use algo=\"direct\"");
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3), K = weight.size(0);
  const int64_t Cp = tensor_core_channels(C);
  const at::MemoryFormat format = x.suggest_memory_format();
  const bool y_nchw = format == at::MemoryFormat::Contiguous && nchw_y_direct();
  at::Tensor y = at::empty({N, K, pool ? H / 2 : H, pool ? W / 2 : W},
                           x.options().memory_format(y_nchw ? format : at::MemoryFormat::ChannelsLast));
  if (y.numel() == 0) return y.contiguous(format);
  poison_output(y);
  // x channels_last, C zero-padded to Cp, 16-byte aligned (cp.async reads it in 16-byte
  // chunks: a misaligned address faults on the GPU): x itself where it is so already,
  // else laid out in one pass (tensor_core_input_layout, whatever x's strides).
  const bool ready = Cp == C && x.is_contiguous(at::MemoryFormat::ChannelsLast) && aligned_to(x.const_data_ptr(), 16);
  const at::Tensor xc = ready ? x : tensor_core_input_layout(x, op);
  at::Tensor wc;  // (K, 3, 3, Cp) dense, 16-byte aligned (cp.async's chunks, as x's)
  if (laid_out) {
    wc = weight.contiguous();
    if (!aligned_to(wc.const_data_ptr(), 16)) wc = wc.clone(at::MemoryFormat::Contiguous);
  } else {
    wc = weight.permute({0, 2, 3, 1});  // used as it is only if 16-bit and already so
    if (dtype == DType::float32 || Cp != C || !wc.is_contiguous() || !aligned_to(wc.const_data_ptr(), 16))
      wc = tensor_core_layout(weight, op);
  }
  Conv3x3Args args{xc.const_data_ptr(), wc.const_data_ptr(), bias.defined() ? bias.const_data_ptr() : nullptr,
                   y.data_ptr(), dtype, Layout::nhwc, N, Cp, H, W, K, relu, pool, nullptr};
  args.y_nchw = y_nchw;
  args.x_tf32 = x_tf32, args.y_tf32 = y_tf32;  // float32 only (conv3x3 checks)
  args.sm_count = sm_count_of(x);
  args.wgmma = wgmma_on(x);
  args.smem_optin = smem_optin_of(x);
  // The plan (tile, split-K, stream-K: conv3x3_implicit_gemm_plan.h), chosen once here for
  // the launch, and split-K's fp32 partial sums where it splits, or stream-K's fixup slots
  // and arrival counters (zero).
  const ImplicitGemmPlan plan = implicit_gemm_plan(args);
  args.plan = &plan;
  const int64_t workspace = plan.workspace_floats(K);
  at::Tensor partial, counters;
  if (workspace > 0) {
    partial = at::empty({workspace}, x.options().dtype(at::kFloat));
    poison_output(partial);  // every element read must have been written
    args.workspace = partial.data_ptr<float>();
  }
  if (plan.fixup_counters() > 0) {
    counters = at::zeros({plan.fixup_counters()}, x.options().dtype(at::kInt));
    args.fixup_counters = counters.data_ptr<int32_t>();
  }
  launch_on_device(x, args, algorithm.cuda, algorithm.emu, op);
  return y.contiguous(format);  // a no-op where the kernel wrote y in x's format
}

at::Tensor conv3x3(const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& bias, bool relu,
                   bool pool, c10::string_view algo, std::optional<bool> allow_tf32, bool x_tf32, bool y_tf32) {
  constexpr const char* op = "vggkern.conv3x3";
  const DType dtype = check_activation(x, op);
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  TORCH_CHECK_VALUE(H >= 1 && W >= 1, op, ": expected x with H >= 1 and W >= 1, got shape ", x.sizes());
  TORCH_CHECK_VALUE(!pool || (H >= 2 && W >= 2), op, ": pool=True: expected x with H >= 2 and W >= 2 for a 2x2 window, ",
                    "got H=", H, ", W=", W);
  for (const auto& [name, set] : {std::pair<const char*, bool>{"x_tf32", x_tf32}, {"y_tf32", y_tf32}})
    TORCH_CHECK_VALUE(!set || dtype == DType::float32, op, ": ", name, "=True: expected x of dtype float32 (TF32 ",
                      "values are float32), got ", dtype_name(x.scalar_type()));
  TORCH_CHECK_VALUE(weight.defined(), op, ": expected weight to be a tensor, got None");
  std::string name(algo);
  const bool laid_out_shape = is_tensor_core_layout(weight);
  // A laid-out weight (tensor_core_weight's) makes "auto" the one algorithm that takes it.
  if (name == "auto" && laid_out_shape) name = "implicit_gemm";
  if (name == "auto")  // a raw weight's K; anything else matches no table entry (and then fails as direct's)
    name = conv3x3_auto(dtype, layout_of(x.suggest_memory_format()), N, C, H, W, weight.dim() == 4 ? weight.size(0) : 0,
                        pool, tf32_allowed(allow_tf32));
  const Conv3x3Algorithm& algorithm = conv3x3_algorithm(name, op);
  const bool laid_out = algorithm.tensor_core && laid_out_shape;
  // Winograd algorithms also take the pre-transformed weight U = winograd_weight(weight,
  // m): float32 (alpha^2, C, K), told apart from a raw weight by its 3 dimensions.
  const int64_t m = algorithm.winograd_tile, P = (m + 2) * (m + 2);
  const bool pre_transformed = m != 0 && weight.dim() == 3;
  int64_t K;
  if (pre_transformed) {
    TORCH_CHECK_VALUE(weight.size(0) == P && weight.size(1) == C, op, ": expected weight of shape [K, C, 3, 3], or ",
                      "winograd_weight(weight, ", m, ") of shape [", P, ", C, K], with C=", C, " matching x, got ",
                      weight.sizes());
    K = weight.size(2);
    TORCH_CHECK_VALUE(K >= 1, op, ": expected weight with at least one output channel (K >= 1), got ",
                      weight.sizes());
    TORCH_CHECK_VALUE(weight.scalar_type() == at::kFloat, op, ": expected a pre-transformed weight (winograd_weight) ",
                      "of dtype float32, got ", dtype_name(weight.scalar_type()));
    TORCH_CHECK_VALUE(weight.device() == x.device(), op, ": expected weight on the same device as x (", x.device(),
                      "), got ", weight.device());
  } else {
    const bool raw = weight.dim() == 4 && weight.size(1) == C && weight.size(2) == 3 && weight.size(3) == 3;
    TORCH_CHECK_VALUE(raw || (laid_out && weight.size(3) == tensor_core_channels(C)), op,
                      ": expected weight of shape [K, C, 3, 3] with C=", C, " matching x",
                      m != 0 ? ", or winograd_weight(weight, " + std::to_string(m) + ") of shape [" +
                                   std::to_string(P) + ", C, K]"
                      : algorithm.tensor_core ? ", or tensor_core_weight(weight) of shape [K, 3, 3, " +
                                                    std::to_string(tensor_core_channels(C)) + "]"
                                              : std::string(),
                      ", got ", weight.sizes());
    K = weight.size(0);
    TORCH_CHECK_VALUE(K >= 1, op, ": expected weight with at least one output channel (K >= 1), got ",
                      weight.sizes());
    check_same(weight, x, op, "weight");
  }
  if (bias.has_value()) {
    TORCH_CHECK_VALUE(bias->dim() == 1 && bias->size(0) == K, op, ": expected bias of shape [K] with K=", K,
                      " matching weight, got ", bias->sizes());
    check_same(*bias, x, op, "bias");
  }
  const at::Tensor bc = bias.has_value() ? bias->contiguous() : at::Tensor();
  // allow_tf32 matters only to the tensor-core algorithms; the others compute fp32 in fp32.
  if (algorithm.tensor_core)
    return run_tensor_core(algorithm, x, weight, laid_out, bc, relu, pool, dtype, allow_tf32, x_tf32, y_tf32, op);

  const at::MemoryFormat format = x.suggest_memory_format();
  const at::Tensor xc = x.contiguous(format);
  const at::Tensor wc = weight.contiguous();
  at::Tensor y = at::empty({N, K, pool ? H / 2 : H, pool ? W / 2 : W}, x.options().memory_format(format));
  if (y.numel() == 0) return y;
  poison_output(y);

  Conv3x3Args args{xc.const_data_ptr(), wc.const_data_ptr(), bc.defined() ? bc.const_data_ptr() : nullptr,
                   y.data_ptr(), dtype, layout_of(format), N, C, H, W, K, relu, pool, nullptr};
  at::Tensor u;  // the Winograd algorithms' U: given, or transformed here for this call (a workspace)
  if (m != 0) {
    u = pre_transformed ? wc : winograd_weight_transform(wc, m, op);
    args.winograd_u = u.const_data_ptr<float>();
  }
  launch_on_device(x, args, algorithm.cuda, algorithm.emu, op);
  // These algorithms compute float32 in fp32 (x_tf32 changes nothing there); y_tf32 is a
  // pass over y after them (implicit_gemm's epilogue rounds instead: models ask only that).
  if (y_tf32) round_to_tf32_(y);
  return y;
}

}  // namespace
}  // namespace vk

TORCH_LIBRARY_IMPL(vggkern, CPU, m) { m.impl("conv3x3", &vk::conv3x3); }
TORCH_LIBRARY_IMPL(vggkern, CUDA, m) { m.impl("conv3x3", &vk::conv3x3); }
