#include "io/safetensors.h"

#include <algorithm>
#include <cstring>
#include <nlohmann/json.hpp>
#include <set>

#include "core/error.h"
#include "core/json.h"
#include "core/limits.h"

namespace bq {

using nlohmann::json;

// Real headers are well under a few MB even for 70B shards; anything far larger is hostile or corrupt.
static constexpr uint64_t kMaxHeaderBytes = 100ull << 20;

namespace {

// Builds the header as nlohmann's own DOM reader does, and checks what that reader does not: nesting depth, and
// tensor names given twice (JSON keeps the last of two equal keys; a tensor named twice must be refused, not
// silently replaced). Not nlohmann's parse callback, which makes every closed object search its parent's members:
// quadratic in the number of tensors (40,000 took 97 s).
class HeaderReader {
 public:
  HeaderReader(json& out, const std::string& origin) : dom_(out, false), origin_(origin) {}
  std::string duplicate;  // the first tensor name given twice

  bool null() { return dom_.null(); }
  bool boolean(bool v) { return dom_.boolean(v); }
  bool number_integer(json::number_integer_t v) { return dom_.number_integer(v); }
  bool number_unsigned(json::number_unsigned_t v) { return dom_.number_unsigned(v); }
  bool number_float(json::number_float_t v, const json::string_t& s) { return dom_.number_float(v, s); }
  bool string(json::string_t& v) { return dom_.string(v); }
  bool binary(json::binary_t& v) { return dom_.binary(v); }
  bool start_object(std::size_t n) { return enter() && dom_.start_object(n); }
  bool key(json::string_t& k) {
    if (depth_ == 1 && !names_.insert(k).second && duplicate.empty()) duplicate = k;
    return dom_.key(k);
  }
  bool end_object() { return --depth_, dom_.end_object(); }
  bool start_array(std::size_t n) { return enter() && dom_.start_array(n); }
  bool end_array() { return --depth_, dom_.end_array(); }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception&) { return false; }

 private:
  bool enter() {
    if (++depth_ > limits::kMaxNesting) fail("{}: header nested more than {} deep", origin_, limits::kMaxNesting);
    return true;
  }
  nlohmann::detail::json_sax_dom_parser<json> dom_;
  const std::string& origin_;
  std::set<std::string> names_;
  int depth_ = 0;
};

}  // namespace

int64_t TensorInfo::numel() const {
  int64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

std::vector<TensorInfo> parse_safetensors(const uint8_t* data, size_t size, const std::string& origin) {
  if (size < 8) fail("{}: not a safetensors file (only {} bytes)", origin, size);
  uint64_t header_len;
  std::memcpy(&header_len, data, 8);  // little-endian on every platform we build for
  if (header_len > kMaxHeaderBytes) fail("{}: header length {} is implausibly large (corrupt file?)", origin, header_len);
  if (header_len > size - 8) fail("{}: header length {} exceeds the file size {} (truncated?)", origin, header_len, size);
  const char* hbegin = reinterpret_cast<const char*>(data + 8);
  json header;
  HeaderReader reader(header, origin);
  if (!json::sax_parse(hbegin, hbegin + header_len, &reader)) fail("{}: header is not valid JSON", origin);
  if (!reader.duplicate.empty()) fail("{}: tensor '{}' appears twice in the header", origin, reader.duplicate);
  if (!header.is_object()) fail("{}: header is not a JSON object", origin);

  const uint8_t* body = data + 8 + header_len;
  const uint64_t body_size = size - 8 - header_len;
  std::vector<TensorInfo> out;
  for (auto& item : header.items()) {
    const std::string& name = item.key();
    const json& v = item.value();
    if (name == "__metadata__") continue;
    auto bad = [&](const std::string& what) { fail("{}: tensor '{}': {}", origin, name, what); };
    if (!v.is_object()) bad("entry is not an object");
    auto dt = v.find("dtype");
    auto sh = v.find("shape");
    auto off = v.find("data_offsets");
    if (dt == v.end() || !dt->is_string()) bad("missing dtype");
    if (sh == v.end() || !sh->is_array()) bad("missing shape");
    if (off == v.end() || !off->is_array() || off->size() != 2) bad("missing data_offsets");
    TensorInfo t;
    t.name = name;
    if (!dtype_from_name(dt->get<std::string>(), t.dtype)) bad("unsupported dtype " + dt->get<std::string>());
    uint64_t numel = 1, nbytes;
    for (auto& d : *sh) {
      if (!d.is_number_unsigned()) bad("shape entries must be non-negative integers");
      uint64_t x = d.get<uint64_t>();
      if (x > uint64_t(INT64_MAX) || __builtin_mul_overflow(numel, x, &numel)) bad("shape overflows");
      t.shape.push_back(int64_t(x));
    }
    // Overflow-checked: [2^31, 2^31] F32 is 2^64 bytes, which wraps to 0 and would match empty offsets.
    if (numel > uint64_t(INT64_MAX) || __builtin_mul_overflow(numel, uint64_t(dtype_size(t.dtype)), &nbytes))
      bad("shape " + shape_str(t.shape) + " of " + std::string(dtype_name(t.dtype)) + " overflows 64 bits of bytes");
    if (!(*off)[0].is_number_unsigned() || !(*off)[1].is_number_unsigned()) bad("offsets must be non-negative integers");
    uint64_t b = (*off)[0].get<uint64_t>(), e = (*off)[1].get<uint64_t>();
    if (b > e || e > body_size)
      bad("data_offsets [" + std::to_string(b) + ", " + std::to_string(e) + "] outside the data section of " +
          std::to_string(body_size) + " bytes (truncated file?)");
    if (e - b != nbytes)
      bad("holds " + std::to_string(e - b) + " bytes but shape " + shape_str(t.shape) + " of " +
          std::string(dtype_name(t.dtype)) + " needs " + std::to_string(nbytes));
    t.data = body + b;
    t.nbytes = e - b;
    out.push_back(std::move(t));
  }
  std::vector<const TensorInfo*> by_offset;
  for (auto& t : out) by_offset.push_back(&t);
  std::sort(by_offset.begin(), by_offset.end(), [](auto a, auto b) { return a->data < b->data; });
  for (size_t i = 1; i < by_offset.size(); ++i)
    if (by_offset[i - 1]->data + by_offset[i - 1]->nbytes > by_offset[i]->data)
      fail("{}: tensors '{}' and '{}' overlap", origin, by_offset[i - 1]->name, by_offset[i]->name);
  return out;
}

Checkpoint Checkpoint::open(const std::filesystem::path& dir) {
  Checkpoint ck;
  ck.dir_ = dir;
  std::vector<std::string> shard_names;
  auto index_path = dir / "model.safetensors.index.json";
  if (fs::exists(dir / "model.safetensors")) {
    shard_names.push_back("model.safetensors");
  } else if (fs::exists(index_path)) {
    json index = parse_json(read_file(index_path, limits::kJsonFileBytes), index_path.string());
    if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object())
      fail("{}: not a valid safetensors index (needs a weight_map object)", index_path.string());
    std::set<std::string> seen;
    for (auto& [tensor, file] : index["weight_map"].items()) {
      if (!file.is_string()) fail("{}: weight_map entry '{}' is not a file name", index_path.string(), tensor);
      std::string f = file.get<std::string>();
      if (f.find('/') != std::string::npos || f.find("..") != std::string::npos)
        fail("{}: shard name '{}' must be a plain file name", index_path.string(), f);
      if (seen.insert(f).second) shard_names.push_back(f);
    }
  } else {
    fail("{}: no model.safetensors or model.safetensors.index.json", dir.string());
  }
  for (auto& name : shard_names) {
    auto path = dir / name;
    auto file = std::make_unique<MappedFile>(path);
    ck.file_names_.push_back(std::make_unique<std::string>(path.string()));
    for (auto& t : parse_safetensors(file->data(), file->size(), path.string())) {
      t.file = ck.file_names_.back().get();
      if (ck.tensors_.count(t.name)) fail("{}: tensor '{}' appears in more than one shard", path.string(), t.name);
      std::string key = t.name;
      ck.tensors_.emplace(std::move(key), std::move(t));
    }
    ck.files_.push_back(std::move(file));
  }
  return ck;
}

void Checkpoint::keep_renamed(const std::vector<std::pair<std::string, std::string>>& prefixes) {
  std::map<std::string, TensorInfo> kept;
  for (auto& [name, t] : tensors_)
    for (const auto& [from, to] : prefixes)
      if (name.rfind(from, 0) == 0) {
        TensorInfo renamed = t;
        renamed.name = to + name.substr(from.size());
        if (!kept.emplace(renamed.name, renamed).second)
          fail("{}: tensors '{}' and another both become '{}'", *t.file, name, renamed.name);
        break;
      }
  tensors_ = std::move(kept);
}

size_t Checkpoint::mapped_bytes() const {
  size_t n = 0;
  for (auto& f : files_) n += f->size();
  return n;
}

const TensorInfo* Checkpoint::find(const std::string& name) const {
  auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : &it->second;
}

const TensorInfo& Checkpoint::require(const std::string& name, const std::vector<int64_t>& shape) const {
  const TensorInfo* t = find(name);
  if (!t) fail("{}: checkpoint lacks tensor '{}'", dir_.string(), name);
  if (t->shape != shape)
    fail("{}: tensor '{}' has shape {}, expected {}", *t->file, name, shape_str(t->shape), shape_str(shape));
  return *t;
}

void write_safetensors(const std::filesystem::path& path, const std::vector<TensorToWrite>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  json header = json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (auto& t : tensors) {
    header[t.name] = {{"dtype", dtype_name(t.dtype)}, {"shape", t.shape}, {"data_offsets", {offset, offset + t.nbytes}}};
    offset += t.nbytes;
  }
  std::string h = header.dump();
  h.append((8 - h.size() % 8) % 8, ' ');
  uint64_t len = h.size();
  AtomicFileWriter w(path);
  w.write(&len, 8);
  w.write(h.data(), h.size());
  for (auto& t : tensors) w.write(t.data, t.nbytes);
  w.commit();
}

}  // namespace bq
