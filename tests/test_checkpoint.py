"""Checkpoint loading: official ReMamber and VMamba formats built from the published key lists.

The synthetic checkpoints take their keys and shapes from shared/data/*.tsv (the official
files' inventory), not from our model. Their tensors are stride-0 expansions of one value per
tensor, so a 1 GB checkpoint costs a few KB on disk yet has exactly the official shapes.
"""

from __future__ import annotations

import argparse
import sys
import types
from pathlib import Path

import pytest
import torch

from remamber.checkpoint import (
    KIND_REMAMBER_CONV,
    KIND_REMAMBER_MAMBA,
    KIND_VMAMBA,
    guess_kind,
    load_checkpoint,
    read_checkpoint,
    save_checkpoint,
)
from remamber.errors import CheckpointError
from remamber.model import build_model
from test_model import TSV, base_model, read_tsv, tokens  # shared helpers (and one cached base model per variant)

FUSION = ("backbone.multimodal_blocks.", "backbone.text_guidencee.", "backbone.local_text_fusion.")
DTYPES = {"torch.float32": torch.float32, "torch.int64": torch.int64}


def official_entries(variant: str) -> list[tuple[str, tuple[int, ...], torch.dtype]]:
    if not TSV[variant].exists():
        pytest.fail(f"{TSV[variant]} is missing: it is part of the repository (tests/data)")
    return [(key, shape, DTYPES[dtype]) for key, (shape, dtype) in read_tsv(TSV[variant]).items()]


def fake_tensor(shape, dtype, value: float) -> torch.Tensor:
    """A tensor of the given shape whose storage holds a single element (cheap to save and load)."""
    return torch.full((1,) * max(len(shape), 1), value, dtype=dtype).reshape((1,) * len(shape)).expand(shape)


def official_state(variant: str) -> dict[str, torch.Tensor]:
    return {
        key: fake_tensor(shape, dtype, (i % 97) / 97.0 if dtype.is_floating_point else 3)
        for i, (key, shape, dtype) in enumerate(official_entries(variant))
    }


def install_fake_yacs():
    """A class pickled as yacs.config.CfgNode (a dict subclass with attributes, as yacs has)."""
    yacs = types.ModuleType("yacs")
    config = types.ModuleType("yacs.config")

    class CfgNode(dict):
        def __init__(self, init=None):
            super().__init__(init or {})
            self.__dict__["__immutable__"] = True

    CfgNode.__module__ = "yacs.config"
    CfgNode.__qualname__ = "CfgNode"
    config.CfgNode = CfgNode
    yacs.config = config
    sys.modules["yacs"], sys.modules["yacs.config"] = yacs, config
    return CfgNode


def remove_fake_yacs():
    sys.modules.pop("yacs.config", None)
    sys.modules.pop("yacs", None)


# ---- official ReMamber files into the base model -------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("variant", ["conv", "mamba"])
def test_official_remamber_checkpoint_loads_strictly(tmp_path, variant):
    state = official_state(variant)
    # A transformers-4.x era file may carry the CLIP position_ids buffer; it must be dropped.
    state["text_encoder.text_model.embeddings.position_ids"] = torch.arange(77)[None]
    path = tmp_path / f"ReMamber_{variant}.pth"
    torch.save(
        {
            "model": state,
            "optimizer": {"state": {}, "param_groups": [{"lr": 5e-5}]},
            "lr_scheduler": {"last_epoch": 10},
            "model_ema": None,
            "scaler": {"scale": 65536.0},
            "epoch": 49,
            "args": argparse.Namespace(model=f"ReMamber_{variant.capitalize()}", input_size=480, lr=5e-5),
        },
        path,
    )
    model = base_model(variant)
    report = load_checkpoint(model, path)
    assert report.kind == (KIND_REMAMBER_CONV if variant == "conv" else KIND_REMAMBER_MAMBA)
    assert report.ignored == ["text_encoder.text_model.embeddings.position_ids"]
    assert report.missing == []
    assert len(report.loaded) == len(official_entries(variant))
    assert "args" in report.extras and "optimizer" in report.extras
    loaded = model.state_dict()
    for key in ("backbone.layers.2.blocks.14.op.A_logs", "decoder.proj_out.2.bias" if variant == "mamba" else "decoder.neck.8.bias"):
        assert torch.equal(loaded[key], state[key]), key
    assert torch.equal(
        loaded["text_encoder.text_model.final_layer_norm.weight"],
        state["text_encoder.text_model.final_layer_norm.weight"],
    )


@pytest.mark.slow
def test_vmamba_backbone_checkpoint_with_yacs_config(tmp_path):
    entries = official_entries("conv")
    state = {}
    for key, shape, dtype in entries:
        if key.startswith("backbone.") and not key.startswith(FUSION):
            state[key[len("backbone."):]] = fake_tensor(shape, dtype, 0.25)
    state["classifier.norm.weight"] = torch.ones(1024)
    state["classifier.norm.bias"] = torch.zeros(1024)
    state["classifier.head.weight"] = torch.zeros(1000, 1024)
    state["classifier.head.bias"] = torch.zeros(1000)
    CfgNode = install_fake_yacs()
    try:
        config = CfgNode({"MODEL": CfgNode({"TYPE": "vssm", "NAME": "vssm_base_0229"}), "SEED": 0})
        path = tmp_path / "vssm_base_0229_ckpt_epoch_237.pth"
        torch.save({"model": state, "optimizer": {}, "max_accuracy": 83.9, "epoch": 237, "config": config}, path)
    finally:
        remove_fake_yacs()  # loading must not need yacs

    obj, placeholders = read_checkpoint(path)
    assert placeholders == ["yacs.config.CfgNode"]
    assert obj["config"]["MODEL"]["NAME"] == "vssm_base_0229"

    model = base_model("conv")
    report = load_checkpoint(model, path)
    assert report.kind == KIND_VMAMBA
    assert sorted(report.ignored) == sorted(k for k in state if k.startswith("classifier."))
    assert len(report.loaded) == len(state) - 4
    assert all(k.startswith(FUSION + ("text_encoder.", "decoder.")) for k in report.missing)
    assert any(k.startswith("backbone.multimodal_blocks.") for k in report.missing)
    assert torch.equal(model.state_dict()["backbone.layers.1.blocks.0.op.Ds"], state["layers.1.blocks.0.op.Ds"])


# ---- foreign and mismatched files -----------------------------------------------------------------------

@pytest.mark.slow
def test_mamba_checkpoint_into_conv_model_names_keys_and_kind(tmp_path):
    path = tmp_path / "ReMamber_Mamba.pth"
    torch.save({"model": official_state("mamba")}, path)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(base_model("conv"), path)
    message = str(info.value)
    assert "ReMamber mamba checkpoint" in message
    assert "decoder.mixer3.conv1.conv.weight" in message  # missing from the file
    assert "decoder.text_guidencee.0.0.weight" in message  # unexpected in the file
    assert "decoder.hire_fusion.* (36)" in message  # the per-prefix summary
    assert "variant='mamba'" in message


@pytest.mark.slow
def test_shape_mismatch_reports_expected_and_found(tmp_path):
    state = official_state("conv")
    state["backbone.layers.0.blocks.0.op.A_logs"] = torch.zeros(1024, 4)  # a d_state = 4 model
    path = tmp_path / "other.pth"
    torch.save({"model": state}, path)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(base_model("conv"), path)
    message = str(info.value)
    assert "backbone.layers.0.blocks.0.op.A_logs expected (1024, 1) found (1024, 4)" in message
    assert "ReMamber conv checkpoint" in message


def test_foreign_file_is_unknown(tmp_path):
    path = tmp_path / "resnet.pth"
    torch.save({"state_dict": {"conv1.weight": torch.zeros(64, 3, 7, 7)}}, path)
    model = build_model("conv", "tiny")
    with pytest.raises(CheckpointError, match="no model weights"):
        load_checkpoint(model, path)
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7), "fc.weight": torch.zeros(10, 64)}, path)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(model, path)
    assert "unknown checkpoint" in str(info.value)
    assert "conv1.weight" in str(info.value)


def test_base_checkpoint_into_tiny_model_says_use_base(tmp_path):
    path = tmp_path / "ReMamber_Conv.pth"
    torch.save({"model": {k: v for k, v in list(official_state("conv").items())[:50]}}, path)
    with pytest.raises(CheckpointError, match="shape mismatch") as info:
        load_checkpoint(build_model("conv", "tiny"), path)
    assert "base" in str(info.value)


def test_missing_and_unreadable_files(tmp_path):
    model = build_model("conv", "tiny")
    missing = tmp_path / "nowhere" / "ReMamber_Conv.pth"
    with pytest.raises(CheckpointError, match="not found") as info:
        load_checkpoint(model, missing)
    assert str(missing) in str(info.value)
    text = tmp_path / "notes.pth"
    text.write_text("this is not a checkpoint")
    with pytest.raises(CheckpointError, match="could not read"):
        load_checkpoint(model, text)
    with pytest.raises(CheckpointError, match="auto, remamber, vmamba"):
        load_checkpoint(model, text, kind="onnx")


class _Exploit:
    """Unpickling this would run a shell command; the reader must not."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_pickled_code_is_not_executed(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    model = build_model("conv", "tiny")
    torch.save({"model": model.state_dict(), "payload": _Exploit(marker)}, path)
    report = load_checkpoint(model, path)
    assert not marker.exists()
    assert any(p.endswith(".system") for p in report.placeholders)


def test_guess_kind_from_prefixes():
    assert guess_kind(["backbone.patch_embed.0.weight", "decoder.mixer3.dwconv.weight"]) == KIND_REMAMBER_CONV
    assert guess_kind(["decoder.multimodal_blocks.0.blocks.0.ln_1.weight"]) == KIND_REMAMBER_MAMBA
    assert guess_kind(["patch_embed.0.weight", "layers.0.blocks.0.norm.weight", "classifier.head.weight"]) == KIND_VMAMBA
    assert guess_kind(["encoder.layer.0.weight"]) == "unknown"


# ---- our own saves -----------------------------------------------------------------------------------------

def test_save_load_round_trip_gives_identical_outputs(tmp_path):
    source = build_model("mamba", "tiny", seed=11)
    path = save_checkpoint(source, tmp_path / "sub" / "tiny.pth")
    assert path.exists() and not list(path.parent.glob("*.tmp"))
    assert set(torch.load(path, weights_only=True)) == {"model"}
    target = build_model("mamba", "tiny", seed=0)
    report = load_checkpoint(target, path)
    assert report.kind == KIND_REMAMBER_MAMBA and report.missing == [] and report.placeholders == []
    ids, mask = tokens()
    image = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(source(image, ids, mask), target(image, ids, mask))
