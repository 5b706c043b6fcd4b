// A small byte-level BPE tokenizer for synthetic models, trained here by plain BPE on an embedded text.
#include <nlohmann/json.hpp>

#include <map>

#include "core/error.h"
#include "tokenizer/text.h"
#include "tokenizer/tokenizer.h"

namespace bq {

namespace {

using nlohmann::json;

constexpr const char* kLlama3Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

// Training text: plain English with the vocabulary of biomedical abstracts, questions and labels.
constexpr const char* kTrainingText = R"(Background: Chronic kidney disease affects more than ten percent of adults worldwide, and the risk of
cardiovascular events rises as the glomerular filtration rate falls. We asked whether early treatment with an
angiotensin receptor blocker slows the decline of kidney function in patients with type 2 diabetes.
Methods: In this randomized, double-blind, placebo-controlled trial, 1,248 patients were assigned to receive
losartan 50 mg daily or placebo for 36 months. The primary outcome was a doubling of the serum creatinine
concentration, end-stage renal disease, or death. Secondary outcomes included proteinuria, blood pressure and
hospitalization for heart failure.
Results: The primary outcome occurred in 327 patients in the losartan group and in 359 patients in the placebo
group (hazard ratio, 0.84; 95% confidence interval, 0.72 to 0.98; P = 0.02). Losartan reduced the level of
proteinuria by 35 percent. The incidence of adverse events was similar in the two groups, although
hyperkalemia was more common with losartan.
Conclusions: Losartan conferred significant renal benefits in patients with type 2 diabetes and nephropathy,
and it was generally well tolerated.

The tumor suppressor gene TP53 encodes a transcription factor that controls the cell cycle, DNA repair and
apoptosis. Mutations in TP53 are found in about half of all human cancers. Cells that evade apoptosis can
accumulate further genetic damage, sustain proliferative signaling and induce angiogenesis, which are among the
hallmarks of cancer. Inhibitors of the epidermal growth factor receptor (EGFR), such as gefitinib and erlotinib,
block a kinase that drives the growth of some lung tumors.

Cisplatin-induced nephrotoxicity was observed in 14 of 60 patients. Treatment with naloxone reversed the
respiratory depression caused by morphine. Chronic exposure to lithium may cause hypothyroidism and diabetes
insipidus. The combination of warfarin and aspirin increases the risk of bleeding, so the dose should be
adjusted and the international normalized ratio monitored. Ketoconazole inhibits CYP3A4 and raises the plasma
concentration of drugs that are metabolized by this enzyme.

Question: A 45-year-old woman presents with fatigue, weight gain and cold intolerance. Her thyroid-stimulating
hormone level is elevated. Which of the following is the most likely diagnosis?
A. Graves disease  B. Hashimoto thyroiditis  C. Subacute thyroiditis  D. Thyroid lymphoma  E. Pituitary adenoma
Answer: B

Question: Does vitamin D supplementation reduce the incidence of fractures in older adults? Answer yes, no or
maybe. Answer: no

Task: Identify the diseases mentioned in the sentence. Sentence: Patients with familial adenomatous polyposis
develop hundreds of colorectal adenomas. Output: familial adenomatous polyposis; colorectal adenomas.
Task: Classify the relation between the chemical and the gene. Sentence: @CHEMICAL$ is a potent inhibitor of
@GENE$. Label: CPR:4 (inhibitor). Other labels are CPR:3 (activator), CPR:5 (agonist), CPR:6 (antagonist) and
CPR:9 (substrate).

The study was approved by the institutional review board, and all participants gave written informed consent.
Data are presented as mean +/- standard deviation; groups were compared with the t-test or the chi-square test.
Infection with SARS-CoV-2 can cause pneumonia, acute respiratory distress syndrome and death, especially in
elderly patients with diabetes, hypertension or obesity. Vaccination reduced hospital admissions by 89%.
)";

constexpr const char* kChatTemplate =
    "{{ bos_token }}{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + "
    "'<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}";

const char* const kSpecials[] = {"<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
                                 "<|eot_id|>"};

// Plain BPE training: repeatedly merge the most frequent adjacent pair (ties: smallest ids) until `max_tokens`
// tokens exist or no pair occurs twice. Fills `tokens` (id -> byte-level string) and `merges` in rank order.
void train_bpe(int32_t max_tokens, std::vector<std::string>& tokens,
               std::vector<std::pair<int32_t, int32_t>>& merges) {
  for (int b = 0; b < 256; ++b) tokens.push_back(tok::byte_to_unicode(uint8_t(b)));
  std::map<std::string, int64_t> word_counts;
  std::string_view text = kTrainingText;
  std::vector<std::pair<size_t, size_t>> matches;
  tok::Regex(kLlama3Pattern).find_all(text, matches);
  for (auto [start, end] : matches) ++word_counts[std::string(text.substr(start, end - start))];
  std::vector<std::pair<std::vector<int32_t>, int64_t>> words;
  for (const auto& [word, count] : word_counts) {
    std::vector<int32_t> symbols;
    for (char c : word) symbols.push_back(uint8_t(c));
    words.emplace_back(std::move(symbols), count);
  }
  std::map<std::string, int32_t> id_of;
  for (int32_t id = 0; id < 256; ++id) id_of[tokens[size_t(id)]] = id;

  while (int32_t(tokens.size()) < max_tokens) {
    std::map<std::pair<int32_t, int32_t>, int64_t> pair_counts;
    for (const auto& [symbols, count] : words)
      for (size_t k = 0; k + 1 < symbols.size(); ++k) pair_counts[{symbols[k], symbols[k + 1]}] += count;
    std::pair<int32_t, int32_t> best{-1, -1};
    int64_t best_count = 1;
    for (const auto& [pair, count] : pair_counts)
      if (count > best_count) best = pair, best_count = count;  // std::map order makes ties go to the smallest
    if (best.first < 0) break;
    std::string merged = tokens[size_t(best.first)] + tokens[size_t(best.second)];
    auto [it, fresh] = id_of.emplace(merged, int32_t(tokens.size()));
    if (fresh) tokens.push_back(merged);
    merges.push_back(best);
    for (auto& [symbols, count] : words) {
      std::vector<int32_t> next;
      for (size_t k = 0; k < symbols.size(); ++k) {
        if (k + 1 < symbols.size() && symbols[k] == best.first && symbols[k + 1] == best.second) {
          next.push_back(it->second);
          ++k;
        } else {
          next.push_back(symbols[k]);
        }
      }
      symbols = std::move(next);
    }
  }
}

}  // namespace

SyntheticTokenizerFiles make_synthetic_tokenizer(int32_t vocab_size) {
  constexpr int32_t kNumSpecials = int32_t(std::size(kSpecials));
  if (vocab_size < 300) fail("synthetic tokenizer: vocab_size {} is below the minimum of 300", vocab_size);
  std::vector<std::string> tokens;
  std::vector<std::pair<int32_t, int32_t>> merges;
  train_bpe(vocab_size - kNumSpecials, tokens, merges);

  json vocab = json::object();
  for (size_t id = 0; id < tokens.size(); ++id) vocab[tokens[id]] = id;
  json merge_list = json::array();
  for (auto [a, b] : merges) merge_list.push_back({tokens[size_t(a)], tokens[size_t(b)]});

  json added = json::array(), added_decoder = json::object();
  for (int32_t id = int32_t(tokens.size()); id < vocab_size; ++id) {
    int32_t k = id - int32_t(tokens.size());
    std::string content = k < kNumSpecials ? kSpecials[k] : "<|reserved_" + std::to_string(k - kNumSpecials) + "|>";
    json token = {{"content", content}, {"single_word", false}, {"lstrip", false},
                  {"rstrip", false},    {"normalized", false},  {"special", true}};
    added_decoder[std::to_string(id)] = token;
    token["id"] = id;
    added.push_back(token);
  }
  int32_t bos = int32_t(tokens.size());

  json tokenizer = {
      {"version", "1.0"},
      {"truncation", nullptr},
      {"padding", nullptr},
      {"added_tokens", added},
      {"normalizer", nullptr},
      {"pre_tokenizer",
       {{"type", "Sequence"},
        {"pretokenizers",
         {{{"type", "Split"}, {"pattern", {{"Regex", kLlama3Pattern}}}, {"behavior", "Isolated"}, {"invert", false}},
          {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", false}}}}}},
      {"post_processor",
       {{"type", "TemplateProcessing"},
        {"single", {{{"SpecialToken", {{"id", kSpecials[0]}, {"type_id", 0}}}}, {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
        {"pair",
         {{{"SpecialToken", {{"id", kSpecials[0]}, {"type_id", 0}}}},
          {{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
          {{"SpecialToken", {{"id", kSpecials[0]}, {"type_id", 1}}}},
          {{"Sequence", {{"id", "B"}, {"type_id", 1}}}}}},
        {"special_tokens", {{kSpecials[0], {{"id", kSpecials[0]}, {"ids", {bos}}, {"tokens", {kSpecials[0]}}}}}}}},
      {"decoder", {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true}, {"use_regex", true}}},
      {"model",
       {{"type", "BPE"},
        {"dropout", nullptr},
        {"unk_token", nullptr},
        {"continuing_subword_prefix", nullptr},
        {"end_of_word_suffix", nullptr},
        {"fuse_unk", false},
        {"byte_fallback", false},
        {"ignore_merges", false},
        {"vocab", vocab},
        {"merges", merge_list}}}};
  json config = {{"bos_token", kSpecials[0]},
                 {"eos_token", "<|eot_id|>"},
                 {"chat_template", kChatTemplate},
                 {"clean_up_tokenization_spaces", false},
                 {"model_max_length", 8192},
                 {"tokenizer_class", "PreTrainedTokenizerFast"},
                 {"added_tokens_decoder", added_decoder}};
  return {tokenizer.dump(), config.dump()};
}

}  // namespace bq
