#include "cli/commands.h"

namespace bq::cli {

void register_model_commands(CLI::App&) {}

}  // namespace bq::cli
