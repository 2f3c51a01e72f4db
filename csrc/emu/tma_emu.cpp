// A tensor load's box, row by row (tma_emu.h): which global elements each shared-memory row
// of the box holds, by the PTX ISA's rules for the tile and im2col modes (traversal strides
// of 1: the only ones the kernels' tensor maps use).
#include "tma_emu.h"

#include <algorithm>
#include <string>

namespace vk {
namespace emu {
namespace {

// The elements [begin, end) of a row of `n` starting at coordinate x0 that lie in [0, dim).
void clip(int64_t x0, uint32_t n, uint64_t dim, BoxRow& r) {
  const int64_t lo = std::max<int64_t>(0, -x0), hi = std::min<int64_t>(n, static_cast<int64_t>(dim) - x0);
  r.begin = static_cast<uint32_t>(std::min<int64_t>(lo, n));
  r.end = hi > lo ? static_cast<uint32_t>(hi) : r.begin;
}

}  // namespace

std::string tensor_box(const TensorMap& m, const int32_t* coords, const int32_t* offsets, std::vector<BoxRow>* out) {
  std::vector<BoxRow>& rows = *out;
  rows.clear();
  const int64_t c0 = coords[0];
  if (m.mode == TensorMap::Mode::tiled) {
    // Rows: every combination of the outer dimensions' box positions, dimension 1 fastest.
    uint64_t n = 1;
    for (int d = 1; d < m.rank; ++d) n *= m.box[d];
    rows.resize(n);
    for (uint64_t i = 0; i < n; ++i) {
      BoxRow& r = rows[i];
      r.offset = c0 * static_cast<int64_t>(m.strides[0]);
      bool inside = true;
      uint64_t rest = i;
      for (int d = 1; d < m.rank; ++d) {
        const int64_t x = coords[d] + static_cast<int64_t>(rest % m.box[d]);
        rest /= m.box[d];
        inside = inside && x >= 0 && x < static_cast<int64_t>(m.dims[d]);
        r.offset += x * static_cast<int64_t>(m.strides[d]);
      }
      clip(c0, m.box[0], m.dims[0], r);
      if (!inside) r.end = r.begin;
    }
    return "";
  }
  // im2col: box[1] pixels, walked from the start through the bounding box (spatial
  // dimensions 1 .. rank - 2, W fastest, each from its lower corner to dims - 1 + its upper
  // corner), then on to the next image (dimension rank - 1); each pixel's channels are
  // read at its position plus the offsets.
  const int spatial = m.rank - 2;
  int64_t pos[4], lo[3], hi[3];
  for (int d = 0; d < spatial; ++d) {
    lo[d] = m.lower[d];
    hi[d] = static_cast<int64_t>(m.dims[d + 1]) - 1 + m.upper[d];
    pos[d] = coords[d + 1];
    if (pos[d] < lo[d] || pos[d] > hi[d])
      return "im2col tensor load: coordinate " + std::to_string(pos[d]) + " of spatial dimension " +
             std::to_string(d) + " lies outside the bounding box [" + std::to_string(lo[d]) + ", " +
             std::to_string(hi[d]) + "]";
  }
  pos[spatial] = coords[m.rank - 1];
  rows.resize(m.box[1]);
  for (BoxRow& r : rows) {
    bool inside = pos[spatial] >= 0 && pos[spatial] < static_cast<int64_t>(m.dims[m.rank - 1]);
    r.offset = c0 * static_cast<int64_t>(m.strides[0]) + pos[spatial] * static_cast<int64_t>(m.strides[m.rank - 1]);
    for (int d = 0; d < spatial; ++d) {
      const int64_t x = pos[d] + offsets[d];
      inside = inside && x >= 0 && x < static_cast<int64_t>(m.dims[d + 1]);
      r.offset += x * static_cast<int64_t>(m.strides[d + 1]);
    }
    clip(c0, m.box[0], m.dims[0], r);
    if (!inside) r.end = r.begin;
    for (int d = 0;; ++d) {  // the next pixel: W on, or back to the box's lower corner and a carry
      ++pos[d];
      if (d == spatial || pos[d] <= hi[d]) break;
      pos[d] = lo[d];
    }
  }
  return "";
}

}  // namespace emu
}  // namespace vk
