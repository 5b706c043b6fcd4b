// Issue 14, hostile input: each reproduction ends in one clear error naming the file (or correct behaviour), in
// bounded time and memory. Grouped by the issue's items.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>

#include "core/files.h"
#include "core/json.h"
#include "core/limits.h"
#include "core/npy.h"
#include "eval/readers.h"
#include "eval/task.h"
#include "generate/sampler.h"
#include "io/safetensors.h"
#include "model/config.h"
#include "model/model.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/jinja.h"
#include "test_util.h"

namespace bq {
namespace {

using test::error_of;

std::string repeat(const std::string& s, size_t n) {
  std::string out;
  out.reserve(s.size() * n);
  for (size_t i = 0; i < n; ++i) out += s;
  return out;
}

// The error of rendering `source` (named evil.jinja), which must come within a few seconds.
std::string jinja_error(const std::string& source) {
  auto t0 = std::chrono::steady_clock::now();
  std::string e = error_of([&] { (void)JinjaTemplate(source, "evil.jinja").render(nlohmann::ordered_json::object()); });
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(20)) << source.substr(0, 80);
  EXPECT_NE(e.find("evil.jinja"), std::string::npos) << e;
  return e;
}

// ---- 1. Jinja chat templates

TEST(Hostile, JinjaDeepParenthesesAndBracketsAreRefused) {
  EXPECT_NE(jinja_error("{{ " + repeat("(", 150) + "1" + repeat(")", 150) + " }}").find("nested more than 100 deep"),
            std::string::npos);
  // The issue's 10,000 parentheses and 200,000 brackets: too many tokens for one tag long before the stack fills.
  EXPECT_NE(jinja_error("{{ " + repeat("(", 10000) + "1" + repeat(")", 10000) + " }}").find("tokens in one tag"),
            std::string::npos);
  EXPECT_NE(jinja_error("{{ " + repeat("[", 200000) + " }}").find("tokens in one tag"), std::string::npos);
  EXPECT_NE(jinja_error("{{ " + repeat("- ", 900) + "1 }}").find("nested more than"), std::string::npos);
  EXPECT_NE(jinja_error("{{ " + repeat("not ", 900) + "1 }}").find("nested more than"), std::string::npos);
}

TEST(Hostile, JinjaDeepStatementsAreRefused) {
  EXPECT_NE(jinja_error(repeat("{% if true %}", 5000) + "x" + repeat("{% endif %}", 5000)).find("nested more than"),
            std::string::npos);
  // The issue's 50,000: the template is refused by its size first.
  EXPECT_NE(jinja_error(repeat("{% if true %}", 50000) + repeat("{% endif %}", 50000)).find("larger than"),
            std::string::npos);
}

TEST(Hostile, JinjaRunawayMacroRecursionIsRefused) {
  std::string deep = "{% macro f(n) %}{% if n > 0 %}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(10000) }}";
  EXPECT_NE(jinja_error(deep).find("while rendering"), std::string::npos);
  EXPECT_NE(jinja_error("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}").find("while rendering"), std::string::npos);
  // Modest recursion still works.
  std::string ok = "{% macro f(n) %}{% if n > 0 %}{{ n }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(20) }}";
  EXPECT_EQ(JinjaTemplate(ok).render(nlohmann::ordered_json::object()).substr(0, 6), "201918");
}

TEST(Hostile, JinjaMemoryBlowUpsAreRefused) {
  EXPECT_NE(jinja_error("{{ range(-9223372036854775807, 9223372036854775807) }}").find("range too big"),
            std::string::npos);
  EXPECT_NE(jinja_error("{{ range(0, 9223372036854775807, 3) | length }}").find("range too big"), std::string::npos);
  EXPECT_NE(jinja_error("{{ 'abcdefgh' * 10000000000 }}").find("a string of more than"), std::string::npos);
  EXPECT_NE(jinja_error("{% set ns = namespace(s='ab') %}{% for i in range(60) %}{% set ns.s = ns.s ~ ns.s %}"
                        "{% endfor %}{{ ns.s | length }}")
                .find("more than 8 MiB"),
            std::string::npos);
  EXPECT_NE(jinja_error("{% set ns = namespace(s='ab') %}{% for i in range(60) %}{% set ns.s = ns.s + ns.s %}"
                        "{% endfor %}")
                .find("more than 8 MiB"),
            std::string::npos);
  EXPECT_NE(jinja_error("{{ [1, 2, 3] * 10000000 }}").find("more than"), std::string::npos);
  EXPECT_NE(jinja_error("{{ 'x' | indent(100000000000) }}").find("a string of more than"), std::string::npos);
  EXPECT_NE(jinja_error("{{ ('x' * 1000000) | replace('x', 'yyyyyyyyyyyyyyyyyyyyyyyyy') }}").find("more than"),
            std::string::npos);
  EXPECT_NE(jinja_error("{{ [1] | tojson(indent=100000000) }}").find("more than"), std::string::npos);
  // A list of large strings is bounded by what it holds, a loop of them by what all lists hold together.
  EXPECT_NE(jinja_error("{% set s = 'x' * 4000000 %}{{ [s, s, s] | length }}").find("a list or dict of more than"),
            std::string::npos);
  EXPECT_NE(jinja_error("{% set s = 'x' * 4000000 %}{% set ns = namespace(l=[]) %}{% for i in range(1000) %}"
                        "{% set ns.l = ns.l + [[s]] %}{% endfor %}")
                .find("more than"),
            std::string::npos);
}

TEST(Hostile, JinjaHangsAreBoundedOrInstant) {
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(JinjaTemplate("[{{ '' * 10**15 }}]").render(nlohmann::ordered_json::object()), "[]");
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(1));
  EXPECT_NE(jinja_error("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}")
                .find("loop iterations"),
            std::string::npos);
}

TEST(Hostile, JinjaIntegerOverflowAndCyclesAreErrors) {
  EXPECT_NE(jinja_error("{{ 9223372036854775807 + 1 }}").find("integer overflow"), std::string::npos);
  EXPECT_NE(jinja_error("{{ 3037000500 * 3037000500 }}").find("integer overflow"), std::string::npos);
  EXPECT_NE(jinja_error("{{ (-9223372036854775807 - 1) // -1 }}").find("integer overflow"), std::string::npos);
  EXPECT_NE(jinja_error("{{ -(-9223372036854775807 - 1) }}").find("integer overflow"), std::string::npos);
  EXPECT_NE(jinja_error("{% set ns = namespace() %}{% set ns.x = ns %}").find("cannot hold a namespace"),
            std::string::npos);
  EXPECT_NE(jinja_error("{% set ns = namespace(x=[]) %}{% for i in range(1000) %}{% set ns.x = [ns.x] %}"
                        "{% endfor %}")
                .find("nested more than"),
            std::string::npos);
  // int of a float beyond int64 is not undefined behaviour: the fallback, as for any unconvertible value.
  EXPECT_EQ(JinjaTemplate("{{ 1e300 | int }}").render(nlohmann::ordered_json::object()), "0");
}

TEST(Hostile, JinjaDeepContextIsRefused) {
  nlohmann::ordered_json deep = nullptr;
  for (int i = 0; i < 1000; ++i) deep = nlohmann::ordered_json::array({deep});
  std::string e = error_of([&] { (void)JinjaTemplate("{{ x }}", "t.jinja").render({{"x", deep}}); });
  EXPECT_NE(e.find("t.jinja"), std::string::npos) << e;
  EXPECT_NE(e.find("nested more than"), std::string::npos) << e;
}

TEST(Hostile, ChatTemplateErrorsNameTheTemplateFile) {
  ChatTemplateOptions opt;
  opt.origin = "/models/x/tokenizer_config.json";
  std::string e = error_of([&] { (void)apply_chat_template("{{ raise_exception('no') }}", {{"user", "hi"}}, opt); });
  EXPECT_NE(e.find("/models/x/tokenizer_config.json:1:"), std::string::npos) << e;
}

// ---- 2. recursive readers

TEST(Hostile, DeepPythonLiteralIsRefused) {
  for (size_t depth : {5000, 20000, 200000}) {
    std::string e = error_of([&] { eval::parse_python_literal(repeat("[", depth) + repeat("]", depth), "q.tsv:7"); });
    EXPECT_NE(e.find("q.tsv:7"), std::string::npos) << e;
    EXPECT_NE(e.find("nested too deep"), std::string::npos) << e;
  }
  std::string dicts = repeat("{'a': ", 20000) + "1" + repeat("}", 20000);
  std::string e = error_of([&] { eval::parse_python_literal(dicts, "q"); });
  EXPECT_NE(e.find("nested too deep"), std::string::npos) << e;
  EXPECT_EQ(eval::parse_python_literal("[[[1]]]").dump(), "[[[1]]]");
  // Found by fuzzing: escapes without a UTF-8 form, and keys whose JSON text is not UTF-8, broke dump() later.
  EXPECT_NE(error_of([] { eval::parse_python_literal("'\\udc00'", "q"); }).find("not a Unicode character"),
            std::string::npos);
  EXPECT_NE(error_of([] { eval::parse_python_literal("'\\U00110000'", "q"); }).find("not a Unicode character"),
            std::string::npos);
  EXPECT_EQ(eval::parse_python_literal("{(1, '\xff'): 2}").begin().key(), "[1,\"\xEF\xBF\xBD\"]");
}

TEST(Hostile, DeepJsonIsRefused) {
  std::string deep = repeat("[", 100000) + repeat("]", 100000);
  std::string e = error_of([&] { (void)parse_json(deep, "tokenizer.json"); });
  EXPECT_NE(e.find("tokenizer.json: JSON nested more than"), std::string::npos) << e;
  EXPECT_EQ(parse_json("{\"a\": [1, {\"b\": 2}]}", "x").dump(), "{\"a\":[1,{\"b\":2}]}");
  e = error_of([&] { (void)parse_json("{\"a\": ", "x.json"); });
  EXPECT_NE(e.find("x.json: invalid JSON"), std::string::npos) << e;
}

// ---- 3. config.json against the checkpoint, 4. config values and non-finite logits

std::filesystem::path synth_tiny(const std::string& name) {
  auto dir = test::temp_dir(name);
  std::string out;
  EXPECT_EQ(test::run_command(test::biomedq_binary().string() + " synth --preset tiny --out " + (dir / "m").string(),
                              &out),
            0)
      << out;
  return dir / "m";
}

void edit_config(const std::filesystem::path& model, const std::function<void(nlohmann::json&)>& edit) {
  auto j = nlohmann::json::parse(read_file(model / "config.json"));
  edit(j);
  write_file_atomic(model / "config.json", j.dump(2));
}

TEST(Hostile, ConfigLayerCountMustMatchTheCheckpoint) {
  auto m = synth_tiny("cfglayers");
  edit_config(m, [](nlohmann::json& j) { j["num_hidden_layers"] = 1073741824; });
  auto t0 = std::chrono::steady_clock::now();
  std::string e = error_of([&] { (void)load_model(m); });
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(5));
  EXPECT_NE(e.find("config.json: num_hidden_layers is 1073741824 but the checkpoint's tensors hold 2 layers"),
            std::string::npos)
      << e;
  edit_config(m, [](nlohmann::json& j) { j["num_hidden_layers"] = 1; });
  e = error_of([&] { (void)load_model(m); });
  EXPECT_NE(e.find("belongs to layer 1"), std::string::npos) << e;
  EXPECT_NE(e.find("model.safetensors"), std::string::npos) << e;
  edit_config(m, [](nlohmann::json& j) { j["num_hidden_layers"] = 2, j["hidden_size"] = 128; });
  e = error_of([&] { (void)load_model(m); });
  EXPECT_NE(e.find("disagree with"), std::string::npos) << e;
}

TEST(Hostile, ConfigValuesAreValidatedWithTheKeyNamed) {
  auto err = [](const nlohmann::json& patch) {
    nlohmann::json j = model_config_to_json(preset_config("tiny"));
    j.merge_patch(patch);
    return error_of([&] { (void)parse_model_config(j, "m/config.json"); });
  };
  EXPECT_NE(err({{"model_type", 5}}).find("m/config.json: 'model_type' must be a string, not number"),
            std::string::npos);
  EXPECT_NE(err({{"rope_theta", 0}}).find("m/config.json: 'rope_theta' is 0"), std::string::npos);
  EXPECT_NE(err({{"rope_theta", -1}}).find("'rope_theta' is -1"), std::string::npos);
  EXPECT_NE(err({{"rms_norm_eps", -1}}).find("'rms_norm_eps' is -1"), std::string::npos);
  EXPECT_NE(err({{"tie_word_embeddings", "yes"}}).find("'tie_word_embeddings' must be true or false"),
            std::string::npos);
  EXPECT_NE(err({{"torch_dtype", 16}}).find("'torch_dtype' must be a string"), std::string::npos);
  EXPECT_NE(err({{"eos_token_id", 1e12}}).find("'eos_token_id' must hold token ids"), std::string::npos);
  EXPECT_NE(err({{"rope_scaling", {{"rope_type", "llama3"}, {"low_freq_factor", 4}, {"high_freq_factor", 4}}}})
                .find("high_freq_factor"),
            std::string::npos);
  EXPECT_NE(err({{"num_attention_heads", 1 << 20}, {"head_dim", 1 << 20}}).find("implausibly large"),
            std::string::npos);
}

TEST(Hostile, NonFiniteLogitsStopGreedyAndSampling) {
  std::vector<float> v = {0.5f, 2.0f, std::numeric_limits<float>::quiet_NaN(), 1.0f};
  EXPECT_NE(error_of([&] { argmax(v); }).find("logit 2 of 4 is nan"), std::string::npos);
  v[2] = std::numeric_limits<float>::infinity();
  SamplingOptions opt;
  opt.temperature = 0.7f;
  Sampler s(opt);
  EXPECT_NE(error_of([&] { s.next(v); }).find("logit 2 of 4 is inf"), std::string::npos);
  v[2] = 3.0f;
  EXPECT_EQ(argmax(v), 2);
}

// Overwrites the first value of a BF16 tensor of a synthetic checkpoint.
void poison(const std::filesystem::path& model, const std::string& tensor, uint16_t bf16) {
  std::string bytes = read_file(model / "model.safetensors");
  auto ts = parse_safetensors(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), "m");
  for (auto& t : ts)
    if (t.name == tensor)
      std::memcpy(bytes.data() + (t.data - reinterpret_cast<const uint8_t*>(bytes.data())), &bf16, 2);
  write_file_atomic(model / "model.safetensors", bytes);
}

TEST(Hostile, NaNWeightsMakeGenerateFailNotAnswer) {
  std::string bin = test::biomedq_binary().string(), out;
  for (auto [tensor, value] : {std::pair<const char*, uint16_t>{"lm_head.weight", 0x7fc0},
                               {"model.layers.0.input_layernorm.weight", 0x7f80}}) {
    auto m = synth_tiny("nan");
    poison(m, tensor, value);
    // Every token's logits are non-finite (embedding NaN would only touch its own token).
    EXPECT_EQ(test::run_command(bin + " generate --model " + m.string() + " --prompt 'Aspirin' --max-new-tokens 4",
                                &out),
              1)
        << tensor << out;
    EXPECT_NE(out.find("request 1"), std::string::npos) << out;
    EXPECT_NE(out.find("new token 1"), std::string::npos) << out;
    EXPECT_NE(out.find("not finite"), std::string::npos) << out;
  }
  auto m = synth_tiny("badtheta");
  edit_config(m, [](nlohmann::json& j) { j["rope_theta"] = -1; });
  EXPECT_EQ(test::run_command(bin + " generate --model " + m.string() + " --prompt x --max-new-tokens 2", &out), 1);
  EXPECT_NE(out.find("config.json: 'rope_theta' is -1"), std::string::npos) << out;
}

// ---- 5. safetensors size arithmetic and duplicate names

std::string safetensors_bytes(const std::string& header, size_t body_bytes) {
  std::string s(8, '\0');
  uint64_t len = header.size();
  std::memcpy(s.data(), &len, 8);
  return s + header + std::string(body_bytes, '\0');
}

std::string safetensors_error(const std::string& header, size_t body_bytes) {
  std::string b = safetensors_bytes(header, body_bytes);
  return error_of([&] { parse_safetensors(reinterpret_cast<const uint8_t*>(b.data()), b.size(), "x.safetensors"); });
}

TEST(Hostile, SafetensorsSizeOverflowAndDuplicatesAreRefused) {
  EXPECT_NE(safetensors_error(R"({"w":{"dtype":"F32","shape":[2147483648,2147483648],"data_offsets":[0,0]}})", 0)
                .find("overflows"),
            std::string::npos);
  EXPECT_NE(safetensors_error(R"({"w":{"dtype":"I64","shape":[2305843009213693960],"data_offsets":[0,64]}})", 64)
                .find("overflows"),
            std::string::npos);
  std::string dup = R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"w":{"dtype":"F32","shape":[1],)"
                    R"("data_offsets":[4,8]}})";
  EXPECT_NE(safetensors_error(dup, 8).find("x.safetensors: tensor 'w' appears twice"), std::string::npos);
  EXPECT_NE(safetensors_error(repeat("[", 1000), 0).find("nested more than"), std::string::npos);
}

// ---- 6. special files and size caps

TEST(Hostile, SpecialFilesAreRefusedWithoutBlocking) {
  auto dir = test::temp_dir("special");
  auto fifo = dir / "model.safetensors";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_NE(error_of([&] { MappedFile f(fifo); }).find("not a regular file"), std::string::npos);
  EXPECT_NE(error_of([&] { (void)read_file(fifo); }).find("not a regular file"), std::string::npos);
  EXPECT_NE(error_of([&] { (void)Checkpoint::open(dir); }).find("model.safetensors: not a regular file"),
            std::string::npos);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(2));
  EXPECT_NE(error_of([&] { (void)read_file("/dev/zero", limits::kJsonFileBytes); }).find("/dev/zero: not a regular"),
            std::string::npos);
  EXPECT_NE(error_of([&] { (void)read_file(dir); }).find("is a folder, not a file"), std::string::npos);
  // Files whose size the kernel reports as 0 are still read whole.
  EXPECT_FALSE(read_file("/proc/self/cmdline").empty());
}

TEST(Hostile, FilesLargerThanTheirKindAllowAreRefused) {
  auto dir = test::temp_dir("caps");
  write_file_atomic(dir / "config.json", std::string(limits::kJsonFileBytes + 1, ' '));
  std::string e = error_of([&] { (void)load_model_config(dir); });
  EXPECT_NE(e.find("config.json: larger than the 16.0 MiB allowed"), std::string::npos) << e;
  write_file_atomic(dir / "small", "abc");
  EXPECT_EQ(read_file(dir / "small", 3), "abc");
  EXPECT_NE(error_of([&] { (void)read_file(dir / "small", 2); }).find("larger than"), std::string::npos);
}

TEST(Hostile, NpyHeadersAreParsedWithoutOverflow) {
  auto npy = [](const std::string& header, size_t data) {
    std::string s = "\x93NUMPY";
    s += char(1);
    s += char(0);
    uint16_t hl = uint16_t(header.size());
    s.append(reinterpret_cast<const char*>(&hl), 2);
    return s + header + std::string(data, '\0');
  };
  auto err = [](const std::string& b) { return error_of([&] { (void)parse_npy(b, "l.npy"); }); };
  EXPECT_NE(err(npy("{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999999, ), }", 0))
                .find("l.npy: shape"),
            std::string::npos);
  EXPECT_NE(err(npy("{'descr': '<f4', 'fortran_order': False, 'shape': (4611686018427387904, 4), }", 0))
                .find("overflows"),
            std::string::npos);
  EXPECT_NE(err(npy("{'descr': '<i4', 'shape': (1,), }", 4)).find("only float32"), std::string::npos);
  NpyArray a = parse_npy(npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 1), }", 8), "ok.npy");
  EXPECT_EQ(a.shape, (std::vector<int64_t>{2, 1}));
}

// ---- 7. messages that name the file; 8. silent data problems

struct TinyTask {
  std::filesystem::path root;
  eval::TaskConfig task;
  TinyTask(const std::string& name, const std::string& test_tsv) : root(test::temp_dir(name)) {
    std::filesystem::create_directories(root / "data" / "Tiny");
    write_file_atomic(root / "tiny.yaml", test::kTinyQaTaskYaml);
    write_file_atomic(root / "data" / "Tiny" / "train.tsv", "id\ttext\tlabel\nt1\tIs it?\tyes\n");
    if (!test_tsv.empty()) write_file_atomic(root / "data" / "Tiny" / "test.tsv", test_tsv);
    task = eval::load_task_config(root / "tiny.yaml");
  }
  std::string error() const { return error_of([&] { (void)eval::load_split(task, root / "data", "test", false); }); }
};

TEST(Hostile, DataFileProblemsNameTheFile) {
  TinyTask bad_utf8("utf8", "id\ttext\tlabel\nq1\tfine\tyes\nq2\tbad \xff byte\tno\n");
  EXPECT_NE(bad_utf8.error().find("test.tsv:3: invalid UTF-8"), std::string::npos) << bad_utf8.error();

  TinyTask folder("dirsplit", "");
  std::filesystem::create_directories(folder.root / "data" / "Tiny" / "test.tsv");
  EXPECT_NE(folder.error().find("test.tsv: is a folder, not a file"), std::string::npos) << folder.error();

  std::string huge_row = "id\ttext\tlabel\nq1\t\"" + std::string(limits::kDataRowBytes + 10, 'a') + "\n";
  TinyTask huge("hugerow", huge_row);
  EXPECT_NE(huge.error().find("test.tsv:2: row longer than"), std::string::npos) << huge.error();
  std::string long_line = "tok\t" + std::string(limits::kDataRowBytes + 1, 'B');
  std::string e = error_of([&] { (void)eval::parse_conll(long_line, "n.conll", true, nullptr); });
  EXPECT_NE(e.find("n.conll:1: line longer than"), std::string::npos) << e;
}

TEST(Hostile, EmptySplitIsRefusedNotScoredZero) {
  TinyTask empty("empty", "id\ttext\tlabel\n");
  EXPECT_NE(empty.error().find("test.tsv: the split holds no examples"), std::string::npos) << empty.error();
  TinyTask all_bad("allbad", "id\ttext\tlabel\nq1\tonly two\n");
  std::string e = error_of([&] { (void)eval::load_split(all_bad.task, all_bad.root / "data", "test", true); });
  EXPECT_NE(e.find("all 1 examples are malformed"), std::string::npos) << e;
}

TEST(Hostile, TaskSplitPathsMustStayInsideTheDataFolder) {
  for (std::string evil : {"/etc/passwd", "../../../etc/passwd", "a/../../b.tsv"}) {
    std::string yaml = test::kTinyQaTaskYaml;
    yaml.replace(yaml.find("test.tsv"), 8, evil);
    auto dir = test::temp_dir("escape");
    write_file_atomic(dir / "t.yaml", yaml);
    std::string e = error_of([&] { (void)eval::load_task_config(dir / "t.yaml"); });
    EXPECT_NE(e.find("t.yaml: 'splits.test' is '" + evil + "'"), std::string::npos) << e;
  }
  std::string yaml = test::kTinyQaTaskYaml;
  yaml.replace(yaml.find("data_folder: Tiny"), 17, "data_folder: /etc");
  auto dir = test::temp_dir("escape2");
  write_file_atomic(dir / "t.yaml", yaml);
  EXPECT_NE(error_of([&] { (void)eval::load_task_config(dir / "t.yaml"); }).find("'data_folder' is '/etc'"),
            std::string::npos);
  write_file_atomic(dir / "t.yaml", "name: [unclosed\n");
  EXPECT_NE(error_of([&] { (void)eval::load_task_config(dir / "t.yaml"); }).find("t.yaml: invalid YAML"),
            std::string::npos);
  write_file_atomic(dir / "t.yaml", "? [a, b]\n: 1\n");  // a key that is not a string
  EXPECT_NE(error_of([&] { (void)eval::load_task_config(dir / "t.yaml"); }).find("t.yaml:"), std::string::npos);
}

TEST(Hostile, SynthAndQuantizeRefuseAFolderWithFiles) {
  std::string bin = test::biomedq_binary().string(), out;
  auto m = synth_tiny("force");
  EXPECT_EQ(test::run_command(bin + " synth --preset tiny --out " + m.string(), &out), 1);
  EXPECT_NE(out.find("not empty"), std::string::npos) << out;
  EXPECT_NE(out.find("--force"), std::string::npos) << out;
  EXPECT_EQ(test::run_command(bin + " synth --preset tiny --force --out " + m.string(), &out), 0) << out;
  auto q = m.parent_path() / "q";
  std::filesystem::create_directories(q);
  write_file_atomic(q / "notes.txt", "mine");
  std::string quant = bin + " quantize --model " + m.string() + " --precision nf4 --out " + q.string();
  EXPECT_EQ(test::run_command(quant, &out), 1);
  EXPECT_NE(out.find(q.string() + ": the folder exists and is not empty"), std::string::npos) << out;
  EXPECT_EQ(test::run_command(quant + " --force", &out), 0) << out;
  EXPECT_EQ(read_file(q / "notes.txt"), "mine");
}

}  // namespace
}  // namespace bq
