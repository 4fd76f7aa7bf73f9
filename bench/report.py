"""The run report: one JSON document (validated against report_schema.json) and its Markdown view.

JSON layout (``schema_version`` 1): ``config`` (what was asked; ``config.weights`` says which
weights ran: the demo checkpoint with its description, a user's checkpoint, or random weights), ``environment`` (what it ran on),
``parity_rule``, ``rows`` (one per (runtime, resolution): status measured / skipped / failed, the
reason when not measured, parity metrics against the PyTorch fp32 reference, latency statistics),
``mask`` per measured row (the first input's mask coverage and its IoU against the true mask when
the input has one, e.g. the demo image), ``plots`` (report-relative paths) and, when a gate ran, ``gate``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from tabulate import tabulate

from ..errors import RemamberError
from .baseline import LATENCY_HEADERS, PARITY_HEADERS
from ..atomic import write_text_atomic
from .latency import CV_WARN_PERCENT, PERCENTILE_METHOD
from .schema import validate_report

SCHEMA_VERSION = 1
TOOL = "remamber-deploy bench"


def _json_safe(value):
    """JSON has no NaN/Infinity: write them as null (the schema allows numbers only, so they show up)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def write_json(report: dict, path: Path) -> Path:
    """Validate, then write atomically. An invalid report is a bug: refuse to write it silently."""
    report = _json_safe(report)
    errors = validate_report(report)
    if errors:
        raise RemamberError(
            "bench: the report does not match report_schema.json (" + "; ".join(errors[:3]) + "); please report this bug"
        )
    return write_text_atomic(path, json.dumps(report, indent=2) + "\n")


# ------------------------------------------------------------------------------------- Markdown

def _fmt(value, spec=".3f") -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return format(value, spec)


def _label(row: dict) -> tuple:
    return row["runtime"], row["resolution"]


def parity_table(rows: list[dict]) -> str:
    body = []
    for row in rows:
        p = row["parity"]
        if row["status"] != "measured" or p is None:
            continue
        body.append([
            *_label(row), _fmt(p["max_abs_error"], ".3e"), _fmt(p["scaled_max_abs_error"], ".3e"),
            _fmt(p["mean_abs_error"], ".3e"), _fmt(p["cosine_similarity"], ".6f"), _fmt(p["mask_iou"], ".4f"),
            f"{100 * p['mask_pixel_mismatch']:.3f}%", p["nan_count"], "pass" if p["passed"] else "FAIL",
        ])
    headers = ["runtime", "res", "max abs err", "max abs / logit scale", "mean abs err", "cosine",
               "mask IoU", "mask px differ", "NaN", "verdict"]
    return tabulate(body, headers, tablefmt="github") if body else "_no measured rows_"


def latency_table(rows: list[dict], metric: str = "latency") -> str:
    body = []
    for row in rows:
        lat = row["latency"]
        if row["status"] != "measured" or lat is None or metric not in lat["stats"]:
            continue
        s = lat["stats"][metric]
        body.append([
            *_label(row), row["device"], s["count"], _fmt(s["min"]), _fmt(s["median"]), _fmt(s["mean"]),
            _fmt(s["p90"]), _fmt(s["p95"]), _fmt(s["p99"]), _fmt(s["max"]),
            _fmt(s["cv_percent"], ".2f") + (" unstable" if s["unstable"] else ""), _fmt(lat["throughput_qps"], ".2f"),
        ])
    headers = ["runtime", "res", "device", "n", "min", "median", "mean", "p90", "p95", "p99", "max", "CV %", "qps"]
    return tabulate(body, headers, tablefmt="github") if body else ""


SETUP_KEYS = (("export_s", "ONNX export s"), ("session_s", "ORT session s"), ("engine_build_s", "engine build s"))


def setup_table(rows: list[dict]) -> str:
    """Preparation costs per row (export, session creation, engine build), skipped rows included."""
    body = []
    for row in rows:
        d = row["details"]
        if not any(k in d for k, _ in SETUP_KEYS):
            continue
        where = d.get("tensorrt") or ", ".join(d.get("providers", [])) or ""
        body.append([*_label(row), *(_fmt(d.get(k), ".1f") for k, _ in SETUP_KEYS), where])
    headers = ["runtime", "res", *(title for _, title in SETUP_KEYS), "with"]
    return tabulate(body, headers, tablefmt="github") if body else ""


def skipped_table(rows: list[dict]) -> str:
    body = [[*_label(r), r["status"], r["reason"]] for r in rows if r["status"] != "measured"]
    return tabulate(body, ["runtime", "res", "status", "reason"], tablefmt="github") if body else ""


def unstable_warning(rows: list[dict]) -> str:
    """trtexec-style warning naming the rows whose CV exceeds the threshold; empty when none."""
    unstable = [f"{r['runtime']} @{r['resolution']}" for r in rows
                if r["status"] == "measured" and r["latency"]["stats"]["latency"]["unstable"]]
    if not unstable:
        return ""
    return (f"unstable timings (CV > {CV_WARN_PERCENT}%) for {', '.join(unstable)}: other load on the machine "
            "or frequency scaling; on GPUs lock the clocks, on Jetson run `sudo jetson_clocks`, and measure "
            "longer (--duration).")


def mask_table(rows: list[dict]) -> str:
    """Per measured row: how much of the image the first input's mask covers, and its IoU vs the truth."""
    body = [[*_label(r), r["mask"]["input"], f"{100 * r['mask']['foreground_fraction']:.2f}%",
             _fmt(r["mask"]["truth_iou"], ".4f"),
             "" if r["mask"].get("truth_fraction") is None else f"{100 * r['mask']['truth_fraction']:.2f}%"]
            for r in rows if r["status"] == "measured" and r.get("mask")]
    headers = ["runtime", "res", "input", "mask covers", "IoU vs ground truth", "true mask covers"]
    return tabulate(body, headers, tablefmt="github", disable_numparse=True) if body else ""


def weights_text(cfg: dict) -> str:
    """One line naming the weights; random weights are said loudly."""
    weights = cfg.get("weights")
    if weights is None:  # a report written before config.weights existed
        return f"Checkpoint: {cfg['checkpoint'] or 'none (seeded random weights: masks are not meaningful)'}."
    if weights["kind"] == "random":
        return (f"**Weights: RANDOM (seed {weights['seed']}).** Every mask is meaningless; parity and latency "
                "still hold. Leave out --random-weights for the demo checkpoint, or pass --checkpoint FILE.")
    where = f" (`{weights['checkpoint']}`)" if weights["kind"] == "demo" else ""
    return f"Weights: {weights['description']}{where}."


def _plugin_text(plugin: dict) -> str:
    """'remamber::SelectiveScan v1 (ort 57b52743, trt not built, ...)': contract version, library hashes."""
    libs = [f"{kind} {lib['sha256_16'][:8]}" if lib.get("path") else f"{kind} not built"
            for kind, lib in plugin.get("libraries", {}).items()]
    return plugin.get("version", "unknown") + (f" ({', '.join(libs)})" if libs else "")


def _env_table(env: dict) -> str:
    gpu = env["gpu"]
    trt = env["tensorrt"]
    items = [
        ("device", env["device_summary"]),
        ("CPU", f"{env['cpu_model']} ({env['cpu_cores']} cores, {env.get('cpu_cores_usable', '?')} usable)"),
        ("GPU", f"{gpu['name']} (compute {gpu.get('capability')}, driver {gpu['driver']}, CUDA {gpu['cuda_runtime']})"
         if gpu["available"] else "none"),
        ("python / torch", f"{env['python']} / {env['torch']} ({env.get('torch_threads')} threads)"),
        ("onnxruntime", f"{env['onnxruntime']} ({', '.join(env.get('onnxruntime_providers', []))})"),
        ("TensorRT", f"{trt['flavour']} {trt['version']}" if trt["flavour"] else "not installed"),
        ("plugin", _plugin_text(env["plugin"])),
        ("git commit", env["git_commit"]),
        ("precision / threads", f"{env['precision']} / {env['threads'] if env['threads'] else 'default'}"),
    ]
    return tabulate(items, ["", ""], tablefmt="github")


def markdown(report: dict, gate_text: str = "") -> str:
    cfg = report["config"]
    rows = report["rows"]
    rule = report["parity_rule"]
    out = [
        f"# remamber-deploy bench: {cfg['variant']} / {cfg['preset']} at {', '.join(map(str, cfg['resolutions']))}",
        "",
        f"Created {report['created_utc']} by `{' '.join(report['command'])}`.",
        "",
        weights_text(cfg),
        "",
        f"Batch {cfg['batch']}, precision {cfg['precision']}, seed {cfg['seed']}. "
        f"Inputs: " + "; ".join(f"{i['name']} \u2014 \"{i['text']}\"" for i in cfg["inputs"]) + ".",
        "",
        "## Environment",
        "",
        _env_table(report["environment"]),
        "",
        "## Parity",
        "",
        f"Reference: {cfg['reference']}. Verdict: {rule['metric']} <= {rule['tolerance']:g} and no NaN/Inf "
        f"(per-precision defaults {', '.join(f'{k} {v:g}' for k, v in rule['precision_tolerances'].items())}).",
        "",
        parity_table(rows),
        "",
    ]
    masks = mask_table(rows)
    if masks:
        out += ["## Masks", "", "The first input's mask from each runtime's logits, at the image size (nearest resize, "
                "sigmoid > 0.5): the share of the image it covers and, when the input has a true mask (the demo "
                "image), its IoU against it.", "", masks, ""]
    out += [
        "## Latency",
        "",
        f"Milliseconds per iteration (batch {cfg['batch']}); warm-up {cfg['warmup']}, at least one iteration (the "
        "parity inference counts as the first, cold, warm-up iteration), then "
        + (f"{cfg['iterations']} iterations" if cfg["iterations"] else
           f"{cfg['duration_s']:g} s with at least {cfg['min_iterations']} and at most {cfg['max_iterations']} iterations")
        + f". Percentiles: numpy `{PERCENTILE_METHOD}` interpolation. CV = population std / mean; "
        f"above {CV_WARN_PERCENT}% the row is marked unstable (trtexec's threshold). qps = images / host wall time.",
        "",
        latency_table(rows),
        "",
    ]
    for metric, title in (("compute", "GPU compute only (no H2D/D2H)"), ("h2d", "H2D copy"), ("d2h", "D2H copy")):
        table = latency_table(rows, metric)
        if table:
            out += [f"### {title}", "", table, ""]
    warning = unstable_warning(rows)
    if warning:
        out += [f"**Warning:** {warning}", ""]
    methods: dict[str, list[str]] = {}
    for r in rows:
        if r["status"] == "measured" and r["runtime"] not in methods.setdefault(r["timing"], []):
            methods[r["timing"]].append(r["runtime"])
    if methods:
        out += ["Timing method: " + "; ".join(f"{m} ({', '.join(names)})" for m, names in methods.items()) + ".", ""]
    skipped = skipped_table(rows)
    if skipped:
        out += ["## Not measured", "", skipped, ""]
    setup = setup_table(rows)
    if setup:
        out += ["## Setup", "", "The ONNX file of a resolution is exported once and shared by ort and trt "
                "(its export time shows on both rows).", "", setup, ""]
    if gate_text:
        out += ["## Gates", "", gate_text, ""]
    plots = report.get("plots", {})
    row_plots = [(r, name, p) for r in rows for name, p in r["plots"].items()]
    if plots or row_plots:
        out += ["## Plots", ""]
        for name, p in plots.items():
            out += [f"![{name}]({p})", ""]
        for r, name, p in row_plots:
            out += [f"![{name} {r['runtime']} @{r['resolution']}]({p})", ""]
    return "\n".join(out)


def gate_markdown(latency_verdicts, unmatched, parity_verdicts, max_regression) -> str:
    parts = []
    if parity_verdicts:
        parts += ["Parity:", "", tabulate([v.table_row() for v in parity_verdicts], PARITY_HEADERS, tablefmt="github"), ""]
    if latency_verdicts is not None:
        parts += [f"Latency against the baseline (regression = median slower by more than {max_regression:g}% "
                  "AND the increase above 3 x 1.4826 x sqrt(MAD_base^2 + MAD_run^2)):", ""]
        if latency_verdicts:
            parts += [tabulate([v.table_row() for v in latency_verdicts], LATENCY_HEADERS, tablefmt="github"), ""]
        parts += [f"- {u}" for u in unmatched]
    return "\n".join(parts)


def write_markdown(report: dict, path: Path, gate_text: str = "") -> Path:
    return write_text_atomic(path, markdown(report, gate_text) + "\n")


def summary_text(report: dict) -> str:
    """What the command prints when it ends: the parity, latency and not-measured tables."""
    rows = report["rows"]
    parts = [weights_text(report["config"]).replace("**", ""), "",
             "Parity (vs PyTorch fp32 reference):", parity_table(rows), ""]
    masks = mask_table(rows)
    if masks:
        parts += ["Masks (first input):", masks, ""]
    parts += ["Latency (ms):", latency_table(rows) or "_none measured_"]
    skipped = skipped_table(rows)
    if skipped:
        parts += ["", "Not measured:", skipped]
    return "\n".join(parts)
