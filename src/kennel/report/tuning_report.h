// The HTML report of a hyperparameter tuning study: a summary (strategy,
// objective, trial counts, the best trial), the objective of each trial over
// time with the best-so-far curve, one "parameter vs objective" chart per
// hyperparameter, the best trial's learning curves (losses on one axis,
// accuracies on another, every other metric on its own; wall-clock stamps such
// as "time" are not metrics and are left out), and a table of every
// trial, best first. One self-contained file (inline SVG and CSS, no script).
//
// It reads the study's JSON summary, not the tune module's types, so a report
// can be drawn from any saved study and this module stays free of torch.
// Thread-safety: pure function.
#pragma once

#include <string>

#include <nlohmann/json_fwd.hpp>

namespace kennel::report {

// `study` (what the tuning job writes as its summary):
//   {"name", "status", "strategy", "early_stopping",
//    "objective": {"metric", "goal": "maximize"|"minimize", "at"},
//    "parameters": {"<name>": {"type": "continuous"|"integer"|"categorical",
//                              "scale": "linear"|"log"|"reverse-log", "min", "max", "choices"}},
//    "trials": [{"index", "name", "status", "objective" (number or null),
//                "hyperparameters": {...}, "started_at", "ended_at" (Unix seconds),
//                "epochs_run", "reason", "early_stopped"}],
//    "best": null | {"name", "objective", "hyperparameters"?, "curve": [{"epoch", "<metric>":
//    ...}]}}
// Every field is optional: what is missing or of the wrong type is shown as
// empty or left out, never an exception. A missing goal is "minimize" when
// the metric's name contains "loss", else "maximize".
//
// Trials rank as the tuner ranks them (tune/strategy.h): trials with an
// objective first, trials stopped early after every other trial with an
// objective, then by objective in the goal's direction; trials without one
// last. The table and the best-so-far curve use this ranking.
std::string render_tuning_report(const nlohmann::json& study);

}  // namespace kennel::report
