// An exclusive lock on a folder for as long as the holder lives (flock on FOLDER/.lock): two processes never write
// one run folder at once. The lock file records who holds it, so the refused process can say.
#pragma once
#include <filesystem>
#include <string>

namespace bq {

class FolderLock {
 public:
  // Creates `folder/.lock` if needed and takes the lock without waiting; a held lock is an Error naming the folder
  // and the holder (pid, host, start time, command). `purpose` is recorded for the next one who asks.
  FolderLock(const std::filesystem::path& folder, const std::string& purpose);
  FolderLock(const FolderLock&) = delete;
  FolderLock& operator=(const FolderLock&) = delete;
  ~FolderLock();  // the kernel also releases the lock if the process dies

  static constexpr const char* file_name = ".lock";
  // Whether a live process holds the lock of `folder` now; asks without creating or writing anything (for status
  // reports over a shared file system).
  static bool held(const std::filesystem::path& folder);

 private:
  int fd_ = -1;
};

}  // namespace bq
