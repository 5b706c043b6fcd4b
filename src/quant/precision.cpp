#include "quant/precision.h"

#include <algorithm>

#include "core/error.h"

namespace bq::quant {

const std::vector<Precision>& precisions() {
  // bf16 is the study's full-precision baseline; fp32 is listed first as the most bits, preferred last as baseline.
  static const std::vector<Precision> table = {
      {"fp32", std::nullopt, 3, false},     {"bf16", std::nullopt, 1, true},   {"fp16", std::nullopt, 2, false},
      {"int8", Scheme::Int8, 0, true},      {"llm-int8", Scheme::LLMInt8, 0, true},
      {"nf4", Scheme::NF4, 0, true},        {"fp4", Scheme::FP4, 0, true}};
  return table;
}

const Precision* find_precision(std::string_view name) {
  for (auto& p : precisions())
    if (p.name == name) return &p;
  return nullptr;
}

const Precision& precision_named(std::string_view name) {
  if (const Precision* p = find_precision(name)) return *p;
  std::string known;
  for (auto& p : precisions()) known += (known.empty() ? "" : ", ") + std::string(p.name);
  fail("--precision: unknown '{}' ({})", name, known);
}

std::vector<std::string> precision_names() {
  std::vector<std::string> out;
  for (auto& p : precisions()) out.emplace_back(p.name);
  return out;
}

int precision_rank(std::string_view name) {
  const Precision* p = find_precision(name);
  return p ? int(p - precisions().data()) : int(precisions().size());
}

bool is_full_precision(std::string_view name) {
  const Precision* p = find_precision(name);
  return p && !p->scheme;
}

std::string_view precision_name(Scheme s) {
  for (auto& p : precisions())
    if (p.scheme == s) return p.name;
  fail("no precision name for quantization scheme {}", int(s));
}

}  // namespace bq::quant
