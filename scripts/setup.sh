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
  libgoogle-perftools-dev
  # tests and benchmarks (clang + its runtime: the libFuzzer targets; wrk: the serving benchmark)
  libgtest-dev libgmock-dev libbenchmark-dev clang libclang-rt-14-dev wrk
  python3 python3-pytest python3-numpy python3-pil python3-torch python3-torchvision
  # the independent S3 signer and client (tests/unit/s3/sigv4_baseline.py, the S3 tests)
  python3-botocore python3-boto3
  # headless browser: the profiler report test renders report.html in it
  chromium
  # data
  dataset-fashion-mnist
  # scale-out training (issue 14): the headers LibTorch's ProcessGroupGloo.hpp includes.
  # Debian's libgloo-dev depends on libgloo0 (= its own version), the one libtorch links.
  libgloo-dev
  # the shared tuning store (issue 18): libpq to link, the server the tests start
  libpq-dev postgresql
  # trials on Slurm (issue 18): slurmctld + slurmd + sbatch/squeue/scontrol, and munge
  # (its authentication); the tests run a one-node cluster of their own
  slurm-wlm munge
  # S3 tests (issue 17): boto3 is the independent client, botocore the independent SigV4
  # signer in the verifying proxy (tests/integration/services.py)
  python3-boto3 python3-botocore
  # Studio's browser tests (issue 19): Selenium with Debian's driver for its chromium
  python3-selenium chromium-driver
  # network namespaces, veth pairs and a bridge (iproute2), and ping to check them: tests of
  # workers and ranks on "other hosts"
  iproute2 iputils-ping
)

# The pretrained MobileNetV2 comes from an npm package (scripts/backbone.sh): Node and
# npm from Debian, unless a Node that bundles npm (NodeSource's) is already there.
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  DEBIAN_PACKAGES+=(nodejs npm)
fi

# One dpkg-query for all packages (one per package took seconds on a loaded machine).
declare -A installed=()
while read -r pkg status; do
  if [[ $status == "install ok installed" ]]; then installed[$pkg]=1; fi
done < <(dpkg-query -W -f='${Package} ${Status}\n' "${DEBIAN_PACKAGES[@]}" 2>/dev/null || true)
missing=()
for pkg in "${DEBIAN_PACKAGES[@]}"; do
  [[ -n ${installed[$pkg]:-} ]] || missing+=("$pkg")
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

# Studio's chart library from npm (pinned; scripts/studio.sh): the build embeds it into the
# binary, so it must be here before building. Quick when already installed.
bash "$(dirname "$0")/studio.sh" >/dev/null
