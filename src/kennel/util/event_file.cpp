#include "kennel/util/event_file.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>

#include "kennel/util/fs.h"
#include "kennel/util/hash.h"

namespace kennel {

namespace {

// Protobuf wire format: the handful of field kinds Event/Summary use.
enum WireType : uint32_t { kVarint = 0, kFixed64 = 1, kLengthDelimited = 2, kFixed32 = 5 };

void put_varint(std::string& out, uint64_t value) {
  while (value >= 0x80) {
    out.push_back(static_cast<char>((value & 0x7F) | 0x80));
    value >>= 7;
  }
  out.push_back(static_cast<char>(value));
}
void put_key(std::string& out, uint32_t field, WireType type) { put_varint(out, (field << 3) | type); }
template <typename T>
void put_fixed(std::string& out, T value) {
  char bytes[sizeof(T)];
  std::memcpy(bytes, &value, sizeof(T));  // little-endian host (x86-64, aarch64)
  out.append(bytes, sizeof(T));
}
void put_double(std::string& out, uint32_t field, double value) {
  put_key(out, field, kFixed64);
  put_fixed(out, value);
}
void put_bytes(std::string& out, uint32_t field, const std::string& bytes) {
  put_key(out, field, kLengthDelimited);
  put_varint(out, bytes.size());
  out += bytes;
}
void put_packed_doubles(std::string& out, uint32_t field, const std::vector<double>& values) {
  std::string packed;
  for (double value : values) put_fixed(packed, value);
  put_bytes(out, field, packed);
}

std::string event_header(double wall_time, int64_t step) {
  std::string event;
  put_double(event, 1, wall_time);
  put_key(event, 2, kVarint);
  put_varint(event, static_cast<uint64_t>(step));
  return event;
}

std::string encode_histogram(const Histogram& h) {
  std::string proto;
  put_double(proto, 1, h.min);
  put_double(proto, 2, h.max);
  put_double(proto, 3, h.num);
  put_double(proto, 4, h.sum);
  put_double(proto, 5, h.sum_squares);
  put_packed_doubles(proto, 6, h.bucket_limits);
  put_packed_doubles(proto, 7, h.bucket_counts);
  return proto;
}

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// ---- decoding --------------------------------------------------------------
class ProtoReader {
 public:
  ProtoReader(const char* data, size_t size) : data_(data), size_(size) {}
  bool done() const { return pos_ >= size_; }
  bool read_varint(uint64_t& value) {
    value = 0;
    for (int shift = 0; shift < 64 && pos_ < size_; shift += 7) {
      const auto byte = static_cast<uint8_t>(data_[pos_++]);
      value |= uint64_t{byte & 0x7Fu} << shift;
      if ((byte & 0x80) == 0) return true;
    }
    return false;
  }
  template <typename T>
  bool read_fixed(T& value) {
    if (size_ - pos_ < sizeof(T)) return false;
    std::memcpy(&value, data_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return true;
  }
  bool read_bytes(std::string& bytes) {
    uint64_t length = 0;
    if (!read_varint(length) || length > size_ - pos_) return false;
    bytes.assign(data_ + pos_, length);
    pos_ += length;
    return true;
  }
  bool skip(WireType type) {
    uint64_t ignored_varint;
    uint64_t ignored64;
    uint32_t ignored32;
    std::string ignored_bytes;
    switch (type) {
      case kVarint: return read_varint(ignored_varint);
      case kFixed64: return read_fixed(ignored64);
      case kFixed32: return read_fixed(ignored32);
      case kLengthDelimited: return read_bytes(ignored_bytes);
    }
    return false;
  }

 private:
  const char* data_;
  size_t size_;
  size_t pos_ = 0;
};

std::vector<double> unpack_doubles(const std::string& bytes) {
  std::vector<double> values(bytes.size() / sizeof(double));
  std::memcpy(values.data(), bytes.data(), values.size() * sizeof(double));
  return values;
}

bool decode_histogram(const std::string& bytes, Histogram& h) {
  ProtoReader reader(bytes.data(), bytes.size());
  while (!reader.done()) {
    uint64_t key;
    if (!reader.read_varint(key)) return false;
    const auto field = static_cast<uint32_t>(key >> 3);
    const auto type = static_cast<WireType>(key & 7);
    double* scalar_fields[] = {nullptr, &h.min, &h.max, &h.num, &h.sum, &h.sum_squares};
    if (field >= 1 && field <= 5 && type == kFixed64) {
      if (!reader.read_fixed(*scalar_fields[field])) return false;
    } else if ((field == 6 || field == 7) && type == kLengthDelimited) {
      std::string packed;
      if (!reader.read_bytes(packed)) return false;
      (field == 6 ? h.bucket_limits : h.bucket_counts) = unpack_doubles(packed);
    } else if (!reader.skip(type)) {
      return false;
    }
  }
  return true;
}

bool decode_summary_value(const std::string& bytes, EventRecord& record) {
  ProtoReader reader(bytes.data(), bytes.size());
  while (!reader.done()) {
    uint64_t key;
    if (!reader.read_varint(key)) return false;
    const auto field = static_cast<uint32_t>(key >> 3);
    const auto type = static_cast<WireType>(key & 7);
    if (field == 1 && type == kLengthDelimited) {
      if (!reader.read_bytes(record.tag)) return false;
    } else if (field == 2 && type == kFixed32) {
      float value;
      if (!reader.read_fixed(value)) return false;
      record.scalar = value;
    } else if (field == 5 && type == kLengthDelimited) {
      std::string histo;
      Histogram h;
      if (!reader.read_bytes(histo) || !decode_histogram(histo, h)) return false;
      record.histogram = std::move(h);
    } else if (!reader.skip(type)) {
      return false;
    }
  }
  return true;
}

// One Event may carry several summary values; each becomes its own record.
bool decode_event(const std::string& bytes, std::vector<EventRecord>& out) {
  ProtoReader reader(bytes.data(), bytes.size());
  EventRecord base;
  std::vector<std::string> values;
  while (!reader.done()) {
    uint64_t key;
    if (!reader.read_varint(key)) return false;
    const auto field = static_cast<uint32_t>(key >> 3);
    const auto type = static_cast<WireType>(key & 7);
    if (field == 1 && type == kFixed64) {
      if (!reader.read_fixed(base.wall_time)) return false;
    } else if (field == 2 && type == kVarint) {
      uint64_t step;
      if (!reader.read_varint(step)) return false;
      base.step = static_cast<int64_t>(step);
    } else if (field == 3 && type == kLengthDelimited) {
      if (!reader.read_bytes(base.file_version)) return false;
    } else if (field == 5 && type == kLengthDelimited) {
      std::string summary;
      if (!reader.read_bytes(summary)) return false;
      ProtoReader summary_reader(summary.data(), summary.size());
      while (!summary_reader.done()) {
        uint64_t summary_key;
        std::string value;
        if (!summary_reader.read_varint(summary_key)) return false;
        if ((summary_key >> 3) == 1 && (summary_key & 7) == kLengthDelimited) {
          if (!summary_reader.read_bytes(value)) return false;
          values.push_back(std::move(value));
        } else if (!summary_reader.skip(static_cast<WireType>(summary_key & 7))) {
          return false;
        }
      }
    } else if (!reader.skip(type)) {
      return false;
    }
  }
  if (values.empty()) {
    out.push_back(base);
    return true;
  }
  for (const auto& value : values) {
    EventRecord record = base;
    if (!decode_summary_value(value, record)) return false;
    out.push_back(std::move(record));
  }
  return true;
}

}  // namespace

std::string encode_scalar_event(double wall_time, int64_t step, const std::string& tag, float value) {
  std::string summary_value;
  put_bytes(summary_value, 1, tag);
  put_key(summary_value, 2, kFixed32);
  put_fixed(summary_value, value);
  std::string summary;
  put_bytes(summary, 1, summary_value);
  std::string event = event_header(wall_time, step);
  put_bytes(event, 5, summary);
  return event;
}

std::string encode_histogram_event(double wall_time, int64_t step, const std::string& tag,
                                   const Histogram& histogram) {
  std::string summary_value;
  put_bytes(summary_value, 1, tag);
  put_bytes(summary_value, 5, encode_histogram(histogram));
  std::string summary;
  put_bytes(summary, 1, summary_value);
  std::string event = event_header(wall_time, step);
  put_bytes(event, 5, summary);
  return event;
}

std::string encode_file_version_event(double wall_time) {
  std::string event = event_header(wall_time, 0);
  put_bytes(event, 3, "brain.Event:2");
  return event;
}

std::string frame_tfrecord(const std::string& payload) {
  std::string record;
  const uint64_t length = payload.size();
  put_fixed(record, length);
  put_fixed(record, masked_crc32c(&length, sizeof(length)));
  record += payload;
  put_fixed(record, masked_crc32c(payload.data(), payload.size()));
  return record;
}

Result<std::unique_ptr<EventFileWriter>> EventFileWriter::open(const std::filesystem::path& dir) {
  KENNEL_RETURN_IF_ERROR(kennel::create_directories(dir));
  char host[256] = "localhost";
  ::gethostname(host, sizeof(host) - 1);
  const double now = now_seconds();
  const auto path = dir / fmt::format("events.out.tfevents.{}.{}.{}.kennel", static_cast<int64_t>(now),
                                      host, ::getpid());
  std::FILE* file = std::fopen(path.c_str(), "ab");
  if (file == nullptr) {
    return Status(ErrorCode::kPermissionDenied,
                  fmt::format("cannot create event file '{}': {}", path.string(), std::strerror(errno)));
  }
  std::unique_ptr<EventFileWriter> writer(new EventFileWriter(path, file));
  writer->write_record(encode_file_version_event(now));
  return writer;
}

EventFileWriter::~EventFileWriter() { std::fclose(file_); }

void EventFileWriter::add_scalar(const std::string& tag, int64_t step, float value) {
  write_record(encode_scalar_event(now_seconds(), step, tag, value));
}

void EventFileWriter::add_histogram(const std::string& tag, int64_t step, const Histogram& histogram) {
  write_record(encode_histogram_event(now_seconds(), step, tag, histogram));
}

void EventFileWriter::write_record(const std::string& payload) {
  const std::string record = frame_tfrecord(payload);
  std::lock_guard lock(mutex_);
  std::fwrite(record.data(), 1, record.size(), file_);
  std::fflush(file_);
}

namespace {

// Calls `frame(payload, begin, end)` for every whole record of an event file's
// bytes, checking both CRCs; stops at a torn final record.
Status for_each_frame(const std::filesystem::path& path, const std::vector<uint8_t>& bytes,
                      const std::function<Status(const std::string&, size_t, size_t)>& frame) {
  const auto* data = reinterpret_cast<const char*>(bytes.data());
  const size_t size = bytes.size();
  size_t pos = 0;
  while (pos < size) {
    if (size - pos < 12) break;  // torn header of a final record
    uint64_t length;
    uint32_t length_crc;
    std::memcpy(&length, data + pos, 8);
    std::memcpy(&length_crc, data + pos + 8, 4);
    if (length_crc != masked_crc32c(&length, 8)) {
      return Status(ErrorCode::kDataLoss, fmt::format("event file '{}': bad length CRC at offset {}",
                                                      path.string(), pos));
    }
    if (length > size - pos - 12 || size - pos - 12 - length < 4) break;  // torn final record
    std::string payload(data + pos + 12, length);
    uint32_t payload_crc;
    std::memcpy(&payload_crc, data + pos + 12 + length, 4);
    if (payload_crc != masked_crc32c(payload.data(), payload.size())) {
      return Status(ErrorCode::kDataLoss, fmt::format("event file '{}': bad data CRC at offset {}",
                                                      path.string(), pos));
    }
    const size_t end = pos + 12 + length + 4;
    KENNEL_RETURN_IF_ERROR(frame(payload, pos, end));
    pos = end;
  }
  return {};
}

Status malformed_event(const std::filesystem::path& path, size_t offset) {
  return Status(ErrorCode::kDataLoss, fmt::format("event file '{}': malformed event at offset {}",
                                                  path.string(), offset));
}

}  // namespace

Result<std::vector<EventRecord>> read_event_file(const std::filesystem::path& path) {
  auto bytes = read_file_bytes(path);
  if (!bytes.ok()) return bytes.status();
  std::vector<EventRecord> records;
  KENNEL_RETURN_IF_ERROR(for_each_frame(path, *bytes, [&](const std::string& payload, size_t begin, size_t) {
    return decode_event(payload, records) ? Status() : malformed_event(path, begin);
  }));
  return records;
}

Result<int64_t> drop_events(const std::filesystem::path& dir,
                            const std::function<bool(const EventRecord&)>& superseded) {
  std::error_code error;
  if (!std::filesystem::is_directory(dir, error)) return int64_t{0};
  std::vector<std::filesystem::path> files;
  for (std::filesystem::directory_iterator it(dir, error), end; !error && it != end; it.increment(error)) {
    if (it->path().filename().string().find("tfevents") != std::string::npos && it->is_regular_file(error)) {
      files.push_back(it->path());
    }
  }
  if (error) {
    return Status(ErrorCode::kPermissionDenied, fmt::format("cannot list '{}': {}", dir.string(), error.message()));
  }
  int64_t dropped = 0;
  for (const auto& path : files) {
    auto bytes = read_file_bytes(path);
    if (!bytes.ok()) return bytes.status();
    std::string kept;
    size_t whole = 0;  // bytes of whole records: a torn tail is dropped too
    int64_t dropped_here = 0;
    KENNEL_RETURN_IF_ERROR(for_each_frame(path, *bytes, [&](const std::string& payload, size_t begin, size_t end) {
      std::vector<EventRecord> records;
      if (!decode_event(payload, records)) return malformed_event(path, begin);
      whole = end;
      if (std::any_of(records.begin(), records.end(), superseded)) {
        ++dropped_here;
      } else {
        kept.append(reinterpret_cast<const char*>(bytes->data()) + begin, end - begin);
      }
      return Status();
    }));
    if (dropped_here == 0 && whole == bytes->size()) continue;
    KENNEL_RETURN_IF_ERROR(write_file_atomic(path, kept));
    dropped += dropped_here;
  }
  return dropped;
}

}  // namespace kennel
