"""`remamber-deploy eval` end to end on a generated RefCOCO-layout dataset: torch and ONNX Runtime
(and TensorRT listed with its reason), tiny preset at 64 px, a handful of sentences; then resume,
the accuracy gate and the disagreement overlays, re-using the first run's ONNX export.

Numbers are checked against recomputations that do not use the code under test: ground truth
decoded straight from instances.json with pycocotools, the model's logits resized with
torch.nn.functional.interpolate, oIoU/mIoU summed from the per-sentence file."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from remamber.data.synthetic import generate

RES = 64
FIRST, SECOND = 3, 5  # sentences in the first run, then after the resume


def _records(out):
    lines = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    return [r for r in lines if r["kind"] == "sample"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from remamber.cli import main

    base = tmp_path_factory.mktemp("eval")
    generate(base / "data", images=6, seed=0)
    out = base / "out"
    common = ["eval", "--data", str(base / "data"), "--split", "val", "--resolution", str(RES),
              "--out", str(out), "--threads", "2", "--keep-artifacts", "--random-weights"]
    first = main([*common, "--limit", str(FIRST), "--runtimes", "torch,ort,trt", "--max-oiou-drop", "5"])
    report_first = json.loads((out / "report.json").read_text())
    records_first = _records(out)
    onnx_mtime = (out / "artifacts" / f"remamber_{RES}_fp32.onnx").stat().st_mtime_ns
    # A torn last line, as an interrupted run leaves it.
    with open(out / "samples.jsonl", "a") as fh:
        fh.write('{"kind": "sample", "row": "ort/fp')
    second = main([*common, "--limit", str(SECOND), "--runtimes", "torch,ort", "--resume"])
    return {"base": base, "out": out, "common": common, "first": first, "report_first": report_first,
            "records_first": records_first, "second": second, "onnx_mtime": onnx_mtime,
            "report": json.loads((out / "report.json").read_text())}


@pytest.mark.slow
def test_first_run_rows_and_trt_reason(run):
    assert run["first"] == 0
    rows = {r["row"]: r for r in run["report_first"]["rows"]}
    assert set(rows) == {"reference/fp32", "torch/fp32", "ort/fp32", "trt/fp32"}
    assert rows["ort/fp32"]["status"] == "measured" and rows["ort/fp32"]["sentences"] == FIRST
    assert rows["trt/fp32"]["status"] in ("skipped", "failed") and rows["trt/fp32"]["reason"]
    # PyTorch fp32 on the CPU is the reference computation: same numbers, zero deltas
    assert rows["torch/fp32"]["metrics"] == rows["reference/fp32"]["metrics"]
    assert rows["torch/fp32"]["deltas"]["oiou_points"] == 0
    assert run["report_first"]["random_weights"] is True
    assert run["report_first"]["gate"] == {"max_oiou_drop_points": 5.0, "failed": [], "exit_code": 0}
    md = (run["out"] / "report.md").read_text()
    assert "Random weights" in md and "ΔoIoU" in md and "trt" in md


@pytest.mark.slow
def test_resume_adds_only_the_missing_sentences(run):
    assert run["second"] == 0
    records = _records(run["out"])
    first = run["records_first"]
    assert records[: len(first)] == first  # kept as they were
    by_row = {}
    for r in records:
        by_row.setdefault(r["row"], []).append(r["key"])
    for row in ("reference/fp32", "torch/fp32", "ort/fp32"):
        assert len(by_row[row]) == SECOND and len(set(by_row[row])) == SECOND, row
    # the interrupted run's ONNX export was reused, not redone
    assert (run["out"] / "artifacts" / f"remamber_{RES}_fp32.onnx").stat().st_mtime_ns == run["onnx_mtime"]
    rows = {r["row"]: r for r in run["report"]["rows"]}
    assert rows["ort/fp32"]["sentences"] == SECOND


@pytest.mark.slow
def test_metrics_match_an_independent_recomputation(run):
    from pycocotools import mask as mask_utils

    data = run["base"] / "data"
    records = _records(run["out"])
    report = {r["row"]: r for r in run["report"]["rows"]}
    for row in ("reference/fp32", "ort/fp32"):
        mine = [r for r in records if r["row"] == row]
        inter = np.array([r["inter"] for r in mine], float)
        union = np.array([r["union"] for r in mine], float)
        assert report[row]["metrics"]["oiou"] == pytest.approx(inter.sum() / union.sum(), rel=1e-5)
        assert report[row]["metrics"]["miou"] == pytest.approx(np.mean(inter / union), rel=1e-5)
    # One sentence from scratch: ground truth from instances.json, logits from the model.
    import pickle

    import torch
    import torch.nn.functional as F

    from remamber import imageio, tokenizer
    from remamber.export.model_source import load_model

    first = next(r for r in records if r["row"] == "reference/fp32")
    ref_id, sent_id = (int(v) for v in first["key"].split(":"))
    ref = next(r for r in pickle.loads((data / "refcoco" / "refs(unc).p").read_bytes()) if r["ref_id"] == ref_id)
    sentence = next(s["sent"] for s in ref["sentences"] if s["sent_id"] == sent_id)
    instances = json.loads((data / "refcoco" / "instances.json").read_text())
    info = next(i for i in instances["images"] if i["id"] == ref["image_id"])
    ann = next(a for a in instances["annotations"] if a["id"] == ref["ann_id"])
    gt = mask_utils.decode(mask_utils.frPyObjects(ann["segmentation"], info["height"], info["width"])).sum(axis=2) == 1
    model, _ = load_model("conv", "tiny", 0, None)
    image = imageio.load_image(data / "train2014" / info["file_name"])
    ids, attention = tokenizer.tokenize([sentence])
    from remamber.ops import use_backend

    with torch.inference_mode(), use_backend("reference"):
        logits = model(imageio.preprocess(image, RES), ids, attention)
    pred = (torch.sigmoid(F.interpolate(logits, size=gt.shape, mode="nearest")) > 0.5)[0, 0].numpy()
    assert (first["inter"], first["union"]) == (int((pred & gt).sum()), int((pred | gt).sum()))


@pytest.mark.slow
def test_resume_refuses_another_experiment(run, capsys):
    from remamber.cli import main

    args = [a if a != str(RES) else "96" for a in run["common"]]
    assert main([*args, "--limit", "2", "--runtimes", "torch", "--resume"]) == 2
    assert "resolution: was 64, now 96" in capsys.readouterr().err


@pytest.mark.slow
def test_gate_and_disagreement_overlays(run, tmp_path):
    """Damage the ONNX Runtime results of a copy of the run: its oIoU drops, the gate fails (exit 4),
    and the damaged sentence is listed with its overlay."""
    from remamber.cli import main
    from remamber.bench.eval_results import encode_mask

    out = tmp_path / "copy"
    shutil.copytree(run["out"], out, ignore=shutil.ignore_patterns("artifacts"))
    lines = (out / "samples.jsonl").read_text().splitlines()
    damaged_key = None
    for i, line in enumerate(lines):
        rec = json.loads(line)
        if rec["kind"] == "sample" and rec["row"] == "ort/fp32" and damaged_key is None:
            damaged_key = rec["key"]
            h, w = rec["mask"]["size"]
            rec.update(inter=0, union=rec["union"] + 10**6, mask=encode_mask(np.ones((h, w), bool)))
            lines[i] = json.dumps(rec)
    (out / "samples.jsonl").write_text("\n".join(lines) + "\n")
    args = [a if a != str(run["out"]) else str(out) for a in run["common"]]
    code = main([*args, "--limit", str(SECOND), "--runtimes", "torch,ort", "--resume", "--max-oiou-drop", "1"])
    assert code == 4
    report = json.loads((out / "report.json").read_text())
    assert [f["row"] for f in report["gate"]["failed"]] == ["ort/fp32"]
    worst = report["disagreements"][0]
    assert worst["key"] == damaged_key and "ort/fp32" in worst["rows"]
    overlay = out / worst["overlays"]["ort/fp32"]
    assert overlay.is_file() and overlay.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "FAILED: ort/fp32" in (out / "report.md").read_text()


def test_gate_rule_by_hand():
    from remamber.bench.eval_report import gate

    rows = [{"row": "reference/fp32", "deltas": None},
            {"row": "ort/fp16", "deltas": {"oiou_points": -0.8}},
            {"row": "trt/fp16", "deltas": {"oiou_points": -1.2}},
            {"row": "trt/fp32", "deltas": None}]
    assert gate(rows, None)["exit_code"] == 0
    verdict = gate(rows, 1.0)
    assert verdict["exit_code"] == 4 and [f["row"] for f in verdict["failed"]] == ["trt/fp16"]
    assert gate(rows, 1.5)["failed"] == []
