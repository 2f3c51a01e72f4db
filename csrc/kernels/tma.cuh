// The tensor memory accelerator (TMA, sm_90) behind small wrappers with two bodies: inline
// PTX under nvcc, and the SIMT emulator's model of the same instruction on the CPU
// (csrc/emu/tma_emu.h says what it models and checks).
//
//   mbar_init(bar, count)         mbarrier.init: a 64-bit barrier in shared memory that
//                                 completes a phase once `count` arrivals and the bytes
//                                 they announced have come; then mbar_init_fence() and
//                                 a __syncthreads() before any other thread uses it.
//   mbar_arrive(bar)              mbarrier.arrive (release)
//   mbar_arrive_expect_tx(bar, n) mbarrier.arrive.expect_tx: announces n bytes of tensor
//                                 loads to come in this phase, and arrives
//   mbar_wait(bar, parity)        waits (mbarrier.try_wait.parity in a loop) until the
//                                 phase of that parity has completed (acquire): phase k
//                                 has parity k % 2, so a ring's slice i waits with
//                                 parity (i / stages) % 2
//   tma_load_2d(dst, map, c0, c1, bar)
//                                 cp.async.bulk.tensor.2d ... tile: the box at element
//                                 (c0 innermost, c1) of a 2-D tensor map, zeros where it
//                                 leaves the tensor; its bytes complete on bar
//   tma_load_im2col(dst, map, c, w, h, n, dw, dh, bar)
//                                 cp.async.bulk.tensor.4d ... im2col: pixels_per_column
//                                 pixels of an NHWC tensor from (n, h, w) on, walked W
//                                 first through the map's bounding box, channels_per_pixel
//                                 channels from c of each pixel read at (h + dh, w + dw),
//                                 zeros outside the image; one row of shared memory each
//   tma_store_2d(map, c0, c1, src)
//                                 cp.async.bulk.tensor.2d.global.shared::cta ... tile: the
//                                 box at (c0, c1) of a 2-D tensor map, from shared memory
//                                 laid out as a load would leave it; the box's parts
//                                 outside the tensor are not written. Asynchronous: src is
//                                 read some time before tma_store_wait_read() returns, so
//                                 it must be written (and fence_proxy_async()'d, by every
//                                 writer, before a barrier) first and rewritten only after
//                                 that wait; tma_store_commit() closes a group of them
//                                 (bulk async-groups: the issuing thread's own)
//   tma_store_wait_read()          cp.async.bulk.wait_group.read 0: every committed store
//                                 of this thread has read its shared memory
//   tma_store_wait()               cp.async.bulk.wait_group 0: ... and written global memory
//                                 (before the block ends: its shared memory goes with it)
//
// The tensor maps (TensorMap: the driver's CUtensorMap, or the emulator's) are made on the
// host by encode_rows / encode_conv3x3_im2col below and passed inside the kernel's
// parameters, which must then be `const __grid_constant__` (VK_GRID_CONSTANT): the TMA
// unit reads the map from parameter space by address. Loads use the 64-byte swizzle
// (64-byte rows, 16-byte chunk c of row r at chunk c ^ ((r / 2) % 4)): wgmma's operand
// layout (tensor_core.cuh, smem_desc_k_sw64); encode_rows also makes 128-byte-swizzled
// maps (128-byte rows, chunk c of row r at chunk c ^ (r % 8)), which the implicit GEMM's
// stores use.
//
// A wrapper is trusted only after the same kernel matched on a real GPU once: the
// emulation encodes our reading of the PTX ISA, and only hardware can confirm it.
#pragma once

#include <cstdint>
#include <string>

#include "simt.cuh"

#if defined(__CUDACC__)
#include <cuda.h>
#define VK_GRID_CONSTANT __grid_constant__
#else
#include "../emu/tma_emu.h"
#define VK_GRID_CONSTANT
#endif

namespace vk {
namespace VK_KERNEL_NS {

#if defined(__CUDACC__)
using TensorMap = CUtensorMap;
#else
using TensorMap = ::vk::emu::TensorMap;
#endif

// Element types a tensor map can describe here.
enum class TmaElement { f16, bf16, f32 };

#if defined(__CUDACC__)
namespace tma_detail {
inline CUtensorMapDataType data_type(TmaElement e) {
  return e == TmaElement::f16 ? CU_TENSOR_MAP_DATA_TYPE_FLOAT16
         : e == TmaElement::bf16 ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16
                                 : CU_TENSOR_MAP_DATA_TYPE_FLOAT32;
}
// The driver's entry point, found once through the runtime (no link against libcuda).
template <class Fn>
Fn driver_function(const char* name) {
  void* fn = nullptr;
  cudaDriverEntryPointQueryResult found{};
  if (cudaGetDriverEntryPointByVersion(name, &fn, 12000, cudaEnableDefault, &found) != cudaSuccess ||
      found != cudaDriverEntryPointSuccess)
    fn = nullptr;
  return reinterpret_cast<Fn>(fn);
}
inline std::string result(CUresult r, const char* what) {
  return r == CUDA_SUCCESS ? std::string() : std::string(what) + " failed (CUresult " + std::to_string(int(r)) + ")";
}
}  // namespace tma_detail
#endif

inline int tma_element_bytes(TmaElement e) { return e == TmaElement::f32 ? 4 : 2; }

// A row-major matrix (rows, cols) of elements, loaded or stored as boxes of box_rows x
// box_cols (box_cols x element = `swizzle` bytes, the swizzle's row: 64 or 128). Returns ""
// or why it cannot be made (the driver's checks: cols x element a multiple of 16 bytes,
// base 16-byte aligned, ...).
inline std::string encode_rows(TensorMap* map, const void* base, TmaElement e, int64_t rows, int64_t cols,
                               uint32_t box_cols, uint32_t box_rows, int swizzle = 64) {
  if (swizzle != 64 && swizzle != 128) return "encode_rows: a 64- or 128-byte swizzle, not " + std::to_string(swizzle);
  const uint64_t dims[2] = {uint64_t(cols), uint64_t(rows)};
  const uint64_t stride = uint64_t(cols) * tma_element_bytes(e);
#if defined(__CUDACC__)
  using Fn = decltype(&cuTensorMapEncodeTiled);
  static const Fn encode = tma_detail::driver_function<Fn>("cuTensorMapEncodeTiled");
  if (encode == nullptr) return "the driver has no cuTensorMapEncodeTiled";
  const cuuint32_t box[2] = {box_cols, box_rows}, unit[2] = {1, 1};
  return tma_detail::result(
      encode(map, tma_detail::data_type(e), 2, const_cast<void*>(base), dims, &stride, box, unit,
             CU_TENSOR_MAP_INTERLEAVE_NONE, swizzle == 64 ? CU_TENSOR_MAP_SWIZZLE_64B : CU_TENSOR_MAP_SWIZZLE_128B,
             CU_TENSOR_MAP_L2_PROMOTION_L2_128B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE),
      "cuTensorMapEncodeTiled");
#else
  *map = TensorMap{};
  map->mode = TensorMap::Mode::tiled;
  map->rank = 2;
  map->elem_bytes = tma_element_bytes(e);
  map->base = static_cast<const unsigned char*>(base);
  map->dims[0] = dims[0], map->dims[1] = dims[1];
  map->strides[0] = uint64_t(map->elem_bytes), map->strides[1] = stride;
  map->box[0] = box_cols, map->box[1] = box_rows;
  map->swizzle = swizzle;
  return "";
#endif
}

// x (N, H, W, C), NHWC, for a 3 x 3 convolution with padding 1: the bounding box of the
// pixels' base positions runs from -1 (the padding) to dims - 2 (upper corner -1), so the
// base of output pixel (h, w) is (h - 1, w - 1) and tap (r, s) reads it at offsets (s, r);
// `pixels` pixels of `channels` channels (x 64 bytes) per load. row_step 2: the map views
// rows first_row, first_row + 2, ... (H even: H / 2 of them) as an (N, H / 2, W, C) tensor,
// so that its row h' is x's row 2h' + first_row, its rows -1 and H / 2 are zeros, and an
// offset r reads view row h' - 1 + r. Returns "" or why not.
inline std::string encode_conv3x3_im2col(TensorMap* map, const void* x, TmaElement e, int64_t N, int64_t H, int64_t W,
                                         int64_t C, uint32_t channels, uint32_t pixels, int row_step = 1,
                                         int first_row = 0) {
  const int bytes = tma_element_bytes(e);
  if (row_step < 1 || first_row < 0 || first_row >= row_step || H % row_step != 0)
    return "im2col map: rows " + std::to_string(first_row) + " + " + std::to_string(row_step) + "k of " +
           std::to_string(H) + " are not a view of equal rows";
  const uint64_t dims[4] = {uint64_t(C), uint64_t(W), uint64_t(H / row_step), uint64_t(N)};
  const uint64_t strides[3] = {uint64_t(C) * bytes, uint64_t(row_step * W * C) * bytes, uint64_t(H * W * C) * bytes};
  x = static_cast<const unsigned char*>(x) + uint64_t(first_row * W * C) * bytes;
#if defined(__CUDACC__)
  using Fn = decltype(&cuTensorMapEncodeIm2col);
  static const Fn encode = tma_detail::driver_function<Fn>("cuTensorMapEncodeIm2col");
  if (encode == nullptr) return "the driver has no cuTensorMapEncodeIm2col";
  const int lower[2] = {-1, -1}, upper[2] = {-1, -1};
  const cuuint32_t unit[4] = {1, 1, 1, 1};
  return tma_detail::result(
      encode(map, tma_detail::data_type(e), 4, const_cast<void*>(x), dims, strides, lower, upper, channels, pixels,
             unit, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_64B, CU_TENSOR_MAP_L2_PROMOTION_L2_128B,
             CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE),
      "cuTensorMapEncodeIm2col");
#else
  *map = TensorMap{};
  map->mode = TensorMap::Mode::im2col;
  map->rank = 4;
  map->elem_bytes = bytes;
  map->base = static_cast<const unsigned char*>(x);
  for (int d = 0; d < 4; ++d) map->dims[d] = dims[d];
  map->strides[0] = uint64_t(bytes);
  for (int d = 1; d < 4; ++d) map->strides[d] = strides[d - 1];
  map->box[0] = channels, map->box[1] = pixels;
  map->lower[0] = map->lower[1] = -1;
  map->upper[0] = map->upper[1] = -1;
  map->swizzle = 64;
  return "";
#endif
}

// ---- device side ----------------------------------------------------------------------

#if defined(__CUDACC__)
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
#define VK_TMA_PTX 1
#endif
__device__ __forceinline__ uint32_t tma_shared(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}
#endif

__device__ __forceinline__ void mbar_init(uint64_t* bar, uint32_t count VK_CALL_SITE) {
#if defined(VK_TMA_PTX)
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(tma_shared(bar)), "r"(count) : "memory");
#elif !defined(__CUDACC__)
  ::vk::emu::mbarrier_init(bar, count, vk_file, vk_line);
#else
  __trap();
#endif
}

// Makes the initialised barriers visible to the async proxy (the TMA unit, whose loads
// complete their bytes on them); a __syncthreads() after it makes them visible to the
// block's threads. Both fences: fence.mbarrier_init (CUTLASS's; ptxas emits nothing for it
// in a launch without clusters) and fence.proxy.async.shared::cta (the CUDA programming
// guide's TMA example, between the init and the first copy).
__device__ __forceinline__ void mbar_init_fence() {
#if defined(VK_TMA_PTX)
  asm volatile("fence.mbarrier_init.release.cluster;\n\tfence.proxy.async.shared::cta;" ::: "memory");
#elif !defined(__CUDACC__)
  ::vk::emu::mbarrier_init_fence();
#endif
}

__device__ __forceinline__ void mbar_arrive(uint64_t* bar VK_CALL_SITE) {
#if defined(VK_TMA_PTX)
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" ::"r"(tma_shared(bar)) : "memory");
#elif !defined(__CUDACC__)
  ::vk::emu::mbarrier_arrive(bar, 0, vk_file, vk_line);
#else
  __trap();
#endif
}

__device__ __forceinline__ void mbar_arrive_expect_tx(uint64_t* bar, uint32_t bytes VK_CALL_SITE) {
#if defined(VK_TMA_PTX)
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(tma_shared(bar)), "r"(bytes) : "memory");
#elif !defined(__CUDACC__)
  ::vk::emu::mbarrier_arrive(bar, bytes, vk_file, vk_line);
#else
  __trap();
#endif
}

__device__ __forceinline__ void mbar_wait(uint64_t* bar, uint32_t parity VK_CALL_SITE) {
#if defined(VK_TMA_PTX)
  uint32_t done = 0;
  do {
    asm volatile(
        "{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\nselp.u32 %0, 1, 0, p;\n}"
        : "=r"(done)
        : "r"(tma_shared(bar)), "r"(parity)
        : "memory");
  } while (!done);
#elif !defined(__CUDACC__)
  ::vk::emu::mbarrier_wait(bar, parity, vk_file, vk_line);
#else
  __trap();
#endif
}

__device__ __forceinline__ void tma_load_2d(void* dst, const TensorMap* map, int32_t c0, int32_t c1,
                                            uint64_t* bar VK_CALL_SITE) {
#if defined(VK_TMA_PTX)
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3}], [%4];" ::"r"(
          tma_shared(dst)),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(c0), "r"(c1), "r"(tma_shared(bar))
      : "memory");
#elif !defined(__CUDACC__)
  const int32_t coords[2] = {c0, c1};
  ::vk::emu::tensor_load(dst, *map, coords, nullptr, bar, vk_file, vk_line);
#else
  __trap();
#endif
}

__device__ __forceinline__ void tma_load_im2col(void* dst, const TensorMap* map, int32_t c, int32_t w, int32_t h,
                                                int32_t n, uint16_t dw, uint16_t dh, uint64_t* bar VK_CALL_SITE) {
#if defined(VK_TMA_PTX)
  asm volatile(
      "cp.async.bulk.tensor.4d.shared::cluster.global.im2col.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3, %4, "
      "%5}], [%6], {%7, %8};" ::"r"(tma_shared(dst)),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(c), "r"(w), "r"(h), "r"(n), "r"(tma_shared(bar)), "h"(dw), "h"(dh)
      : "memory");
#elif !defined(__CUDACC__)
  const int32_t coords[4] = {c, w, h, n}, offsets[2] = {dw, dh};
  ::vk::emu::tensor_load(dst, *map, coords, offsets, bar, vk_file, vk_line);
#else
  __trap();
#endif
}

__device__ __forceinline__ void tma_store_2d(const TensorMap* map, int32_t c0, int32_t c1, const void* src VK_CALL_SITE) {
#if defined(VK_TMA_PTX)
  asm volatile("cp.async.bulk.tensor.2d.global.shared::cta.tile.bulk_group [%0, {%1, %2}], [%3];" ::"l"(
                   reinterpret_cast<uint64_t>(map)),
               "r"(c0), "r"(c1), "r"(tma_shared(src))
               : "memory");
#elif !defined(__CUDACC__)
  const int32_t coords[2] = {c0, c1};
  ::vk::emu::tensor_store(src, *map, coords, vk_file, vk_line);
#else
  __trap();
#endif
}

__device__ __forceinline__ void tma_store_commit() {
#if defined(VK_TMA_PTX)
  asm volatile("cp.async.bulk.commit_group;" ::: "memory");
#elif !defined(__CUDACC__)
  ::vk::emu::tensor_store_commit();
#else
  __trap();
#endif
}

__device__ __forceinline__ void tma_store_wait_read() {
#if defined(VK_TMA_PTX)
  asm volatile("cp.async.bulk.wait_group.read 0;" ::: "memory");
#elif !defined(__CUDACC__)
  ::vk::emu::tensor_store_wait();
#else
  __trap();
#endif
}

__device__ __forceinline__ void tma_store_wait() {
#if defined(VK_TMA_PTX)
  asm volatile("cp.async.bulk.wait_group 0;" ::: "memory");
#elif !defined(__CUDACC__)
  ::vk::emu::tensor_store_wait();
#else
  __trap();
#endif
}

}  // namespace VK_KERNEL_NS
}  // namespace vk
