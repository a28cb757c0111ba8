"""wrk for bench/serve_bench.py: one closed-loop run against /invocations, its output parsed, and
the kernel's listen-queue overflow counter that tells a full accept queue from a slow server."""
import re
import subprocess
from pathlib import Path

LUA = {"jpeg": Path(__file__).resolve().parent / "wrk" / "invocations_jpeg.lua",
       "json": Path(__file__).resolve().parent / "wrk" / "invocations_json.lua"}


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
    if not result.get("requests"):
        # No answer within the run: wrk prints 0 latencies, which are not samples.
        result.update(mean_ms=None, p50_ms=None, p75_ms=None, p90_ms=None, p99_ms=None)
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
