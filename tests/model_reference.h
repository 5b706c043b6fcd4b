// A deliberately plain, double-precision forward pass over a checkpoint's named tensors, written independently of
// src/model so that tests can check the engine against it. No cache, full causal attention, every position.
#pragma once
#include <cmath>
#include <numbers>
#include <string>
#include <vector>

#include "io/safetensors.h"
#include "model/config.h"

namespace bq::test {

using Mat = std::vector<double>;

inline Mat tensor_d(const Checkpoint& ck, const std::string& name) {
  const TensorInfo* t = ck.find(name);
  if (!t) throw std::runtime_error("reference: missing " + name);
  std::vector<float> f(size_t(t->numel()));
  to_f32(t->dtype, t->data, f.data(), f.size());
  return Mat(f.begin(), f.end());
}

// y[n][out] = x[n][in] · W[out][in]ᵀ, W given from row `row0`.
inline Mat ref_linear(const Mat& x, size_t n, const Mat& w, size_t row0, size_t out, size_t in) {
  Mat y(n * out, 0.0);
  for (size_t i = 0; i < n; ++i)
    for (size_t o = 0; o < out; ++o) {
      double s = 0;
      for (size_t j = 0; j < in; ++j) s += x[i * in + j] * w[(row0 + o) * in + j];
      y[i * out + o] = s;
    }
  return y;
}

inline Mat ref_rmsnorm(const Mat& x, size_t n, size_t d, const Mat& w, double eps) {
  Mat y(x.size());
  for (size_t i = 0; i < n; ++i) {
    double ss = 0;
    for (size_t j = 0; j < d; ++j) ss += x[i * d + j] * x[i * d + j];
    double inv = 1.0 / std::sqrt(ss / double(d) + eps);
    for (size_t j = 0; j < d; ++j) y[i * d + j] = x[i * d + j] * inv * w[j];
  }
  return y;
}

// Logits [n, vocab] for every position of `ids`. Gemma 3 (norm_plus_one): norms multiply by 1 + w, embeddings are
// scaled by sqrt(hidden), each block's output is normed before its residual, the MLP gates with tanh-GELU,
// sliding layers see the last sliding_window positions and rotate with the local base.
inline Mat reference_logits(const Checkpoint& ck, const ModelConfig& c, const std::vector<int>& ids) {
  const size_t n = ids.size(), H = size_t(c.hidden), hd = size_t(c.head_dim), nh = size_t(c.n_heads),
               nkv = size_t(c.n_kv_heads), Q = nh * hd, KV = nkv * hd, I = size_t(c.intermediate);
  const bool gemma = c.norm_plus_one;
  auto norm_w = [&](const std::string& name) {
    Mat w = tensor_d(ck, name);
    if (gemma)
      for (auto& e : w) e += 1;
    return w;
  };
  Mat emb = tensor_d(ck, "model.embed_tokens.weight");
  Mat x(n * H);
  const double embed_scale = gemma ? double(float(std::sqrt(double(H)))) : 1.0;
  for (size_t i = 0; i < n; ++i)
    for (size_t j = 0; j < H; ++j) x[i * H + j] = emb[size_t(ids[i]) * H + j] * embed_scale;
  const double scale = 1.0 / std::sqrt(c.query_pre_attn_scalar > 0 ? double(c.query_pre_attn_scalar) : double(hd));
  std::vector<double> inv_freq;
  auto rot = [&](Mat& t, size_t heads) {
    for (size_t i = 0; i < n; ++i)
      for (size_t h = 0; h < heads; ++h)
        for (size_t f = 0; f < hd / 2; ++f) {
          double a = double(i) * inv_freq[f], cs = std::cos(a), sn = std::sin(a);
          double& u = t[i * heads * hd + h * hd + f];
          double& v = t[i * heads * hd + h * hd + f + hd / 2];
          double u0 = u, v0 = v;
          u = u0 * cs - v0 * sn;
          v = v0 * cs + u0 * sn;
        }
  };
  for (int l = 0; l < c.n_layers; ++l) {
    std::string p = "model.layers." + std::to_string(l) + ".";
    const bool sliding = !c.sliding_layers.empty() && c.sliding_layers[size_t(l)];
    inv_freq = rope_inv_freq(c, sliding);
    Mat xn = ref_rmsnorm(x, n, H, norm_w(p + "input_layernorm.weight"), c.rms_eps);
    Mat q, k, v;
    if (c.fused_qkv) {
      Mat w = tensor_d(ck, p + "self_attn.qkv_proj.weight");
      q = ref_linear(xn, n, w, 0, Q, H);
      k = ref_linear(xn, n, w, Q, KV, H);
      v = ref_linear(xn, n, w, Q + KV, KV, H);
    } else {
      q = ref_linear(xn, n, tensor_d(ck, p + "self_attn.q_proj.weight"), 0, Q, H);
      k = ref_linear(xn, n, tensor_d(ck, p + "self_attn.k_proj.weight"), 0, KV, H);
      v = ref_linear(xn, n, tensor_d(ck, p + "self_attn.v_proj.weight"), 0, KV, H);
    }
    if (c.attn_bias) {
      Mat bq = tensor_d(ck, p + "self_attn.q_proj.bias"), bk = tensor_d(ck, p + "self_attn.k_proj.bias"),
          bv = tensor_d(ck, p + "self_attn.v_proj.bias");
      for (size_t i = 0; i < n; ++i) {
        for (size_t j = 0; j < Q; ++j) q[i * Q + j] += bq[j];
        for (size_t j = 0; j < KV; ++j) k[i * KV + j] += bk[j], v[i * KV + j] += bv[j];
      }
    }
    if (c.qk_norm) {  // qwen3: every head of q and k RMS-normed over head_dim
      q = ref_rmsnorm(q, n * nh, hd, norm_w(p + "self_attn.q_norm.weight"), c.rms_eps);
      k = ref_rmsnorm(k, n * nkv, hd, norm_w(p + "self_attn.k_norm.weight"), c.rms_eps);
    }
    rot(q, nh);
    rot(k, nkv);
    Mat att(n * Q, 0.0);
    for (size_t i = 0; i < n; ++i)
      for (size_t h = 0; h < nh; ++h) {
        size_t g = h / (nh / nkv);
        // keys j with i - j < sliding_window on a sliding layer, all j <= i otherwise
        const size_t j0 = sliding && i + 1 > size_t(c.sliding_window) ? i + 1 - size_t(c.sliding_window) : 0;
        std::vector<double> s(i + 1, 0.0);
        double mx = -1e300, sum = 0;
        for (size_t j = j0; j <= i; ++j) {
          double d = 0;
          for (size_t e = 0; e < hd; ++e) d += q[i * Q + h * hd + e] * k[j * KV + g * hd + e];
          s[j] = d * scale;
          mx = std::max(mx, s[j]);
        }
        for (size_t j = j0; j <= i; ++j) sum += (s[j] = std::exp(s[j] - mx));
        for (size_t j = j0; j <= i; ++j)
          for (size_t e = 0; e < hd; ++e) att[i * Q + h * hd + e] += s[j] / sum * v[j * KV + g * hd + e];
      }
    Mat o = ref_linear(att, n, tensor_d(ck, p + "self_attn.o_proj.weight"), 0, H, Q);
    if (gemma) o = ref_rmsnorm(o, n, H, norm_w(p + "post_attention_layernorm.weight"), c.rms_eps);
    for (size_t i = 0; i < x.size(); ++i) x[i] += o[i];
    xn = ref_rmsnorm(x, n, H, norm_w(p + (gemma ? "pre_feedforward_layernorm.weight" : "post_attention_layernorm.weight")),
                     c.rms_eps);
    Mat g, u;
    if (c.fused_qkv) {
      Mat w = tensor_d(ck, p + "mlp.gate_up_proj.weight");
      g = ref_linear(xn, n, w, 0, I, H);
      u = ref_linear(xn, n, w, I, I, H);
    } else {
      g = ref_linear(xn, n, tensor_d(ck, p + "mlp.gate_proj.weight"), 0, I, H);
      u = ref_linear(xn, n, tensor_d(ck, p + "mlp.up_proj.weight"), 0, I, H);
    }
    for (size_t i = 0; i < g.size(); ++i) {
      const double a = g[i];
      g[i] = (gemma ? 0.5 * a * (1 + std::tanh(std::sqrt(2 / std::numbers::pi) * (a + 0.044715 * a * a * a)))
                    : a / (1 + std::exp(-a))) * u[i];
    }
    Mat d = ref_linear(g, n, tensor_d(ck, p + "mlp.down_proj.weight"), 0, H, I);
    if (gemma) d = ref_rmsnorm(d, n, H, norm_w(p + "post_feedforward_layernorm.weight"), c.rms_eps);
    for (size_t i = 0; i < x.size(); ++i) x[i] += d[i];
  }
  Mat xn = ref_rmsnorm(x, n, H, norm_w("model.norm.weight"), c.rms_eps);
  Mat head = tensor_d(ck, c.tie_embeddings ? "model.embed_tokens.weight" : "lm_head.weight");
  return ref_linear(xn, n, head, 0, size_t(c.vocab), H);
}

}  // namespace bq::test
