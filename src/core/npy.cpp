#include "core/npy.h"

#include <cstring>
#include <regex>

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

NpyArray read_npy(const std::filesystem::path& path) {
  std::string s = read_file(path);
  if (s.size() < 10 || s.compare(0, 6, "\x93NUMPY") != 0) fail("{}: not a .npy file", path.string());
  size_t hl, off;
  if (s[6] == 1) {
    hl = uint8_t(s[8]) | size_t(uint8_t(s[9])) << 8;
    off = 10;
  } else {
    if (s.size() < 12) fail("{}: truncated .npy header", path.string());
    uint32_t h;
    std::memcpy(&h, s.data() + 8, 4);
    hl = h;
    off = 12;
  }
  if (off + hl > s.size()) fail("{}: truncated .npy header", path.string());
  std::string header = s.substr(off, hl);
  std::smatch m;
  if (!std::regex_search(header, m, std::regex("'descr':\\s*'([<|=]?)(f4|f8)'")))
    fail("{}: only float32/float64 little-endian arrays are supported", path.string());
  bool f8 = m[2] == "f8";
  if (header.find("'fortran_order': True") != std::string::npos) fail("{}: Fortran order is not supported", path.string());
  if (!std::regex_search(header, m, std::regex("'shape':\\s*\\(([^)]*)\\)"))) fail("{}: no shape in header", path.string());
  NpyArray a;
  std::string dims = m[1];
  size_t n = 1;
  static const std::regex number("\\d+");
  for (std::sregex_iterator it(dims.begin(), dims.end(), number), end; it != end; ++it) {
    a.shape.push_back(std::stoll(it->str()));
    n *= size_t(a.shape.back());
  }
  size_t esz = f8 ? 8 : 4;
  if (s.size() - off - hl != n * esz)
    fail("{}: data holds {} bytes, shape needs {}", path.string(), s.size() - off - hl, n * esz);
  a.data.resize(n);
  const char* p = s.data() + off + hl;
  if (f8) {
    for (size_t i = 0; i < n; ++i) {
      double d;
      std::memcpy(&d, p + i * 8, 8);
      a.data[i] = float(d);
    }
  } else {
    std::memcpy(a.data.data(), p, n * 4);
  }
  return a;
}

}  // namespace bq
