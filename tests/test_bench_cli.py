"""`remamber-deploy bench`: bad inputs fail early and clearly; one small end-to-end run."""

import copy
import json

import numpy as np
import pytest
from PIL import Image

from remamber.bench import baseline as gate
from remamber.bench.cli import decide
from remamber.bench.inputs import collect_pairs, make_batches
from remamber.bench.schema import validate_report
from remamber.cli import main
from remamber.errors import InputError


def run_cli(capsys, *args):
    code = main(["bench", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--image", "/nonexistent/cat.png", "--text", "the cat"], ["/nonexistent/cat.png", "does not exist"]),
        (["--runtimes", "torch,tvm"], ["'tvm'", "valid names: torch, ort, trt"]),
        (["--baseline", "/nonexistent/baseline.json"], ["baseline /nonexistent/baseline.json does not exist", "--save-baseline"]),
        (["--resolutions", "480,100"], ["100", "multiple of 32"]),
        (["--image", "x.png"], ["--text"]),
        (["--text", "the cat"], ["--image"]),
        (["--warmup", "soon"], ["--warmup"]),
        (["--batch", "0"], ["--batch must be at least 1"]),
        (["--checkpoint", "/nonexistent/remamber.pth"], ["checkpoint /nonexistent/remamber.pth does not exist"]),
    ],
)
def test_bad_input_is_a_clear_error_with_exit_code_2(capsys, tmp_path, args, expected):
    code, out, err = run_cli(capsys, *args, "--out", str(tmp_path / "report"))
    assert code == 2
    assert "remamber-deploy bench: error:" in err
    for text in expected:
        assert text in err
    assert not (tmp_path / "report").exists()  # nothing started


def test_invalid_baseline_content_is_exit_code_2(capsys, tmp_path):
    bad = tmp_path / "baseline.json"
    bad.write_text('{"rows": "nope"}')
    code, _, err = run_cli(capsys, "--baseline", str(bad), "--out", str(tmp_path / "r"))
    assert code == 2 and "not a remamber bench baseline" in err


def _png(path, colour):
    Image.new("RGB", (40, 30), colour).save(path)
    return path


def test_images_dir_pairs_and_batches(tmp_path):
    _png(tmp_path / "a.png", (255, 0, 0))
    _png(tmp_path / "b.jpg", (0, 255, 0))
    _png(tmp_path / "c.png", (0, 0, 255))  # no sentence anywhere: not an input
    (tmp_path / "sentences.txt").write_text("# file<TAB>sentence\na.png\tthe red square\na.png\tthe left one\n")
    (tmp_path / "b.txt").write_text("the green square\n")
    pairs = collect_pairs(None, None, str(tmp_path))
    assert [(p.name.split("/")[-1], p.text) for p in pairs] == [
        ("a.png", "the red square"), ("a.png", "the left one"), ("b.jpg", "the green square")]
    batches = make_batches(pairs, batch=2, resolution=64)
    assert len(batches) == 2
    assert batches[0].feeds["image"].shape == (2, 3, 64, 64) and batches[0].feeds["image"].dtype == np.float32
    assert batches[0].feeds["input_ids"].shape == (2, 20) and batches[0].feeds["input_ids"].dtype == np.int64
    assert [p.text for p in batches[1].pairs] == ["the green square", "the red square"]  # cycled to fill
    # the cycled pair is the same preprocessed image as its first use
    np.testing.assert_array_equal(batches[1].feeds["image"][1], batches[0].feeds["image"][0])


def test_images_dir_errors(tmp_path):
    with pytest.raises(InputError, match="sentences.txt"):
        collect_pairs(None, None, str(tmp_path))  # empty folder
    _png(tmp_path / "a.png", (1, 2, 3))
    (tmp_path / "sentences.txt").write_text("a.png the red square\n")  # no tab
    with pytest.raises(InputError, match="TAB"):
        collect_pairs(None, None, str(tmp_path))
    (tmp_path / "sentences.txt").write_text("zzz.png\tmissing\n")
    with pytest.raises(InputError, match="zzz.png"):
        collect_pairs(None, None, str(tmp_path))
    with pytest.raises(InputError, match="not a folder"):
        collect_pairs(None, None, str(tmp_path / "nope"))
    with pytest.raises(InputError, match="one per image"):
        collect_pairs([str(tmp_path / "a.png")] * 3, ["x", "y"], None)


# ------------------------------------------------------------------------------- end to end

@pytest.fixture(scope="module")
def e2e(tmp_path_factory):
    """One real run: tiny preset with seeded random weights at 64 px, all runtimes, three measured iterations.

    --max-parity-error 0 makes any non-zero difference a parity failure, so a measured ONNX
    Runtime row (different kernels, different rounding) must end the run with exit code 4.
    """
    from remamber.cli import main as cli_main

    out = tmp_path_factory.mktemp("bench")
    code = cli_main([
        "bench", "--resolutions", "64", "--iterations", "3", "--warmup", "0", "--max-parity-error", "0",
        "--out", str(out / "report"), "--save-baseline", str(out / "baseline.json"), "--threads", "2",
        "--random-weights",
    ])
    report = json.loads((out / "report" / "report.json").read_text())
    return code, out, report


@pytest.mark.slow
def test_e2e_writes_a_valid_report_with_plots(e2e):
    code, out, report = e2e
    folder = out / "report"
    assert validate_report(report) == []
    rows = {r["runtime"]: r for r in report["rows"]}
    assert set(rows) == {"torch", "ort", "trt"} and all(r["resolution"] == 64 for r in rows.values())
    torch_row = rows["torch"]
    assert torch_row["status"] == "measured" and torch_row["latency"]["iterations"] == 3
    assert torch_row["parity"]["max_abs_error"] == 0.0
    assert "reference computation itself" in torch_row["details"]["parity_note"]  # CPU fp32 reference backend
    md = (folder / "report.md").read_text()
    for name in ("latency.png", "error_histogram.png", "masks_torch_64.png"):
        assert (folder / name).stat().st_size > 1000
        assert name in md
    assert "## Parity" in md and "## Latency" in md
    # random weights are named as such in the report; the default input is the demo image with its truth
    assert report["config"]["weights"]["kind"] == "random" and "RANDOM (seed 0)" in md
    assert report["config"]["inputs"][0]["name"].startswith("demo:")
    mask = torch_row["mask"]
    assert 0 <= mask["foreground_fraction"] <= 1 and 0 <= mask["truth_iou"] <= 1 and mask["truth_fraction"] > 0
    assert "## Masks" in md and "IoU vs ground truth" in md
    for row in report["rows"]:
        if row["status"] != "measured":
            assert row["reason"] and row["reason"] in md  # skipped with its reason, never dropped


@pytest.mark.slow
def test_e2e_ort_parity_and_exit_code(e2e):
    code, out, report = e2e
    ort_row = next(r for r in report["rows"] if r["runtime"] == "ort")
    if ort_row["status"] != "measured":
        assert ort_row["status"] == "skipped" and "bash scripts/build_native.sh" in ort_row["reason"]
        assert code == 0
        pytest.skip(f"ONNX Runtime row not measured: {ort_row['reason']}")
    # the real fp32 parity: far inside the default tolerance, but not bit-exact
    assert 0 < ort_row["parity"]["scaled_max_abs_error"] < gate.PARITY_TOLERANCE["fp32"]
    assert ort_row["parity"]["mask_iou"] == 1.0
    assert code == gate.EXIT_PARITY_FAILURE  # --max-parity-error 0
    assert report["gate"]["parity"]["failed"] == ["ort @64 fp32 b1"]
    # at the default tolerance the same report passes
    assert decide(copy.deepcopy(report), None, None, 10.0, None)[0] == 0


@pytest.mark.slow
def test_e2e_trt_row_is_skipped_with_a_reason(e2e):
    _, _, report = e2e
    trt_row = next(r for r in report["rows"] if r["runtime"] == "trt")
    assert trt_row["status"] == "skipped" and trt_row["latency"] is None
    if trt_row["details"].get("engine_build_s") is not None:
        assert "engine built with" in trt_row["reason"] and "no GPU to run it" in trt_row["reason"]
        assert trt_row["details"]["engine_bytes"] > 0


@pytest.mark.slow
def test_e2e_saved_baseline_gates_a_later_run(e2e, tmp_path):
    _, out, report = e2e
    report = copy.deepcopy(report)  # decide() records its verdict in the report
    saved = gate.load_baseline(out / "baseline.json")
    measured = [r for r in report["rows"] if r["status"] == "measured"]
    assert len(saved["rows"]) == len(measured)
    assert decide(report, saved, "baseline.json", 10.0, 1.0)[0] == 0  # the run against itself
    faster = json.loads((out / "baseline.json").read_text())
    for row in faster["rows"]:
        row["median_ms"] /= 1000  # a baseline 1000 times as fast, with no spread
        row["mad_ms"] = 0.0
    path = tmp_path / "faster.json"
    path.write_text(json.dumps(faster))
    code, _, offenders = decide(report, gate.load_baseline(path), str(path), 10.0, 1.0)
    # A row is flagged unless this run's own spread (3 x 1.4826 x MAD) exceeds its whole median,
    # which only a machine under heavy load produces; at least one row must be flagged.
    assert code == gate.EXIT_LATENCY_REGRESSION
    flagged = report["gate"]["latency"]["regressions"]
    assert flagged and all(label in offenders for label in flagged)
