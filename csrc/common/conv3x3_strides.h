// Element strides of x and y for a conv3x3 launch, in the layout the op chose: NCHW, or
// NHWC (channels_last). The stride-addressed kernels (direct, Winograd) share it.
#pragma once

#include "args.h"

namespace vk {

// Fills p.xs_{n,c,h,w}, p.ys_{n,k,h,w} and p.channels_inner of any kernel's params.
template <class Params>
void set_conv3x3_strides(Params& p, const Conv3x3Args& a) {
  const int64_t Ho = a.pool ? a.H / 2 : a.H, Wo = a.pool ? a.W / 2 : a.W;
  if (a.layout == Layout::nchw) {
    p.xs_w = 1, p.xs_h = a.W, p.xs_c = a.H * a.W, p.xs_n = a.C * a.H * a.W;
    p.ys_w = 1, p.ys_h = Wo, p.ys_k = Ho * Wo, p.ys_n = a.K * Ho * Wo;
  } else {
    p.xs_c = 1, p.xs_w = a.C, p.xs_h = a.W * a.C, p.xs_n = a.H * a.W * a.C;
    p.ys_k = 1, p.ys_w = a.K, p.ys_h = Wo * a.K, p.ys_n = Ho * Wo * a.K;
  }
  p.channels_inner = a.layout == Layout::nhwc;
}

}  // namespace vk
