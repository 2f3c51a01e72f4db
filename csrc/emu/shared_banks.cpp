// The emulator's shared-memory bank accounting (see runtime.h, SharedBankStats).
#include <atomic>

#include "bank_stats.h"

namespace vk {
namespace emu {
namespace {

struct AtomicCounts {
  std::atomic<uint64_t> instructions{0}, ideal{0}, wavefronts{0};
  SharedBankCounts read() const { return {instructions.load(), ideal.load(), wavefronts.load()}; }
  void reset() { instructions = 0, ideal = 0, wavefronts = 0; }
};
AtomicCounts g_counts[4];  // by SharedPath

constexpr int kBanks = 32;

// Wavefronts of one phase: the most distinct 4-byte words any bank holds (0 if empty).
unsigned phase_wavefronts(const uintptr_t* addresses, const int* bytes, int n) {
  uintptr_t words[kBanks][kBanks];
  unsigned count[kBanks] = {};
  unsigned most = 0;
  for (int i = 0; i < n; ++i) {
    for (uintptr_t word = addresses[i] / 4; word < (addresses[i] + bytes[i] + 3) / 4; ++word) {
      const int bank = static_cast<int>(word % kBanks);
      bool seen = false;
      for (unsigned j = 0; j < count[bank] && !seen; ++j) seen = words[bank][j] == word;
      if (!seen && count[bank] < kBanks) words[bank][count[bank]++] = word;
      most = count[bank] > most ? count[bank] : most;
    }
  }
  return most;
}

}  // namespace

void record_shared_access(SharedPath path, const uintptr_t* addresses, const int* bytes, int n, int per_phase) {
  uint64_t ideal = 0, wavefronts = 0;
  for (int first = 0; first < n; first += per_phase) {
    const int m = n - first < per_phase ? n - first : per_phase;
    const unsigned w = phase_wavefronts(addresses + first, bytes + first, m);
    wavefronts += w;
    ideal += w > 0 ? 1 : 0;
  }
  AtomicCounts& c = g_counts[static_cast<int>(path)];
  c.instructions.fetch_add(1, std::memory_order_relaxed);
  c.ideal.fetch_add(ideal, std::memory_order_relaxed);
  c.wavefronts.fetch_add(wavefronts, std::memory_order_relaxed);
}

SharedBankStats shared_bank_stats() {
  return {g_counts[0].read(), g_counts[1].read(), g_counts[2].read(), g_counts[3].read()};
}

void reset_shared_bank_stats() {
  for (AtomicCounts& c : g_counts) c.reset();
}

}  // namespace emu
}  // namespace vk
