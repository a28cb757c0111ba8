"""Serving benchmark: `kennel serve` with its defaults next to two Python peers.

For each arch (resnet18, resnet50; 10 classes, 224 px input) and each request body
(jpeg: the raw bytes of a 500x375 JPEG, Content-Type image/jpeg; json: {"url":
"file:///.../img.jpg"}, the server reads the file), it measures requests/s and the
p50/p99 latency at concurrency 1, 8, 32 and 64 with wrk (`wrk -t2 -c<conc> -d<seconds>s
--timeout 30s --latency -s bench/wrk/invocations_<body>.lua`, 127.0.0.1 only; the 30 s
timeout keeps a slow answer a latency sample instead of a socket error), against

  kennel       `kennel serve MODEL --no-access-log --allow-file-root IMAGES`: no --precision and
               no batching or thread flags, i.e. kennel's defaults are what is measured (--precision,
               --kennel-threads, --workers, --max-batch-size, --max-batch-delay-ms and --http-threads
               add the flag to compare)
  classic      bench/peers/serve_peer.py: model_fn/input_fn/predict_fn/output_fn of the classic
               SageMaker PyTorch handler (Debian's torch + torchvision + PIL) behind
               http.server.ThreadingHTTPServer, torch.set_num_threads(--threads), one image per forward
  best_effort  the same peer with --best-effort: channels_last model and input, inference_mode,
               bf16 autocast where the CPU has native bf16 (else fp32) with the weights converted
               to bf16 once (autocast alone re-casts fp32 weights in every request, slower than
               the classic handler at batch 1; --best-effort-fp32-weights measures that), a
               warm-up forward; same threads, still one image per forward

on the same weights: the model is trained once per arch (`kennel train` with
--max-steps 1 on a tiny synthetic dataset, random init: the weights do not matter for
speed) and exported as model.pth, which the peers load with strict=True. Before
measuring, every server answers every test image in both body kinds and their logits are
compared with kennel's (the same contract; bf16 answers differ in the low digits).

Before the servers start, bench/ceiling.py probes the CPU (4096^2 matmul fp32 and bf16, int8
quantized::linear, best of 5) and computes its nominal peak from the flags and clock; both
are printed above the table and stored in the JSON, and each kennel cell's images/s is also
given in GFLOP/s as a share of the probe and of the peak of the precision kennel runs (bf16
where the CPU has native bf16, as kennel's auto picks).

Each cell (server, arch, body, concurrency) is a warm-up wrk run (--warmup seconds, same
concurrency) and then the measured run (--seconds), each started with every server idle
(the requests a finished wrk run leaves in flight are drained first), the servers
interleaved cell by cell. wrk's Requests/sec counts every response; non-2xx answers are
counted per status by the lua script, wrk's socket errors and the kernel's listen-queue
overflows are recorded, and a cell whose req/s is well below concurrency / mean latency
(Little's law: the run was too short for its latency) is flagged. Prints one table with
the ratios kennel / classic and kennel / best_effort, then issue 15's targets with pass/FAIL
(c=1 p50 <= 1/2 classic's; c=8 and c=32 req/s >= 4x classic's and >= 1.5x best_effort's;
c=8 p99 <= 1/3 classic's; c=64 without socket errors or listen-queue overflows; a kennel cell
with non-2xx answers fails), and writes it all as JSON to bench/results/serve_bench.json.

Split: bench/serve_wrk.py runs and parses wrk; bench/serve_report.py prints the table and
judges the targets; bench/ceiling.py probes the CPU.

Everything generated (dataset, models, the 500x375 JPEGs, server logs) is kept under
bench/results/. Run with Debian's /usr/bin/python3 on an idle machine: wrk, the servers
and the model share the CPUs. The full run (2 archs x 2 bodies x 4 concurrencies x 3
servers x (3 + 10) s, plus drains, model training and the probe) takes about 15-20 minutes.
"""
import argparse
import datetime
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import (add_probe_option, bench_parser, csv_list, fmt, host_info, make_log,  # noqa: E402
                          measure_ceiling)
from ceiling import images_shares  # noqa: E402
from serve_report import evaluate_targets, print_summary  # noqa: E402
from serve_wrk import listen_overflows, run_wrk  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
PEER = ROOT / "bench" / "peers" / "serve_peer.py"
ARCHS = ("resnet18", "resnet50")
BODIES = ("jpeg", "json")
SERVERS = ("kennel", "classic", "best_effort")
PEERS = SERVERS[1:]
PEER_FLAGS = {"classic": [], "best_effort": ["--best-effort"]}
IMAGE_SIZE = (500, 375)
DATASET = RESULTS / "serve-synth-c10-n4-500x375-s0"
MODELS = RESULTS / "serve-models"
IMAGES = RESULTS / "serve-images"
LOGS = RESULTS / "serve-logs"


log = make_log("serve_bench")


def int_list(text):
    try:
        values = [int(item) for item in text.split(",") if item.strip()]
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"--concurrency: {error}") from error
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("--concurrency: positive integers, comma-separated")
    return values


# --- inputs: dataset, models, images ---------------------------------------------------------

def run_checked(command, what, env=None):
    done = subprocess.run(command, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        detail = (done.stderr.strip() or done.stdout.strip())[-2000:]
        raise RuntimeError(f"{what} failed ({done.returncode}): {detail}\ncommand: {' '.join(map(str, command))}")
    return done


def ensure_dataset(kennel):
    if (DATASET / "train").is_dir():
        return DATASET
    RESULTS.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f"{DATASET.name}.partial-", dir=RESULTS))
    log(f"dataset: generating {DATASET.relative_to(ROOT)}")
    try:
        run_checked([str(kennel), "data", "synth", "--out", str(staging), "--classes", "10", "--per-class", "4",
                     "--size", "500x375", "--seed", "0", "--overwrite"], "kennel data synth")
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    staging.rename(DATASET)  # only a complete dataset gets the final name
    return DATASET


def ensure_model(kennel, arch):
    """A Kennel model dir (model.json, model.safetensors, model.pth) for `arch`, trained once."""
    model_dir = MODELS / f"{arch}-c10-224"
    if (model_dir / "model.json").is_file() and (model_dir / "model.pth").is_file():
        log(f"{arch}: reusing the model {model_dir.relative_to(ROOT)}")
        return model_dir
    data = ensure_dataset(kennel)
    MODELS.mkdir(parents=True, exist_ok=True)
    home = Path(tempfile.mkdtemp(prefix=f"home-{arch}-", dir=MODELS))
    log(f"{arch}: training a model for serving (1 step, random init) ...")
    try:
        name = f"serve-bench-{arch}"
        command = [str(kennel), "train", "--data", str(data), "--name", name, "--arch", arch,
                   "--pretrained", "none", "--freeze", "backbone", "--feature-cache", "false",
                   "--epochs", "1", "--max-steps", "1", "--batch-size", "8", "--input-size", "224",
                   "--export-pth", "--quiet", "--json"]
        done = run_checked(command, "kennel train", env=dict(os.environ, KENNEL_HOME=str(home)))
        outcome = json.loads(done.stdout)
        if outcome.get("status") != "Completed":
            raise RuntimeError(f"kennel train ended {outcome.get('status')!r}: {outcome.get('reason')}")
        source = home / "jobs" / name / "model"
        if not (source / "model.pth").is_file():
            raise RuntimeError(f"kennel train --export-pth left no {source}/model.pth")
        staging = MODELS / f"{model_dir.name}.partial"
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(source, staging)
        shutil.rmtree(model_dir, ignore_errors=True)
        staging.rename(model_dir)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    return model_dir


def ensure_int8_model(kennel, model_dir):
    """`kennel quantize` of `model_dir`, calibrated on the bench's synthetic training images. The
    weights are random (the bench measures speed), so the agreement it reports means little and
    the server is told to accept any (--int8-min-agreement 0)."""
    out = model_dir.parent / f"{model_dir.name}-int8"
    if (out / "quantization.json").is_file():
        log(f"{model_dir.name}: reusing the int8 model {out.relative_to(ROOT)}")
        return out
    data = ensure_dataset(kennel)
    log(f"{model_dir.name}: quantizing (kennel quantize, 32 calibration images) ...")
    done = run_checked([str(kennel), "quantize", str(model_dir), "--calibration", str(data),
                        "--calibration-images", "32", "--check-images", "32", "--out", str(out), "--json"],
                       "kennel quantize")
    log(f"{model_dir.name}: int8 agreement with fp32 {json.loads(done.stdout)['agreement']:.3f} (random weights)")
    return out


def ensure_images(kennel, count):
    """`count` JPEGs of exactly 500x375 (quality 90), cut from the synthetic test images."""
    wanted = [IMAGES / f"img{i}.jpg" for i in range(count)]
    if all(path.is_file() for path in wanted):
        return wanted
    from PIL import Image  # Debian's python3-pil
    data = ensure_dataset(kennel)
    sources = sorted((data / "test").glob("*/*.jpg")) or sorted((data / "train").glob("*/*.jpg"))
    if len(sources) < count:
        raise RuntimeError(f"{data} has only {len(sources)} test images, --images {count} asked")
    IMAGES.mkdir(parents=True, exist_ok=True)
    step = len(sources) // count  # spread over the classes
    for i, path in enumerate(wanted):
        with Image.open(sources[i * step]) as image:
            image.convert("RGB").resize(IMAGE_SIZE, Image.BILINEAR).save(path, quality=90)
    return wanted


# --- servers ---------------------------------------------------------------------------------

def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def http(method, port, path, body=None, content_type=None, timeout=60):
    """(status, body bytes); status 0 when nothing answered."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, method=method)
    if content_type:
        request.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except (urllib.error.URLError, ConnectionError, socket.timeout):
        return 0, b""


def cpu_seconds(pid):
    """User + system CPU seconds of a process (and its reaped children), or None when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return sum(int(value) for value in fields[11:15]) / os.sysconf("SC_CLK_TCK")


class Server:
    """One server process: started, awaited on /ping, stopped with SIGTERM (SIGKILL as a last resort)."""

    def __init__(self, name, command, port, log_path):
        self.name, self.command, self.port, self.log_path = name, command, port, log_path
        self.process = None
        self.stop_report = None

    def start(self, ready_timeout):
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "w") as log_file:
            log_file.write("$ " + " ".join(map(str, self.command)) + "\n")
            log_file.flush()
            self.process = subprocess.Popen(self.command, stdin=subprocess.DEVNULL, stdout=log_file,
                                            stderr=subprocess.STDOUT)
        started = time.perf_counter()
        deadline = started + ready_timeout
        while time.perf_counter() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited {self.process.returncode} before answering /ping:\n"
                                   f"{self.log_tail()}")
            status, _ = http("GET", self.port, "/ping", timeout=2)
            if status == 200:
                return time.perf_counter() - started
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} did not answer /ping with 200 within {ready_timeout:.0f} s:\n"
                           f"{self.log_tail()}")

    def alive(self):
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines=20):
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, timeout=60):
        """SIGTERM, wait; SIGKILL after `timeout` s. Returns {exit_code, stop_seconds, killed}."""
        if self.process is None:
            return None
        if self.stop_report is not None:
            return self.stop_report
        report = {"exit_code": self.process.poll(), "stop_seconds": 0.0, "killed": False,
                  "died_before_stop": self.process.poll() is not None}
        if self.process.poll() is None:
            started = time.perf_counter()
            self.process.send_signal(signal.SIGTERM)
            try:
                report["exit_code"] = self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                report["exit_code"] = self.process.wait()
                report["killed"] = True
            report["stop_seconds"] = time.perf_counter() - started
        self.stop_report = report
        return report


KENNEL_TUNING = (("kennel_threads", "--threads"), ("workers", "--workers"), ("max_batch_size", "--max-batch-size"),
                 ("max_batch_delay_ms", "--max-batch-delay-ms"), ("http_threads", "--http-threads"),
                 ("precision", "--precision"))


def kennel_tuning_flags(args):
    """The kennel serve flags given to the bench (none by default: kennel's defaults are measured)."""
    flags = []
    for attribute, flag in KENNEL_TUNING:
        value = getattr(args, attribute)
        if value is not None and value != "":
            flags += [flag, f"{value:g}" if isinstance(value, float) else str(value)]
    return flags


def kennel_command(args, model_dir, port):
    int8 = ["--int8-min-agreement", "0"] if args.precision == "int8" else []
    return [str(args.kennel), "serve", str(model_dir), "--port", str(port), "--no-access-log",
            "--allow-file-root", str(IMAGES), *kennel_tuning_flags(args), *int8]


def peer_command(args, name, model_dir, port):
    extra = ["--fp32-weights"] if name == "best_effort" and args.best_effort_fp32_weights else []
    return [args.python, str(PEER), str(model_dir), "--port", str(port), "--threads", str(args.threads),
            "--allow-file-root", str(IMAGES), *PEER_FLAGS[name], *extra]


def wait_idle(servers, max_seconds, window=0.5, busy_share=0.05):
    """Waits until no server uses more than `busy_share` of a core over `window` s (in-flight
    requests of a finished wrk run drained). Returns the seconds waited, or None on giving up."""
    started = time.perf_counter()
    deadline = started + max_seconds
    while True:
        before = [cpu_seconds(server.process.pid) for server in servers]
        time.sleep(window)
        after = [cpu_seconds(server.process.pid) for server in servers]
        busy = [b - a for a, b in zip(before, after) if a is not None and b is not None]
        if all(used <= busy_share * window for used in busy):
            return time.perf_counter() - started
        if time.perf_counter() > deadline:
            return None


def metrics_snapshot(port):
    """kennel's /metrics counters that describe batching: {name: value}."""
    status, body = http("GET", port, "/metrics", timeout=10)
    if status != 200:
        return {}
    values = {}
    for line in body.decode(errors="replace").splitlines():
        match = re.match(r"^(kennel_batch_size_(?:sum|count)|kennel_batch_seconds_sum|kennel_images_total)"
                         r"\s+([0-9.eE+-]+)$", line)
        if match:
            values[match.group(1)] = float(match.group(2))
    return values


def batching_between(before, after):
    count = after.get("kennel_batch_size_count", 0) - before.get("kennel_batch_size_count", 0)
    if count <= 0:
        return {}
    images = after.get("kennel_batch_size_sum", 0) - before.get("kennel_batch_size_sum", 0)
    model_seconds = after.get("kennel_batch_seconds_sum", 0) - before.get("kennel_batch_seconds_sum", 0)
    return {"batches": int(count), "mean_batch_size": images / count, "model_seconds_per_batch": model_seconds / count}


# --- the contract check ----------------------------------------------------------------------

def check_contract(servers, images):
    """Both servers answer every image in both body kinds with the same logits (to float tolerance)."""
    answers = {}
    problems = []
    for server in servers:
        for image in images:
            for body_kind, body, content_type in (
                    ("jpeg", image.read_bytes(), "image/jpeg"),
                    ("json", json.dumps({"url": f"file://{image}"}).encode(), "application/json")):
                status, payload = http("POST", server.port, "/invocations", body, content_type, timeout=120)
                key = (server.name, image.name, body_kind)
                if status != 200:
                    problems.append(f"{server.name} answered {status} to {body_kind} {image.name}: "
                                    f"{payload[:300].decode(errors='replace')}")
                    continue
                try:
                    logits = json.loads(payload)
                    assert isinstance(logits, list) and len(logits) == 1 and isinstance(logits[0], list)
                    answers[key] = [float(value) for value in logits[0]]
                except (ValueError, AssertionError, TypeError):
                    problems.append(f"{server.name} {body_kind} {image.name}: not [[logits]]: {payload[:200]!r}")
    reference = servers[0].name
    max_diff = 0.0
    argmax_agree = True
    compared = 0
    by_server = {}
    for (name, image, body_kind), logits in answers.items():
        base = answers.get((reference, image, "jpeg"))
        if base is None or (name, body_kind) == (reference, "jpeg"):
            continue
        if len(base) != len(logits):
            problems.append(f"{name} {body_kind} {image}: {len(logits)} logits, {reference} {len(base)}")
            continue
        compared += 1
        diff = max(abs(a - b) for a, b in zip(base, logits))
        agree = base.index(max(base)) == logits.index(max(logits))
        max_diff = max(max_diff, diff)
        argmax_agree &= agree
        mine = by_server.setdefault(name, {"compared": 0, "max_abs_diff": 0.0, "argmax_agree": True})
        mine["compared"] += 1
        mine["max_abs_diff"] = max(mine["max_abs_diff"], diff)
        mine["argmax_agree"] &= agree
    return {"reference": f"{reference} jpeg", "compared": compared, "max_abs_diff": max_diff,
            "argmax_agree": argmax_agree, "by_server": by_server, "problems": problems}


def measure_cell(args, server, servers, body_kind, concurrency, images):
    """Warm-up run, drain, measured run, drain: one cell of the table."""
    cell = {}
    if args.warmup > 0:
        warm = run_wrk(args, server.port, body_kind, concurrency, args.warmup, images)
        cell["warmup"] = {key: warm.get(key) for key in ("rps", "requests", "non_2xx", "statuses")}
    cell["idle_wait_before_s"] = wait_idle(servers, args.drain_timeout)
    if cell["idle_wait_before_s"] is None:
        log(f"  warning: the servers were still busy after {args.drain_timeout:.0f} s of waiting")
    before = metrics_snapshot(server.port) if server.name == "kennel" else {}
    overflows = listen_overflows()
    cell.update(run_wrk(args, server.port, body_kind, concurrency, args.seconds, images))
    if overflows is not None:
        # System-wide, but nothing else connects during the run: connections this server's
        # listen backlog dropped (they show up as wrk socket errors: resets, timeouts).
        cell["listen_overflows"] = listen_overflows() - overflows
    if server.name == "kennel":
        cell["batching"] = batching_between(before, metrics_snapshot(server.port))
    cell["idle_wait_after_s"] = wait_idle(servers, args.drain_timeout)
    if not server.alive():
        raise RuntimeError(f"{server.name} died during the run (exit {server.process.poll()}):\n{server.log_tail()}")
    return cell


# --- main ------------------------------------------------------------------------------------

def main():
    parser = bench_parser(__doc__, ROOT)
    parser.add_argument("--wrk", default="wrk", help="the wrk binary")
    parser.add_argument("--archs", type=lambda s: csv_list(s, ARCHS, "--archs"), default=list(ARCHS),
                        help="comma-separated")
    parser.add_argument("--bodies", type=lambda s: csv_list(s, BODIES, "--bodies"), default=list(BODIES),
                        help="comma-separated: jpeg (raw bytes), json ({\"url\": \"file://...\"})")
    parser.add_argument("--concurrency", type=int_list, default=[1, 8, 32, 64], help="comma-separated connections")
    parser.add_argument("--seconds", type=int, default=10, help="measured wrk run per cell")
    parser.add_argument("--warmup", type=int, default=3, help="warm-up wrk run per cell (0 = none)")
    parser.add_argument("--peers", type=lambda s: csv_list(s, PEERS, "--peers"), default=list(PEERS),
                        help="comma-separated Python peers next to kennel")
    parser.add_argument("--no-peer", action="store_true", help="kennel only (no Python peer)")
    parser.add_argument("--best-effort-fp32-weights", action="store_true",
                        help="the best_effort peer keeps fp32 weights (autocast casts them in every request)")
    parser.add_argument("--images", type=int, default=4, help="500x375 JPEGs the requests cycle through")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)),
                        help="the peers' torch.set_num_threads (default: every usable CPU, as kennel's --threads 0)")
    parser.add_argument("--kennel-threads", type=int, help="kennel serve --threads (default: not passed)")
    parser.add_argument("--workers", type=int, help="kennel serve --workers (default: not passed)")
    parser.add_argument("--precision", default="",
                        help="kennel serve --precision (default: not passed, i.e. kennel's own default, auto)")
    parser.add_argument("--max-batch-size", type=int, help="kennel serve --max-batch-size (default: not passed)")
    parser.add_argument("--max-batch-delay-ms", type=float,
                        help="kennel serve --max-batch-delay-ms (default: not passed)")
    parser.add_argument("--http-threads", type=int, help="kennel serve --http-threads (default: not passed)")
    parser.add_argument("--wrk-threads", type=int, default=2, help="wrk -t (at most the concurrency)")
    parser.add_argument("--wrk-timeout", type=int, default=30,
                        help="wrk --timeout, s: a slower answer is a socket timeout, not a latency sample")
    add_probe_option(parser)
    parser.add_argument("--drain-timeout", type=float, default=180,
                        help="longest wait, s, for the servers to finish what a wrk run left in flight")
    parser.add_argument("--json-out", type=Path, default=RESULTS / "serve_bench.json")
    args = parser.parse_args()
    if args.seconds < 1 or args.warmup < 0 or args.images < 1:
        parser.error("--seconds and --images must be at least 1, --warmup at least 0")
    if args.probe_size < 0 or args.threads < 1:
        parser.error("--probe-size must be at least 0 and --threads at least 1")
    args.kennel = args.kennel.resolve()
    if not args.kennel.is_file():
        sys.exit(f"serve_bench: {args.kennel} not found (bash scripts/build.sh kennel)")
    if shutil.which(args.wrk) is None:
        sys.exit(f"serve_bench: {args.wrk} not found (apt-get install wrk)")
    # SIGTERM/SIGHUP unwind like Ctrl-C, so that every `finally` below stops its servers.
    for signal_number in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signal_number, lambda number, frame: sys.exit(128 + number))

    load = os.getloadavg()[0]
    if load > 0.5:
        log(f"warning: the load average is {load:.1f}: another job is using the CPUs, the numbers will be low "
            f"and noisy (run on an idle machine)")
    started = time.perf_counter()
    # Before any server runs: the probe wants the whole CPU.
    ceiling = measure_ceiling(args, log, archs=args.archs)
    images = ensure_images(args.kennel, args.images)
    server_names = ["kennel"] + ([] if args.no_peer else [peer for peer in PEERS if peer in args.peers])
    # kennel's auto is bf16 where the CPU has native bf16: its cells are read against that precision's ceiling.
    kennel_precision = args.precision if args.precision in ("fp32", "bf16", "int8") else \
        ("bf16" if (ceiling or {}).get("native_bf16") else "fp32")
    rows, archs, failures = [], {}, 0
    for arch in args.archs:
        arch_report = {}
        archs[arch] = arch_report
        try:
            model_dir = ensure_model(args.kennel, arch)
            kennel_model_dir = ensure_int8_model(args.kennel, model_dir) if args.precision == "int8" else model_dir
        except Exception as error:
            failures += 1
            arch_report["error"] = str(error)
            log(f"{arch}: FAILED to make the model: {error}")
            continue
        arch_report["model_dir"] = str(model_dir)
        servers = []
        try:
            for name in server_names:
                port = free_port()
                command = kennel_command(args, kennel_model_dir, port) if name == "kennel" else \
                    peer_command(args, name, model_dir, port)
                server = Server(name, command, port, LOGS / f"{name}-{arch}.log")
                servers.append(server)
                log(f"{arch}: starting {name} on 127.0.0.1:{port} ...")
                arch_report[f"{name}_ready_seconds"] = server.start(ready_timeout=180)
                arch_report[f"{name}_command"] = " ".join(map(str, command))
            contract = check_contract(servers, images)
            arch_report["contract"] = contract
            log(f"{arch}: contract check against {contract['reference']}: " + "; ".join(
                f"{name} {mine['compared']} answers, max |logit diff| {mine['max_abs_diff']:.2e}, argmax agree "
                f"{mine['argmax_agree']}" for name, mine in contract["by_server"].items())
                + (f", problems: {contract['problems']}" if contract["problems"] else ""))
            for body_kind in args.bodies:
                for concurrency in args.concurrency:
                    row = {"arch": arch, "body": body_kind, "concurrency": concurrency,
                           **{name: None for name in server_names}, "ratios": {}}
                    for server in servers:
                        if not server.alive():
                            row[server.name] = {"error": f"{server.name} is not running "
                                                         f"(exit {server.process.poll()})"}
                            continue
                        try:
                            cell = measure_cell(args, server, servers, body_kind, concurrency, images)
                            row[server.name] = cell
                            log(f"{arch} {body_kind} c={concurrency} {server.name}: {fmt(cell['rps'])} req/s, "
                                f"p50 {fmt(cell['p50_ms'])} ms, p99 {fmt(cell['p99_ms'])} ms, "
                                f"statuses {cell['statuses']}"
                                + (f", socket errors {cell['socket_errors']}"
                                   if any(cell["socket_errors"].values()) else "")
                                + (f", listen-queue overflows {cell['listen_overflows']}"
                                   if cell.get("listen_overflows") else "")
                                + (f", mean batch {cell['batching']['mean_batch_size']:.1f}"
                                   if cell.get("batching") else ""))
                        except Exception as error:  # one failed cell must not hide the others
                            failures += 1
                            row[server.name] = {"error": str(error)}
                            log(f"{arch} {body_kind} c={concurrency} {server.name}: FAILED: {error}")
                    kennel_rps = (row["kennel"] or {}).get("rps")
                    for peer in server_names[1:]:
                        peer_rps = (row[peer] or {}).get("rps")
                        if kennel_rps and peer_rps:
                            row["ratios"][peer] = kennel_rps / peer_rps
                    # one image per request: images/s = req/s
                    row["kennel_ceiling"] = images_shares(
                        kennel_rps, ((ceiling or {}).get("model_gflop_per_image") or {}).get(arch),
                        ceiling, kennel_precision)
                    rows.append(row)
        except Exception as error:
            failures += 1
            arch_report["error"] = str(error)
            log(f"{arch}: FAILED: {error}")
        finally:
            for server in servers:
                report = server.stop()
                if report is None:
                    continue
                arch_report[f"{server.name}_stop"] = report
                log(f"{arch}: {server.name} stopped in {report['stop_seconds']:.2f} s, exit {report['exit_code']}"
                    + (" (KILLED after the SIGTERM timeout)" if report["killed"] else "")
                    + (" (it had died before)" if report["died_before_stop"] else ""))
                if report["killed"] or report["died_before_stop"] or report["exit_code"] not in (0, None):
                    failures += 1
                errors = [line for line in server.log_tail(400).splitlines()
                          if re.search(r"\berror\b|exception|terminate|Traceback", line, re.I)]
                if errors:
                    arch_report[f"{server.name}_log_errors"] = errors[-20:]
                    log(f"{arch}: {server.name}'s log has {len(errors)} error line(s), e.g. {errors[-1]!r}")

    wrk_version = subprocess.run([args.wrk, "--version"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                 text=True).stdout.splitlines()[0:1]
    targets = evaluate_targets(rows)
    report = {
        "benchmark": "serve",
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "host": {**host_info(), "wrk": wrk_version[0] if wrk_version else None},
        "ceiling": ceiling,
        "settings": {"archs": args.archs, "bodies": args.bodies, "concurrency": args.concurrency,
                     "seconds": args.seconds, "warmup_seconds": args.warmup, "image_size": list(IMAGE_SIZE),
                     "images": [str(path) for path in images], "input_size": 224, "classes": 10,
                     "threads": args.threads, "kennel_threads": args.kennel_threads,
                     "kennel_workers": args.workers,
                     "kennel_max_batch_size": args.max_batch_size,
                     "kennel_max_batch_delay_ms": args.max_batch_delay_ms,
                     "kennel_http_threads": args.http_threads, "wrk_threads": args.wrk_threads,
                     "wrk_timeout_s": args.wrk_timeout, "servers": server_names, "kennel": str(args.kennel),
                     "kennel_flags": kennel_tuning_flags(args), "kennel_precision_flag": args.precision or None,
                     "best_effort_fp32_weights": args.best_effort_fp32_weights,
                     "kennel_cells_read_against": kennel_precision},
        "load_average_at_start": load,
        "total_seconds": time.perf_counter() - started,
        "archs": archs,
        "rows": rows,
        "targets": targets,
    }
    args.json_out.parent.mkdir(parents=True, exist_ok=True)
    args.json_out.write_text(json.dumps(report, indent=2) + "\n")

    print_summary(report, args, server_names, kennel_precision, ceiling)
    print(f"JSON: {args.json_out}  ({report['total_seconds']:.0f} s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
