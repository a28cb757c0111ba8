#include "kennel/models/weight_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cerrno>
#include <cstring>
#include <memory>
#include <optional>
#include <set>
#include <span>

#include <ATen/ATen.h>
#include <c10/util/Exception.h>
#include <caffe2/serialize/inline_container.h>
#include <caffe2/serialize/read_adapter_interface.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "kennel/models/detail/pickle_reader.h"
#include "kennel/util/fs.h"

namespace kennel::models {

namespace fs = std::filesystem;
using detail::PickleObject;
using Kind = PickleObject::Kind;

static_assert(std::endian::native == std::endian::little,
              "both formats store little-endian data; a big-endian host would need byte swaps");

namespace {

// safetensors caps its JSON header at 100 MB; so do we, before allocating it.
constexpr uint64_t kMaxSafetensorsHeader = 100'000'000;
// A state dict's data.pkl is ~100 bytes per tensor; 256 MiB is far beyond any real one.
constexpr uint64_t kMaxPickleBytes = 256ull << 20;
constexpr int64_t kMaxDims = 64;

// ---- dtypes -----------------------------------------------------------------

struct DtypeInfo {
  at::ScalarType type;
  const char* safetensors;  // safetensors' dtype code
  const char* storage;      // torch's legacy storage class, as torch.save pickles it
};

constexpr std::array<DtypeInfo, 10> kDtypes = {{
    {at::kFloat, "F32", "FloatStorage"},
    {at::kDouble, "F64", "DoubleStorage"},
    {at::kHalf, "F16", "HalfStorage"},
    {at::kBFloat16, "BF16", "BFloat16Storage"},
    {at::kLong, "I64", "LongStorage"},
    {at::kInt, "I32", "IntStorage"},
    {at::kShort, "I16", "ShortStorage"},
    {at::kChar, "I8", "CharStorage"},
    {at::kByte, "U8", "ByteStorage"},
    {at::kBool, "BOOL", "BoolStorage"},
}};

const DtypeInfo* dtype_for(at::ScalarType type) {
  for (const auto& info : kDtypes) {
    if (info.type == type) return &info;
  }
  return nullptr;
}
const DtypeInfo* dtype_for_safetensors(std::string_view code) {
  for (const auto& info : kDtypes) {
    if (code == info.safetensors) return &info;
  }
  return nullptr;
}
const DtypeInfo* dtype_for_storage(std::string_view storage) {
  for (const auto& info : kDtypes) {
    if (storage == info.storage) return &info;
  }
  return nullptr;
}

std::string supported_safetensors_dtypes() {
  std::string names;
  for (const auto& info : kDtypes) names += (names.empty() ? "" : ", ") + std::string(info.safetensors);
  return names;
}

// numel * element size with overflow detection (hostile headers carry huge shapes).
std::optional<uint64_t> checked_bytes(std::span<const int64_t> shape, size_t element_size) {
  uint64_t total = element_size;
  for (int64_t dim : shape) {
    if (dim < 0) return std::nullopt;
    if (__builtin_mul_overflow(total, static_cast<uint64_t>(dim), &total)) return std::nullopt;
  }
  if (total > static_cast<uint64_t>(INT64_MAX)) return std::nullopt;
  return total;
}

Status file_error(ErrorCode code, const fs::path& path, const std::string& what) {
  return {code, fmt::format("weight file '{}': {}", path_text(path), what)};
}

// ---- a read-only file with bounds-checked positional reads -------------------

class ReadOnlyFile {
 public:
  static Result<std::shared_ptr<ReadOnlyFile>> open(const fs::path& path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
      const int error = errno;
      if (error == ENOENT || error == ENOTDIR) {
        return file_error(ErrorCode::kNotFound, path, "does not exist; check the path");
      }
      if (error == EACCES || error == EPERM) {
        return file_error(ErrorCode::kPermissionDenied, path, "permission denied; check its mode");
      }
      return file_error(ErrorCode::kInvalidArgument, path,
                        fmt::format("cannot be opened: {}", std::strerror(error)));
    }
    auto file = std::shared_ptr<ReadOnlyFile>(new ReadOnlyFile(fd));
    struct stat info {};
    if (::fstat(fd, &info) != 0 || !S_ISREG(info.st_mode)) {
      return file_error(ErrorCode::kInvalidArgument, path, "is not a regular file");
    }
    file->size_ = static_cast<uint64_t>(info.st_size);
    return file;
  }
  ~ReadOnlyFile() { ::close(fd_); }
  ReadOnlyFile(const ReadOnlyFile&) = delete;
  ReadOnlyFile& operator=(const ReadOnlyFile&) = delete;

  uint64_t size() const { return size_; }

  // Reads up to `count` bytes at `offset`, never past the end; returns how many were read.
  size_t read_at(uint64_t offset, void* buffer, size_t count) const {
    if (offset >= size_) return 0;
    count = static_cast<size_t>(std::min<uint64_t>(count, size_ - offset));
    size_t done = 0;
    while (done < count) {
      const ssize_t got = ::pread(fd_, static_cast<char*>(buffer) + done, count - done,
                                  static_cast<off_t>(offset + done));
      if (got < 0 && errno == EINTR) continue;
      if (got <= 0) break;
      done += static_cast<size_t>(got);
    }
    return done;
  }
  bool read_exact(uint64_t offset, void* buffer, size_t count) const {
    return read_at(offset, buffer, count) == count;
  }

 private:
  explicit ReadOnlyFile(int fd) : fd_(fd) {}
  int fd_;
  uint64_t size_ = 0;
};

// LibTorch's zip reader over our file: reads past the end come back short
// (miniz then reports a corrupt archive) instead of touching memory they shouldn't.
class ZipReadAdapter final : public caffe2::serialize::ReadAdapterInterface {
 public:
  explicit ZipReadAdapter(std::shared_ptr<ReadOnlyFile> file) : file_(std::move(file)) {}
  size_t size() const override { return file_->size(); }
  size_t read(uint64_t pos, void* buf, size_t n, const char* what) const override {
    return file_->read_at(pos, buf, n);
  }

 private:
  std::shared_ptr<ReadOnlyFile> file_;
};

// ---- format detection --------------------------------------------------------

Result<WeightFormat> detect_format(const ReadOnlyFile& file, const fs::path& path) {
  std::array<uint8_t, 9> head{};
  const size_t got = file.read_at(0, head.data(), head.size());
  if (got == 0) return file_error(ErrorCode::kDataLoss, path, "is empty");
  if (got >= 4 && std::memcmp(head.data(), "PK\x03\x04", 4) == 0) return WeightFormat::kPth;
  if (got == head.size() && head[8] == '{') return WeightFormat::kSafetensors;
  if (got >= 2 && head[0] == 0x80 && head[1] <= 5) {
    return file_error(ErrorCode::kInvalidArgument, path,
                      "is a raw pickle: the legacy torch.save format (torch < 1.6 or "
                      "_use_new_zipfile_serialization=False), which Kennel does not read; re-save it "
                      "with torch >= 1.6: torch.save(torch.load(f), f)");
  }
  if (got >= 2 && head[0] == 'P' && head[1] == 'K') {
    return file_error(ErrorCode::kDataLoss, path,
                      "starts like a zip archive but not with a file entry; it is empty or corrupt");
  }
  if (got < head.size()) {
    return file_error(ErrorCode::kDataLoss, path,
                      fmt::format("is only {} bytes long: too short for a weight file", got));
  }
  return file_error(ErrorCode::kInvalidArgument, path,
                    "is not a weight file: expected a PyTorch .pth/.pt (a zip archive written by "
                    "torch.save) or a .safetensors file");
}

// ---- .pth reading --------------------------------------------------------------

std::string c10_message(const c10::Error& error) {
  std::string message = error.what_without_backtrace();
  // LibTorch appends a multi-line context; the first line says what failed.
  if (auto newline = message.find('\n'); newline != std::string::npos) message.resize(newline);
  return message;
}

// Resolves BINPERSID storages from the zip and REDUCE of torch's tensor rebuilders.
class PthHooks final : public detail::PickleHooks {
 public:
  explicit PthHooks(caffe2::serialize::PyTorchStreamReader& reader) : reader_(reader) {}

  PickleObject* persistent_load(detail::PickleMachine& machine, const PickleObject& pid) override {
    // ('storage', torch.FloatStorage, '<key>', '<location>', numel)
    if (pid.kind != Kind::kTuple || pid.items.size() != 5 || !pid.items[0]->is_string("storage")) {
      bad(fmt::format("a persistent id is {}, not ('storage', type, key, location, size)",
                      describe(pid)));
    }
    const PickleObject& type = *pid.items[1];
    const PickleObject& key = *pid.items[2];
    const PickleObject& numel = *pid.items[4];
    if (type.kind != Kind::kGlobal || (type.text != "torch" && type.text != "torch.cuda")) {
      bad(fmt::format("a storage's type is {}, not a torch storage class", describe(type)));
    }
    const DtypeInfo* dtype = dtype_for_storage(type.name);
    if (!dtype) {
      throw Error(ErrorCode::kInvalidArgument,
                  fmt::format("storage type torch.{} is not supported (Kennel reads Float, Double, "
                              "Half, BFloat16, Long, Int, Short, Char, Byte and Bool storages)",
                              type.name));
    }
    if (key.kind != Kind::kString) bad("a storage key is not a string");
    if (numel.kind != Kind::kInt || numel.integer < 0) bad("a storage size is not a count");

    auto cached = storages_.find(key.text);
    if (cached == storages_.end()) {
      cached = storages_.emplace(key.text, load_storage(key.text, *dtype, numel.integer)).first;
    }
    const at::Tensor& storage = cached->second;
    if (storage.scalar_type() != dtype->type || storage.numel() != numel.integer) {
      bad(fmt::format("storage '{}' is referenced with two different types or sizes", key.text));
    }
    return machine.make_tensor(Kind::kStorage, storage);
  }

  PickleObject* call(detail::PickleMachine& machine, const PickleObject& callable,
                     const PickleObject& args) override {
    if (callable.text != "torch._utils") return nullptr;
    if (callable.name == "_rebuild_tensor_v2" || callable.name == "_rebuild_tensor") {
      return machine.make_tensor(Kind::kTensor, rebuild_tensor(args));
    }
    if (callable.name == "_rebuild_parameter" || callable.name == "_rebuild_parameter_with_state") {
      // (data, requires_grad, backward_hooks[, state]): a state dict wants the data.
      if (args.items.empty() || args.items[0]->kind != Kind::kTensor) {
        bad("torch._utils._rebuild_parameter is not given a tensor");
      }
      return args.items[0];
    }
    return nullptr;
  }

 private:
  [[noreturn]] static void bad(const std::string& message) {
    throw Error(ErrorCode::kDataLoss, message);
  }

  at::Tensor load_storage(const std::string& key, const DtypeInfo& dtype, int64_t numel) {
    const int64_t shape[] = {numel};
    const auto expected = checked_bytes(shape, c10::elementSize(dtype.type));
    if (!expected) bad(fmt::format("storage '{}' claims an impossible size of {} elements", key, numel));
    const std::string record = "data/" + key;
    if (!reader_.hasRecord(record)) {
      bad(fmt::format("the archive has no record '{}' for storage '{}'", record, key));
    }
    auto [data, size] = reader_.getRecord(record);
    if (size != *expected) {
      bad(fmt::format("record '{}' holds {} bytes, but its {} {} elements need {}", record, size,
                      numel, c10::toString(dtype.type), *expected));
    }
    const auto options = at::TensorOptions().dtype(dtype.type);
    if (numel == 0) return at::empty({0}, options);
    // The record's buffer was allocated for us by LibTorch's CPU allocator: hand
    // its ownership to the tensor instead of copying it.
    void* raw = data.get();
    auto owner = std::make_shared<at::DataPtr>(std::move(data));
    return at::from_blob(raw, {numel}, [owner](void*) {}, options);
  }

  static std::vector<int64_t> int_sequence(const PickleObject& object, const char* what) {
    if (object.kind != Kind::kTuple && object.kind != Kind::kList) {
      bad(fmt::format("a tensor's {} is {}, not a tuple", what, describe(object)));
    }
    if (static_cast<int64_t>(object.items.size()) > kMaxDims) {
      bad(fmt::format("a tensor's {} has {} dimensions", what, object.items.size()));
    }
    std::vector<int64_t> values;
    for (const PickleObject* item : object.items) {
      if (item->kind != Kind::kInt || item->integer < 0) {
        bad(fmt::format("a tensor's {} holds {}", what,
                        item->kind == Kind::kInt ? "a negative number" : describe(*item)));
      }
      values.push_back(item->integer);
    }
    return values;
  }

  // _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
  static at::Tensor rebuild_tensor(const PickleObject& args) {
    if (args.items.size() < 4 || args.items[0]->kind != Kind::kStorage ||
        args.items[1]->kind != Kind::kInt) {
      bad("torch._utils._rebuild_tensor_v2 is not given (storage, offset, size, stride, ...)");
    }
    const at::Tensor& storage = args.items[0]->tensor;
    const int64_t offset = args.items[1]->integer;
    const std::vector<int64_t> sizes = int_sequence(*args.items[2], "size");
    const std::vector<int64_t> strides = int_sequence(*args.items[3], "stride");
    if (sizes.size() != strides.size()) {
      bad(fmt::format("a tensor has {} sizes but {} strides", sizes.size(), strides.size()));
    }
    // The highest element the view touches must lie inside the storage.
    const bool empty = std::any_of(sizes.begin(), sizes.end(), [](int64_t size) { return size == 0; });
    int64_t last = offset;
    bool overflow = offset < 0;
    for (size_t d = 0; d < sizes.size() && !empty && !overflow; ++d) {
      int64_t step = 0;
      overflow = __builtin_mul_overflow(sizes[d] - 1, strides[d], &step) ||
                 __builtin_add_overflow(last, step, &last);
    }
    if (overflow || (empty ? offset > storage.numel() : last >= storage.numel())) {
      bad(fmt::format("a tensor of size [{}] (stride [{}], offset {}) reaches past its storage of "
                      "{} elements",
                      fmt::join(sizes, ", "), fmt::join(strides, ", "), offset, storage.numel()));
    }
    return storage.as_strided(sizes, strides, offset);
  }

  caffe2::serialize::PyTorchStreamReader& reader_;
  std::map<std::string, at::Tensor> storages_;
};

bool all_tensors(const PickleObject& dict) {
  return std::all_of(dict.entries.begin(), dict.entries.end(),
                     [](const auto& entry) { return entry.second->kind == Kind::kTensor; });
}

// Finds the state dict in what data.pkl unpickled to.
Result<StateDict> state_dict_from(const PickleObject& root, const fs::path& path) {
  const std::string resave = "save it with torch.save(model.state_dict(), path)";
  if (root.kind == Kind::kCall) {
    return file_error(ErrorCode::kInvalidArgument, path,
                      fmt::format("holds {} (torch.save of a whole model?), not a state dict; {}",
                                  describe(root), resave));
  }
  if (root.kind != Kind::kDict) {
    return file_error(ErrorCode::kInvalidArgument, path,
                      fmt::format("holds {}, not a state dict; {}", describe(root), resave));
  }
  const PickleObject* dict = &root;
  std::string where;
  if (!all_tensors(root)) {
    // A training checkpoint: {"epoch": ..., "state_dict": {...}, "optimizer": ...}.
    for (const char* key : {"state_dict", "model_state_dict", "model"}) {
      const PickleObject* nested = root.find(key);
      if (!nested) continue;
      if (nested->kind != Kind::kDict) {
        return file_error(ErrorCode::kInvalidArgument, path,
                          fmt::format("entry '{}' is {}, not a state dict; {}", key,
                                      describe(*nested), resave));
      }
      dict = nested;
      where = fmt::format(" in entry '{}'", key);
      break;
    }
  }
  StateDict tensors;
  tensors.reserve(dict->entries.size());
  for (const auto& [key, value] : dict->entries) {
    if (key->kind != Kind::kString) {
      return file_error(ErrorCode::kInvalidArgument, path,
                        fmt::format("the state dict{} has a key that is {}, not a name", where,
                                    describe(*key)));
    }
    if (value->kind != Kind::kTensor) {
      std::string hint = dict == &root ? "; a checkpoint should nest the weights under 'state_dict'"
                                       : "";
      return file_error(ErrorCode::kInvalidArgument, path,
                        fmt::format("entry '{}'{} is {}, not a tensor{}", key->text, where,
                                    describe(*value), hint));
    }
    tensors.push_back({key->text, value->tensor});
  }
  // torch.nn.DataParallel saves every name under "module.".
  const std::string prefix = "module.";
  const bool wrapped = !tensors.empty() && std::all_of(tensors.begin(), tensors.end(), [&](const auto& t) {
    return t.name.size() > prefix.size() && t.name.compare(0, prefix.size(), prefix) == 0;
  });
  if (wrapped) {
    for (auto& tensor : tensors) tensor.name.erase(0, prefix.size());
  }
  return tensors;
}

Result<StateDict> read_pth(std::shared_ptr<ReadOnlyFile> file, const fs::path& path) {
  const std::string corrupt_hint = "the file is truncated or corrupt; download or save it again";
  try {
    caffe2::serialize::PyTorchStreamReader reader(std::make_shared<ZipReadAdapter>(file));
    if (reader.hasRecord("constants.pkl") || reader.hasRecord("code/__torch__.py")) {
      return file_error(ErrorCode::kInvalidArgument, path,
                        "is a TorchScript archive (torch.jit.save), not a state dict; save the "
                        "weights with torch.save(model.state_dict(), path)");
    }
    if (!reader.hasRecord("data.pkl")) {
      return file_error(ErrorCode::kInvalidArgument, path,
                        "is a zip archive without a data.pkl record: not a torch.save file");
    }
    if (reader.hasRecord("byteorder")) {
      auto [data, size] = reader.getRecord("byteorder");
      const std::string order(static_cast<const char*>(data.get()), size);
      if (order != "little") {
        return file_error(ErrorCode::kInvalidArgument, path,
                          fmt::format("stores its tensors in '{}' byte order; Kennel reads "
                                      "little-endian files: re-save it on a little-endian machine",
                                      order));
      }
    }
    auto [pickle, pickle_size] = reader.getRecord("data.pkl");
    if (pickle_size > kMaxPickleBytes) {
      return file_error(ErrorCode::kResourceExhausted, path,
                        fmt::format("data.pkl is {} bytes, far more than any state dict needs",
                                    pickle_size));
    }
    detail::PickleMachine machine;
    PthHooks hooks(reader);
    const std::span<const uint8_t> bytes(static_cast<const uint8_t*>(pickle.get()), pickle_size);
    Result<PickleObject*> root = machine.run(bytes, hooks, "data.pkl");
    if (!root.ok()) {
      std::string message = root.status().message();
      if (root.status().code() == ErrorCode::kDataLoss) message += "; " + corrupt_hint;
      return file_error(root.status().code(), path, message);
    }
    return state_dict_from(**root, path);
  } catch (const c10::Error& error) {
    // PyTorchStreamReader reports zip damage as c10::Error.
    return file_error(ErrorCode::kDataLoss, path,
                      fmt::format("not a readable torch.save zip ({}); {}", c10_message(error),
                                  corrupt_hint));
  } catch (const std::bad_alloc&) {
    return file_error(ErrorCode::kResourceExhausted, path,
                      "a record claims more memory than is available; " + corrupt_hint);
  } catch (const std::exception& error) {
    return file_error(ErrorCode::kDataLoss, path,
                      fmt::format("cannot be read ({}); {}", error.what(), corrupt_hint));
  }
}

// ---- safetensors reading --------------------------------------------------------

struct SafetensorsEntry {
  std::string name;
  const DtypeInfo* dtype = nullptr;
  std::vector<int64_t> shape;
  uint64_t begin = 0;
  uint64_t end = 0;
};

Result<SafetensorsEntry> parse_safetensors_entry(const std::string& name,
                                                 const nlohmann::ordered_json& spec,
                                                 const fs::path& path) {
  auto bad = [&](const std::string& what) {
    return file_error(ErrorCode::kDataLoss, path,
                      fmt::format("safetensors header entry '{}' {}; the file is corrupt", name, what));
  };
  if (!spec.is_object()) return bad("is not an object");
  const auto dtype = spec.find("dtype");
  const auto shape = spec.find("shape");
  const auto offsets = spec.find("data_offsets");
  if (dtype == spec.end() || !dtype->is_string()) return bad("has no \"dtype\" string");
  if (shape == spec.end() || !shape->is_array()) return bad("has no \"shape\" array");
  if (offsets == spec.end() || !offsets->is_array() || offsets->size() != 2 ||
      !(*offsets)[0].is_number_unsigned() || !(*offsets)[1].is_number_unsigned()) {
    return bad("has no \"data_offsets\" pair of non-negative integers");
  }
  SafetensorsEntry entry;
  entry.name = name;
  const std::string code = dtype->get<std::string>();
  entry.dtype = dtype_for_safetensors(code);
  if (!entry.dtype) {
    return file_error(ErrorCode::kInvalidArgument, path,
                      fmt::format("tensor '{}' has dtype '{}', which Kennel does not read (it reads {})",
                                  name, code, supported_safetensors_dtypes()));
  }
  if (static_cast<int64_t>(shape->size()) > kMaxDims) return bad("has too many dimensions");
  for (const auto& dim : *shape) {
    if (!dim.is_number_unsigned() || dim.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)) {
      return bad("has a shape that is not a list of non-negative integers");
    }
    entry.shape.push_back(dim.get<int64_t>());
  }
  entry.begin = (*offsets)[0].get<uint64_t>();
  entry.end = (*offsets)[1].get<uint64_t>();
  const auto bytes = checked_bytes(entry.shape, c10::elementSize(entry.dtype->type));
  if (!bytes) return bad("has a shape too large to exist");
  if (entry.end < entry.begin || entry.end - entry.begin != *bytes) {
    return bad(fmt::format("has data_offsets [{}, {}], but shape [{}] of {} needs {} bytes",
                           entry.begin, entry.end, fmt::join(entry.shape, ", "), code, *bytes));
  }
  return entry;
}

Result<StateDict> read_safetensors(const ReadOnlyFile& file, const fs::path& path) {
  auto corrupt = [&](const std::string& what) {
    return file_error(ErrorCode::kDataLoss, path, what + "; the file is truncated or corrupt");
  };
  uint8_t prefix[8];
  if (!file.read_exact(0, prefix, sizeof(prefix))) return corrupt("cannot read the header length");
  uint64_t header_size = 0;
  for (int i = 7; i >= 0; --i) header_size = (header_size << 8) | prefix[i];
  if (header_size > file.size() - 8) {
    return corrupt(fmt::format("safetensors header length {} is larger than the {} bytes that follow it",
                               header_size, file.size() - 8));
  }
  if (header_size > kMaxSafetensorsHeader) {
    return corrupt(fmt::format("safetensors header length {} exceeds the format's limit of {}",
                               header_size, kMaxSafetensorsHeader));
  }
  std::string header(header_size, '\0');
  if (!file.read_exact(8, header.data(), header.size())) return corrupt("cannot read the header");
  const auto json = nlohmann::ordered_json::parse(header, nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded() || !json.is_object()) {
    return corrupt("the safetensors header is not a JSON object");
  }
  std::vector<SafetensorsEntry> entries;
  for (const auto& [name, spec] : json.items()) {
    if (name == "__metadata__") {
      if (!spec.is_object()) return corrupt("the safetensors \"__metadata__\" is not an object");
      continue;
    }
    auto entry = parse_safetensors_entry(name, spec, path);
    if (!entry.ok()) return entry.status();
    entries.push_back(std::move(*entry));
  }
  // The format requires the data to be covered exactly: no overlaps, no holes.
  std::stable_sort(entries.begin(), entries.end(),
                   [](const auto& a, const auto& b) { return a.begin < b.begin; });
  const uint64_t data_start = 8 + header_size;
  const uint64_t data_size = file.size() - data_start;
  uint64_t expected_begin = 0;
  for (size_t i = 0; i < entries.size(); ++i) {
    const auto& entry = entries[i];
    if (entry.begin != expected_begin) {
      const std::string previous =
          i == 0 ? "the start of the data" : fmt::format("tensor '{}'", entries[i - 1].name);
      return corrupt(fmt::format(
          "tensor '{}' data_offsets [{}, {}] {} {} (which ends at {})", entry.name, entry.begin,
          entry.end, entry.begin < expected_begin ? "overlap" : "leave a gap after", previous,
          expected_begin));
    }
    if (entry.end > data_size) {
      return corrupt(fmt::format("tensor '{}' data_offsets [{}, {}] reach past the {} bytes of data",
                                 entry.name, entry.begin, entry.end, data_size));
    }
    expected_begin = entry.end;
  }
  if (expected_begin != data_size) {
    return corrupt(fmt::format("the tensors cover {} of the {} data bytes", expected_begin, data_size));
  }
  StateDict tensors;
  tensors.reserve(entries.size());
  for (const auto& entry : entries) {
    at::Tensor tensor = at::empty(entry.shape, at::TensorOptions().dtype(entry.dtype->type));
    const size_t bytes = entry.end - entry.begin;
    if (bytes > 0 && !file.read_exact(data_start + entry.begin, tensor.data_ptr(), bytes)) {
      return corrupt(fmt::format("cannot read the data of tensor '{}'", entry.name));
    }
    tensors.push_back({entry.name, std::move(tensor)});
  }
  return tensors;
}

// ---- writing --------------------------------------------------------------------

// Contiguous CPU copies of `tensors` (a no-op for ones that already are), checked for writing.
Result<std::vector<at::Tensor>> prepare_for_writing(const StateDict& tensors, const fs::path& path) {
  std::vector<at::Tensor> prepared;
  std::set<std::string_view> seen;
  for (const auto& [name, tensor] : tensors) {
    if (!seen.insert(name).second) {
      return file_error(ErrorCode::kInvalidArgument, path,
                        fmt::format("tensor name '{}' appears twice", name));
    }
    if (!tensor.defined()) {
      return file_error(ErrorCode::kInvalidArgument, path,
                        fmt::format("tensor '{}' is undefined", name));
    }
    if (!dtype_for(tensor.scalar_type())) {
      return file_error(ErrorCode::kInvalidArgument, path,
                        fmt::format("tensor '{}' has dtype {}, which Kennel does not write",
                                    name, c10::toString(tensor.scalar_type())));
    }
    prepared.push_back(tensor.detach().to(at::kCPU).contiguous());
  }
  return prepared;
}

// Emits the protocol 2 opcodes torch.save's pickler would for a state dict.
class PickleWriter {
 public:
  PickleWriter() { bytes_ = "\x80\x02"; }  // PROTO 2

  void op(char opcode) { bytes_.push_back(opcode); }
  void global(const std::string& module, const std::string& name) {
    const std::string key = module + "\n" + name + "\n";
    auto memo = memo_.find(key);
    if (memo != memo_.end()) {
      memo_op('h', 'j', memo->second);  // BINGET / LONG_BINGET
      return;
    }
    op('c');  // GLOBAL
    bytes_ += key;
    const auto index = static_cast<uint32_t>(memo_.size());
    memo_.emplace(key, index);
    memo_op('q', 'r', index);  // BINPUT / LONG_BINPUT
  }
  void unicode(std::string_view text) {
    op('X');  // BINUNICODE
    le32(static_cast<uint32_t>(text.size()));
    bytes_ += text;
  }
  void integer(int64_t value) {
    if (value >= 0 && value < 256) {
      op('K');  // BININT1
      byte(static_cast<uint32_t>(value));
    } else if (value >= 0 && value < 65536) {
      op('M');  // BININT2
      byte(static_cast<uint32_t>(value & 0xff));
      byte(static_cast<uint32_t>(value >> 8));
    } else if (value >= INT32_MIN && value <= INT32_MAX) {
      op('J');  // BININT
      le32(static_cast<uint32_t>(static_cast<int32_t>(value)));
    } else {
      op('\x8a');  // LONG1, 8 bytes of two's complement
      byte(8);
      for (int i = 0; i < 8; ++i) byte(static_cast<uint32_t>((static_cast<uint64_t>(value) >> (8 * i)) & 0xff));
    }
  }
  void int_tuple(at::IntArrayRef values) {
    if (values.empty()) {
      op(')');  // EMPTY_TUPLE
      return;
    }
    if (values.size() > 3) op('(');     // MARK
    for (int64_t value : values) integer(value);
    static constexpr char kTupleOps[] = {0, '\x85', '\x86', '\x87'};  // TUPLE1..3
    op(values.size() > 3 ? 't' : kTupleOps[values.size()]);
  }
  const std::string& bytes() const { return bytes_; }

 private:
  void byte(uint32_t value) { bytes_.push_back(static_cast<char>(value)); }
  void memo_op(char short_op, char long_op, uint32_t index) {
    if (index < 256) {
      op(short_op);
      byte(index);
    } else {
      op(long_op);
      le32(index);
    }
  }
  void le32(uint32_t value) {
    for (int i = 0; i < 4; ++i) byte((value >> (8 * i)) & 0xff);
  }
  std::string bytes_;
  std::map<std::string, uint32_t> memo_;
};

// OrderedDict([(name, _rebuild_tensor_v2(storage_i, 0, size, stride, False, OrderedDict())), ...])
std::string state_dict_pickle(const StateDict& tensors, const std::vector<at::Tensor>& prepared) {
  PickleWriter pickle;
  pickle.global("collections", "OrderedDict");
  pickle.op(')');  // EMPTY_TUPLE
  pickle.op('R');  // REDUCE
  pickle.op('(');  // MARK
  for (size_t i = 0; i < tensors.size(); ++i) {
    const at::Tensor& tensor = prepared[i];
    pickle.unicode(tensors[i].name);
    pickle.global("torch._utils", "_rebuild_tensor_v2");
    pickle.op('(');  // MARK: the arguments
    pickle.op('(');  // MARK: the persistent id
    pickle.unicode("storage");
    pickle.global("torch", dtype_for(tensor.scalar_type())->storage);
    pickle.unicode(std::to_string(i));
    pickle.unicode("cpu");
    pickle.integer(tensor.numel());
    pickle.op('t');  // TUPLE
    pickle.op('Q');  // BINPERSID
    pickle.integer(0);  // storage offset
    pickle.int_tuple(tensor.sizes());
    pickle.int_tuple(tensor.strides());
    pickle.op('\x89');  // NEWFALSE: requires_grad
    pickle.global("collections", "OrderedDict");  // backward_hooks
    pickle.op(')');
    pickle.op('R');
    pickle.op('t');  // TUPLE
    pickle.op('R');  // REDUCE
  }
  pickle.op('u');  // SETITEMS
  pickle.op('.');  // STOP
  return pickle.bytes();
}

}  // namespace

const char* weight_format_name(WeightFormat format) {
  return format == WeightFormat::kPth ? "pth" : "safetensors";
}

Result<WeightFormat> detect_weight_format(const fs::path& path) {
  auto file = ReadOnlyFile::open(path);
  if (!file.ok()) return file.status();
  return detect_format(**file, path);
}

Result<StateDict> read_weight_file(const fs::path& path) {
  auto file = ReadOnlyFile::open(path);
  if (!file.ok()) return file.status();
  auto format = detect_format(**file, path);
  if (!format.ok()) return format.status();
  try {
    if (*format == WeightFormat::kPth) return read_pth(*file, path);
    return read_safetensors(**file, path);
  } catch (const std::bad_alloc&) {
    return file_error(ErrorCode::kResourceExhausted, path, "not enough memory to hold its tensors");
  } catch (const c10::Error& error) {
    return file_error(ErrorCode::kResourceExhausted, path,
                      fmt::format("cannot hold its tensors ({})", c10_message(error)));
  }
}

Status write_safetensors(const fs::path& path, const StateDict& tensors,
                         const std::map<std::string, std::string>& metadata) {
  try {
    auto prepared = prepare_for_writing(tensors, path);
    if (!prepared.ok()) return prepared.status();
    std::vector<size_t> order(tensors.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::sort(order.begin(), order.end(),
              [&](size_t a, size_t b) { return tensors[a].name < tensors[b].name; });

    nlohmann::ordered_json header = nlohmann::ordered_json::object();
    if (!metadata.empty()) header["__metadata__"] = metadata;
    uint64_t offset = 0;
    for (size_t i : order) {
      const std::string& name = tensors[i].name;
      if (name == "__metadata__") {
        return file_error(ErrorCode::kInvalidArgument, path,
                          "'__metadata__' is reserved by safetensors and cannot name a tensor");
      }
      const at::Tensor& tensor = (*prepared)[i];
      const uint64_t bytes = tensor.nbytes();
      header[name] = {{"dtype", dtype_for(tensor.scalar_type())->safetensors},
                      {"shape", tensor.sizes().vec()},
                      {"data_offsets", {offset, offset + bytes}}};
      offset += bytes;
    }
    std::string text = header.dump();
    // Pad with spaces so the data starts 8-byte aligned, as the reference writer does.
    text.append((8 - (8 + text.size()) % 8) % 8, ' ');

    std::string file;
    file.reserve(8 + text.size() + offset);
    for (int i = 0; i < 8; ++i) file.push_back(static_cast<char>((text.size() >> (8 * i)) & 0xff));
    file += text;
    for (size_t i : order) {
      const at::Tensor& tensor = (*prepared)[i];
      file.append(static_cast<const char*>(tensor.data_ptr()), tensor.nbytes());
    }
    return write_file_atomic(path, file);
  } catch (const std::exception& error) {
    return file_error(ErrorCode::kInternal, path, fmt::format("cannot be written: {}", error.what()));
  }
}

Status write_pth(const fs::path& path, const StateDict& tensors) {
  try {
    auto prepared = prepare_for_writing(tensors, path);
    if (!prepared.ok()) return prepared.status();
    const std::string pickle = state_dict_pickle(tensors, *prepared);

    std::string file;
    // The writer_func constructor names the archive folder "archive", as
    // torch.save does when given a file object.
    caffe2::serialize::PyTorchStreamWriter writer([&file](const void* data, size_t size) {
      file.append(static_cast<const char*>(data), size);
      return size;
    });
    writer.writeRecord("data.pkl", pickle.data(), pickle.size());
    static const char kNothing = 0;  // a valid pointer for empty records
    for (size_t i = 0; i < prepared->size(); ++i) {
      const at::Tensor& tensor = (*prepared)[i];
      const void* data = tensor.nbytes() > 0 ? tensor.data_ptr() : &kNothing;
      writer.writeRecord("data/" + std::to_string(i), data, tensor.nbytes());
    }
    writer.writeEndOfFile();  // adds the "version" record ("3\n") and the zip directory
    return write_file_atomic(path, file);
  } catch (const c10::Error& error) {
    return file_error(ErrorCode::kInternal, path,
                      fmt::format("cannot be written: {}", c10_message(error)));
  } catch (const std::exception& error) {
    return file_error(ErrorCode::kInternal, path, fmt::format("cannot be written: {}", error.what()));
  }
}

Status write_weight_file(const fs::path& path, const StateDict& tensors) {
  std::string extension = path.extension().string();
  std::transform(extension.begin(), extension.end(), extension.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (extension == ".safetensors") return write_safetensors(path, tensors);
  if (extension == ".pth" || extension == ".pt" || extension == ".bin") return write_pth(path, tensors);
  return file_error(ErrorCode::kInvalidArgument, path,
                    fmt::format("has extension '{}'; name it .safetensors, .pth or .pt", extension));
}

}  // namespace kennel::models
