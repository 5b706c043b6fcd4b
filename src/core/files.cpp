#include "core/files.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <random>

#include "core/error.h"

namespace bq {

std::string size_str(uint64_t bytes) {
  if (bytes < 1024) return fmt::format("{} bytes", bytes);
  const char* units[] = {"KiB", "MiB", "GiB", "TiB"};
  double x = double(bytes) / 1024;
  int u = 0;
  for (; x >= 1024 && u < 3; ++u) x /= 1024;
  return fmt::format("{:.1f} {}", x, units[u]);
}

void check_output_folder(const fs::path& dir, bool force) {
  std::error_code ec;
  if (!fs::exists(dir, ec)) return;
  if (!fs::is_directory(dir, ec)) fail("{}: exists and is not a folder", dir.string());
  if (!force && !fs::is_empty(dir, ec))
    fail("{}: the folder exists and is not empty; its files would be overwritten (pass --force to allow it)",
         dir.string());
}

// Opens without blocking (a FIFO would wait for a writer) and refuses anything but a regular file.
static int open_regular(const fs::path& path, struct stat& st) {
  int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) fail("{}: cannot open: {}", path.string(), std::strerror(errno));
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    if (S_ISDIR(st.st_mode)) fail("{}: is a folder, not a file", path.string());
    fail("{}: not a regular file (a FIFO, device or socket cannot be read)", path.string());
  }
  return fd;
}

std::string read_file(const fs::path& path, size_t max_bytes) {
  struct stat st {};
  int fd = open_regular(path, st);
  auto too_big = [&] {
    ::close(fd);
    fail("{}: larger than the {} allowed for this kind of file", path.string(), size_str(max_bytes));
  };
  if (uint64_t(st.st_size) > max_bytes) too_big();
  // st_size may be 0 (/proc) or grow while we read: read to the end, never past the cap.
  std::string s(size_t(st.st_size), '\0');
  size_t n = 0;
  while (true) {
    if (n == s.size()) {
      if (n > max_bytes) too_big();
      s.resize(std::min(std::max<size_t>(2 * n, 4096), max_bytes + 1));
    }
    ssize_t r = ::read(fd, s.data() + n, s.size() - n);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      int e = errno;
      ::close(fd);
      fail("{}: read error: {}", path.string(), std::strerror(e));
    }
    if (r == 0) break;
    n += size_t(r);
  }
  ::close(fd);
  if (n > max_bytes) fail("{}: larger than the {} allowed for this kind of file", path.string(), size_str(max_bytes));
  s.resize(n);
  return s;
}

void read_file_chunks(const fs::path& path, const std::function<void(std::string_view)>& consume) {
  struct stat st {};
  const int fd = open_regular(path, st);
  std::string buf(size_t(4) << 20, '\0');
  try {
    while (true) {
      const ssize_t r = ::read(fd, buf.data(), buf.size());
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) fail("{}: read error: {}", path.string(), std::strerror(errno));
      if (r == 0) break;
      consume(std::string_view(buf.data(), size_t(r)));
    }
  } catch (...) {
    ::close(fd);
    throw;
  }
  ::close(fd);
}

AtomicFileWriter::AtomicFileWriter(const fs::path& path) : path_(path) {
  fs::path dir = path.has_parent_path() ? path.parent_path() : fs::path(".");
  std::string name = path.filename().string();
  name.insert(0, 1, '.');
  name += ".tmp" + std::to_string(std::random_device{}());
  tmp_ = (dir / name).string();
  fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0644);
  if (fd_ < 0) fail("{}: cannot create: {}", tmp_, std::strerror(errno));
}

AtomicFileWriter::~AtomicFileWriter() {
  if (fd_ >= 0) {
    ::close(fd_);
    ::unlink(tmp_.c_str());
  }
}

void AtomicFileWriter::write(const void* data, size_t n) {
  auto p = static_cast<const char*>(data);
  while (n > 0) {
    ssize_t w = ::write(fd_, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      fail("{}: write failed: {}", path_.string(), std::strerror(errno));
    }
    p += w;
    n -= size_t(w);
  }
}

void AtomicFileWriter::commit() {
  int fd = fd_;
  fd_ = -1;
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    ::unlink(tmp_.c_str());
    fail("{}: cannot flush to disk", path_.string());
  }
  if (::rename(tmp_.c_str(), path_.c_str()) != 0) {
    int e = errno;
    ::unlink(tmp_.c_str());
    fail("{}: cannot rename into place: {}", path_.string(), std::strerror(e));
  }
}

void write_file_atomic(const fs::path& path, std::string_view bytes) {
  AtomicFileWriter w(path);
  w.write(bytes.data(), bytes.size());
  w.commit();
}

MappedFile::MappedFile(const fs::path& path) : path_(path) {
  struct stat st {};
  int fd = open_regular(path, st);
  size_ = size_t(st.st_size);
  if (size_ > 0) {
    void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      int e = errno;
      ::close(fd);
      fail("{}: mmap failed: {}", path.string(), std::strerror(e));
    }
    data_ = static_cast<const uint8_t*>(p);
  }
  ::close(fd);
}

MappedFile::MappedFile(MappedFile&& o) noexcept : path_(std::move(o.path_)), data_(o.data_), size_(o.size_) {
  o.data_ = nullptr;
  o.size_ = 0;
}

MappedFile& MappedFile::operator=(MappedFile&& o) noexcept {
  if (this != &o) {
    this->~MappedFile();
    path_ = std::move(o.path_);
    data_ = o.data_;
    size_ = o.size_;
    o.data_ = nullptr;
    o.size_ = 0;
  }
  return *this;
}

MappedFile::~MappedFile() {
  if (data_) ::munmap(const_cast<uint8_t*>(data_), size_);
}

std::string shell_quote(const std::string& arg) {
  static constexpr std::string_view safe = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-+=/.,:@%";
  if (!arg.empty() && arg.find_first_not_of(safe) == std::string::npos) return arg;
  std::string quoted = "'";
  for (char c : arg) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return quoted + "'";
}

}  // namespace bq
