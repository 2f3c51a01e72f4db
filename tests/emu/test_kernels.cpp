// vggkern's kernels through their torch-free launchers (csrc/common/backends.h), as a
// C++ user without Python would call them, checked against plain loops.
#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "../../csrc/common/backends.h"
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
