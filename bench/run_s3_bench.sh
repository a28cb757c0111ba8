#!/usr/bin/env bash
# S3 transfer throughput (bench/s3_bench.py): `kennel data upload` / the --data s3:// sync next to
# boto3's upload_file / download_file, against s3rver on loopback (started here, as in the tests).
# Options go to the driver (--objects N, --large-mb M, --workers W). Results: bench/results/.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
[[ -x "$BUILD_DIR/kennel" ]] || bash scripts/build.sh kennel
mkdir -p bench/results
/usr/bin/python3 bench/s3_bench.py --build "$BUILD_DIR" "$@" | tee bench/results/s3_bench.txt
