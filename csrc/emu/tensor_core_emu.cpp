// Emulated mma.sync, ldmatrix and wgmma; layouts from the PTX ISA, "Matrix Fragments
// for mma.m16n8k16 / mma.m16n8k8", "ldmatrix", and "Asynchronous Warpgroup Level
// Matrix" (register fragments, shared memory layouts, matrix descriptor). groupID
// g = lane / 4, t = lane % 4.
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
  // The rows are read once, for the whole warp, when the collective completes: by the first
  // lane to resume, the one that completed it. A lane resuming later must not see a row
  // that a lane before it has since overwritten (its own row, after its ldmatrix).
  if (!*ex.shared_ready) {
    for (int l = 0; l < 8 * count; ++l) std::memcpy(ex.shared_result[l], rows[l], 16);
    *ex.shared_ready = true;
  }
  unsigned char data[32][16];
  for (int l = 0; l < 8 * count; ++l) std::memcpy(data[l], ex.shared_result[l], 16);
  warp_exchange_done(ex.handle);
  const int lane = static_cast<int>(t_thread->linear & 31u);
  if (lane < 8 * count) note_shared_read(rows[lane], 16, file, line);  // the row this lane addressed
  if (lane == 0) {  // bank accounting, once per warp: each matrix (8 rows of 16 bytes) is a phase
    uintptr_t addresses[32];
    int bytes[32];
    for (int l = 0; l < 8 * count; ++l) addresses[l] = reinterpret_cast<uintptr_t>(rows[l]), bytes[l] = 16;
    record_shared_access(SharedPath::ldmatrix, addresses, bytes, 8 * count, 8);
  }
  const int g = lane >> 2, t = lane & 3;
  auto at = [&](int matrix, int row, int col) {
    unsigned short v;
    std::memcpy(&v, data[8 * matrix + row] + 2 * col, 2);
    return static_cast<uint32_t>(v);
  };
  for (int j = 0; j < count; ++j) {
    r[j] = trans ? at(j, 2 * t, g) | (at(j, 2 * t + 1, g) << 16) : at(j, g, 2 * t) | (at(j, g, 2 * t + 1) << 16);
  }
}

namespace {

// A shared-memory matrix descriptor, decoded (PTX ISA "Matrix Descriptor Format").
struct Descriptor {
  uint32_t start, lbo, sbo;  // bytes
  int base_offset, swizzle;  // swizzle: 0 none, 1 128-byte, 2 64-byte, 3 32-byte
};
Descriptor decode(uint64_t desc) {
  Descriptor d;
  d.start = static_cast<uint32_t>(desc & 0x3fffu) << 4;
  d.lbo = static_cast<uint32_t>((desc >> 16) & 0x3fffu) << 4;
  d.sbo = static_cast<uint32_t>((desc >> 32) & 0x3fffu) << 4;
  d.base_offset = static_cast<int>((desc >> 49) & 7u);
  d.swizzle = static_cast<int>(desc >> 62);
  return d;
}

// Byte address of byte `byte` (< 32: one K step) of row `row` of a K-major operand with
// the 64-byte swizzle: rows of 64 bytes in groups of 8 (a 512-byte pattern), the groups
// sbo bytes apart; the address's 16-byte chunk bits 4-5 are XORed with bits 7-8.
uint32_t k_sw64_address(const Descriptor& d, int row, int byte) {
  const uint32_t linear = d.start + static_cast<uint32_t>(row / 8) * d.sbo + static_cast<uint32_t>(row % 8) * 64 +
                          static_cast<uint32_t>(byte);
  return linear ^ (((linear >> 7) & 3u) << 4);
}

void check_descriptor(const Descriptor& d, int rows, const char* name, const char* file, int line) {
  if (d.swizzle != 2)
    kernel_fail(std::string("wgmma ") + name + " descriptor: only the 64-byte swizzle (mode 2) is emulated, got mode " +
                    std::to_string(d.swizzle), file, line);
  if (d.base_offset != 0) kernel_fail(std::string("wgmma ") + name + " descriptor: base offset must be 0", file, line);
  // The row pattern starts at a 512-byte boundary; the start may sit up to 32 bytes into
  // a row (the K offset of a 32-byte K step), and the 32 bytes of one row must fit in its 64.
  if ((d.start >> 6) % 8 != 0 || d.start % 64 > 32)
    kernel_fail(std::string("wgmma ") + name + " descriptor: start address " + std::to_string(d.start) +
                    " is not a 512-byte-aligned 64-byte-swizzled tile plus 0 or 32 bytes", file, line);
  if (d.sbo == 0 && rows > 8)
    kernel_fail(std::string("wgmma ") + name + " descriptor: stride byte offset is 0", file, line);
  const uint32_t last = d.start + static_cast<uint32_t>((rows - 1) / 8) * d.sbo + 7 * 64 + 64;
  shared_at(d.start, last - d.start, file, line);  // fails if the operand leaves shared memory
}

struct WgmmaOp {
  MmaInput type;
  float* d;
  int n, scale_d;
  uint64_t desc_a, desc_b;
  unsigned warp, lane;  // warp in the warpgroup, lane in the warp
  bool chained;         // queued behind another wgmma on the same accumulator
  uint64_t d_hash;      // the accumulator's contents when queued (unless chained)
  const char* file;
  int line;
};
static_assert(sizeof(WgmmaOp) <= kAsyncOpBytes, "queued record size");

// What the warpgroup must agree on for one wgmma.mma_async (warpgroup_instruction).
struct WgmmaShape {
  uint64_t desc_a, desc_b;
  int type, n, scale_d, zero;  // `zero`: no padding bytes, which would compare as garbage
};
static_assert(sizeof(WgmmaShape) == 32 && sizeof(WgmmaShape) <= kWarpgroupRecordBytes, "warpgroup record size");

// ---- the register protocol (PTX ISA, wgmma.fence) ------------------------------------
// The accumulator registers belong to the tensor cores from a wgmma's issue to the wait
// that covers it: nothing else may write them then. A wgmma may start on registers that
// other instructions wrote only after a wgmma_fence() that follows the write (and a
// thread's first wgmma only after one), except when it chains onto a wgmma of the same
// shape on the same accumulator. The emulator sees register writes as changed contents:
// it hashes the accumulator when a wgmma leaves it (run) and when a fence legitimizes it,
// and compares. A rewrite with equal contents, and reads, go unseen; so does a write
// between the fence and the very first wgmma on an accumulator (nothing known yet).
uint64_t hash_floats(const float* d, int floats) {
  uint64_t h = 1469598103934665603ull;  // FNV-1a over the bytes
  const auto* b = reinterpret_cast<const unsigned char*>(d);
  for (size_t i = 0; i < sizeof(float) * static_cast<size_t>(floats); ++i) h = (h ^ b[i]) * 1099511628211ull;
  return h;
}

WgmmaAccumulator& accumulator(const float* d, int floats, const char* file, int line) {
  WgmmaRegisters& regs = wgmma_registers();
  for (WgmmaAccumulator& a : regs.accumulators) {
    if (a.d == d && a.floats == floats) return a;
    if (d < a.d + a.floats && a.d < d + floats) {
      if (a.pending == 0) {  // registers reused with another shape: start over
        a = WgmmaAccumulator{d, floats, 0, false, 0};
        return a;
      }
      kernel_fail("wgmma accumulator overlaps that of a wgmma still in flight with another shape", file, line);
    }
  }
  regs.accumulators.push_back(WgmmaAccumulator{d, floats, 0, false, 0});
  return regs.accumulators.back();
}

// Bytes per operand element: 4 for tf32, 2 for f16/bf16; a K step is 32 bytes.
int element_bytes(MmaInput type) { return type == MmaInput::tf32 ? 4 : 2; }

// Element k of row `row` of one K step: 16-bit (f16/bf16, k < 16) or 32-bit (tf32, k < 8).
double operand(const WgmmaOp& op, const Descriptor& d, int row, int k) {
  const int bytes = element_bytes(op.type);
  const uint32_t address = k_sw64_address(d, row, k * bytes);
  async_proxy_read(address, bytes, op.file, op.line);  // written by the generic proxy, then fenced?
  uint32_t bits = 0;
  std::memcpy(&bits, shared_at(address, bytes, op.file, op.line), bytes);  // little-endian, as the GPU
  return element(op.type, bits, 0);
}

void run_wgmma(const void* record) {
  WgmmaOp op;
  std::memcpy(&op, record, sizeof op);
  WgmmaAccumulator& acc = accumulator(op.d, op.n / 2, op.file, op.line);
  if (hash_floats(op.d, op.n / 2) != (op.chained ? acc.hash : op.d_hash))
    kernel_fail("a wgmma's accumulator was written while the wgmma was in flight (between wgmma_m64nN and the "
                "wgmma_wait that covers it): the tensor cores own those registers until then",
                op.file, op.line);
  const Descriptor da = decode(op.desc_a), db = decode(op.desc_b);
  const int g = static_cast<int>(op.lane >> 2), t = static_cast<int>(op.lane & 3);
  const int K = 32 / element_bytes(op.type);  // one 32-byte K step
  double A[2][16];
  for (int h = 0; h < 2; ++h)
    for (int k = 0; k < K; ++k) A[h][k] = operand(op, da, 16 * static_cast<int>(op.warp) + g + 8 * h, k);
  for (int j = 0; j < op.n / 8; ++j)
    for (int c = 0; c < 2; ++c) {
      double B[16];
      for (int k = 0; k < K; ++k) B[k] = operand(op, db, 8 * j + 2 * t + c, k);
      for (int h = 0; h < 2; ++h) {
        float& out = op.d[4 * j + 2 * h + c];
        double sum = op.scale_d ? out : 0.0;  // mma_sync's order: C first, then k = 0..K-1
        for (int k = 0; k < K; ++k) sum += A[h][k] * B[k];
        out = static_cast<float>(sum);
      }
    }
  acc.hash = hash_floats(op.d, op.n / 2);
  acc.known = true;
  --acc.pending;
}

}  // namespace

void wgmma_async(MmaInput type, float* d, int n, uint64_t desc_a, uint64_t desc_b, int scale_d, const char* file,
                 int line) {
  if (n % 8 != 0 || n < 8 || n > 256) kernel_fail("wgmma: N must be a multiple of 8 in [8, 256]", file, line);
  // All 32 lanes of each warp meet here; that every thread of the warpgroup gives the
  // same operands is warpgroup_instruction's check (it also needs whole warpgroups).
  const Exchange ex = warp_exchange(Collective::wgmma, 0xffffffffu, nullptr, 0, 0, file, line);
  const unsigned arrived = ex.arrived;
  warp_exchange_done(ex.handle);
  if (arrived != 0xffffffffu) kernel_fail("wgmma needs all 32 lanes of each warp", file, line);
  const WgmmaShape shape{desc_a, desc_b, static_cast<int>(type), n, scale_d, 0};
  warpgroup_instruction("wgmma.mma_async", &shape, sizeof shape, file, line);
  check_descriptor(decode(desc_a), 64, "A", file, line);
  check_descriptor(decode(desc_b), n, "B", file, line);

  if (wgmma_registers().fences == 0)
    kernel_fail("wgmma before any wgmma_fence(): wgmma.fence must precede a warpgroup's first wgmma.mma_async",
                file, line);
  WgmmaAccumulator& acc = accumulator(d, n / 2, file, line);
  const bool chained = acc.pending > 0;
  const uint64_t d_hash = hash_floats(d, n / 2);
  if (!chained && acc.known && d_hash != acc.hash)
    kernel_fail("a wgmma's accumulator was written since the last wgmma on it without a wgmma_fence() after the "
                "write: wgmma.fence must order other instructions' register accesses before a wgmma's",
                file, line);
  ++acc.pending;

  const unsigned warp_in_group = (t_thread->linear >> 5) & 3u, lane = t_thread->linear & 31u;
  const WgmmaOp op{type, d, n, scale_d, desc_a, desc_b, warp_in_group, lane, chained, d_hash, file, line};
  async_op_enqueue(&run_wgmma, &op, sizeof op, file, line);
}

void wgmma_fence(const char* file, int line) {
  warpgroup_instruction("wgmma.fence", nullptr, 0, file, line);
  WgmmaRegisters& regs = wgmma_registers();
  ++regs.fences;
  for (WgmmaAccumulator& a : regs.accumulators)  // earlier writes are ordered now; in-flight ones never are
    if (a.pending == 0) {
      a.hash = hash_floats(a.d, a.floats);
      a.known = true;
    }
}

void wgmma_commit_group(const char* file, int line) {
  warpgroup_instruction("wgmma.commit_group", nullptr, 0, file, line);
  async_op_commit();
}

void wgmma_wait_group(int pending_groups_left, const char* file, int line) {
  warpgroup_instruction("wgmma.wait_group", &pending_groups_left, sizeof pending_groups_left, file, line);
  async_op_wait(pending_groups_left);
}

}  // namespace emu
}  // namespace vk
