// Prompt construction: biomedq's own templates (tasks/*.yaml) with seeded few-shot examples, or the data
// directory's benchmark prompt files.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "eval/task.h"

namespace bq::eval {

// The first k of a seeded Fisher-Yates shuffle of 0..n-1 (mt19937_64, draw % range, so it is the same on every
// platform). A larger k extends a smaller one's selection.
std::vector<size_t> seeded_sample(size_t n, size_t k, uint64_t seed);

// Replaces {field} with the example's field, {field|join} with a Python list literal field joined by spaces,
// {options|compact} with "A:text\n B:text…" (the benchmark's five-shot layout). Other text, including braces
// of JSON examples, is left alone; an unknown {identifier} is an Error naming `where`.
std::string render_input(const std::string& tpl, const Example& ex, const std::string& where);

// The gold answer written the way the prompts ask for it, by the task's answer extractor (parse.h).
std::string gold_answer_text(const TaskConfig& task, const Example& ex);
// The writers the answer extractors use: the sentence with <span> around each entity; a one-line JSON object
// label -> 0/1 in the task's label order; the one label.
std::string write_spans_answer(const TaskConfig& task, const Example& ex);
std::string write_multilabel_answer(const TaskConfig& task, const Example& ex);
std::string write_label_answer(const TaskConfig& task, const Example& ex);

// biomedq's own prompt: task.instruction_prompt (or cot_prompt) with {input} and {examples} filled in.
std::string build_own_prompt(const TaskConfig& task, const Example& ex, const std::vector<Example>& shots, bool cot);

// The benchmark's prompt_{zeroshot,oneshot,fiveshot}.txt for shots 0/1/5, BOM stripped and CRLF made LF.
std::string load_benchmark_prompt(const TaskConfig& task, const fs::path& data_dir, int shots);
fs::path benchmark_prompt_path(const TaskConfig& task, const fs::path& data_dir, int shots);
// The file's {Input} (or {INPUT}) replaced by the example rendered with task.benchmark_input for that file
// ("zeroshot"/"oneshot"/"fiveshot", else "default", else task.input_template).
std::string build_benchmark_prompt(const TaskConfig& task, const std::string& prompt_file_text, int shots,
                                   const Example& ex);

}  // namespace bq::eval
