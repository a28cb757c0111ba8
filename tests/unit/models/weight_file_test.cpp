// Weight files: safetensors and torch.save's zip, read and written, and every
// way a damaged or hostile file must fail cleanly (a Status, never a crash).
#include "kennel/models/weight_file.h"

#include <algorithm>
#include <cstring>
#include <fstream>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <caffe2/serialize/inline_container.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "kennel/models/detail/pickle_reader.h"
#include "unit/test_util.h"

namespace kennel::models {
namespace {

using detail::PickleMachine;
using detail::PickleObject;
using kennel::testing::TempDir;
using Bytes = std::vector<uint8_t>;

// ---- fixtures ----------------------------------------------------------------

// data.pkl exactly as Python's torch 1.13 torch.save wrote it, made by:
//   m = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.BatchNorm1d(3))
//   torch.save(m.state_dict(), buf)
// An OrderedDict whose _metadata is set by BUILD; storages '0'..'5' are float
// (6, 3, 3, 3, 3, 3 elements), '6' is num_batches_tracked: a 0-dim LongStorage.
constexpr const char* kModuleStateDictPickle =
    "800263636f6c6c656374696f6e730a4f726465726564446963740a710029527101285808000000302e7765696768"
    "74710263746f7263682e5f7574696c730a5f72656275696c645f74656e736f725f76320a71032828580700000073"
    "746f72616765710463746f7263680a466c6f617453746f726167650a710558010000003071065803000000637075"
    "71074b06747108514b004b034b028671094b024b0186710a8968002952710b74710c52710d5806000000302e6269"
    "6173710e6803282868046805580100000031710f68074b03747110514b004b038571114b01857112896800295271"
    "137471145271155808000000312e77656967687471166803282868046805580100000032711768074b0374711851"
    "4b004b038571194b0185711a8968002952711b74711c52711d5806000000312e62696173711e6803282868046805"
    "580100000033711f68074b03747120514b004b038571214b0185712289680029527123747124527125580e000000"
    "312e72756e6e696e675f6d65616e71266803282868046805580100000034712768074b03747128514b004b038571"
    "294b0185712a8968002952712b74712c52712d580d000000312e72756e6e696e675f766172712e68032828680468"
    "05580100000035712f68074b03747130514b004b038571314b018571328968002952713374713452713558150000"
    "00312e6e756d5f626174636865735f747261636b6564713668032828680463746f7263680a4c6f6e6753746f7261"
    "67650a7137580100000036713868074b01747139514b0029298968002952713a74713b52713c757d713d58090000"
    "005f6d65746164617461713e68002952713f28580000000071407d7141580700000076657273696f6e71424b0173"
    "58010000003071437d714468424b017358010000003171457d714668424b02737573622e";

// data.pkl of a training checkpoint, made by:
//   base = torch.arange(12, dtype=torch.float32)
//   sd = OrderedDict(); sd["module.t"] = base.reshape(3, 4).t(); sd["module.s"] = base[3:7]
//   for n, dt in [("h", float16), ("b", bool), ("i8", int8), ("bf", bfloat16), ("f64", float64),
//                 ("i32", int32), ("i16", int16), ("u8", uint8), ("i64", int64)]:
//       sd["module." + n] = torch.zeros(2, 2, dtype=dt)
//   sd["module.scalar"] = torch.tensor(7); sd["module.p"] = torch.nn.Parameter(torch.zeros(2))
//   torch.save({"epoch": 3, "best": 0.5, "arch": "tiny", "state_dict": sd, "optimizer":
//               {"state": {}, "param_groups": [{"lr": 0.1, "momentum": 0.9, "nesterov": True,
//                                               "params": [0, 1, 2**40, -5]}]}}, buf)
// "module.t" and "module.s" are views of one storage ('0', 12 floats).
constexpr const char* kCheckpointPickle =
    "80027d710028580500000065706f636871014b035804000000626573747102473fe0000000000000580400000061"
    "7263687103580400000074696e797104580a00000073746174655f64696374710563636f6c6c656374696f6e730a"
    "4f726465726564446963740a7106295271072858080000006d6f64756c652e74710863746f7263682e5f7574696c"
    "730a5f72656275696c645f74656e736f725f76320a71092828580700000073746f72616765710a63746f7263680a"
    "466c6f617453746f726167650a710b580100000030710c5803000000637075710d4b0c74710e514b004b044b0386"
    "710f4b014b048671108968062952711174711252711358080000006d6f64756c652e73711468092828680a680b68"
    "0c680d4b0c747115514b034b048571164b018571178968062952711874711952711a58080000006d6f64756c652e"
    "68711b68092828680a63746f7263680a48616c6653746f726167650a711c580100000031711d680d4b0474711e51"
    "4b004b024b0286711f4b024b018671208968062952712174712252712358080000006d6f64756c652e6271246809"
    "2828680a63746f7263680a426f6f6c53746f726167650a71255801000000327126680d4b04747127514b004b024b"
    "028671284b024b018671298968062952712a74712b52712c58090000006d6f64756c652e6938712d68092828680a"
    "63746f7263680a4368617253746f726167650a712e580100000033712f680d4b04747130514b004b024b02867131"
    "4b024b018671328968062952713374713452713558090000006d6f64756c652e6266713668092828680a63746f72"
    "63680a42466c6f6174313653746f726167650a71375801000000347138680d4b04747139514b004b024b0286713a"
    "4b024b0186713b8968062952713c74713d52713e580a0000006d6f64756c652e663634713f68092828680a63746f"
    "7263680a446f75626c6553746f726167650a71405801000000357141680d4b04747142514b004b024b028671434b"
    "024b0186714489680629527145747146527147580a0000006d6f64756c652e693332714868092828680a63746f72"
    "63680a496e7453746f726167650a7149580100000036714a680d4b0474714b514b004b024b0286714c4b024b0186"
    "714d8968062952714e74714f527150580a0000006d6f64756c652e693136715168092828680a63746f7263680a53"
    "686f727453746f726167650a71525801000000377153680d4b04747154514b004b024b028671554b024b01867156"
    "8968062952715774715852715958090000006d6f64756c652e7538715a68092828680a63746f7263680a42797465"
    "53746f726167650a715b580100000038715c680d4b0474715d514b004b024b0286715e4b024b0186715f89680629"
    "527160747161527162580a0000006d6f64756c652e693634716368092828680a63746f7263680a4c6f6e6753746f"
    "726167650a71645801000000397165680d4b04747166514b004b024b028671674b024b0186716889680629527169"
    "74716a52716b580d0000006d6f64756c652e7363616c6172716c68092828680a686458020000003130716d680d4b"
    "0174716e514b0029298968062952716f74717052717158080000006d6f64756c652e70717263746f7263682e5f75"
    "74696c730a5f72656275696c645f706172616d657465720a717368092828680a680b580200000031317174680d4b"
    "02747175514b004b028571764b018571778968062952717874717952717a8868062952717b87717c52717d755809"
    "0000006f7074696d697a6572717e7d717f285805000000737461746571807d7181580c000000706172616d5f6772"
    "6f75707371825d71837d71842858020000006c727185473fb999999999999a58080000006d6f6d656e74756d7186"
    "473feccccccccccccd58080000006e65737465726f767187885806000000706172616d7371885d7189284b004b01"
    "8a060000000000014afbffffff65756175752e";

Bytes from_hex(const char* hex) {
  Bytes bytes;
  for (size_t i = 0; hex[i] && hex[i + 1]; i += 2) {
    bytes.push_back(static_cast<uint8_t>(std::stoi(std::string(hex + i, 2), nullptr, 16)));
  }
  return bytes;
}

// The bytes of a string literal, embedded NULs included.
template <size_t N>
Bytes bytes_of(const char (&literal)[N]) {
  return Bytes(literal, literal + N - 1);
}

Bytes read_bytes(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return Bytes(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

struct Storage {
  std::string key;
  at::Tensor data;
};

// A zip laid out as torch.save lays it out (LibTorch's writer is the one Python uses).
void write_torch_save_zip(const std::filesystem::path& path, const Bytes& pickle,
                          const std::vector<Storage>& storages) {
  caffe2::serialize::PyTorchStreamWriter writer(path.string());
  writer.writeRecord("data.pkl", pickle.data(), pickle.size());
  for (const auto& storage : storages) {
    writer.writeRecord("data/" + storage.key, storage.data.data_ptr(), storage.data.nbytes());
  }
  writer.writeEndOfFile();
}

// Storage `index` of a fixture holds arange(numel) + 10 * index.
at::Tensor storage_values(int index, int64_t numel, at::ScalarType type) {
  at::Tensor values = at::arange(numel, at::kDouble) + 10.0 * index;
  if (type == at::kBool) values = values.remainder(2);
  return values.to(type);
}

std::vector<Storage> module_storages() {
  std::vector<Storage> storages;
  const int64_t numels[] = {6, 3, 3, 3, 3, 3};
  for (int i = 0; i < 6; ++i) storages.push_back({std::to_string(i), storage_values(i, numels[i], at::kFloat)});
  storages.push_back({"6", at::full({1}, 42, at::kLong)});
  return storages;
}

std::vector<Storage> checkpoint_storages() {
  std::vector<Storage> storages = {{"0", at::arange(12, at::kFloat)}};
  const at::ScalarType types[] = {at::kHalf, at::kBool, at::kChar, at::kBFloat16, at::kDouble,
                                  at::kInt, at::kShort, at::kByte, at::kLong};
  for (int i = 0; i < 9; ++i) storages.push_back({std::to_string(i + 1), storage_values(i + 1, 4, types[i])});
  storages.push_back({"10", at::full({1}, 7, at::kLong)});
  storages.push_back({"11", storage_values(11, 2, at::kFloat)});
  return storages;
}

// Every dtype, a 0-dim tensor, an empty one and a non-contiguous one.
StateDict all_dtypes() {
  StateDict tensors;
  const at::ScalarType types[] = {at::kFloat, at::kDouble, at::kHalf, at::kBFloat16, at::kLong,
                                  at::kInt, at::kShort, at::kChar, at::kByte, at::kBool};
  int index = 0;
  for (at::ScalarType type : types) {
    at::Tensor values = (at::arange(24, at::kDouble).reshape({2, 3, 4}) - 7.0) * 1.5;
    if (type == at::kBool) values = values.gt(0);
    if (type == at::kByte) values = values.abs();
    tensors.push_back({"layer" + std::to_string(index++) + "." + c10::toString(type), values.to(type)});
  }
  tensors.push_back({"bn.num_batches_tracked", at::scalar_tensor(int64_t{12345678901}, at::kLong)});
  tensors.push_back({"empty", at::empty({0, 3}, at::kFloat)});
  tensors.push_back({"transposed", at::arange(6, at::kFloat).reshape({2, 3}).t()});
  tensors.push_back({"big.values", at::tensor({-1e30f, 3.5f, 70000.0f})});
  return tensors;
}

void expect_same(const StateDict& actual, const StateDict& expected) {
  ASSERT_EQ(actual.size(), expected.size());
  for (size_t i = 0; i < expected.size(); ++i) {
    SCOPED_TRACE(expected[i].name);
    EXPECT_EQ(actual[i].name, expected[i].name);
    EXPECT_EQ(actual[i].tensor.scalar_type(), expected[i].tensor.scalar_type());
    EXPECT_EQ(actual[i].tensor.sizes(), expected[i].tensor.sizes());
    EXPECT_TRUE(at::equal(actual[i].tensor, expected[i].tensor));
  }
}

StateDict sorted_by_name(StateDict tensors) {
  std::stable_sort(tensors.begin(), tensors.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  return tensors;
}

// Reading must fail with a Status that names the file; a crash fails the whole binary.
void expect_read_error(const std::filesystem::path& path, std::initializer_list<ErrorCode> codes,
                       const std::string& fragment = "") {
  auto result = read_weight_file(path);
  ASSERT_FALSE(result.ok()) << "read " << path << " unexpectedly";
  EXPECT_NE(std::find(codes.begin(), codes.end(), result.status().code()), codes.end())
      << result.status().to_string();
  EXPECT_NE(result.status().message().find(path.filename().string()), std::string::npos)
      << result.status().message();
  if (!fragment.empty()) {
    EXPECT_NE(result.status().message().find(fragment), std::string::npos) << result.status().message();
  }
}

// A safetensors file from a header and a data section.
Bytes safetensors_bytes(const std::string& header, const Bytes& data, uint64_t declared_size = 0) {
  const uint64_t size = declared_size ? declared_size : header.size();
  Bytes bytes;
  for (int i = 0; i < 8; ++i) bytes.push_back(static_cast<uint8_t>(size >> (8 * i)));
  bytes.insert(bytes.end(), header.begin(), header.end());
  bytes.insert(bytes.end(), data.begin(), data.end());
  return bytes;
}

// ---- safetensors ----------------------------------------------------------------

TEST(SafetensorsTest, RoundTripsEveryDtypeAndMetadata) {
  TempDir dir;
  const StateDict tensors = all_dtypes();
  ASSERT_TRUE(write_safetensors(dir / "w.safetensors", tensors, {{"format", "pt"}, {"arch", "resnet18"}}).ok());
  auto read = read_weight_file(dir / "w.safetensors");
  ASSERT_TRUE(read.ok()) << read.status().to_string();
  // Written in name order, read back in file order.
  expect_same(*read, sorted_by_name(tensors));
  EXPECT_TRUE(read->back().tensor.is_contiguous());

  const Bytes bytes = read_bytes(dir / "w.safetensors");
  uint64_t header_size = 0;
  for (int i = 7; i >= 0; --i) header_size = (header_size << 8) | bytes[i];
  EXPECT_EQ((8 + header_size) % 8, 0u) << "data should start 8-byte aligned";
  const auto header = nlohmann::json::parse(bytes.begin() + 8, bytes.begin() + 8 + static_cast<long>(header_size));
  EXPECT_EQ(header["__metadata__"], nlohmann::json({{"format", "pt"}, {"arch", "resnet18"}}));
  EXPECT_EQ(header["layer2.Half"]["dtype"], "F16");
  EXPECT_EQ(header["layer3.BFloat16"]["dtype"], "BF16");
  EXPECT_EQ(header["bn.num_batches_tracked"]["shape"], nlohmann::json::array());
}

TEST(SafetensorsTest, FormatComesFromContentNotExtension) {
  TempDir dir;
  ASSERT_TRUE(write_safetensors(dir / "looks_like.pth", all_dtypes()).ok());
  EXPECT_EQ(*detect_weight_format(dir / "looks_like.pth"), WeightFormat::kSafetensors);
  ASSERT_TRUE(read_weight_file(dir / "looks_like.pth").ok());
}

TEST(SafetensorsTest, WriterRejectsDuplicateAndReservedNames) {
  TempDir dir;
  StateDict duplicate = {{"a", at::ones({2})}, {"a", at::ones({2})}};
  EXPECT_EQ(write_safetensors(dir / "d.safetensors", duplicate).code(), ErrorCode::kInvalidArgument);
  StateDict reserved = {{"__metadata__", at::ones({2})}};
  EXPECT_EQ(write_safetensors(dir / "r.safetensors", reserved).code(), ErrorCode::kInvalidArgument);
  StateDict complex = {{"c", at::ones({2}, at::kComplexFloat)}};
  EXPECT_EQ(write_safetensors(dir / "c.safetensors", complex).code(), ErrorCode::kInvalidArgument);
  EXPECT_FALSE(std::filesystem::exists(dir / "d.safetensors"));
}

TEST(SafetensorsTest, TruncatedFileIsDataLoss) {
  TempDir dir;
  ASSERT_TRUE(write_safetensors(dir / "w.safetensors", all_dtypes()).ok());
  Bytes bytes = read_bytes(dir / "w.safetensors");
  bytes.pop_back();
  testing::write_bytes(dir / "cut.safetensors", bytes);
  expect_read_error(dir / "cut.safetensors", {ErrorCode::kDataLoss});
}

TEST(SafetensorsTest, HeaderLengthLargerThanFileIsDataLoss) {
  TempDir dir;
  testing::write_bytes(dir / "h.safetensors", safetensors_bytes("{}", {}, 1ull << 40));
  expect_read_error(dir / "h.safetensors", {ErrorCode::kDataLoss}, "header length");
  testing::write_bytes(dir / "max.safetensors", safetensors_bytes("{}", {}, UINT64_MAX));
  expect_read_error(dir / "max.safetensors", {ErrorCode::kDataLoss}, "header length");
}

TEST(SafetensorsTest, OverlappingOffsetsAreRejected) {
  TempDir dir;
  const std::string header =
      R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},)"
      R"( "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}})";
  testing::write_bytes(dir / "o.safetensors", safetensors_bytes(header, Bytes(12)));
  expect_read_error(dir / "o.safetensors", {ErrorCode::kDataLoss}, "overlap");
}

TEST(SafetensorsTest, OutOfRangeOffsetsAreRejected) {
  TempDir dir;
  const std::string header = R"({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}})";
  testing::write_bytes(dir / "r.safetensors", safetensors_bytes(header, Bytes(8)));
  expect_read_error(dir / "r.safetensors", {ErrorCode::kDataLoss}, "reach past");
  const std::string huge =
      R"({"a": {"dtype": "F32", "shape": [4], "data_offsets": [18446744073709551600, 0]}})";
  testing::write_bytes(dir / "huge.safetensors", safetensors_bytes(huge, Bytes(16)));
  expect_read_error(dir / "huge.safetensors", {ErrorCode::kDataLoss});
}

TEST(SafetensorsTest, HolesAndSizeMismatchesAreRejected) {
  TempDir dir;
  const std::string gap =
      R"({"a": {"dtype": "U8", "shape": [2], "data_offsets": [0, 2]},)"
      R"( "b": {"dtype": "U8", "shape": [2], "data_offsets": [4, 6]}})";
  testing::write_bytes(dir / "gap.safetensors", safetensors_bytes(gap, Bytes(6)));
  expect_read_error(dir / "gap.safetensors", {ErrorCode::kDataLoss}, "gap");
  const std::string wrong = R"({"a": {"dtype": "F64", "shape": [2], "data_offsets": [0, 8]}})";
  testing::write_bytes(dir / "wrong.safetensors", safetensors_bytes(wrong, Bytes(8)));
  expect_read_error(dir / "wrong.safetensors", {ErrorCode::kDataLoss}, "needs 16 bytes");
  const std::string trailing = R"({"a": {"dtype": "U8", "shape": [2], "data_offsets": [0, 2]}})";
  testing::write_bytes(dir / "trailing.safetensors", safetensors_bytes(trailing, Bytes(5)));
  expect_read_error(dir / "trailing.safetensors", {ErrorCode::kDataLoss});
}

TEST(SafetensorsTest, MalformedHeadersFailCleanly) {
  TempDir dir;
  const std::vector<std::string> headers = {
      "{not json",
      R"({"a": 3})",
      R"({"a": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 0]}})",
      R"({"a": {"dtype": "F32", "shape": [1.5], "data_offsets": [0, 0]}})",
      R"({"a": {"dtype": 7, "shape": [], "data_offsets": [0, 4]}})",
      R"({"a": {"dtype": "F32", "shape": [], "data_offsets": [0]}})",
      R"({"a": {"dtype": "F32", "shape": [4294967296, 4294967296, 4294967296], "data_offsets": [0, 4]}})",
      R"({"__metadata__": [1, 2]})",
      "{}\x01\x02",
  };
  for (size_t i = 0; i < headers.size(); ++i) {
    SCOPED_TRACE(headers[i]);
    const auto path = dir / ("bad" + std::to_string(i) + ".safetensors");
    testing::write_bytes(path, safetensors_bytes(headers[i], Bytes(4)));
    expect_read_error(path, {ErrorCode::kDataLoss, ErrorCode::kInvalidArgument});
  }
}

TEST(SafetensorsTest, UnsupportedDtypeIsNamed) {
  TempDir dir;
  const std::string header = R"({"a": {"dtype": "F8_E4M3", "shape": [2], "data_offsets": [0, 2]}})";
  testing::write_bytes(dir / "f8.safetensors", safetensors_bytes(header, Bytes(2)));
  expect_read_error(dir / "f8.safetensors", {ErrorCode::kInvalidArgument}, "F8_E4M3");
}

TEST(SafetensorsTest, EveryPrefixOfAValidFileFailsCleanly) {
  TempDir dir;
  StateDict tensors = {{"w", at::arange(6, at::kFloat)}, {"n", at::scalar_tensor(3, at::kLong)}};
  ASSERT_TRUE(write_safetensors(dir / "w.safetensors", tensors, {{"k", "v"}}).ok());
  const Bytes bytes = read_bytes(dir / "w.safetensors");
  for (size_t length = 0; length < bytes.size(); ++length) {
    SCOPED_TRACE(length);
    testing::write_bytes(dir / "p.safetensors", Bytes(bytes.begin(), bytes.begin() + static_cast<long>(length)));
    expect_read_error(dir / "p.safetensors", {ErrorCode::kDataLoss, ErrorCode::kInvalidArgument});
  }
}

// ---- .pth -------------------------------------------------------------------------

TEST(PthTest, WriteThenReadRoundTripsEveryDtypeInOrder) {
  TempDir dir;
  const StateDict tensors = all_dtypes();
  ASSERT_TRUE(write_pth(dir / "w.pth", tensors).ok());
  EXPECT_EQ(*detect_weight_format(dir / "w.pth"), WeightFormat::kPth);
  auto read = read_weight_file(dir / "w.pth");
  ASSERT_TRUE(read.ok()) << read.status().to_string();
  expect_same(*read, tensors);  // the StateDict's order, not name order
}

TEST(PthTest, WriterUsesTorchSaveLayout) {
  TempDir dir;
  ASSERT_TRUE(write_pth(dir / "w.pth", {{"a", at::ones({2})}, {"b", at::zeros({3}, at::kLong)}}).ok());
  caffe2::serialize::PyTorchStreamReader reader((dir / "w.pth").string());
  auto records = reader.getAllRecords();
  std::sort(records.begin(), records.end());
  EXPECT_EQ(records, (std::vector<std::string>{"data.pkl", "data/0", "data/1", "version"}));
  // The first local file header's name (offset 30) carries the archive folder.
  const Bytes bytes = read_bytes(dir / "w.pth");
  EXPECT_EQ(std::string(bytes.begin() + 30, bytes.begin() + 46), "archive/data.pkl");
  auto [version, size] = reader.getRecord("version");
  EXPECT_EQ(std::string(static_cast<const char*>(version.get()), size), "3\n");
  auto [data, data_size] = reader.getRecord("data/1");
  EXPECT_EQ(data_size, 3 * sizeof(int64_t));
  EXPECT_EQ(reader.getRecordOffset("data/0") % 64, 0u) << "records are 64-byte aligned, as torch.save's";
}

TEST(PthTest, ReadsTorchSaveStateDictWithMetadata) {
  TempDir dir;
  const auto storages = module_storages();
  write_torch_save_zip(dir / "module.pth", from_hex(kModuleStateDictPickle), storages);
  auto read = read_weight_file(dir / "module.pth");
  ASSERT_TRUE(read.ok()) << read.status().to_string();
  const std::vector<std::string> names = {"0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean",
                                          "1.running_var", "1.num_batches_tracked"};
  ASSERT_EQ(read->size(), names.size());
  for (size_t i = 0; i < names.size(); ++i) {
    SCOPED_TRACE(names[i]);
    EXPECT_EQ((*read)[i].name, names[i]);
    if (i < 6) {
      EXPECT_TRUE(at::equal((*read)[i].tensor.flatten(), storages[i].data));
    }
  }
  EXPECT_EQ((*read)[0].tensor.sizes(), (std::vector<int64_t>{3, 2}));
  const at::Tensor& tracked = (*read)[6].tensor;
  EXPECT_EQ(tracked.dim(), 0);
  EXPECT_EQ(tracked.scalar_type(), at::kLong);
  EXPECT_EQ(tracked.item<int64_t>(), 42);
}

TEST(PthTest, ReadsCheckpointWithViewsAndDataParallelPrefix) {
  TempDir dir;
  const auto storages = checkpoint_storages();
  write_torch_save_zip(dir / "ckpt.pt", from_hex(kCheckpointPickle), storages);
  auto read = read_weight_file(dir / "ckpt.pt");
  ASSERT_TRUE(read.ok()) << read.status().to_string();
  const std::vector<std::string> names = {"t", "s", "h", "b", "i8", "bf", "f64", "i32", "i16",
                                          "u8", "i64", "scalar", "p"};
  ASSERT_EQ(read->size(), names.size());
  for (size_t i = 0; i < names.size(); ++i) EXPECT_EQ((*read)[i].name, names[i]);

  const at::Tensor& t = (*read)[0].tensor;
  const at::Tensor& s = (*read)[1].tensor;
  EXPECT_EQ(t.strides(), (std::vector<int64_t>{1, 4}));
  EXPECT_TRUE(at::equal(t, at::arange(12, at::kFloat).reshape({3, 4}).t()));
  EXPECT_EQ(s.storage_offset(), 3);
  EXPECT_TRUE(at::equal(s, at::arange(3, 7, at::kFloat)));
  EXPECT_TRUE(t.is_alias_of(s)) << "views of one storage should share it, as in Python";
  for (size_t i = 2; i < 11; ++i) {
    SCOPED_TRACE(names[i]);
    EXPECT_EQ((*read)[i].tensor.sizes(), (std::vector<int64_t>{2, 2}));
    EXPECT_TRUE(at::equal((*read)[i].tensor.flatten(), storages[i - 1].data));
  }
  EXPECT_EQ((*read)[11].tensor.item<int64_t>(), 7);
  EXPECT_TRUE(at::equal((*read)[12].tensor, storages[11].data));
  EXPECT_FALSE((*read)[12].tensor.requires_grad());
}

TEST(PthTest, TensorsOwnTheirMemory) {
  TempDir dir;
  write_torch_save_zip(dir / "module.pth", from_hex(kModuleStateDictPickle), module_storages());
  auto read = read_weight_file(dir / "module.pth");
  ASSERT_TRUE(read.ok());
  std::filesystem::remove(dir / "module.pth");
  EXPECT_FLOAT_EQ((*read)[1].tensor[2].item<float>(), 12.0f);
  (*read)[1].tensor.add_(1.0);  // writable
  EXPECT_FLOAT_EQ((*read)[1].tensor[2].item<float>(), 13.0f);
}

TEST(PthTest, StorageOfTheWrongSizeIsDataLoss) {
  TempDir dir;
  auto storages = module_storages();
  storages[0].data = at::zeros({5}, at::kFloat);
  write_torch_save_zip(dir / "short.pth", from_hex(kModuleStateDictPickle), storages);
  expect_read_error(dir / "short.pth", {ErrorCode::kDataLoss}, "data/0");
  storages.pop_back();
  storages[0].data = at::zeros({6}, at::kFloat);
  write_torch_save_zip(dir / "missing.pth", from_hex(kModuleStateDictPickle), storages);
  expect_read_error(dir / "missing.pth", {ErrorCode::kDataLoss}, "data/6");
}

TEST(PthTest, ViewPastItsStorageIsDataLoss) {
  TempDir dir;
  Bytes pickle = from_hex(kModuleStateDictPickle);
  ASSERT_EQ(pickle[140], 'K');  // BININT1: storage '0' holds 6 elements; claim 5
  ASSERT_EQ(pickle[141], 6);
  pickle[141] = 5;
  auto storages = module_storages();
  storages[0].data = at::zeros({5}, at::kFloat);
  write_torch_save_zip(dir / "view.pth", pickle, storages);
  expect_read_error(dir / "view.pth", {ErrorCode::kDataLoss}, "reaches past its storage");
}

TEST(PthTest, NotAStateDictIsExplained) {
  TempDir dir;
  // torch.save(model) pickles the module object itself.
  write_torch_save_zip(dir / "model.pth", bytes_of("\x80\x02" "c__main__\nNet\n)\x81}b."), {});
  expect_read_error(dir / "model.pth", {ErrorCode::kInvalidArgument}, "__main__.Net");
  write_torch_save_zip(dir / "number.pth", bytes_of("\x80\x02K\x05."), {});
  expect_read_error(dir / "number.pth", {ErrorCode::kInvalidArgument}, "not a state dict");
  write_torch_save_zip(dir / "mixed.pth", bytes_of("\x80\x02}X\x01\x00\x00\x00" "aK\x01s."), {});
  expect_read_error(dir / "mixed.pth", {ErrorCode::kInvalidArgument}, "entry 'a'");
}

TEST(PthTest, ZipWithoutDataPklAndLegacyPickleAreExplained) {
  TempDir dir;
  {
    caffe2::serialize::PyTorchStreamWriter writer((dir / "other.pth").string());
    writer.writeRecord("something", "x", 1);
    writer.writeEndOfFile();
  }
  expect_read_error(dir / "other.pth", {ErrorCode::kInvalidArgument}, "data.pkl");
  testing::write_bytes(dir / "legacy.pth", {0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20});
  expect_read_error(dir / "legacy.pth", {ErrorCode::kInvalidArgument}, "legacy");
}

TEST(PthTest, EveryPrefixOfAValidFileFailsCleanly) {
  TempDir dir;
  ASSERT_TRUE(write_pth(dir / "w.pth", {{"w", at::arange(4, at::kFloat)}, {"n", at::scalar_tensor(1, at::kLong)}}).ok());
  const Bytes bytes = read_bytes(dir / "w.pth");
  for (size_t length = 0; length < bytes.size(); ++length) {
    SCOPED_TRACE(length);
    testing::write_bytes(dir / "p.pth", Bytes(bytes.begin(), bytes.begin() + static_cast<long>(length)));
    expect_read_error(dir / "p.pth", {ErrorCode::kDataLoss, ErrorCode::kInvalidArgument});
  }
}

TEST(PthTest, CorruptedBytesNeverCrash) {
  TempDir dir;
  write_torch_save_zip(dir / "module.pth", from_hex(kModuleStateDictPickle), module_storages());
  const Bytes bytes = read_bytes(dir / "module.pth");
  int failures = 0;
  for (size_t i = 0; i < bytes.size(); ++i) {
    for (uint8_t flip : {uint8_t{0xff}, uint8_t{0x01}}) {
      Bytes corrupted = bytes;
      corrupted[i] ^= flip;
      testing::write_bytes(dir / "c.pth", corrupted);
      auto read = read_weight_file(dir / "c.pth");  // any Status is fine; a crash is not
      if (!read.ok()) ++failures;
    }
  }
  EXPECT_GT(failures, 0);
}

// ---- the pickle machine ------------------------------------------------------------

// Hooks for a bare machine: storages become 1-element float tensors.
class StubHooks : public detail::PickleHooks {
 public:
  PickleObject* persistent_load(PickleMachine& machine, const PickleObject& pid) override {
    return machine.make_tensor(PickleObject::Kind::kStorage, at::zeros({1}));
  }
};

Result<PickleObject*> run_pickle(PickleMachine& machine, const Bytes& bytes) {
  StubHooks hooks;
  return machine.run(bytes, hooks, "test.pkl");
}
Result<PickleObject*> run_pickle(PickleMachine& machine, const std::string& bytes) {
  return run_pickle(machine, Bytes(bytes.begin(), bytes.end()));
}

TEST(PickleMachineTest, UnsupportedOpcodeIsNamedWithItsOffset) {
  PickleMachine machine;
  auto result = run_pickle(machine, bytes_of("\x80\x02" "C\x01x."));
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(result.status().message().find("SHORT_BINBYTES"), std::string::npos) << result.status().message();
  EXPECT_NE(result.status().message().find("byte 2"), std::string::npos) << result.status().message();
  auto unknown = run_pickle(machine, "\x80\x02\xff.");
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(unknown.status().message().find("0xff"), std::string::npos) << unknown.status().message();
}

TEST(PickleMachineTest, DecodesScalarsAndKeepsDictOrder) {
  PickleMachine machine;
  // {"b": LONG1(-2**40), "a": 1.5, "b": True} with memoised keys: the second "b" replaces the first.
  auto result = run_pickle(machine, bytes_of("\x80\x02}(X\x01\x00\x00\x00" "bq\x00\x8a\x06\x00\x00\x00\x00\x00\xff"
                                             "X\x01\x00\x00\x00" "aG\x3f\xf8\x00\x00\x00\x00\x00\x00"
                                             "h\x00\x88u."));
  ASSERT_TRUE(result.ok()) << result.status().to_string();
  const PickleObject& dict = **result;
  ASSERT_EQ(dict.kind, PickleObject::Kind::kDict);
  ASSERT_EQ(dict.entries.size(), 2u);
  EXPECT_EQ(dict.entries[0].first->text, "b");
  EXPECT_EQ(dict.entries[0].second->kind, PickleObject::Kind::kBool);
  EXPECT_EQ(dict.find("a")->real, 1.5);
  PickleMachine again;
  auto negative = run_pickle(again, bytes_of("\x80\x02\x8a\x06\x00\x00\x00\x00\x00\xff."));
  ASSERT_TRUE(negative.ok());
  EXPECT_EQ((*negative)->integer, -(int64_t{1} << 40));
  auto small = run_pickle(again, bytes_of("\x80\x02J\xfe\xff\xff\xff."));
  ASSERT_TRUE(small.ok());
  EXPECT_EQ((*small)->integer, -2);
}

TEST(PickleMachineTest, MalformedStreamsFailCleanly) {
  const std::vector<std::string> streams = {
      "",                         // nothing
      "\x80\x02",                 // no STOP
      "\x80\x02R.",               // REDUCE on an empty stack
      "\x80\x02h\x05.",           // BINGET of an unset memo entry
      "\x80\x02t.",               // TUPLE without MARK
      "\x80\x02K\x01(K\x02\x86.",     // TUPLE2 reaching below MARK
      "\x80\x02X\xff\xff\xff\x7f" "abc.",   // string longer than the stream
      "\x80\x02]K\x01s.",         // SETITEM on a list
      "\x80\x02}K\x01" "a.",       // APPEND on a dict
      "\x80\x02" "cmodule_without_newline",
      "\x80\x02\x8a\x09\x01\x01\x01\x01\x01\x01\x01\x01\x01.",  // LONG1 wider than 64 bits
      "\x80\x02}(K\x01u.",        // SETITEMS with a key but no value
      "\x80\x02" "c__main__\nf\nK\x01R.",  // REDUCE whose arguments are not a tuple
      "\x80\x09.",                // protocol 9
  };
  for (const auto& stream : streams) {
    SCOPED_TRACE(stream);
    PickleMachine machine;
    auto result = run_pickle(machine, stream);
    ASSERT_FALSE(result.ok());
    EXPECT_NE(result.status().message().find("test.pkl"), std::string::npos);
  }
}

TEST(PickleMachineTest, EveryPrefixOfAStateDictPickleFailsCleanly) {
  const Bytes bytes = from_hex(kCheckpointPickle);
  for (size_t length = 0; length < bytes.size(); ++length) {
    PickleMachine machine;
    StubHooks hooks;
    auto result = machine.run({bytes.data(), length}, hooks, "data.pkl");
    EXPECT_FALSE(result.ok()) << length;
  }
  PickleMachine machine;
  StubHooks hooks;
  EXPECT_TRUE(machine.run(bytes, hooks, "data.pkl").ok());
}

TEST(PickleMachineTest, CyclesAndDeepNestingNeitherLeakNorOverflow) {
  PickleMachine cyclic;
  auto cycle = run_pickle(cyclic, bytes_of("\x80\x02]q\x00h\x00" "a."));  // l = []; l.append(l)
  ASSERT_TRUE(cycle.ok());
  EXPECT_EQ((*cycle)->items[0], *cycle);

  // A million nested lists: destroying them must not recurse.
  const size_t depth = 1'000'000;
  std::string nested = "\x80\x02";
  nested.append(depth, ']');
  nested.append(depth - 1, 'a');
  nested += '.';
  auto machine = std::make_unique<PickleMachine>();
  ASSERT_TRUE(run_pickle(*machine, nested).ok());
  machine.reset();
}

TEST(PickleMachineTest, ObjectLimitStopsRunawayStreams) {
  PickleMachine machine(detail::PickleLimits{.max_objects = 100, .max_stack = 1000});
  std::string many = "\x80\x02";
  many.append(500, ']');
  many += '.';
  auto result = run_pickle(machine, many);
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), ErrorCode::kResourceExhausted);
}

// ---- the files around the formats ---------------------------------------------------

TEST(WeightFileTest, MissingFileIsNotFound) {
  TempDir dir;
  expect_read_error(dir / "absent.pth", {ErrorCode::kNotFound});
  EXPECT_EQ(detect_weight_format(dir / "absent.pth").status().code(), ErrorCode::kNotFound);
}

TEST(WeightFileTest, GarbageEmptyAndDirectoryAreRejected) {
  TempDir dir;
  const std::string text = "this is not a weight file, just some text\n";
  testing::write_bytes(dir / "garbage.pth", Bytes(text.begin(), text.end()));
  expect_read_error(dir / "garbage.pth", {ErrorCode::kInvalidArgument}, "not a weight file");
  testing::write_bytes(dir / "empty.safetensors", {});
  expect_read_error(dir / "empty.safetensors", {ErrorCode::kDataLoss}, "empty");
  std::filesystem::create_directories(dir / "folder.pth");
  expect_read_error(dir / "folder.pth", {ErrorCode::kInvalidArgument});
  testing::write_bytes(dir / "zipish.pth", {'P', 'K', 0x05, 0x06, 0, 0, 0, 0, 0, 0, 0, 0});
  expect_read_error(dir / "zipish.pth", {ErrorCode::kDataLoss});
}

TEST(WeightFileTest, RandomBytesAfterAZipSignatureNeverCrash) {
  TempDir dir;
  std::mt19937 rng(7);
  for (int trial = 0; trial < 200; ++trial) {
    Bytes bytes = {'P', 'K', 3, 4};
    const size_t size = rng() % 512;
    for (size_t i = 0; i < size; ++i) bytes.push_back(static_cast<uint8_t>(rng()));
    testing::write_bytes(dir / "r.pth", bytes);
    expect_read_error(dir / "r.pth", {ErrorCode::kDataLoss, ErrorCode::kInvalidArgument});
  }
}

TEST(WeightFileTest, WriteWeightFileChoosesFormatByExtension) {
  TempDir dir;
  const StateDict tensors = {{"w", at::ones({2, 2})}};
  ASSERT_TRUE(write_weight_file(dir / "a.safetensors", tensors).ok());
  ASSERT_TRUE(write_weight_file(dir / "a.PT", tensors).ok());
  EXPECT_EQ(*detect_weight_format(dir / "a.safetensors"), WeightFormat::kSafetensors);
  EXPECT_EQ(*detect_weight_format(dir / "a.PT"), WeightFormat::kPth);
  EXPECT_EQ(write_weight_file(dir / "a.onnx", tensors).code(), ErrorCode::kInvalidArgument);
}

}  // namespace
}  // namespace kennel::models
