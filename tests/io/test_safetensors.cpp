#include <gtest/gtest.h>

#include <cstring>
#include <fstream>

#include "core/error.h"
#include "io/safetensors.h"
#include "model/model.h"
#include "test_util.h"

namespace bq {
namespace {

std::string header_file(const std::string& header, size_t body_bytes, uint64_t declared_len = 0) {
  std::string s(8, '\0');
  uint64_t len = declared_len ? declared_len : header.size();
  std::memcpy(s.data(), &len, 8);
  s += header;
  s.append(body_bytes, '\x01');
  return s;
}

std::string error_of(const std::string& bytes) {
  try {
    parse_safetensors(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), "x.safetensors");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(Safetensors, RoundTrip) {
  auto dir = test::temp_dir("st");
  std::vector<float> a = {1, 2, 3, 4, 5, 6};
  std::vector<uint16_t> b = {0x3f80, 0x4000};
  write_safetensors(dir / "t.safetensors", {{"a", DType::F32, {2, 3}, a.data(), 24}, {"b", DType::BF16, {2}, b.data(), 4}});
  MappedFile f(dir / "t.safetensors");
  auto ts = parse_safetensors(f.data(), f.size(), "t");
  ASSERT_EQ(ts.size(), 2u);
  const TensorInfo& ta = ts[0].name == "a" ? ts[0] : ts[1];
  EXPECT_EQ(ta.shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(std::memcmp(ta.data, a.data(), 24), 0);
  EXPECT_EQ((8 + f.size() - 24 - 4) % 8, 0u);  // header padded to 8 bytes
}

TEST(Safetensors, RejectsCorruptHeaders) {
  EXPECT_NE(error_of("abc").find("not a safetensors file"), std::string::npos);
  EXPECT_NE(error_of(header_file("{}", 0, 1ull << 40)).find("implausibly large"), std::string::npos);
  EXPECT_NE(error_of(header_file("{}", 0, 1000)).find("exceeds the file size"), std::string::npos);
  EXPECT_NE(error_of(header_file("{\"a\": ", 0)).find("not valid JSON"), std::string::npos);
  EXPECT_NE(error_of(header_file("[1]", 0)).find("not a JSON object"), std::string::npos);
  auto t = [](const std::string& entry, size_t body) { return error_of(header_file("{\"w\": " + entry + "}", body)); };
  EXPECT_NE(t(R"({"dtype":"Q7","shape":[1],"data_offsets":[0,4]})", 4).find("unsupported dtype"), std::string::npos);
  EXPECT_NE(t(R"({"dtype":"F32","shape":[-1],"data_offsets":[0,4]})", 4).find("non-negative"), std::string::npos);
  EXPECT_NE(t(R"({"dtype":"F32","shape":[2],"data_offsets":[0,8]})", 4).find("outside the data section"), std::string::npos);
  EXPECT_NE(t(R"({"dtype":"F32","shape":[3],"data_offsets":[0,8]})", 12).find("needs 12"), std::string::npos);
  EXPECT_NE(t(R"({"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,8]})", 8).find("overflows"), std::string::npos);
  EXPECT_NE(t(R"({"dtype":"F32","shape":[2]})", 8).find("missing data_offsets"), std::string::npos);
  std::string two = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})";
  EXPECT_NE(error_of(header_file(two, 12)).find("overlap"), std::string::npos);
  // Every error names the file.
  EXPECT_NE(t(R"({"dtype":"F32","shape":[2]})", 8).find("x.safetensors"), std::string::npos);
}

// A header of 200,000 tensors reads in linear time (a reader that searched the header at each closed entry would
// not finish within the test's timeout), and a name given twice among them is still found; names with escapes are
// compared as the text they stand for.
TEST(Safetensors, ManyTensorsAndDuplicatesAmongThem) {
  std::string header = "{";
  for (int i = 0; i < 200000; ++i)
    header += (i ? "," : "") + ("\"t" + std::to_string(i) + "\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[" +
                                std::to_string(4 * i) + "," + std::to_string(4 * i + 4) + "]}");
  std::string bytes = header_file(header + "}", 4 * 200000);
  auto ts = parse_safetensors(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), "big.safetensors");
  EXPECT_EQ(ts.size(), 200000u);
  const std::string entry = R"({"dtype":"F32","shape":[1],"data_offsets":[0,4]})";
  EXPECT_NE(error_of(header_file(header + ",\"t\\u0031\":" + entry + "}", 4 * 200000)).find("tensor 't1' appears twice"),
            std::string::npos);
  // Nesting is bounded inside entries too.
  EXPECT_NE(error_of(header_file("{\"m\":" + std::string(150, '[') + std::string(150, ']') + "}", 0))
                .find("x.safetensors: header nested more than 100 deep"),
            std::string::npos);
}

ModelConfig tiny() {
  ModelConfig c = preset_config("tiny");
  return c;
}

TEST(LoadModel, ClearErrorsForBadCheckpoints) {
  auto dir = test::temp_dir("badck");
  auto expect_error = [&](const std::string& needle) {
    try {
      load_model(dir);
      ADD_FAILURE() << "expected an error containing '" << needle << "'";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  expect_error("config.json");  // missing entirely
  save_synthetic_checkpoint(synthesize_model(tiny(), 1), dir);
  // Unknown architecture.
  auto cfg = nlohmann::json::parse(read_file(dir / "config.json"));
  auto bad = cfg;
  bad["model_type"] = "gpt_neox";
  write_file_atomic(dir / "config.json", bad.dump());
  expect_error("unknown model_type 'gpt_neox'");
  // A shape the config disagrees with.
  bad = cfg;
  bad["intermediate_size"] = 200;
  write_file_atomic(dir / "config.json", bad.dump());
  expect_error("has shape [172, 64], expected [200, 64]");
  write_file_atomic(dir / "config.json", cfg.dump());
  EXPECT_NO_THROW(load_model(dir));
  // Truncated weights file.
  std::string w = read_file(dir / "model.safetensors");
  write_file_atomic(dir / "model.safetensors", w.substr(0, w.size() - 100));
  expect_error("truncated");
  // Malformed JSON config.
  write_file_atomic(dir / "config.json", "{\"model_type\": ");
  expect_error("config.json: invalid JSON");
}

TEST(LoadModel, MissingTensorIsNamed) {
  auto dir = test::temp_dir("missing");
  Model m = synthesize_model(tiny(), 2);
  save_synthetic_checkpoint(m, dir);
  MappedFile f(dir / "model.safetensors");
  auto ts = parse_safetensors(f.data(), f.size(), "m");
  std::vector<TensorToWrite> keep;
  for (auto& t : ts)
    if (t.name != "model.layers.1.mlp.up_proj.weight") keep.push_back({t.name, t.dtype, t.shape, t.data, t.nbytes});
  write_safetensors(dir / "model2.safetensors", keep);
  std::filesystem::rename(dir / "model2.safetensors", dir / "model.safetensors");
  try {
    load_model(dir);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("lacks tensor 'model.layers.1.mlp.up_proj.weight'"), std::string::npos);
  }
}

TEST(ModelConfig, BothRopeSpellingsAgree) {
  ModelConfig c = preset_config("llama-3.1-8b");
  for (bool v5 : {false, true}) {
    ModelConfig r = parse_model_config(model_config_to_json(c, v5), "config.json");
    EXPECT_EQ(r.rope_scaling, RopeScaling::Llama3);
    EXPECT_EQ(r.rope_theta, 500000.0);
    EXPECT_EQ(r.rope_factor, 8.0);
    EXPECT_EQ(r.eos_ids, c.eos_ids);
    EXPECT_EQ(rope_inv_freq(r), rope_inv_freq(c));
  }
  // Llama 3 scaling: the highest frequency is kept, the lowest divided by the factor.
  ModelConfig plain = c;
  plain.rope_scaling = RopeScaling::None;
  auto a = rope_inv_freq(c), b = rope_inv_freq(plain);
  EXPECT_EQ(a.front(), b.front());
  EXPECT_DOUBLE_EQ(a.back(), b.back() / 8.0);
}

}  // namespace
}  // namespace bq
