#include "model/quantize_model.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "core/error.h"
#include "core/progress.h"
#include "quant/precision.h"

namespace bq {

namespace {

// A linear loaded from a pre-quantized checkpoint keeps its stored codes; only the 8-bit flavour can change
// (the stored int8 weights serve both LLM.int8 and weight-only int8).
void adapt_prequantized(Linear& l, const quant::QuantOptions& opt) {
  using quant::Scheme;
  const quant::QuantizedMatrix& q = *l.q;
  bool q8 = q.scheme == Scheme::Int8 || q.scheme == Scheme::LLMInt8;
  bool want8 = opt.scheme == Scheme::Int8 || opt.scheme == Scheme::LLMInt8;
  if (q.scheme != opt.scheme && !(q8 && want8))
    fail("the checkpoint is already quantized as {}; --precision asks for {} (use the original checkpoint)",
         quant::precision_name(q.scheme), quant::precision_name(opt.scheme));
  if (q.scheme == opt.scheme && q.compute == opt.compute) return;
  auto copy = std::make_shared<quant::QuantizedMatrix>(q);
  if (q8) copy->threshold = opt.scheme == Scheme::LLMInt8 ? opt.llm_int8_threshold : 0.0f;
  copy->scheme = opt.scheme;
  copy->compute = opt.compute;
  l.q = std::move(copy);
}

// Drops the pages of a stored weight the model no longer reads (it was quantized) from the process's resident set,
// so that a run's memory is the quantized model's, not that plus the 16-bit checkpoint it came from. Only for
// bytes inside the mapped checkpoint (read-only file pages: the mapping stays valid and would re-read them from
// the file); owned buffers are left alone, as MADV_DONTNEED would zero them. Whole pages inside the range only.
void release_stored_weight(const Model& m, const void* w, size_t bytes) {
  if (!m.checkpoint || !w) return;
  const auto* begin = static_cast<const uint8_t*>(w);
  const bool mapped = std::any_of(m.checkpoint->tensors().begin(), m.checkpoint->tensors().end(), [&](const auto& t) {
    return begin >= t.second.data && begin + bytes <= t.second.data + t.second.nbytes;
  });
  if (!mapped) return;
  const uintptr_t page = uintptr_t(::sysconf(_SC_PAGESIZE));
  const uintptr_t first = (reinterpret_cast<uintptr_t>(begin) + page - 1) / page * page;
  const uintptr_t end = (reinterpret_cast<uintptr_t>(begin) + bytes) / page * page;
  // Advice: should it fail, the pages merely stay resident.
  if (end > first) ::madvise(reinterpret_cast<void*>(first), end - first, MADV_DONTNEED);
}

// One stored tensor, holding `parts` stacked by rows and contiguous from parts[0].w (phi3's fused qkv_proj and
// gate_up_proj hold several): bitsandbytes quantizes the stored tensor as a whole, so it is quantized whole here too
// and cut into the projections' row ranges.
void quantize_stored(const Model& m, const std::vector<Linear*>& parts, const quant::QuantOptions& opt) {
  const Linear& first = *parts.front();
  const void* stored = first.w;
  int64_t rows = 0;
  for (const Linear* l : parts) rows += l->out;
  assign_fused(parts, quant::quantize(stored, first.dtype, rows, first.in, opt));
  release_stored_weight(m, stored, size_t(rows * first.in) * dtype_size(first.dtype));
}

}  // namespace

void assign_fused(const std::vector<Linear*>& parts, quant::QuantizedMatrix whole) {
  if (parts.size() == 1) {  // not fused: the matrix as it is (slicing would resolve double-quantized maxima)
    Linear& l = *parts[0];
    if (l.in != whole.cols || l.out != whole.rows)
      fail("quantized tensor is [{}, {}], the projection [{}, {}]", whole.rows, whole.cols, l.out, l.in);
    l.q = std::make_shared<const quant::QuantizedMatrix>(std::move(whole));
    l.w = nullptr;
    return;
  }
  int64_t row0 = 0;
  for (Linear* l : parts) {
    if (l->in != whole.cols) fail("fused tensor has {} columns, the projection {}", whole.cols, l->in);
    l->q = std::make_shared<const quant::QuantizedMatrix>(quant::slice_rows(whole, row0, l->out));
    l->w = nullptr;
    row0 += l->out;
  }
  if (row0 != whole.rows) fail("fused tensor has {} rows, its projections {}", whole.rows, row0);
}

void quantize_model(Model& m, const quant::QuantOptions& opt) {
  // Progress in GB of 16/32-bit weights read, one layer at a time.
  double to_read = 0;
  for (Layer& L : m.layers)
    if (!L.q.q)
      for (Linear* l : {&L.q, &L.k, &L.v, &L.o, &L.gate, &L.up, &L.down}) to_read += double(l->weight_bytes()) / 1e9;
  ProgressMeter progress(fmt::format("quantizing to {}", quant::precision_name(opt.scheme)), to_read, "GB");
  const auto tensors = layer_tensors(m.cfg);
  if (opt.quantize_lm_head && !m.lm_head.q)
    m.lm_head.q = std::make_shared<const quant::QuantizedMatrix>(
        quant::quantize(m.lm_head.w, m.lm_head.dtype, m.lm_head.out, m.lm_head.in, opt));
  for (Layer& L : m.layers) {
    if (L.q.q) {
      for (Linear* l : {&L.q, &L.k, &L.v, &L.o, &L.gate, &L.up, &L.down}) adapt_prequantized(*l, opt);
      continue;
    }
    for (const LayerTensor& t : tensors) {
      if (t.linears.empty()) continue;
      std::vector<Linear*> parts;
      for (auto [part, rows] : t.linears) parts.push_back(&(L.*part));
      quantize_stored(m, parts, opt);
      progress.advance(double(t.shape[0] * t.shape[1]) * double(dtype_size(parts[0]->dtype)) / 1e9);
    }
  }
}

std::optional<quant::QuantOptions> precision_to_quant(const PrecisionOptions& p) {
  if (!p.precision->scheme) return std::nullopt;
  quant::QuantOptions q;
  q.scheme = *p.precision->scheme;
  if (p.blocksize < 32 || p.blocksize > 4096 || (p.blocksize & (p.blocksize - 1)))
    fail("--blocksize: {} is not a power of two in 32..4096", p.blocksize);
  q.double_quant = p.double_quant;
  q.blocksize = p.blocksize;
  if (p.compute_dtype == "fp16") q.compute = DType::F16;
  else if (p.compute_dtype == "bf16") q.compute = DType::BF16;
  else if (p.compute_dtype == "fp32") q.compute = DType::F32;
  else fail("--compute-dtype: unknown '{}' (fp16, bf16, fp32)", p.compute_dtype);
  q.quantize_lm_head = p.quantize_lm_head;
  return q;
}

PrecisionOptions resolve_precision(const PrecisionOptions& asked, const std::optional<quant::QuantOptions>& stored,
                                   const std::string& checkpoint) {
  if (!stored) return asked;
  PrecisionOptions p = asked;
  const bool four = quant::is_4bit(stored->scheme);
  const quant::Precision& name = quant::precision_named(quant::precision_name(stored->scheme));
  const std::string as_stored = four ? fmt::format("{} (blocksize {}, double quant {})", name.name, stored->blocksize,
                                                   stored->double_quant ? "on" : "off")
                                       : "8-bit (int8 or llm-int8)";
  auto contradicts = [&](const std::string& option) {
    fail("{}: the checkpoint is stored quantized as {}; {} contradicts it (leave it out to run the checkpoint as "
         "stored, or quantize the original checkpoint)", checkpoint, as_stored, option);
  };
  if (!asked.precision_given) {
    p.precision = &name;
  } else if (asked.precision != &name) {
    const bool eight_bit_swap = !four && asked.precision->scheme && !quant::is_4bit(*asked.precision->scheme);
    if (!eight_bit_swap) contradicts(fmt::format("--precision {}", asked.precision->name));
  }
  if (four) {
    if (asked.double_quant_given && asked.double_quant != stored->double_quant)
      contradicts(fmt::format("--double-quant {}", asked.double_quant ? "on" : "off"));
    if (asked.blocksize_given && asked.blocksize != stored->blocksize)
      contradicts(fmt::format("--blocksize {}", asked.blocksize));
    p.double_quant = stored->double_quant;
    p.blocksize = stored->blocksize;
  }
  return p;
}

}  // namespace bq
