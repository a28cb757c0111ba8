// The instruction set Kennel's hand-written loops run with (the fused BatchNorm's
// rows, max pooling's windows, the fused Adam's update). Each loop file is compiled once per set, inside
// a `#pragma GCC target` region and a namespace of its own, so that the compiler
// vectorizes each copy for its set; the first set in AVX-512, AVX2, baseline
// x86-64 that the CPU's flags allow is picked once, at first use. Tests may
// choose another set the CPU runs, for every such loop at once.
// Thread-safety: the choice is an atomic; choosing while loops run is for tests only.
#pragma once

#include <string>

namespace kennel {

enum class InstructionSet { kAvx512 = 0, kAvx2 = 1, kBaseline = 2 };

// The set the loops run with now.
InstructionSet loop_instruction_set();

// "AVX-512" | "AVX2" | "baseline x86-64".
const char* instruction_set_name(InstructionSet set);

// For tests: the set named `name` (as instruction_set_name names it) runs from now on if this CPU
// runs it; returns whether it was chosen.
bool choose_loop_instruction_set(const std::string& name);

}  // namespace kennel
