"""A stand-in training program for `kennel tune --command` tests.

Prints one metric line per epoch, like a typical training script. The value
is a known function of the hyperparameters, so tests know the best trial.
"""
import argparse
import math
import os
import signal
import sys
import time
from pathlib import Path

parser = argparse.ArgumentParser()
parser.add_argument("--lr", type=float, default=0.01)
parser.add_argument("--x", type=float, default=1.0)
parser.add_argument("--epochs", type=int, default=3)
parser.add_argument("--sleep", type=float, default=0.0)
parser.add_argument("--crash-first-attempt", action="store_true")
parser.add_argument("--silent", action="store_true", help="never print the metric")
parser.add_argument("--exit-code", type=int, default=0)
args = parser.parse_args()

if args.crash_first_attempt:
    marker = Path(os.environ["KENNEL_TRIAL_DIR"]) / "crashed-once"
    if not marker.exists():
        marker.write_text("1")
        os.kill(os.getpid(), signal.SIGKILL)

# Best at lr = 1e-2; x scales the whole curve.
quality = args.x * (1.0 - (math.log10(args.lr) + 2.0) ** 2 / 10.0)
for epoch in range(1, args.epochs + 1):
    time.sleep(args.sleep)
    value = quality * epoch / args.epochs
    if args.silent:
        print(f"epoch {epoch} done", flush=True)
    else:
        print(f"epoch={epoch} train_loss={1.0 / epoch:.4f} valid_accuracy={value:.6f}", flush=True)
print("trial env:", os.environ.get("KENNEL_TRIAL_NAME"), flush=True)
sys.exit(args.exit_code)
