"""The command line itself: help, version, exit codes, error messages."""
import json
import os
import re
import subprocess

import pytest

from conftest import build_dir


def test_version(kennel):
    result = kennel.run("--version", check=0)
    assert re.match(r"kennel \d+\.\d+\.\d+", result.stdout.strip())


def configured(option):
    """The value of a CMake cache option of the build under test, or None."""
    cache = build_dir() / "CMakeCache.txt"
    found = re.search(rf"^{option}:[A-Z]+=(.*)$", cache.read_text(), re.M) if cache.exists() else None
    return found.group(1) if found else None


def test_malloc_is_tcmalloc_in_a_default_build(kennel):
    # glibc's malloc halves CPU training speed (docs/decisions.md): the link must
    # really replace it, in libtorch's and every other library's calls too.
    if configured("KENNEL_ALLOCATOR") != "tcmalloc" or configured("KENNEL_SANITIZE") in ("ON", "1", "TRUE"):
        pytest.skip("this build keeps the system allocator")
    env = dict(os.environ, LD_DEBUG="bindings")
    result = subprocess.run([str(kennel.binary), "--version"], capture_output=True, text=True, env=env)
    bindings = [line for line in result.stderr.splitlines() if "symbol `malloc'" in line]
    assert bindings, result.stderr[-2000:]
    assert all("libtcmalloc_minimal" in line.split(" to ", 1)[1] for line in bindings), bindings[:5]


def test_help_on_every_level(kennel):
    for args in [["--help"], ["data", "--help"], ["data", "check", "--help"],
                 ["data", "synth", "--help"], ["data", "import", "fashion-mnist", "--help"]]:
        result = kennel.run(*args, check=0)
        assert "Usage" in result.stdout or "usage" in result.stdout.lower(), args


def test_usage_errors_exit_2_with_one_clear_line(kennel):
    result = kennel.run("no-such-command", check=2)
    assert "no-such-command" in result.stderr
    result = kennel.run("data", "check", check=2)
    assert "path" in result.stderr.lower()
    result = kennel.run("--log-level", "loud", "data", "check", ".", check=2)
    assert "loud" in result.stderr
    result = kennel.run("data", "synth", "--out", "x", "--size", "big", check=2)
    assert "--size 'big'" in result.stderr
    assert "Traceback" not in result.stderr and "terminate" not in result.stderr


def test_missing_dataset_names_the_path(kennel, tmp_path):
    missing = tmp_path / "no-such-dataset"
    result = kennel.run("data", "check", missing, check=2)
    assert str(missing) in result.stderr
    assert result.stderr.startswith("error: ")
    assert len(result.stderr.strip().splitlines()) == 1


def test_no_command_lists_the_commands(kennel):
    result = kennel.run(check=2)
    for command in ("data", "train", "tune", "jobs", "serve", "predict", "transform", "debug", "profile"):
        assert re.search(rf"^\s+{command}\b", result.stdout, re.M), (command, result.stdout)
    assert "command is required" in result.stderr
    # One level down too: `kennel data` lists data's commands.
    data = kennel.run("data", check=2)
    assert re.search(r"^\s+check\b", data.stdout, re.M), data.stdout


# OpenBLAS's cores without AVX2: its fallback for a CPU model it does not know (util/blas_kernels.h).
PRE_AVX2_OPENBLAS_CORES = {"prescott", "core2", "penryn", "dunnington", "nehalem", "atom", "opteron",
                           "opteron(sse3)", "barcelona", "nano", "bobcat", "sandybridge", "bulldozer",
                           "piledriver", "steamroller"}


def cpu_flags():
    found = re.search(r"^flags\s*:(.*)$", open("/proc/cpuinfo").read(), re.M)
    return set(found.group(1).split()) if found else set()


def test_system_reports_the_cpu_the_precision_auto_picks_and_blas_kernels_fit_for_it(kennel):
    env_without = {key: value for key, value in os.environ.items()
                   if key not in ("OPENBLAS_CORETYPE", "KENNEL_OPENBLAS_FALLBACK")}
    result = subprocess.run([str(kennel.binary), "system", "--json"], capture_output=True, text=True, env=env_without)
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    flags = cpu_flags()
    native_bf16 = bool({"amx_bf16", "avx512_bf16"} & flags)
    assert record["cpu"]["native_bf16"] == native_bf16
    assert record["precision_auto"]["precision"] == ("bf16" if native_bf16 else "fp32")
    assert record["precision_auto"]["reason"].startswith("auto: ")
    assert record["threads"]["compute"] >= 1
    kernels = record["blas"]["kernels"]
    assert kernels, "Debian's LibTorch runs fp32 GEMM on OpenBLAS: its kernels should be named"
    if {"avx2", "fma"} <= flags:
        # Where OpenBLAS fell back to SSE kernels (it did not know a Xeon of model 207: fp32 GEMM 6x
        # slower), kennel re-executed itself with kernels that fit and says so.
        assert kernels.lower() not in PRE_AVX2_OPENBLAS_CORES, record["blas"]
        if record["blas"]["openblas_coretype"]:
            assert "set by kennel: OpenBLAS had chosen" in record["blas"]["description"]
    # The fused BatchNorm's row loops: the widest set the CPU's flags allow.
    avx512_core = {"avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512cd"} <= flags
    expected_rows = "AVX-512" if avx512_core else "AVX2" if {"avx2", "fma"} <= flags else "baseline x86-64"
    assert record["batchnorm"]["kernels"] == expected_rows
    # The release build links tcmalloc and keeps freed memory (util/allocator.h): after a validation pass
    # the next training step would otherwise page-fault its activations in again.
    assert record["allocator"] == {"name": "tcmalloc", "keeps_freed_memory": True}, record["allocator"]
    text = subprocess.run([str(kennel.binary), "system"], capture_output=True, text=True, env=env_without).stdout
    assert f"blas:            OpenBLAS {kernels} kernels" in text
    assert f"fused, {expected_rows} row loops" in text
    assert "allocator:       tcmalloc, freed memory kept for reuse" in text
    assert record["cpu"]["description"] in text


def test_a_callers_openblas_coretype_is_kept(kennel):
    env = dict(os.environ, OPENBLAS_CORETYPE="Haswell")
    env.pop("KENNEL_OPENBLAS_FALLBACK", None)
    record = json.loads(subprocess.run([str(kennel.binary), "system", "--json"], capture_output=True, text=True,
                                       env=env, check=True).stdout)
    assert record["blas"]["kernels"] == "Haswell"
    assert record["blas"]["description"] == "OpenBLAS Haswell kernels (OPENBLAS_CORETYPE set by the caller)"
