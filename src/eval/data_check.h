// `biomedq data check`: what each task's data files hold, per split.
#pragma once
#include <nlohmann/json.hpp>

#include <string>
#include <vector>

#include "eval/task.h"

namespace bq::eval {

// For every task and every split file present: examples (sentences for ner), entities (ner), the label
// distribution (mlc: documents per label and "(no label)"), skipped malformed rows and the file's sha256.
// Malformed data throws Error (file:line) unless lenient.
nlohmann::ordered_json data_check(const std::vector<TaskConfig>& tasks, const fs::path& data_dir, bool lenient);
std::string format_data_check(const nlohmann::ordered_json& report);

}  // namespace bq::eval
