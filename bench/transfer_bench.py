"""Transfer learning, shown: few-shot Fashion-MNIST with the pretrained MobileNetV2.

Imports a few-shot subset (--per-class training images per class, 20 % of them held
out as valid, --test-per-class test images) and trains three ways at --input-size px:

  frozen      pretrained backbone frozen, a new linear head on cached features
  finetune    pretrained, the last --stages backbone stages and the head train
  scratch     random initialisation, everything trains, the same epochs and schedule
              as `finetune` (so it gets at least the same training time)

and reports each one's test accuracy and wall time. The pretrained runs must win
clearly over scratch. Needs the imported backbone (scripts/backbone.sh).
Writes bench/results/transfer_bench.json. Run with Debian's /usr/bin/python3.
"""
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import add_probe_option, bench_parser, fmt, host_info, make_log, measure_ceiling  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
log = make_log("transfer_bench")


def run(command, env):
    done = subprocess.run([str(c) for c in command], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"transfer_bench: {' '.join(map(str, command))} failed ({done.returncode}):\n"
                 f"{done.stderr[-3000:]}{done.stdout[-2000:]}")
    return done.stdout


def main():
    parser = bench_parser(__doc__, ROOT)
    parser.add_argument("--per-class", type=int, default=50)
    parser.add_argument("--test-per-class", type=int, default=100)
    parser.add_argument("--input-size", type=int, default=112)
    parser.add_argument("--epochs", type=int, default=10, help="fine-tuning and scratch epochs")
    parser.add_argument("--head-epochs", type=int, default=40, help="frozen backbone: head epochs on cached features")
    parser.add_argument("--stages", type=int, default=2, help="backbone stages fine-tuned")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--keep-home", action="store_true")
    add_probe_option(parser)
    args = parser.parse_args()
    ceiling = measure_ceiling(args, log)
    kennel = args.kennel.resolve()
    home = Path(tempfile.mkdtemp(prefix="transfer-", dir=RESULTS if RESULTS.is_dir() else None))
    env = dict(os.environ, KENNEL_HOME=str(home))
    data = RESULTS / f"fashion-fewshot-{args.per_class}-{args.test_per_class}"
    if not (data / "train").is_dir():
        RESULTS.mkdir(parents=True, exist_ok=True)
        log(f"importing Fashion-MNIST, {args.per_class} per class -> {data}")
        run([kennel, "data", "import", "fashion-mnist", "--out", data, "--per-class", args.per_class,
             "--test-per-class", args.test_per_class, "--seed", 0], env)
    common = ["--data", data, "--arch", "mobilenet_v2", "--input-size", args.input_size, "--resize", args.input_size,
              "--threads", args.threads, "--seed", 0, "--quiet", "--json"]
    runs = {
        "frozen": ["--freeze", "backbone", "--epochs", args.head_epochs, "--lr", 0.01, "--batch-size", 32],
        "finetune": ["--freeze", f"last:{args.stages}", "--epochs", args.epochs, "--lr", 0.001, "--batch-size", 32],
        "scratch": ["--pretrained", "none", "--freeze", "none", "--epochs", args.epochs, "--lr", 0.001,
                    "--batch-size", 32],
    }
    rows = []
    for name, flags in runs.items():
        log(f"{name}: kennel train {' '.join(map(str, flags))}")
        start = time.perf_counter()
        outcome = json.loads(run([kennel, "train", *common, "--name", name, *flags], env))
        wall = time.perf_counter() - start
        metrics = outcome["final_metrics"]
        rows.append({"run": name, "flags": [str(f) for f in flags], "test_accuracy": metrics.get("test_accuracy"),
                     "valid_accuracy": metrics.get("valid_accuracy"), "wall_seconds": wall})
        log(f"{name}: test accuracy {metrics.get('test_accuracy'):.4f} in {wall:.0f} s")
    report = {"benchmark": "transfer", "date": datetime.datetime.now().isoformat(timespec="seconds"),
              "host": host_info(), "ceiling": ceiling,
              "settings": vars(args) | {"kennel": str(kennel), "data": str(data)}, "rows": rows}
    report["settings"] = {k: str(v) for k, v in report["settings"].items()}
    (RESULTS / "transfer_bench.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"Few-shot Fashion-MNIST: {args.per_class} training images per class (80 % train / 20 % valid), "
          f"{args.test_per_class * 10} test images, MobileNetV2 at {args.input_size} px")
    print(f"{'run':<10} {'test accuracy':>14} {'wall s':>8}  flags")
    for row in rows:
        print(f"{row['run']:<10} {fmt(row['test_accuracy'] * 100, 1) + ' %':>14} {row['wall_seconds']:>8.0f}  "
              f"{' '.join(row['flags'])}")
    if not args.keep_home:
        subprocess.run(["rm", "-rf", str(home)])


if __name__ == "__main__":
    main()
