// The CUDA value types a kernel uses, for the host compiler: vector types (float4,
// int4, ...), dim3/uint3, and the 16-bit floats __half and __nv_bfloat16 with the
// conversion intrinsics of cuda_fp16.h / cuda_bf16.h (round-to-nearest-even).
//
// Only emulator translation units include this file; they never include CUDA's own
// headers, so a machine without the CUDA toolkit builds the emulator too. Like a
// torch CUDA extension (which defines __CUDA_NO_HALF_CONVERSIONS__), the 16-bit types
// have no implicit conversions: kernels convert explicitly, and code that forgets to
// fails to compile here as it would under nvcc.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

struct uint3 {
  unsigned x, y, z;
};

struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned vx = 1, unsigned vy = 1, unsigned vz = 1) : x(vx), y(vy), z(vz) {}
};

#define VK_EMU_VEC2(T, name, align) \
  struct alignas(align) name { T x, y; }; \
  inline name make_##name(T x, T y) { return name{x, y}; }
#define VK_EMU_VEC4(T, name, align) \
  struct alignas(align) name { T x, y, z, w; }; \
  inline name make_##name(T x, T y, T z, T w) { return name{x, y, z, w}; }

VK_EMU_VEC2(float, float2, 8)
VK_EMU_VEC4(float, float4, 16)
VK_EMU_VEC2(int, int2, 8)
VK_EMU_VEC4(int, int4, 16)
VK_EMU_VEC2(unsigned, uint2, 8)
VK_EMU_VEC4(unsigned, uint4, 16)
VK_EMU_VEC2(double, double2, 16)

#undef VK_EMU_VEC2
#undef VK_EMU_VEC4

// ---- 16-bit floating point -------------------------------------------------------

struct alignas(2) __half {
  unsigned short __x;
};
struct alignas(4) __half2 {
  __half x, y;
};
struct alignas(2) __nv_bfloat16 {
  unsigned short __x;
};
struct alignas(4) __nv_bfloat162 {
  __nv_bfloat16 x, y;
};
typedef __half half;
typedef __half2 half2;

namespace vk {
namespace emu {

inline uint32_t float_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
inline float bits_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// IEEE binary32 -> binary16, round to nearest even, overflow to inf, NaN kept quiet.
inline unsigned short float_to_half_bits(float f) {
  const uint32_t u = float_bits(f);
  const uint32_t sign = (u >> 16) & 0x8000u;
  const uint32_t absu = u & 0x7fffffffu;
  if (absu >= 0x7f800000u) {  // inf or NaN
    return static_cast<unsigned short>(sign | 0x7c00u | (absu > 0x7f800000u ? 0x200u | ((absu >> 13) & 0x1ffu) : 0u));
  }
  if (absu >= 0x477ff000u) return static_cast<unsigned short>(sign | 0x7c00u);  // rounds to inf
  if (absu < 0x38800000u) {  // result is subnormal or zero: value = m * 2^-24
    const float a = bits_float(absu);
    // a * 2^24 rounded to nearest even integer gives the subnormal mantissa.
    const float scaled = a * 16777216.0f;
    const uint32_t m = static_cast<uint32_t>(std::nearbyint(scaled));
    return static_cast<unsigned short>(sign | m);
  }
  // Normal: rebias exponent (127 -> 15) and round the 13 dropped mantissa bits.
  uint32_t h = ((absu - 0x38000000u) >> 13);
  const uint32_t rest = absu & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) ++h;
  return static_cast<unsigned short>(sign | h);
}

inline float half_bits_to_float(unsigned short h) {
  const uint32_t sign = (static_cast<uint32_t>(h) & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  const uint32_t man = h & 0x3ffu;
  if (exp == 0) {
    const float v = std::ldexp(static_cast<float>(man), -24);
    return sign ? -v : v;
  }
  if (exp == 31) return bits_float(sign | 0x7f800000u | (man << 13));
  return bits_float(sign | ((exp + 112u) << 23) | (man << 13));
}

inline unsigned short float_to_bf16_bits(float f) {
  const uint32_t u = float_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<unsigned short>((u >> 16) | 0x40u);  // quiet NaN
  const uint32_t rounding = 0x7fffu + ((u >> 16) & 1u);
  return static_cast<unsigned short>((u + rounding) >> 16);
}

inline float bf16_bits_to_float(unsigned short b) { return bits_float(static_cast<uint32_t>(b) << 16); }

}  // namespace emu
}  // namespace vk

inline __half __float2half_rn(float f) { return __half{vk::emu::float_to_half_bits(f)}; }
inline __half __float2half(float f) { return __float2half_rn(f); }
inline float __half2float(__half h) { return vk::emu::half_bits_to_float(h.__x); }
inline __half2 __floats2half2_rn(float a, float b) { return __half2{__float2half_rn(a), __float2half_rn(b)}; }
inline __half __ushort_as_half(unsigned short u) { return __half{u}; }
inline unsigned short __half_as_ushort(__half h) { return h.__x; }
inline bool __hisnan(__half h) { return (h.__x & 0x7fffu) > 0x7c00u; }

inline __nv_bfloat16 __float2bfloat16_rn(float f) { return __nv_bfloat16{vk::emu::float_to_bf16_bits(f)}; }
inline __nv_bfloat16 __float2bfloat16(float f) { return __float2bfloat16_rn(f); }
inline float __bfloat162float(__nv_bfloat16 b) { return vk::emu::bf16_bits_to_float(b.__x); }
inline __nv_bfloat162 __floats2bfloat162_rn(float a, float b) {
  return __nv_bfloat162{__float2bfloat16_rn(a), __float2bfloat16_rn(b)};
}
inline __nv_bfloat16 __ushort_as_bfloat16(unsigned short u) { return __nv_bfloat16{u}; }
inline unsigned short __bfloat16_as_ushort(__nv_bfloat16 b) { return b.__x; }
inline bool __hisnan(__nv_bfloat16 b) { return (b.__x & 0x7fffu) > 0x7f80u; }

// ---- bit casts and small integer intrinsics --------------------------------------

inline float __int_as_float(int i) {
  float f;
  std::memcpy(&f, &i, 4);
  return f;
}
inline int __float_as_int(float f) {
  int i;
  std::memcpy(&i, &f, 4);
  return i;
}
inline float __uint_as_float(unsigned i) {
  float f;
  std::memcpy(&f, &i, 4);
  return f;
}
inline unsigned __float_as_uint(float f) {
  unsigned i;
  std::memcpy(&i, &f, 4);
  return i;
}
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz(static_cast<unsigned>(x)); }
inline int __ffs(int x) { return __builtin_ffs(x); }
inline float __fmaf_rn(float a, float b, float c) { return std::fma(a, b, c); }
inline float __fdividef(float a, float b) { return a / b; }
inline float __saturatef(float x) { return x < 0.f ? 0.f : (x > 1.f ? 1.f : (x == x ? x : 0.f)); }
