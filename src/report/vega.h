// Vega-Lite specifications of the report's figures, one per figure (its panels concatenated vertically).
#pragma once
#include <nlohmann/json.hpp>

#include "report/figures.h"

namespace bq::report {

nlohmann::json vega_lite_spec(const Figure& figure);

}  // namespace bq::report
