// safetensors: validated, memory-mapped reading (single file or sharded with an index) and atomic writing.
#pragma once
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/dtype.h"
#include "core/files.h"

namespace bq {

struct TensorInfo {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  const uint8_t* data = nullptr;  // points into the mapped file
  size_t nbytes = 0;
  const std::string* file = nullptr;  // which file holds it, for error messages

  int64_t numel() const;
};

// Parses and validates a safetensors header against the buffer it came from. `origin` names the file in errors.
// Checks: header length sane and inside the buffer, JSON well-formed, known dtypes, shapes non-negative,
// offsets inside the data section, sizes = numel × element size, no two tensors overlapping.
std::vector<TensorInfo> parse_safetensors(const uint8_t* data, size_t size, const std::string& origin);

// All tensors of a checkpoint folder: model.safetensors, or the shards a model.safetensors.index.json names.
class Checkpoint {
 public:
  static Checkpoint open(const std::filesystem::path& dir);

  const TensorInfo* find(const std::string& name) const;
  // The tensor with this name and shape; a clear error naming the file and tensor otherwise.
  const TensorInfo& require(const std::string& name, const std::vector<int64_t>& shape) const;
  const std::map<std::string, TensorInfo>& tensors() const { return tensors_; }
  size_t mapped_bytes() const;  // sizes of the mapped files, headers included
  // Keeps the tensors whose names begin with one of the prefixes, each renamed with that prefix replaced by its
  // partner (the first matching pair wins); drops the others (a multimodal checkpoint's towers but one).
  void keep_renamed(const std::vector<std::pair<std::string, std::string>>& prefixes);

 private:
  std::vector<std::unique_ptr<MappedFile>> files_;
  std::vector<std::unique_ptr<std::string>> file_names_;
  std::map<std::string, TensorInfo> tensors_;
  std::filesystem::path dir_;
};

struct TensorToWrite {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  const void* data;
  size_t nbytes;
};

// Writes one safetensors file atomically (header padded to 8 bytes, tensors in the given order).
void write_safetensors(const std::filesystem::path& path, const std::vector<TensorToWrite>& tensors,
                       const std::map<std::string, std::string>& metadata = {{"format", "pt"}});

std::string shape_str(const std::vector<int64_t>& shape);

}  // namespace bq
