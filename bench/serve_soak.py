"""Soak: `kennel serve` under mixed good, bad and slow clients, checking that nobody well-behaved is dropped.

For --seconds (30) at --concurrency (64) client threads, all on 127.0.0.1:

  good   (half)      clients sending real requests: a 500x375 JPEG as image/jpeg, the same
                     as base64 JSON with ?top_k=3, GET /ping, /models, /metrics; each keeps
                     its connection for 4 requests, then opens a new one (as clients behind
                     a load balancer do)
  bad    (a quarter) garbage bytes, a PNG header claiming 50000x50000 pixels, malformed
                     JSON, text/plain, a URL to a loopback address (refused: not public),
                     an unknown route, a 7 MB body (over --max-body)
  slow   (a quarter) in turn: headers trickled a byte at a time, a body that stops
                     half-way, a connection that never says anything

and passes when every well-behaved request got an HTTP answer (no reset, no timeout:
200, or 503 + Retry-After if the queue was full), every bad one its 4xx, and the
server's RSS stayed within --rss-slack-mb (30) of its value after --warmup seconds.
Also reports the latency of the good requests (p50, p99, max). The server runs with its defaults (32 handler threads, 256 connections, 10 s header
and 30 s body deadlines) except --header-timeout/--body-timeout (2 s, so the slow
clients cycle during the run) and --no-access-log.

The model is --model (a model folder or job) or, by default, a tiny ResNet-18 trained
here for one epoch on a synthetic dataset (speed of the model is not what is measured).
Prints a summary and writes bench/results/serve_soak.json.
"""
import base64
import http.client
import io
import json
import os
import random
import re
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import bench_parser, host_info, make_log  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
log = make_log("serve_soak")


def cpu_model():
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def rss_mb(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def png_claiming(width, height):
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
            + chunk(b"IEND", b""))


def make_model(kennel, home, log):
    data = home / "data"
    env = dict(os.environ, KENNEL_HOME=str(home))
    log("making a tiny model (synthetic data, resnet18, one epoch) ...")
    subprocess.run([str(kennel), "data", "synth", "--out", str(data), "--classes", "3", "--per-class", "12",
                    "--size", "40x40", "--seed", "7"], check=True, env=env, capture_output=True)
    subprocess.run([str(kennel), "train", "--data", str(data), "--name", "soak", "--arch", "resnet18",
                    "--pretrained", "none", "--freeze", "none", "--input-size", "32", "--epochs", "1",
                    "--batch-size", "8", "--quiet"], check=True, env=env, capture_output=True)
    return "soak"


class Tally:
    def __init__(self):
        self.lock = threading.Lock()
        self.counts = Counter()      # (kind, outcome) -> n
        self.failures = []           # what went wrong for well-behaved or bad requests
        self.good_seconds = []       # latency of each answered good request

    def add(self, kind, outcome, failure=None):
        with self.lock:
            self.counts[(kind, outcome)] += 1
            if failure and len(self.failures) < 50:
                self.failures.append(f"{kind}: {failure}")


def good_client(port, stop_at, tally, jpeg, seed):
    rng = random.Random(seed)
    b64 = json.dumps({"image": base64.b64encode(jpeg).decode()}).encode()
    requests = [("POST", "/invocations", jpeg, {"Content-Type": "image/jpeg"}),
                ("POST", "/invocations?top_k=3", b64, {"Content-Type": "application/json"}),
                ("GET", "/ping", None, {}), ("GET", "/models", None, {}), ("GET", "/metrics", None, {})]
    weights = [6, 3, 1, 1, 1]
    connection = None
    sent_on_connection = 0
    while time.time() < stop_at:
        method, path, body, headers = rng.choices(requests, weights)[0]
        try:
            if connection is None or sent_on_connection == 4:
                if connection is not None:
                    connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                sent_on_connection = 0
            sent_on_connection += 1
            started = time.time()
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            response.read()
            with tally.lock:
                tally.good_seconds.append(time.time() - started)
            if response.status == 200:
                tally.add("good", "200")
            elif response.status == 503 and response.getheader("Retry-After") == "1":
                tally.add("good", "503 retry-after")
            else:
                tally.add("good", f"unexpected {response.status}", f"{method} {path} -> {response.status}")
            if response.getheader("Connection", "").lower() == "close":
                connection.close()
                connection = None
        except Exception as error:  # noqa: BLE001 - a dropped well-behaved request is the finding
            tally.add("good", "dropped", f"{method} {path}: {error!r}")
            if connection is not None:
                connection.close()
            connection = None
    if connection is not None:
        connection.close()


def bad_client(port, stop_at, tally, seed):
    rng = random.Random(seed)
    cases = [
        ("POST", "/invocations", b"garbage" * 100, {"Content-Type": "image/jpeg"}, 400),
        ("POST", "/invocations", png_claiming(50000, 50000), {"Content-Type": "image/png"}, 400),
        ("POST", "/invocations", b'{"url": ', {"Content-Type": "application/json"}, 400),
        ("POST", "/invocations", b"x", {"Content-Type": "text/plain"}, 415),
        ("POST", "/invocations", json.dumps({"url": f"http://127.0.0.1:{port}/metrics"}).encode(),
         {"Content-Type": "application/json"}, 400),
        ("GET", "/nope", None, {}, 404),
        ("POST", "/invocations", b"\0" * (7 << 20), {"Content-Type": "image/jpeg"}, 413),
    ]
    while time.time() < stop_at:
        method, path, body, headers, expected = rng.choice(cases)
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            response.read()
            outcome = str(response.status)
            tally.add("bad", outcome, None if response.status == expected else
                      f"{method} {path} -> {response.status}, expected {expected}")
        except Exception as error:  # noqa: BLE001
            # A 413 answered before a 7 MB body is all sent may close the connection under the sender.
            tally.add("bad", "connection closed" if expected == 413 else "dropped",
                      None if expected == 413 else f"{method} {path}: {error!r}")
        finally:
            connection.close()


def slow_client(port, stop_at, tally, seed):
    rng = random.Random(seed)
    while time.time() < stop_at:
        kind = rng.choice(["slow head", "slow body", "silent"])
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=40)
        except OSError as error:
            tally.add("slow", "connect failed", repr(error))
            continue
        try:
            if kind == "slow head":
                for byte in b"POST /invocations HTTP/1.1\r\nHost: soak\r\nContent-Type: image/jpeg\r\n":
                    if time.time() > stop_at + 10:
                        break
                    sock.sendall(bytes([byte]))
                    time.sleep(0.2)
            elif kind == "slow body":
                sock.sendall(b"POST /invocations HTTP/1.1\r\nHost: soak\r\nContent-Type: image/jpeg\r\n"
                             b"Content-Length: 100000\r\n\r\n" + b"\xff" * 1000)
            answer = b""
            try:
                answer = sock.recv(4096)
            except OSError:
                pass
            tally.add("slow", f"{kind}: {answer[:12].decode(errors='replace') or 'closed'}")
        except OSError:
            tally.add("slow", f"{kind}: closed while sending")
        finally:
            sock.close()


def main():
    parser = bench_parser(__doc__, ROOT)
    parser.add_argument("--model", help="model folder or job name (default: train a tiny one)")
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--warmup", type=float, default=5, help="RSS baseline taken this far in")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rss-slack-mb", type=float, default=30)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--server-args", default="--header-timeout 2 --body-timeout 2",
                        help="extra `kennel serve` flags (\"\" for a build that has no deadlines)")
    args = parser.parse_args()
    if not args.kennel.exists():
        sys.exit(f"{args.kennel} does not exist: build it first (scripts/build.sh kennel)")
    RESULTS.mkdir(parents=True, exist_ok=True)

    from PIL import Image
    noise = (random.Random(1).randbytes(500 * 375 * 3))
    out = io.BytesIO()
    Image.frombytes("RGB", (500, 375), noise).save(out, format="JPEG", quality=90)
    jpeg = out.getvalue()

    with tempfile.TemporaryDirectory(prefix="kennel-soak-") as temp:
        home = Path(temp)
        model = args.model or make_model(args.kennel, home, log)
        env = dict(os.environ, KENNEL_HOME=str(home))
        stdout = open(home / "serve.stdout", "wb")
        stderr = open(home / "serve.stderr", "wb")
        server = subprocess.Popen([str(args.kennel), "serve", model, "--port", str(args.port), "--no-access-log",
                                   *args.server_args.split()],
                                  env=env, stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL)
        try:
            deadline = time.time() + 120
            port = None
            while port is None:
                found = re.search(r"ready on http://127\.0\.0\.1:(\d+)", (home / "serve.stdout").read_text())
                if found:
                    port = int(found.group(1))
                elif server.poll() is not None or time.time() > deadline:
                    sys.exit(f"kennel serve did not start:\n{(home / 'serve.stderr').read_text()[-3000:]}")
                else:
                    time.sleep(0.1)
            log(f"serving on {port}; {args.concurrency} clients for {args.seconds:g}s "
                f"(warm-up {args.warmup:g}s) on {cpu_model()}")
            tally = Tally()
            stop_at = time.time() + args.seconds
            good = args.concurrency // 2
            bad = args.concurrency // 4
            slow = args.concurrency - good - bad
            threads = ([threading.Thread(target=good_client, args=(port, stop_at, tally, jpeg, i)) for i in range(good)]
                       + [threading.Thread(target=bad_client, args=(port, stop_at, tally, 100 + i)) for i in range(bad)]
                       + [threading.Thread(target=slow_client, args=(port, stop_at, tally, 200 + i))
                          for i in range(slow)])
            started = time.time()
            for thread in threads:
                thread.start()
            time.sleep(args.warmup)
            rss = [(round(time.time() - started, 1), rss_mb(server.pid))]
            while time.time() < stop_at:
                time.sleep(1)
                rss.append((round(time.time() - started, 1), rss_mb(server.pid)))
            for thread in threads:
                thread.join(60)
            rss.append((round(time.time() - started, 1), rss_mb(server.pid)))
            metrics = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            metrics.request("GET", "/metrics")
            errors = re.findall(r'^kennel_request_errors_total\{(.*)\} (\d+)$', metrics.getresponse().read().decode(),
                                re.M)
            metrics.close()
            alive = server.poll() is None
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                server.kill()
            stdout.close()
            stderr.close()

    baseline = rss[0][1]
    worst = max(abs(value - baseline) for _, value in rss)
    good_counts = {outcome: n for (kind, outcome), n in tally.counts.items() if kind == "good"}
    dropped = good_counts.get("dropped", 0) + sum(n for o, n in good_counts.items() if o.startswith("unexpected"))
    bad_wrong = [f for f in tally.failures if f.startswith("bad")]
    passed = alive and dropped == 0 and not bad_wrong and worst <= args.rss_slack_mb
    latencies = sorted(tally.good_seconds) or [float("nan")]
    latency = {"p50": latencies[len(latencies) // 2], "p99": latencies[int(len(latencies) * 0.99)],
               "max": latencies[-1]}
    result = {
        "cpu": cpu_model(), "host": host_info(), "seconds": args.seconds, "concurrency": args.concurrency,
        "clients": {"good": good, "bad": bad, "slow": slow},
        "outcomes": {f"{kind}: {outcome}": n for (kind, outcome), n in sorted(tally.counts.items())},
        "failures": tally.failures, "rss_mb": rss, "rss_baseline_mb": baseline, "rss_max_deviation_mb": worst,
        "server_errors_by_reason": {labels: int(n) for labels, n in errors}, "server_alive": alive,
        "good_latency_seconds": latency,
        "passed": passed,
    }
    result["server_args"] = args.server_args
    (RESULTS / "serve_soak.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"CPU: {cpu_model()}")
    print(f"{args.seconds:g}s at c={args.concurrency} ({good} good, {bad} bad, {slow} slow clients)")
    for (kind, outcome), n in sorted(tally.counts.items()):
        print(f"  {kind:5} {outcome:40} {n:7,}")
    print(f"well-behaved requests dropped or mis-answered: {dropped}; latency p50 {latency['p50'] * 1000:.0f} ms, "
          f"p99 {latency['p99'] * 1000:.0f} ms, max {latency['max'] * 1000:.0f} ms")
    print(f"RSS after {args.warmup:g}s warm-up {baseline:.1f} MB; min {min(v for _, v in rss):.1f}, "
          f"max {max(v for _, v in rss):.1f}, end {rss[-1][1]:.1f} MB; largest deviation {worst:.1f} MB "
          f"(limit {args.rss_slack_mb:g})")
    for failure in tally.failures[:10]:
        print(f"  ! {failure}")
    print("PASS" if passed else "FAIL")
    sys.exit(0 if passed else 1)


if __name__ == "__main__":
    main()
