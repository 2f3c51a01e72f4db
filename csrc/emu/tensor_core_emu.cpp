// Emulated mma.sync and ldmatrix; layouts from the PTX ISA, "Matrix Fragments for
// mma.m16n8k16 / mma.m16n8k8" and "ldmatrix". groupID g = lane / 4, t = lane % 4.
#include "tensor_core_emu.h"

#include <cstring>
#include <string>

#include "simt_emu.h"

namespace vk {
namespace emu {
namespace {

double element(MmaInput type, uint32_t reg, int half) {
  if (type == MmaInput::tf32) {
    // The tensor core reads a tf32 operand's sign, exponent and top 10 mantissa bits.
    return static_cast<double>(bits_float(reg & 0xffffe000u));
  }
  const auto bits = static_cast<unsigned short>(half ? reg >> 16 : reg & 0xffffu);
  return type == MmaInput::f16 ? half_bits_to_float(bits) : bf16_bits_to_float(bits);
}

struct MmaOperands {
  uint32_t a[4];
  uint32_t b[2];
  float c[4];
};

}  // namespace

void mma_sync(MmaInput type, float* d, const uint32_t* a, const uint32_t* b, const float* c, const char* file,
              int line) {
  MmaOperands mine;
  std::memcpy(mine.a, a, sizeof mine.a);
  std::memcpy(mine.b, b, sizeof mine.b);
  std::memcpy(mine.c, c, sizeof mine.c);
  const Exchange ex = warp_exchange(Collective::mma, 0xffffffffu, &mine, sizeof mine, 0, file, line);
  if (ex.arrived != 0xffffffffu) {
    warp_exchange_done(ex.handle);
    kernel_fail("mma.sync needs all 32 lanes of the warp", file, line);
  }
  if (!*ex.shared_ready) {  // the first lane to resume computes D for the whole warp
    const int K = type == MmaInput::tf32 ? 8 : 16;
    double A[16][16], B[16][8], C[16][8];
    for (int lane = 0; lane < 32; ++lane) {
      MmaOperands o;
      std::memcpy(&o, ex.values[lane], sizeof o);
      const int g = lane >> 2, t = lane & 3;
      if (type == MmaInput::tf32) {
        for (int i = 0; i < 4; ++i) A[g + 8 * (i & 1)][t + 4 * (i >> 1)] = element(type, o.a[i], 0);
        for (int i = 0; i < 2; ++i) B[t + 4 * i][g] = element(type, o.b[i], 0);
      } else {
        for (int i = 0; i < 8; ++i) {
          const int reg = i >> 1;
          A[g + 8 * (reg & 1)][2 * t + (i & 1) + 8 * (reg >> 1)] = element(type, o.a[reg], i & 1);
        }
        for (int i = 0; i < 4; ++i) B[2 * t + (i & 1) + 8 * (i >> 1)][g] = element(type, o.b[i >> 1], i & 1);
      }
      for (int i = 0; i < 4; ++i) C[g + 8 * (i >> 1)][2 * t + (i & 1)] = o.c[i];
    }
    for (int lane = 0; lane < 32; ++lane) {
      const int g = lane >> 2, t = lane & 3;
      float d_lane[4];
      for (int i = 0; i < 4; ++i) {
        const int row = g + 8 * (i >> 1), col = 2 * t + (i & 1);
        double sum = C[row][col];
        for (int k = 0; k < K; ++k) sum += A[row][k] * B[k][col];
        d_lane[i] = static_cast<float>(sum);
      }
      std::memcpy(ex.shared_result[lane], d_lane, sizeof d_lane);
    }
    *ex.shared_ready = true;
  }
  std::memcpy(d, ex.shared_result[t_thread->linear & 31u], 4 * sizeof(float));
  warp_exchange_done(ex.handle);
}

void ldmatrix(uint32_t* r, int count, bool trans, const void* row_address, const char* file, int line) {
  const Exchange ex = warp_exchange(Collective::ldmatrix, 0xffffffffu, &row_address, sizeof row_address, 0, file, line);
  if (ex.arrived != 0xffffffffu) {
    warp_exchange_done(ex.handle);
    kernel_fail("ldmatrix needs all 32 lanes of the warp", file, line);
  }
  const unsigned char* rows[32];
  for (int l = 0; l < 8 * count; ++l) {
    std::memcpy(&rows[l], ex.values[l], sizeof rows[l]);
    if (reinterpret_cast<uintptr_t>(rows[l]) % 16 != 0 || !in_shared(rows[l], 16)) {
      warp_exchange_done(ex.handle);
      kernel_fail("ldmatrix row address of lane " + std::to_string(l) + " is not a 16-byte aligned shared address",
                  file, line);
    }
  }
  warp_exchange_done(ex.handle);
  const int lane = static_cast<int>(t_thread->linear & 31u);
  if (lane == 0) {  // bank accounting, once per warp: each matrix (8 rows of 16 bytes) is a phase
    uintptr_t addresses[32];
    int bytes[32];
    for (int l = 0; l < 8 * count; ++l) addresses[l] = reinterpret_cast<uintptr_t>(rows[l]), bytes[l] = 16;
    record_shared_access(SharedPath::ldmatrix, addresses, bytes, 8 * count, 8);
  }
  const int g = lane >> 2, t = lane & 3;
  auto at = [&](int matrix, int row, int col) {
    unsigned short v;
    std::memcpy(&v, rows[8 * matrix + row] + 2 * col, 2);
    return static_cast<uint32_t>(v);
  };
  for (int j = 0; j < count; ++j) {
    r[j] = trans ? at(j, 2 * t, g) | (at(j, 2 * t + 1, g) << 16) : at(j, g, 2 * t) | (at(j, g, 2 * t + 1) << 16);
  }
}

}  // namespace emu
}  // namespace vk
