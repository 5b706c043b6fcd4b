// `biomedq tokenize` and `biomedq detokenize`: the tokenizer of a model folder, from the command line.
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "core/error.h"
#include "core/files.h"
#include "tokenizer/tokenizer.h"

namespace bq::cli {

namespace {

std::vector<int32_t> parse_ids(const std::string& list) {
  std::vector<int32_t> ids;
  size_t pos = 0;
  while (pos <= list.size()) {
    size_t comma = list.find(',', pos);
    std::string item = list.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    size_t used = 0;
    long long value = -1;
    try {
      value = std::stoll(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used == 0 || used != item.size() || value < 0 || value > INT32_MAX)
      fail("--ids: \"{}\" is not a token id (expected a comma-separated list like 1,2,3)", item);
    ids.push_back(int32_t(value));
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  return ids;
}

}  // namespace

void register_tokenizer_commands(CLI::App& app) {
  struct TokenizeOptions {
    std::string model, text, file;
    bool add_special = false;
  };
  auto tokenize_opts = std::make_shared<TokenizeOptions>();
  CLI::App* tokenize = app.add_subcommand("tokenize", "Print the token ids of a text as a JSON array");
  tokenize->add_option("--model", tokenize_opts->model, "Folder with tokenizer.json (and tokenizer_config.json)")
      ->required();
  auto* text_opt = tokenize->add_option("--text", tokenize_opts->text, "Text to tokenize");
  auto* file_opt = tokenize->add_option("--file", tokenize_opts->file, "File whose contents to tokenize");
  text_opt->excludes(file_opt);
  tokenize->add_flag("--add-special", tokenize_opts->add_special, "Add BOS/EOS as the tokenizer's template says");
  tokenize->callback([tokenize_opts, text_opt, file_opt] {
    if (!*text_opt && !*file_opt) fail("tokenize: give --text or --file");
    Tokenizer tokenizer = Tokenizer::load(tokenize_opts->model);
    std::string text = *file_opt ? read_file(tokenize_opts->file) : tokenize_opts->text;
    std::vector<int32_t> ids = tokenizer.encode(text, tokenize_opts->add_special);
    std::string out = "[";
    for (size_t k = 0; k < ids.size(); ++k) out += (k ? "," : "") + std::to_string(ids[k]);
    out += "]\n";
    std::fputs(out.c_str(), stdout);
  });

  struct DetokenizeOptions {
    std::string model, ids;
    bool skip_special = false;
  };
  auto detokenize_opts = std::make_shared<DetokenizeOptions>();
  CLI::App* detokenize = app.add_subcommand("detokenize", "Print the text of comma-separated token ids");
  detokenize->add_option("--model", detokenize_opts->model, "Folder with tokenizer.json (and tokenizer_config.json)")
      ->required();
  detokenize->add_option("--ids", detokenize_opts->ids, "Token ids, e.g. 1,2,3")->required();
  detokenize->add_flag("--skip-special", detokenize_opts->skip_special, "Leave special tokens out");
  detokenize->callback([detokenize_opts] {
    Tokenizer tokenizer = Tokenizer::load(detokenize_opts->model);
    std::vector<int32_t> ids = parse_ids(detokenize_opts->ids);
    std::string text = tokenizer.decode(ids, detokenize_opts->skip_special);
    std::fwrite(text.data(), 1, text.size(), stdout);
    std::fputc('\n', stdout);
  });
}

}  // namespace bq::cli
