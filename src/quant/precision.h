// The one table of precisions a model runs at: the --precision names, which quantization scheme each is (none for
// the stored 16/32-bit weights), and their order from full precision to the fewest bits. Every list of precisions
// in biomedq (CLI choices, table columns, figures, recommendations) comes from here.
#pragma once
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "quant/quant.h"

namespace bq::quant {

struct Precision {
  std::string_view name;         // as --precision spells it and run records store it
  std::optional<Scheme> scheme;  // none: the stored weights as they are
  int baseline_preference;       // full precisions: which baseline `recommend` prefers (lower first); else 0
  bool offered_unmeasured;       // `recommend` lists it for a model even where no run measured it
};

// In order from full precision to the fewest bits: fp32, bf16, fp16, int8, llm-int8, nf4, fp4.
const std::vector<Precision>& precisions();
// Null for an unknown name.
const Precision* find_precision(std::string_view name);
// The entry of a --precision name; an unknown name is a bq::Error listing the known ones. The command line parses
// precisions once, here; past it a precision is a table entry, never a string.
const Precision& precision_named(std::string_view name);
std::vector<std::string> precision_names();
// Place in precisions() (unknown names after all known ones), for sorting columns and figures.
int precision_rank(std::string_view name);
// bf16, fp16, fp32: the stored weights, no quantization.
bool is_full_precision(std::string_view name);
// The --precision name of a scheme ("llm-int8"; bitsandbytes' own files use only the 4-bit names, nf4 and fp4).
std::string_view precision_name(Scheme s);

}  // namespace bq::quant
