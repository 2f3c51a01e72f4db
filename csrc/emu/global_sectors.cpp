// The emulator's global-memory sector accounting (see global_stats.h).
#include <algorithm>
#include <mutex>
#include <utility>

#include "global_stats.h"

namespace vk {
namespace emu {
namespace {

constexpr uintptr_t kSector = 32;
std::mutex g_mutex;
std::map<std::string, GlobalSectorStats> g_stats;

}  // namespace

GlobalSectorCounts global_access_counts(const uintptr_t* addresses, const int* bytes, int n) {
  // The lanes' byte ranges, sorted and merged: distinct bytes, and distinct sectors
  // (consecutive merged ranges may share a sector).
  std::pair<uintptr_t, uintptr_t> r[32];
  int m = 0;
  for (int i = 0; i < n && m < 32; ++i)
    if (bytes[i] > 0) r[m++] = {addresses[i], addresses[i] + static_cast<uintptr_t>(bytes[i])};
  GlobalSectorCounts c;
  if (m == 0) return c;
  std::sort(r, r + m);
  uintptr_t begin = r[0].first, end = r[0].second, last_sector = ~uintptr_t(0);
  auto close = [&](uintptr_t b, uintptr_t e) {
    c.bytes += e - b;
    const uintptr_t first = b / kSector, last = (e - 1) / kSector;
    c.sectors += last - first + 1 - (first == last_sector ? 1 : 0);
    last_sector = last;
  };
  for (int i = 1; i < m; ++i) {
    if (r[i].first <= end) {
      end = std::max(end, r[i].second);
    } else {
      close(begin, end);
      begin = r[i].first, end = r[i].second;
    }
  }
  close(begin, end);
  c.instructions = 1;
  c.ideal = (c.bytes + kSector - 1) / kSector;
  return c;
}

void add_global_sector_stats(const char* kernel, const GlobalSectorStats& s) {
  if (s.load.instructions + s.store.instructions + s.cp_async.instructions == 0) return;
  std::lock_guard<std::mutex> lock(g_mutex);
  GlobalSectorStats& t = g_stats[kernel];
  t.load.add(s.load), t.store.add(s.store), t.cp_async.add(s.cp_async);
}

std::map<std::string, GlobalSectorStats> global_sector_stats() {
  std::lock_guard<std::mutex> lock(g_mutex);
  return g_stats;
}

void reset_global_sector_stats() {
  std::lock_guard<std::mutex> lock(g_mutex);
  g_stats.clear();
}

}  // namespace emu
}  // namespace vk
