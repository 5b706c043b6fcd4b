// What `eval` prints when it ends, in the spirit of lm-eval's table: per task the primary metric with its 95%
// interval, examples scored and unparsed rate; then latency and the memory figures of the run.
#pragma once
#include <nlohmann/json.hpp>

#include <string>

namespace bq::eval {

std::string format_run_summary(const nlohmann::json& results);

}  // namespace bq::eval
