// Which index type (int32_t or int64_t) each launcher's dispatch picks, at the sizes
// where it must change: the last shape whose every offset fits in 31 bits runs the
// 32-bit kernel, one more image the 64-bit one. Nothing runs: the launcher below only
// records the instantiation each launch named (no tensor of 2^31 elements is made; the
// kernels' 64-bit instantiations are tested on data by the int64 index tests in Python).
#include <cstdint>
#include <map>
#include <string>
#include <type_traits>

#include "../../csrc/common/conv3x3_direct_dispatch.h"
#include "../../csrc/common/conv3x3_implicit_gemm_dispatch.h"
#include "../../csrc/common/conv3x3_implicit_gemm_plan.h"
#include "../../csrc/common/conv3x3_winograd_dispatch.h"
#include "../../csrc/common/maxpool2x2_dispatch.h"
#include "../../csrc/common/tensor_core_input_dispatch.h"
#include "../../csrc/emu/cuda_types.h"
#include "harness.h"

namespace {

// The index width of a kernel parameter: an Index itself (maxpool's sizes) or a
// parameter struct templated on it (XxxParams<Index>); 0 for anything else.
template <class P>
constexpr int index_bits() {
  if constexpr (std::is_same_v<P, int32_t>) return 32;
  if constexpr (std::is_same_v<P, int64_t>) return 64;
  return 0;
}
template <class P>
struct ParamBits : std::integral_constant<int, index_bits<P>()> {};
template <template <class> class S, class I>
struct ParamBits<S<I>> : std::integral_constant<int, index_bits<I>()> {};

// Records, per kernel name, the index width of its launch's instantiation.
struct Recorder {
  std::map<std::string, int>* bits;
  template <class... Params, class... Args>
  void operator()(const char* name, void (*)(Params...), const vk::LaunchGeometry&, Args...) const {
    int b = 0;
    ((b = b ? b : ParamBits<std::remove_cv_t<Params>>::value), ...);
    (*bits)[name] = b;
  }
};

alignas(16) char dummy[64];  // every tensor's pointer: nothing is read or written

vk::Conv3x3Args conv_args(int64_t N, int64_t C, int64_t H, int64_t K, bool pool, vk::Layout layout) {
  vk::Conv3x3Args a{dummy, dummy, dummy, dummy, vk::DType::float16, layout, N, C, H, H, K, true, pool, nullptr};
  a.winograd_u = reinterpret_cast<const float*>(dummy);
  a.workspace = reinterpret_cast<float*>(dummy);
  a.fixup_counters = reinterpret_cast<int32_t*>(dummy);
  return a;
}

// N * per_image < 2^31 for N = last, not for last + 1.
int64_t last_batch_below_2_31(int64_t per_image) { return ((int64_t(1) << 31) - 1) / per_image; }

}  // namespace

// VGG's conv1_2 (C = K = 64, 224 x 224): x and y of 3,211,264 elements an image, so
// 668 images fit in 31 bits and 669 do not (the largest realistic batch, 256, is far
// below). Pooled, y is a quarter: x still decides.
EMU_TEST(index_width_direct_and_winograd_at_the_2_31_boundary) {
  const int64_t per_image = 64 * 224 * 224, last = last_batch_below_2_31(per_image);
  CHECK(last == 668);
  for (bool pool : {false, true}) {
    for (int64_t n : {last, last + 1}) {
      const int want = n == last ? 32 : 64;
      std::map<std::string, int> bits;
      vk::conv3x3_direct_dispatch(conv_args(n, 64, 224, 64, pool, vk::Layout::nchw), Recorder{&bits});
      CHECK(bits.at("conv3x3_direct_kernel") == want);
      vk::conv3x3_winograd_dispatch<2>(conv_args(n, 64, 224, 64, pool, vk::Layout::nchw), Recorder{&bits});
      CHECK(bits.at("conv3x3_winograd_f2x2_kernel") == want);
    }
  }
  // F(4x4): its tile indices run over N * (H + 4) * (W + 4), which crosses first at C = 1.
  const int64_t tiles_last = last_batch_below_2_31(228 * 228);
  for (int64_t n : {tiles_last, tiles_last + 1}) {
    std::map<std::string, int> bits;
    vk::conv3x3_winograd_dispatch<4>(conv_args(n, 1, 224, 1, false, vk::Layout::nchw), Recorder{&bits});
    CHECK(bits.at("conv3x3_winograd_f4x4_kernel") == (n == tiles_last ? 32 : 64));
  }
}

EMU_TEST(index_width_maxpool_and_tensor_core_input_at_the_2_31_boundary) {
  const int64_t last = last_batch_below_2_31(64 * 224 * 224);
  for (int64_t n : {last, last + 1}) {
    std::map<std::string, int> bits;
    vk::maxpool2x2_dispatch(vk::Maxpool2x2Args{dummy, dummy, vk::DType::float16, vk::Layout::nchw, n, 64, 224, 224,
                                               nullptr},
                            Recorder{&bits});
    CHECK(bits.size() == 1 && bits.begin()->second == (n == last ? 32 : 64));
  }
  // conv1_1's x, C = 3 padded to 8: out's N * H * W * 8 decides (x's reach is smaller).
  const int64_t padded_last = last_batch_below_2_31(8 * 224 * 224);
  for (int64_t n : {padded_last, padded_last + 1}) {
    std::map<std::string, int> bits;
    vk::TensorCoreInputArgs a{};
    a.x = dummy, a.out = dummy, a.dtype = vk::DType::float16;
    a.N = n, a.C = 3, a.H = 224, a.W = 224, a.Cp = 8;
    a.stride[0] = 3 * 224 * 224, a.stride[1] = 224 * 224, a.stride[2] = 224, a.stride[3] = 1;
    vk::tensor_core_input_dispatch(a, Recorder{&bits});
    CHECK(bits.size() == 1 && bits.begin()->second == (n == padded_last ? 32 : 64));
  }
}

// implicit_gemm (NHWC) on its plan's tile: conv1_2's x and y decide as above; and the
// weight alone, K * 9 * C, where one image is small.
EMU_TEST(index_width_implicit_gemm_at_the_2_31_boundary) {
  const int64_t last = last_batch_below_2_31(64 * 224 * 224);
  for (bool pool : {false, true}) {
    for (int64_t n : {last, last + 1}) {
      std::map<std::string, int> bits;
      vk::conv3x3_implicit_gemm_dispatch(conv_args(n, 64, 224, 64, pool, vk::Layout::nhwc), Recorder{&bits});
      CHECK(bits.at("conv3x3_implicit_gemm_kernel") == (n == last ? 32 : 64));
    }
  }
  // K * 9 * C: C = 4096, K = 58254 is 2,147,450,880 (< 2^31); K = 58255 crosses.
  for (int64_t k : {int64_t(58254), int64_t(58255)}) {
    std::map<std::string, int> bits;
    vk::conv3x3_implicit_gemm_dispatch(conv_args(1, 4096, 2, k, false, vk::Layout::nhwc), Recorder{&bits});
    CHECK(bits.at("conv3x3_implicit_gemm_kernel") == (k == 58254 ? 32 : 64));
  }
}
