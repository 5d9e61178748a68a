"""A small compiled kernel for decode attention that reads the paged KV pool in place (float32, CPU).

Why hand-written: torch has no paged attention on CPU (SDPA and `flex_attention` want K/V as dense
tensors, so every decode step first copied each sequence's whole K out of the pool: 10% of a batched
decode step, issue 18), and vLLM's CPU attention op lives in vLLM's own extension, which the native
engine must not depend on. The kernel is two loops over a row's block table:
- `hs_decode_scores`: scores[row, head, j] = scale * q[row, head] . K[slot(row, j)] for j < length,
  -inf beyond (padding to the step's longest row); softmax then runs in torch (same arithmetic as the
  gathered path: exp(x - max) / sum in float32);
- `hs_decode_values`: out[row, head] = sum_j probs[row, head, j] * V[slot(row, j)].
Grouped-query heads share their KV row: each K and V row is loaded once for all the query heads of its
kv head. Work items (row, kv head) are spread over torch's intra-op threads (`at::parallel_for`, the
same OpenMP pool torch uses), strided so rows sorted by length split evenly.
The same library holds the fused per-layer ops (residual add + RMSNorm, RoPE + KV write; their source
and contracts are in layer_kernels.py).

Build: the source below is compiled once with the system C++ compiler against torch's headers
(ATen/Parallel.h only, ~3 s) into `$TORCH_EXTENSIONS_DIR/heteroserve` (default
`~/.cache/torch_extensions/heteroserve`), named by a hash of the source, flags, torch version and CPU
flags (it is built with -march=native), written to a temporary name and renamed so concurrent builds
are safe. No compiler, a failed build, or `HETEROSERVE_PAGED_KERNEL=0` means `load()` returns None and
the engine keeps its pure-torch path (gather K, `embedding_bag` over V), logging why once.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import torch
import torch.utils.cpp_extension as cpp

from workers.engine import layer_kernels

log = logging.getLogger(__name__)

ATTENTION_SOURCE = r"""
#include <ATen/Parallel.h>
#include <algorithm>
#include <cstdint>
#include <limits>
#if defined(__AVX512F__) && defined(__AVX512DQ__)
#include <immintrin.h>
#define HS_AVX512 1
#endif

namespace {
#ifdef HS_AVX512
// The sums of four 16-lane vectors, as lanes 0..3: one shared reduction tree (~5 ops per sum instead of
// ~8 for one vector at a time; the reductions, not the FMAs, bound the scores loop).
inline __m128 hsum4(__m512 a, __m512 b, __m512 c, __m512 d) {
  const auto fold = [](__m512 v) {
    return _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
  };
  const __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(fold(a), fold(b)), _mm256_hadd_ps(fold(c), fold(d)));
  return _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
}

// Scores of four query heads (qg [4, DIM]) against one key row k [DIM], scaled, into s[g * stride].
template <int DIM>
inline void scores4(const float* qg, const float* k, float scale, float* s, int64_t stride) {
  __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
  for (int d = 0; d < DIM; d += 16) {
    const __m512 kv = _mm512_loadu_ps(k + d);
    for (int g = 0; g < 4; ++g) acc[g] = _mm512_fmadd_ps(_mm512_loadu_ps(qg + g * DIM + d), kv, acc[g]);
  }
  alignas(16) float out[4];
  _mm_store_ps(out, _mm_mul_ps(hsum4(acc[0], acc[1], acc[2], acc[3]), _mm_set1_ps(scale)));
  for (int g = 0; g < 4; ++g) s[g * stride] = out[g];
}
#endif

// The row's next block (null after its last one). Blocks sit anywhere in a pool of gigabytes, so the
// hardware prefetcher restarts at every block; while a block is read, each of its rows asks for the same
// row of the next block (prefetch only: no arithmetic changes). Measured: 8 layers, 32 rows x 100-600
// tokens in random blocks of a 1 GiB pool, 1 thread: see docs/benchmarks.md (bench engine, session 6).
inline const float* next_block(const float* base, const int64_t* blocks, int64_t b, int64_t start,
                               int64_t len, int64_t block_size, int64_t dim) {
  return start + block_size < len ? base + blocks[b + 1] * block_size * dim : nullptr;
}

inline void prefetch_row(const float* row, int64_t dim) {
  for (int64_t d = 0; d < dim; d += 16) __builtin_prefetch(row + d, 0, 3);
}

// One (row, kv head) work item. G (query heads per kv head) and DIM (head dim) are compile-time for the
// common shapes so the loops unroll into registers; 0 means "use the runtime value".
template <int G, int DIM>
void scores_item(const float* __restrict__ qh, const float* __restrict__ kh, const int64_t* blocks,
                 int64_t len, int64_t block_size, int64_t group, int64_t dim, float scale,
                 float* __restrict__ s, int64_t max_len) {
  const int64_t gn = G ? G : group, dn = DIM ? DIM : dim;
  for (int64_t start = 0, b = 0; start < len; start += block_size, ++b) {
    const float* kb = kh + blocks[b] * block_size * dn;  // a block's rows are contiguous
    const float* next = next_block(kh, blocks, b, start, len, block_size, dn);
    const int64_t n = std::min(block_size, len - start);
    for (int64_t t = 0; t < n; ++t) {
      const float* k = kb + t * dn;
      if (next != nullptr) prefetch_row(next + t * dn, dn);
#ifdef HS_AVX512
      if constexpr (G % 4 == 0 && G > 0 && DIM % 16 == 0 && DIM > 0) {
        for (int g = 0; g < G; g += 4)
          scores4<DIM>(qh + g * DIM, k, scale, s + g * max_len + start + t, max_len);
        continue;
      }
#endif
      for (int64_t g = 0; g < gn; ++g) {
        const float* qg = qh + g * dn;
        float acc = 0;
#pragma omp simd reduction(+ : acc)
        for (int64_t d = 0; d < dn; ++d) acc += qg[d] * k[d];
        s[g * max_len + start + t] = acc * scale;
      }
    }
  }
}

template <int G, int DIM>
void values_item(const float* __restrict__ p, const float* __restrict__ vh, const int64_t* blocks,
                 int64_t len, int64_t block_size, int64_t group, int64_t dim, int64_t max_len,
                 float* __restrict__ o) {
  const int64_t gn = G ? G : group, dn = DIM ? DIM : dim;
  std::fill(o, o + gn * dn, 0.0f);
  for (int64_t start = 0, b = 0; start < len; start += block_size, ++b) {
    const float* vb = vh + blocks[b] * block_size * dn;
    const float* next = next_block(vh, blocks, b, start, len, block_size, dn);
    const int64_t n = std::min(block_size, len - start);
    for (int64_t t = 0; t < n; ++t) {
      const float* v = vb + t * dn;
      if (next != nullptr) prefetch_row(next + t * dn, dn);
      for (int64_t g = 0; g < gn; ++g) {
        const float w = p[g * max_len + start + t];
        float* og = o + g * dn;
#pragma omp simd
        for (int64_t d = 0; d < dn; ++d) og[d] += w * v[d];
      }
    }
  }
}

// Below this many multiply-adds per thread a parallel region costs more than it saves (a batch-1 layer
// is ~1.5e5: on a shared machine its two-thread region waited for a descheduled thread, 7x slower).
constexpr int64_t kMinWorkPerThread = 1 << 18;

// fn(row, kv_head) for every work item; thread t takes items t, t + T, ... so length-sorted rows spread.
// `work` = multiply-adds of the whole call, bounding how many threads it is split over.
template <typename F> void for_items(int64_t rows, int64_t kv_heads, int64_t work, const F& fn) {
  const int64_t items = rows * kv_heads;
  const int64_t threads = std::max<int64_t>(
      1, std::min({static_cast<int64_t>(at::get_num_threads()), items, work / kMinWorkPerThread}));
  at::parallel_for(0, threads, 1, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t)
      for (int64_t w = t; w < items; w += threads) fn(w / kv_heads, w % kv_heads);
  });
}

// Calls KERNEL<G, DIM>(args...) with compile-time sizes when they are common ones, else <0, 0>.
#define HS_DISPATCH(KERNEL, group, dim, ...)                                          \
  [&] {                                                                               \
    if (dim == 64 && group == 4) return KERNEL<4, 64>(__VA_ARGS__);                   \
    if (dim == 64 && group == 8) return KERNEL<8, 64>(__VA_ARGS__);                   \
    if (dim == 128 && group == 4) return KERNEL<4, 128>(__VA_ARGS__);                 \
    if (dim == 128 && group == 8) return KERNEL<8, 128>(__VA_ARGS__);                 \
    if (dim == 64) return KERNEL<0, 64>(__VA_ARGS__);                                 \
    if (dim == 128) return KERNEL<0, 128>(__VA_ARGS__);                               \
    return KERNEL<0, 0>(__VA_ARGS__);                                                 \
  }()
}  // namespace

extern "C" {
// q [rows, heads, dim] (row stride q_row_stride, heads contiguous), keys: one layer's K
// [kv_heads, slots, dim] (kv head stride kv_stride), table [rows, max_blocks], lengths [rows],
// scores [rows, heads, max_len] out.
void hs_decode_scores(const float* q, int64_t q_row_stride, const float* keys, int64_t kv_stride,
                      const int64_t* table, int64_t max_blocks, const int64_t* lengths, int64_t rows,
                      int64_t kv_heads, int64_t group, int64_t dim, int64_t block_size, float scale,
                      float* scores, int64_t max_len) {
  const float neg_inf = -std::numeric_limits<float>::infinity();
  for_items(rows, kv_heads, rows * kv_heads * group * max_len * dim, [&](int64_t row, int64_t h) {
    float* s = scores + (row * kv_heads + h) * group * max_len;
    const int64_t len = lengths[row];
    HS_DISPATCH(scores_item, group, dim, q + row * q_row_stride + h * group * dim, keys + h * kv_stride,
                table + row * max_blocks, len, block_size, group, dim, scale, s, max_len);
    for (int64_t g = 0; g < group; ++g) std::fill(s + g * max_len + len, s + (g + 1) * max_len, neg_inf);
  });
}

// probs [rows, heads, max_len], values: one layer's V like keys above, out [rows, heads, dim].
void hs_decode_values(const float* probs, const float* values, int64_t kv_stride, const int64_t* table,
                      int64_t max_blocks, const int64_t* lengths, int64_t rows, int64_t kv_heads,
                      int64_t group, int64_t dim, int64_t block_size, int64_t max_len, float* out) {
  for_items(rows, kv_heads, rows * kv_heads * group * max_len * dim, [&](int64_t row, int64_t h) {
    HS_DISPATCH(values_item, group, dim, probs + (row * kv_heads + h) * group * max_len,
                values + h * kv_stride, table + row * max_blocks, lengths[row], block_size, group, dim,
                max_len, out + (row * kv_heads + h) * group * dim);
  });
}
}
"""

SOURCE = ATTENTION_SOURCE + layer_kernels.SOURCE
FLAGS = ("-O3", "-march=native", "-fopenmp", "-shared", "-fPIC", "-std=c++17")
_I64, _PTR, _F32 = ctypes.c_int64, ctypes.c_void_p, ctypes.c_float


class PagedKernel:
    """The loaded library; arguments are raw pointers and sizes (see SOURCE), checked by the caller."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        self.scores = lib.hs_decode_scores
        self.scores.argtypes = [_PTR, _I64, _PTR, _I64, _PTR, _I64, _PTR, _I64, _I64, _I64, _I64, _I64,
                                _F32, _PTR, _I64]
        self.scores.restype = None
        self.values = lib.hs_decode_values
        self.values.argtypes = [_PTR, _PTR, _I64, _PTR, _I64, _PTR, _I64, _I64, _I64, _I64, _I64, _I64,
                                _PTR]
        self.values.restype = None
        self.add_rms_norm = lib.hs_add_rms_norm
        self.add_rms_norm.argtypes = [_PTR, _I64, _PTR, _I64, _PTR, _PTR, _I64, _I64, _F32]
        self.add_rms_norm.restype = None
        self.rope_write_kv = lib.hs_rope_write_kv
        self.rope_write_kv.argtypes = [_PTR, _I64, _I64, _I64, _I64, _I64, _PTR, _PTR, _PTR, _PTR, _PTR, _I64,
                                       _PTR]
        self.rope_write_kv.restype = None


def _cpu_flags() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return line
    except OSError:
        pass
    return os.uname().machine


def _build_flags() -> list[str]:
    abi = f"-D_GLIBCXX_USE_CXX11_ABI={int(torch.compiled_with_cxx11_abi())}"
    lib_dir = Path(torch.__file__).parent / "lib"
    includes = [f"-I{p}" for p in cpp.include_paths()]
    return [*FLAGS, abi, *includes, f"-L{lib_dir}", f"-Wl,-rpath,{lib_dir}"]


def _library_path() -> Path:
    root = Path(os.environ.get("TORCH_EXTENSIONS_DIR") or Path.home() / ".cache" / "torch_extensions")
    key = hashlib.sha256("\0".join([SOURCE, *_build_flags(), torch.__version__, _cpu_flags()]).encode())
    return root / "heteroserve" / f"paged_attention_{key.hexdigest()[:16]}.so"


def _build(target: Path) -> None:
    compiler = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
    if compiler is None:
        raise RuntimeError("no C++ compiler (g++ or c++) on PATH")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        source, built = Path(tmp) / "paged_attention.cpp", Path(tmp) / target.name
        source.write_text(SOURCE)
        cmd = [compiler, str(source), "-o", str(built), *_build_flags(), "-lc10", "-ltorch_cpu"]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            raise RuntimeError(f"compiling the paged-attention kernel failed: {done.stderr.strip()[-2000:]}")
        os.replace(built, target)  # atomic: a concurrent build of the same source writes the same file


@functools.cache
def load() -> PagedKernel | None:
    """The kernel, built on first use; None (pure-torch path) when disabled or it cannot be built."""
    if os.environ.get("HETEROSERVE_PAGED_KERNEL", "1") == "0":
        return None
    try:
        target = _library_path()  # inside: a process without a home directory falls back too
        if not target.exists():
            _build(target)
        return PagedKernel(ctypes.CDLL(str(target)))
    except (OSError, RuntimeError, KeyError, subprocess.SubprocessError) as exc:
        log.warning("paged-attention kernel unavailable, decode attention gathers K instead: %s", exc)
        return None
