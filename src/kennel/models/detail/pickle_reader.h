// A small, bounds-checked pickle virtual machine for the subset of Python's
// pickle that torch.save writes (protocol 2, plus the few protocol 4 opcodes
// a training script's checkpoint may use).
//
// Why not LibTorch's own unpickler: 1.13's torch::pickle_load aborts on the
// OrderedDict-with-_metadata that model.state_dict() produces. This machine
// executes no Python: GLOBAL only names a callable, REDUCE/NEWOBJ of a name the
// hooks don't know becomes an inert PickleObject::Kind::kCall record, and the
// caller decides what the result means. Every read is bounds-checked, every
// opcode outside the supported set is an error naming it and its offset, and
// object and size limits keep malformed input from exhausting memory.
//
// Ownership: a PickleMachine owns every object it creates (an arena); the
// pointers it hands out live as long as the machine. Objects refer to each
// other by raw pointer, so cycles a malicious pickle builds cannot leak and
// deep nesting is destroyed without recursion. Thread-safety: one machine per
// thread.
#pragma once

#include <cstdint>
#include <deque>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <ATen/core/Tensor.h>

#include "kennel/util/status.h"

namespace kennel::models::detail {

struct PickleObject {
  enum class Kind {
    kNone,
    kBool,
    kInt,
    kFloat,
    kString,   // BINUNICODE and friends (UTF-8 bytes, not validated)
    kTuple,
    kList,
    kDict,     // dict, collections.OrderedDict; insertion order kept
    kGlobal,   // a GLOBAL reference: module_name + name
    kCall,     // REDUCE/NEWOBJ of a callable the hooks did not handle
    kStorage,  // a persistent-load result: a 1-D tensor holding a whole storage
    kTensor,
  };

  Kind kind = Kind::kNone;
  bool boolean = false;
  int64_t integer = 0;
  double real = 0.0;
  std::string text;         // kString: the value; kGlobal: the module
  std::string name;         // kGlobal: the attribute name
  std::vector<PickleObject*> items;  // kTuple/kList elements; kCall: {callable, args} + APPENDs
  std::vector<std::pair<PickleObject*, PickleObject*>> entries;  // kDict (and SETITEMs on a kCall)
  PickleObject* state = nullptr;  // what BUILD set (an OrderedDict's {"_metadata": ...})
  at::Tensor tensor;              // kStorage, kTensor

  bool is_string(std::string_view value) const { return kind == Kind::kString && text == value; }
  bool is_global(std::string_view module, std::string_view attribute) const {
    return kind == Kind::kGlobal && text == module && name == attribute;
  }
  // The value stored under a string key of a kDict, or nullptr.
  PickleObject* find(std::string_view key) const;
};

// A short description for error messages: "an int", "a tuple of 3", "collections.OrderedDict".
std::string describe(const PickleObject& object);

class PickleMachine;

// What the caller plugs in. Hooks signal malformed input by throwing
// kennel::Error; the machine adds the opcode offset and returns it as a Status.
class PickleHooks {
 public:
  virtual ~PickleHooks() = default;
  // BINPERSID: the object a persistent id stands for.
  virtual PickleObject* persistent_load(PickleMachine& machine, const PickleObject& pid) = 0;
  // REDUCE/NEWOBJ of GLOBAL module.name with `args` (a tuple). Return nullptr
  // to let the machine handle it (dict types become kDict, the rest kCall).
  virtual PickleObject* call(PickleMachine& machine, const PickleObject& callable,
                             const PickleObject& args) {
    return nullptr;
  }
};

struct PickleLimits {
  uint64_t max_objects = 8'000'000;  // ~1 GB of objects; a 100k-tensor state dict needs ~3M
  uint64_t max_stack = 1'000'000;    // values on the stack at once
};

class PickleMachine {
 public:
  explicit PickleMachine(PickleLimits limits = {}) : limits_(limits) {}
  PickleMachine(const PickleMachine&) = delete;
  PickleMachine& operator=(const PickleMachine&) = delete;

  // Runs `bytes` to STOP and returns the top of the stack (owned by this
  // machine). Errors (kDataLoss for truncated/corrupt streams, kInvalidArgument
  // for unsupported opcodes) name `source` (e.g. "data.pkl"), the opcode and
  // its byte offset.
  Result<PickleObject*> run(std::span<const uint8_t> bytes, PickleHooks& hooks,
                            std::string_view source);

  // Allocates an object owned by this machine (for hooks).
  PickleObject* make(PickleObject::Kind kind);
  PickleObject* make_tensor(PickleObject::Kind kind, at::Tensor tensor);

 private:
  class Run;
  PickleLimits limits_;
  std::deque<PickleObject> arena_;
};

}  // namespace kennel::models::detail
