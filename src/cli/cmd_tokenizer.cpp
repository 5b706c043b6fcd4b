#include "cli/commands.h"

namespace bq::cli {

void register_tokenizer_commands(CLI::App&) {}

}  // namespace bq::cli
