#include "kennel/models/detail/pickle_reader.h"

#include <cstring>
#include <exception>
#include <new>
#include <unordered_map>

#include <c10/util/Exception.h>
#include <fmt/format.h>

namespace kennel::models::detail {

using Kind = PickleObject::Kind;

namespace {

// Every pickle opcode (protocols 0-5), so an unsupported one is named in the error.
const char* opcode_name(uint8_t op) {
  switch (op) {
    case '(': return "MARK";
    case '.': return "STOP";
    case '0': return "POP";
    case '1': return "POP_MARK";
    case '2': return "DUP";
    case 'F': return "FLOAT";
    case 'I': return "INT";
    case 'J': return "BININT";
    case 'K': return "BININT1";
    case 'L': return "LONG";
    case 'M': return "BININT2";
    case 'N': return "NONE";
    case 'P': return "PERSID";
    case 'Q': return "BINPERSID";
    case 'R': return "REDUCE";
    case 'S': return "STRING";
    case 'T': return "BINSTRING";
    case 'U': return "SHORT_BINSTRING";
    case 'V': return "UNICODE";
    case 'X': return "BINUNICODE";
    case 'a': return "APPEND";
    case 'b': return "BUILD";
    case 'c': return "GLOBAL";
    case 'd': return "DICT";
    case '}': return "EMPTY_DICT";
    case 'e': return "APPENDS";
    case 'g': return "GET";
    case 'h': return "BINGET";
    case 'i': return "INST";
    case 'j': return "LONG_BINGET";
    case 'l': return "LIST";
    case ']': return "EMPTY_LIST";
    case 'o': return "OBJ";
    case 'p': return "PUT";
    case 'q': return "BINPUT";
    case 'r': return "LONG_BINPUT";
    case 's': return "SETITEM";
    case 't': return "TUPLE";
    case ')': return "EMPTY_TUPLE";
    case 'u': return "SETITEMS";
    case 'G': return "BINFLOAT";
    case 0x80: return "PROTO";
    case 0x81: return "NEWOBJ";
    case 0x82: return "EXT1";
    case 0x83: return "EXT2";
    case 0x84: return "EXT4";
    case 0x85: return "TUPLE1";
    case 0x86: return "TUPLE2";
    case 0x87: return "TUPLE3";
    case 0x88: return "NEWTRUE";
    case 0x89: return "NEWFALSE";
    case 0x8a: return "LONG1";
    case 0x8b: return "LONG4";
    case 'B': return "BINBYTES";
    case 'C': return "SHORT_BINBYTES";
    case 0x8c: return "SHORT_BINUNICODE";
    case 0x8d: return "BINUNICODE8";
    case 0x8e: return "BINBYTES8";
    case 0x8f: return "EMPTY_SET";
    case 0x90: return "ADDITEMS";
    case 0x91: return "FROZENSET";
    case 0x92: return "NEWOBJ_EX";
    case 0x93: return "STACK_GLOBAL";
    case 0x94: return "MEMOIZE";
    case 0x95: return "FRAME";
    case 0x96: return "BYTEARRAY8";
    case 0x97: return "NEXT_BUFFER";
    case 0x98: return "READONLY_BUFFER";
    default: return nullptr;
  }
}

std::string opcode_text(uint8_t op) {
  const char* name = opcode_name(op);
  return name ? fmt::format("{} (0x{:02x})", name, op) : fmt::format("unknown opcode 0x{:02x}", op);
}

// Python equality for the key types a state dict uses; identity otherwise.
bool same_key(const PickleObject* a, const PickleObject* b) {
  if (a == b) return true;
  if (a->kind != b->kind) return false;
  switch (a->kind) {
    case Kind::kNone: return true;
    case Kind::kBool: return a->boolean == b->boolean;
    case Kind::kInt: return a->integer == b->integer;
    case Kind::kString: return a->text == b->text;
    default: return false;
  }
}

// The error a malformed stream raises inside the machine; run() adds the offset.
[[noreturn]] void corrupt(const std::string& message) { throw Error(ErrorCode::kDataLoss, message); }

}  // namespace

PickleObject* PickleObject::find(std::string_view key) const {
  if (kind != Kind::kDict) return nullptr;
  for (const auto& [entry_key, value] : entries) {
    if (entry_key->is_string(key)) return value;
  }
  return nullptr;
}

std::string describe(const PickleObject& object) {
  switch (object.kind) {
    case Kind::kNone: return "None";
    case Kind::kBool: return "a bool";
    case Kind::kInt: return "an int";
    case Kind::kFloat: return "a float";
    case Kind::kString: return "a string";
    case Kind::kTuple: return fmt::format("a tuple of {}", object.items.size());
    case Kind::kList: return fmt::format("a list of {}", object.items.size());
    case Kind::kDict: return fmt::format("a dict of {}", object.entries.size());
    case Kind::kGlobal: return fmt::format("the global {}.{}", object.text, object.name);
    case Kind::kCall: {
      const PickleObject* callable = object.items.empty() ? nullptr : object.items[0];
      if (callable && callable->kind == Kind::kGlobal) {
        return fmt::format("a Python object built by {}.{}", callable->text, callable->name);
      }
      return "a Python object";
    }
    case Kind::kStorage: return "a storage";
    case Kind::kTensor: return "a tensor";
  }
  return "an object";
}

PickleObject* PickleMachine::make(Kind kind) {
  if (arena_.size() >= limits_.max_objects) {
    throw Error(ErrorCode::kResourceExhausted,
                fmt::format("more than {} objects; the pickle is corrupt or not a state dict",
                            limits_.max_objects));
  }
  PickleObject& object = arena_.emplace_back();
  object.kind = kind;
  return &object;
}

PickleObject* PickleMachine::make_tensor(Kind kind, at::Tensor tensor) {
  PickleObject* object = make(kind);
  object->tensor = std::move(tensor);
  return object;
}

// One execution: the cursor, stack, marks and memo.
class PickleMachine::Run {
 public:
  Run(PickleMachine& machine, std::span<const uint8_t> bytes, PickleHooks& hooks)
      : machine_(machine), bytes_(bytes), hooks_(hooks) {}

  size_t opcode_offset() const { return opcode_offset_; }
  uint8_t opcode() const { return opcode_; }

  PickleObject* execute() {
    while (true) {
      opcode_offset_ = pos_;
      opcode_ = read_u8();
      switch (opcode_) {
        case 0x80: {  // PROTO
          const uint8_t version = read_u8();
          if (version > 5) corrupt(fmt::format("pickle protocol {} is not one Python writes", version));
          break;
        }
        case 0x95:  // FRAME: a length prefix for buffering; the contents are ordinary opcodes
          read_le(8);
          break;
        case 'c': {  // GLOBAL
          PickleObject* global = machine_.make(Kind::kGlobal);
          global->text = read_line();
          global->name = read_line();
          push(global);
          break;
        }
        case 0x93: {  // STACK_GLOBAL
          PickleObject* name = pop();
          PickleObject* module = pop();
          if (module->kind != Kind::kString || name->kind != Kind::kString) {
            corrupt("STACK_GLOBAL needs two strings");
          }
          PickleObject* global = machine_.make(Kind::kGlobal);
          global->text = module->text;
          global->name = name->text;
          push(global);
          break;
        }
        case 'q': memo_[read_u8()] = top(); break;                                   // BINPUT
        case 'r': memo_[static_cast<uint32_t>(read_le(4))] = top(); break;           // LONG_BINPUT
        case 0x94: memo_[static_cast<uint32_t>(memo_.size())] = top(); break;        // MEMOIZE
        case 'h': push(memo_get(read_u8())); break;                                  // BINGET
        case 'j': push(memo_get(static_cast<uint32_t>(read_le(4)))); break;          // LONG_BINGET
        case '(': marks_.push_back(stack_.size()); break;                            // MARK
        case '}': push(machine_.make(Kind::kDict)); break;                           // EMPTY_DICT
        case ']': push(machine_.make(Kind::kList)); break;                           // EMPTY_LIST
        case ')': push(machine_.make(Kind::kTuple)); break;                          // EMPTY_TUPLE
        case 't': push(make_sequence(Kind::kTuple, pop_mark())); break;              // TUPLE
        case 'l': push(make_sequence(Kind::kList, pop_mark())); break;               // LIST
        case 0x85: push(make_sequence(Kind::kTuple, pop_n(1))); break;               // TUPLE1
        case 0x86: push(make_sequence(Kind::kTuple, pop_n(2))); break;               // TUPLE2
        case 0x87: push(make_sequence(Kind::kTuple, pop_n(3))); break;               // TUPLE3
        case 'd': {                                                                  // DICT
          PickleObject* dict = machine_.make(Kind::kDict);
          set_items(dict, pop_mark());
          push(dict);
          break;
        }
        case 'J': push_int(static_cast<int32_t>(static_cast<uint32_t>(read_le(4)))); break;  // BININT
        case 'K': push_int(read_u8()); break;                                                // BININT1
        case 'M': push_int(static_cast<int64_t>(read_le(2))); break;                         // BININT2
        case 0x8a: push_int(read_long1()); break;                                            // LONG1
        case 'X': push_string(read_le(4)); break;     // BINUNICODE
        case 0x8c: push_string(read_u8()); break;     // SHORT_BINUNICODE
        case 0x8d: push_string(read_le(8)); break;    // BINUNICODE8
        case 'G': {                                   // BINFLOAT: big-endian IEEE double
          const uint8_t* raw = take(8);
          uint64_t bits = 0;
          for (int i = 0; i < 8; ++i) bits = (bits << 8) | raw[i];
          PickleObject* value = machine_.make(Kind::kFloat);
          std::memcpy(&value->real, &bits, sizeof(bits));
          push(value);
          break;
        }
        case 'N': push(none()); break;                // NONE
        case 0x88: push(boolean(true)); break;        // NEWTRUE
        case 0x89: push(boolean(false)); break;       // NEWFALSE
        case 'Q': {                                   // BINPERSID
          PickleObject* pid = pop();
          PickleObject* loaded = hooks_.persistent_load(machine_, *pid);
          if (loaded == nullptr) corrupt("persistent_load returned nothing");
          push(loaded);
          break;
        }
        case 'R':     // REDUCE: callable(*args)
        case 0x81: {  // NEWOBJ: cls.__new__(cls, *args), the same to us
          PickleObject* args = pop();
          PickleObject* callable = pop();
          push(call(callable, args));
          break;
        }
        case 'b': {  // BUILD: obj.__setstate__(state) or obj.__dict__.update(state)
          PickleObject* state = pop();
          top()->state = state;
          break;
        }
        case 's': {  // SETITEM
          PickleObject* value = pop();
          PickleObject* key = pop();
          set_items(top(), {key, value});
          break;
        }
        case 'u': {  // SETITEMS
          std::vector<PickleObject*> items = pop_mark();
          set_items(top(), items);
          break;
        }
        case 'a': {  // APPEND
          PickleObject* value = pop();
          append_items(top(), {value});
          break;
        }
        case 'e': {  // APPENDS
          std::vector<PickleObject*> items = pop_mark();
          append_items(top(), items);
          break;
        }
        case '0': pop(); break;         // POP
        case '1': pop_mark(); break;    // POP_MARK
        case '2': push(top()); break;   // DUP
        case '.': {                     // STOP
          PickleObject* result = pop();
          return result;
        }
        default:
          throw Error(ErrorCode::kInvalidArgument,
                      fmt::format("unsupported pickle opcode {}; Kennel reads the subset that "
                                  "torch.save writes (protocol 2)",
                                  opcode_text(opcode_)));
      }
    }
  }

 private:
  // ---- the byte cursor; every read is bounds-checked ----
  const uint8_t* take(uint64_t count) {
    if (count > bytes_.size() - pos_) {
      corrupt(fmt::format("needs {} more bytes but the stream ends after {}; it is truncated", count,
                          bytes_.size() - pos_));
    }
    const uint8_t* data = bytes_.data() + pos_;
    pos_ += count;
    return data;
  }
  uint8_t read_u8() {
    if (pos_ >= bytes_.size()) corrupt("the stream ends before STOP; it is truncated");
    return bytes_[pos_++];
  }
  uint64_t read_le(int width) {
    const uint8_t* raw = take(width);
    uint64_t value = 0;
    for (int i = width - 1; i >= 0; --i) value = (value << 8) | raw[i];
    return value;
  }
  std::string read_line() {
    const size_t start = pos_;
    while (pos_ < bytes_.size() && bytes_[pos_] != '\n') ++pos_;
    if (pos_ >= bytes_.size()) corrupt("a GLOBAL name has no end of line; the stream is truncated");
    std::string line(reinterpret_cast<const char*>(bytes_.data() + start), pos_ - start);
    ++pos_;
    return line;
  }
  int64_t read_long1() {
    const uint8_t width = read_u8();
    if (width > 8) corrupt(fmt::format("a LONG1 integer of {} bytes does not fit in 64 bits", width));
    if (width == 0) return 0;
    uint64_t value = read_le(width);
    // Two's complement of `width` bytes: sign-extend from the top byte.
    if (width < 8 && (value >> (8 * width - 1)) & 1) value |= ~uint64_t{0} << (8 * width);
    return static_cast<int64_t>(value);
  }

  // ---- the stack; MARK hides what is below it, as in CPython ----
  void push(PickleObject* object) {
    if (stack_.size() >= machine_.limits_.max_stack) {
      throw Error(ErrorCode::kResourceExhausted,
                  fmt::format("more than {} values on the stack", machine_.limits_.max_stack));
    }
    stack_.push_back(object);
  }
  size_t floor() const { return marks_.empty() ? 0 : marks_.back(); }
  PickleObject* top() const {
    if (stack_.size() <= floor()) corrupt("the stack is empty");
    return stack_.back();
  }
  PickleObject* pop() {
    PickleObject* object = top();
    stack_.pop_back();
    return object;
  }
  std::vector<PickleObject*> pop_n(size_t count) {
    if (stack_.size() - floor() < count) corrupt("the stack holds too few values");
    std::vector<PickleObject*> items(stack_.end() - static_cast<std::ptrdiff_t>(count), stack_.end());
    stack_.resize(stack_.size() - count);
    return items;
  }
  std::vector<PickleObject*> pop_mark() {
    if (marks_.empty()) corrupt("no MARK to pop to");
    const size_t mark = marks_.back();
    std::vector<PickleObject*> items(stack_.begin() + static_cast<std::ptrdiff_t>(mark), stack_.end());
    stack_.resize(mark);
    marks_.pop_back();
    return items;
  }
  PickleObject* memo_get(uint32_t index) const {
    auto found = memo_.find(index);
    if (found == memo_.end()) corrupt(fmt::format("memo entry {} was never stored", index));
    return found->second;
  }

  // ---- values ----
  void push_int(int64_t value) {
    PickleObject* object = machine_.make(Kind::kInt);
    object->integer = value;
    push(object);
  }
  void push_string(uint64_t length) {
    const uint8_t* raw = take(length);
    PickleObject* object = machine_.make(Kind::kString);
    object->text.assign(reinterpret_cast<const char*>(raw), length);
    push(object);
  }
  PickleObject* none() {
    if (!none_) none_ = machine_.make(Kind::kNone);
    return none_;
  }
  PickleObject* boolean(bool value) {
    PickleObject*& cached = value ? true_ : false_;
    if (!cached) {
      cached = machine_.make(Kind::kBool);
      cached->boolean = value;
    }
    return cached;
  }
  PickleObject* make_sequence(Kind kind, std::vector<PickleObject*> items) {
    PickleObject* object = machine_.make(kind);
    object->items = std::move(items);
    return object;
  }

  PickleObject* call(PickleObject* callable, PickleObject* args) {
    if (args->kind != Kind::kTuple) {
      corrupt(fmt::format("the arguments of a call are {}, not a tuple", describe(*args)));
    }
    if (callable->kind == Kind::kGlobal) {
      if (PickleObject* result = hooks_.call(machine_, *callable, *args)) return result;
      const bool dict_type = callable->is_global("collections", "OrderedDict") ||
                             callable->is_global("builtins", "dict") ||
                             callable->is_global("__builtin__", "dict") ||
                             callable->is_global("collections", "defaultdict");
      if (dict_type) {
        PickleObject* dict = machine_.make(Kind::kDict);
        // OrderedDict([(key, value), ...]); defaultdict's argument is its factory.
        if (!callable->is_global("collections", "defaultdict") && args->items.size() == 1 &&
            args->items[0]->kind == Kind::kList) {
          for (PickleObject* pair : args->items[0]->items) {
            if (pair->kind != Kind::kTuple || pair->items.size() != 2) {
              corrupt("a dict is built from something other than (key, value) pairs");
            }
            set_items(dict, pair->items);
          }
        }
        return dict;
      }
    }
    PickleObject* object = machine_.make(Kind::kCall);
    object->items = {callable, args};
    return object;
  }

  void set_items(PickleObject* target, const std::vector<PickleObject*>& items) {
    if (items.size() % 2 != 0) corrupt("SETITEMS has a key without a value");
    if (target->kind != Kind::kDict && target->kind != Kind::kCall) {
      corrupt(fmt::format("cannot set items on {}", describe(*target)));
    }
    for (size_t i = 0; i < items.size(); i += 2) {
      bool replaced = false;
      // Linear search: state dicts hold hundreds of entries, and the file order must be kept.
      for (auto& entry : target->entries) {
        if (same_key(entry.first, items[i])) {
          entry.second = items[i + 1];
          replaced = true;
          break;
        }
      }
      if (!replaced) target->entries.emplace_back(items[i], items[i + 1]);
    }
  }

  void append_items(PickleObject* target, const std::vector<PickleObject*>& items) {
    if (target->kind != Kind::kList && target->kind != Kind::kCall) {
      corrupt(fmt::format("cannot append to {}", describe(*target)));
    }
    target->items.insert(target->items.end(), items.begin(), items.end());
  }

  PickleMachine& machine_;
  std::span<const uint8_t> bytes_;
  PickleHooks& hooks_;
  size_t pos_ = 0;
  size_t opcode_offset_ = 0;
  uint8_t opcode_ = 0;
  std::vector<PickleObject*> stack_;
  std::vector<size_t> marks_;
  std::unordered_map<uint32_t, PickleObject*> memo_;
  PickleObject* none_ = nullptr;
  PickleObject* true_ = nullptr;
  PickleObject* false_ = nullptr;
};

Result<PickleObject*> PickleMachine::run(std::span<const uint8_t> bytes, PickleHooks& hooks,
                                         std::string_view source) {
  Run run(*this, bytes, hooks);
  auto at = [&] {
    return fmt::format("{}: at byte {} ({})", source, run.opcode_offset(), opcode_text(run.opcode()));
  };
  try {
    return run.execute();
  } catch (const Error& error) {
    return Status(error.status().code(), fmt::format("{}: {}", at(), error.status().message()));
  } catch (const std::bad_alloc&) {
    return Status(ErrorCode::kResourceExhausted, fmt::format("{}: out of memory", at()));
  } catch (const c10::Error& error) {
    // A hook's LibTorch call rejected what the pickle described.
    return Status(ErrorCode::kDataLoss, fmt::format("{}: {}", at(), error.what_without_backtrace()));
  } catch (const std::exception& error) {
    return Status(ErrorCode::kDataLoss, fmt::format("{}: {}", at(), error.what()));
  }
}

}  // namespace kennel::models::detail
