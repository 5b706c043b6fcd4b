// NumPy .npy files (version 1.0, little-endian float32), for logits that Python tools compare against.
#pragma once
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace bq {

void write_npy_f32(const std::filesystem::path& path, const float* data, const std::vector<int64_t>& shape);

struct NpyArray {
  std::vector<int64_t> shape;
  std::vector<float> data;
};
// Reads float32 or float64 (converted) C-order arrays; anything else is a clear error.
NpyArray read_npy(const std::filesystem::path& path);
NpyArray parse_npy(std::string_view bytes, const std::string& origin);  // read_npy's parser; origin names the file

}  // namespace bq
