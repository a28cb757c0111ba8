"""The printed side of bench/serve_bench.py: the table of every cell, issue 15's serving targets
with pass/FAIL (also stored in the JSON), and the notes under the table."""
from bench_common import fmt
from ceiling import ceiling_lines, short_share_text

SHORT = {"kennel": "k", "classic": "c", "best_effort": "b"}


def latency_pair(cell):
    if not cell or "error" in cell:
        return "failed" if cell else "-"
    digits = 0 if (cell.get("p99_ms") or 0) >= 100 else 1
    return f"{fmt(cell.get('p50_ms'), digits)}/{fmt(cell.get('p99_ms'), digits)}"


def undercounted(cell):
    """wrk's req/s is more than 15 % below concurrency / mean latency (see run_wrk)."""
    rps, expected = (cell or {}).get("rps"), (cell or {}).get("littles_law_rps")
    return bool(rps and expected and rps < 0.85 * expected)


def ratio_text(value):
    return (fmt(value, 2) + "x") if value else "-"


def print_table(rows, names):
    """One line per (arch, body, concurrency): req/s, ratios, latencies, errors of every server."""
    peers = [name for name in names if name != "kennel"]
    letters = "/".join(SHORT[name] for name in names)
    header = (["arch", "body", "conc"] + [f"{name} rps" for name in names] + [f"k/{SHORT[peer]}" for peer in peers]
              + [f"{name} p50/p99 ms" for name in names]
              + [f"non-2xx {letters}", f"sock err {letters}", "k batch", "k %probe/%peak"])
    lines = []
    flagged = False

    def rps(cell):
        nonlocal flagged
        if not cell:
            return "-"
        if "error" in cell:
            return "failed"
        mark = ""
        if undercounted(cell):
            mark, flagged = "*", True
        return fmt(cell.get("rps")) + mark

    def count(cell, what):
        if not cell or "error" in cell:
            return "-"
        return str(cell["non_2xx"] if what == "non_2xx" else sum(cell["socket_errors"].values()))

    for row in rows:
        batching = (row.get("kennel") or {}).get("batching") or {}
        lines.append([row["arch"], row["body"], str(row["concurrency"])]
                     + [rps(row.get(name)) for name in names]
                     + [ratio_text(row["ratios"].get(peer)) for peer in peers]
                     + [latency_pair(row.get(name)) for name in names]
                     + ["/".join(count(row.get(name), "non_2xx") for name in names),
                        "/".join(count(row.get(name), "socket") for name in names),
                        fmt(batching.get("mean_batch_size"), 1), short_share_text(row.get("kennel_ceiling"))])
    widths = [max(len(header[i]), *(len(line[i]) for line in lines)) for i in range(len(header))] \
        if lines else [len(h) for h in header]
    align = ["<", "<"] + [">"] * (len(header) - 2)
    print("  ".join(f"{h:{a}{w}}" for h, a, w in zip(header, align, widths)))
    print("  ".join("-" * w for w in widths))
    for line in lines:
        print("  ".join(f"{c:{a}{w}}" for c, a, w in zip(line, align, widths)))
    return flagged


# --- issue 15's targets ----------------------------------------------------------------------

TARGET_ARCH, TARGET_BODY = "resnet50", "jpeg"  # what the issue states its targets for


def target(name, status, kennel=None, reference=None, required=None, detail=""):
    return {"target": name, "status": status, "kennel": kennel, "reference": reference, "required": required,
            "detail": detail}


def usable(cell):
    """(cell, None) when the cell has figures, else (None, why not)."""
    if not cell:
        return None, "not measured"
    if "error" in cell:
        return None, "failed"
    if not cell.get("requests") or cell.get("p50_ms") is None or cell.get("p99_ms") is None:
        return None, "no answer in the run (raise --seconds)"
    return cell, None


def evaluate_targets(rows):
    """Issue 15's serving targets for every (arch, body) measured: a list of dicts with
    status pass / FAIL / n/a (n/a: a cell the target needs was not measured or failed)."""
    results = []
    groups = {}
    for row in rows:
        groups.setdefault((row["arch"], row["body"]), {})[row["concurrency"]] = row
    for (arch, body), by_concurrency in groups.items():
        def cells(concurrency, peer):
            row = by_concurrency.get(concurrency) or {}
            kennel, why_kennel = usable(row.get("kennel"))
            other, why_other = usable(row.get(peer))
            if kennel is None or other is None:
                return None, None, f"c={concurrency}: kennel {why_kennel or 'ok'}, {peer} {why_other or 'ok'}"
            return kennel, other, None

        def cells_of(entry):
            concurrency = int(entry["target"].split()[0][2:])
            row = by_concurrency.get(concurrency) or {}
            return [(name, row.get(name)) for name in ("kennel", "classic", "best_effort")
                    if name == "kennel" or name in entry["target"]]

        def add(kennel_cell, entry):
            short = [name for name, cell in cells_of(entry) if undercounted(cell)] if "req/s" in entry["target"] else []
            if short:
                entry["detail"] += f" (req/s undercounted for {', '.join(short)}: *, raise --seconds)"
            if kennel_cell and kennel_cell.get("non_2xx"):  # a refusal is not a served request
                entry.update(status="FAIL", detail=f"{entry['detail']}; kennel answered {kennel_cell['non_2xx']} "
                                                   f"non-2xx ({kennel_cell['statuses']})")
            entry.update(arch=arch, body=body, issue_target=(arch, body) == (TARGET_ARCH, TARGET_BODY))
            results.append(entry)

        def latency_target(concurrency, key, fraction, fraction_text):
            """Kennel's `key` latency at `concurrency` at most `fraction` of the classic handler's."""
            kennel, classic, missing = cells(concurrency, "classic")
            name = f"c={concurrency} {key[:3]} <= {fraction_text} classic's"
            if missing:
                add(None, target(name, "n/a", detail=missing))
                return
            add(kennel, target(
                name, "pass" if kennel[key] <= fraction * classic[key] else "FAIL",
                kennel[key], classic[key], fraction * classic[key],
                f"{kennel[key]:.1f} ms vs classic {classic[key]:.1f} ms ({kennel[key] / classic[key]:.2f}x)"))

        latency_target(1, "p50_ms", 0.5, "1/2")
        for concurrency in (8, 32):
            for peer, factor in (("classic", 4.0), ("best_effort", 1.5)):
                kennel, other, missing = cells(concurrency, peer)
                name = f"c={concurrency} req/s >= {factor:g}x {peer}'s"
                if missing:
                    add(None, target(name, "n/a", detail=missing))
                    continue
                add(kennel, target(
                    name, "pass" if kennel["rps"] >= factor * other["rps"] else "FAIL",
                    kennel["rps"], other["rps"], factor * other["rps"],
                    f"{kennel['rps']:.1f} vs {peer} {other['rps']:.1f} req/s ({kennel['rps'] / other['rps']:.2f}x)"))
        latency_target(8, "p99_ms", 1 / 3, "1/3")
        kennel, why = usable((by_concurrency.get(64) or {}).get("kennel"))
        name = "c=64 0 socket errors (resets) and 0 listen-queue overflows"
        if kennel is None:
            add(None, target(name, "n/a", detail=f"c=64: kennel {why}"))
        else:
            errors = sum(kennel["socket_errors"].values())
            overflows = kennel.get("listen_overflows") or 0
            add(kennel, target(
                name, "pass" if errors == 0 and overflows == 0 else "FAIL", errors + overflows, None, 0,
                f"socket errors {kennel['socket_errors']}, listen-queue overflows "
                f"{kennel.get('listen_overflows', 'unknown')}"))
    return results


def print_targets(results):
    if not results:
        return
    print(f"Issue 15's serving targets (stated for {TARGET_ARCH} {TARGET_BODY}, marked *; "
          "n/a: a cell it needs was not measured or failed):")
    width = max(len(entry["target"]) for entry in results)
    for entry in results:
        mark = "*" if entry["issue_target"] else " "
        print(f"  {mark} {entry['arch']:<9} {entry['body']:<4}  {entry['target']:<{width}}  "
              f"{entry['status']:<4}  {entry['detail']}")
    counted = [entry for entry in results if entry["issue_target"]]
    if counted:
        passed = sum(entry["status"] == "pass" for entry in counted)
        print(f"  {TARGET_ARCH} {TARGET_BODY}: {passed} of {len(counted)} targets pass")


# --- the summary -----------------------------------------------------------------------------

def print_summary(report, args, server_names, kennel_precision, ceiling):
    """Everything printed after the run: settings, ceiling, table, notes, failures, targets."""
    rows, archs, targets = report["rows"], report["archs"], report["targets"]
    tuning = " ".join(report["settings"]["kennel_flags"])
    width, height = report["settings"]["image_size"]
    print(f"Serving throughput: POST /invocations, one {width}x{height} JPEG per request, 224 px "
          f"model, wrk {args.seconds} s per cell after {args.warmup} s warm-up")
    print(f"kennel serve: {tuning or 'its defaults (no --precision, batching or thread flags)'}; peers: "
          f"ThreadingHTTPServer, torch.set_num_threads({args.threads}), one forward per request (classic: "
          f"fp32 no_grad; best_effort: channels_last, inference_mode, "
          + ("fp32 (no native bf16)" if not (ceiling or {}).get("native_bf16") else
             "bf16 autocast, " + ("fp32 weights cast per request" if args.best_effort_fp32_weights
                                  else "weights converted to bf16 once")) + ")")
    for line in ceiling_lines(ceiling) if ceiling else ["ceiling: not probed (--probe-size 0)"]:
        print(line)
    if ceiling and ceiling.get("model_gflop_per_image"):
        print("model GFLOP per image (forward, 224 px): " + ", ".join(
            f"{arch} {gflop:.2f}" for arch, gflop in ceiling["model_gflop_per_image"].items()))
    flagged = print_table(rows, server_names)
    print("k/c, k/b = kennel rps / classic rps, / best_effort rps (wrk's Requests/sec: every answer counts). "
          "p50/p99: wrk --latency.\n  k batch: kennel's mean model batch in the measured run (/metrics). "
          f"k %probe/%peak: kennel's req/s x GFLOP per image as a share of\n  the {kennel_precision} probe and "
          f"of the nominal {kennel_precision} peak. jpeg = raw bytes, json = {{\"url\": \"file://...\"}}. "
          "sock err: wrk's socket\n  errors (connect/read/write/timeout).")
    if flagged:
        print(f"  *: wrk's req/s is >15 % below concurrency / mean latency (Little's law): few request lifetimes "
              f"fit in {args.seconds} s\n     (what is in flight at the end is not counted); raise --seconds.")
        for row in rows:
            for side in server_names:
                cell = row.get(side)
                if undercounted(cell):
                    print(f"     {row['arch']} {row['body']} c={row['concurrency']} {side}: wrk {cell['rps']:.1f} "
                          f"req/s, concurrency / mean latency {cell['littles_law_rps']:.1f} req/s")
    for arch, arch_report in archs.items():
        contract = arch_report.get("contract")
        if contract:
            print(f"  {arch}: logits vs kennel's jpeg answers: " + "; ".join(
                f"{name} max |diff| {mine['max_abs_diff']:.1e} over {mine['compared']}, argmax agree "
                f"{mine['argmax_agree']}" for name, mine in contract["by_server"].items())
                + (f"; PROBLEMS: {'; '.join(contract['problems'])}" if contract["problems"] else ""))
        for name in server_names:
            stop = arch_report.get(f"{name}_stop")
            if stop and (stop["killed"] or stop["exit_code"] != 0 or stop["stop_seconds"] > 5):
                print(f"  {arch}: {name} took {stop['stop_seconds']:.1f} s to stop after SIGTERM, exit "
                      f"{stop['exit_code']}" + (", killed" if stop["killed"] else ""))
        if arch_report.get("error"):
            print(f"  {arch} failed: {arch_report['error'].splitlines()[0]}")
    for row in rows:
        for side in server_names:
            cell = row.get(side) or {}
            if "error" in cell:
                print(f"  {row['arch']} {row['body']} c={row['concurrency']} {side} failed: "
                      f"{cell['error'].splitlines()[0]}")
            elif cell and (cell["non_2xx"] or any(cell["socket_errors"].values()) or cell.get("listen_overflows")):
                print(f"  {row['arch']} {row['body']} c={row['concurrency']} {side}: statuses {cell['statuses']}, "
                      f"socket errors {cell['socket_errors']}, listen-queue overflows "
                      f"{cell.get('listen_overflows', '?')}")
    print_targets(targets)
