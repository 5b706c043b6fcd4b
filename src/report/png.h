// PNG images of the report's figures, drawn with cairo: grouped bars with error bars, points joined by lines, and
// forest plots, each figure's panels stacked vertically.
#pragma once
#include <string>

#include "report/figures.h"

namespace bq::report {

// The PNG file's bytes. Errors: cairo failing to draw or encode.
std::string render_png(const Figure& figure);

}  // namespace bq::report
