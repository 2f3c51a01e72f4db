// The measured tables conv3x3's lookups read (rules: conv3x3_tuning.h): the ones this
// build carries (conv3x3_tuned.h), or, once vggkern.set_tuned_tables() has given some,
// those: the same tables from a benchmark run (benchmarks/tune.py --json), used without
// a rebuild. The benchmark suite measures "auto" on its own run's tables this way.
// Torch-free. Plain pointers only, and one variable, constant-initialised in every
// translation unit: the .cu files build as C++17 and the .cpp files as C++20 (torch's),
// where a static of class type (std::string, std::vector) can be constant-initialised in
// one and initialised at run time in the other; the linker keeps one of the two, and the
// other's code then reads it uninitialised (seen here: a std::string read as null).
#pragma once

#include <atomic>
#include <cstddef>

#include "conv3x3_tuned.h"

namespace vk {

struct TunedTables {
  const TunedTile* tiles;
  size_t n_tiles;
  const TunedAuto* autos;
  size_t n_autos;
  const char* source;
  bool run_time;  // set by vggkern.set_tuned_tables, not the build's
};

// Set by set_run_time_tables (csrc/vggkern.cpp, which owns what it points to); null: the
// build's. A replaced set is never freed, since a call on another thread may still be
// reading it (a few kilobytes a replacement).
inline std::atomic<const TunedTables*> g_run_time_tables{nullptr};

inline TunedTables tuned_tables() {
  const TunedTables* t = g_run_time_tables.load(std::memory_order_acquire);
  if (t != nullptr) return *t;
  return {kTunedTiles.data(), kTunedTiles.size(), kTunedAuto.data(), kTunedAuto.size(), kTunedSource, false};
}

// tables: the run-time tables to use from now on; null: the build's again.
inline void set_run_time_tables(const TunedTables* tables) {
  g_run_time_tables.store(tables, std::memory_order_release);
}

}  // namespace vk
