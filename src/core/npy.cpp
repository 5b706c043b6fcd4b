#include "core/npy.h"

#include <cstring>

#include "core/error.h"
#include "core/files.h"

namespace bq {

void write_npy_f32(const std::filesystem::path& path, const float* data, const std::vector<int64_t>& shape) {
  std::string dims;
  size_t n = 1;
  for (auto d : shape) {
    dims += std::to_string(d) + ",";
    n *= size_t(d);
  }
  if (shape.size() > 1) dims.pop_back();
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + dims + "), }";
  header.append(63 - (10 + header.size()) % 64, ' ');  // total header length a multiple of 64, ending in \n
  header += '\n';
  std::string out = "\x93NUMPY";
  out += char(1);
  out += char(0);
  uint16_t hl = uint16_t(header.size());
  out.append(reinterpret_cast<const char*>(&hl), 2);
  out += header;
  out.append(reinterpret_cast<const char*>(data), n * sizeof(float));
  write_file_atomic(path, out);
}

// The text of `'key': ` up to (not including) the character `end`, in a .npy header dict; "" when absent.
static std::string header_field(std::string_view header, std::string_view key, char end) {
  size_t k = header.find(key);
  if (k == std::string_view::npos) return "";
  k += key.size();
  while (k < header.size() && (header[k] == ' ' || header[k] == ':')) ++k;
  size_t e = header.find(end, k + 1);
  return e == std::string_view::npos ? "" : std::string(header.substr(k, e + 1 - k));
}

NpyArray parse_npy(std::string_view s, const std::string& origin) {
  if (s.size() < 10 || s.compare(0, 6, "\x93NUMPY") != 0) fail("{}: not a .npy file", origin);
  size_t hl, off;
  if (s[6] == 1) {
    hl = uint8_t(s[8]) | size_t(uint8_t(s[9])) << 8;
    off = 10;
  } else {
    if (s.size() < 12) fail("{}: truncated .npy header", origin);
    uint32_t h;
    std::memcpy(&h, s.data() + 8, 4);
    hl = h;
    off = 12;
  }
  if (hl > s.size() - off) fail("{}: truncated .npy header", origin);
  std::string_view header = s.substr(off, hl);
  std::string descr = header_field(header, "'descr'", '\'');
  bool f8 = descr == "'<f8'" || descr == "'f8'" || descr == "'=f8'";
  if (!f8 && descr != "'<f4'" && descr != "'f4'" && descr != "'=f4'" && descr != "'|f4'" && descr != "'|f8'")
    fail("{}: only float32/float64 little-endian arrays are supported", origin);
  f8 = f8 || descr == "'|f8'";
  if (header.find("'fortran_order': True") != std::string_view::npos)
    fail("{}: Fortran order is not supported", origin);
  std::string dims = header_field(header, "'shape'", ')');
  if (dims.empty() || dims[0] != '(') fail("{}: no shape in header", origin);
  NpyArray a;
  size_t n = 1;
  for (size_t k = 1; k < dims.size();) {
    if (dims[k] < '0' || dims[k] > '9') {
      ++k;
      continue;
    }
    uint64_t d = 0;
    for (; k < dims.size() && dims[k] >= '0' && dims[k] <= '9'; ++k)
      if (__builtin_mul_overflow(d, 10u, &d) || __builtin_add_overflow(d, uint64_t(dims[k] - '0'), &d))
        fail("{}: shape {} overflows", origin, dims);
    if (d > uint64_t(INT64_MAX) || __builtin_mul_overflow(n, size_t(d), &n))
      fail("{}: shape {} overflows", origin, dims);
    a.shape.push_back(int64_t(d));
  }
  size_t esz = f8 ? 8 : 4, need;
  if (__builtin_mul_overflow(n, esz, &need)) fail("{}: shape {} overflows", origin, dims);
  if (s.size() - off - hl != need) fail("{}: data holds {} bytes, shape needs {}", origin, s.size() - off - hl, need);
  a.data.resize(n);
  const char* p = s.data() + off + hl;
  if (f8) {
    for (size_t i = 0; i < n; ++i) {
      double d;
      std::memcpy(&d, p + i * 8, 8);
      a.data[i] = float(d);
    }
  } else if (n) {
    std::memcpy(a.data.data(), p, n * 4);
  }
  return a;
}

NpyArray read_npy(const std::filesystem::path& path) {
  return parse_npy(read_file(path, limits::kNpyBytes), path.string());
}

}  // namespace bq
