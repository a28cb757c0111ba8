"""Hook overhead benchmark: training images/s with `--debugger default` and with
`--profiler default`, against the same job with both off.

For each arch it runs the three configurations interleaved `--repeat` times
(the order rotates every round, so slow drift of the machine does not favour one
configuration), each a full `kennel train` at 224 px on the synthetic dataset
train_bench.py uses, and takes each configuration's median images/s over the
epochs after the first (warm-up). Overhead = 1 - hooked / off. Targets: debugger
<= 5 %, profiler <= 3 %.

The default profiler records LibTorch operators for a fixed window of steps
(steps 6-8, the default `operators` window): a one-off cost that a long job
amortises but that fills 3 of the 10 timed steps of this small dataset. So the
bench reports two figures per configuration: over the whole timed epochs (window
included), and over the timed steps outside the window ("steady", the same steps
left out of every configuration), which is the profiler's cost on every further
step. For the debugger the whole-epoch figure is the one to read: leaving steps
out changes the share of its saving steps (one in ten). Writes bench/results/hook_overhead_bench.json.
Run with Debian's /usr/bin/python3 on an otherwise idle machine.
"""
import datetime
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import (add_probe_option, bench_parser, csv_list, fmt, host_info, make_log,  # noqa: E402
                          measure_ceiling)
import train_bench  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
HOOKS = {"off": [], "debugger": ["--debugger", "default"], "profiler": ["--profiler", "default"]}
TARGETS = {"debugger": 5.0, "profiler": 3.0}
OPERATOR_WINDOW_STEPS = (6, 7, 8)  # 1-based: the default profiler's operators {start_step: 5, num_steps: 3}
log = make_log("hook_overhead_bench")


def main():
    parser = bench_parser(__doc__, ROOT)
    parser.add_argument("--archs", type=lambda s: csv_list(s, train_bench.ARCHS, "--archs"),
                        default=list(train_bench.ARCHS), help="comma-separated")
    parser.add_argument("--hooks", type=lambda s: csv_list(s, ("debugger", "profiler"), "--hooks"),
                        default=["debugger", "profiler"], help="comma-separated")
    parser.add_argument("--mode", choices=("finetune", "frozen_nocache"), default="finetune",
                        help="what trains (train_bench.py's modes)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds of interleaved runs")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per run; the first is warm-up")
    parser.add_argument("--per-class", type=int, default=16, help="synthetic training images per class (10 classes)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--json-out", type=Path, default=train_bench.RESULTS / "hook_overhead_bench.json")
    add_probe_option(parser)
    args = parser.parse_args()
    if args.repeat < 1 or args.epochs < 2:
        parser.error("--repeat must be >= 1 and --epochs >= 2 (the first epoch is warm-up)")
    args.kennel = args.kennel.resolve()
    if not args.kennel.is_file():
        sys.exit(f"hook_overhead_bench: {args.kennel} not found (bash scripts/build.sh kennel)")
    args.keep_homes = False
    load = os.getloadavg()[0]
    if load > 0.5:
        log(f"warning: the load average is {load:.1f}: the numbers will be noisy (run on an idle machine)")
    ceiling = measure_ceiling(args, log, archs=args.archs)
    data = train_bench.ensure_dataset(args.kennel, args.per_class, None)
    configurations = ["off"] + args.hooks
    started = time.perf_counter()
    rates = {(arch, hook): [] for arch in args.archs for hook in configurations}
    steady = {(arch, hook): [] for arch in args.archs for hook in configurations}
    for arch in args.archs:
        for round_index in range(args.repeat):
            order = configurations[round_index % len(configurations):] + configurations[:round_index % len(configurations)]
            for hook in order:
                mode = f"{args.mode}_{hook}"
                train_bench.MODE_FLAGS[mode] = train_bench.MODE_FLAGS[args.mode] + HOOKS[hook]
                result = train_bench.measure_kennel(args, data, arch, mode, OPERATOR_WINDOW_STEPS)
                rates[(arch, hook)].append(result["images_per_second"])
                steady[(arch, hook)].append(result.get("steps_images_per_second"))
                log(f"{arch} round {round_index + 1}/{args.repeat} {hook}: {result['images_per_second']:.2f} img/s, "
                    f"steady {fmt(result.get('steps_images_per_second'), 2)} img/s")

    rows = []
    for arch in args.archs:
        off = statistics.median(rates[(arch, "off")])
        steady_off = median_or_none(steady[(arch, "off")])
        for hook in args.hooks:
            hooked = statistics.median(rates[(arch, hook)])
            steady_hooked = median_or_none(steady[(arch, hook)])
            rows.append({"arch": arch, "hook": hook, "off_images_per_second": off,
                         "hooked_images_per_second": hooked, "overhead_percent": overhead_percent(off, hooked),
                         "steady_off_images_per_second": steady_off,
                         "steady_hooked_images_per_second": steady_hooked,
                         "steady_overhead_percent": overhead_percent(steady_off, steady_hooked),
                         "target_percent": TARGETS[hook], "runs_off": rates[(arch, "off")],
                         "runs_hooked": rates[(arch, hook)], "steady_runs_off": steady[(arch, "off")],
                         "steady_runs_hooked": steady[(arch, hook)]})
    report = {"benchmark": "hook_overhead", "date": datetime.datetime.now().isoformat(timespec="seconds"),
              "host": host_info(), "ceiling": ceiling, "load_average_at_start": load,
              "total_seconds": time.perf_counter() - started,
              "settings": {"mode": args.mode, "repeat": args.repeat, "epochs": args.epochs,
                           "per_class": args.per_class, "threads": args.threads, "batch_size": args.batch_size,
                           "input_size": 224, "data": str(data),
                           "steady_leaves_out_steps": list(OPERATOR_WINDOW_STEPS)},
              "rows": rows}
    args.json_out.parent.mkdir(parents=True, exist_ok=True)
    args.json_out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"Hook overhead, {args.mode}, 224 px, batch {args.batch_size}, {args.threads} threads, "
          f"median of {args.repeat} interleaved runs x {args.epochs - 1} timed epochs")
    print(f"{'arch':<10} {'hook':<9} {'off img/s':>10} {'hooked img/s':>13} {'overhead':>9} "
          f"{'steady off':>11} {'steady hooked':>14} {'steady':>7} {'target':>7}")
    for row in rows:
        print(f"{row['arch']:<10} {row['hook']:<9} {fmt(row['off_images_per_second'], 2):>10} "
              f"{fmt(row['hooked_images_per_second'], 2):>13} {percent_cell(row['overhead_percent']):>9} "
              f"{fmt(row['steady_off_images_per_second'], 2):>11} "
              f"{fmt(row['steady_hooked_images_per_second'], 2):>14} "
              f"{percent_cell(row['steady_overhead_percent']):>7} "
              f"{row['target_percent']:>6.0f}%")
    print(f"steady: the timed steps other than {', '.join(map(str, OPERATOR_WINDOW_STEPS))} "
          "(the profiler's one-off operator window)")


def overhead_percent(off, hooked):
    return (1 - hooked / off) * 100 if off and hooked else None


def percent_cell(value):
    return "n/a" if value is None else f"{value:+.1f}%"


def median_or_none(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


if __name__ == "__main__":
    main()
