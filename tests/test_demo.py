"""The demo checkpoint as the default of predict / bench / eval (issue #16 item 4), and the demo sample.

* metadata validation: a missing or damaged file is a clear error naming the file and the fix;
* ``demo_sample()`` is deterministic, its sentence names exactly one object of the scene (checked
  with the generator's grammar evaluated independently of the picking rule) and its true mask
  has that object's colour;
* ``predict`` without options uses the demo checkpoint, its training resolution, the demo image and
  sentence, and prints the IoU against the truth (recomputed here); ``--random-weights`` reverts to
  seeded random weights and says so;
* the bench report carries the demo description (JSON validated against the schema, Markdown).

The model is a stand-in with known logits (as in test_predict.py) and the demo folder a stand-in
written here (``REMAMBER_DEMO_DIR``), so these run in seconds and whether or not the trained
checkpoint is present; the last test loads the committed checkpoint when it is there.
"""

from __future__ import annotations

import copy
import json
import sys
import types

import numpy as np
import pytest
import torch
from PIL import Image

import remamber
from remamber import cli, demo
from remamber.data.synthetic import COLOURS, expressions
from remamber.errors import CheckpointError

GOOD_METADATA = {
    "preset": "tiny", "variant": "conv", "resolution": 96, "storage_dtype": "float16",
    "description": demo.DEMO_DESCRIPTION,
    "training": {"command": "remamber-deploy train ...", "seed": 0,
                 "data": {"images": 100, "seed": 0, "generator_version": 1},
                 "steps": 10, "wall_s": 1.0, "machine": "test", "torch": "2"},
    "metrics": {"val": {"oIoU": 0.9, "mIoU": 0.85, "n": 10}, "testA": {"oIoU": 0.88, "mIoU": 0.8, "n": 10}},
    "final": True,
}


@pytest.fixture
def demo_dir(tmp_path, monkeypatch):
    """A stand-in demo folder: valid metadata and a placeholder checkpoint file (read by a stand-in loader)."""
    folder = tmp_path / "demo"
    folder.mkdir()
    (folder / demo.METADATA_NAME).write_text(json.dumps(GOOD_METADATA))
    (folder / demo.CHECKPOINT_NAME).write_bytes(b"PK\x03\x04stand-in")
    monkeypatch.setenv(demo.ENV_DIR, str(folder))
    return folder


# ------------------------------------------------------------------------------------------ metadata

def test_valid_metadata_loads(demo_dir):
    meta = demo.load_demo_metadata()
    assert (meta.preset, meta.variant, meta.resolution, meta.final) == ("tiny", "conv", 96, True)
    assert meta.label == demo.DEMO_DESCRIPTION
    path, meta2 = demo.demo_checkpoint()
    assert path == demo_dir / demo.CHECKPOINT_NAME and meta2 == meta


def test_metadata_of_a_model_trained_on_a_data_folder(demo_dir):
    data = copy.deepcopy(GOOD_METADATA)
    data["training"]["data"] = {"path": "/data/shapes"}  # `train --data DIR`: no generator settings to record
    (demo_dir / demo.METADATA_NAME).write_text(json.dumps(data))
    assert demo.load_demo_metadata().training["data"] == {"path": "/data/shapes"}


def _broken(data, path, key_path, value):
    data = copy.deepcopy(data)
    *parents, last = key_path
    target = data
    for key in parents:
        target = target[key]
    if value is KeyError:
        del target[last]
    else:
        target[last] = value
    path.write_text(json.dumps(data))


@pytest.mark.parametrize("key_path, value, needle", [
    (("preset",), KeyError, "'preset' is missing"),
    (("preset",), "huge", "not a model this version builds"),
    (("resolution",), 100, "multiple of 32"),
    (("resolution",), "256", "expected int"),
    (("final",), "yes", "expected bool"),
    (("training", "data", "seed"), KeyError, "training.data.'seed' is missing"),
    (("metrics", "val", "oIoU"), 1.5, "not in [0, 1]"),
    (("metrics", "val", "n"), True, "not a number"),
    (("description",), "  ", "'description' is empty"),
])
def test_bad_metadata_is_a_clear_error(demo_dir, key_path, value, needle):
    path = demo_dir / demo.METADATA_NAME
    _broken(GOOD_METADATA, path, key_path, value)
    with pytest.raises(CheckpointError) as info:
        demo.load_demo_metadata()
    message = str(info.value)
    assert needle in message and str(path) in message and "--random-weights" in message


def test_missing_or_corrupt_files_are_clear_errors(demo_dir, capsys, tmp_path):
    (demo_dir / demo.METADATA_NAME).write_text('{"preset": "tiny", ')  # torn write
    with pytest.raises(demo.DemoCheckpointError, match="not valid JSON"):
        demo.load_demo_metadata()
    (demo_dir / demo.METADATA_NAME).write_text("[1, 2]")
    with pytest.raises(demo.DemoCheckpointError, match="expected a JSON object"):
        demo.load_demo_metadata()
    (demo_dir / demo.METADATA_NAME).write_text(json.dumps(GOOD_METADATA))
    (demo_dir / demo.CHECKPOINT_NAME).unlink()
    with pytest.raises(demo.DemoCheckpointError, match="demo checkpoint .* is missing"):
        demo.demo_checkpoint()
    (demo_dir / demo.METADATA_NAME).unlink()
    with pytest.raises(demo.DemoCheckpointError, match="metadata .* is missing"):
        demo.load_demo_metadata()
    # Through the CLI: exit 2, the message names the fix, nothing written.
    assert cli.main(["predict", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert demo.METADATA_NAME in err and "--random-weights" in err and "--checkpoint" in err
    assert not (tmp_path / "o").exists()


# -------------------------------------------------------------------------------------------- sample

def test_demo_sample_is_deterministic_and_unambiguous():
    a, b = demo.demo_sample(), demo.demo_sample()
    assert a.sentence == b.sentence and a.name == b.name and a.target == b.target
    assert np.array_equal(np.asarray(a.image), np.asarray(b.image)) and np.array_equal(a.mask, b.mask)
    assert a.mask.dtype == bool and a.mask.shape == (a.image.size[1], a.image.size[0])
    assert 0.001 < a.mask.mean() < 0.2  # one object, not the background
    assert min(a.image.size) >= 480  # photo-sized: the bench runs it at 480 and 1024
    # The true mask is drawn in the target's colour (edge pixels may be blended or covered by the pole).
    pixels = np.asarray(a.image)[a.mask]
    assert (np.abs(pixels.astype(int) - COLOURS[a.target["colour"]]).max(axis=1) <= 2).mean() > 0.8
    # Another seed: another scene.
    other = demo.demo_sample(seed=demo.DEMO_SEED + 1)
    assert np.asarray(other.image).shape != np.asarray(a.image).shape or not np.array_equal(
        np.asarray(other.image), np.asarray(a.image))


def test_demo_sentence_names_exactly_its_target():
    """Regenerate the scene the way the generator does and check, with the grammar, that the
    sentence is one of the target's expressions and of no other object's."""
    from remamber.data.synthetic import IMAGE_SIZES, make_scene

    sample = demo.demo_sample()
    rng = np.random.default_rng([sample.seed, sample.index])
    width, height = IMAGE_SIZES[int(rng.integers(len(IMAGE_SIZES)))]
    shapes, _ = make_scene(rng, width, height)
    owners = [i for i in range(len(shapes)) if sample.sentence in expressions(shapes, i)]
    assert len(owners) == 1
    target = shapes[owners[0]]
    assert {"shape": target.shape, "colour": target.colour, "size": target.size} == sample.target
    assert sample.image.size == (width * sample.scale, height * sample.scale)


def test_mask_iou():
    a = np.zeros((4, 4), bool)
    b = np.zeros((4, 4), bool)
    a[:2], b[1:3] = True, True
    assert demo.mask_iou(a, b) == pytest.approx(4 / 12)
    assert demo.mask_iou(a, a) == 1.0 and demo.mask_iou(~a & a, ~a & a) == 1.0


# ------------------------------------------------------------------------------------------- predict

class LeftHalfModel(torch.nn.Module):
    """Logits +5 on the left half of the S x S grid, -5 elsewhere; records the input size."""

    def __init__(self, variant, preset):
        super().__init__()
        self.variant, self.preset, self.sizes = variant, preset, []

    def forward(self, image, input_ids, attention_mask):
        self.sizes.append(image.shape[-1])
        b, _, s, _ = image.shape
        logits = torch.full((b, 1, s, s), -5.0)
        logits[..., : s // 2] = 5.0
        return logits


@pytest.fixture
def stand_ins(monkeypatch):
    built, loaded = [], []

    def fake_build_model(variant="conv", preset="base", seed=0):
        built.append(LeftHalfModel(variant, preset))
        return built[-1]

    fake = types.ModuleType("remamber.checkpoint")
    fake.inspect_checkpoint = lambda path: pytest.fail("the demo's preset comes from its metadata, not the file")
    fake.load_checkpoint = lambda model, path, contents=None: loaded.append(str(path))
    monkeypatch.setattr(remamber, "build_model", fake_build_model)
    monkeypatch.setitem(sys.modules, "remamber.checkpoint", fake)
    return built, loaded


def test_predict_uses_the_demo_by_default(demo_dir, stand_ins, tmp_path, capsys):
    built, loaded = stand_ins
    out = tmp_path / "o"
    assert cli.main(["predict", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert loaded == [str(demo_dir / demo.CHECKPOINT_NAME)]
    assert (built[0].variant, built[0].preset) == ("conv", "tiny") and built[0].sizes == [96]  # training resolution
    sample = demo.demo_sample()
    assert f"text: {sample.sentence!r}" in captured.out
    assert f"weights: {demo.DEMO_DESCRIPTION}" in captured.out
    assert "RANDOM" not in captured.out + captured.err
    # IoU against the truth, recomputed: the stand-in's mask is the left half (nearest resize of 96 columns).
    width, height = sample.image.size
    predicted = np.broadcast_to((np.arange(width) * 96 // width) < 48, (height, width))
    assert np.array_equal(np.asarray(Image.open(out / "mask.png")) == 255, predicted)
    iou = (predicted & sample.mask).sum() / (predicted | sample.mask).sum()
    assert f"IoU vs ground truth: {iou:.4f}" in captured.out


def test_predict_random_weights_reverts_and_says_so(demo_dir, stand_ins, tmp_path, capsys):
    built, loaded = stand_ins
    assert cli.main(["predict", "--random-weights", "--seed", "5", "--out", str(tmp_path / "o")]) == 0
    captured = capsys.readouterr()
    assert loaded == [] and built[0].preset == "tiny" and built[0].sizes == [480]
    assert "weights are RANDOM (seed 5)" in captured.err and "meaningless" in captured.err
    assert "WEIGHTS ARE RANDOM" in captured.out and demo.DEMO_DESCRIPTION not in captured.out


def test_predict_other_text_on_the_demo_image_has_no_truth(demo_dir, stand_ins, tmp_path, capsys):
    assert cli.main(["predict", "--text", "the big red circle", "--out", str(tmp_path / "o")]) == 0
    assert "IoU vs ground truth" not in capsys.readouterr().out  # the truth belongs to the demo sentence


def test_predict_demo_on_a_photo_says_it_knows_only_shapes(demo_dir, stand_ins, tmp_path, capsys):
    assert cli.main(["predict", "--sample", "cat", "--out", str(tmp_path / "o")]) == 0
    captured = capsys.readouterr()
    assert "only seen synthetic coloured shapes" in captured.err and demo.DEMO_DESCRIPTION in captured.out


def test_predict_refuses_a_model_the_demo_is_not(demo_dir, stand_ins, tmp_path, capsys):
    assert cli.main(["predict", "--preset", "base", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "demo checkpoint is the conv variant, tiny preset" in err and "--random-weights" in err
    assert stand_ins[0] == []


# -------------------------------------------------------------------------------------------- report

def test_bench_report_carries_the_weights_description():
    from remamber.bench import report as report_mod
    from remamber.bench.schema import validate_report
    from remamber.export.model_source import ModelChoice

    from test_bench_report import measured_row, synthetic_report

    row = measured_row("torch", 64, [1.0, 1.1, 1.2])
    row["mask"] = {"input": "demo:x", "foreground_fraction": 0.05, "truth_iou": 0.91, "truth_fraction": 0.04}
    report = synthetic_report([row])
    meta = types.SimpleNamespace(final=True)
    choice = ModelChoice("demo", "conv", "tiny", 0, demo.checkpoint_path(), demo.DEMO_DESCRIPTION, demo=meta)
    report["config"]["weights"] = choice.as_config()
    assert validate_report(report) == []
    md = report_mod.markdown(report)
    assert demo.DEMO_DESCRIPTION in md and "RANDOM" not in md
    assert "| torch" in md and "0.9100" in md and "5.00%" in md  # the masks table
    assert demo.DEMO_DESCRIPTION in report_mod.summary_text(report)

    random_choice = ModelChoice("random", "conv", "tiny", 3, None, "RANDOM weights (seed 3)")
    report["config"]["weights"] = random_choice.as_config()
    assert validate_report(report) == []
    assert "RANDOM (seed 3)" in report_mod.markdown(report) and "RANDOM" in report_mod.summary_text(report)
    report["config"]["weights"]["checkpoint"] = "x.pth"  # random weights cannot name a checkpoint
    assert validate_report(report) != []


# ------------------------------------------------------------------------------ the committed files

@pytest.mark.skipif(not (demo.PACKAGE_DIR / demo.METADATA_NAME).is_file(), reason="demo checkpoint not committed yet")
def test_committed_demo_checkpoint_loads_into_its_model(monkeypatch):
    from remamber.checkpoint import inspect_checkpoint, load_checkpoint

    monkeypatch.delenv(demo.ENV_DIR, raising=False)
    path, meta = demo.demo_checkpoint()
    assert meta.description == demo.DEMO_DESCRIPTION
    assert path.stat().st_size <= 20 * 2**20  # issue #16: at most 20 MB
    variant, preset, contents = inspect_checkpoint(path)
    assert (variant, preset) == (meta.variant, meta.preset)  # the file's shapes agree with its metadata
    model = remamber.build_model(meta.variant, meta.preset, seed=1)
    report = load_checkpoint(model, path, contents=contents)
    assert not report.missing
    stored = contents[0]["model"]
    loaded = model.state_dict()
    assert all(torch.equal(loaded[k], v.to(loaded[k].dtype)) for k, v in stored.items() if k in loaded)
    assert any(v.dtype == torch.float16 for v in stored.values()) == (meta.storage_dtype == "float16")


def test_bench_uses_the_demo_by_default(demo_dir, tmp_path, monkeypatch, capsys):
    """bench without model options: the demo checkpoint is what gets loaded, the demo image and its
    sentence are the input, and report.json / report.md / stdout carry the description and the IoU
    against the true mask (recomputed here from the stand-in's left-half mask)."""
    from remamber.bench.schema import validate_report
    from remamber.export import model_source

    calls = []

    def fake_load_model(variant, preset, seed=0, checkpoint=None):
        calls.append((variant, preset, checkpoint))
        return LeftHalfModel(variant, preset).eval(), "stand-in"

    monkeypatch.setattr(model_source, "load_model", fake_load_model)
    out = tmp_path / "r"
    code = cli.main(["bench", "--runtimes", "torch", "--resolutions", "64", "--iterations", "1", "--warmup", "0",
                     "--no-plots", "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert calls == [("conv", "tiny", demo_dir / demo.CHECKPOINT_NAME)]
    report = json.loads((out / "report.json").read_text())
    assert validate_report(report) == []
    weights = report["config"]["weights"]
    assert weights["kind"] == "demo" and weights["description"] == demo.DEMO_DESCRIPTION
    sample = demo.demo_sample()
    assert report["config"]["inputs"] == [{"name": sample.name, "text": sample.sentence}]
    width, height = sample.image.size
    predicted = np.broadcast_to((np.arange(width) * 64 // width) < 32, (height, width))
    row = report["rows"][0]
    assert row["mask"]["truth_iou"] == pytest.approx((predicted & sample.mask).sum() / (predicted | sample.mask).sum())
    assert row["mask"]["foreground_fraction"] == pytest.approx(predicted.mean())
    md = (out / "report.md").read_text()
    for text in (demo.DEMO_DESCRIPTION, "## Masks", f"{row['mask']['truth_iou']:.4f}"):
        assert text in md and text.replace("## ", "") in captured.out
    assert "RANDOM" not in md + captured.out + captured.err


def test_compare_demo_inputs_are_the_demo_image_and_sentence():
    """compare's real-mask inputs: the demo image at the graph's resolution and its sentence, per batch item."""
    from remamber import imageio, tokenizer
    from remamber.export.cli_compare import demo_inputs

    dim = types.SimpleNamespace(dim_value=64)
    image_input = types.SimpleNamespace(name="image", type=types.SimpleNamespace(
        tensor_type=types.SimpleNamespace(shape=types.SimpleNamespace(dim=[dim, dim, dim, dim]))))
    graph = types.SimpleNamespace(graph=types.SimpleNamespace(input=[image_input]))
    image, ids, attention = demo_inputs(2, graph)
    sample = demo.demo_sample()
    want_ids, want_attention = tokenizer.tokenize([sample.sentence])
    assert image.shape == (2, 3, 64, 64) and ids.dtype == torch.int64 and attention.dtype == torch.int64
    assert torch.equal(image[1], imageio.preprocess(sample.image, 64)[0])
    assert torch.equal(ids[1], want_ids[0]) and torch.equal(attention[0], want_attention[0])
