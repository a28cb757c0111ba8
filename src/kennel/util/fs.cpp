#include "kennel/util/fs.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <random>

namespace kennel {

namespace {
Status errno_status(int error_number, const std::string& what) {
  ErrorCode code = ErrorCode::kDataLoss;
  if (error_number == ENOENT || error_number == ENOTDIR) code = ErrorCode::kNotFound;
  if (error_number == EACCES || error_number == EPERM || error_number == EROFS) {
    code = ErrorCode::kPermissionDenied;
  }
  if (error_number == ELOOP) code = ErrorCode::kInvalidArgument;
  return {code, fmt::format("{}: {}", what, std::strerror(error_number))};
}

class FileDescriptor {
 public:
  explicit FileDescriptor(int fd) : fd_(fd) {}
  ~FileDescriptor() {
    if (fd_ >= 0) ::close(fd_);
  }
  FileDescriptor(const FileDescriptor&) = delete;
  FileDescriptor& operator=(const FileDescriptor&) = delete;
  int get() const { return fd_; }
  int release() { return std::exchange(fd_, -1); }
  void reset(int fd) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_;
};
}  // namespace

namespace {
// Reads an open file to its end. Files whose size says 0 (procfs, sysfs) are read
// until EOF in chunks; others exactly up to their size (a file that grows while it
// is read is cut at the size it had).
Result<std::vector<uint8_t>> read_open_file(int fd, const std::string& shown, uint64_t max_bytes) {
  struct stat info {};
  if (::fstat(fd, &info) != 0) return errno_status(errno, fmt::format("cannot stat '{}'", shown));
  if (!S_ISREG(info.st_mode)) return invalid_argument("'{}' is not a regular file", shown);
  const auto too_large = [&](uint64_t size) {
    return Status(ErrorCode::kResourceExhausted,
                  fmt::format("'{}' is {} bytes, over the limit of {} bytes", shown, size, max_bytes));
  };
  if (static_cast<uint64_t>(info.st_size) > max_bytes) return too_large(static_cast<uint64_t>(info.st_size));
  const bool size_unknown = info.st_size == 0;
  std::vector<uint8_t> bytes(size_unknown ? 4096 : static_cast<size_t>(info.st_size));
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::read(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno_status(errno, fmt::format("cannot read '{}'", shown));
    }
    if (n == 0) break;  // end of file (or the file shrank while we read it)
    done += static_cast<size_t>(n);
    if (size_unknown && done == bytes.size()) {
      if (done > max_bytes) return too_large(done);
      bytes.resize(bytes.size() * 2);
    }
  }
  if (done > max_bytes) return too_large(done);
  bytes.resize(done);
  return bytes;
}
}  // namespace

Result<std::vector<uint8_t>> read_file_bytes(const std::filesystem::path& path,
                                             uint64_t max_bytes) {
  // O_NONBLOCK so that opening a FIFO never hangs; read_open_file refuses non-regular files.
  FileDescriptor fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK));
  if (fd.get() < 0) return errno_status(errno, fmt::format("cannot open '{}'", path_text(path)));
  return read_open_file(fd.get(), path_text(path), max_bytes);
}

Result<std::vector<uint8_t>> read_file_beneath(const std::filesystem::path& root,
                                               const std::filesystem::path& relative,
                                               uint64_t max_bytes) {
  const std::string shown = path_text(root / relative);
  std::vector<std::string> components;
  for (const auto& component : relative) {
    const std::string text = component.string();
    if (text.empty() || text == ".") continue;
    if (text == ".." || text == "/") {
      return invalid_argument("'{}' is not a plain path below '{}'", path_text(relative), path_text(root));
    }
    components.push_back(text);
  }
  if (components.empty()) return invalid_argument("'{}' names no file below '{}'", shown, path_text(root));
  FileDescriptor dir(::open(root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (dir.get() < 0) return errno_status(errno, fmt::format("cannot open '{}'", path_text(root)));
  for (size_t i = 0; i < components.size(); ++i) {
    const bool last = i + 1 == components.size();
    const int flags = O_CLOEXEC | O_NOFOLLOW | (last ? O_RDONLY | O_NONBLOCK : O_PATH | O_DIRECTORY);
    FileDescriptor next(::openat(dir.get(), components[i].c_str(), flags));
    if (next.get() < 0) {
      const int error_number = errno;
      // O_NOFOLLOW answers ELOOP on the last component, O_DIRECTORY ENOTDIR on the others.
      struct stat info {};
      if (error_number == ELOOP ||
          (error_number == ENOTDIR && ::fstatat(dir.get(), components[i].c_str(), &info, AT_SYMLINK_NOFOLLOW) == 0 &&
           S_ISLNK(info.st_mode))) {
        return Status(ErrorCode::kPermissionDenied,
                      fmt::format("'{}': '{}' is a symbolic link, which is not followed here", shown,
                                  components[i]));
      }
      return errno_status(error_number, fmt::format("cannot open '{}'", shown));
    }
    dir.reset(next.release());
  }
  return read_open_file(dir.get(), shown, max_bytes);
}

Result<std::string> read_file_text(const std::filesystem::path& path) {
  auto bytes = read_file_bytes(path);
  if (!bytes.ok()) return bytes.status();
  return std::string(bytes->begin(), bytes->end());
}

Status write_file_atomic(const std::filesystem::path& path, std::string_view bytes) {
  const auto dir = path.has_parent_path() ? path.parent_path() : std::filesystem::path(".");
  thread_local std::mt19937_64 rng{std::random_device{}()};
  const auto temp = dir / fmt::format(".{}.tmp-{:x}", path.filename().string(), rng());
  {
    FileDescriptor fd(::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
    if (fd.get() < 0) {
      return errno_status(errno, fmt::format("cannot create '{}'", path_text(temp)));
    }
    size_t done = 0;
    while (done < bytes.size()) {
      ssize_t n = ::write(fd.get(), bytes.data() + done, bytes.size() - done);
      if (n < 0) {
        if (errno == EINTR) continue;
        Status status = errno_status(errno, fmt::format("cannot write '{}'", path_text(temp)));
        ::unlink(temp.c_str());
        return status;
      }
      done += static_cast<size_t>(n);
    }
    if (::fsync(fd.get()) != 0) {
      Status status = errno_status(errno, fmt::format("cannot fsync '{}'", path_text(temp)));
      ::unlink(temp.c_str());
      return status;
    }
  }
  if (::rename(temp.c_str(), path.c_str()) != 0) {
    Status status = errno_status(errno, fmt::format("cannot rename '{}' to '{}'",
                                                    path_text(temp), path_text(path)));
    ::unlink(temp.c_str());
    return status;
  }
  FileDescriptor dir_fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dir_fd.get() >= 0) ::fsync(dir_fd.get());
  return {};
}

Status create_directories(const std::filesystem::path& dir) {
  std::error_code error;
  std::filesystem::create_directories(dir, error);
  if (error) {
    return errno_status(error.value(), fmt::format("cannot create directory '{}'", path_text(dir)));
  }
  if (::access(dir.c_str(), W_OK) != 0) {
    return errno_status(errno, fmt::format("directory '{}' is not writable", path_text(dir)));
  }
  return {};
}

FileLock::FileLock(const std::filesystem::path& path) {
  fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd_ < 0) return;
  while (::flock(fd_, LOCK_EX) != 0) {
    if (errno != EINTR) {
      ::close(fd_);
      fd_ = -1;
      return;
    }
  }
}

FileLock::~FileLock() {
  if (fd_ >= 0) ::close(fd_);  // closing releases the lock
}

}  // namespace kennel
