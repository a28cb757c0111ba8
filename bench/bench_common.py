"""Pieces every benchmark driver shares: timestamped progress lines, list flags, the host record
and the CPU's ceiling (bench/ceiling.py) stored next to it."""
import argparse
import os
import platform
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
    """What ran the benchmark: machine, CPUs, Python, and torch/torchvision when importable."""
    host = {"machine": platform.machine(), "cpus": os.cpu_count(), "python": platform.python_version()}
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


def measure_ceiling(args, log, archs=()):
    """The ceiling dict for the JSON (None with --probe-size 0): run it before any server or job starts."""
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
