// Fused CPU recurrence of one LSTM layer in one direction: the whole time loop in C++.
//
// It computes exactly the loop of lstmkit.nn.LSTM._run_direction after the input projection:
// lstmkit.nn.functional.lstm_step at every step (peephole, layer norm, CIFG, projection),
// recurrent dropout on the h entering W_hh, zoneout, and variable lengths (state frozen and
// output zero past a sequence's end). The Python loop pays autograd and dispatch overhead on
// a dozen small ops per step; here a step is one GEMM (two with a projection) plus one fused
// pass over each batch row, and the backward through time is written out by hand. With
// ln_ih_weight, xw is the raw product x W_ih^T and its layer norm and b_ih (the rest of
// input_projection) are computed in the same pass: that saves two passes over (T, N, GH).
//
// Shapes: T steps, N batch, H cell size, P size of h (proj_size or H), G = 4 gate blocks
// i|f|g|o (G = 3, f|g|o, when coupled). Optional tensors are absent when undefined or empty.
//
//   forward(xw (T,N,GH), h0 (N,P), c0 (N,H), w_hh (GH,P), b_hh (GH), w_hr (P,H),
//           w_ci, w_cf, w_co (H), ln_hh_weight (GH), ln_c_weight, ln_c_bias (H),
//           ln_ih_weight (GH), b_ih (GH), rec_mask (N,P), zo_h (T,N,P) bool, zo_c (T,N,H) bool,
//           valid (T,N) bool, coupled, collect)
//     -> ([out (T,N,P), h_n (N,P), c_n (N,H)], gates [i, f, g, o, c] each (T,N,H) or [],
//         saved: opaque tensors for backward)
//   backward(dout, dh_n, dc_n, saved, <the forward's parameters and masks>, coupled)
//     -> [dxw, dh0, dc0, dw_hh, db_hh, dw_hr, dw_ci, dw_cf, dw_co, dln_hh, dln_c_w, dln_c_b,
//         dln_ih, db_ih] (undefined where the parameter is absent)

#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/extension.h>

#include "cpu_runtime.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <tuple>
#include <utility>
#include <vector>

namespace {

using at::Tensor;

constexpr double kLayerNormEps = 1e-5;  // lstmkit.nn.functional.LAYER_NORM_EPS

bool given(const Tensor& t) { return t.defined() && t.numel() > 0; }

// Contiguous, or undefined when absent: the raw loops index rows directly.
Tensor dense(const Tensor& t) { return given(t) ? t.contiguous() : Tensor(); }

template <typename T>
const T* ptr(const Tensor& t) {
  return t.defined() ? t.const_data_ptr<T>() : nullptr;
}

template <typename T>
T* mut(const Tensor& t) {
  return t.defined() ? t.mutable_data_ptr<T>() : nullptr;
}

// exp and tanh that GCC can vectorise. A loop over the gates is vectorised only if every call
// in it is inlined arithmetic, and libm's expf/tanhf are calls; so float uses the Cephes
// single-precision algorithms (within 2 ulp of libm). double keeps libm: it is the precision
// reference, not the fast path. They are always inlined: a call GCC leaves in a gate loop (as it
// did once the loops sat inside the team's lambda) stops the loop's vectorisation.
#define LSTMKIT_INLINE inline __attribute__((always_inline))

LSTMKIT_INLINE float fast_exp(float x) {
  x = std::min(std::max(x, -87.0f), 88.0f);  // 2^n below stays a normal float
  // x = n ln2 + r with |r| <= ln2 / 2; adding and subtracting 1.5 * 2^23 rounds to an integer
  const float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  const float r = (x - n * 0.693359375f) + n * 2.12194440e-4f;  // ln2 in two parts
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;  // 2^n
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

LSTMKIT_INLINE float fast_tanh(float x) {
  // 1 - 2 / (e^{2|x|} + 1) loses relative precision near 0, where an odd polynomial takes over
  const float z = std::fabs(x);
  const float large = std::copysign(1.0f - 2.0f / (fast_exp(2.0f * z) + 1.0f), x);
  const float s = x * x;
  float p = -5.70498872745e-3f;
  p = p * s + 2.06390887954e-2f;
  p = p * s - 5.37397155531e-2f;
  p = p * s + 1.33314422036e-1f;
  p = p * s - 3.33332819422e-1f;
  const float small = p * s * x + x;
  return z < 0.625f ? small : large;
}

inline double fast_exp(double x) { return std::exp(x); }
inline double fast_tanh(double x) { return std::tanh(x); }

template <typename A>
LSTMKIT_INLINE A sigmoid(A x) {
  return A(1) / (A(1) + fast_exp(-x));
}

// Mean and 1/sqrt(var + eps) of one row (biased variance, as torch's layer_norm).
template <typename A, typename T>
std::pair<A, A> moments(const T* x, int64_t n) {
  A sum = 0;
#pragma omp simd reduction(+ : sum)
  for (int64_t j = 0; j < n; ++j) sum += x[j];
  const A mean = sum / n;
  A var = 0;
#pragma omp simd reduction(+ : var)
  for (int64_t j = 0; j < n; ++j) var += (x[j] - mean) * (x[j] - mean);
  var /= n;
  return {mean, A(1) / std::sqrt(var + A(kLayerNormEps))};
}

// Backward of y = gamma * xhat + beta, xhat = (x - mean) * rstd, for one row:
// dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)) with dxhat = dy * gamma.
template <typename A, typename T>
void layer_norm_backward(const T* dy, const T* gamma, const T* xhat, A rstd, int64_t n, T* dx) {
  A sum = 0, dot = 0;
#pragma omp simd reduction(+ : sum, dot)
  for (int64_t j = 0; j < n; ++j) {
    const A d = A(dy[j]) * gamma[j];
    sum += d;
    dot += d * xhat[j];
  }
  sum /= n;
  dot /= n;
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) dx[j] = rstd * (A(dy[j]) * gamma[j] - sum - xhat[j] * dot);
}

// The same for a row whose xhat was not kept: xhat = (x - mean) * rstd is recomputed.
template <typename A, typename T>
void layer_norm_backward(const T* dy, const T* gamma, const T* x, A mean, A rstd, int64_t n,
                         T* dx) {
  A sum = 0, dot = 0;
#pragma omp simd reduction(+ : sum, dot)
  for (int64_t j = 0; j < n; ++j) {
    const A d = A(dy[j]) * gamma[j];
    sum += d;
    dot += d * ((x[j] - mean) * rstd);
  }
  sum /= n;
  dot /= n;
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) {
    dx[j] = rstd * (A(dy[j]) * gamma[j] - sum - (x[j] - mean) * rstd * dot);
  }
}

// Sizes, gate offsets and the inputs of one direction. The additive and peephole terms are
// never null (zeros when absent) so that the gate loops have no branches and vectorise; the
// layer norms, recurrent dropout and the boolean masks are null when absent.
template <typename T>
struct Cell {
  int64_t steps, batch, hidden, out_size, gates;  // T, N, H, P, G*H
  int64_t oi, of, og, oo;  // offsets of the i, f, g, o blocks in a row of G*H (no i if coupled)
  const T *b_hh, *w_ci, *w_cf, *w_co, *ln_c_b;
  const T *ln_hh, *ln_c_w, *ln_ih, *b_ih, *rec_mask;
  const bool *zo_h, *zo_c, *valid;

  bool is_valid(int64_t row) const { return valid == nullptr || valid[row]; }
  // The unit keeps its previous value: zoneout, or the step is past the sequence's end.
  bool keep_h(bool v, int64_t row, int64_t j) const {
    return !v || (zo_h != nullptr && zo_h[row * out_size + j]);
  }
  bool keep_c(bool v, int64_t row, int64_t j) const {
    return !v || (zo_c != nullptr && zo_c[row * hidden + j]);
  }
};

// The inputs, contiguous (or zeros, see Cell) and kept alive while the loops read them.
struct Inputs {
  Tensor w_hh, b_hh, w_hr, w_ci, w_cf, w_co, ln_hh, ln_c_w, ln_c_b, ln_ih, b_ih, rec_mask;
  Tensor zo_h, zo_c, valid;
  bool coupled, has_b_hh, has_w_ci, has_peephole, has_ln_c_b, has_b_ih;  // gradients to return

  template <typename T>
  Cell<T> cell(int64_t steps, int64_t batch, int64_t hidden, int64_t out_size) const {
    Cell<T> c;
    c.steps = steps;
    c.batch = batch;
    c.hidden = hidden;
    c.out_size = out_size;
    c.gates = (coupled ? 3 : 4) * hidden;
    c.oi = 0;
    c.of = coupled ? 0 : hidden;
    c.og = c.of + hidden;
    c.oo = c.og + hidden;
    c.b_hh = ptr<T>(b_hh);
    c.w_ci = ptr<T>(w_ci);
    c.w_cf = ptr<T>(w_cf);
    c.w_co = ptr<T>(w_co);
    c.ln_c_b = ptr<T>(ln_c_b);
    c.ln_hh = ptr<T>(ln_hh);
    c.ln_c_w = ptr<T>(ln_c_w);
    c.ln_ih = ptr<T>(ln_ih);
    c.b_ih = ptr<T>(b_ih);
    c.rec_mask = ptr<T>(rec_mask);
    c.zo_h = ptr<bool>(zo_h);
    c.zo_c = ptr<bool>(zo_c);
    c.valid = ptr<bool>(valid);
    return c;
  }
};

Inputs check_inputs(const Tensor& xw, int64_t N, int64_t H, int64_t P, const Tensor& w_hh,
                    const Tensor& b_hh, const Tensor& w_hr, const Tensor& w_ci,
                    const Tensor& w_cf, const Tensor& w_co, const Tensor& ln_hh_weight,
                    const Tensor& ln_c_weight, const Tensor& ln_c_bias,
                    const Tensor& ln_ih_weight, const Tensor& b_ih, const Tensor& rec_mask,
                    const Tensor& zo_h, const Tensor& zo_c, const Tensor& valid, bool coupled) {
  const int64_t T = xw.size(0), GH = (coupled ? 3 : 4) * H;
  TORCH_CHECK(xw.dim() == 3 && xw.size(1) == N && xw.size(2) == GH, "xw must be (T, N, ",
              GH, "), got ", xw.sizes());
  TORCH_CHECK(w_hh.sizes() == at::IntArrayRef({GH, P}), "w_hh must be (", GH, ", ", P,
              "), got ", w_hh.sizes());
  auto check = [&](const Tensor& t, at::IntArrayRef shape, const char* name, bool is_mask) {
    if (!given(t)) return;
    TORCH_CHECK(t.sizes() == shape, name, " must be ", shape, ", got ", t.sizes());
    TORCH_CHECK(t.device().is_cpu(), name, " must be on the CPU");
    TORCH_CHECK(t.scalar_type() == (is_mask ? at::kBool : xw.scalar_type()), name,
                " has dtype ", t.scalar_type());
  };
  check(w_hh, {GH, P}, "w_hh", false);
  check(b_hh, {GH}, "b_hh", false);
  TORCH_CHECK(given(w_hr) == (P != H), "w_hr must be given exactly when h0 is not (N, H)");
  check(w_hr, {P, H}, "w_hr", false);
  TORCH_CHECK(!(coupled && given(w_ci)), "a coupled LSTM has no input-gate peephole w_ci");
  TORCH_CHECK(given(w_cf) == given(w_co) && (coupled || given(w_ci) == given(w_cf)),
              "peephole weights must be given together");
  check(w_ci, {H}, "w_ci", false);
  check(w_cf, {H}, "w_cf", false);
  check(w_co, {H}, "w_co", false);
  check(ln_hh_weight, {GH}, "ln_hh_weight", false);
  TORCH_CHECK(given(ln_c_weight) || !given(ln_c_bias), "ln_c_bias needs ln_c_weight");
  check(ln_c_weight, {H}, "ln_c_weight", false);
  check(ln_c_bias, {H}, "ln_c_bias", false);
  TORCH_CHECK(given(ln_ih_weight) || !given(b_ih), "b_ih needs ln_ih_weight");
  check(ln_ih_weight, {GH}, "ln_ih_weight", false);
  check(b_ih, {GH}, "b_ih", false);
  check(rec_mask, {N, P}, "rec_mask", false);
  check(zo_h, {T, N, P}, "zo_h", true);
  check(zo_c, {T, N, H}, "zo_c", true);
  check(valid, {T, N}, "valid", true);
  auto or_zeros = [&](const Tensor& t, int64_t size) {
    return given(t) ? t.contiguous() : at::zeros({size}, xw.options());
  };
  Inputs in;
  in.w_hh = w_hh.contiguous();
  in.b_hh = or_zeros(b_hh, GH);
  in.w_hr = dense(w_hr);
  in.w_ci = or_zeros(w_ci, H);
  in.w_cf = or_zeros(w_cf, H);
  in.w_co = or_zeros(w_co, H);
  in.ln_hh = dense(ln_hh_weight);
  in.ln_c_w = dense(ln_c_weight);
  in.ln_c_b = or_zeros(ln_c_bias, H);
  in.ln_ih = dense(ln_ih_weight);
  in.b_ih = given(ln_ih_weight) ? or_zeros(b_ih, GH) : Tensor();
  in.rec_mask = dense(rec_mask);
  in.zo_h = dense(zo_h);
  in.zo_c = dense(zo_c);
  in.valid = dense(valid);
  in.coupled = coupled;
  in.has_b_hh = given(b_hh);
  in.has_w_ci = given(w_ci);
  in.has_peephole = given(w_cf);
  in.has_ln_c_b = given(ln_c_bias);
  in.has_b_ih = given(b_ih);
  return in;
}

using lstmkit::Blocks;
using lstmkit::buffer;
using lstmkit::kColumnAlign;
using lstmkit::Team;

// ---------------------------------------------------------------------------------------
// Forward

// Buffers of the forward pass; `saved` ones are (T, N, ...) and kept for the backward.
template <typename T>
struct Forward {
  const T* xw;   // (T, N, GH) input projection (the raw product with ln_ih)
  T* mean_ih;    // (T, N) saved (ln_ih): moments of each row of xw
  T* rstd_ih;    // (T, N) saved (ln_ih)
  T* act;        // (T, N, GH) saved: activated gates in the layout of xw
  T* rhat;       // (T, N, GH) saved (layer norm): normalised recurrent product
  T* rstd_hh;    // (T, N) saved (layer norm)
  T* cs;         // (T+1, N, H) saved: cell state entering each step, then c_n
  T* cnew;       // (T, N, H) saved: c_t as computed, before zoneout (aliases cs[1:] without
                 // zoneout on c: the two differ only past a sequence's end, where no gradient
                 // flows)
  T* xhat_c;     // (T, N, H) saved (layer norm): normalised c_t
  T* rstd_c;     // (T, N) saved (layer norm)
  T* m;          // (N, H) this step's o * tanh(.), h before the projection
  T* hs;         // (T+1, N, P) hidden state entering each step, then h_n
  T* hin;        // (T, N, P) saved: h_{t-1} * rec_mask (aliases hs without the mask)
  T* out;        // (T, N, P)
};

// Step t, row n, up to h before the projection: pre-activations, gates, c_t, o * tanh(.).
// kCoupled is a template argument so that the gate loop is branch-free (vectorised).
template <bool kCoupled, typename T>
void gates_forward_row(const Cell<T>& L, const Forward<T>& B, int64_t t, int64_t n,
                       const T* r) {  // r: row n of this step's h_{t-1} W_hh^T (GH)
  using A = at::opmath_type<T>;
  const int64_t H = L.hidden, GH = L.gates, row = t * L.batch + n;
  const T* xw = B.xw + row * GH;
  T* a = B.act + row * GH;  // pre-activations first, overwritten by the activations

  if (L.ln_ih != nullptr) {  // LN(x W_ih^T; gamma) + b_ih, then read in place of xw
    const auto [mean, rstd] = moments<A>(xw, GH);
    B.mean_ih[row] = mean;
    B.rstd_ih[row] = rstd;
#pragma omp simd
    for (int64_t j = 0; j < GH; ++j) a[j] = A(L.ln_ih[j]) * ((xw[j] - mean) * rstd) + L.b_ih[j];
    xw = a;
  }

  if (L.ln_hh != nullptr) {  // LN(h W_hh^T; gamma) + b_hh
    const auto [mean, rstd] = moments<A>(r, GH);
    T* rhat = B.rhat + row * GH;
    B.rstd_hh[row] = rstd;
#pragma omp simd
    for (int64_t j = 0; j < GH; ++j) {
      rhat[j] = (r[j] - mean) * rstd;
      a[j] = A(xw[j]) + A(L.ln_hh[j]) * rhat[j] + L.b_hh[j];
    }
  } else {
#pragma omp simd
    for (int64_t j = 0; j < GH; ++j) a[j] = A(xw[j]) + r[j] + L.b_hh[j];
  }

  const T* c_prev = B.cs + row * H;
  T* c_new = B.cnew + row * H;
  T *ai = a + L.oi, *af = a + L.of, *ag = a + L.og, *ao = a + L.oo;
#pragma omp simd
  for (int64_t j = 0; j < H; ++j) {
    const A cp = c_prev[j];
    const A f = sigmoid(A(af[j]) + A(L.w_cf[j]) * cp);
    A i;
    if constexpr (kCoupled) {
      i = A(1) - f;
    } else {
      i = sigmoid(A(ai[j]) + A(L.w_ci[j]) * cp);
      ai[j] = i;
    }
    const A g = fast_tanh(A(ag[j]));
    const A c = f * cp + i * g;
    const A o = sigmoid(A(ao[j]) + A(L.w_co[j]) * c);  // o's peephole sees the new state
    af[j] = f;
    ag[j] = g;
    ao[j] = o;
    c_new[j] = c;
  }

  // m = o * tanh(LN(c_t; gamma, beta)) (or o * tanh(c_t)); the state itself stays
  // un-normalised. tanh(.) is not kept: gates_backward_row recomputes it.
  T* m = B.m + n * H;
  if (L.ln_c_w != nullptr) {
    const auto [mean, rstd] = moments<A>(c_new, H);
    T* xhat = B.xhat_c + row * H;
    B.rstd_c[row] = rstd;
#pragma omp simd
    for (int64_t j = 0; j < H; ++j) {
      xhat[j] = (c_new[j] - mean) * rstd;
      m[j] = A(ao[j]) * fast_tanh(A(L.ln_c_w[j]) * xhat[j] + L.ln_c_b[j]);
    }
  } else {
#pragma omp simd
    for (int64_t j = 0; j < H; ++j) m[j] = A(ao[j]) * fast_tanh(A(c_new[j]));
  }

  const bool v = L.is_valid(row);
  T* c_next = B.cs + (row + L.batch) * H;
  for (int64_t j = 0; j < H; ++j) c_next[j] = L.keep_c(v, row, j) ? c_prev[j] : c_new[j];
}

// Step t, row n, from h_new (N, P) (m, or m W_hr^T): the kept state, the output, next hin.
template <typename T>
void hidden_forward_row(const Cell<T>& L, const Forward<T>& B, int64_t t, int64_t n,
                        const T* h_new) {
  const int64_t P = L.out_size, row = t * L.batch + n;
  const bool v = L.is_valid(row);
  const T* h_prev = B.hs + row * P;
  T* h_next = B.hs + (row + L.batch) * P;
  T* out = B.out + row * P;
  h_new += n * P;
  for (int64_t j = 0; j < P; ++j) {
    const T h = L.keep_h(v, row, j) ? h_prev[j] : h_new[j];
    h_next[j] = h;
    out[j] = v ? h : T(0);
  }
  if (L.rec_mask != nullptr && t + 1 < L.steps) {  // only what enters W_hh is dropped
    T* hin = B.hin + (row + L.batch) * P;
    for (int64_t j = 0; j < P; ++j) hin[j] = h_next[j] * L.rec_mask[n * P + j];
  }
}

template <typename T>
std::tuple<std::vector<Tensor>, std::vector<Tensor>, std::vector<Tensor>> forward_impl(
    const Tensor& xw, const Tensor& h0, const Tensor& c0, const Inputs& in, bool collect) {
  const int64_t T_ = xw.size(0), N = xw.size(1), H = c0.size(1), P = h0.size(1);
  const int64_t GH = xw.size(2);
  const bool project = in.w_hr.defined(), ln_hh = in.ln_hh.defined(), ln_c = in.ln_c_w.defined();
  const bool ln_ih = in.ln_ih.defined();
  const Cell<T> L = in.cell<T>(T_, N, H, P);
  const auto opt = xw.options();

  Tensor x = xw.contiguous();
  Tensor act = buffer({T_, N, GH}, opt);
  Tensor mean_ih = ln_ih ? buffer({T_, N}, opt) : Tensor();
  Tensor rstd_ih = ln_ih ? buffer({T_, N}, opt) : Tensor();
  Tensor rhat = ln_hh ? buffer({T_, N, GH}, opt) : Tensor();
  Tensor rstd_hh = ln_hh ? buffer({T_, N}, opt) : Tensor();
  Tensor cs = buffer({T_ + 1, N, H}, opt);
  Tensor cnew = in.zo_c.defined() ? buffer({T_, N, H}, opt) : cs.narrow(0, 1, T_);
  Tensor xhat_c = ln_c ? buffer({T_, N, H}, opt) : Tensor();
  Tensor rstd_c = ln_c ? buffer({T_, N}, opt) : Tensor();
  // with a projection every step's m is kept for dW_hr; without, m is h_new itself
  Tensor ms = project ? buffer({T_, N, H}, opt) : Tensor();
  Tensor m_step = at::empty({N, H}, opt);
  Tensor hs = buffer({T_ + 1, N, P}, opt);
  Tensor hin = in.rec_mask.defined() ? buffer({T_, N, P}, opt) : hs.narrow(0, 0, T_);
  Tensor out = at::empty({T_, N, P}, opt);  // handed to the caller: an ordinary tensor
  Tensor r = at::empty({N * GH}, opt);  // h_{t-1} W_hh^T in column blocks (see Blocks)
  Tensor h_proj = project ? at::empty({N, P}, opt) : Tensor();
  cs[0].copy_(c0);
  hs[0].copy_(h0);
  if (in.rec_mask.defined()) hin[0].copy_(h0 * in.rec_mask);

  Forward<T> B{x.const_data_ptr<T>(), mut<T>(mean_ih), mut<T>(rstd_ih), mut<T>(act),
               mut<T>(rhat),          mut<T>(rstd_hh), mut<T>(cs),      mut<T>(cnew),
               mut<T>(xhat_c),        mut<T>(rstd_c),  nullptr,         mut<T>(hs),
               mut<T>(hin),           mut<T>(out)};
  Team team;
  team.run([&](int k, int K) {
    const auto [c0, c1] = Team::block(GH, k, K, kColumnAlign);  // this thread's columns of r
    const auto [p0, p1] = Team::block(P, k, K, kColumnAlign);   // ... and of h_proj
    const auto [n0, n1] = Team::block(N, k, K);                 // its rows of the pointwise
    const Blocks<T> r_blocks{mut<T>(r), N, GH};
    Tensor r_k = r_blocks.block(k, K, opt);  // outputs of the thread's GEMMs
    Tensor h_proj_k = project ? h_proj.narrow(1, p0, p1 - p0) : Tensor();
    const Tensor w_k = in.w_hh.narrow(0, c0, c1 - c0).t();
    std::vector<T> r_row(GH);
    const Tensor w_hr_k = project ? in.w_hr.narrow(0, p0, p1 - p0).t() : Tensor();
    Forward<T> Bk = B;
    for (int64_t t = 0; t < T_; ++t) {
      team.guarded([&] {
        if (c1 > c0) at::mm_out(r_k, hin[t], w_k);
      });
      Team::barrier();  // r complete
      const Tensor m = project ? ms[t] : m_step;
      Bk.m = mut<T>(m);
      team.guarded([&] {
        for (int64_t n = n0; n < n1; ++n) {
          r_blocks.gather_row(n, K, r_row.data());
          in.coupled ? gates_forward_row<true>(L, Bk, t, n, r_row.data())
                     : gates_forward_row<false>(L, Bk, t, n, r_row.data());
          if (!project) hidden_forward_row(L, Bk, t, n, Bk.m);
        }
      });
      Team::barrier();  // h_t (or m) complete
      if (project) {
        team.guarded([&] {
          if (p1 > p0) at::mm_out(h_proj_k, m, w_hr_k);
        });
        Team::barrier();
        team.guarded([&] {
          for (int64_t n = n0; n < n1; ++n) hidden_forward_row(L, Bk, t, n, ptr<T>(h_proj));
        });
        Team::barrier();
      }
    }
  });

  std::vector<Tensor> gates;
  if (collect) {  // copies, zero past each length (saved buffers must not be handed out)
    const Tensor pad = in.valid.defined() ? in.valid.logical_not().unsqueeze(-1) : Tensor();
    auto zeroed = [&](const Tensor& g) {
      return (pad.defined() ? g.masked_fill(pad, 0) : g.clone()).contiguous();
    };
    const Tensor f = act.narrow(2, L.of, H);
    // lstmkit's one gate order, i | f | g | o (lstmkit.nn.functional.LSTM_GATES), then c
    gates = {zeroed(in.coupled ? 1 - f : act.narrow(2, L.oi, H)), zeroed(f),
             zeroed(act.narrow(2, L.og, H)), zeroed(act.narrow(2, L.oo, H)),
             zeroed(cs.narrow(0, 1, T_))};
  }
  // with ln_ih the raw product is kept too (it is the input: no copy when contiguous)
  std::vector<Tensor> saved = {hin,     act,    cs,     cnew,   ms,
                               rhat,    rstd_hh, xhat_c, rstd_c, ln_ih ? x : Tensor(),
                               mean_ih, rstd_ih};
  return {{out, hs[T_].clone(), cs[T_].clone()}, gates, saved};
}

// ---------------------------------------------------------------------------------------
// Backward through time

template <typename T>
struct Backward {
  const T* act;      // saved buffers, as in Forward
  const T* rhat;
  const T* rstd_hh;
  const T* cs;
  const T* cnew;
  const T* xhat_c;
  const T* rstd_c;
  T* tc;             // (N, H) tanh(LN(c_t)) (or tanh(c_t)), recomputed as the forward did
  const T* dout;     // (T, N, P)
  T* dh;             // (N, P) gradient reaching h_t directly (kept units, frozen steps)
  T* dc;             // (N, H) gradient of the cell state c_t
  T* dhnew;          // (N, P) this step's gradient of h_new (a row of the stack with projection)
  T* dcnew;          // (N, H) gradient of c_t as computed (not kept)
  T* dch;            // (N, H) gradient of c_t through tanh(LN(c_t))
  T* dy;             // (T, N, H) (layer norm): gradient of LN(c_t), summed for its parameters
  T* dxw;            // (T, N, GH) gradient of the pre-activations = of xw (without ln_ih)
  T* dr;             // (T, N, GH) gradient of h W_hh^T (aliases dxw without layer norm)
  const T* xw;       // (T, N, GH) (ln_ih) the raw product, its moments, and its gradient
  const T* mean_ih;
  const T* rstd_ih;
  T* dxraw;
};

// Step t, row n: split the gradients of the states h_t, c_t between the previous state
// (units kept by zoneout or past the end) and the newly computed values.
template <typename T>
void split_row(const Cell<T>& L, const Backward<T>& B, int64_t t, int64_t n,
               const T* dhin) {  // dhin: row n of the gradient of hin_{t+1} = h_t * rec_mask
  using A = at::opmath_type<T>;
  const int64_t P = L.out_size, H = L.hidden, row = t * L.batch + n;
  const bool v = L.is_valid(row);
  T* dh = B.dh + n * P;
  const T* dout = B.dout + row * P;
  T* dhnew = B.dhnew + n * P;
  for (int64_t j = 0; j < P; ++j) {
    const A through_hin = L.rec_mask ? A(dhin[j]) * L.rec_mask[n * P + j] : A(dhin[j]);
    const A d = A(dh[j]) + through_hin + (v ? A(dout[j]) : A(0));
    const bool keep = L.keep_h(v, row, j);
    dh[j] = keep ? d : A(0);
    dhnew[j] = keep ? A(0) : d;
  }
  T* dc = B.dc + n * H;
  T* dcnew = B.dcnew + n * H;
  for (int64_t j = 0; j < H; ++j) {
    const bool keep = L.keep_c(v, row, j);
    dcnew[j] = keep ? T(0) : dc[j];
    dc[j] = keep ? dc[j] : T(0);
  }
}

// Step t, row n, from dm (the gradient of o * tanh(.)): pre-activation gradients into dxw
// (and dr), and the gradient of c_{t-1} added into dc.
template <bool kCoupled, typename T>
void gates_backward_row(const Cell<T>& L, const Backward<T>& B, int64_t t, int64_t n,
                        const T* dm) {
  using A = at::opmath_type<T>;
  const int64_t H = L.hidden, GH = L.gates, row = t * L.batch + n;
  const T* a = B.act + row * GH;
  const T *ai = a + L.oi, *af = a + L.of, *ag = a + L.og, *ao = a + L.oo;
  const T* c_prev = B.cs + row * H;
  T* tc = B.tc + n * H;
  T* dch = B.dch + n * H;
  dm += n * H;
  if (L.ln_c_w != nullptr) {
    const T* xhat = B.xhat_c + row * H;
#pragma omp simd
    for (int64_t j = 0; j < H; ++j) tc[j] = fast_tanh(A(L.ln_c_w[j]) * xhat[j] + L.ln_c_b[j]);
  } else {
    const T* c_new = B.cnew + row * H;
#pragma omp simd
    for (int64_t j = 0; j < H; ++j) tc[j] = fast_tanh(A(c_new[j]));
  }

  // through h = o * tanh(y), y = LN(c_t) or c_t
  T* dy = L.ln_c_w ? B.dy + row * H : dch;
#pragma omp simd
  for (int64_t j = 0; j < H; ++j) dy[j] = A(dm[j]) * ao[j] * (A(1) - A(tc[j]) * tc[j]);
  if (L.ln_c_w != nullptr) {
    layer_norm_backward<A>(dy, L.ln_c_w, B.xhat_c + row * H, A(B.rstd_c[row]), H, dch);
  }

  T* da = B.dxw + row * GH;
  T *dai = da + L.oi, *daf = da + L.of, *dag = da + L.og, *dao = da + L.oo;
  T* dc = B.dc + n * H;
  const T* dcnew = B.dcnew + n * H;
#pragma omp simd
  for (int64_t j = 0; j < H; ++j) {
    const A f = af[j], g = ag[j], o = ao[j], cp = c_prev[j];
    const A d_o = A(dm[j]) * tc[j] * o * (A(1) - o);
    const A dcn = A(dcnew[j]) + dch[j] + d_o * L.w_co[j];
    A dcp = dcn * f;
    A i, d_f;
    if constexpr (kCoupled) {  // i = 1 - f
      i = A(1) - f;
      d_f = (dcn * cp - dcn * g) * f * (A(1) - f);
    } else {
      i = ai[j];
      const A d_i = dcn * g * i * (A(1) - i);
      dai[j] = d_i;
      dcp += d_i * L.w_ci[j];
      d_f = dcn * cp * f * (A(1) - f);
    }
    dcp += d_f * L.w_cf[j];
    daf[j] = d_f;
    dag[j] = dcn * i * (A(1) - g * g);
    dao[j] = d_o;
    dc[j] = A(dc[j]) + dcp;
  }
  if (L.ln_hh != nullptr) {
    layer_norm_backward<A>(da, L.ln_hh, B.rhat + row * GH, A(B.rstd_hh[row]), GH,
                           B.dr + row * GH);
  }
  if (L.ln_ih != nullptr) {
    layer_norm_backward<A>(da, L.ln_ih, B.xw + row * GH, A(B.mean_ih[row]), A(B.rstd_ih[row]),
                           GH, B.dxraw + row * GH);
  }
}

// Sum over the rows of x * y, column by column, for (rows, cols) arrays with row strides: the
// gradient of a per-feature gain or peephole weight in one pass, without a (rows, cols)
// temporary. Accumulated in double: rows = T * N can be large. With per-row `mean` and `rstd`,
// y is first normalised, (y - mean) * rstd, as a layer norm's xhat that was not kept.
template <typename T>
Tensor column_dot(const T* x, int64_t x_stride, const T* y, int64_t y_stride, int64_t rows,
                  int64_t cols, const at::TensorOptions& options, const T* mean = nullptr,
                  const T* rstd = nullptr) {
  constexpr int64_t kStrip = 64;  // columns per task; each row contributes a contiguous strip
  Tensor out = at::empty({cols}, options);
  T* o = out.mutable_data_ptr<T>();
  at::parallel_for(0, (cols + kStrip - 1) / kStrip, 1, [&](int64_t begin, int64_t end) {
    for (int64_t strip = begin; strip < end; ++strip) {
      const int64_t c0 = strip * kStrip, width = std::min(kStrip, cols - c0);
      double acc[kStrip] = {};
      for (int64_t r = 0; r < rows; ++r) {
        const T* xr = x + r * x_stride + c0;
        const T* yr = y + r * y_stride + c0;
        const double shift = mean ? mean[r] : 0, scale = rstd ? rstd[r] : 1;
#pragma omp simd
        for (int64_t c = 0; c < width; ++c) acc[c] += double(xr[c]) * ((yr[c] - shift) * scale);
      }
      for (int64_t c = 0; c < width; ++c) o[c0 + c] = T(acc[c]);
    }
  });
  return out;
}

template <typename T>
std::vector<Tensor> backward_impl(const Tensor& dout_, const Tensor& dh_n, const Tensor& dc_n,
                                  const std::vector<Tensor>& saved, const Inputs& in) {
  const Tensor &hin = saved[0], &act = saved[1], &cs = saved[2], &cnew = saved[3],
               &ms = saved[4], &rhat = saved[5], &rstd_hh = saved[6], &xhat_c = saved[7],
               &rstd_c = saved[8], &xw = saved[9], &mean_ih = saved[10], &rstd_ih = saved[11];
  const int64_t T_ = act.size(0), N = act.size(1), GH = act.size(2), H = cs.size(2);
  const int64_t P = hin.size(2);
  const bool project = in.w_hr.defined(), ln_hh = in.ln_hh.defined(), ln_c = in.ln_c_w.defined();
  const bool ln_ih = in.ln_ih.defined();
  const Cell<T> L = in.cell<T>(T_, N, H, P);
  const auto opt = act.options();

  Tensor dout = dout_.contiguous();
  Tensor dh = dh_n.contiguous().clone();
  Tensor dhin = at::zeros({N * P}, opt);  // in column blocks (see Blocks); no step after the last
  Tensor dc = dc_n.contiguous().clone();
  Tensor dhnews = buffer({project ? T_ : 1, N, P}, opt);  // the stack feeds dW_hr
  Tensor dm = project ? at::empty({N, H}, opt) : Tensor();
  Tensor dcnew = at::empty({N, H}, opt);
  Tensor dch = at::empty({N, H}, opt);
  Tensor tc = at::empty({N, H}, opt);
  Tensor dy = ln_c ? buffer({T_, N, H}, opt) : Tensor();
  Tensor dxw = buffer({T_, N, GH}, opt);
  Tensor dr = ln_hh ? buffer({T_, N, GH}, opt) : dxw;
  Tensor dxraw = ln_ih ? buffer({T_, N, GH}, opt) : Tensor();

  Backward<T> B{ptr<T>(act),   ptr<T>(rhat),  ptr<T>(rstd_hh), ptr<T>(cs),      ptr<T>(cnew),
                ptr<T>(xhat_c), ptr<T>(rstd_c), mut<T>(tc),      ptr<T>(dout),    mut<T>(dh),
                mut<T>(dc),     nullptr,        mut<T>(dcnew),   mut<T>(dch),     mut<T>(dy),
                mut<T>(dxw),    mut<T>(dr),     ptr<T>(xw),      ptr<T>(mean_ih), ptr<T>(rstd_ih),
                mut<T>(dxraw)};
  Team team;  // as in the forward: GEMM columns and pointwise rows split, see Team
  team.run([&](int k, int K) {
    const auto [p0, p1] = Team::block(P, k, K, kColumnAlign);  // this thread's columns of dhin
    const auto [h0, h1] = Team::block(H, k, K, kColumnAlign);  // ... and of dm
    const auto [n0, n1] = Team::block(N, k, K);                // its rows of the pointwise
    const Blocks<T> dhin_blocks{mut<T>(dhin), N, P};
    Tensor dhin_k = dhin_blocks.block(k, K, opt);  // outputs of the thread's GEMMs
    Tensor dm_k = project ? dm.narrow(1, h0, h1 - h0) : Tensor();
    const Tensor w_k = in.w_hh.narrow(1, p0, p1 - p0);
    std::vector<T> dhin_row(P);
    const Tensor w_hr_k = project ? in.w_hr.narrow(1, h0, h1 - h0) : Tensor();
    Backward<T> Bk = B;
    auto gates_backward = [&](int64_t t, int64_t n, const T* dm) {
      in.coupled ? gates_backward_row<true>(L, Bk, t, n, dm)
                 : gates_backward_row<false>(L, Bk, t, n, dm);
    };
    for (int64_t t = T_ - 1; t >= 0; --t) {
      const Tensor dhnew = dhnews[project ? t : 0];
      Bk.dhnew = mut<T>(dhnew);
      team.guarded([&] {
        for (int64_t n = n0; n < n1; ++n) {
          dhin_blocks.gather_row(n, K, dhin_row.data());
          split_row(L, Bk, t, n, dhin_row.data());
          if (!project) gates_backward(t, n, Bk.dhnew);
        }
      });
      Team::barrier();  // dhnew (or dr[t]) complete, and every row has read dhin
      if (project) {
        team.guarded([&] {
          if (h1 > h0) at::mm_out(dm_k, dhnew, w_hr_k);
        });
        Team::barrier();
        team.guarded([&] {
          for (int64_t n = n0; n < n1; ++n) gates_backward(t, n, ptr<T>(dm));
        });
        Team::barrier();
      }
      team.guarded([&] {  // the one recurrent GEMM of the step
        if (p1 > p0) at::mm_out(dhin_k, dr[t], w_k);
      });
      Team::barrier();
    }
  });
  Tensor dhin_rows = at::empty({N, P}, opt);  // the last step's, gathered into rows
  const Blocks<T> dhin_blocks{mut<T>(dhin), N, P};
  for (int64_t n = 0; n < N; ++n) dhin_blocks.gather_row(n, team.size(), mut<T>(dhin_rows) + n * P);
  Tensor dh0 = dh + (in.rec_mask.defined() ? dhin_rows * in.rec_mask : dhin_rows);

  // Parameter gradients: one GEMM or one reduction over all T * N rows each.
  const int64_t rows = T_ * N;
  auto total = [](const Tensor& x) { return x.sum(at::IntArrayRef{0, 1}); };
  auto dot = [&](const Tensor& x, int64_t offset, const Tensor& y) {  // x: (T, N, GH) or (T, N, H)
    return column_dot(ptr<T>(x) + offset, x.size(2), ptr<T>(y), y.size(2), rows,
                      y.size(2), opt);
  };
  Tensor dw_hh = at::mm(dr.view({rows, GH}).t(), hin.reshape({rows, P}));
  Tensor db_hh = in.has_b_hh ? total(dxw) : Tensor();
  Tensor dw_hr = project ? at::mm(dhnews.view({rows, P}).t(), ms.view({rows, H})) : Tensor();
  Tensor dw_ci = in.has_w_ci ? dot(dxw, L.oi, cs) : Tensor();  // cs's first T * N rows: c_{t-1}
  Tensor dw_cf = in.has_peephole ? dot(dxw, L.of, cs) : Tensor();
  Tensor dw_co = in.has_peephole ? dot(dxw, L.oo, cnew) : Tensor();
  Tensor dln_hh = ln_hh ? dot(dxw, 0, rhat) : Tensor();
  Tensor dln_c_w = ln_c ? dot(dy, 0, xhat_c) : Tensor();
  Tensor dln_c_b = in.has_ln_c_b ? total(dy) : Tensor();
  Tensor dln_ih = ln_ih ? column_dot(ptr<T>(dxw), GH, ptr<T>(xw), GH, rows, GH, opt,
                                     ptr<T>(mean_ih), ptr<T>(rstd_ih))
                        : Tensor();
  Tensor db_ih = in.has_b_ih ? (in.has_b_hh ? db_hh.clone() : total(dxw)) : Tensor();
  return {ln_ih ? dxraw : dxw, dh0,    dc,      dw_hh,   db_hh,  dw_hr, dw_ci,
          dw_cf,               dw_co,  dln_hh,  dln_c_w, dln_c_b, dln_ih, db_ih};
}

}  // namespace

std::tuple<std::vector<Tensor>, std::vector<Tensor>, std::vector<Tensor>> forward(
    const Tensor& xw, const Tensor& h0, const Tensor& c0, const Tensor& w_hh,
    const Tensor& b_hh, const Tensor& w_hr, const Tensor& w_ci, const Tensor& w_cf,
    const Tensor& w_co, const Tensor& ln_hh_weight, const Tensor& ln_c_weight,
    const Tensor& ln_c_bias, const Tensor& ln_ih_weight, const Tensor& b_ih,
    const Tensor& rec_mask, const Tensor& zo_h, const Tensor& zo_c, const Tensor& valid,
    bool coupled, bool collect) {
  TORCH_CHECK(xw.device().is_cpu(), "the fused LSTM runs on the CPU only");
  TORCH_CHECK(xw.dim() == 3 && xw.size(0) > 0, "xw must be (T, N, G*H) with T > 0");
  TORCH_CHECK(h0.dim() == 2 && c0.dim() == 2 && h0.size(0) == xw.size(1) &&
                  c0.size(0) == xw.size(1),
              "h0 and c0 must be (N, P) and (N, H)");
  TORCH_CHECK(h0.scalar_type() == xw.scalar_type() && c0.scalar_type() == xw.scalar_type(),
              "h0 and c0 must have xw's dtype");
  const Inputs in = check_inputs(xw, xw.size(1), c0.size(1), h0.size(1), w_hh, b_hh, w_hr,
                                 w_ci, w_cf, w_co, ln_hh_weight, ln_c_weight, ln_c_bias,
                                 ln_ih_weight, b_ih, rec_mask, zo_h, zo_c, valid, coupled);
  std::tuple<std::vector<Tensor>, std::vector<Tensor>, std::vector<Tensor>> result;
  AT_DISPATCH_FLOATING_TYPES(xw.scalar_type(), "lstmkit_lstm_forward", [&] {
    result = forward_impl<scalar_t>(xw, h0, c0, in, collect);
  });
  return result;
}

std::vector<Tensor> backward(const Tensor& dout, const Tensor& dh_n, const Tensor& dc_n,
                             const std::vector<Tensor>& saved, const Tensor& w_hh,
                             const Tensor& b_hh, const Tensor& w_hr, const Tensor& w_ci,
                             const Tensor& w_cf, const Tensor& w_co, const Tensor& ln_hh_weight,
                             const Tensor& ln_c_weight, const Tensor& ln_c_bias,
                             const Tensor& ln_ih_weight, const Tensor& b_ih,
                             const Tensor& rec_mask, const Tensor& zo_h, const Tensor& zo_c,
                             const Tensor& valid, bool coupled) {
  TORCH_CHECK(saved.size() == 12, "saved must be the list returned by forward");
  const Tensor& act = saved[1];
  const int64_t T_ = act.size(0), N = act.size(1), H = saved[2].size(2), P = saved[0].size(2);
  const Inputs in = check_inputs(act, N, H, P, w_hh, b_hh, w_hr, w_ci, w_cf, w_co,
                                 ln_hh_weight, ln_c_weight, ln_c_bias, ln_ih_weight, b_ih,
                                 rec_mask, zo_h, zo_c, valid, coupled);
  TORCH_CHECK(dout.sizes() == at::IntArrayRef({T_, N, P}) &&
                  dh_n.sizes() == at::IntArrayRef({N, P}) &&
                  dc_n.sizes() == at::IntArrayRef({N, H}),
              "gradients must match the outputs' shapes");
  std::vector<Tensor> grads;
  AT_DISPATCH_FLOATING_TYPES(act.scalar_type(), "lstmkit_lstm_backward", [&] {
    grads = backward_impl<scalar_t>(dout, dh_n, dc_n, saved, in);
  });
  return grads;
}

int64_t empty_cache() {
#ifdef __linux__
  return lstmkit::BufferCache::instance().empty();
#else
  return 0;
#endif
}

int64_t cached_bytes() {
#ifdef __linux__
  return lstmkit::BufferCache::instance().cached_bytes();
#else
  return 0;
#endif
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "Fused CPU recurrence of one LSTM layer in one direction (see lstm_cpu.cpp).";
  m.def("empty_cache", &empty_cache, "Unmap the cached free buffers; returns their number");
  m.def("cached_bytes", &cached_bytes, "Bytes of free buffers kept for reuse");
  // the GIL is released while the kernel runs: it touches no Python object
  m.def("forward", &forward, "Forward over all steps: (outputs, gates, saved)",
        py::call_guard<py::gil_scoped_release>());
  m.def("backward", &backward, "Backward through time: gradients of the forward's inputs",
        py::call_guard<py::gil_scoped_release>());
}
