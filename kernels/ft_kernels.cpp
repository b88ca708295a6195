// FineTune's MLX CPU primitives: SwiGLU, causal attention and a chunked
// linear cross-entropy, each with a backward primitive of its own.
//
// Why: MLX's CPU element-wise kernels run on one thread, scalar, so on a
// small model they take most of a training step (exp over the attention
// scores and over batch × length × vocabulary logits above all). These run
// vectorised (the compiler's clones for AVX-512 / AVX2+FMA / baseline x86,
// picked at load time) across the cores, and hand the matrix products to
// the BLAS MLX itself uses (cblas_sgemm, found at run time).
//
// Like MLX's own CPU primitives, `eval_cpu` allocates the outputs and queues
// the work on the stream's command encoder; the work runs after its inputs'.

#include "ft_kernels.h"

#include <dlfcn.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <functional>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
#endif

#include "mlx/backend/cpu/encoder.h"
#include "mlx/c/private/array.h"
#include "mlx/mlx.h"
#include "mlx/primitives.h"

#if defined(__x86_64__) && defined(__linux__) && defined(__GNUC__)
#define FT_SIMD \
  __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define FT_SIMD
#endif
#define FT_INLINE static inline __attribute__((always_inline))

namespace ft {
using mlx::core::array;
using mlx::core::Shape;
using mlx::core::Stream;

namespace {

thread_local std::string last_error;
std::atomic<int> thread_setting{0};

int threads() {
  int t = thread_setting.load();
  if (t > 0) {
    return t;
  }
  if (const char* env = std::getenv("FINETUNE_KERNEL_THREADS")) {
    if (int n = std::atoi(env); n > 0) {
      return n;
    }
  }
  unsigned hw = std::thread::hardware_concurrency();
  return hw > 0 ? static_cast<int>(hw) : 1;
}

// Flushes denormal floats to zero on this thread for a scope. Denormal
// operands or results make x86 cores take microcode assists: the SwiGLU
// loop ran 8x slower on gate values of ±2 (5.4 vs 0.7 ms over 1.6M floats),
// and the softmax loops meet them on every masked score (exp of −87).
// Values below 1.2e-38 change nothing in training.
class FlushDenormals {
 public:
#if defined(__x86_64__) || defined(__i386__)
  FlushDenormals() : saved_(_mm_getcsr()) {
    _mm_setcsr(saved_ | 0x8040);  // FTZ | DAZ
  }
  ~FlushDenormals() {
    _mm_setcsr(saved_);
  }

 private:
  unsigned saved_;
#endif
};

// Worker threads started once, one fewer than the cores. Starting and
// joining a std::thread per call cost ~40 µs here, as much as a whole call
// of the thin kernels (a LoRA rank-8 product over 672 rows: ~0.15 ms).
class Pool {
 public:
  static Pool& get() {
    // As many workers as the machine has cores but one (a later, larger
    // thread setting then still finds them); never destroyed, as the
    // workers outlive static destruction at exit.
    static Pool* pool = new Pool(
        std::max<int>(threads(), static_cast<int>(std::thread::hardware_concurrency())) - 1);
    return *pool;
  }

  // Runs job(part) for each part in [0, parts), part 0 on the caller;
  // returns when all have run. A call made while another runs (another
  // thread's kernel) runs its parts on the caller alone.
  void run(int parts, const std::function<void(int)>& job) {
    std::unique_lock<std::mutex> busy(busy_, std::try_to_lock);
    const int helpers = std::min(parts - 1, static_cast<int>(workers_.size()));
    if (!busy.owns_lock() || helpers <= 0) {
      for (int p = 0; p < parts; ++p) {
        job(p);
      }
      return;
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      job_ = &job;
      parts_ = parts;
      next_ = 1;
      helpers_ = running_ = helpers;
      joined_ = 0;
      ++generation_;
    }
    wake_.notify_all();
    job(0);
    for (int p = take(); p < parts; p = take()) {
      job(p);
    }
    std::unique_lock<std::mutex> lock(mutex_);
    done_.wait(lock, [&] { return running_ == 0; });
  }

 private:
  explicit Pool(int workers) {
    for (int w = 0; w < workers; ++w) {
      workers_.emplace_back([this] { work(); });
      workers_.back().detach();
    }
  }

  int take() {
    std::lock_guard<std::mutex> lock(mutex_);
    return next_ < parts_ ? next_++ : parts_;
  }

  void work() {
    uint64_t seen = 0;
    for (;;) {
      const std::function<void(int)>* job;
      int parts;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] { return generation_ != seen; });
        seen = generation_;
        if (joined_ == helpers_) {
          continue;  // this run has the helpers it asked for
        }
        ++joined_;
        job = job_;
        parts = parts_;
      }
      for (int p = take(); p < parts; p = take()) {
        (*job)(p);
      }
      std::lock_guard<std::mutex> lock(mutex_);
      if (--running_ == 0) {
        done_.notify_one();
      }
    }
  }

  std::vector<std::thread> workers_;
  std::mutex busy_, mutex_;
  std::condition_variable wake_, done_;
  const std::function<void(int)>* job_ = nullptr;
  // Only `helpers_` workers join a run (the caller waits for that many),
  // however many wake.
  int parts_ = 0, next_ = 0, helpers_ = 0, joined_ = 0, running_ = 0;
  uint64_t generation_ = 0;
};

// Runs f(begin, end) over [0, n) split into one contiguous range per thread.
template <class F>
void parallel_ranges(int64_t n, F f) {
  const int64_t parts = std::min<int64_t>(n, threads());
  if (parts <= 0) {
    return;
  }
  const int64_t per = (n + parts - 1) / parts;
  Pool::get().run(static_cast<int>(parts), [&](int p) {
    const int64_t b = p * per, e = std::min(n, b + per);
    if (b < e) {
      FlushDenormals flush;
      f(b, e);
    }
  });
}

// Runs f(i) for each i in [0, n), threads taking the next i as they finish
// (the items of causal attention differ in cost).
template <class F>
void parallel_items(int64_t n, F f) {
  std::atomic<int64_t> next{0};
  const int64_t parts = std::min<int64_t>(n, threads());
  if (parts <= 0) {
    return;
  }
  Pool::get().run(static_cast<int>(parts), [&](int) {
    FlushDenormals flush;
    for (int64_t i = next++; i < n; i = next++) {
      f(i);
    }
  });
}

// ---------------------------------------------------------------- BLAS ---

using SgemmFn = void (*)(
    int, int, int, int, int, int, float, const float*, int, const float*, int,
    float, float*, int);
constexpr int kRowMajor = 101, kNoTrans = 111, kTrans = 112;

SgemmFn find_sgemm() {
  static SgemmFn f =
      reinterpret_cast<SgemmFn>(dlsym(RTLD_DEFAULT, "cblas_sgemm"));
  return f;
}

// While our own threads each call sgemm, OpenBLAS must not spread every
// call over the cores as well: concurrent threaded calls contend (measured:
// 5-20x slower). This holds it to one thread for a scope, process-wide —
// MLX's own sgemm calls on this stream wait for our task anyway.
class SingleThreadedBlas {
 public:
  SingleThreadedBlas() {
    using Get = int (*)();
    static auto get = reinterpret_cast<Get>(dlsym(RTLD_DEFAULT, "openblas_get_num_threads"));
    static auto set = reinterpret_cast<Set>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"));
    set_ = set;
    if (get && set && threads() > 1) {
      saved_ = get();
      set(1);
    }
  }
  ~SingleThreadedBlas() {
    if (saved_ > 1) {
      set_(saved_);
    }
  }

 private:
  using Set = void (*)(int);
  Set set_ = nullptr;
  int saved_ = 0;
};

// C = alpha · op(A) · op(B) + beta · C, row-major.
void gemm(
    bool trans_a,
    bool trans_b,
    int m,
    int n,
    int k,
    float alpha,
    const float* a,
    int lda,
    const float* b,
    int ldb,
    float beta,
    float* c,
    int ldc) {
  if (m == 0 || n == 0) {
    return;
  }
  if (auto f = find_sgemm()) {
    f(kRowMajor,
      trans_a ? kTrans : kNoTrans,
      trans_b ? kTrans : kNoTrans,
      m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    return;
  }
  // No BLAS in the process: plain loops (correct, slow).
  for (int i = 0; i < m; ++i) {
    for (int j = 0; j < n; ++j) {
      float s = 0;
      for (int p = 0; p < k; ++p) {
        float x = trans_a ? a[p * lda + i] : a[i * lda + p];
        float y = trans_b ? b[j * ldb + p] : b[p * ldb + j];
        s += x * y;
      }
      c[i * ldc + j] = alpha * s + (beta == 0 ? 0 : beta * c[i * ldc + j]);
    }
  }
}

// ---------------------------------------------------------------- math ---

// exp(x) for float32 with a Cephes-style polynomial: branch-free, so loops
// of it vectorise. Relative error ≈ 2e-7; inputs below -87 give ~1e-38.
FT_INLINE float exp_approx(float x) {
  x = std::min(std::max(x, -87.3f), 88.0f);
  // round(x / ln 2) by truncating a positive number: floorf would keep
  // GCC from vectorising the loop (it may trap).
  const int32_t k = static_cast<int32_t>(x * 1.44269504088896341f + 128.5f) - 128;
  const float n = static_cast<float>(k);
  float r = x - n * 0.693359375f + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  float y = p * r * r + r + 1.0f;
  int32_t bits = (k + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return y * scale;
}

FT_SIMD void swiglu_forward(const float* a, const float* b, float* out, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    float s = 1.0f / (1.0f + exp_approx(-a[i]));
    out[i] = a[i] * s * b[i];
  }
}

FT_SIMD void swiglu_backward(
    const float* a, const float* b, const float* g, float* da, float* db,
    int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    float s = 1.0f / (1.0f + exp_approx(-a[i]));
    float silu = a[i] * s;
    db[i] = g[i] * silu;
    da[i] = g[i] * b[i] * s * (1.0f + a[i] * (1.0f - s));
  }
}

// 1 / sqrt(mean(x²) + eps) of one row.
FT_SIMD float inverse_rms(const float* x, int64_t n, float eps) {
  float ss = 0;
#pragma omp simd reduction(+ : ss)
  for (int64_t j = 0; j < n; ++j) {
    ss += x[j] * x[j];
  }
  return 1.0f / std::sqrt(ss / static_cast<float>(n) + eps);
}

FT_SIMD void rms_norm_row(const float* x, const float* w, float inv, float* y, int64_t n) {
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) {
    y[j] = x[j] * inv * w[j];
  }
}

// dx of one row: with g = dy·w, dx = inv·g − x·inv³·(g·x)/n; and, when
// `dw` is given, dw += dy·x·inv.
FT_SIMD void rms_norm_row_backward(
    const float* x, const float* w, const float* dy, float inv, float* dx, float* dw,
    int64_t n) {
  float dot = 0;
#pragma omp simd reduction(+ : dot)
  for (int64_t j = 0; j < n; ++j) {
    dot += dy[j] * w[j] * x[j];
  }
  const float k = inv * inv * inv * dot / static_cast<float>(n);
  if (dx) {
#pragma omp simd
    for (int64_t j = 0; j < n; ++j) {
      dx[j] = inv * dy[j] * w[j] - x[j] * k;
    }
  }
  if (dw) {
#pragma omp simd
    for (int64_t j = 0; j < n; ++j) {
      dw[j] += dy[j] * x[j] * inv;
    }
  }
}

// One head vector's rotated pairs: o[i] = x[i]·c − x[i+half]·s,
// o[i+half] = x[i]·s + x[i+half]·c.
FT_SIMD void rope_row(const float* x, const float* c, const float* s, int64_t half, float* o) {
#pragma omp simd
  for (int64_t i = 0; i < half; ++i) {
    const float a = x[i], b = x[i + half];
    o[i] = a * c[i] - b * s[i];
    o[i + half] = a * s[i] + b * c[i];
  }
}

// Scores of one query row → probabilities in place; keys outside the row's
// allowed set (after `last`, or another segment) get 0. Returns logsumexp.
// `row[j]` is key `first + j`; `seg` holds every key's segment (all zeros
// without packing), so the loops have no branches and vectorise.
FT_SIMD float softmax_row(
    float* row, int n, int first, int last, const int32_t* seg, int32_t own) {
  float m = -std::numeric_limits<float>::infinity();
#pragma omp simd reduction(max : m)
  for (int j = 0; j < n; ++j) {
    const bool ok = (first + j <= last) & (seg[first + j] == own);
    m = std::max(m, ok ? row[j] : -std::numeric_limits<float>::infinity());
  }
  float s = 0;
#pragma omp simd reduction(+ : s)
  for (int j = 0; j < n; ++j) {
    const bool ok = (first + j <= last) & (seg[first + j] == own);
    float p = ok ? exp_approx(row[j] - m) : 0.0f;
    row[j] = p;
    s += p;
  }
  float inv = 1.0f / s;
#pragma omp simd
  for (int j = 0; j < n; ++j) {
    row[j] *= inv;
  }
  return m + std::log(s);
}

// Backward of one row: `scores` holds the scores on entry and the
// recomputed probabilities on exit; `row` holds dO·Vᵀ on entry and dS on
// exit (`dot` = dO·O of the row, `lse` its logsumexp).
FT_SIMD void softmax_row_backward(
    float* scores, float* row, int n, int first, int last,
    const int32_t* seg, int32_t own, float lse, float dot, float scale) {
#pragma omp simd
  for (int j = 0; j < n; ++j) {
    const bool ok = (first + j <= last) & (seg[first + j] == own);
    float p = ok ? exp_approx(scores[j] - lse) : 0.0f;
    scores[j] = p;
    row[j] = p * (row[j] - dot) * scale;
  }
}

FT_SIMD float dot(const float* a, const float* b, int n) {
  float s = 0;
#pragma omp simd reduction(+ : s)
  for (int i = 0; i < n; ++i) {
    s += a[i] * b[i];
  }
  return s;
}

// row ← g · (softmax(row) − onehot(target)).
FT_SIMD void cross_entropy_row_grad(
    float* row, int64_t n, float lse, int32_t target, float g) {
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) {
    row[j] = g * exp_approx(row[j] - lse);
  }
  if (target >= 0 && target < n) {
    row[target] -= g;
  }
}

// ------------------------------------------------------------ helpers ---

void allocate(array& a) {
  a.set_data(mlx::core::allocator::malloc(a.nbytes()));
}

// Working memory taken from MLX's allocator, so that MLX's memory figures
// (active, peak) count it like any array.
class Scratch {
 public:
  explicit Scratch(int64_t floats)
      : buffer_(mlx::core::allocator::malloc(std::max<int64_t>(floats, 1) * sizeof(float))) {}
  ~Scratch() {
    mlx::core::allocator::free(buffer_);
  }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  float* data() {
    return static_cast<float*>(buffer_.raw_ptr());
  }

 private:
  mlx::core::allocator::Buffer buffer_;
};

mlx::core::cpu::CommandEncoder& encoder(Stream s) {
  return mlx::core::cpu::get_command_encoder(s);
}

void require_f32(const array& a, const char* what) {
  if (a.dtype() != mlx::core::float32) {
    throw std::invalid_argument(std::string(what) + " must be float32");
  }
}

array dense(const array& a, Stream s) {
  return mlx::core::contiguous(a, false, s);
}

std::vector<array> pick(const std::vector<array>& all, const std::vector<int>& argnums) {
  std::vector<array> out;
  for (int a : argnums) {
    out.push_back(all[a]);
  }
  return out;
}

// A primitive with a CPU implementation only: the engine calls these on
// the CPU device alone (MLX's own kernels serve Metal and CUDA).
class CpuOnly : public mlx::core::Primitive {
 public:
  using Primitive::Primitive;
  void eval_gpu(const std::vector<array>&, std::vector<array>&) override {
    throw std::runtime_error(std::string(name()) + ": FineTune's kernels run on the CPU only");
  }
};

// ------------------------------------------------------------- SwiGLU ---

class SwiGLUGrad : public CpuOnly {
 public:
  explicit SwiGLUGrad(Stream s) : CpuOnly(s) {}
  void eval_cpu(const std::vector<array>& in, std::vector<array>& out) override {
    allocate(out[0]);
    allocate(out[1]);
    encoder(stream()).dispatch([a = in[0].data<float>(),
                                b = in[1].data<float>(),
                                g = in[2].data<float>(),
                                da = out[0].data<float>(),
                                db = out[1].data<float>(),
                                n = static_cast<int64_t>(in[0].size())] {
      parallel_ranges(n, [&](int64_t s, int64_t e) {
        swiglu_backward(a + s, b + s, g + s, da + s, db + s, e - s);
      });
    });
  }
  const char* name() const override {
    return "FtSwiGLUGrad";
  }
  bool is_equivalent(const Primitive&) const override {
    return true;
  }
};

class SwiGLU : public CpuOnly {
 public:
  explicit SwiGLU(Stream s) : CpuOnly(s) {}
  void eval_cpu(const std::vector<array>& in, std::vector<array>& out) override {
    allocate(out[0]);
    encoder(stream()).dispatch([a = in[0].data<float>(),
                                b = in[1].data<float>(),
                                o = out[0].data<float>(),
                                n = static_cast<int64_t>(out[0].size())] {
      parallel_ranges(n, [&](int64_t s, int64_t e) {
        swiglu_forward(a + s, b + s, o + s, e - s);
      });
    });
  }
  std::vector<array> vjp(
      const std::vector<array>& primals,
      const std::vector<array>& cotangents,
      const std::vector<int>& argnums,
      const std::vector<array>&) override {
    auto grads = array::make_arrays(
        {primals[0].shape(), primals[0].shape()},
        {mlx::core::float32, mlx::core::float32},
        std::make_shared<SwiGLUGrad>(stream()),
        {primals[0], primals[1], dense(cotangents[0], stream())});
    return pick(grads, argnums);
  }
  const char* name() const override {
    return "FtSwiGLU";
  }
  bool is_equivalent(const Primitive&) const override {
    return true;
  }
  std::vector<Shape> output_shapes(const std::vector<array>& in) override {
    return {in[0].shape()};
  }
};

// ---------------------------------------------------- causal attention ---

constexpr int kQueryBlock = 64;

struct AttentionDims {
  int batch, heads, kv_heads, length, head_dim;
  explicit AttentionDims(const array& q, const array& k)
      : batch(q.shape(0)),
        heads(q.shape(1)),
        kv_heads(k.shape(1)),
        length(q.shape(2)),
        head_dim(q.shape(3)) {}
};

// For each position, the first key it may attend to: the start of its run
// of equal segment ids when every id forms one run (packed rows do), else 0.
std::vector<int> segment_starts(const int32_t* seg, int length) {
  std::vector<int> start(length, 0);
  if (seg == nullptr) {
    return start;
  }
  std::vector<int32_t> closed;
  for (int i = 1; i < length; ++i) {
    if (seg[i] == seg[i - 1]) {
      start[i] = start[i - 1];
    } else {
      closed.push_back(seg[i - 1]);
      if (std::find(closed.begin(), closed.end(), seg[i]) != closed.end()) {
        return std::vector<int>(length, 0);  // an id in two runs: no shortcut
      }
      start[i] = i;
    }
  }
  return start;
}

// One batch row's segment ids (all zeros without packing) and, for each
// position, the first key it may attend to.
struct RowSegments {
  RowSegments(const int32_t* seg, int length) : start(segment_starts(seg, length)) {
    if (seg == nullptr) {
      zeros.assign(length, 0);
    }
    ids = seg ? seg : zeros.data();
  }
  std::vector<int32_t> zeros;
  const int32_t* ids;
  std::vector<int> start;
};

class CausalAttentionGrad : public CpuOnly {
 public:
  CausalAttentionGrad(Stream s, float scale, bool segmented)
      : CpuOnly(s), scale_(scale), segmented_(segmented) {}

  // in: q, k, v, o, lse, dO [, segments]; out: dq, dk, dv.
  void eval_cpu(const std::vector<array>& in, std::vector<array>& out) override {
    for (auto& o : out) {
      allocate(o);
    }
    AttentionDims d(in[0], in[1]);
    encoder(stream()).dispatch([d,
                                scale = scale_,
                                q = in[0].data<float>(),
                                k = in[1].data<float>(),
                                v = in[2].data<float>(),
                                o = in[3].data<float>(),
                                lse = in[4].data<float>(),
                                d_o = in[5].data<float>(),
                                seg = segmented_ ? in[6].data<int32_t>() : nullptr,
                                dq = out[0].data<float>(),
                                dk = out[1].data<float>(),
                                dv = out[2].data<float>()] {
      const int L = d.length, D = d.head_dim, group = d.heads / d.kv_heads;
      SingleThreadedBlas one_blas_thread;
      parallel_items(int64_t{d.batch} * d.kv_heads, [&](int64_t item) {
        const int b = item / d.kv_heads, kvh = item % d.kv_heads;
        const RowSegments row(seg ? seg + int64_t{b} * L : nullptr, L);
        const int32_t* sg = row.ids;
        const std::vector<int>& start = row.start;
        const int64_t kv_off = (int64_t{b} * d.kv_heads + kvh) * L * D;
        const float* K = k + kv_off;
        const float* V = v + kv_off;
        float* dK = dk + kv_off;
        float* dV = dv + kv_off;
        std::fill(dK, dK + int64_t{L} * D, 0.0f);
        std::fill(dV, dV + int64_t{L} * D, 0.0f);
        std::vector<float> scores(int64_t{kQueryBlock} * L), grad(int64_t{kQueryBlock} * L);
        for (int g = 0; g < group; ++g) {
          const int h = kvh * group + g;
          const int64_t q_off = (int64_t{b} * d.heads + h) * L * D;
          const float* Q = q + q_off;
          const float* O = o + q_off;
          const float* dO = d_o + q_off;
          const float* LSE = lse + (int64_t{b} * d.heads + h) * L;
          float* dQ = dq + q_off;
          for (int i0 = 0; i0 < L; i0 += kQueryBlock) {
            const int rows = std::min(kQueryBlock, L - i0), i1 = i0 + rows;
            const int first = start[i0], n = i1 - first;
            gemm(false, true, rows, n, D, scale, Q + int64_t{i0} * D, D,
                 K + int64_t{first} * D, D, 0.0f, scores.data(), n);
            gemm(false, true, rows, n, D, 1.0f, dO + int64_t{i0} * D, D,
                 V + int64_t{first} * D, D, 0.0f, grad.data(), n);
            for (int r = 0; r < rows; ++r) {
              const int i = i0 + r;
              const float di = dot(dO + int64_t{i} * D, O + int64_t{i} * D, D);
              float* srow = scores.data() + int64_t{r} * n;
              float* grow = grad.data() + int64_t{r} * n;
              softmax_row_backward(srow, grow, n, first, i, sg, sg[i],
                                   LSE[i], di, scale);
            }
            gemm(true, false, n, D, rows, 1.0f, scores.data(), n,
                 dO + int64_t{i0} * D, D, 1.0f, dV + int64_t{first} * D, D);
            gemm(false, false, rows, D, n, 1.0f, grad.data(), n,
                 K + int64_t{first} * D, D, 0.0f, dQ + int64_t{i0} * D, D);
            gemm(true, false, n, D, rows, 1.0f, grad.data(), n,
                 Q + int64_t{i0} * D, D, 1.0f, dK + int64_t{first} * D, D);
          }
        }
      });
    });
  }
  const char* name() const override {
    return "FtCausalAttentionGrad";
  }
  bool is_equivalent(const Primitive& other) const override {
    auto& o = static_cast<const CausalAttentionGrad&>(other);
    return scale_ == o.scale_ && segmented_ == o.segmented_;
  }

 private:
  float scale_;
  bool segmented_;
};

class CausalAttention : public CpuOnly {
 public:
  CausalAttention(Stream s, float scale, bool segmented)
      : CpuOnly(s), scale_(scale), segmented_(segmented) {}

  // in: q, k, v [, segments]; out: o, logsumexp of each query's scores.
  void eval_cpu(const std::vector<array>& in, std::vector<array>& out) override {
    allocate(out[0]);
    allocate(out[1]);
    AttentionDims d(in[0], in[1]);
    encoder(stream()).dispatch([d,
                                scale = scale_,
                                q = in[0].data<float>(),
                                k = in[1].data<float>(),
                                v = in[2].data<float>(),
                                seg = segmented_ ? in[3].data<int32_t>() : nullptr,
                                o = out[0].data<float>(),
                                lse = out[1].data<float>()] {
      const int L = d.length, D = d.head_dim, group = d.heads / d.kv_heads;
      SingleThreadedBlas one_blas_thread;
      parallel_items(int64_t{d.batch} * d.heads, [&](int64_t item) {
        const int b = item / d.heads, h = item % d.heads, kvh = h / group;
        const RowSegments row(seg ? seg + int64_t{b} * L : nullptr, L);
        const int32_t* sg = row.ids;
        const std::vector<int>& start = row.start;
        const int64_t q_off = (int64_t{b} * d.heads + h) * L * D;
        const int64_t kv_off = (int64_t{b} * d.kv_heads + kvh) * L * D;
        float* LSE = lse + (int64_t{b} * d.heads + h) * L;
        std::vector<float> scores(int64_t{kQueryBlock} * L);
        for (int i0 = 0; i0 < L; i0 += kQueryBlock) {
          const int rows = std::min(kQueryBlock, L - i0), i1 = i0 + rows;
          const int first = start[i0], n = i1 - first;
          gemm(false, true, rows, n, D, scale, q + q_off + int64_t{i0} * D, D,
               k + kv_off + int64_t{first} * D, D, 0.0f, scores.data(), n);
          for (int r = 0; r < rows; ++r) {
            const int i = i0 + r;
            LSE[i] = softmax_row(scores.data() + int64_t{r} * n, n, first, i, sg,
                                 sg[i]);
          }
          gemm(false, false, rows, D, n, 1.0f, scores.data(), n,
               v + kv_off + int64_t{first} * D, D, 0.0f,
               o + q_off + int64_t{i0} * D, D);
        }
      });
    });
  }
  // The logsumexp output only feeds the backward pass; its cotangent is
  // not propagated.
  std::vector<array> vjp(
      const std::vector<array>& primals,
      const std::vector<array>& cotangents,
      const std::vector<int>& argnums,
      const std::vector<array>& outputs) override {
    std::vector<array> inputs = {primals[0], primals[1], primals[2], outputs[0],
                                 outputs[1], dense(cotangents[0], stream())};
    if (segmented_) {
      inputs.push_back(primals[3]);
    }
    auto grads = array::make_arrays(
        {primals[0].shape(), primals[1].shape(), primals[2].shape()},
        {mlx::core::float32, mlx::core::float32, mlx::core::float32},
        std::make_shared<CausalAttentionGrad>(stream(), scale_, segmented_),
        inputs);
    if (segmented_) {
      grads.push_back(mlx::core::zeros_like(primals[3], stream()));
    }
    return pick(grads, argnums);
  }
  const char* name() const override {
    return "FtCausalAttention";
  }
  bool is_equivalent(const Primitive& other) const override {
    auto& o = static_cast<const CausalAttention&>(other);
    return scale_ == o.scale_ && segmented_ == o.segmented_;
  }
  std::vector<Shape> output_shapes(const std::vector<array>& in) override {
    return {in[0].shape(), {in[0].shape(0), in[0].shape(1), in[0].shape(2)}};
  }

 private:
  float scale_;
  bool segmented_;
};

// ---------------------------------------------- linear cross-entropy ---

// Vocabulary columns of logits made at once for `rows` rows: about 8M
// floats (32 MB), so the logits are never whole.
int64_t block_columns(int64_t rows, int64_t vocab) {
  return std::clamp<int64_t>((int64_t{1} << 23) / std::max<int64_t>(rows, 1), 256, std::max<int64_t>(vocab, 1));
}

// Online logsumexp of one row over a block of its logits: `max` and `sum`
// carry the running maximum and Σ exp(x − max).
FT_SIMD void logsumexp_update(const float* row, int64_t n, float& max, float& sum) {
  float m = -std::numeric_limits<float>::infinity();
#pragma omp simd reduction(max : m)
  for (int64_t j = 0; j < n; ++j) {
    m = std::max(m, row[j]);
  }
  if (m > max) {
    sum *= exp_approx(max - m);
    max = m;
  }
  const float base = max;
  float s = 0;
#pragma omp simd reduction(+ : s)
  for (int64_t j = 0; j < n; ++j) {
    s += exp_approx(row[j] - base);
  }
  sum += s;
}

class LinearCrossEntropyGrad : public CpuOnly {
 public:
  LinearCrossEntropyGrad(Stream s, bool weight_grad)
      : CpuOnly(s), weight_grad_(weight_grad) {}

  // in: hidden, weight, targets, lse, g; out: d hidden [, d weight].
  void eval_cpu(const std::vector<array>& in, std::vector<array>& out) override {
    for (auto& o : out) {
      allocate(o);
    }
    const int64_t N = in[0].shape(0), E = in[0].shape(1), V = in[1].shape(0);
    encoder(stream()).dispatch([N, E, V,
                                h = in[0].data<float>(),
                                w = in[1].data<float>(),
                                t = in[2].data<int32_t>(),
                                lse = in[3].data<float>(),
                                g = in[4].data<float>(),
                                dh = out[0].data<float>(),
                                dw = weight_grad_ ? out[1].data<float>() : nullptr] {
      std::fill(dh, dh + N * E, 0.0f);
      // Rows with a zero cotangent (masked tokens) contribute nothing.
      std::vector<int64_t> active;
      for (int64_t i = 0; i < N; ++i) {
        if (g[i] != 0.0f) {
          active.push_back(i);
        }
      }
      const int64_t A = active.size();
      if (A == 0) {
        if (dw) {
          std::fill(dw, dw + V * E, 0.0f);
        }
        return;
      }
      Scratch hb(A * E), dhb(A * E);
      std::fill(dhb.data(), dhb.data() + A * E, 0.0f);
      for (int64_t r = 0; r < A; ++r) {
        std::memcpy(hb.data() + r * E, h + active[r] * E, E * sizeof(float));
      }
      const int64_t C = block_columns(A, V);
      Scratch logits(A * C);
      for (int64_t c0 = 0; c0 < V; c0 += C) {
        const int64_t cols = std::min(C, V - c0);
        gemm(false, true, A, cols, E, 1.0f, hb.data(), E, w + c0 * E, E, 0.0f,
             logits.data(), cols);
        parallel_ranges(A, [&](int64_t s, int64_t e) {
          for (int64_t r = s; r < e; ++r) {
            const int64_t i = active[r];
            cross_entropy_row_grad(logits.data() + r * cols, cols, lse[i],
                                   t[i] - static_cast<int32_t>(c0), g[i]);
          }
        });
        gemm(false, false, A, E, cols, 1.0f, logits.data(), cols, w + c0 * E, E,
             1.0f, dhb.data(), E);
        if (dw) {
          gemm(true, false, cols, E, A, 1.0f, logits.data(), cols, hb.data(), E,
               0.0f, dw + c0 * E, E);
        }
      }
      for (int64_t r = 0; r < A; ++r) {
        std::memcpy(dh + active[r] * E, dhb.data() + r * E, E * sizeof(float));
      }
    });
  }
  const char* name() const override {
    return "FtLinearCrossEntropyGrad";
  }
  bool is_equivalent(const Primitive& other) const override {
    return weight_grad_ == static_cast<const LinearCrossEntropyGrad&>(other).weight_grad_;
  }

 private:
  bool weight_grad_;
};

// Online softmax of one row over a block of its logits, in place: the
// running `max` and `sum` (Σ exp(x − max)) are updated and the block's
// entries become exp(x − max). Returns the factor by which sums made with
// the previous max must be scaled (1 when it did not grow).
FT_SIMD float softmax_block_update(float* row, int64_t n, float& max, float& sum) {
  float m = max;
#pragma omp simd reduction(max : m)
  for (int64_t j = 0; j < n; ++j) {
    m = std::max(m, row[j]);
  }
  const float rescale = m > max ? exp_approx(max - m) : 1.0f;
  max = m;
  float s = 0;
#pragma omp simd reduction(+ : s)
  for (int64_t j = 0; j < n; ++j) {
    const float p = exp_approx(row[j] - m);
    row[j] = p;
    s += p;
  }
  sum = sum * rescale + s;
  return rescale;
}

FT_SIMD void scale_row(float* row, int64_t n, float by) {
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) {
    row[j] *= by;
  }
}

// dh ← dh / sum − w_target: the finished gradient of one row's loss.
FT_SIMD void finish_hidden_grad(float* dh, const float* w_target, int64_t n, float sum) {
  const float inv = 1.0f / sum;
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) {
    dh[j] = dh[j] * inv - w_target[j];
  }
}

// Rows of a (rows, width) matrix picked by index, copied out and back.
void gather_rows(const float* from, const std::vector<int64_t>& rows, int64_t width, float* to) {
  for (size_t r = 0; r < rows.size(); ++r) {
    std::memcpy(to + r * width, from + rows[r] * width, width * sizeof(float));
  }
}
void scatter_rows(const float* from, const std::vector<int64_t>& rows, int64_t width, float* to) {
  for (size_t r = 0; r < rows.size(); ++r) {
    std::memcpy(to + rows[r] * width, from + r * width, width * sizeof(float));
  }
}

class LinearCrossEntropy : public CpuOnly {
 public:
  LinearCrossEntropy(Stream s, bool masked, bool with_grad)
      : CpuOnly(s), masked_(masked), with_grad_(with_grad) {}

  // in: hidden (N, E), weight (V, E), targets (N) [, mask (N)];
  // out: nll (N), lse (N) [, d nll / d hidden (N, E)].
  // Rows whose mask is 0 are skipped (nll 0). With `with_grad` the pass
  // also makes each row's gradient w.r.t. its hidden state — Σ softmax ·
  // W − W[target], accumulated block by block with an online softmax — so
  // the backward pass only scales it by the cotangent instead of making
  // the logits again (one vocabulary-sized product fewer per step).
  void eval_cpu(const std::vector<array>& in, std::vector<array>& out) override {
    for (auto& o : out) {
      allocate(o);
    }
    const int64_t N = in[0].shape(0), E = in[0].shape(1), V = in[1].shape(0);
    encoder(stream()).dispatch([N, E, V,
                                h = in[0].data<float>(),
                                w = in[1].data<float>(),
                                t = in[2].data<int32_t>(),
                                mask = masked_ ? in[3].data<float>() : nullptr,
                                nll = out[0].data<float>(),
                                lse = out[1].data<float>(),
                                dh = with_grad_ ? out[2].data<float>() : nullptr] {
      std::vector<int64_t> active;
      for (int64_t i = 0; i < N; ++i) {
        if (!mask || mask[i] != 0.0f) {
          active.push_back(i);
        }
      }
      std::fill(nll, nll + N, 0.0f);
      std::fill(lse, lse + N, 0.0f);
      if (dh) {
        std::fill(dh, dh + N * E, 0.0f);
      }
      const int64_t A = active.size();
      if (A == 0) {
        return;
      }
      // The active rows, contiguous (no copy when every row is active).
      const bool all = A == N;
      Scratch gathered(all ? 0 : A * E), grad_rows(all || !dh ? 0 : A * E);
      const float* hA = h;
      if (!all) {
        gather_rows(h, active, E, gathered.data());
        hA = gathered.data();
      }
      float* dA = !dh ? nullptr : all ? dh : grad_rows.data();
      if (dA && !all) {
        std::fill(dA, dA + A * E, 0.0f);
      }
      std::vector<float> max(A, -std::numeric_limits<float>::infinity()), sum(A, 0.0f);
      std::vector<float> picked(A, std::numeric_limits<float>::quiet_NaN());
      const int64_t C = block_columns(A, V);
      Scratch logits(A * C);
      for (int64_t c0 = 0; c0 < V; c0 += C) {
        const int64_t cols = std::min(C, V - c0);
        gemm(false, true, A, cols, E, 1.0f, hA, E, w + c0 * E, E, 0.0f, logits.data(), cols);
        parallel_ranges(A, [&](int64_t s, int64_t e) {
          for (int64_t r = s; r < e; ++r) {
            float* row = logits.data() + r * cols;
            const int32_t target = t[active[r]];
            if (target >= c0 && target < c0 + cols) {
              picked[r] = row[target - c0];
            }
            if (dA) {
              const float rescale = softmax_block_update(row, cols, max[r], sum[r]);
              if (rescale != 1.0f) {
                scale_row(dA + r * E, E, rescale);
              }
            } else {
              logsumexp_update(row, cols, max[r], sum[r]);
            }
          }
        });
        if (dA) {
          gemm(false, false, A, E, cols, 1.0f, logits.data(), cols, w + c0 * E, E, 1.0f, dA, E);
        }
      }
      // A target outside the vocabulary leaves `picked` NaN: the loss shows it.
      for (int64_t r = 0; r < A; ++r) {
        const int64_t i = active[r];
        lse[i] = max[r] + std::log(sum[r]);
        nll[i] = lse[i] - picked[r];
        if (dA && t[i] >= 0 && t[i] < V) {
          finish_hidden_grad(dA + r * E, w + int64_t{t[i]} * E, E, sum[r]);
        }
      }
      if (dA && !all) {
        scatter_rows(dA, active, E, dh);
      }
    });
  }
  std::vector<array> vjp(
      const std::vector<array>& primals,
      const std::vector<array>& cotangents,
      const std::vector<int>& argnums,
      const std::vector<array>& outputs) override {
    bool weight_grad = std::find(argnums.begin(), argnums.end(), 1) != argnums.end();
    array d_hidden = primals[0];
    std::vector<array> grads;
    if (with_grad_ && !weight_grad) {
      // The forward pass made d nll / d hidden: scale it row by row.
      d_hidden = mlx::core::multiply(
          mlx::core::expand_dims(cotangents[0], -1, stream()), outputs[2], stream());
    } else {
      std::vector<Shape> shapes = {primals[0].shape()};
      std::vector<mlx::core::Dtype> dtypes = {mlx::core::float32};
      if (weight_grad) {
        shapes.push_back(primals[1].shape());
        dtypes.push_back(mlx::core::float32);
      }
      // Masked rows (whose lse the forward pass skipped) must get a zero
      // cotangent: the backward primitive skips those.
      array g = masked_ ? mlx::core::multiply(cotangents[0], primals[3], stream())
                        : cotangents[0];
      grads = array::make_arrays(
          shapes, dtypes,
          std::make_shared<LinearCrossEntropyGrad>(stream(), weight_grad),
          {primals[0], primals[1], primals[2], outputs[1], dense(g, stream())});
      d_hidden = grads[0];
    }
    std::vector<array> result;
    for (int a : argnums) {
      if (a == 0) {
        result.push_back(d_hidden);
      } else if (a == 1) {
        result.push_back(grads[1]);
      } else {
        result.push_back(mlx::core::zeros_like(primals[a], stream()));
      }
    }
    return result;
  }
  const char* name() const override {
    return "FtLinearCrossEntropy";
  }
  bool is_equivalent(const Primitive& other) const override {
    auto& o = static_cast<const LinearCrossEntropy&>(other);
    return masked_ == o.masked_ && with_grad_ == o.with_grad_;
  }
  std::vector<Shape> output_shapes(const std::vector<array>& in) override {
    std::vector<Shape> shapes = {{in[0].shape(0)}, {in[0].shape(0)}};
    if (with_grad_) {
      shapes.push_back(in[0].shape());
    }
    return shapes;
  }

 private:
  bool masked_;
  bool with_grad_;
};

// ------------------------------------------------------------ RMSNorm ---

class RmsNormGrad : public CpuOnly {
 public:
  RmsNormGrad(Stream s, bool dx, bool dw) : CpuOnly(s), dx_(dx), dw_(dw) {}

  // in: x, w, inv (rows), dy; out: the requested ones of dx, dw.
  void eval_cpu(const std::vector<array>& in, std::vector<array>& out) override {
    for (auto& o : out) {
      allocate(o);
    }
    const int64_t D = in[0].shape(-1), N = in[0].size() / std::max<int64_t>(D, 1);
    encoder(stream()).dispatch([N, D,
                                x = in[0].data<float>(),
                                w = in[1].data<float>(),
                                inv = in[2].data<float>(),
                                dy = in[3].data<float>(),
                                dx = dx_ ? out[0].data<float>() : nullptr,
                                dw = dw_ ? out[dx_ ? 1 : 0].data<float>() : nullptr] {
      // The weight's gradient sums over rows: one partial sum per range.
      const int parts = std::max<int64_t>(1, std::min<int64_t>(N, threads()));
      std::vector<std::vector<float>> partial(dw ? parts : 0, std::vector<float>(D, 0.0f));
      const int64_t per = (N + parts - 1) / std::max(parts, 1);
      parallel_ranges(N, [&](int64_t s, int64_t e) {
        float* acc = dw ? partial[s / std::max<int64_t>(per, 1)].data() : nullptr;
        for (int64_t i = s; i < e; ++i) {
          rms_norm_row_backward(x + i * D, w, dy + i * D, inv[i], dx ? dx + i * D : nullptr, acc, D);
        }
      });
      if (dw) {
        std::fill(dw, dw + D, 0.0f);
        for (auto& p : partial) {
          for (int64_t j = 0; j < D; ++j) {
            dw[j] += p[j];
          }
        }
      }
    });
  }
  const char* name() const override {
    return "FtRmsNormGrad";
  }
  bool is_equivalent(const Primitive& other) const override {
    auto& o = static_cast<const RmsNormGrad&>(other);
    return dx_ == o.dx_ && dw_ == o.dw_;
  }

 private:
  bool dx_, dw_;
};

// y = x / sqrt(mean(x²) + eps) · w over the last axis; the per-row inverse
// RMS is a second output kept for the backward pass.
class RmsNorm : public CpuOnly {
 public:
  RmsNorm(Stream s, float eps) : CpuOnly(s), eps_(eps) {}

  void eval_cpu(const std::vector<array>& in, std::vector<array>& out) override {
    allocate(out[0]);
    allocate(out[1]);
    const int64_t D = in[0].shape(-1), N = in[0].size() / std::max<int64_t>(D, 1);
    encoder(stream()).dispatch([N, D,
                                eps = eps_,
                                x = in[0].data<float>(),
                                w = in[1].data<float>(),
                                y = out[0].data<float>(),
                                inv = out[1].data<float>()] {
      parallel_ranges(N, [&](int64_t s, int64_t e) {
        for (int64_t i = s; i < e; ++i) {
          inv[i] = inverse_rms(x + i * D, D, eps);
          rms_norm_row(x + i * D, w, inv[i], y + i * D, D);
        }
      });
    });
  }
  // The inverse-RMS output only feeds the backward pass.
  std::vector<array> vjp(
      const std::vector<array>& primals,
      const std::vector<array>& cotangents,
      const std::vector<int>& argnums,
      const std::vector<array>& outputs) override {
    auto has = [&](int i) { return std::find(argnums.begin(), argnums.end(), i) != argnums.end(); };
    const bool dx = has(0), dw = has(1);
    std::vector<Shape> shapes;
    if (dx) {
      shapes.push_back(primals[0].shape());
    }
    if (dw) {
      shapes.push_back(primals[1].shape());
    }
    auto grads = array::make_arrays(
        shapes, std::vector<mlx::core::Dtype>(shapes.size(), mlx::core::float32),
        std::make_shared<RmsNormGrad>(stream(), dx, dw),
        {primals[0], primals[1], outputs[1], dense(cotangents[0], stream())});
    std::vector<array> result;
    for (int a : argnums) {
      result.push_back(a == 0 ? grads[0] : grads[dx ? 1 : 0]);
    }
    return result;
  }
  const char* name() const override {
    return "FtRmsNorm";
  }
  bool is_equivalent(const Primitive& other) const override {
    return eps_ == static_cast<const RmsNorm&>(other).eps_;
  }
  std::vector<Shape> output_shapes(const std::vector<array>& in) override {
    return {in[0].shape(), {static_cast<int>(in[0].size() / std::max(in[0].shape(-1), 1))}};
  }

 private:
  float eps_;
};

// --------------------------------------------------------------- RoPE ---

// Rotary embedding of x (B, H, L, D), any strides with the last axis
// contiguous (the transposed view of a projection's (B, L, H, D) output is
// read in place), into a contiguous (B, H, L, D): pairs (i, i + dims/2) of
// each head vector turn by θ = (offset + l)·scale·inv_freq[i]; features past
// `dims` pass through. `sign` −1 turns the other way (the backward pass).
void rope_apply(const float* x, const int64_t* strides, const Shape& shape, const float* inv_freq,
                int dims, int offset, float scale, float sign, float* out) {
  const int64_t B = shape[0], H = shape[1], L = shape[2], D = shape[3], half = dims / 2;
  // cos and sin per (position, pair), as MLX computes them: float32.
  std::vector<float> cos_t(L * half), sin_t(L * half);
  for (int64_t l = 0; l < L; ++l) {
    const float position = static_cast<float>(offset + l) * scale;
    for (int64_t i = 0; i < half; ++i) {
      const float theta = position * inv_freq[i];
      cos_t[l * half + i] = std::cos(theta);
      sin_t[l * half + i] = sign * std::sin(theta);
    }
  }
  parallel_ranges(B * H, [&](int64_t s, int64_t e) {
    for (int64_t bh = s; bh < e; ++bh) {
      const int64_t b = bh / H, h = bh % H;
      for (int64_t l = 0; l < L; ++l) {
        const float* in = x + b * strides[0] + h * strides[1] + l * strides[2];
        float* o = out + ((bh * L) + l) * D;
        const float* c = cos_t.data() + l * half;
        const float* sn = sin_t.data() + l * half;
        rope_row(in, c, sn, half, o);
        for (int64_t j = dims; j < D; ++j) {
          o[j] = in[j];
        }
      }
    }
  });
}

// Turns by +θ (the forward pass) or −θ (its backward: a rotation's
// transpose is its inverse, so the backward primitive is this one turned
// the other way, and so on for higher derivatives).
class Rope : public CpuOnly {
 public:
  Rope(Stream s, int dims, int offset, float scale, float sign)
      : CpuOnly(s), dims_(dims), offset_(offset), scale_(scale), sign_(sign) {}
  // in: x (B, H, L, D), last axis contiguous; inv_freq (dims / 2).
  void eval_cpu(const std::vector<array>& in, std::vector<array>& out) override {
    allocate(out[0]);
    std::vector<int64_t> strides(in[0].strides().begin(), in[0].strides().end());
    encoder(stream()).dispatch([dims = dims_, offset = offset_, scale = scale_, sign = sign_,
                                strides,
                                shape = in[0].shape(),
                                x = in[0].data<float>(),
                                inv = in[1].data<float>(),
                                y = out[0].data<float>()] {
      rope_apply(x, strides.data(), shape, inv, dims, offset, scale, sign, y);
    });
  }
  std::vector<array> vjp(
      const std::vector<array>& primals,
      const std::vector<array>& cotangents,
      const std::vector<int>& argnums,
      const std::vector<array>&) override {
    std::vector<array> result;
    for (int a : argnums) {
      if (a == 0) {
        result.push_back(array(
            primals[0].shape(), mlx::core::float32,
            std::make_shared<Rope>(stream(), dims_, offset_, scale_, -sign_),
            {dense(cotangents[0], stream()), primals[1]}));
      } else {
        result.push_back(mlx::core::zeros_like(primals[a], stream()));
      }
    }
    return result;
  }
  const char* name() const override {
    return "FtRope";
  }
  bool is_equivalent(const Primitive& other) const override {
    auto& o = static_cast<const Rope&>(other);
    return dims_ == o.dims_ && offset_ == o.offset_ && scale_ == o.scale_ && sign_ == o.sign_;
  }
  std::vector<Shape> output_shapes(const std::vector<array>& in) override {
    return {in[0].shape()};
  }

 private:
  int dims_, offset_;
  float scale_, sign_;
};

// ----------------------------------------------------- rank-r products ---

// The adapter's own products have the rank (4–16) as one dimension.
// OpenBLAS runs these at 10–35 GFLOP/s, and its two threads cost more than
// they save at this size: for the seven adapters of one SmolLM2 layer at
// 672 rows, 16.6 ms with two threads, 9.9 ms with one. These loops keep a
// group of rows' rank-wide sums in registers instead. Larger ranks use the
// BLAS (their products are no longer thin).
constexpr int64_t kMaxLoopRank = 16;

bool rank_loops_apply(int64_t rank) {
  return rank <= kMaxLoopRank;
}

// The rank rounded up to whole 8-float vectors: 8 or 16.
int64_t padded_rank(int64_t rank) {
  return rank <= 8 ? 8 : 16;
}

// Eight floats: one AVX register (two SSE ones in the baseline clone).
typedef float f8 __attribute__((vector_size(32)));
typedef float f8u __attribute__((vector_size(32), aligned(4)));

FT_INLINE f8 load8(const float* p) {
  return *reinterpret_cast<const f8u*>(p);
}
FT_INLINE void store8(float* p, f8 v) {
  *reinterpret_cast<f8u*>(p) = v;
}

// out (cols × ld) = aᵀ for a (rows × cols), columns rows..ld zero.
void transpose_padded(const float* a, int64_t rows, int64_t cols, float* out, int64_t ld) {
  for (int64_t c = 0; c < cols; ++c) {
    for (int64_t r = 0; r < ld; ++r) {
      out[c * ld + r] = r < rows ? a[r * cols + c] : 0.0f;
    }
  }
}

// a (rows × cols) copied into (rows × ld), columns cols..ld zero.
void pad_columns(const float* a, int64_t rows, int64_t cols, float* out, int64_t ld) {
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < ld; ++c) {
      out[r * ld + c] = c < cols ? a[r * cols + c] : 0.0f;
    }
  }
}

// p (n × rank) = x (n × k) · m (k × 8·NV): m's columns past the rank are
// zero. Groups of G rows share each load of m's row.
template <int NV, int G>
FT_INLINE void project_rows(
    const float* x, int64_t n, int64_t k, const float* m, int64_t rank, float* p) {
  int64_t i = 0;
  auto finish = [&](const f8* acc, int64_t row) {
    float out[8 * NV];
    for (int v = 0; v < NV; ++v) {
      store8(out + 8 * v, acc[v]);
    }
    std::memcpy(p + row * rank, out, rank * sizeof(float));
  };
  for (; i + G <= n; i += G) {
    f8 acc[G][NV] = {};
    for (int64_t c = 0; c < k; ++c) {
      f8 mc[NV];
      for (int v = 0; v < NV; ++v) {
        mc[v] = load8(m + (c * NV + v) * 8);
      }
      for (int g = 0; g < G; ++g) {
        const float xv = x[(i + g) * k + c];
        for (int v = 0; v < NV; ++v) {
          acc[g][v] += xv * mc[v];
        }
      }
    }
    for (int g = 0; g < G; ++g) {
      finish(acc[g], i + g);
    }
  }
  for (; i < n; ++i) {
    f8 acc[NV] = {};
    for (int64_t c = 0; c < k; ++c) {
      for (int v = 0; v < NV; ++v) {
        acc[v] += x[i * k + c] * load8(m + (c * NV + v) * 8);
      }
    }
    finish(acc, i);
  }
}

FT_SIMD void project_rows_8(
    const float* x, int64_t n, int64_t k, const float* m, int64_t rank, float* p) {
  project_rows<1, 8>(x, n, k, m, rank, p);
}
FT_SIMD void project_rows_16(
    const float* x, int64_t n, int64_t k, const float* m, int64_t rank, float* p) {
  project_rows<2, 4>(x, n, k, m, rank, p);
}

// p (n × rank) = x (n × k) · m, m (k × ld) padded with zero columns
// (ld = 8 or 16), across the cores.
void project(const float* x, int64_t n, int64_t k, const float* m, int64_t ld, int64_t rank, float* p) {
  parallel_ranges(n, [&](int64_t b, int64_t e) {
    (ld == 8 ? project_rows_8 : project_rows_16)(x + b * k, e - b, k, m, rank, p + b * rank);
  });
}

// y (n × cols) = s · p (n × rank) · m (rank × cols), 64 columns at a time
// in registers.
FT_SIMD void expand_rows(
    const float* p, int64_t rank, int64_t n, const float* m, int64_t cols, float s, float* y) {
  int64_t j0 = 0;
  for (; j0 + 64 <= cols; j0 += 64) {
    for (int64_t i = 0; i < n; ++i) {
      float* yi = y + i * cols + j0;
      f8 acc[8] = {};
      for (int64_t r = 0; r < rank; ++r) {
        const float c = s * p[i * rank + r];
        const float* mr = m + r * cols + j0;
        for (int v = 0; v < 8; ++v) {
          acc[v] += c * load8(mr + 8 * v);
        }
      }
      for (int v = 0; v < 8; ++v) {
        store8(yi + 8 * v, acc[v]);
      }
    }
  }
  if (j0 < cols) {
    for (int64_t i = 0; i < n; ++i) {
      std::fill(y + i * cols + j0, y + (i + 1) * cols, 0.0f);
      for (int64_t r = 0; r < rank; ++r) {
        const float c = s * p[i * rank + r];
#pragma omp simd
        for (int64_t j = j0; j < cols; ++j) {
          y[i * cols + j] += c * m[r * cols + j];
        }
      }
    }
  }
}

// The adapter's term is written first and the base product added onto it
// by the BLAS (beta = 1): written after the product instead, it would read
// back batch × out floats the other core had just written (1.4 vs 0.6 ms
// for 672 × 1536), and the BLAS would spend a pass zeroing them (beta = 0).
void expand(const float* p, int64_t rank, int64_t n, const float* m, int64_t cols, float s, float* y) {
  parallel_ranges(n, [&](int64_t b, int64_t e) {
    expand_rows(p + b * rank, rank, e - b, m, cols, s, y + b * cols);
  });
}

// g (k × 8·NV) += Σ over rows i of x[i]ᵀ ⊗ u[i], u (n × rank) read as if
// padded with zeros: four rows per pass over g.
template <int NV>
FT_INLINE void reduce_rows(
    const float* x, int64_t n, int64_t k, const float* u, int64_t rank, float* g) {
  auto padded = [&](int64_t row, f8* out) {
    float tmp[8 * NV] = {};
    std::memcpy(tmp, u + row * rank, rank * sizeof(float));
    for (int v = 0; v < NV; ++v) {
      out[v] = load8(tmp + 8 * v);
    }
  };
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    f8 ur[4][NV];
    for (int q = 0; q < 4; ++q) {
      padded(i + q, ur[q]);
    }
    for (int64_t c = 0; c < k; ++c) {
      for (int v = 0; v < NV; ++v) {
        f8 acc = load8(g + (c * NV + v) * 8);
        for (int q = 0; q < 4; ++q) {
          acc += x[(i + q) * k + c] * ur[q][v];
        }
        store8(g + (c * NV + v) * 8, acc);
      }
    }
  }
  for (; i < n; ++i) {
    f8 ur[NV];
    padded(i, ur);
    for (int64_t c = 0; c < k; ++c) {
      for (int v = 0; v < NV; ++v) {
        store8(g + (c * NV + v) * 8, load8(g + (c * NV + v) * 8) + x[i * k + c] * ur[v]);
      }
    }
  }
}

FT_SIMD void reduce_rows_8(const float* x, int64_t n, int64_t k, const float* u, int64_t rank, float* g) {
  reduce_rows<1>(x, n, k, u, rank, g);
}
FT_SIMD void reduce_rows_16(const float* x, int64_t n, int64_t k, const float* u, int64_t rank, float* g) {
  reduce_rows<2>(x, n, k, u, rank, g);
}

// s · xᵀ u for x (n × k), u (n × rank): into out (k × rank), or, with
// `transposed`, into out (rank × k). Each thread sums its rows into its own
// (k × ld) block; the blocks are added at the end.
void reduce(const float* x, int64_t n, int64_t k, const float* u, int64_t rank, float s,
            bool transposed, float* out) {
  const int64_t ld = padded_rank(rank);
  const int64_t parts = std::max<int64_t>(1, std::min<int64_t>(threads(), n / 64));
  Scratch sums(parts * k * ld);
  std::fill(sums.data(), sums.data() + parts * k * ld, 0.0f);
  const int64_t per = (n + parts - 1) / parts;
  parallel_ranges(parts, [&](int64_t pb, int64_t pe) {
    for (int64_t part = pb; part < pe; ++part) {
      const int64_t b = part * per, e = std::min(n, b + per);
      if (b < e) {
        (ld == 8 ? reduce_rows_8 : reduce_rows_16)(x + b * k, e - b, k, u + b * rank, rank,
                                                   sums.data() + part * k * ld);
      }
    }
  });
  for (int64_t c = 0; c < k; ++c) {
    for (int64_t r = 0; r < rank; ++r) {
      float total = 0.0f;
      for (int64_t part = 0; part < parts; ++part) {
        total += sums.data()[(part * k + c) * ld + r];
      }
      (transposed ? out[r * k + c] : out[c * rank + r]) = s * total;
    }
  }
}

// --------------------------------------------------------- LoRA linear ---

// Shapes of a LoRA projection: x (..., in) as N rows, W (out, in), A (in, r),
// B (r, out).
struct LoraDims {
  int64_t rows, in, out, rank;
  LoraDims(const array& x, const array& w, const array& a)
      : rows(x.size() / std::max<int64_t>(x.shape(-1), 1)),
        in(x.shape(-1)),
        out(w.shape(0)),
        rank(a.shape(1)) {}
};

class LoraLinearGrad : public CpuOnly {
 public:
  LoraLinearGrad(Stream s, float scale, bool dx, bool da, bool db)
      : CpuOnly(s), scale_(scale), dx_(dx), da_(da), db_(db) {}

  // in: x, W, A, B, xa, dy; out: the requested ones of dx, dA, dB (in that
  // order). u = dy Bᵀ; dx = s·u Aᵀ + dy W (the product added by the BLAS);
  // dA = s·xᵀ u; dB = s·(xA)ᵀ dy.
  void eval_cpu(const std::vector<array>& in, std::vector<array>& out) override {
    for (auto& o : out) {
      allocate(o);
    }
    LoraDims d(in[0], in[1], in[2]);
    float* outputs[3] = {nullptr, nullptr, nullptr};
    int next = 0;
    for (int i = 0; i < 3; ++i) {
      const bool wanted = i == 0 ? dx_ : i == 1 ? da_ : db_;
      if (wanted) {
        outputs[i] = out[next++].data<float>();
      }
    }
    encoder(stream()).dispatch([d,
                                scale = scale_,
                                x = in[0].data<float>(),
                                w = in[1].data<float>(),
                                a = in[2].data<float>(),
                                b = in[3].data<float>(),
                                xa = in[4].data<float>(),
                                dy = in[5].data<float>(),
                                dx = outputs[0],
                                da = outputs[1],
                                db = outputs[2]] {
      const int64_t N = d.rows, I = d.in, O = d.out, R = d.rank;
      Scratch u(N * R);
      if (!rank_loops_apply(R)) {
        gemm(false, true, N, R, O, 1.0f, dy, O, b, O, 0.0f, u.data(), R);
        if (dx) {
          gemm(false, true, N, I, R, scale, u.data(), R, a, R, 0.0f, dx, I);
          gemm(false, false, N, I, O, 1.0f, dy, O, w, I, 1.0f, dx, I);
        }
        if (da) {
          gemm(true, false, I, R, N, scale, x, I, u.data(), R, 0.0f, da, R);
        }
        if (db) {
          gemm(true, false, R, O, N, scale, xa, R, dy, O, 0.0f, db, O);
        }
        return;
      }
      const int64_t ld = padded_rank(R);
      Scratch b_t(O * ld);
      transpose_padded(b, R, O, b_t.data(), ld);
      project(dy, N, O, b_t.data(), ld, R, u.data());
      if (dx) {
        Scratch a_t(R * I);
        transpose_padded(a, I, R, a_t.data(), I);
        expand(u.data(), R, N, a_t.data(), I, scale, dx);
        gemm(false, false, N, I, O, 1.0f, dy, O, w, I, 1.0f, dx, I);
      }
      if (da) {
        reduce(x, N, I, u.data(), R, scale, false, da);
      }
      if (db) {
        reduce(dy, N, O, xa, R, scale, true, db);
      }
    });
  }
  const char* name() const override {
    return "FtLoraLinearGrad";
  }
  bool is_equivalent(const Primitive& other) const override {
    auto& o = static_cast<const LoraLinearGrad&>(other);
    return scale_ == o.scale_ && dx_ == o.dx_ && da_ == o.da_ && db_ == o.db_;
  }

 private:
  float scale_;
  bool dx_, da_, db_;
};

// y = x Wᵀ + s·(x A) B: the adapter's term written first, the base product
// added onto it by the BLAS (beta = 1) rather than as a batch × out sum of
// its own; x A (N, r) kept as a second output for the backward pass.
class LoraLinear : public CpuOnly {
 public:
  LoraLinear(Stream s, float scale) : CpuOnly(s), scale_(scale) {}

  // in: x, W, A, B; out: y, xa.
  void eval_cpu(const std::vector<array>& in, std::vector<array>& out) override {
    allocate(out[0]);
    allocate(out[1]);
    LoraDims d(in[0], in[1], in[2]);
    encoder(stream()).dispatch([d,
                                scale = scale_,
                                x = in[0].data<float>(),
                                w = in[1].data<float>(),
                                a = in[2].data<float>(),
                                b = in[3].data<float>(),
                                y = out[0].data<float>(),
                                xa = out[1].data<float>()] {
      const int64_t N = d.rows, I = d.in, O = d.out, R = d.rank;
      if (!rank_loops_apply(R)) {
        gemm(false, false, N, R, I, 1.0f, x, I, a, R, 0.0f, xa, R);
        gemm(false, false, N, O, R, scale, xa, R, b, O, 0.0f, y, O);
        gemm(false, true, N, O, I, 1.0f, x, I, w, I, 1.0f, y, O);
        return;
      }
      const int64_t ld = padded_rank(R);
      Scratch a_padded(I * ld);
      pad_columns(a, I, R, a_padded.data(), ld);
      project(x, N, I, a_padded.data(), ld, R, xa);
      expand(xa, R, N, b, O, scale, y);
      gemm(false, true, N, O, I, 1.0f, x, I, w, I, 1.0f, y, O);
    });
  }
  // The xa output only feeds the backward pass; its cotangent is ignored.
  std::vector<array> vjp(
      const std::vector<array>& primals,
      const std::vector<array>& cotangents,
      const std::vector<int>& argnums,
      const std::vector<array>& outputs) override {
    auto has = [&](int i) { return std::find(argnums.begin(), argnums.end(), i) != argnums.end(); };
    const bool dx = has(0), da = has(2), db = has(3);
    auto s = stream();
    array dy = dense(cotangents[0], s);
    std::vector<Shape> shapes;
    if (dx) {
      shapes.push_back(primals[0].shape());
    }
    if (da) {
      shapes.push_back(primals[2].shape());
    }
    if (db) {
      shapes.push_back(primals[3].shape());
    }
    std::vector<array> grads;
    if (!shapes.empty()) {
      grads = array::make_arrays(
          shapes, std::vector<mlx::core::Dtype>(shapes.size(), mlx::core::float32),
          std::make_shared<LoraLinearGrad>(s, scale_, dx, da, db),
          {primals[0], primals[1], primals[2], primals[3], outputs[1], dy});
    }
    std::vector<array> result;
    size_t next = 0;
    for (int a : argnums) {
      if (a == 1) {
        // The base weight's gradient (LoRA freezes it; asked for anyway):
        // dyᵀ x over all rows.
        const int in = primals[0].shape(-1), out = primals[1].shape(0);
        result.push_back(mlx::core::matmul(
            mlx::core::transpose(mlx::core::reshape(dy, {-1, out}, s), s),
            mlx::core::reshape(primals[0], {-1, in}, s), s));
      } else {
        result.push_back(grads[next++]);
      }
    }
    return result;
  }
  const char* name() const override {
    return "FtLoraLinear";
  }
  bool is_equivalent(const Primitive& other) const override {
    return scale_ == static_cast<const LoraLinear&>(other).scale_;
  }
  std::vector<Shape> output_shapes(const std::vector<array>& in) override {
    Shape y = in[0].shape();
    y.back() = in[1].shape(0);
    return {y, {static_cast<int>(in[0].size() / std::max(in[0].shape(-1), 1)), in[2].shape(1)}};
  }

 private:
  float scale_;
};

Stream cpu_stream() {
  return mlx::core::default_stream(mlx::core::Device::cpu);
}

template <class F>
int guarded(F f) {
  try {
    f();
    return 0;
  } catch (const std::exception& e) {
    last_error = e.what();
    return 1;
  }
}

}  // namespace
}  // namespace ft

using namespace ft;

extern "C" int ft_swiglu(mlx_array* out, mlx_array gate, mlx_array up) {
  return guarded([&] {
    const array& a = mlx_array_get_(gate);
    const array& b = mlx_array_get_(up);
    require_f32(a, "swiglu: gate");
    require_f32(b, "swiglu: up");
    if (a.shape() != b.shape()) {
      throw std::invalid_argument("swiglu: gate and up must have the same shape");
    }
    auto s = cpu_stream();
    array r(a.shape(), mlx::core::float32, std::make_shared<SwiGLU>(s),
            {dense(a, s), dense(b, s)});
    mlx_array_set_(*out, std::move(r));
  });
}

extern "C" int ft_causal_attention(
    mlx_array* out, mlx_array q_, mlx_array k_, mlx_array v_, mlx_array seg_,
    float scale) {
  return guarded([&] {
    const array& q = mlx_array_get_(q_);
    const array& k = mlx_array_get_(k_);
    const array& v = mlx_array_get_(v_);
    require_f32(q, "attention: q");
    require_f32(k, "attention: k");
    require_f32(v, "attention: v");
    if (q.ndim() != 4 || k.shape() != v.shape() || k.ndim() != 4 ||
        q.shape(0) != k.shape(0) || q.shape(2) != k.shape(2) ||
        q.shape(3) != k.shape(3) || k.shape(1) == 0 || q.shape(1) % k.shape(1) != 0) {
      throw std::invalid_argument(
          "attention: q must be (B, H, L, D) and k, v (B, KV, L, D) with H a multiple of KV");
    }
    auto s = cpu_stream();
    std::vector<array> inputs = {dense(q, s), dense(k, s), dense(v, s)};
    bool segmented = seg_.ctx != nullptr;
    if (segmented) {
      const array& seg = mlx_array_get_(seg_);
      if (seg.shape() != Shape{q.shape(0), q.shape(2)}) {
        throw std::invalid_argument("attention: segments must be (B, L)");
      }
      inputs.push_back(dense(mlx::core::astype(seg, mlx::core::int32, s), s));
    }
    auto outs = array::make_arrays(
        {q.shape(), {q.shape(0), q.shape(1), q.shape(2)}},
        {mlx::core::float32, mlx::core::float32},
        std::make_shared<CausalAttention>(s, scale, segmented), inputs);
    mlx_array_set_(*out, outs[0]);
  });
}

extern "C" int ft_linear_cross_entropy(
    mlx_array* out, mlx_array hidden_, mlx_array weight_, mlx_array targets_,
    mlx_array mask_, int with_grad) {
  return guarded([&] {
    const array& h = mlx_array_get_(hidden_);
    const array& w = mlx_array_get_(weight_);
    const array& t = mlx_array_get_(targets_);
    require_f32(h, "cross-entropy: hidden");
    require_f32(w, "cross-entropy: weight");
    if (h.ndim() != 2 || w.ndim() != 2 || h.shape(1) != w.shape(1) || t.ndim() != 1 ||
        t.shape(0) != h.shape(0)) {
      throw std::invalid_argument(
          "cross-entropy: hidden must be (N, E), weight (V, E) and targets (N)");
    }
    auto s = cpu_stream();
    std::vector<array> inputs = {dense(h, s), dense(w, s),
                                 dense(mlx::core::astype(t, mlx::core::int32, s), s)};
    const bool masked = mask_.ctx != nullptr;
    if (masked) {
      const array& m = mlx_array_get_(mask_);
      if (m.size() != static_cast<size_t>(h.shape(0))) {
        throw std::invalid_argument("cross-entropy: the mask must have one entry per row");
      }
      inputs.push_back(dense(
          mlx::core::reshape(mlx::core::astype(m, mlx::core::float32, s), {h.shape(0)}, s), s));
    }
    std::vector<Shape> shapes = {{h.shape(0)}, {h.shape(0)}};
    std::vector<mlx::core::Dtype> dtypes = {mlx::core::float32, mlx::core::float32};
    if (with_grad) {
      shapes.push_back(h.shape());
      dtypes.push_back(mlx::core::float32);
    }
    auto outs = array::make_arrays(
        shapes, dtypes, std::make_shared<LinearCrossEntropy>(s, masked, with_grad != 0),
        inputs);
    mlx_array_set_(*out, outs[0]);
  });
}

extern "C" int ft_lora_linear(
    mlx_array* out, mlx_array x_, mlx_array w_, mlx_array a_, mlx_array b_, float scale) {
  return guarded([&] {
    const array& x = mlx_array_get_(x_);
    const array& w = mlx_array_get_(w_);
    const array& a = mlx_array_get_(a_);
    const array& b = mlx_array_get_(b_);
    require_f32(x, "lora linear: x");
    require_f32(w, "lora linear: weight");
    require_f32(a, "lora linear: lora_a");
    require_f32(b, "lora linear: lora_b");
    if (x.ndim() < 1 || w.ndim() != 2 || a.ndim() != 2 || b.ndim() != 2 ||
        x.shape(-1) != w.shape(1) || a.shape(0) != w.shape(1) || b.shape(0) != a.shape(1) ||
        b.shape(1) != w.shape(0)) {
      throw std::invalid_argument(
          "lora linear: x must be (..., in), weight (out, in), lora_a (in, r) and lora_b (r, out)");
    }
    auto s = cpu_stream();
    Shape y = x.shape();
    y.back() = w.shape(0);
    const int rows = static_cast<int>(x.size() / std::max(x.shape(-1), 1));
    auto outs = array::make_arrays(
        {y, {rows, a.shape(1)}}, {mlx::core::float32, mlx::core::float32},
        std::make_shared<LoraLinear>(s, scale), {dense(x, s), dense(w, s), dense(a, s), dense(b, s)});
    mlx_array_set_(*out, outs[0]);
  });
}

extern "C" int ft_rms_norm(mlx_array* out, mlx_array x_, mlx_array w_, float eps) {
  return guarded([&] {
    const array& x = mlx_array_get_(x_);
    const array& w = mlx_array_get_(w_);
    require_f32(x, "rms norm: x");
    require_f32(w, "rms norm: weight");
    if (x.ndim() < 1 || w.ndim() != 1 || w.shape(0) != x.shape(-1)) {
      throw std::invalid_argument("rms norm: x must be (..., D) and weight (D)");
    }
    auto s = cpu_stream();
    const int rows = static_cast<int>(x.size() / std::max(x.shape(-1), 1));
    auto outs = array::make_arrays(
        {x.shape(), {rows}}, {mlx::core::float32, mlx::core::float32},
        std::make_shared<RmsNorm>(s, eps), {dense(x, s), dense(w, s)});
    mlx_array_set_(*out, outs[0]);
  });
}

extern "C" int ft_rope(
    mlx_array* out, mlx_array x_, mlx_array inv_freq_, int dims, int offset, float scale) {
  return guarded([&] {
    const array& x = mlx_array_get_(x_);
    const array& inv = mlx_array_get_(inv_freq_);
    require_f32(x, "rope: x");
    require_f32(inv, "rope: inverse frequencies");
    if (x.ndim() != 4 || dims <= 0 || dims % 2 != 0 || dims > x.shape(3) ||
        inv.size() != static_cast<size_t>(dims / 2)) {
      throw std::invalid_argument(
          "rope: x must be (B, H, L, D), dims even and at most D, and dims / 2 inverse frequencies");
    }
    auto s = cpu_stream();
    // Read in place when the last axis is contiguous (a transposed view);
    // otherwise copy first.
    array input = x.strides().back() == 1 ? x : dense(x, s);
    array r(x.shape(), mlx::core::float32, std::make_shared<Rope>(s, dims, offset, scale, 1.0f),
            {input, dense(inv, s)});
    mlx_array_set_(*out, std::move(r));
  });
}

extern "C" const char* ft_last_error(void) {
  return ft::last_error.c_str();
}

extern "C" void ft_set_threads(int threads) {
  ft::thread_setting.store(threads);
}
