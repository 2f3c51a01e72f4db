// Every conv3x3 kernel (and tensor_core_weight and tensor_core_input, which lay out the
// tensor-core kernels' weight and x) through its
// torch-free launcher, on odd shapes, with every tensor in a heap buffer of exactly its
// size: x, weight (or Winograd's U), bias, y and the split-K workspace. Checked here
// against float64 loops; and in ctest's emu_ucontext.all (CMakeLists.txt: AddressSanitizer) a
// read or write one element outside any of them fails the run: the emulator's counterpart of compute-sanitizer's memcheck, for the
// kernels' plain C++ loads and stores the emulator itself cannot see.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "../../csrc/common/backends.h"
#include "../../csrc/common/conv3x3_implicit_gemm_plan.h"
#include "../../csrc/emu/cuda_types.h"
#include "harness.h"

namespace {

struct Shape {
  int64_t N, C, H, W, K;
  bool relu, pool;
};

// Small integers (exact in every dtype, and their products and sums in fp32), in
// (N, C, H, W) / (K, C, 3, 3) index order whatever the buffer layout.
struct Problem {
  Shape s;
  std::vector<float> x, w, b;
  Problem(const Shape& shape, int range, unsigned seed) : s(shape) {
    std::mt19937 rng(seed);
    std::uniform_int_distribution<int> d(-range, range);
    x.resize(s.N * s.C * s.H * s.W);
    w.resize(s.K * s.C * 9);
    b.resize(s.K);
    for (float& v : x) v = static_cast<float>(d(rng));
    for (float& v : w) v = static_cast<float>(d(rng));
    for (float& v : b) v = static_cast<float>(d(rng));
  }
  float xv(int64_t n, int64_t c, int64_t h, int64_t ww) const { return x[((n * s.C + c) * s.H + h) * s.W + ww]; }
  // y (N, K, Ho, Wo) in float64, after bias, ReLU and the pool.
  std::vector<double> reference() const {
    const int64_t Ho = s.pool ? s.H / 2 : s.H, Wo = s.pool ? s.W / 2 : s.W;
    std::vector<double> full(s.N * s.K * s.H * s.W), y(s.N * s.K * Ho * Wo);
    for (int64_t n = 0; n < s.N; ++n)
      for (int64_t k = 0; k < s.K; ++k)
        for (int64_t h = 0; h < s.H; ++h)
          for (int64_t ww = 0; ww < s.W; ++ww) {
            double acc = b[k];
            for (int64_t c = 0; c < s.C; ++c)
              for (int r = 0; r < 3; ++r)
                for (int q = 0; q < 3; ++q) {
                  const int64_t hh = h + r - 1, wc = ww + q - 1;
                  if (hh >= 0 && hh < s.H && wc >= 0 && wc < s.W) acc += xv(n, c, hh, wc) * w[(k * s.C + c) * 9 + r * 3 + q];
                }
            full[((n * s.K + k) * s.H + h) * s.W + ww] = s.relu && acc < 0 ? 0.0 : acc;
          }
    for (int64_t n = 0; n < s.N; ++n)
      for (int64_t k = 0; k < s.K; ++k)
        for (int64_t h = 0; h < Ho; ++h)
          for (int64_t ww = 0; ww < Wo; ++ww) {
            auto at = [&](int64_t i, int64_t j) { return full[((n * s.K + k) * s.H + i) * s.W + j]; };
            y[((n * s.K + k) * Ho + h) * Wo + ww] =
                s.pool ? std::max(std::max(at(2 * h, 2 * ww), at(2 * h, 2 * ww + 1)),
                                  std::max(at(2 * h + 1, 2 * ww), at(2 * h + 1, 2 * ww + 1)))
                       : at(h, ww);
          }
    return y;
  }
};

template <class T>
T to(float v) {
  if constexpr (std::is_same_v<T, __half>) return __float2half(v);
  else if constexpr (std::is_same_v<T, __nv_bfloat16>) return __float2bfloat16(v);
  else return v;
}
template <class T>
float from(T v) {
  if constexpr (std::is_same_v<T, __half>) return __half2float(v);
  else if constexpr (std::is_same_v<T, __nv_bfloat16>) return __bfloat162float(v);
  else return v;
}
template <class T>
vk::DType dtype_of() {
  if constexpr (std::is_same_v<T, __half>) return vk::DType::float16;
  else if constexpr (std::is_same_v<T, __nv_bfloat16>) return vk::DType::bfloat16;
  else return vk::DType::float32;
}

// x and y in `layout`, weight (K, C, 3, 3) or, with `weight_khwc`, (K, 3, 3, C).
template <class T>
struct Buffers {
  std::vector<T> x, w, b, y;
  int64_t Ho, Wo;
  Buffers(const Problem& p, vk::Layout layout, bool weight_khwc) {
    const Shape& s = p.s;
    Ho = s.pool ? s.H / 2 : s.H, Wo = s.pool ? s.W / 2 : s.W;
    x.resize(p.x.size());
    for (int64_t n = 0; n < s.N; ++n)
      for (int64_t c = 0; c < s.C; ++c)
        for (int64_t h = 0; h < s.H; ++h)
          for (int64_t ww = 0; ww < s.W; ++ww)
            x[layout == vk::Layout::nhwc ? ((n * s.H + h) * s.W + ww) * s.C + c : ((n * s.C + c) * s.H + h) * s.W + ww] =
                to<T>(p.xv(n, c, h, ww));
    w.resize(p.w.size());
    for (int64_t k = 0; k < s.K; ++k)
      for (int64_t c = 0; c < s.C; ++c)
        for (int tap = 0; tap < 9; ++tap)
          w[weight_khwc ? (k * 9 + tap) * s.C + c : (k * s.C + c) * 9 + tap] = to<T>(p.w[(k * s.C + c) * 9 + tap]);
    for (float v : p.b) b.push_back(to<T>(v));
    y.resize(s.N * s.K * Ho * Wo);
  }
  vk::Conv3x3Args args(const Shape& s, vk::Layout layout) {
    return vk::Conv3x3Args{x.data(), w.data(), b.data(), y.data(), dtype_of<T>(), layout, s.N, s.C, s.H, s.W,
                           s.K,      s.relu,   s.pool,   nullptr};
  }
  // y against the reference, within `tol` (0: exactly).
  void check(const Problem& p, vk::Layout layout, double tol) const {
    const double scale = 81.0 * p.s.C;  // the largest |sum| the inputs can make
    const Shape& s = p.s;
    const std::vector<double> want = p.reference();
    for (int64_t n = 0; n < s.N; ++n)
      for (int64_t k = 0; k < s.K; ++k)
        for (int64_t h = 0; h < Ho; ++h)
          for (int64_t ww = 0; ww < Wo; ++ww) {
            const float got = from<T>(y[layout == vk::Layout::nhwc ? ((n * Ho + h) * Wo + ww) * s.K + k
                                                                    : ((n * s.K + k) * Ho + h) * Wo + ww]);
            const double ref = want[((n * s.K + k) * Ho + h) * Wo + ww];
            CHECK(std::fabs(got - ref) <= tol * scale);
          }
  }
};

// Tile edges cut everywhere: H, W not multiples of 16 (direct's tile), 2 or 4
// (Winograd's) or of an even pool, K not a multiple of 32 (every block's K).
const Shape kOdd[] = {{2, 5, 7, 9, 33, false, false}, {1, 3, 10, 13, 20, true, true}, {2, 11, 5, 6, 7, true, false}};

EMU_TEST(direct_stays_in_its_buffers) {
  unsigned seed = 1;
  for (const Shape& s : kOdd)
    for (vk::Layout layout : {vk::Layout::nchw, vk::Layout::nhwc}) {
      const Problem p(s, 3, seed++);
      Buffers<float> f(p, layout, false);
      vk::emu::conv3x3_direct(f.args(s, layout));
      f.check(p, layout, 0.0);
      Buffers<__half> h(p, layout, false);
      vk::emu::conv3x3_direct(h.args(s, layout));
      h.check(p, layout, 0.0);
    }
}

EMU_TEST(winograd_stays_in_its_buffers) {
  unsigned seed = 11;
  for (int tile : {2, 4})
    for (const Shape& s : kOdd)
      for (vk::Layout layout : {vk::Layout::nchw, vk::Layout::nhwc}) {
        const Problem p(s, 3, seed++);
        Buffers<float> f(p, layout, false);
        std::vector<float> u((tile + 2) * (tile + 2) * s.C * s.K);
        vk::emu::winograd_weight(vk::WinogradWeightArgs{f.w.data(), u.data(), vk::DType::float32, s.K, s.C, tile, nullptr});
        vk::Conv3x3Args a = f.args(s, layout);
        a.winograd_u = u.data();
        (tile == 2 ? vk::emu::conv3x3_winograd_f2x2 : vk::emu::conv3x3_winograd_f4x4)(a);
        f.check(p, layout, 1e-6);  // the transforms' fractions round in fp32
      }
}

// Every tile in all three dtypes (fp32: TF32 math), with and without split-K (its
// workspace exactly workspace_floats(K) floats), y NHWC or NCHW (the epilogue's and the
// reduce kernel's plane stores); the last two shapes are ones where the ws tiles copy by
// tensor loads (16-bit, C = 64; without split-K, and y NHWC where pooled), whose boxes run
// past the batch's last pixel (pooled: 8-pixel boxes of the even and odd rows, the second
// tile's last slabs wholly past it).
EMU_TEST(implicit_gemm_stays_in_its_buffers) {
  const Shape shapes[] = {{2, 8, 5, 7, 24, true, false}, {1, 64, 6, 5, 40, false, true}, {2, 64, 5, 7, 40, true, false},
                          {3, 64, 6, 10, 40, true, true}};
  unsigned seed = 21;
  for (const Shape& s : shapes)
    for (int t = 0; t < static_cast<int>(std::size(vk::kImplicitGemmTileNames)); ++t)
      for (int split : {1, 3})
        for (bool y_nchw : {false, true}) {
          const auto tile = static_cast<vk::ImplicitGemmTile>(t);
          const Problem p(s, 1, seed++);  // |sums| <= 9 C: exact in fp16 and bf16 for C = 8 and 64
          auto run = [&](auto buffers) {
            vk::Conv3x3Args a = buffers.args(s, vk::Layout::nhwc);
            a.y_nchw = y_nchw;
            setenv("VGGKERN_IMPLICIT_GEMM_SPLIT_K", std::to_string(split).c_str(), 1);
            const vk::ImplicitGemmPlan plan = vk::implicit_gemm_plan(a, tile);
            unsetenv("VGGKERN_IMPLICIT_GEMM_SPLIT_K");
            CHECK(plan.splits == split);  // C = 8: 3 slices of 64 bytes (5 in fp32), enough for 3
            std::vector<float> workspace(plan.workspace_floats(s.K));
            a.plan = &plan;
            a.workspace = workspace.empty() ? nullptr : workspace.data();
            vk::emu::conv3x3_implicit_gemm(a);
            buffers.check(p, y_nchw ? vk::Layout::nchw : vk::Layout::nhwc, 0.0);
            if (vk::implicit_gemm_tile_name(tile)[1] == 's' && !y_nchw) {
              // ws: one block taking every item (its staging of y reused: 16-bit y); without
              // split-K, ws128x256 by stream-K over 3 blocks too (its fixup slots and counters in
              // buffers of exactly their size: the pooled C = 64 shape's 2 tiles in 2 parts each;
              // ws128x128 keeps whole tiles).
              using E = typename decltype(buffers.y)::value_type;
              for (const char* grid : {"1", "3"}) {
                if (grid[0] == '3' && split != 1) continue;
                std::fill(buffers.y.begin(), buffers.y.end(), to<E>(std::nanf("")));  // each element rewritten
                setenv("VGGKERN_IMPLICIT_GEMM_GRID", grid, 1);
                setenv("VGGKERN_IMPLICIT_GEMM_SPLIT_K", std::to_string(split).c_str(), 1);
                if (grid[0] == '3') setenv("VGGKERN_IMPLICIT_GEMM_STREAM_K", "on", 1);
                const vk::ImplicitGemmPlan persistent = vk::implicit_gemm_plan(a, tile);
                unsetenv("VGGKERN_IMPLICIT_GEMM_GRID");
                unsetenv("VGGKERN_IMPLICIT_GEMM_SPLIT_K");
                unsetenv("VGGKERN_IMPLICIT_GEMM_STREAM_K");
                CHECK(persistent.grid() <= grid[0] - '0');  // stream-K: ranges of 8 slices or more (C = 8: 1 block)
                const bool sk = grid[0] == '3' && tile == vk::ImplicitGemmTile::ws128x256;
                CHECK((persistent.sk.sk_tiles > 0) == sk);
                CHECK(persistent.sk.max_parts == (sk && s.C == 64 ? persistent.grid() : 1) ||
                      (sk && s.N == 3 && persistent.sk.max_parts == 2));  // C = 64: 1 tile in G parts; 2 tiles in 2 each
                std::vector<float> fixups(persistent.workspace_floats(s.K));
                std::vector<int32_t> counters(persistent.fixup_counters(), 0);
                vk::Conv3x3Args b = a;
                b.plan = &persistent;
                b.workspace = fixups.empty() ? nullptr : fixups.data();
                b.fixup_counters = counters.empty() ? nullptr : counters.data();
                vk::emu::conv3x3_implicit_gemm(b);
                buffers.check(p, vk::Layout::nhwc, 0.0);
              }
            }
          };
          run(Buffers<__half>(p, vk::Layout::nhwc, true));
          run(Buffers<__nv_bfloat16>(p, vk::Layout::nhwc, true));
          run(Buffers<float>(p, vk::Layout::nhwc, true));  // TF32: small integers are exact
        }
}

}  // namespace

namespace {

float as_float(float v) { return v; }
float as_float(__half v) { return __half2float(v); }

// tensor_core_weight: the weight stored (C, K, 3, 3) (so the kernel sees strides (9, 9K,
// 3, 1)) in a buffer of exactly its size, out (K, 3, 3, Cp) in one of exactly its size;
// C padded 5 -> 8 and 16 -> 16; fp32 values 1.5 TF32 ulps above a TF32 value rounded up
// (cvt.rna: no ties here), fp16 ones copied.
EMU_TEST(tensor_core_weight_stays_in_its_buffers) {
  for (const int64_t C : {5, 16})
    for (const bool fp32 : {true, false}) {
      const int64_t K = 7, Cp = (C + 7) / 8 * 8;
      auto value = [&](int64_t k, int64_t c, int t) {  // small integers, times 1 + 1.5 / 1024 in fp32
        const float v = static_cast<float>((k * C + c) * 9 % 13 + t) - 8.f;
        return fp32 ? v * (1.f + 1.5f / 1024.f) : v;
      };
      auto rounded = [&](float v) {  // the nearest TF32 value (10 mantissa bits)
        if (!fp32 || v == 0.f) return v;
        const int e = std::ilogb(v);
        return static_cast<float>(std::ldexp(std::round(std::ldexp(v, 10 - e)), e - 10));
      };
      auto run = [&](auto zero, auto convert) {
        using T = decltype(zero);
        std::vector<T> w(K * C * 9, zero), out(K * 9 * Cp, zero);
        for (int64_t k = 0; k < K; ++k)
          for (int64_t c = 0; c < C; ++c)
            for (int t = 0; t < 9; ++t) w[(c * K + k) * 9 + t] = convert(value(k, c, t));
        vk::emu::tensor_core_weight(vk::TensorCoreWeightArgs{w.data(), out.data(), fp32 ? vk::DType::float32
                                                                                        : vk::DType::float16,
                                                             K, C, Cp, {9, 9 * K, 3, 1}, fp32, nullptr});
        for (int64_t k = 0; k < K; ++k)
          for (int t = 0; t < 9; ++t)
            for (int64_t c = 0; c < Cp; ++c)
              CHECK(as_float(out[(k * 9 + t) * Cp + c]) == (c < C ? rounded(value(k, c, t)) : 0.f));
      };
      if (fp32) run(0.f, [](float v) { return v; });
      else run(__float2half_rn(0.f), [](float v) { return __float2half_rn(v); });
    }
}

// tensor_core_input: x in a buffer of exactly its size, NCHW (strides (CHW, HW, W, 1)) and
// channels_last (strides (HWC, 1, WC, C)); out (N, H, W, Cp) in one of exactly its size; C
// padded 3 -> 8 and 24 -> 24, 13 x 5 pixels (a last warp only partly inside), fp32 (two
// lanes per pixel) and fp16 (one lane per 16-byte chunk, Cp = 8 and 24: odd chunk counts).
EMU_TEST(tensor_core_input_stays_in_its_buffers) {
  const int64_t N = 2, H = 13, W = 5;
  for (const int64_t C : {3, 24})
    for (const bool nchw : {true, false})
      for (const bool fp32 : {true, false}) {
        const int64_t Cp = (C + 7) / 8 * 8;
        auto value = [&](int64_t n, int64_t c, int64_t h, int64_t w) {
          return static_cast<float>((((n * C + c) * H + h) * W + w) % 61) - 30.f;
        };
        const int64_t stride[4] = {C * H * W, nchw ? H * W : 1, nchw ? W : W * C, nchw ? 1 : C};
        auto run = [&](auto zero, auto convert) {
          using T = decltype(zero);
          std::vector<T> x(N * C * H * W, zero), out(N * H * W * Cp, zero);
          for (int64_t n = 0; n < N; ++n)
            for (int64_t c = 0; c < C; ++c)
              for (int64_t h = 0; h < H; ++h)
                for (int64_t w = 0; w < W; ++w)
                  x[n * stride[0] + c * stride[1] + h * stride[2] + w * stride[3]] = convert(value(n, c, h, w));
          vk::emu::tensor_core_input(vk::TensorCoreInputArgs{
              x.data(), out.data(), fp32 ? vk::DType::float32 : vk::DType::float16, N, C, H, W, Cp,
              {stride[0], stride[1], stride[2], stride[3]}, nullptr});
          for (int64_t n = 0; n < N; ++n)
            for (int64_t h = 0; h < H; ++h)
              for (int64_t w = 0; w < W; ++w)
                for (int64_t c = 0; c < Cp; ++c)
                  CHECK(as_float(out[((n * H + h) * W + w) * Cp + c]) == (c < C ? value(n, c, h, w) : 0.f));
        };
        if (fp32) run(0.f, [](float v) { return v; });
        else run(__float2half_rn(0.f), [](float v) { return __float2half_rn(v); });
      }
}

}  // namespace
