#!/usr/bin/env bash
# Configures (once) and builds Kennel with ninja + ccache.
#   BUILD_DIR   build folder (default: build)
#   BUILD_TYPE  CMake build type (default: Release, at -O2; RelWithDebInfo for a debugger)
#   SANITIZE=1  ASan + UBSan build (use another BUILD_DIR, e.g. build-asan)
#   PCH=0       no precompiled headers: slower alone, but clones and worktrees under
#               CCACHE_BASEDIR (default: the parent of this clone) share ccache's objects
#   UNITY=0     one translation unit per source (default 1: batches of 8, the fastest clean
#               build); use it for a folder you edit and rebuild often, where a change
#               should recompile one file, not its batch
# Extra arguments are passed to ninja (e.g. a target name).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
BUILD_TYPE=${BUILD_TYPE:-Release}
SANITIZE=${SANITIZE:-0}
PCH=${PCH:-1}
UNITY=${UNITY:-1}
export CCACHE_DIR=${CCACHE_DIR:-$HOME/.cache/kennel-ccache}
export CCACHE_MAXSIZE=${CCACHE_MAXSIZE:-5G}
# Precompiled headers and ccache agree only with these (ccache docs, "Precompiled headers").
export CCACHE_SLOPPINESS=${CCACHE_SLOPPINESS:-pch_defines,time_macros,include_file_mtime,include_file_ctime}
if [[ "$PCH" == 0 ]]; then export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$(cd .. && pwd)}; fi

if [[ ! -f "$BUILD_DIR/build.ninja" ]]; then
  sanitize_flag=OFF
  [[ "$SANITIZE" == 1 ]] && sanitize_flag=ON
  pch_flag=ON
  [[ "$PCH" == 0 ]] && pch_flag=OFF
  unity_flag=ON
  [[ "$UNITY" == 0 ]] && unity_flag=OFF
  cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE="$BUILD_TYPE" -DKENNEL_SANITIZE="$sanitize_flag" \
    -DKENNEL_PCH="$pch_flag" -DKENNEL_UNITY="$unity_flag"
fi
# Each LibTorch translation unit needs ~1.5 GB of RAM to compile; 2 jobs fit easily.
ninja -C "$BUILD_DIR" -j "${JOBS:-$(nproc)}" "$@"
