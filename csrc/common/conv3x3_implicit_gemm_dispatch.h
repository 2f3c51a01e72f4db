// conv3x3_implicit_gemm's launch: the plan the op chose (block tile and split-K, from
// conv3x3_implicit_gemm_plan.h, passed as args.plan), element type and math (fp16 and
// bf16 on their own mma; fp32 with TF32 math: the op sends fp32 here only when TF32 is
// allowed), index type, and geometry: 3 dtypes x (4 mma.sync + 5 wgmma tiles) x 2 index
// types = 54 instantiations (and the split-K reduction per dtype and index type).
// Compiled into both backends, which pass their own Launcher, so the GPU and the
// emulator run the same choice. Expects what the op prepares: x NHWC, y NHWC or (y_nchw)
// NCHW, weight (K, 3, 3, C), C a multiple of 8.
#pragma once

#include <algorithm>
#include <climits>
#include <cstdint>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <utility>

#include "../kernels/conv3x3_implicit_gemm.cuh"
#include "args.h"
#include "conv3x3_implicit_gemm_plan.h"
#include "launch_geometry.h"

namespace vk {

// K_gemm's slice order (the kernel's "K order"): VGGKERN_IMPLICIT_GEMM_K_ORDER unset or
// "taps_outer" (the default: tap by tap) or "taps_inner" (each channel slice's 9 taps in
// turn, where C is a multiple of the slice; kept so that a GPU run measures the two:
// benchmarks/cases.py). Read per launch, as the tests toggle it.
inline bool implicit_gemm_taps_inner() {
  return env_switch("VGGKERN_IMPLICIT_GEMM_K_ORDER", "taps_inner", "taps_outer", "taps_inner");
}

// The ws tiles' copies (ws128x256, ws128x128): tensor loads (TMA) where the call allows
// them (VGGKERN_IMPLICIT_GEMM_TMA unset, the default), required ("on": an error where the
// call does not allow them, so a test or a timing knows which path ran), cp.async ("off";
// kept so that a GPU run measures the two: benchmarks/cases.py), or tensor loads where
// allowed but not with the fused pool ("unpooled": what benchmarks/device_run.sh sets when
// only the pooled layers' tensor loads failed their probe, so that the others are still
// measured). Read per launch; other tiles ignore its value. Each ws launch records the path
// it took and why (record_implicit_gemm_copies, conv3x3_implicit_gemm_plan.h).
enum class TmaKnob { where_allowed, required, off, unpooled };
inline TmaKnob implicit_gemm_tma_knob() {
  const char* e = std::getenv("VGGKERN_IMPLICIT_GEMM_TMA");
  const std::string v = e != nullptr ? e : "";
  if (v.empty()) return TmaKnob::where_allowed;
  if (v == "on") return TmaKnob::required;
  if (v == "off") return TmaKnob::off;
  if (v == "unpooled") return TmaKnob::unpooled;
  throw std::invalid_argument("vggkern.conv3x3: VGGKERN_IMPLICIT_GEMM_TMA must be \"on\", \"off\" or \"unpooled\" (or "
                              "unset), got '" + v + "'");
}

// Why a ws tile's call cannot copy by tensor loads ("" where it can): an im2col box is
// pixels in NHW order at one tap, so a slice lies within one tap (taps outer, C a multiple
// of the slice), and x is used as it is (fp32 x that the kernel rounds to TF32 in shared
// memory is not). With the pool the boxes are runs of x's even and odd rows, viewed as
// tensors of H / 2 rows (H, W even), and the tile's rows are in slab order (the kernel's M
// order), which only the persistent epilogue reads (y NHWC, no split-K). The loads'
// coordinates are 32-bit (the weight's K position up to 9C, its row k0 < K, and x's pixel
// n, h, w), so each must be under 2^31 (the driver would take a map of up to 2^32 rows).
inline std::string implicit_gemm_tma_refusal(const Conv3x3Args& a, const ImplicitGemmPlan& plan, bool taps_inner,
                                             bool x_tf32, int slice) {
  if (9 * a.C > INT32_MAX || a.K > INT32_MAX || a.N > INT32_MAX || a.H > INT32_MAX || a.W > INT32_MAX)
    return "(9C, K, N, H, W) = (" + std::to_string(9 * a.C) + ", " + std::to_string(a.K) + ", " +
           std::to_string(a.N) + ", " + std::to_string(a.H) + ", " + std::to_string(a.W) +
           "): one of 2^31 or more (the tensor loads' coordinates are 32-bit)";
  if (a.pool && (a.H % 2 != 0 || a.W % 2 != 0))
    return "the fused pool on an odd map (" + std::to_string(a.H) + " x " + std::to_string(a.W) +
           ": the even and odd rows' views need H and W even)";
  if (a.pool && a.y_nchw) return "the fused pool with y NCHW (its epilogue reads the windows in window order)";
  if (a.pool && plan.splits > 1) return "the fused pool with split-K (its partial sums are reduced in window order)";
  if (taps_inner) return "K taps inner (a slice must lie within one tap)";
  if (a.C % slice != 0) return "C = " + std::to_string(a.C) + ", not a multiple of the " + std::to_string(slice) + "-channel slice";
  if (a.dtype == DType::float32 && !x_tf32) return "fp32 x not yet TF32 (the kernel rounds it in shared memory)";
  return "";
}

// Why a ws tile's call cannot store y by tensor stores from its epilogue's staging (""
// where it can): only the persistent epilogue stages y (y NHWC, no split-K: split-K writes
// fp32 partial sums), of 16-bit elements (fp32 y keeps its float2 stores: whole sectors
// already, and its staging would not fit beside the stages), in rows of a multiple of 16
// bytes (K a multiple of 8) from a 16-byte aligned y, under 2^31 rows; VGGKERN_IMPLICIT_GEMM_TMA_STORE=off
// keeps the pairs (so that a GPU run measures the two; benchmarks/cases.py). Read per launch.
inline std::string implicit_gemm_store_refusal(const Conv3x3Args& a, const ImplicitGemmPlan& plan) {
  const bool off = env_switch("VGGKERN_IMPLICIT_GEMM_TMA_STORE", "off", "on", "off");
  if (a.y_nchw) return "y NCHW (one block per item: the fp32 tile in shared memory, 16-byte stores into y's planes)";
  if (plan.splits > 1) return "split-K (fp32 partial sums)";
  if (a.dtype == DType::float32) return "fp32 y (float2 stores)";
  if (a.K % 8 != 0) return "K = " + std::to_string(a.K) + ", not a multiple of 8 (y's rows in 16-byte multiples)";
  if (reinterpret_cast<uintptr_t>(a.y) % 16 != 0) return "y not 16-byte aligned";
  if ((a.pool ? plan.M / 4 : plan.M) > INT32_MAX) return "y of 2^31 rows or more (the stores' coordinates are 32-bit)";
  if (off) return "VGGKERN_IMPLICIT_GEMM_TMA_STORE=off";
  return "";
}

// VGGKERN_IMPLICIT_GEMM_X_CACHE (x's copies through L1) was removed, measured slower: a
// script that still sets it is told so rather than silently timing the default.
inline void implicit_gemm_refuse_removed_knobs() {
  const char* e = std::getenv("VGGKERN_IMPLICIT_GEMM_X_CACHE");
  if (e != nullptr && *e != '\0')
    throw std::invalid_argument(std::string("vggkern.conv3x3: VGGKERN_IMPLICIT_GEMM_X_CACHE was removed (x's copies "
                                            "always go past L1: through L1 measured slower on the H200); unset it, "
                                            "got '") + e + "'");
}

template <class T, VK_KERNEL_NS::MmaType kMma, int kBM, int kBN, VK_KERNEL_NS::MainLoop kLoop, class Index,
          class Launcher>
void conv3x3_implicit_gemm_run(const Conv3x3Args& a, const ImplicitGemmPlan& plan, const Launcher& launch) {
  using namespace VK_KERNEL_NS;
  using L = ImplicitGemmTiling<T, kBM, kBN, kLoop>;
  static_assert(L::kBK * sizeof(T) == 64, "the plan counts 64-byte K slices");
  if (plan.bm != L::kBM || plan.bn != L::kBN || tile_smem_bytes(plan.tile, sizeof(T)) != int64_t(L::kSmemBytes))
    throw std::logic_error("vggkern.conv3x3: implicit_gemm tile mismatch");
  if (plan.blocks() > (int64_t(1) << 31) - 1)
    throw std::invalid_argument("vggkern.conv3x3: too many blocks for one implicit_gemm launch");
  if (plan.splits > 1 && a.workspace == nullptr)
    throw std::logic_error("vggkern.conv3x3: implicit_gemm split-K needs its workspace");
  if (plan.sk.sk_tiles > 0 &&
      (!L::kStreamK || !plan.persistent || a.workspace == nullptr || a.fixup_counters == nullptr))
    throw std::logic_error("vggkern.conv3x3: implicit_gemm stream-K needs ws128x256, persistent, its workspace and "
                           "its counters");
  ImplicitGemmParams<Index> p;
  p.N = a.N, p.C = a.C, p.H = a.H, p.W = a.W, p.K = a.K;
  p.M = plan.M;
  p.k_blocks = plan.k_blocks;
  p.relu = a.relu, p.pool = a.pool;
  p.y_nchw = a.y_nchw;
  p.hw_out = a.pool ? (a.H / 2) * (a.W / 2) : a.H * a.W;
  p.splits = plan.splits;
  p.slices_per_split = static_cast<int>(plan.slices_per_split);
  p.k_slices = static_cast<int>(plan.slices);  // < 2^31 (the plan)
  p.partial = a.workspace;
  p.sk = plan.sk;
  p.fixup_counters = a.fixup_counters;
  const bool taps_inner = implicit_gemm_taps_inner();  // read (and checked) whatever C is
  implicit_gemm_refuse_removed_knobs();
  p.taps_inner = taps_inner && a.C % L::kBK == 0;
  p.x_tf32 = a.x_tf32 && a.dtype == DType::float32;
  p.y_tf32 = a.y_tf32 && a.dtype == DType::float32;
  // wgmma_ws's blocks take the work items in turn: persistent (at most one block per SM,
  // or VGGKERN_IMPLICIT_GEMM_GRID blocks; stream-K where the plan chose it) where y is
  // NHWC, whose epilogue stores from the accumulators; one block per item where y is NCHW
  // (its epilogue needs the stages).
  if (plan.persistent != (L::kWs && !a.y_nchw))
    throw std::logic_error("vggkern.conv3x3: implicit_gemm plan made for another y layout");
  p.persistent = plan.persistent;
  ImplicitGemmTensorMaps maps{};
  [[maybe_unused]] const TmaKnob knob = implicit_gemm_tma_knob();  // read (and checked) whatever the tile
  if constexpr (L::kWs) {
    std::string refusal = implicit_gemm_tma_refusal(a, plan, p.taps_inner, p.x_tf32, L::kBK);
    if (knob == TmaKnob::unpooled && a.pool) refusal = "the fused pool (VGGKERN_IMPLICIT_GEMM_TMA=unpooled)";
    const TmaElement e = a.dtype == DType::float16    ? TmaElement::f16
                         : a.dtype == DType::bfloat16 ? TmaElement::bf16
                                                      : TmaElement::f32;
    if (knob != TmaKnob::off && refusal.empty()) {
      if (!a.pool) {
        refusal = encode_conv3x3_im2col(&maps.x[0], a.x, e, a.N, a.H, a.W, a.C, L::kBK, L::kBM);
      } else {  // slab order: 8-pixel boxes of the even rows (x[0]) and the odd ones (x[1])
        for (int parity = 0; parity < 2 && refusal.empty(); ++parity)
          refusal = encode_conv3x3_im2col(&maps.x[parity], a.x, e, a.N, a.H, a.W, a.C, L::kBK, 8, 2, parity);
      }
      if (refusal.empty()) refusal = encode_rows(&maps.w, a.weight, e, a.K, 9 * a.C, L::kBK, L::kBN);
      maps.on = refusal.empty();
    }
    if (knob == TmaKnob::required && !maps.on)
      throw std::invalid_argument(std::string("vggkern.conv3x3: VGGKERN_IMPLICIT_GEMM_TMA=on, but this call's ") +
                                  implicit_gemm_tile_name(plan.tile) + " cannot copy by tensor loads: " + refusal);
    if (knob == TmaKnob::off) refusal = "VGGKERN_IMPLICIT_GEMM_TMA=off";
    // y: rows (pixels, pooled or not) by K, a box of kStoreCols channels x the tile's rows.
    std::string store_refusal = implicit_gemm_store_refusal(a, plan);
    if (store_refusal.empty())
      store_refusal = encode_rows(&maps.y, a.y, e, a.pool ? plan.M / 4 : plan.M, a.K, L::kStoreCols,
                                  a.pool ? L::kBM / 4 : L::kBM, 128);
    maps.store = store_refusal.empty();
    const std::string stream_k =
        plan.sk.sk_tiles == 0 ? "" : std::to_string(plan.sk.sk_tiles) + " of " + std::to_string(plan.m_tiles * plan.k_blocks) +
                                         " tiles on " + std::to_string(plan.sk.grid) + " blocks";
    record_implicit_gemm_copies({implicit_gemm_tile_name(plan.tile), maps.on ? "tma" : "cp_async", refusal,
                                 maps.store ? "tma" : a.y_nchw ? "nchw_tile" : "pairs", store_refusal, stream_k});
  }
  LaunchGeometry g;
  g.block.x = L::kBlockThreads;
  g.grid.x = static_cast<unsigned>(plan.grid());  // one block per item (M tile, K tile, split), split fastest, or persistent
  g.smem_bytes = L::kSmemBytes;
  launch("conv3x3_implicit_gemm_kernel", conv3x3_implicit_gemm_kernel<T, kMma, kBM, kBN, kLoop, Index>, g,
         static_cast<const T*>(a.x), static_cast<const T*>(a.weight), static_cast<const T*>(a.bias),
         static_cast<T*>(a.y), p, maps);
  if (plan.splits == 1) return;
  ImplicitGemmReduceParams<Index> r;
  using R = VK_KERNEL_NS::ImplicitGemmReduceTiling;
  r.M = plan.M, r.K = a.K, r.splits = plan.splits, r.relu = a.relu, r.pool = a.pool;
  r.k_tiles = (a.K + R::kChannels - 1) / R::kChannels;
  r.y_nchw = p.y_nchw, r.hw_out = p.hw_out, r.y_tf32 = p.y_tf32;
  LaunchGeometry rg;
  rg.block.x = R::kThreads;
  const int64_t reduce_blocks = ((a.pool ? plan.M / 4 : plan.M) + R::kPixels - 1) / R::kPixels * r.k_tiles;
  if (reduce_blocks > (int64_t(1) << 31) - 1)
    throw std::invalid_argument("vggkern.conv3x3: too many blocks for one implicit_gemm split-K reduction");
  rg.grid.x = static_cast<unsigned>(reduce_blocks);
  launch("conv3x3_implicit_gemm_reduce_kernel", conv3x3_implicit_gemm_reduce_kernel<T, Index>, rg,
         static_cast<const float*>(a.workspace), static_cast<const T*>(a.bias), static_cast<T*>(a.y), r);
}

template <class T, VK_KERNEL_NS::MmaType kMma, int kBM, int kBN, VK_KERNEL_NS::MainLoop kLoop, class Launcher>
void conv3x3_implicit_gemm_indexed(const Conv3x3Args& a, const ImplicitGemmPlan& plan, const Launcher& launch) {
  const int64_t limit = int64_t(1) << 31;
  const int64_t y_numel = a.N * a.K * a.H * a.W;  // pooled y is smaller
  const bool fits32 = !force_int64_index() && a.N * a.H * a.W * a.C < limit && a.K * 9 * a.C < limit &&
                      y_numel < limit && plan.workspace_floats(a.K) < limit;
  if (fits32) conv3x3_implicit_gemm_run<T, kMma, kBM, kBN, kLoop, int32_t>(a, plan, launch);
  else conv3x3_implicit_gemm_run<T, kMma, kBM, kBN, kLoop, int64_t>(a, plan, launch);
}

template <class T, VK_KERNEL_NS::MmaType kMma, class Launcher>
void conv3x3_implicit_gemm_typed(const Conv3x3Args& a, const ImplicitGemmPlan& plan, const Launcher& launch) {
  using VK_KERNEL_NS::MainLoop;
  switch (plan.tile) {
    case ImplicitGemmTile::m128n64:
      conv3x3_implicit_gemm_indexed<T, kMma, 128, 64, MainLoop::mma_sync>(a, plan, launch);
      break;
    case ImplicitGemmTile::m128n128:
      conv3x3_implicit_gemm_indexed<T, kMma, 128, 128, MainLoop::mma_sync>(a, plan, launch);
      break;
    case ImplicitGemmTile::m256n128:
      conv3x3_implicit_gemm_indexed<T, kMma, 256, 128, MainLoop::mma_sync>(a, plan, launch);
      break;
    case ImplicitGemmTile::m256n64:
      conv3x3_implicit_gemm_indexed<T, kMma, 256, 64, MainLoop::mma_sync>(a, plan, launch);
      break;
    case ImplicitGemmTile::wg128x128:  // one warpgroup each; the plan picks them only where wgmma_runs(a)
      conv3x3_implicit_gemm_indexed<T, kMma, 128, 128, MainLoop::wgmma>(a, plan, launch);
      break;
    case ImplicitGemmTile::wg256x64:
      conv3x3_implicit_gemm_indexed<T, kMma, 256, 64, MainLoop::wgmma_t>(a, plan, launch);
      break;
    case ImplicitGemmTile::wg128x256:  // two warpgroups
      conv3x3_implicit_gemm_indexed<T, kMma, 128, 256, MainLoop::wgmma>(a, plan, launch);
      break;
    case ImplicitGemmTile::ws128x256:  // two computing warpgroups and a producer
      conv3x3_implicit_gemm_indexed<T, kMma, 128, 256, MainLoop::wgmma_ws>(a, plan, launch);
      break;
    case ImplicitGemmTile::ws128x128:
      conv3x3_implicit_gemm_indexed<T, kMma, 128, 128, MainLoop::wgmma_ws>(a, plan, launch);
      break;
  }
}

template <class Launcher>
void conv3x3_implicit_gemm_dispatch(const Conv3x3Args& a, const Launcher& launch) {
  if (a.layout != Layout::nhwc || a.C % 8 != 0)
    throw std::invalid_argument("vggkern.conv3x3: implicit_gemm expects NHWC input with C a multiple of 8");
  if (a.N == 0 || a.K == 0 || a.H == 0 || a.W == 0) return;  // y is empty: nothing to launch
  // 16-byte cp.async of x and the weight, 16-byte vector stores of y: the op passes only
  // aligned tensors (its own copies otherwise); a C++ caller of the launcher gets this
  // error, not the GPU's misaligned-address fault.
  for (const auto& [name, p] : {std::pair<const char*, const void*>{"x", a.x}, {"weight", a.weight}, {"y", a.y}})
    if (!aligned_to(p, 16))
      throw std::invalid_argument(std::string("vggkern.conv3x3: implicit_gemm needs ") + name +
                                  "'s data 16-byte aligned");
  // The op's plan (args.plan), else (a C++ caller of the launcher) the plan computed here.
  const ImplicitGemmPlan plan = a.plan != nullptr ? *a.plan : implicit_gemm_plan(a);
  if (plan.M != (a.pool ? 4 * a.N * (a.H / 2) * (a.W / 2) : a.N * a.H * a.W) ||
      plan.slices * (64 / dtype_size(a.dtype)) < 9 * a.C || plan.k_blocks * plan.bn < a.K)
    throw std::logic_error("vggkern.conv3x3: implicit_gemm plan made for another shape");
  // A wgmma tile's kernel, built for another target than sm_90a, traps: refuse it where
  // the args say the device has no wgmma (the op's plan never names one there; the CUDA
  // launcher reads the device's answer into a C++ caller's args).
  if (is_wgmma(plan.tile) && !a.wgmma)
    throw std::invalid_argument("vggkern.conv3x3: implicit_gemm tile " + std::string(implicit_gemm_tile_name(plan.tile)) +
                                " runs only on a build for sm_90a and a compute capability 9.0 GPU (H100/H200)");
  switch (a.dtype) {
    case DType::float16:
      conv3x3_implicit_gemm_typed<__half, VK_KERNEL_NS::MmaType::f16>(a, plan, launch);
      break;
    case DType::bfloat16:
      conv3x3_implicit_gemm_typed<__nv_bfloat16, VK_KERNEL_NS::MmaType::bf16>(a, plan, launch);
      break;
    case DType::float32:  // TF32 math; whether it is allowed is the op's decision (csrc/ops/conv3x3.cpp)
      conv3x3_implicit_gemm_typed<float, VK_KERNEL_NS::MmaType::tf32>(a, plan, launch);
      break;
  }
}

}  // namespace vk
