"""Pieces every benchmark driver shares: timestamped progress lines, list flags, the host record
and the CPU's ceiling (bench/ceiling.py) stored next to it."""
import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path


def make_log(name, path=None):
    """A log(message) that prints `[name HH:MM:SS] message` to stderr (and appends it to `path`, if given)."""
    def log(message):
        line = f"[{name} {time.strftime('%H:%M:%S')}] {message}"
        print(line, file=sys.stderr, flush=True)
        if path is not None:
            with open(path, "a") as stream:
                stream.write(line + "\n")
    return log


def csv_list(text, allowed, what):
    """A comma-separated flag value whose items must all be in `allowed`."""
    items = [item.strip() for item in text.split(",") if item.strip()]
    unknown = [item for item in items if item not in allowed]
    if unknown or not items:
        raise argparse.ArgumentTypeError(f"{what}: {', '.join(unknown) or '(empty)'} not in {', '.join(allowed)}")
    return items


def host_info():
    """What ran the benchmark: machine, CPUs, Python, torch/torchvision when importable, and the
    OpenBLAS kernels every process ran with (fit_blas_kernels)."""
    host = {"machine": platform.machine(), "cpus": os.cpu_count(), "python": platform.python_version(),
            "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE")}
    try:
        import torch
        import torchvision
        host.update(torch=torch.__version__, torchvision=torchvision.__version__)
    except ImportError:
        pass
    return host


def add_probe_option(parser):
    """--probe-size: the ceiling probe (bench/ceiling.py) a driver runs before measuring."""
    parser.add_argument("--probe-size", type=int, default=4096,
                        help="matrix side of the CPU ceiling probe (bench/ceiling.py) stored in the JSON; 0 = none")
    return parser


def fit_blas_kernels(kennel, log):
    """Gives every process this driver starts (the Python peers, the ceiling probe) the OpenBLAS
    kernels kennel runs with. Where OpenBLAS does not know the CPU it falls back to SSE3 kernels and
    kennel re-executes itself with OPENBLAS_CORETYPE set (src/kennel/util/blas_kernels.h); a peer
    left on the fallback would be measured with a handicap kennel does not have."""
    if os.environ.get("OPENBLAS_CORETYPE"):
        log(f"OpenBLAS kernels: {os.environ['OPENBLAS_CORETYPE']} (OPENBLAS_CORETYPE given)")
        return
    try:
        done = subprocess.run([str(kennel), "system", "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, timeout=120)
        blas = json.loads(done.stdout)["blas"] if done.returncode == 0 else None
    except (OSError, subprocess.SubprocessError, ValueError, KeyError) as error:
        log(f"OpenBLAS kernels: not known ({kennel} system --json failed: {error})")
        return
    if blas is None:
        log(f"OpenBLAS kernels: not known ({kennel} system --json exited {done.returncode}: {done.stderr.strip()})")
        return
    if blas.get("openblas_coretype"):
        os.environ["OPENBLAS_CORETYPE"] = blas["openblas_coretype"]
    log(f"OpenBLAS kernels: {blas.get('description')}; the peers and the probe run with the same")


def measure_ceiling(args, log, archs=()):
    """The ceiling dict for the JSON (None with --probe-size 0): run it before any server or job starts.
    First gives every process the driver starts kennel's BLAS kernels (fit_blas_kernels)."""
    fit_blas_kernels(args.kennel, log)
    if args.probe_size <= 0:
        return None
    from ceiling import probe_ceiling  # same folder; imports nothing heavy itself
    return probe_ceiling(args.python, args.probe_size, archs=archs, log=log)


def fmt(value, digits=1):
    """A table cell: '-' for None, text as is, numbers with thousands separators."""
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    return f"{value:,.{digits}f}"


def bench_parser(doc, root):
    """The argument parser every driver starts from: its description, --kennel and --python."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--kennel", type=Path, default=Path(root) / os.environ.get("BUILD_DIR", "build") / "kennel",
                        help="the kennel binary")
    parser.add_argument("--python", default="/usr/bin/python3", help="python with torch + torchvision for the peer")
    return parser
