// End-to-end: the biomedq binary as users and other issues call it.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "backend/cpu/cpu_forward.h"
#include "core/files.h"
#include "core/npy.h"
#include "test_util.h"

namespace bq {
namespace {

std::string bin() { return test::biomedq_binary().string(); }

TEST(Cli, SynthGenerateTokenizeLogits) {
  auto dir = test::temp_dir("cli");
  std::string out;
  ASSERT_EQ(test::run_command(bin() + " synth --preset tiny --out " + (dir / "m").string(), &out), 0) << out;
  for (auto f : {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"})
    EXPECT_TRUE(std::filesystem::exists(dir / "m" / f)) << f;

  ASSERT_EQ(test::run_command(bin() + " generate --model " + (dir / "m").string() +
                                  " --prompt 'Aspirin inhibits' --max-new-tokens 8 2>/dev/null", &out), 0) << out;
  EXPECT_FALSE(out.empty());
  ASSERT_EQ(test::run_command(bin() + " generate --chat --model " + (dir / "m").string() +
                                  " --prompt 'Hi' --max-new-tokens 4 --temperature 0.8 --seed 3", &out), 0) << out;

  ASSERT_EQ(test::run_command(bin() + " tokenize --model " + (dir / "m").string() + " --text 'the cell'", &out), 0) << out;
  auto ids = nlohmann::json::parse(out).get<std::vector<int>>();
  ASSERT_FALSE(ids.empty());

  std::string ids_arg;
  for (int id : ids) {  // two appends: `"," + std::to_string(id)` trips gcc 12's false -Wrestrict
    if (!ids_arg.empty()) ids_arg += ',';
    ids_arg += std::to_string(id);
  }
  auto npy = dir / "l.npy";
  ASSERT_EQ(test::run_command(bin() + " logits --model " + (dir / "m").string() + " --ids " + ids_arg + " --out " +
                                  npy.string(), &out), 0) << out;
  NpyArray a = read_npy(npy);
  ASSERT_EQ(a.shape.size(), 2u);
  EXPECT_EQ(a.shape[0], int64_t(ids.size()));
  // The file holds exactly what the engine computes.
  Model m = load_model(dir / "m");
  EXPECT_EQ(a.shape[1], m.cfg.vocab);
  CpuForward fwd(m);
  int s = fwd.open_sequence(int(ids.size()));
  ForwardBatch b;
  for (size_t i = 0; i < ids.size(); ++i) b.tokens.push_back(ids[i]), b.seq.push_back(s), b.logit_rows.push_back(int(i));
  std::vector<float> ref(a.data.size());
  fwd.run(b, ref.data());
  EXPECT_EQ(a.data, ref);
}

TEST(Cli, BadInputGivesOneLineErrorAndNonZeroExit) {
  auto dir = test::temp_dir("clibad");
  std::string out;
  EXPECT_EQ(test::run_command(bin() + " generate --model " + (dir / "nothing").string() + " --prompt x", &out), 1);
  EXPECT_NE(out.find("biomedq: error:"), std::string::npos) << out;
  EXPECT_NE(out.find("config.json"), std::string::npos) << out;

  ASSERT_EQ(test::run_command(bin() + " synth --preset tiny --out " + (dir / "m").string(), &out), 0) << out;
  EXPECT_EQ(test::run_command(bin() + " logits --model " + (dir / "m").string() + " --ids 1,x --out " +
                                  (dir / "a.npy").string(), &out), 1);
  EXPECT_NE(out.find("'x' is not a token id"), std::string::npos) << out;
  EXPECT_FALSE(std::filesystem::exists(dir / "a.npy"));  // nothing half-written
  EXPECT_EQ(test::run_command(bin() + " logits --model " + (dir / "m").string() + " --ids 1,999999 --out " +
                                  (dir / "a.npy").string(), &out), 1);
  EXPECT_NE(out.find("outside the vocabulary"), std::string::npos) << out;
  // Invalid UTF-8 in a prompt.
  EXPECT_EQ(test::run_command(bin() + " generate --model " + (dir / "m").string() + " --prompt \"$(printf '\\377\\376')\"", &out), 1);
  EXPECT_NE(out.find("UTF-8"), std::string::npos) << out;
  EXPECT_EQ(test::run_command(bin() + " synth --preset nonesuch --out " + (dir / "z").string(), &out), 1);
  EXPECT_NE(out.find("unknown preset"), std::string::npos) << out;
}

}  // namespace
}  // namespace bq
