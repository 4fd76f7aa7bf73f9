"""ReMamber model: checkpoint-compatible structure, forward contract, and spec-level structure checks.

Expected values come from outside the code under test: the official key/shape lists
(shared/data/*.tsv), the spec's parameter counts and scan inventory (REMAMBER_SPEC 1.3, 5.2),
and index maps written out from the cross-scan definitions.
"""

from __future__ import annotations

import ast
import functools
import itertools
from collections import Counter
from pathlib import Path

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils._python_dispatch import TorchDispatchMode

import remamber
from remamber.errors import InputError
from remamber.model import PRESETS, build_model
from remamber.model.scan_layout import bidi_merge, bidi_scan, cross_merge, cross_scan

SHARED = Path(__file__).resolve().parent / "data"  # copies of ../shared/data (see data/README.md)
TSV = {v: SHARED / f"remamber_{v}_state_dict_keys.tsv" for v in ("conv", "mamba")}
EOS, BOS = 49407, 49406


def read_tsv(path: Path) -> dict[str, tuple[tuple[int, ...], str]]:
    out = {}
    for line in path.read_text().splitlines():
        key, shape, dtype = line.split("\t")
        out[key] = (tuple(ast.literal_eval(shape)), dtype)
    return out


def tokens(batch: int = 1, length: int = 5):
    """CLIP-style ids: BOS, `length` word ids, EOS, then EOS padding; mask covers BOS..EOS."""
    ids = torch.full((batch, 20), EOS, dtype=torch.int64)
    ids[:, 0] = BOS
    ids[:, 1 : 1 + length] = torch.arange(320, 320 + length) + torch.arange(batch)[:, None]
    mask = (torch.arange(20) < length + 2).long().expand(batch, 20).clone()
    return ids, mask


class ScanRecorder(TorchDispatchMode):
    """Records the u shape of every scan call, as the v1 op sees it: (batch, 4*D, L).

    A fused remamber::ss2d_scan call (u spatial (batch, D, H, W), the model's default) is recorded
    as the equivalent selective_scan's (batch, 4*D, H*W), so the spec's inventory holds for both paths.
    """

    def __init__(self):
        super().__init__()
        self.calls: list[tuple[int, ...]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.remamber.selective_scan.default:
            self.calls.append(tuple(args[0].shape))
        elif func is torch.ops.remamber.ss2d_scan.default:
            b, d, h, w = args[0].shape
            self.calls.append((b, 4 * d, h * w))
        return func(*args, **(kwargs or {}))


@functools.lru_cache(maxsize=None)
def base_model(variant: str):
    """Built once per session (a few seconds each); tests must not modify it."""
    return build_model(variant, "base")


@pytest.fixture(scope="module")
def tiny_models():
    return {v: build_model(v, "tiny", seed=0) for v in ("conv", "mamba")}


# ---- base preset: exactly the official checkpoints' keys and shapes ---------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("variant,params_m", [("conv", 254.58), ("mamba", 281.55)])
def test_base_state_dict_matches_official_keys(variant, params_m):
    if not TSV[variant].exists():
        pytest.fail(f"{TSV[variant]} is missing: it is part of the repository (tests/data)")
    expected = read_tsv(TSV[variant])
    model = base_model(variant)
    got = {k: (tuple(t.shape), str(t.dtype)) for k, t in model.state_dict().items()}
    assert sorted(set(expected) - set(got)) == []
    assert sorted(set(got) - set(expected)) == []
    assert {k: v for k, v in got.items() if expected[k] != v} == {}
    assert len(got) == (880 if variant == "conv" else 1030)
    n_params = sum(p.numel() for p in model.parameters())
    assert round(n_params / 1e6, 2) == params_m
    assert (model.variant, model.preset, model.config.name) == (variant, "base", "base")
    assert not model.training


def spec_inventory(variant: str, size: int) -> Counter:
    """REMAMBER_SPEC 5.2: u shape (1, K*D, L) -> number of calls, for the base model at ``size``."""
    calls = Counter()
    backbone, twister, decoder = (2, 2, 15, 2), 2, (2, 2, 4, 2)  # decoder depths listed shallow -> deep stage
    for s, c in enumerate((128, 256, 512, 1024)):
        shape = (1, 4 * 2 * c, (size // 2 ** (s + 2)) ** 2)
        calls[shape] += backbone[s] + twister + (decoder[s] if variant == "mamba" else 0)
        calls[(1, 4 * 512, 3 * c)] += twister  # channel scan: 16x16 grid -> D = 512, L = 3C
    return calls


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["conv", "mamba"])
@pytest.mark.parametrize("size", [480, 1024])
def test_base_scan_inventory(variant, size):
    """37 / 47 scan calls with the shapes of the spec's table; fake tensors, so no compute."""
    model = base_model(variant)
    rec = ScanRecorder()
    with torch.no_grad(), FakeTensorMode(allow_non_fake_inputs=True), rec:
        ids, mask = tokens()
        out = model(torch.empty(1, 3, size, size), ids, mask)
    assert tuple(out.shape) == (1, 1, size, size)
    assert len(rec.calls) == {"conv": 37, "mamba": 47}[variant]
    assert Counter(rec.calls) == spec_inventory(variant, size)


# ---- tiny preset forwards -----------------------------------------------------------------------------

@pytest.mark.parametrize("variant", ["conv", "mamba"])
@pytest.mark.parametrize("size", [480, 1024])
def test_tiny_forward_shapes(tiny_models, variant, size):
    model = tiny_models[variant]
    ids, mask = tokens()
    with torch.no_grad():
        out = model(torch.randn(1, 3, size, size), ids, mask)
    assert out.shape == (1, 1, size, size)
    assert out.dtype == torch.float32
    assert torch.isfinite(out).all()
    assert out.std() > 0


@pytest.mark.parametrize("variant", ["conv", "mamba"])
def test_same_seed_same_model_different_seed_differs(tiny_models, variant):
    torch.manual_seed(123)
    image = torch.randn(2, 3, 32, 32)
    ids, mask = tokens(batch=2)
    again = build_model(variant, "tiny", seed=0)
    other = build_model(variant, "tiny", seed=1)
    sd0, sd1 = tiny_models[variant].state_dict(), again.state_dict()
    assert all(torch.equal(sd0[k], sd1[k]) for k in sd0)
    with torch.no_grad():
        a = tiny_models[variant](image, ids, mask)
        b = again(image, ids, mask)
        c = other(image, ids, mask)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    assert a.shape == (2, 1, 32, 32)


def test_building_does_not_touch_global_rng():
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    build_model("conv", "tiny", seed=5)
    assert torch.equal(torch.rand(3), expected)


def test_batch_items_are_independent(tiny_models):
    """Batch 2 gives the same logits as two batch-1 calls (no cross-talk through the batch axis)."""
    model = tiny_models["mamba"]
    torch.manual_seed(3)
    image = torch.randn(2, 3, 32, 32)
    ids, mask = tokens(batch=2)
    with torch.no_grad():
        both = model(image, ids, mask)
        first = model(image[:1], ids[:1], mask[:1])
        second = model(image[1:], ids[1:], mask[1:])
    torch.testing.assert_close(both, torch.cat([first, second]), rtol=1e-4, atol=1e-5)


def test_unknown_variant_and_preset():
    with pytest.raises(InputError, match="conv, mamba"):
        build_model("transformer", "tiny")
    with pytest.raises(InputError, match="base, tiny"):
        build_model("conv", "huge")
    assert remamber.build_model("conv", "tiny").preset == "tiny"


# ---- structure against the spec --------------------------------------------------------------------------

def test_scan_count_and_channel_scan_lengths_tiny(tiny_models):
    for variant, model in tiny_models.items():
        cfg = model.config
        expected = sum(cfg.depths) + 2 * cfg.twister_depth * len(cfg.dims)
        if variant == "mamba":
            expected += sum(cfg.mamba_decoder_depths)
        size = 480
        rec = ScanRecorder()
        with torch.no_grad(), FakeTensorMode(allow_non_fake_inputs=True), rec:
            ids, mask = tokens()
            model(torch.empty(1, 3, size, size), ids, mask)
        assert len(rec.calls) == expected
        assert cfg.scan_calls(variant) == expected
        k_channels = 4 * int(cfg.ssm_ratio * cfg.channel_scan_res**2)
        channel = sorted(c for c in rec.calls if c[1] == k_channels)
        assert channel == sorted((1, k_channels, 3 * c) for c in cfg.dims for _ in range(cfg.twister_depth))
        spatial = [c for c in rec.calls if c[1] != k_channels]
        for c in spatial:  # every spatial scan reads 4 directions x 2C channels over some stage's H*W
            stage = [s for s, d in enumerate(cfg.dims) if c[1] == 4 * 2 * d]
            assert len(stage) == 1 and c[2] == (size // 2 ** (stage[0] + 2)) ** 2


def test_stage_feature_shapes(tiny_models):
    model = tiny_models["conv"]
    size = 480  # stage 3 is 15 x 15: the Twister's 16 x 16 channel-scan grid upsamples it
    with torch.no_grad(), FakeTensorMode(allow_non_fake_inputs=True):
        ids, mask = tokens()
        feats = model.forward_features(torch.empty(1, 3, size, size), ids, mask)
    assert [tuple(f.shape) for f in feats] == [
        (1, c, size // 2 ** (s + 2), size // 2 ** (s + 2)) for s, c in enumerate(model.config.dims)
    ]
    assert feats[3].shape[-1] == 15


def _explicit_cross_scan(x: torch.Tensor) -> torch.Tensor:
    """Cross-scan written from its definition with Python loops over positions."""
    b, d, h, w = x.shape
    length = h * w
    out = torch.empty(b, 4, d, length, dtype=x.dtype)
    for i, j in itertools.product(range(h), range(w)):
        row, col = i * w + j, j * h + i
        out[:, 0, :, row] = x[:, :, i, j]
        out[:, 1, :, col] = x[:, :, i, j]
        out[:, 2, :, length - 1 - row] = x[:, :, i, j]
        out[:, 3, :, length - 1 - col] = x[:, :, i, j]
    return out


@pytest.mark.parametrize("h,w", [(3, 5), (4, 4), (1, 7)])
def test_cross_scan_index_maps(h, w):
    x = torch.randn(2, 3, h, w, dtype=torch.float64)
    torch.testing.assert_close(cross_scan(x), _explicit_cross_scan(x), rtol=0, atol=0)


@pytest.mark.parametrize("h,w", [(3, 5), (6, 2)])
def test_cross_merge_is_adjoint_of_cross_scan(h, w):
    torch.manual_seed(0)
    x = torch.randn(2, 3, h, w, dtype=torch.float64)
    y = torch.randn(2, 4, 3, h * w, dtype=torch.float64)
    lhs = (cross_scan(x) * y).sum()
    rhs = (x.flatten(2) * cross_merge(y, h, w)).sum()
    torch.testing.assert_close(lhs, rhs)


def test_bidirectional_scan_layout():
    x = torch.randn(2, 5, 1, 7, dtype=torch.float64)
    xs = bidi_scan(x)
    seq = x[:, :, 0]
    torch.testing.assert_close(xs, torch.stack([seq, seq, seq.flip(-1), seq.flip(-1)], dim=1), rtol=0, atol=0)
    ys = torch.randn(2, 4, 5, 7, dtype=torch.float64)
    expected = torch.empty(2, 5, 7, dtype=torch.float64)
    for t in range(7):
        expected[..., t] = ys[:, 0, :, t] + ys[:, 1, :, t] + ys[:, 2, :, 6 - t] + ys[:, 3, :, 6 - t]
    torch.testing.assert_close(bidi_merge(ys), expected)
    torch.testing.assert_close((xs * ys).sum(), (seq * bidi_merge(ys)).sum())


def test_ssm_init_follows_official_v0(tiny_models):
    model = tiny_models["conv"]
    op = model.backbone.layers[0].blocks[0].op
    assert torch.equal(op.A_logs, torch.zeros_like(op.A_logs))  # log(1) with N = 1
    assert torch.equal(op.Ds, torch.ones_like(op.Ds))
    bound = op.dt_rank**-0.5
    assert op.dt_projs_weight.abs().max() <= bound
    dt = torch.nn.functional.softplus(op.dt_projs_bias)
    assert dt.min() >= 1e-4 - 1e-7 and dt.max() <= 0.1 + 1e-6
    # VMamba part re-initialised with trunc_normal(std 0.02) and zero biases (VSSM._init_weights) ...
    fc1 = model.backbone.layers[3].blocks[0].mlp.fc1
    assert 0.018 < fc1.weight.std().item() < 0.022
    assert torch.equal(fc1.bias, torch.zeros_like(fc1.bias))
    # ... while the Twister keeps PyTorch's default Linear init: U(+-1/sqrt(fan_in)).
    tw = model.backbone.multimodal_blocks[3].blocks[0].self_attention.ss2d.in_proj.weight
    bound = tw.shape[1] ** -0.5
    assert tw.abs().max() <= bound
    assert abs(tw.std().item() - bound / 3**0.5) < 0.1 * bound


def test_mamba_decoder_global_text_is_bos_state(tiny_models):
    """MambaDecoder feeds l_feats[:, 0] (BOS) to its text_guidencee; the backbone the EOS state."""
    model = tiny_models["mamba"]
    seen = {}
    dec_lin = model.decoder.text_guidencee[0][0]
    bb_lin = model.backbone.text_guidencee[0][0]
    def recorder(name):
        def hook(module, args, output):  # must return None: a returned value replaces the output
            seen.setdefault(name, args[0].clone())

        return hook

    h1 = dec_lin.register_forward_hook(recorder("dec"))
    h2 = bb_lin.register_forward_hook(recorder("bb"))
    ids, mask = tokens(length=4)
    try:
        with torch.no_grad():
            model(torch.randn(1, 3, 64, 64), ids, mask)
            hidden = model.text_encoder(ids, mask).last_hidden_state
    finally:
        h1.remove()
        h2.remove()
    torch.testing.assert_close(seen["dec"], hidden[:, 0])
    torch.testing.assert_close(seen["bb"], hidden[:, 5])  # first EOS after BOS + 4 words


# ---- input validation ----------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "image,ids,mask,match",
    [
        (torch.zeros(1, 3, 500, 500), None, None, "480 or 512"),
        (torch.zeros(1, 3, 64, 96), None, None, r"\(batch, 3, S, S\)"),
        (torch.zeros(1, 64, 64), None, None, r"\(batch, 3, S, S\)"),
        (torch.zeros(1, 3, 64, 64, dtype=torch.uint8), None, None, "float"),
        (None, torch.zeros(1, 19, dtype=torch.int64), torch.ones(1, 19, dtype=torch.int64), "exactly 20 token slots"),
        (None, torch.zeros(1, 20, dtype=torch.int32), None, "int64"),
        (None, None, torch.ones(1, 19, dtype=torch.int64), "attention_mask"),
        (None, torch.zeros(2, 20, dtype=torch.int64), torch.ones(2, 20, dtype=torch.int64), "batch"),
    ],
)
def test_bad_inputs_raise_input_error(tiny_models, image, ids, mask, match):
    good_ids, good_mask = tokens()
    image = torch.zeros(1, 3, 64, 64) if image is None else image
    with pytest.raises(InputError, match=match):
        tiny_models["conv"](image, good_ids if ids is None else ids, good_mask if mask is None else mask)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nan_image_raises(bad):
    # Value checks run once before any runtime (remamber.validate.tokens), not inside forward,
    # which must stay free of host syncs (capture-safe); tests/test_bad_input_tokens.py has the rest.
    from remamber.validate.tokens import check_model_inputs

    image = torch.zeros(1, 3, 64, 64)
    image[0, 1, 5, 7] = bad
    ids, mask = tokens()
    with pytest.raises(InputError, match="NaN or Inf"):
        check_model_inputs(image, ids, mask)


# ---- exportability ----------------------------------------------------------------------------------------

@pytest.mark.slow
def test_torch_export_dynamic_batch_keeps_scan_nodes(tiny_models):
    model = tiny_models["mamba"]
    size = 480
    ids, mask = tokens(batch=2)
    image = torch.randn(2, 3, size, size)
    batch = torch.export.Dim("batch", min=1, max=16)
    program = torch.export.export(
        model,
        (image, ids, mask),
        dynamic_shapes={"image": {0: batch}, "input_ids": {0: batch}, "attention_mask": {0: batch}},
    )
    scans = [
        n for n in program.graph.nodes
        if n.op == "call_function"
        and n.target in (torch.ops.remamber.selective_scan.default, torch.ops.remamber.ss2d_scan.default)
    ]
    assert len(scans) == model.config.scan_calls("mamba")
    # The batch axis stayed symbolic: the exported program runs batch 1 and matches eager.
    with torch.no_grad():
        exported = program.module()(image[:1], ids[:1], mask[:1])
        eager = model(image[:1], ids[:1], mask[:1])
    torch.testing.assert_close(exported, eager, rtol=1e-5, atol=1e-5)


def test_presets_registry():
    assert set(PRESETS) == {"base", "tiny"}
    tiny = PRESETS["tiny"]
    assert tiny.d_state == 1 and tiny.num_tokens == 20 and tiny.channel_scan_res == 16 and len(tiny.dims) == 4
    assert tiny.text.vocab_size == 49408 and tiny.text.max_position_embeddings == 77
