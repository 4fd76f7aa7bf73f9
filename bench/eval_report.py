"""The report of ``remamber-deploy eval``: metrics per runtime and precision, deltas against the
PyTorch fp32 reference on the same sentences, the sentences where runtimes disagree most (with
overlays), the accuracy gate, and the Markdown view. Built from the results file alone
(``eval_results``), so a resumed run reports exactly like an uninterrupted one.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from tabulate import tabulate

from ..atomic import atomic_path, write_text_atomic
from . import eval_metrics
from .eval_results import ResultsFile, decode_mask, mask_agreement

REFERENCE_ROW = "reference/fp32"
REFERENCE_LABEL = "PyTorch fp32 reference (CPU, reference scan backend)"
TOOL = "remamber-deploy eval"
EXIT_GATE_FAILED = 4


def row_metrics(results: ResultsFile, row: str, keys: list[str]) -> dict | None:
    records = results.row_samples(row, keys)
    return eval_metrics.summarize((r["inter"], r["union"]) for r in records.values())


def build_rows(results: ResultsFile, row_info: dict[str, dict], keys: list[str]) -> list[dict]:
    """One report row per runtime/precision: status, metrics and deltas vs the reference."""
    reference = results.row_samples(REFERENCE_ROW, keys)
    rows = []
    for label, info in row_info.items():
        records = results.row_samples(label, keys)
        row = {"row": label, "runtime": info["runtime"], "precision": info["precision"],
               "status": info.get("status"), "reason": info.get("reason"), "device": info.get("device"),
               "details": info.get("details", {}), "sentences": len(records), "metrics": None,
               "reference_on_same": None, "deltas": None, "agreement": None, "nan_outputs": 0, "mean_ms": None}
        if records:
            if row["status"] == "measured" and len(records) < len(keys):
                row["status"] = "incomplete"
            row["metrics"] = eval_metrics.summarize((r["inter"], r["union"]) for r in records.values())
            row["nan_outputs"] = sum(bool(r.get("nan")) for r in records.values())
            times = [r["ms"] for r in records.values() if r.get("ms") is not None]
            row["mean_ms"] = float(np.mean(times)) if times else None
            shared = [k for k in records if k in reference]
            same = eval_metrics.summarize((reference[k]["inter"], reference[k]["union"]) for k in shared)
            mine = eval_metrics.summarize((records[k]["inter"], records[k]["union"]) for k in shared)
            if same and mine:
                row["reference_on_same"] = same
                row["deltas"] = {"sentences": len(shared), **eval_metrics.deltas(mine, same)}
                row["agreement"] = _agreement(records, reference, shared)
        rows.append(row)
    return rows


def _agreement(records: dict, reference: dict, shared: list[str]) -> dict:
    ious, differing, worst = [], 0, 0.0
    for k in shared:
        inter, union = mask_agreement(records[k]["mask"], reference[k]["mask"])
        ious.append(inter / union if union else 1.0)
        h, w = records[k]["mask"]["size"]
        if union - inter:
            differing += 1
            worst = max(worst, (union - inter) / (h * w))
    return {"mean_mask_iou_vs_reference": float(np.mean(ious)), "sentences_differing": differing,
            "max_pixel_fraction_differing": worst}


def disagreements(results: ResultsFile, rows: list[dict], samples: list, top: int) -> list[dict]:
    """The ``top`` sentences whose runtime masks differ most from the reference mask (pixel fraction)."""
    if top <= 0:
        return []
    compared = [r["row"] for r in rows if r["row"] != REFERENCE_ROW and not r["details"].get("is_reference")]
    scored = []
    for sample in samples:
        ref = results.samples.get((REFERENCE_ROW, sample.key))
        if ref is None:
            continue
        per_row = {}
        for label in compared:
            rec = results.samples.get((label, sample.key))
            if rec is None:
                continue
            inter, union = mask_agreement(rec["mask"], ref["mask"])
            h, w = rec["mask"]["size"]
            if union - inter:
                per_row[label] = {"pixels_differ": union - inter, "fraction": (union - inter) / (h * w),
                                  "mask_iou_vs_reference": inter / union,
                                  "iou_gt": eval_metrics.iou(rec["inter"], rec["union"]),
                                  "iou_gt_reference": eval_metrics.iou(ref["inter"], ref["union"])}
        if per_row:
            scored.append((max(v["fraction"] for v in per_row.values()), sample, per_row))
    scored.sort(key=lambda item: -item[0])
    return [{"key": s.key, "ref_id": s.ref_id, "image_id": s.image_id, "ann_id": s.ann_id, "sentence": s.sentence, "rows": per_row,
             "overlays": {}} for _, s, per_row in scored[:top]]


def write_overlays(entries: list[dict], results: ResultsFile, dataset, out_dir: Path, random: bool = False) -> None:
    """Per disagreement and differing runtime: reference mask | runtime mask | ground truth, as PNG.
    ``random``: the weights are random, and the titles say so."""
    for entry in entries:
        ref_mask = decode_mask(results.samples[(REFERENCE_ROW, entry["key"])]["mask"])
        image = dataset.image(entry["image_id"])
        gt = dataset.mask(entry["ann_id"])
        for label in entry["rows"]:
            mask = decode_mask(results.samples[(label, entry["key"])]["mask"])
            name = f"disagreement_{entry['key'].replace(':', '_')}_{label.replace('/', '_')}.png"
            overlay_panels(image, ref_mask, mask, gt, out_dir / name, label,
                           ("RANDOM WEIGHTS, masks meaningless - " if random else "")
                           + f"\"{entry['sentence']}\" (ref {entry['ref_id']}): {label} vs reference")
            entry["overlays"][label] = name


def overlay_panels(image, reference_mask, runtime_mask, gt_mask, path: Path, runtime: str, title: str) -> Path:
    """Three panels: reference mask, runtime mask (differing pixels magenta), ground truth. Each shows the
    image at full brightness inside the mask and dimmed outside, so no object colour hides a mask."""
    from matplotlib.figure import Figure

    rgb = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    diff = reference_mask != runtime_mask
    panels = (("PyTorch fp32 reference mask", reference_mask, None),
              (f"{runtime} mask ({int(diff.sum())} px differ, magenta)", runtime_mask, diff),
              ("ground truth", gt_mask, None))
    height, width = diff.shape
    fig = Figure(figsize=(11, 11 / 3 * height / width + 0.9), layout="constrained")
    for i, (name, mask, differ) in enumerate(panels, start=1):
        ax = fig.add_subplot(1, 3, i)
        over = rgb * 0.25
        over[mask] = rgb[mask]
        if differ is not None:
            over[differ] = (1.0, 0.0, 1.0)
        ax.imshow(over)
        ax.set_title(name, fontsize=9)
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    return Path(path)


def gate(rows: list[dict], max_drop: float | None) -> dict:
    """Fail rows whose oIoU is more than ``max_drop`` points below the reference on the same sentences."""
    if max_drop is None:
        return {"max_oiou_drop_points": None, "failed": [], "exit_code": 0}
    failed = [{"row": r["row"], "oiou_drop_points": -r["deltas"]["oiou_points"]} for r in rows
              if r["row"] != REFERENCE_ROW and r["deltas"] and -r["deltas"]["oiou_points"] > max_drop]
    return {"max_oiou_drop_points": max_drop, "failed": failed, "exit_code": EXIT_GATE_FAILED if failed else 0}


# -------------------------------------------------------------------------------------------- output

def _json_safe(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def write_json(report: dict, path: Path) -> Path:
    write_text_atomic(path, json.dumps(_json_safe(report), indent=2) + "\n")
    return Path(path)


def _pct(value, signed=False) -> str:
    if value is None:
        return ""
    return f"{value:+.3f}" if signed else f"{100 * value:.2f}"


def metrics_table(rows: list[dict]) -> str:
    headers = ["runtime", "precision", "status", "sentences", "oIoU", "ΔoIoU", "mIoU", "ΔmIoU",
               *[f"P@{t}" for t in ("0.5", "0.6", "0.7", "0.8", "0.9")], "mask IoU vs ref", "sentences differing", "ms"]
    table = []
    for r in rows:
        m, d, a = r["metrics"], r["deltas"], r["agreement"]
        label = r["runtime"]
        if r["row"] == REFERENCE_ROW:  # compared with itself: no deltas to show
            label, d, a = REFERENCE_LABEL, None, None
        table.append([
            label, r["precision"], r["status"], r["sentences"], _pct(m and m["oiou"]),
            _pct(d and d["oiou_points"], True), _pct(m and m["miou"]), _pct(d and d["miou_points"], True),
            *[_pct(m and m["precision"][t]) for t in ("0.5", "0.6", "0.7", "0.8", "0.9")],
            f"{a['mean_mask_iou_vs_reference']:.6f}" if a else "", a["sentences_differing"] if a else "",
            f"{r['mean_ms']:.1f}" if r["mean_ms"] is not None else "",
        ])
    return tabulate(table, headers, tablefmt="github", disable_numparse=True)


def markdown(report: dict) -> str:
    from .report import _env_table

    cfg, ds = report["config"], report["dataset"]
    lines = [
        f"# Accuracy evaluation: {cfg['dataset']} ({cfg['split_by']}) {cfg['split']}",
        "",
        f"Model: {cfg['variant']}/{cfg['preset']}, weights {cfg['weights']}; input {cfg['resolution']}x"
        f"{cfg['resolution']}; {ds['sentences']} sentences of {ds['refs']} refs on {ds['images']} images"
        + (f" (first {cfg['limit']} sentences of the split)" if cfg["limit"] else "") + ".",
        "",
    ]
    if report["random_weights"]:
        lines += ["**Random weights:** the absolute oIoU/mIoU mean nothing; only the deltas between runtimes do.", ""]
    lines += [
        "oIoU, mIoU and P@t in percent; Δ = runtime minus the PyTorch fp32 reference on the same sentences, in "
        "points. \"mask IoU vs ref\": mean IoU between the runtime's and the reference's predicted masks; "
        "\"sentences differing\": sentences where the two masks differ in at least one pixel; ms: mean inference "
        "time per sentence.",
        "",
        metrics_table(report["rows"]),
        "",
        f"Protocol: {report['protocol']}",
        "",
    ]
    skipped = [r for r in report["rows"] if r["status"] in ("skipped", "failed")]
    if skipped:
        lines += ["## Not measured", "", tabulate([[r["runtime"], r["precision"], r["status"], r["reason"]] for r in skipped],
                                                  ["runtime", "precision", "status", "reason"], tablefmt="github"), ""]
    nan_rows = [r for r in report["rows"] if r["nan_outputs"]]
    if nan_rows:
        lines += ["NaN logits (scored as background, as the official code would): "
                  + ", ".join(f"{r['row']}: {r['nan_outputs']} sentences" for r in nan_rows), ""]
    lines += ["## Where the runtimes disagree most", ""]
    if report["disagreements"]:
        table = [[d["sentence"], d["key"], label, v["pixels_differ"], f"{100 * v['fraction']:.3f}%",
                  f"{v['iou_gt_reference']:.4f}", f"{v['iou_gt']:.4f}", f"![]({d['overlays'].get(label, '')})"
                  if d["overlays"].get(label) else ""]
                 for d in report["disagreements"] for label, v in d["rows"].items()]
        lines += [tabulate(table, ["sentence", "ref:sent", "runtime", "px differ", "of image", "IoU ref", "IoU runtime",
                                   "overlay (reference | runtime | ground truth)"], tablefmt="github",
                           disable_numparse=True), ""]
    else:
        lines += ["Every measured runtime gave exactly the reference's mask on every sentence.", ""]
    g = report["gate"]
    if g["max_oiou_drop_points"] is not None:
        verdict = ("FAILED: " + ", ".join(f"{f['row']} drops {f['oiou_drop_points']:.2f} points" for f in g["failed"])
                   if g["failed"] else "passed")
        lines += ["## Gate", "", f"Allowed oIoU drop against the reference: {g['max_oiou_drop_points']:g} points: {verdict}.", ""]
    lines += ["## Environment", "", _env_table(report["environment"]), "",
              f"Per-sentence results: `{report['results_file']}`. Command: `{' '.join(report['command'])}`", ""]
    return "\n".join(lines)


def summary_text(report: dict) -> str:
    return metrics_table(report["rows"])
