#!/usr/bin/env bash
# Sets up, builds and runs every test: ctest (unit tests) and pytest
# (integration tests driving the real `kennel` binary, and parity tests
# against Debian's torch + torchvision). Ends with both runners' summaries.
#   BUILD_DIR  build folder (default: build)
#   PYTHON     interpreter with torch/torchvision/pytest (default: Debian's /usr/bin/python3)
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
PYTHON=${PYTHON:-/usr/bin/python3}

bash scripts/setup.sh || exit 1
BUILD_DIR="$BUILD_DIR" bash scripts/build.sh || exit 1
# The pretrained MobileNetV2 (npm nsfwjs, converted once): the parity and main-job tests use it.
BUILD_DIR="$BUILD_DIR" bash scripts/backbone.sh || exit 1
# Pinned npm tools of the real-service tests (s3rver); the fixtures would install it too.
bash scripts/services.sh >/dev/null || exit 1
export KENNEL_BUILD_DIR
KENNEL_BUILD_DIR=$(realpath "$BUILD_DIR")

# libFuzzer over request parsing and image decoding, bounded in time.
FUZZ_SECONDS=${FUZZ_SECONDS:-30} bash scripts/fuzz.sh
fuzz_status=$?
ctest --test-dir "$BUILD_DIR" --output-on-failure -j "$(nproc)" --timeout 300
ctest_status=$?
"$PYTHON" -m pytest tests/integration tests/parity -q -p no:cacheprovider
pytest_status=$?
if ((ctest_status != 0 || pytest_status != 0 || fuzz_status != 0)); then
  echo "tests failed: ctest exit $ctest_status, pytest exit $pytest_status, fuzz exit $fuzz_status"
  exit 1
fi
