"""The tuning store benchmark: is the store ever the bottleneck of a study?

Two figures per store (the embedded SQLite file and a PostgreSQL server started here, on
loopback, with fsync off as in the tests):
  scheduling overhead   from one trial's end to the next trial's start, in a real `kennel tune`
                        run of N trivial trials one at a time: each trial is a shell command that
                        prints the time when it starts and when it ends, so the gap covers the
                        worker noticing the exit, recording it, claiming the next trial (the
                        strategy's choice included) and starting its process
  claims/s              bench/store_bench.cpp: W worker processes claiming and finishing trials
                        of one study as fast as they can (the store alone, no trials)

  python3 bench/tune_store_bench.py [--trials 30] [--workers 16] [--claims 2000] [--build build]
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "integration"))
sys.path.insert(0, str(ROOT / "bench"))

from bench_common import make_log  # noqa: E402
from service_kit.postgres import postgres_server  # noqa: E402

log = make_log("tune_store_bench")


def cpu_model():
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def scheduling_overhead(kennel, store, trials, home):
    """Median and p90 gap (ms) between a trial's last line and the next trial's first line."""
    name = "sched"
    command = "date +%s.%N; echo valid_accuracy={x}; date +%s.%N"
    subprocess.run([str(kennel), "--home", str(home), "--store", store, "tune", "--name", name, "--command", command,
                    "--metric", "valid_accuracy=valid_accuracy=([0-9.]+)", "--param", "x=0.1..0.9",
                    "--strategy", "bayesian", "--startup-trials", "5", "--max-jobs", str(trials),
                    "--max-parallel-jobs", "1", "--quiet", "--json"],
                   check=True, capture_output=True, timeout=600)
    spans = []
    for index in range(1, trials + 1):
        lines = (home / "jobs" / f"{name}-{index:03d}" / "log.txt").read_text().split()
        spans.append((float(lines[0]), float(lines[-1])))
    gaps = sorted((spans[i + 1][0] - spans[i][1]) * 1000 for i in range(len(spans) - 1))
    return {"median_ms": statistics.median(gaps), "p90_ms": gaps[int(0.9 * (len(gaps) - 1))], "trials": trials}


def claims(store_bench, store, workers, count):
    result = subprocess.run([str(store_bench), "--store", store, "--workers", str(workers), "--trials", str(count),
                             "--json"], capture_output=True, text=True, timeout=900)
    if result.returncode != 0:
        raise RuntimeError(f"store_bench failed: {result.stderr}{result.stdout}")
    return json.loads(result.stdout)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--claims", type=int, default=2000)
    parser.add_argument("--build", default=os.environ.get("BUILD_DIR", "build"))
    args = parser.parse_args()
    build = (ROOT / args.build).resolve()
    kennel, store_bench = build / "kennel", build / "store_bench"
    results = {"cpu": cpu_model(), "cpus": os.cpu_count(), "stores": {}}
    with tempfile.TemporaryDirectory() as scratch, postgres_server(database="kennel_bench") as pg:
        stores = {"sqlite": f"sqlite:{scratch}/bench.db", "postgresql": pg.url}
        for label, store in stores.items():
            log(f"{label}: scheduling overhead over {args.trials} trials")
            home = Path(scratch) / f"home-{label}"
            overhead = scheduling_overhead(kennel, store, args.trials, home)
            log(f"{label}: {args.workers} workers claiming {args.claims} trials")
            throughput = claims(store_bench, store if label != "sqlite" else f"sqlite:{scratch}/claims.db",
                                args.workers, args.claims)
            results["stores"][label] = {"overhead": overhead, "claims": throughput}
    print(f"CPU: {results['cpu']} ({results['cpus']} cores)")
    print(f"{'store':<11} {'trial end -> next start (median / p90)':<40} {'claims/s, ' + str(args.workers) + ' workers':<22} "
          f"claim p50 / p99")
    for label, row in results["stores"].items():
        o, c = row["overhead"], row["claims"]
        print(f"{label:<11} {o['median_ms']:>8.0f} ms / {o['p90_ms']:>5.0f} ms{'':<21} {c['claims_per_second']:>8.0f}"
              f"{'':<14} {c['claim_ms_p50']:.1f} / {c['claim_ms_p99']:.1f} ms"
              f"{'' if c['each_trial_claimed_once'] else '  (CHECK FAILED)'}")
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "tune_store_bench.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
