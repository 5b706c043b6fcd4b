// Shared helpers for the test suite: where the source tree, the CLI binary and ../shared are.
#pragma once
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <functional>
#include <string>
#include <sys/wait.h>
#include <unistd.h>

#include "core/error.h"

namespace bq::test {

// The message of the bq::Error that f throws, or "" when it throws none.
inline std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const bq::Error& e) {
    return e.what();
  }
  return "";
}

inline std::filesystem::path source_dir() { return BIOMEDQ_SOURCE_DIR; }
inline std::filesystem::path biomedq_binary() { return BIOMEDQ_BINARY; }

// ../shared beside the checkout (or $BIOMEDQ_SHARED); empty when absent.
inline std::filesystem::path shared_dir() {
  if (const char* e = std::getenv("BIOMEDQ_SHARED"); e && *e) return e;
  auto p = source_dir().parent_path() / "shared";
  return std::filesystem::exists(p) ? p : std::filesystem::path();
}

// A fresh, empty temporary folder for one test.
inline std::filesystem::path temp_dir(const std::string& name) {
  auto p = std::filesystem::temp_directory_path() / ("biomedq-test-" + name + "-" + std::to_string(::getpid()));
  std::filesystem::remove_all(p);
  std::filesystem::create_directories(p);
  return p;
}

// Runs a shell command, returning its exit status and capturing stdout+stderr.
inline int run_command(const std::string& cmd, std::string* output = nullptr) {
  std::string full = cmd + " 2>&1";
  FILE* f = ::popen(full.c_str(), "r");
  if (!f) return -1;
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
  int st = ::pclose(f);
  if (output) *output = out;
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

// A yes/no/maybe QA task file (task "tiny", data folder Tiny with train.tsv and test.tsv: id, text, label), for
// evaluation tests that need a task small enough to reason about by hand.
inline const char* const kTinyQaTaskYaml = R"(name: tiny
type: qa
parser: label
primary_metric: accuracy
data_folder: Tiny
format: tsv
splits: {train: train.tsv, test: test.tsv}
id_field: id
label_field: label
labels: ["yes", "no", "maybe"]
input_template: "{text}"
prompts:
  instruction: "Answer yes, no or maybe.\n{examples}Q: {input}\nA:"
  cot: "Think, then write Answer: yes/no/maybe.\n{examples}Q: {input}\n"
  example: "Q: {input}\nA: {answer}\n"
)";

}  // namespace bq::test

// Skips with a message saying exactly what is missing.
#define BQ_REQUIRE_SHARED(sub)                                                               \
  do {                                                                                       \
    if (bq::test::shared_dir().empty() || !std::filesystem::exists(bq::test::shared_dir() / (sub))) \
      GTEST_SKIP() << "../shared/" << (sub) << " not present: skipping";                     \
  } while (0)
