// vggkern's kernels through their torch-free launchers (csrc/common/backends.h), as a
// C++ user without Python would call them, checked against plain loops.
#include <cmath>
#include <functional>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "../../csrc/common/backends.h"
#include "../../csrc/common/conv3x3_implicit_gemm_dispatch.h"
#include "../../csrc/common/conv3x3_implicit_gemm_plan.h"
#include "../../csrc/emu/cuda_types.h"
#include "harness.h"

namespace {

// The four layouts/shapes cover the vector and scalar paths of both kernels.
EMU_TEST(maxpool2x2_kernel_matches_loops) {
  std::mt19937 rng(3);
  std::normal_distribution<float> d;
  struct Case {
    int64_t N, C, H, W;
    vk::Layout layout;
  };
  for (const Case& c : {Case{2, 3, 7, 9, vk::Layout::nchw}, Case{1, 4, 8, 16, vk::Layout::nchw},
                        Case{2, 5, 6, 7, vk::Layout::nhwc}, Case{1, 8, 9, 4, vk::Layout::nhwc}}) {
    std::vector<float> x(c.N * c.C * c.H * c.W);
    for (float& v : x) v = d(rng);
    x[5] = std::numeric_limits<float>::quiet_NaN();
    const int64_t Ho = c.H / 2, Wo = c.W / 2;
    std::vector<float> y(c.N * c.C * Ho * Wo, -1.f);
    vk::emu::maxpool2x2(vk::Maxpool2x2Args{x.data(), y.data(), vk::DType::float32, c.layout, c.N, c.C, c.H, c.W,
                                           nullptr});
    const bool nhwc = c.layout == vk::Layout::nhwc;
    auto at = [&](int64_t n, int64_t ch, int64_t h, int64_t w, int64_t Hs, int64_t Ws) {
      return nhwc ? ((n * Hs + h) * Ws + w) * c.C + ch : ((n * c.C + ch) * Hs + h) * Ws + w;
    };
    for (int64_t n = 0; n < c.N; ++n)
      for (int64_t ch = 0; ch < c.C; ++ch)
        for (int64_t h = 0; h < Ho; ++h)
          for (int64_t w = 0; w < Wo; ++w) {
            float m = -std::numeric_limits<float>::infinity();
            bool nan = false;
            for (int dy = 0; dy < 2; ++dy)
              for (int dx = 0; dx < 2; ++dx) {
                const float v = x[at(n, ch, 2 * h + dy, 2 * w + dx, c.H, c.W)];
                nan |= std::isnan(v);
                m = std::max(m, v);
              }
            const float got = y[at(n, ch, h, w, Ho, Wo)];
            CHECK(nan ? std::isnan(got) : got == m);
          }
  }
}

}  // namespace

namespace {

// The ws tiles' tensor loads take 32-bit coordinates: a call whose K position (up to 9C)
// or K, N, H, W reaches 2^31 copies by cp.async (Index positions) instead; one just under
// passes. Shapes only (no data): C = 238,609,312 is the first multiple of the 32-channel
// slice with 9C > 2^31 - 1 (a 4.3 GB fp16 weight at K = 1).
EMU_TEST(implicit_gemm_tensor_loads_refuse_coordinates_of_2_to_the_31) {
  const int64_t big_c = 238609312;
  vk::Conv3x3Args a{nullptr, nullptr, nullptr, nullptr, vk::DType::float16, vk::Layout::nhwc, 1, big_c, 1, 1, 1,
                    false, false, nullptr};
  auto refusal = [](const vk::Conv3x3Args& args) {
    return vk::implicit_gemm_tma_refusal(args, vk::implicit_gemm_plan(args), false, false, 32);
  };
  CHECK(refusal(a) == "(9C, K, N, H, W) = (2147483808, 1, 1, 1, 1): one of 2^31 or more (the tensor loads' "
                     "coordinates are 32-bit)");
  vk::Conv3x3Args under = a;
  under.C = big_c - 32;  // 9C = 2,147,483,520
  CHECK(refusal(under).empty());
  for (int64_t vk::Conv3x3Args::*dim : {&vk::Conv3x3Args::K, &vk::Conv3x3Args::N, &vk::Conv3x3Args::H,
                                         &vk::Conv3x3Args::W}) {
    vk::Conv3x3Args past = under;
    past.*dim = int64_t(1) << 31;
    CHECK(!refusal(past).empty());
    past.*dim = INT32_MAX;
    CHECK(refusal(past).empty());
  }
}

// implicit_gemm through its launcher alone (fp16, NHWC, weight (K, 3, 3, C), C a
// multiple of 8): the plan is computed there when the caller gives none, and a plan made
// for another shape is refused. Small integers: every sum is exact in fp32 and in fp16.
EMU_TEST(implicit_gemm_launcher_without_a_plan) {
  const int64_t N = 1, C = 8, H = 5, W = 6, K = 16;
  std::mt19937 rng(7);
  std::uniform_int_distribution<int> d(-2, 2);
  std::vector<__half> x(N * H * W * C), w(K * 9 * C), y(N * H * W * K);
  std::vector<float> xf(x.size()), wf(w.size());
  for (size_t i = 0; i < x.size(); ++i) x[i] = __float2half(xf[i] = static_cast<float>(d(rng)));
  for (size_t i = 0; i < w.size(); ++i) w[i] = __float2half(wf[i] = static_cast<float>(d(rng)));
  vk::Conv3x3Args a{x.data(), w.data(), nullptr, y.data(), vk::DType::float16, vk::Layout::nhwc, N, C, H, W, K,
                    false, false, nullptr};
  vk::emu::conv3x3_implicit_gemm(a);
  for (int64_t h = 0; h < H; ++h)
    for (int64_t ww = 0; ww < W; ++ww)
      for (int64_t k = 0; k < K; ++k) {
        float want = 0.f;
        for (int r = 0; r < 3; ++r)
          for (int s = 0; s < 3; ++s) {
            const int64_t hh = h + r - 1, wc = ww + s - 1;
            if (hh < 0 || hh >= H || wc < 0 || wc >= W) continue;
            for (int64_t c = 0; c < C; ++c) want += xf[(hh * W + wc) * C + c] * wf[((k * 3 + r) * 3 + s) * C + c];
          }
        CHECK(__half2float(y[(h * W + ww) * K + k]) == want);
      }
  vk::Conv3x3Args other = a;
  other.H = H + 2;  // the plan of another shape
  const vk::ImplicitGemmPlan wrong = vk::implicit_gemm_plan(other);
  a.plan = &wrong;
  bool refused = false;
  try {
    vk::emu::conv3x3_implicit_gemm(a);
  } catch (const std::logic_error& e) {
    refused = std::string(e.what()).find("plan made for another shape") != std::string::npos;
  }
  CHECK(refused);
  // Data that is not 16-byte aligned (x, weight or y one element in) is refused by name.
  a.plan = nullptr;
  std::vector<__half> x1(x.size() + 8), w1(w.size() + 8), y1(y.size() + 8);
  for (const char* which : {"x", "weight", "y"}) {
    vk::Conv3x3Args m = a;
    const std::string name = which;
    if (name == "x") m.x = x1.data() + 1;
    if (name == "weight") m.weight = w1.data() + 1;
    if (name == "y") m.y = y1.data() + 1;
    std::string message;
    try {
      vk::emu::conv3x3_implicit_gemm(m);
    } catch (const std::invalid_argument& e) {
      message = e.what();
    }
    CHECK(message == "vggkern.conv3x3: implicit_gemm needs " + name + "'s data 16-byte aligned");
  }
}

// What a C++ caller's args cannot have run: a wgmma tile where the args say the device has
// no wgmma (its kernel would trap; the CUDA launcher reads the device's answer into them),
// a plan for a launch without work (the split-K rule would divide by zero); an empty y is
// no launch at all.
EMU_TEST(implicit_gemm_launcher_refuses_what_cannot_run) {
  std::vector<__half> x(8 * 16), w(16 * 9 * 8), y(16 * 16, __float2half(7.f));
  vk::Conv3x3Args a{x.data(), w.data(), nullptr, y.data(), vk::DType::float16, vk::Layout::nhwc, 1, 8, 4, 4, 16,
                    false, false, nullptr};
  auto message = [](const std::function<void()>& f) {
    try {
      f();
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string("(no error)");
  };
  const vk::ImplicitGemmPlan wg = vk::implicit_gemm_plan(a, vk::ImplicitGemmTile::wg128x128);
  vk::Conv3x3Args no_wgmma = a;
  no_wgmma.wgmma = false, no_wgmma.plan = &wg;
  CHECK(message([&] { vk::emu::conv3x3_implicit_gemm(no_wgmma); }) ==
        "vggkern.conv3x3: implicit_gemm tile wg128x128 runs only on a build for sm_90a and a compute capability 9.0 "
        "GPU (H100/H200)");
  for (int64_t vk::Conv3x3Args::*dim : {&vk::Conv3x3Args::N, &vk::Conv3x3Args::C, &vk::Conv3x3Args::H,
                                         &vk::Conv3x3Args::W, &vk::Conv3x3Args::K}) {
    vk::Conv3x3Args none = a;
    none.*dim = 0;
    CHECK(message([&] { vk::implicit_gemm_plan(none); }).find("plan needs N, C, H, W, K >= 1") != std::string::npos);
  }
  vk::Conv3x3Args pooled = a;
  pooled.pool = true, pooled.H = 1;
  CHECK(message([&] { vk::implicit_gemm_plan(pooled); }).find("(H, W >= 2 with pool)") != std::string::npos);
  vk::Conv3x3Args empty = a;
  empty.N = 0;
  CHECK(message([&] { vk::emu::conv3x3_implicit_gemm(empty); }) == "(no error)");
  CHECK(__half2float(y[0]) == 7.f);  // untouched
}

}  // namespace
