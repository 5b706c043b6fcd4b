// File helpers: whole-file reads, atomic writes (never a half-written result) and read-only memory maps.
#pragma once
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <string_view>

#include "core/limits.h"

namespace bq {

namespace fs = std::filesystem;

// The whole of a regular file (a FIFO, device or folder is refused without blocking) of at most max_bytes
// (limits.h has the cap for each kind of file); throws Error naming the file.
std::string read_file(const fs::path& path, size_t max_bytes = limits::kAnyFileBytes);

// A regular file of any size in pieces of at most 4 MiB, in order (bounded memory: hashing checkpoint shards);
// throws Error naming the file.
void read_file_chunks(const fs::path& path, const std::function<void(std::string_view)>& consume);

// For commands that write a folder (synth, quantize): refuses a folder that already holds files, whose files
// would be overwritten, unless `force`; refuses a path that exists and is no folder.
void check_output_folder(const fs::path& dir, bool force);

// "1.5 MiB": sizes in messages.
std::string size_str(uint64_t bytes);

// Writes to a temporary file in the same folder, fsyncs, then renames over `path`.
void write_file_atomic(const fs::path& path, std::string_view bytes);

// The streaming form of write_file_atomic for large outputs: nothing appears at `path` until commit();
// destroying an uncommitted writer removes the temporary file.
class AtomicFileWriter {
 public:
  explicit AtomicFileWriter(const fs::path& path);
  AtomicFileWriter(const AtomicFileWriter&) = delete;
  AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;
  ~AtomicFileWriter();
  void write(const void* data, size_t n);
  void commit();

 private:
  fs::path path_;
  std::string tmp_;
  int fd_ = -1;
};

class MappedFile {
 public:
  MappedFile() = default;
  explicit MappedFile(const fs::path& path);
  MappedFile(MappedFile&& o) noexcept;
  MappedFile& operator=(MappedFile&& o) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile();

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

// `arg` as one shell word: as is when it holds only safe characters, else single-quoted (for commands recorded in
// run folders and written into job scripts).
std::string shell_quote(const std::string& arg);

}  // namespace bq
