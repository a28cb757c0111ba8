#!/usr/bin/env bash
# The tuning store benchmark (bench/tune_store_bench.py): trial end -> next trial start and
# claims/s with 16 workers, on the embedded SQLite store and on a PostgreSQL server it starts
# (as root: initdb runs as the postgres user). Builds kennel and store_bench when missing.
# Options go to the driver (--trials N, --workers W, --claims N). Results: bench/results/.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
for target in kennel store_bench; do
  [[ -x "$BUILD_DIR/$target" ]] || bash scripts/build.sh "$target"
done
mkdir -p bench/results
/usr/bin/python3 bench/tune_store_bench.py --build "$BUILD_DIR" "$@" | tee bench/results/tune_store_bench.txt
