#include "tokenizer/bpe.h"

#include <fmt/format.h>

#include <nlohmann/json.hpp>
#include <queue>

#include "core/error.h"
#include "tokenizer/text.h"

namespace bq::tok {

using nlohmann::json;

static constexpr size_t kMaxCachedWordBytes = 256;
static constexpr size_t kMaxCacheEntries = 100000;

BpeModel::BpeModel(const json& model, const std::string& origin) {
  if (!model.contains("vocab") || !model["vocab"].is_object()) fail("{}: model.vocab missing or not an object", origin);
  for (const auto& [token, id] : model["vocab"].items()) {
    if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() > INT32_MAX)
      fail("{}: model.vocab[\"{}\"] is not a valid id", origin, token);
    vocab_[token] = id.get<int32_t>();
  }

  auto id_of = [&](std::string_view s) -> std::optional<int32_t> {
    auto it = vocab_.find(s);
    return it == vocab_.end() ? std::nullopt : std::optional<int32_t>(it->second);
  };

  const json& merges = model.contains("merges") ? model["merges"] : json::array();
  if (!merges.is_array()) fail("{}: model.merges is not an array", origin);
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const json& m = merges[rank];
    std::string left, right;
    if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      left = m[0].get<std::string>();
      right = m[1].get<std::string>();
    } else if (m.is_string()) {
      // "a b". Byte-level tokens never hold a space, but a token may: then take the split whose halves and whose
      // concatenation are all in the vocabulary.
      const std::string& s = m.get_ref<const std::string&>();
      bool found = false;
      for (size_t sp = s.find(' '); sp != std::string::npos && !found; sp = s.find(' ', sp + 1)) {
        std::string a = s.substr(0, sp), b = s.substr(sp + 1);
        if (s.find(' ', sp + 1) == std::string::npos || (id_of(a) && id_of(b) && id_of(a + b))) {
          left = std::move(a);
          right = std::move(b);
          found = true;
        }
      }
      if (!found) fail("{}: model.merges[{}] \"{}\" is not two tokens separated by a space", origin, rank, s);
    } else {
      fail("{}: model.merges[{}] is neither \"a b\" nor [\"a\", \"b\"]", origin, rank);
    }
    auto a = id_of(left), b = id_of(right), ab = id_of(left + right);
    if (!a || !b || !ab)
      fail("{}: model.merges[{}] (\"{}\", \"{}\") uses a token that is not in the vocabulary", origin, rank, left,
           right);
    merges_[pair_key(*a, *b)] = Merge{int32_t(rank), *ab};  // a repeated pair keeps its last rank, as in tokenizers
  }

  auto opt_string = [&](const char* key) -> std::string {
    if (!model.contains(key) || model[key].is_null()) return "";
    if (!model[key].is_string()) fail("{}: model.{} is not a string", origin, key);
    return model[key].get<std::string>();
  };
  auto opt_bool = [&](const char* key) {
    if (!model.contains(key) || model[key].is_null()) return false;
    if (!model[key].is_boolean()) fail("{}: model.{} is not a boolean", origin, key);
    return model[key].get<bool>();
  };
  if (std::string unk = opt_string("unk_token"); !unk.empty()) {
    unk_id_ = id_of(unk);
    if (!unk_id_) fail("{}: model.unk_token \"{}\" is not in the vocabulary", origin, unk);
  }
  if (!opt_string("continuing_subword_prefix").empty() || !opt_string("end_of_word_suffix").empty())
    fail("{}: BPE continuing_subword_prefix / end_of_word_suffix are not supported", origin);
  if (model.contains("dropout") && model["dropout"].is_number() && model["dropout"].get<double>() > 0)
    fail("{}: BPE dropout is not supported", origin);
  fuse_unk_ = opt_bool("fuse_unk");
  byte_fallback_ = opt_bool("byte_fallback");
  ignore_merges_ = opt_bool("ignore_merges");
  for (int byte = 0; byte < 256; ++byte) byte_fallback_ids_[byte] = id_of(fmt::format("<0x{:02X}>", byte)).value_or(-1);
}

const BpeModel::Merge* BpeModel::find_merge(int32_t a, int32_t b) const {
  auto it = merges_.find(pair_key(a, b));
  return it == merges_.end() ? nullptr : &it->second;
}

void BpeModel::encode_word(std::string_view word, std::vector<int32_t>& out) const {
  if (word.empty()) return;
  if (ignore_merges_) {
    if (auto it = vocab_.find(word); it != vocab_.end()) {
      out.push_back(it->second);
      return;
    }
  }
  if (word.size() > kMaxCachedWordBytes) {
    merge_word(word, out);
    return;
  }
  {
    std::lock_guard lock(cache_mutex_);
    if (auto it = cache_.find(word); it != cache_.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  std::vector<int32_t> ids;
  merge_word(word, ids);
  out.insert(out.end(), ids.begin(), ids.end());
  std::lock_guard lock(cache_mutex_);
  if (cache_.size() >= kMaxCacheEntries) cache_.clear();
  cache_.emplace(word, std::move(ids));
}

void BpeModel::merge_word(std::string_view word, std::vector<int32_t>& out) const {
  // Start from one symbol per character. A character missing from the vocabulary becomes its <0xNN> byte tokens
  // (byte_fallback) or the unknown token (consecutive unknowns fused into one when fuse_unk); without either it is
  // dropped. These rules, including where a pending unknown lands, follow tokenizers' BPE::merge_word.
  std::vector<int32_t> ids;
  ids.reserve(word.size());
  bool unk_pending = false;
  for (size_t i = 0; i < word.size();) {
    size_t start = i;
    next_code_point(word, i);
    std::string_view ch = word.substr(start, i - start);
    if (auto it = vocab_.find(ch); it != vocab_.end()) {
      if (unk_pending) ids.push_back(*unk_id_);
      unk_pending = false;
      ids.push_back(it->second);
      continue;
    }
    if (byte_fallback_) {
      bool all = true;
      for (char c : ch) all &= byte_fallback_ids_[uint8_t(c)] >= 0;
      if (all) {
        for (char c : ch) ids.push_back(byte_fallback_ids_[uint8_t(c)]);
        continue;
      }
    }
    if (unk_id_) {
      if (unk_pending && !fuse_unk_) ids.push_back(*unk_id_);
      unk_pending = true;
    }
  }
  if (unk_pending) ids.push_back(*unk_id_);

  // Apply merges lowest rank first (leftmost on ties) over a linked list of symbols; stale queue entries are
  // recognised by the pair no longer producing the queued token.
  struct Candidate {
    int32_t rank, pos, new_id;
    bool operator<(const Candidate& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  int32_t n = int32_t(ids.size());
  std::vector<int32_t> prev(n), next(n);
  std::vector<bool> alive(n, true);
  std::priority_queue<Candidate> queue;
  for (int32_t k = 0; k < n; ++k) {
    prev[k] = k - 1;
    next[k] = k + 1 < n ? k + 1 : -1;
    if (k + 1 < n)
      if (const Merge* m = find_merge(ids[k], ids[k + 1])) queue.push({m->rank, k, m->new_id});
  }
  while (!queue.empty()) {
    Candidate top = queue.top();
    queue.pop();
    int32_t pos = top.pos;
    if (!alive[pos] || next[pos] < 0) continue;
    int32_t right = next[pos];
    const Merge* m = find_merge(ids[pos], ids[right]);
    if (!m || m->new_id != top.new_id) continue;
    ids[pos] = top.new_id;
    alive[right] = false;
    next[pos] = next[right];
    if (next[pos] >= 0) prev[next[pos]] = pos;
    if (prev[pos] >= 0)
      if (const Merge* pm = find_merge(ids[prev[pos]], ids[pos])) queue.push({pm->rank, prev[pos], pm->new_id});
    if (next[pos] >= 0)
      if (const Merge* nm = find_merge(ids[pos], ids[next[pos]])) queue.push({nm->rank, pos, nm->new_id});
  }
  for (int32_t k = 0; k < n; ++k)
    if (alive[k]) out.push_back(ids[k]);
}

}  // namespace bq::tok
