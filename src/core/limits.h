// Every cap on hostile input in one place: how large a file of each kind may be, how deep a recursive reader may
// go, and what a chat template may spend. Each is far above what real checkpoints, templates and data sets need
// and far below what exhausts memory, the stack or the user's patience.
#pragma once
#include <cstddef>
#include <cstdint>

namespace bq::limits {

// ---- file sizes, per kind of file (read_file refuses larger ones; safetensors shards are mapped, not read)
inline constexpr size_t kJsonFileBytes = 16u << 20;        // config.json, tokenizer_config.json, indexes, states
inline constexpr size_t kTokenizerJsonBytes = 256u << 20;  // tokenizer.json (Llama 3: 9 MB, Gemma: 33 MB)
inline constexpr size_t kChatTemplateBytes = 1u << 20;     // chat_template.jinja (real ones: a few KB)
inline constexpr size_t kTaskYamlBytes = 1u << 20;         // tasks/*.yaml
inline constexpr size_t kPromptFileBytes = 1u << 20;       // a task's prompt or few-shot text file
inline constexpr size_t kDataFileBytes = size_t(1) << 30;  // a data split (TSV, CoNLL, JSON lines)
inline constexpr size_t kDataRowBytes = 1u << 20;          // one row or record of a data split
inline constexpr size_t kNpyBytes = size_t(2) << 30;       // .npy logits fixtures
inline constexpr size_t kAnyFileBytes = size_t(2) << 30;   // any other file read whole (samples.jsonl, results)

// ---- recursion: every recursive reader stops here with an error instead of overflowing the stack
inline constexpr int kMaxNesting = 100;  // JSON values, Python literals, YAML, Jinja statements and brackets

// ---- chat templates (Jinja)
inline constexpr int kJinjaMaxTagTokens = 1000;             // tokens in one {{ }} or {% %} (bounds operator chains)
inline constexpr int kJinjaMaxRenderDepth = 400;            // nested evaluation while rendering (macro recursion too)
inline constexpr int64_t kJinjaMaxLoopIterations = 1000000;  // for-loop iterations in one render, all loops together
inline constexpr size_t kJinjaMaxStringBytes = 8u << 20;    // any one string, list or dict, and the output
inline constexpr size_t kJinjaMaxBytesBuilt = 256u << 20;   // all lists and dicts built in one render together
inline constexpr int64_t kJinjaMaxRange = 100000;           // items of range(), as Jinja's sandbox (MAX_RANGE)

// ---- the OpenAI-compatible server (`serve`): what one request may ask for
inline constexpr size_t kServeBodyBytes = 4u << 20;   // a request body (413 beyond); long prompts fit many times
inline constexpr int kServeMaxChoices = 16;            // n: answers per request
inline constexpr int kServeMaxStopStrings = 4;         // stop: as OpenAI's API
inline constexpr size_t kServeMaxStopBytes = 256;      // one stop string
inline constexpr int kServeMaxMessages = 4096;         // messages in one chat
inline constexpr int kServeDefaultMaxTokens = 512;     // max_tokens when a request gives none (or less room is left)
inline constexpr int kServeDrainSeconds = 30;          // on SIGTERM: how long in-flight requests may still run

}  // namespace bq::limits
