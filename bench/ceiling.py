"""The CPU's ceiling, measured and nominal, that every benchmark reports its figures against.

Two numbers per precision (fp32, bf16, int8):

  probe   what Debian's torch (the LibTorch 1.13 Kennel links) reaches on all the cores this
          process may use (os.sched_getaffinity): a 4096x4096 @ 4096x4096 matmul in fp32 and in
          bf16, and int8 through `torch.ops.quantized.linear` on the onednn quantized engine
          (quint8 input quantized per tensor, qint8 weight quantized per channel, symmetric,
          zero point 0, prepacked with `quantized.linear_prepack`; the quantization of the input
          is not timed). Best of 5 after one untimed run, 2*n^3 operations per product.
  peak    the theoretical peak from /proc/cpuinfo's flags, the physical cores among those CPUs
          and the clock (cpuinfo_max_freq, else lscpu's "CPU max MHz", else /proc/cpuinfo's
          "cpu MHz"): cores x clock x operations per cycle per core. The per-cycle figures are
          NOMINAL assumptions written out below (PER_CYCLE) and stored with the result: they do
          not know how many FMA units a given core really has (Zen 4 splits a 512-bit FMA in
          two halves, some Xeons have one 512-bit FMA unit), the all-core clock under AVX-512 or
          AMX load, or whether a VM's vCPUs are SMT siblings on the host.

`probe_ceiling()` runs this file as a subprocess (the driver stays free of an OpenMP team) and
returns the dict every bench JSON stores next to host_info(); `share_text()` and
`ceiling_lines()` print a figure as a share of the probe and of the peak. Model FLOPs per image
(`model_gflop`, Conv2d and Linear multiply-adds counted with forward hooks on torchvision's
model at the input size, x2) turn images/s into GFLOP/s for that.

Standalone: /usr/bin/python3 bench/ceiling.py [--size 4096] [--repeats 5] [--archs resnet50] [--json]
"""
import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

PRECISIONS = ("fp32", "bf16", "int8")

# Operations per cycle per core, by what the flags say the core has. Nominal: see the docstring.
# The first rule of each precision whose flags are all present wins.
PER_CYCLE = {
    "fp32": [
        (("avx512f",), 64, "AVX-512 FMA: 2 units x 16 fp32 lanes x 2 (multiply + add)"),
        (("avx2", "fma"), 32, "AVX2 FMA: 2 units x 8 fp32 lanes x 2 (multiply + add)"),
        (("avx",), 16, "AVX: 1 add unit + 1 multiply unit x 8 fp32 lanes"),
        ((), 8, "SSE: 1 add unit + 1 multiply unit x 4 fp32 lanes"),
    ],
    "bf16": [
        (("amx_bf16",), 1024, "AMX TDPBF16PS: a 16x16 fp32 tile += 16x32 bf16 x 32x16 bf16 "
                              "(16*16*32 multiply-adds = 16,384 operations) every 16 cycles, 1 unit"),
        (("avx512_bf16",), 128, "AVX-512 VDPBF16PS: 2 units x 16 fp32 lanes x 2 bf16 products x 2 "
                                "(twice the fp32 FMA rate)"),
        (("avx512f",), 64, "no native bf16: converted to fp32, at most the AVX-512 fp32 rate"),
        (("avx2", "fma"), 32, "no native bf16: converted to fp32, at most the AVX2 fp32 rate"),
        ((), 8, "no native bf16: converted to fp32, at most the SSE fp32 rate"),
    ],
    "int8": [
        (("amx_int8",), 2048, "AMX TDPBSSD: a 16x16 int32 tile += 16x64 int8 x 64x16 int8 "
                              "(16*16*64 multiply-adds = 32,768 operations) every 16 cycles, 1 unit"),
        (("avx512_vnni",), 256, "AVX-512 VNNI VPDPBUSD: 2 units x 16 int32 lanes x 4 int8 products x 2 "
                                "(4x the fp32 FMA rate)"),
        (("avx_vnni",), 128, "AVX-VNNI VPDPBUSD (256-bit): 2 units x 8 int32 lanes x 4 int8 products x 2"),
        (("avx512bw",), 85, "no VNNI: VPMADDUBSW + VPMADDWD + VPADDD, 3 instructions for 4 products per "
                            "32-bit lane: 2 units x 16 lanes x 4 x 2 / 3"),
        (("avx2",), 43, "no VNNI: VPMADDUBSW + VPMADDWD + VPADDD (256-bit): 2 units x 8 lanes x 4 x 2 / 3"),
        ((), 8, "no vector int8 dot product assumed: the SSE fp32 rate"),
    ],
}
NATIVE_BF16_FLAGS = ("amx_bf16", "avx512_bf16")  # the rule kennel's --precision auto uses
PROBE_TIMEOUT_S = 900


# --- the CPU -------------------------------------------------------------------------------

def cpu_flags():
    """/proc/cpuinfo's flags of the first CPU, as a set (empty where there is no /proc/cpuinfo)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    match = re.search(r"^flags\s*:\s*(.*)$", text, re.M)
    return set(match.group(1).split()) if match else set()


def cpu_model():
    try:
        match = re.search(r"^model name\s*:\s*(.*)$", Path("/proc/cpuinfo").read_text(), re.M)
    except OSError:
        return None
    return match.group(1).strip() if match else None


def native_bf16(flags=None):
    """Whether the CPU has bf16 arithmetic (AMX or AVX-512 BF16), read from its flags."""
    flags = cpu_flags() if flags is None else flags
    return any(flag in flags for flag in NATIVE_BF16_FLAGS)


def usable_cpus():
    return sorted(os.sched_getaffinity(0))


def physical_cores(cpus):
    """Distinct (package, core) pairs among `cpus`: SMT siblings share their core's units."""
    cores = set()
    for cpu in cpus:
        topology = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        try:
            cores.add((topology.joinpath("physical_package_id").read_text().strip(),
                       topology.joinpath("core_id").read_text().strip()))
        except OSError:
            return len(cpus)  # no topology: count every CPU as a core
    return len(cores)


def clock_mhz():
    """(MHz, where it came from): the highest clock the kernel reports, else the current one."""
    try:
        khz = int(Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq").read_text())
        return khz / 1000.0, "/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq"
    except (OSError, ValueError):
        pass
    try:
        text = subprocess.run(["lscpu"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                              timeout=10).stdout
        match = re.search(r"^CPU max MHz:\s*([0-9.]+)", text, re.M)
        if match and float(match.group(1)) > 0:
            return float(match.group(1)), "lscpu: CPU max MHz"
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        match = re.search(r"^cpu MHz\s*:\s*([0-9.]+)", Path("/proc/cpuinfo").read_text(), re.M)
        if match:
            return float(match.group(1)), ("/proc/cpuinfo: cpu MHz (the current or base clock: no maximum "
                                           "reported; boost may be higher)")
    except OSError:
        pass
    return None, "no clock reported"


def theoretical_peak(flags=None, cores=None, mhz=None, mhz_source=None):
    """The nominal peak per precision: cores x clock x PER_CYCLE's rule for these flags."""
    flags = cpu_flags() if flags is None else flags
    cores = physical_cores(usable_cpus()) if cores is None else cores
    if mhz is None:
        mhz, mhz_source = clock_mhz()
    peak = {"cores": cores, "clock_mhz": mhz, "clock_source": mhz_source,
            "note": "nominal: operations/cycle/core are assumptions from the flags, not measured "
                    "(FMA units per core, the all-core clock under vector load and SMT are unknown)",
            "per_cycle_per_core": {}, "gflops": {}}
    for precision in PRECISIONS:
        for needed, per_cycle, assumption in PER_CYCLE[precision]:
            if all(flag in flags for flag in needed):
                peak["per_cycle_per_core"][precision] = {"ops": per_cycle, "flags": list(needed),
                                                         "assumption": assumption}
                peak["gflops"][precision] = cores * mhz * 1e6 * per_cycle / 1e9 if mhz else None
                break
    return peak


# --- the probe (runs in the child: imports torch) ------------------------------------------

def best_seconds(run, repeats):
    run()  # untimed: first-touch pages, oneDNN primitive creation
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return best


def measure_matmul(torch, size, repeats, dtype):
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=generator).to(dtype)
    b = torch.randn(size, size, generator=generator).to(dtype)
    seconds = best_seconds(lambda: torch.mm(a, b), repeats)
    return {"gflops": 2 * size ** 3 / seconds / 1e9, "best_seconds": seconds}


def measure_int8_linear(torch, size, repeats):
    """quantized::linear on the onednn engine; its error against the fp32 product is reported too."""
    if "onednn" not in torch.backends.quantized.supported_engines:
        return {"error": f"no onednn quantized engine (engines: {torch.backends.quantized.supported_engines})"}
    torch.backends.quantized.engine = "onednn"
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(size, size, generator=generator)
    w = torch.randn(size, size, generator=generator)
    reference = x @ w.t()
    qx = torch.quantize_per_tensor(x, x.abs().max().item() / 127, 128, torch.quint8)
    scales = (w.abs().amax(dim=1) / 127).double()
    qw = torch.quantize_per_channel(w, scales, torch.zeros(size, dtype=torch.long), 0, torch.qint8)
    packed = torch.ops.quantized.linear_prepack(qw, None)
    out_scale = reference.abs().max().item() / 127
    seconds = best_seconds(lambda: torch.ops.quantized.linear(qx, packed, out_scale, 128), repeats)
    output = torch.ops.quantized.linear(qx, packed, out_scale, 128).dequantize()
    relative_error = ((output - reference).abs().max() / reference.abs().max()).item()
    return {"gops": 2 * size ** 3 / seconds / 1e9, "best_seconds": seconds,
            "max_error_vs_fp32_relative": relative_error, "engine": "onednn"}


def count_model_gflop(torch, arch, input_size):
    """Forward GFLOP per image of torchvision's `arch` (10 classes): 2 x Conv2d/Linear multiply-adds."""
    import torchvision
    model = getattr(torchvision.models, arch)(num_classes=10).eval()
    macs = [0]

    def hook(module, inputs, output):
        if isinstance(module, torch.nn.Conv2d):
            kernel = module.kernel_size[0] * module.kernel_size[1]
            macs[0] += output.numel() * (module.in_channels // module.groups) * kernel
        else:
            macs[0] += output.numel() * module.in_features

    for module in model.modules():
        if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
            module.register_forward_hook(hook)
    with torch.inference_mode():
        model(torch.zeros(1, 3, input_size, input_size))
    return 2 * macs[0] / 1e9


def run_probe(size, repeats, archs, input_size):
    import torch
    threads = len(usable_cpus())
    torch.set_num_threads(threads)
    probe = {"size": size, "repeats": repeats, "threads": threads, "torch": torch.__version__,
             "what": f"{size}x{size} @ {size}x{size}, best of {repeats} after one untimed run; int8: "
                     "quantized::linear, onednn engine, quint8 input per tensor, qint8 weight per channel "
                     "(symmetric), input quantization not timed"}
    for precision, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        try:
            probe[precision] = measure_matmul(torch, size, repeats, dtype)
        except RuntimeError as error:
            probe[precision] = {"error": str(error)}
    try:
        probe["int8"] = measure_int8_linear(torch, size, repeats)
    except RuntimeError as error:
        probe["int8"] = {"error": str(error)}
    model_gflop = {arch: count_model_gflop(torch, arch, input_size) for arch in archs}
    return probe, model_gflop


# --- the driver side -----------------------------------------------------------------------

def probe_ceiling(python=sys.executable, size=4096, repeats=5, archs=(), input_size=224, log=None):
    """Runs the probe in `python` (Debian's torch) and returns
    {cpu_model, flags (the relevant ones), native_bf16, probe, peak, model_gflop_per_image}, or
    {"error": ...} with the peak alone when the probe failed."""
    command = [python, str(Path(__file__).resolve()), "--size", str(size), "--repeats", str(repeats),
               "--input-size", str(input_size), "--json"]
    if archs:
        command += ["--archs", ",".join(archs)]
    if log:
        log(f"ceiling probe: {size}x{size} matmul fp32/bf16 + int8 quantized::linear, best of {repeats} ...")
    try:
        done = subprocess.run(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, timeout=PROBE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return {**describe_cpu(), "error": f"the probe took over {PROBE_TIMEOUT_S} s: {' '.join(command)}"}
    if done.returncode != 0:
        return {**describe_cpu(), "error": f"the probe exited {done.returncode}: {done.stderr.strip()[-1500:]}"}
    ceiling = json.loads(done.stdout)
    if log:
        for line in ceiling_lines(ceiling):
            log(line)
    return ceiling


def describe_cpu():
    flags = cpu_flags()
    relevant = sorted(flag for flag in flags
                      if re.match(r"^(avx|amx|fma$|f16c$|sse4)", flag) or flag in ("avx512_bf16", "avx512_vnni"))
    return {"cpu_model": cpu_model(), "flags": relevant, "native_bf16": native_bf16(flags),
            "usable_cpus": len(usable_cpus()), "peak": theoretical_peak(flags)}


def probe_figure(ceiling, precision):
    """The probe's GFLOP/s (GOP/s for int8) for `precision`, or None."""
    result = (ceiling or {}).get("probe", {}).get(precision) or {}
    return result.get("gops" if precision == "int8" else "gflops")


def peak_figure(ceiling, precision):
    return ((ceiling or {}).get("peak") or {}).get("gflops", {}).get(precision)


def shares(gflops, ceiling, precision="bf16"):
    """{"gflops", "share_of_probe", "share_of_peak"} for a figure in GFLOP/s against `precision`'s ceiling."""
    if gflops is None:
        return None
    probe, peak = probe_figure(ceiling, precision), peak_figure(ceiling, precision)
    return {"gflops": gflops, "against": precision,
            "share_of_probe": gflops / probe if probe else None,
            "share_of_peak": gflops / peak if peak else None}


def images_shares(images_per_second, gflop_per_image, ceiling, precision="bf16"):
    """shares() of `images_per_second` x `gflop_per_image` (None where either is unknown)."""
    if not images_per_second or not gflop_per_image:
        return None
    return shares(images_per_second * gflop_per_image, ceiling, precision)


def share_text(share):
    """'123 GFLOP/s = 45% of the bf16 probe, 12% of the bf16 peak' (short form: see short_share_text)."""
    if not share:
        return "-"
    parts = [f"{share['gflops']:,.0f} GFLOP/s"]
    if share.get("share_of_probe") is not None:
        parts.append(f"{100 * share['share_of_probe']:.0f}% of the {share['against']} probe")
    if share.get("share_of_peak") is not None:
        parts.append(f"{100 * share['share_of_peak']:.0f}% of the {share['against']} peak")
    return parts[0] + (" = " + ", ".join(parts[1:]) if len(parts) > 1 else "")


def short_share_text(share):
    """'45%/12%': share of the probe / share of the peak, for a table cell."""
    if not share:
        return "-"

    def percent(value):
        return "?" if value is None else f"{100 * value:.0f}%"
    return f"{percent(share.get('share_of_probe'))}/{percent(share.get('share_of_peak'))}"


def ceiling_lines(ceiling):
    """A few lines for a report's header: the CPU, the probe, the peak and their assumptions."""
    if not ceiling:
        return ["ceiling: not measured"]
    peak = ceiling.get("peak") or {}
    clock = f"{peak['clock_mhz']:,.0f} MHz ({peak.get('clock_source')})" if peak.get("clock_mhz") else "clock unknown"
    lines = [f"CPU: {ceiling.get('cpu_model')}, {peak.get('cores')} core(s) usable, {clock}; native bf16: "
             f"{'yes' if ceiling.get('native_bf16') else 'no'}; flags: {' '.join(ceiling.get('flags') or [])}"]
    if ceiling.get("error"):
        lines.append(f"ceiling probe FAILED: {ceiling['error'].splitlines()[0]}")
    probe = ceiling.get("probe") or {}
    cells, above = [], []
    for precision in PRECISIONS:
        measured, nominal = probe_figure(ceiling, precision), peak_figure(ceiling, precision)
        unit = "GOP/s" if precision == "int8" else "GFLOP/s"
        error = (probe.get(precision) or {}).get("error")
        text = f"{precision} {measured:,.0f}" if measured else f"{precision} {'failed' if error else '-'}"
        if nominal:
            text += f" / peak {nominal:,.0f} {unit}" + (f" ({100 * measured / nominal:.0f}%)" if measured else "")
        cells.append(text)
        if measured and nominal and measured > nominal:
            above.append(precision)
    if probe:
        lines.append(f"probe ({probe.get('size')}^2 matmul, int8 quantized::linear, best of {probe.get('repeats')}, "
                     f"{probe.get('threads')} threads): " + "; ".join(cells))
    if above:
        lines.append(f"{', '.join(above)}: the probe is above the nominal peak: the clock used is below the one the "
                     f"cores ran at (a VM's cpu MHz is often the base clock) or the per-cycle assumption is low")
    assumptions = peak.get("per_cycle_per_core") or {}
    lines.append("peak = cores x clock x nominal ops/cycle/core: " + "; ".join(
        f"{precision} {rule['ops']} ({rule['assumption']})" for precision, rule in assumptions.items()))
    return lines


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4096, help="matrix side of the probe")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs; the best counts")
    parser.add_argument("--archs", default="", help="comma-separated torchvision archs to count GFLOP/image for")
    parser.add_argument("--input-size", type=int, default=224)
    parser.add_argument("--json", action="store_true", help="print the result as JSON (what probe_ceiling reads)")
    args = parser.parse_args()
    if args.size < 1 or args.repeats < 1:
        parser.error("--size and --repeats must be at least 1")
    archs = [arch for arch in args.archs.split(",") if arch]
    ceiling = describe_cpu()
    ceiling["probe"], ceiling["model_gflop_per_image"] = run_probe(args.size, args.repeats, archs, args.input_size)
    ceiling["model_gflop_note"] = (f"forward at {args.input_size} px, 2 x the multiply-adds of Conv2d and Linear "
                                   "(torchvision's model, 10 classes)")
    if args.json:
        print(json.dumps(ceiling, indent=2))
    else:
        print("\n".join(ceiling_lines(ceiling)))
        for arch, gflop in ceiling["model_gflop_per_image"].items():
            print(f"{arch}: {gflop:.2f} GFLOP per image forward")
    return 0


if __name__ == "__main__":
    sys.exit(main())
