// libFuzzer target: arbitrary bytes as a data split, read by each of the benchmark readers (TSV strict and
// lenient, CoNLL, the MedQA options' Python literal). Only bq::Error may escape.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "core/error.h"
#include "eval/readers.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  for (bool lenient : {false, true}) {
    try {
      (void)bq::eval::parse_tsv(text, "fuzz.tsv", lenient);
    } catch (const bq::Error&) {
    }
    try {
      size_t skipped = 0;
      (void)bq::eval::parse_conll(text, "fuzz.conll", lenient, &skipped);
    } catch (const bq::Error&) {
    }
  }
  try {
    // dump() as a run writes it; raw bytes that are not UTF-8 are replaced (load_split refuses them earlier).
    nlohmann::json v = bq::eval::parse_python_literal(text, "fuzz.tsv:2");
    (void)v.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  } catch (const bq::Error&) {
  }
  return 0;
}
