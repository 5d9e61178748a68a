"""C++ source of the fused per-layer ops, compiled into the same library as the decode-attention kernel.

Why (issue 18, profile at 2 threads): between its GEMMs a layer ran about a dozen small torch ops on a
decode batch (RMSNorm's five internal ops twice, RoPE's cat/mul/mul/add, two `index_copy_` for the KV
write, residual adds), each its own dispatch and OpenMP region, each on one thread below torch's
32,768-element grain. Two calls replace them:
- `hs_add_rms_norm`: x += delta (the residual add, skipped when delta is null), then
  out = weight * (x * rsqrt(mean(x^2) + eps)) per row, in float32;
- `hs_rope_write_kv`: rotates the q and k heads of the fused qkv output in place (HF's rotate-half RoPE
  with the sign folded into the sin table, see layers.rope_tables) and copies each token's rotated k and
  its v into the layer's K and V rows of the paged pool at its slot.
Rows are split over torch's intra-op threads (`at::parallel_for`) only when a thread gets at least
2^15 elements: a decode batch's rows run on the calling thread (a parallel region costs more than the
work, and on a shared machine it can wait a scheduler slice for its second thread).

Arithmetic: RoPE is bit-identical to layers.apply_rope (the same products and one rounded addition per
element; a GCC pragma turns floating-point contraction off for this source, so no product is fused
into an FMA; the attention kernel's source keeps its FMAs). RMSNorm sums the
squares in its own order (16 float lanes, then the lanes), so it can differ from torch's in the last
bit of the mean; tests/workers/engine/test_layer_kernels.py bounds the difference and the engine's
HF-equality tests check greedy tokens stay identical.
"""

from __future__ import annotations

SOURCE = r"""
#include <ATen/Parallel.h>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")
namespace {
// Below this many elements per thread a row loop stays on the calling thread (torch's own grain size).
constexpr int64_t kMinElemsPerThread = 1 << 15;

template <typename F> void for_rows(int64_t rows, int64_t elems_per_row, const F& fn) {
  const int64_t threads = std::max<int64_t>(
      1, std::min<int64_t>({static_cast<int64_t>(at::get_num_threads()), rows,
                            rows * elems_per_row / kMinElemsPerThread}));
  if (threads == 1) {
    for (int64_t r = 0; r < rows; ++r) fn(r);
    return;
  }
  const int64_t grain = (rows + threads - 1) / threads;
  at::parallel_for(0, rows, grain, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) fn(r);
  });
}

// out = rot(x) * s + x * c with rot = (x[half:], x[:half]); x and out may alias (tmp holds the input).
inline void rotate(float* x, const float* c, const float* s, int64_t dim, float* tmp) {
  const int64_t half = dim / 2;
  std::memcpy(tmp, x, dim * sizeof(float));
#pragma omp simd
  for (int64_t d = 0; d < half; ++d) x[d] = tmp[d + half] * s[d] + tmp[d] * c[d];
#pragma omp simd
  for (int64_t d = half; d < dim; ++d) x[d] = tmp[d - half] * s[d] + tmp[d] * c[d];
}
}  // namespace

extern "C" {
// x [rows, hidden] (row stride x_stride) updated in place when delta [rows, hidden] (row stride
// delta_stride) is not null; weight [hidden]; out [rows, hidden] contiguous.
void hs_add_rms_norm(float* x, int64_t x_stride, const float* delta, int64_t delta_stride,
                     const float* weight, float* out, int64_t rows, int64_t hidden, float eps) {
  for_rows(rows, hidden, [&](int64_t r) {
    float* xr = x + r * x_stride;
    if (delta != nullptr) {
      const float* dr = delta + r * delta_stride;
#pragma omp simd
      for (int64_t d = 0; d < hidden; ++d) xr[d] += dr[d];
    }
    float lanes[16] = {0};
    int64_t d = 0;
    for (; d + 16 <= hidden; d += 16) {
#pragma omp simd
      for (int l = 0; l < 16; ++l) lanes[l] += xr[d + l] * xr[d + l];
    }
    float sum = 0;
    for (; d < hidden; ++d) sum += xr[d] * xr[d];
    for (int l = 0; l < 16; ++l) sum += lanes[l];
    const float rstd = 1.0f / std::sqrt(sum / static_cast<float>(hidden) + eps);
    float* o = out + r * hidden;
#pragma omp simd
    for (int64_t e = 0; e < hidden; ++e) o[e] = weight[e] * (xr[e] * rstd);
  });
}

// qkv [rows, (heads + 2 * kv_heads) * dim] (row stride qkv_stride): q heads, k heads, v heads. q and k
// are rotated in place with cos/sin rows [positions[r], dim]; keys/values: the layer's K and V rows
// [kv_heads, pool_slots, dim] (kv head stride kv_stride); token r's k and v go to row slots[r].
void hs_rope_write_kv(float* qkv, int64_t qkv_stride, int64_t rows, int64_t heads, int64_t kv_heads,
                      int64_t dim, const int64_t* positions, const float* cos, const float* sin,
                      float* keys, float* values, int64_t kv_stride, const int64_t* slots) {
  for_rows(rows, (heads + 2 * kv_heads) * dim, [&](int64_t r) {
    float tmp[512];  // dim <= 512, checked by the caller
    float* row = qkv + r * qkv_stride;
    const float* c = cos + positions[r] * dim;
    const float* s = sin + positions[r] * dim;
    for (int64_t h = 0; h < heads + kv_heads; ++h) rotate(row + h * dim, c, s, dim, tmp);
    const int64_t slot = slots[r];
    for (int64_t h = 0; h < kv_heads; ++h) {
      std::memcpy(keys + h * kv_stride + slot * dim, row + (heads + h) * dim, dim * sizeof(float));
      std::memcpy(values + h * kv_stride + slot * dim, row + (heads + kv_heads + h) * dim,
                  dim * sizeof(float));
    }
  });
}
}
#pragma GCC pop_options
"""
