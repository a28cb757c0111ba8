"""Serving benchmark: `kennel serve` next to the classic PyTorch inference handler.

For each arch (resnet18, resnet50; 10 classes, 224 px input) and each request body
(jpeg: the raw bytes of a 500x375 JPEG, Content-Type image/jpeg; json: {"url":
"file:///.../img.jpg"}, the server reads the file), it measures requests/s and the
p50/p99 latency at concurrency 1, 8 and 32 with wrk (`wrk -t2 -c<conc> -d<seconds>s
--latency -s bench/wrk/invocations_<body>.lua`, 127.0.0.1 only), against

  kennel   `kennel serve MODEL --no-access-log --threads 2 --workers 1 --max-batch-size 8
           --max-batch-delay-ms 5` (+ --allow-file-root for the JSON-url bodies): dynamic
           batching, the model on both cores, decoding on the HTTP threads
  peer     bench/peers/serve_peer.py: model_fn/input_fn/predict_fn/output_fn of the classic
           SageMaker PyTorch handler (Debian's torch + torchvision + PIL) behind
           http.server.ThreadingHTTPServer, torch.set_num_threads(2), one image per forward

on the same weights: the model is trained once per arch (`kennel train` with
--max-steps 1 on a tiny synthetic dataset, random init: the weights do not matter for
speed) and exported as model.pth, which the peer loads with strict=True. Before
measuring, both servers answer every test image in both body kinds and their logits are
compared (the same contract, the same numbers).

Each cell (server, arch, body, concurrency) is a warm-up wrk run (--warmup seconds, same
concurrency) and then the measured run (--seconds), each started with both servers idle
(the requests a finished wrk run leaves in flight are drained first), kennel and peer
interleaved cell by cell. wrk's Requests/sec counts every response; non-2xx answers are
counted per status by the lua script, wrk's socket errors and the kernel's listen-queue
overflows are recorded, and a cell whose req/s is well below concurrency / mean latency
(Little's law: the run was too short for its latency) is flagged. Prints one table with
the ratio kennel / peer and writes it as JSON to bench/results/serve_bench.json.

--kennel-threads, --workers, --max-batch-size, --max-batch-delay-ms and --http-threads tune
the kennel side only. On a 2-core machine, `--kennel-threads 1 --workers 2` (two batches at
once, one core each) avoids OpenMP's spin-waiting barriers, which slow a 2-thread model a
lot as soon as anything else (wrk, JPEG decoding, another job) wants a core.

Everything generated (dataset, models, the 500x375 JPEGs, server logs) is kept under
bench/results/. Run with Debian's /usr/bin/python3 on an idle machine: wrk, both servers
and the model share the CPUs.
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
from bench_common import bench_parser, csv_list, fmt, host_info, make_log  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
PEER = ROOT / "bench" / "peers" / "serve_peer.py"
LUA = {"jpeg": ROOT / "bench" / "wrk" / "invocations_jpeg.lua",
       "json": ROOT / "bench" / "wrk" / "invocations_json.lua"}
ARCHS = ("resnet18", "resnet50")
BODIES = ("jpeg", "json")
SERVERS = ("kennel", "peer")
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


def kennel_command(args, model_dir, port):
    command = [str(args.kennel), "serve", str(model_dir), "--port", str(port), "--no-access-log",
               "--threads", str(args.kennel_threads), "--workers", str(args.workers),
               "--max-batch-size", str(args.max_batch_size), "--max-batch-delay-ms", str(args.max_batch_delay_ms),
               "--http-threads", str(args.http_threads), "--allow-file-root", str(IMAGES)]
    if args.precision:
        command += ["--precision", args.precision]
    return command


def peer_command(args, model_dir, port):
    return [args.python, str(PEER), str(model_dir), "--port", str(port), "--threads", str(args.threads),
            "--allow-file-root", str(IMAGES)]


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
    for (name, image, body_kind), logits in answers.items():
        base = answers.get((reference, image, "jpeg"))
        if base is None or (name, body_kind) == (reference, "jpeg"):
            continue
        if len(base) != len(logits):
            problems.append(f"{name} {body_kind} {image}: {len(logits)} logits, {reference} {len(base)}")
            continue
        compared += 1
        max_diff = max(max_diff, max(abs(a - b) for a, b in zip(base, logits)))
        argmax_agree &= base.index(max(base)) == logits.index(max(logits))
    return {"compared": compared, "max_abs_diff": max_diff, "argmax_agree": argmax_agree, "problems": problems}


# --- wrk -------------------------------------------------------------------------------------

UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


def parse_wrk(text):
    """requests/s, p50/p99 ms, counts and errors from wrk --latency output (+ the lua status line)."""
    result = {}
    match = re.search(r"^Requests/sec:\s+([0-9.]+)", text, re.M)
    result["rps"] = float(match.group(1)) if match else None
    match = re.search(r"^\s+Latency\s+([0-9.]+)(us|ms|s|m|h)\s", text, re.M)
    result["mean_ms"] = float(match.group(1)) * UNITS[match.group(2)] if match else None
    for percent in ("50", "75", "90", "99"):
        match = re.search(rf"^\s+{percent}%\s+([0-9.]+)(us|ms|s|m|h)\s*$", text, re.M)
        result[f"p{percent}_ms"] = float(match.group(1)) * UNITS[match.group(2)] if match else None
    match = re.search(r"^\s+(\d+) requests in ([0-9.]+)(us|ms|s|m|h),", text, re.M)
    if match:
        result["requests"] = int(match.group(1))
        result["duration_s"] = float(match.group(2)) * UNITS[match.group(3)] / 1e3
    match = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    result["socket_errors"] = dict(zip(("connect", "read", "write", "timeout"), map(int, match.groups()))) \
        if match else {"connect": 0, "read": 0, "write": 0, "timeout": 0}
    match = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    result["wrk_non_2xx_3xx"] = int(match.group(1)) if match else 0
    match = re.search(r"^serve_bench statuses:(.*)$", text, re.M)
    statuses = {}
    if match:
        for item in match.group(1).split():
            status, count = item.split("=")
            statuses[status] = int(count)
    result["statuses"] = statuses
    result["non_2xx"] = sum(count for status, count in statuses.items() if not status.startswith("2"))
    return result


def run_wrk(args, port, body_kind, concurrency, seconds, images):
    threads = min(args.wrk_threads, concurrency)  # wrk wants connections >= threads
    command = [args.wrk, f"-t{threads}", f"-c{concurrency}", f"-d{seconds}s", "--timeout", f"{args.wrk_timeout}s",
               "--latency", "-s", str(LUA[body_kind]), f"http://127.0.0.1:{port}/invocations", "--",
               *map(str, images)]
    done = subprocess.run(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, timeout=seconds + args.wrk_timeout + 60)
    if done.returncode != 0 or "Requests/sec" not in done.stdout:
        raise RuntimeError(f"wrk exited {done.returncode}: {(done.stderr or done.stdout).strip()[-1000:]}\n"
                           f"command: {' '.join(command)}")
    result = parse_wrk(done.stdout)
    result["command"] = " ".join(command)
    # Closed loop: `concurrency` requests always in flight, so throughput = concurrency / mean latency
    # (Little's law). wrk's own req/s undercounts when few request lifetimes fit in the run (the
    # requests still in flight at the end are not counted): the table flags a gap between the two.
    if result.get("mean_ms"):
        result["littles_law_rps"] = concurrency / (result["mean_ms"] / 1e3)
    return result


def listen_overflows():
    """The kernel's TcpExt ListenOverflows counter (a connection dropped by a full accept queue)."""
    try:
        lines = Path("/proc/net/netstat").read_text().splitlines()
    except OSError:
        return None
    for names, values in zip(lines[::2], lines[1::2]):
        if names.startswith("TcpExt:"):
            table = dict(zip(names.split()[1:], values.split()[1:]))
            return int(table.get("ListenOverflows", 0))
    return None


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


# --- the table -------------------------------------------------------------------------------

def latency_pair(cell):
    if not cell or "error" in cell:
        return "failed" if cell else "-"
    digits = 0 if (cell.get("p99_ms") or 0) >= 100 else 1
    return f"{fmt(cell.get('p50_ms'), digits)}/{fmt(cell.get('p99_ms'), digits)}"


def undercounted(cell):
    """wrk's req/s is more than 15 % below concurrency / mean latency (see run_wrk)."""
    rps, expected = (cell or {}).get("rps"), (cell or {}).get("littles_law_rps")
    return bool(rps and expected and rps < 0.85 * expected)


def print_table(rows):
    header = ["arch", "body", "conc", "kennel rps", "peer rps", "ratio", "kennel p50/p99 ms",
              "peer p50/p99 ms", "non-2xx k/p", "sock err k/p", "k batch"]
    lines = []
    flagged = False
    for row in rows:
        kennel, peer = row.get("kennel"), row.get("peer")

        def rps(cell):
            nonlocal flagged
            if not cell:
                return "-"
            if "error" in cell:
                return "failed"
            mark = ""
            if undercounted(cell):
                mark, flagged = "*", True
            return fmt(cell.get("rps")) + mark

        def count(cell, what):
            if not cell or "error" in cell:
                return "-"
            return str(cell["non_2xx"] if what == "non_2xx" else sum(cell["socket_errors"].values()))

        batching = (kennel or {}).get("batching") or {}
        lines.append([row["arch"], row["body"], str(row["concurrency"]), rps(kennel), rps(peer),
                      (fmt(row["ratio"], 2) + "x") if row.get("ratio") else "-",
                      latency_pair(kennel), latency_pair(peer),
                      f"{count(kennel, 'non_2xx')}/{count(peer, 'non_2xx')}",
                      f"{count(kennel, 'socket')}/{count(peer, 'socket')}",
                      fmt(batching.get("mean_batch_size"), 1)])
    widths = [max(len(header[i]), *(len(line[i]) for line in lines)) for i in range(len(header))] \
        if lines else [len(h) for h in header]
    align = ["<", "<"] + [">"] * (len(header) - 2)
    print("  ".join(f"{h:{a}{w}}" for h, a, w in zip(header, align, widths)))
    print("  ".join("-" * w for w in widths))
    for line in lines:
        print("  ".join(f"{c:{a}{w}}" for c, a, w in zip(line, align, widths)))
    return flagged


# --- main ------------------------------------------------------------------------------------

def main():
    parser = bench_parser(__doc__, ROOT)
    parser.add_argument("--wrk", default="wrk", help="the wrk binary")
    parser.add_argument("--archs", type=lambda s: csv_list(s, ARCHS, "--archs"), default=list(ARCHS),
                        help="comma-separated")
    parser.add_argument("--bodies", type=lambda s: csv_list(s, BODIES, "--bodies"), default=list(BODIES),
                        help="comma-separated: jpeg (raw bytes), json ({\"url\": \"file://...\"})")
    parser.add_argument("--concurrency", type=int_list, default=[1, 8, 32], help="comma-separated connections")
    parser.add_argument("--seconds", type=int, default=10, help="measured wrk run per cell")
    parser.add_argument("--warmup", type=int, default=3, help="warm-up wrk run per cell (0 = none)")
    parser.add_argument("--no-peer", action="store_true", help="kennel only")
    parser.add_argument("--images", type=int, default=4, help="500x375 JPEGs the requests cycle through")
    parser.add_argument("--threads", type=int, default=2, help="model CPU threads on both sides")
    parser.add_argument("--kennel-threads", type=int, help="kennel serve --threads (default: --threads)")
    parser.add_argument("--workers", type=int, default=1, help="kennel serve --workers")
    parser.add_argument("--precision", default="",
                        help="kennel serve --precision (default: none, i.e. kennel's own default, auto)")
    parser.add_argument("--max-batch-size", type=int, default=8, help="kennel serve --max-batch-size")
    parser.add_argument("--max-batch-delay-ms", type=float, default=5, help="kennel serve --max-batch-delay-ms")
    parser.add_argument("--http-threads", type=int, default=32, help="kennel serve --http-threads")
    parser.add_argument("--wrk-threads", type=int, default=2, help="wrk -t (at most the concurrency)")
    parser.add_argument("--wrk-timeout", type=int, default=60,
                        help="wrk --timeout, s: a slower answer is a socket timeout, not a latency sample")
    parser.add_argument("--drain-timeout", type=float, default=180,
                        help="longest wait, s, for the servers to finish what a wrk run left in flight")
    parser.add_argument("--json-out", type=Path, default=RESULTS / "serve_bench.json")
    args = parser.parse_args()
    if args.seconds < 1 or args.warmup < 0 or args.images < 1:
        parser.error("--seconds and --images must be at least 1, --warmup at least 0")
    if args.kennel_threads is None:
        args.kennel_threads = args.threads
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
    images = ensure_images(args.kennel, args.images)
    server_names = ["kennel"] if args.no_peer else list(SERVERS)
    rows, archs, failures = [], {}, 0
    for arch in args.archs:
        arch_report = {}
        archs[arch] = arch_report
        try:
            model_dir = ensure_model(args.kennel, arch)
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
                command = kennel_command(args, model_dir, port) if name == "kennel" else \
                    peer_command(args, model_dir, port)
                server = Server(name, command, port, LOGS / f"{name}-{arch}.log")
                servers.append(server)
                log(f"{arch}: starting {name} on 127.0.0.1:{port} ...")
                arch_report[f"{name}_ready_seconds"] = server.start(ready_timeout=180)
                arch_report[f"{name}_command"] = " ".join(map(str, command))
            contract = check_contract(servers, images)
            arch_report["contract"] = contract
            log(f"{arch}: contract check: {contract['compared']} answers compared, max |logit diff| "
                f"{contract['max_abs_diff']:.2e}, argmax agree: {contract['argmax_agree']}"
                + (f", problems: {contract['problems']}" if contract["problems"] else ""))
            for body_kind in args.bodies:
                for concurrency in args.concurrency:
                    row = {"arch": arch, "body": body_kind, "concurrency": concurrency,
                           "kennel": None, "peer": None, "ratio": None}
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
                    peer_rps = (row["peer"] or {}).get("rps")
                    if kennel_rps and peer_rps:
                        row["ratio"] = kennel_rps / peer_rps
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
    report = {
        "benchmark": "serve",
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "host": {**host_info(), "wrk": wrk_version[0] if wrk_version else None},
        "settings": {"archs": args.archs, "bodies": args.bodies, "concurrency": args.concurrency,
                     "seconds": args.seconds, "warmup_seconds": args.warmup, "image_size": list(IMAGE_SIZE),
                     "images": [str(path) for path in images], "input_size": 224, "classes": 10,
                     "threads": args.threads, "kennel_threads": args.kennel_threads,
                     "kennel_workers": args.workers,
                     "kennel_max_batch_size": args.max_batch_size,
                     "kennel_max_batch_delay_ms": args.max_batch_delay_ms,
                     "kennel_http_threads": args.http_threads, "wrk_threads": args.wrk_threads,
                     "wrk_timeout_s": args.wrk_timeout, "peer": not args.no_peer, "kennel": str(args.kennel)},
        "load_average_at_start": load,
        "total_seconds": time.perf_counter() - started,
        "archs": archs,
        "rows": rows,
    }
    args.json_out.parent.mkdir(parents=True, exist_ok=True)
    args.json_out.write_text(json.dumps(report, indent=2) + "\n")

    print(f"Serving throughput: POST /invocations, one {IMAGE_SIZE[0]}x{IMAGE_SIZE[1]} JPEG per request, 224 px "
          f"model, wrk {args.seconds} s per cell after {args.warmup} s warm-up")
    print(f"kennel: --threads {args.kennel_threads} --workers {args.workers} --max-batch-size "
          f"{args.max_batch_size} --max-batch-delay-ms {args.max_batch_delay_ms:g} --http-threads {args.http_threads}; peer: ThreadingHTTPServer, "
          f"torch.set_num_threads({args.threads}), one forward per request")
    flagged = print_table(rows)
    print("ratio = kennel rps / peer rps (wrk's Requests/sec: every answer counts). p50/p99: wrk --latency. "
          "k batch: kennel's\n  mean model batch in the measured run (/metrics). jpeg = raw bytes, json = "
          "{\"url\": \"file://...\"}. sock err: wrk's socket errors\n  (connect/read/write/timeout).")
    if flagged:
        print(f"  *: wrk's req/s is >15 % below concurrency / mean latency (Little's law): few request lifetimes "
              f"fit in {args.seconds} s\n     (what is in flight at the end is not counted); raise --seconds.")
        for row in rows:
            for side in SERVERS:
                cell = row.get(side)
                if undercounted(cell):
                    print(f"     {row['arch']} {row['body']} c={row['concurrency']} {side}: wrk {cell['rps']:.1f} "
                          f"req/s, concurrency / mean latency {cell['littles_law_rps']:.1f} req/s")
    for arch, arch_report in archs.items():
        contract = arch_report.get("contract")
        if contract:
            print(f"  {arch}: logits of every server and body vs kennel's jpeg answers: max |diff| "
                  f"{contract['max_abs_diff']:.1e} over {contract['compared']} answers, argmax agree "
                  f"{contract['argmax_agree']}"
                  + (f"; PROBLEMS: {'; '.join(contract['problems'])}" if contract["problems"] else ""))
        for name in server_names:
            stop = arch_report.get(f"{name}_stop")
            if stop and (stop["killed"] or stop["exit_code"] != 0 or stop["stop_seconds"] > 5):
                print(f"  {arch}: {name} took {stop['stop_seconds']:.1f} s to stop after SIGTERM, exit "
                      f"{stop['exit_code']}" + (", killed" if stop["killed"] else ""))
        if arch_report.get("error"):
            print(f"  {arch} failed: {arch_report['error'].splitlines()[0]}")
    for row in rows:
        for side in SERVERS:
            cell = row.get(side) or {}
            if "error" in cell:
                print(f"  {row['arch']} {row['body']} c={row['concurrency']} {side} failed: "
                      f"{cell['error'].splitlines()[0]}")
            elif cell and (cell["non_2xx"] or any(cell["socket_errors"].values()) or cell.get("listen_overflows")):
                print(f"  {row['arch']} {row['body']} c={row['concurrency']} {side}: statuses {cell['statuses']}, "
                      f"socket errors {cell['socket_errors']}, listen-queue overflows "
                      f"{cell.get('listen_overflows', '?')}")
    print(f"JSON: {args.json_out}  ({report['total_seconds']:.0f} s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
