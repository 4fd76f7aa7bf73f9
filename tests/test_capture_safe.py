"""The PyTorch forward and the scan op are safe for CUDA-graph capture and torch.compile (issue #9, item 3).

On the H200 (bench/results/h200-2026-11-29) capture of the forward failed twice: a host sync
(``bool(torch.isfinite(image).all())`` in input validation) and then a pageable host-to-device copy
(transformers 5.17's eager attention mask makes its zero with ``torch.tensor(0.0, device=...)``).
No GPU exists here, so these tests prove the two properties that capture needs on the CPU:

- no host round trip inside forward: the model runs on the "meta" device (``.item()``/``bool()`` of a
  meta tensor raise), under a mode that reports every tensor built from host data (torch.tensor,
  as_tensor, new_tensor, from_numpy), every read back to the host and every CPU tensor that meets the
  meta ones (those are the copies a captured CUDA forward cannot make);
- no graph break: ``torch.compile(fullgraph=True)`` of the whole forward and of the scan op.

The detector is shown not to be blind by putting 5.17's mask code back into the real model.
"""

from __future__ import annotations

import traceback

import pytest
import torch
import transformers.masking_utils as masking_utils
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten

import remamber
from remamber.model import text_encoder
from remamber.ops import selective_scan

RESOLUTION = 64  # the tiny preset at 64 x 64: every stage, the Twisters and both scans, in seconds


class CaptureBlockers(TorchFunctionMode):
    """Records calls that a CUDA-graph capture of the same forward on a GPU would fail on."""

    HOST_DATA = {torch.tensor, torch.as_tensor, torch.from_numpy, torch.Tensor.new_tensor}
    HOST_READ = {torch.Tensor.item, torch.Tensor.tolist, torch.Tensor.cpu, torch.Tensor.numpy,
                 torch.Tensor.__bool__, torch.Tensor.__int__, torch.Tensor.__float__, torch.Tensor.__index__}

    def __init__(self):
        super().__init__()
        self.found: list[str] = []

    def _record(self, what: str) -> None:
        frames = [f for f in traceback.extract_stack()[:-2] if "/torch/" not in f.filename and f.filename != __file__]
        where = f"{frames[-1].filename}:{frames[-1].lineno}" if frames else "?"
        self.found.append(f"{what} at {where}")

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", None) or str(func)
        if func in self.HOST_DATA:
            self._record(f"tensor from host data ({name})")
        elif func in self.HOST_READ:
            self._record(f"read back to the host ({name})")
        out = func(*args, **kwargs)
        cpu = [t for t in tree_flatten((args, kwargs, out))[0] if isinstance(t, torch.Tensor) and t.device.type == "cpu"]
        if cpu:
            self._record(f"CPU tensor {tuple(cpu[0].shape)} in {name}")
        return out


def _inputs(device, resolution=RESOLUTION):
    g = torch.Generator().manual_seed(0)
    image = torch.randn(1, 3, resolution, resolution, generator=g)
    ids = torch.full((1, 20), 49407, dtype=torch.int64)
    ids[0, 0] = 49406
    ids[0, 1:11] = torch.randint(1, 49405, (10,), generator=g)
    mask = torch.zeros(1, 20, dtype=torch.int64)
    mask[0, :12] = 1
    return image.to(device), ids.to(device), mask.to(device)


def _blockers_of_meta_forward(model) -> list[str]:
    model = model.to("meta")
    image, ids, mask = _inputs("meta")
    with torch.no_grad(), CaptureBlockers() as spy:
        out = model(image, ids, mask)
    assert out.shape == (1, 1, RESOLUTION, RESOLUTION) and out.device.type == "meta"
    return spy.found


@pytest.fixture(scope="module")
def tiny():
    return remamber.build_model("conv", "tiny", seed=0)


@pytest.mark.parametrize("variant", ["conv", "mamba"])
def test_forward_has_no_host_round_trip(variant):
    found = _blockers_of_meta_forward(remamber.build_model(variant, "tiny", seed=0))
    assert found == [], "a CUDA-graph capture of this forward would fail at:\n" + "\n".join(found)


def test_the_detector_catches_the_h200_blockers(monkeypatch):
    """transformers 5.17's eager mask (torch.tensor(0.0, device=...)) put back: the detector must see it."""

    def eager_mask_5_17(*args, dtype=torch.float32, **kwargs):
        kwargs.pop("allow_is_causal_skip", None)
        mask = masking_utils.sdpa_mask(*args, allow_is_causal_skip=False, **kwargs)
        return torch.where(mask, torch.tensor(0.0, device=mask.device, dtype=dtype), torch.finfo(dtype).min)

    monkeypatch.setattr(text_encoder, "_ACCEPTS_4D_MASK", False)
    monkeypatch.setitem(masking_utils.ALL_MASK_ATTENTION_FUNCTIONS, "eager", eager_mask_5_17)
    found = _blockers_of_meta_forward(remamber.build_model("conv", "tiny", seed=0))
    assert any(f.startswith("tensor from host data") for f in found), found

    # and a host sync inside a forward (the H200's first blocker): meta tensors refuse it
    class Syncs(torch.nn.Module):
        def forward(self, x):
            if not bool(torch.isfinite(x).all()):
                raise ValueError
            return x

    with pytest.raises(Exception):
        with CaptureBlockers():
            Syncs()(torch.randn(2, device="meta"))
    spy = CaptureBlockers()
    with spy:
        # a 0-dim tensor made without device= mixes silently with device tensors: one copy per call
        torch.randn(3, device="meta") * torch.ones(())
    assert any("CPU tensor" in f for f in spy.found), spy.found


def test_text_mask_is_built_here_and_equals_transformers(tiny, monkeypatch):
    """The 4D mask we hand to CLIP gives bit-identical hidden states to transformers' own 2D-mask path,
    and transformers' mask builder is not called in our forward (so its version cannot matter)."""
    if not text_encoder._ACCEPTS_4D_MASK:
        pytest.skip("transformers < 5 builds the mask itself; CI pins transformers 5")
    enc = tiny.text_encoder
    ids = torch.randint(1, 49405, (3, 20), generator=torch.Generator().manual_seed(1))
    ids[:, 0] = 49406
    ids[0, 11] = 49407
    mask = torch.ones(3, 20, dtype=torch.int64)
    mask[0, 12:] = 0
    mask[1, 5:] = 0
    mask[2, 3] = 0  # a hole in the middle: padding and causal parts both matter
    with torch.no_grad():
        theirs = enc(input_ids=ids, attention_mask=mask).last_hidden_state
        ours = text_encoder.encode_text(enc, ids, mask)[0]
        unmasked = enc(input_ids=ids, attention_mask=torch.ones_like(mask)).last_hidden_state
    assert torch.equal(ours, theirs)
    assert not torch.equal(ours[0], unmasked[0])  # the mask is used, not ignored

    def refuse(*args, **kwargs):
        raise AssertionError("transformers built an attention mask inside our forward")

    monkeypatch.setitem(masking_utils.ALL_MASK_ATTENTION_FUNCTIONS, "eager", refuse)
    with torch.no_grad():
        again = text_encoder.encode_text(enc, ids, mask)[0]
    assert torch.equal(again, ours)


def test_forward_compiles_as_one_graph(tiny):
    """fullgraph=True: any graph break (data-dependent bool, .item(), an untraceable call) is an error."""
    image, ids, mask = _inputs("cpu")
    with torch.no_grad():
        ref = tiny(image, ids, mask)
        compiled = torch.compile(tiny, fullgraph=True, backend="eager")
        out = compiled(image, ids, mask)
    torch.testing.assert_close(out, ref, rtol=0, atol=0)


def _scan_args(gen, batch=2, channels=8, length=33, groups=4, nstate=2):
    u = torch.randn(batch, channels, length, generator=gen)
    delta = torch.rand(batch, channels, length, generator=gen) - 0.5
    A = -torch.rand(channels, nstate, generator=gen) - 0.5
    B = torch.randn(batch, groups, nstate, length, generator=gen)
    C = torch.randn(batch, groups, nstate, length, generator=gen)
    D = torch.randn(channels, generator=gen)
    bias = torch.rand(channels, generator=gen) - 0.5
    return u, delta, A, B, C, D, bias


def test_scan_op_passes_torch_opcheck():
    """torch.library.opcheck: schema, fake (meta) kernel and its agreement with the real one, dispatch."""
    gen = torch.Generator().manual_seed(2)
    op = torch.ops.remamber.selective_scan.default
    for with_opts in (True, False):
        u, delta, A, B, C, D, bias = _scan_args(gen)
        args = (u, delta, A, B, C, D if with_opts else None, bias if with_opts else None, with_opts)
        torch.library.opcheck(op, args)
    u, delta, A, B, C, D, bias = _scan_args(gen)
    torch.library.opcheck(op, (u.half(), delta.half(), A, B.half(), C.half(), D, bias, True))


@pytest.mark.parametrize("backend", ["eager", "aot_eager"])
def test_scan_op_compiles_fullgraph_and_matches_eager(backend):
    gen = torch.Generator().manual_seed(3)
    u, delta, A, B, C, D, bias = _scan_args(gen)

    def f(u, delta, A, B, C, D, bias):
        # the model's pattern around the op: A from a log, outputs merged afterwards
        y = selective_scan(u, delta, A, B, C, D, bias, True)
        return y.reshape(2, 4, 2, 33).sum(1)

    ref = f(u, delta, A, B, C, D, bias)
    compiled = torch.compile(f, fullgraph=True, backend=backend)
    torch.testing.assert_close(compiled(u, delta, A, B, C, D, bias), ref, rtol=0, atol=0)
    # a second shape reuses or recompiles; never a graph break
    u2, delta2, A2, B2, C2, D2, bias2 = _scan_args(gen, length=40)
    y2 = torch.compile(lambda *a: selective_scan(*a, None, None, False), fullgraph=True, backend=backend)(u2, delta2, A2, B2, C2)
    torch.testing.assert_close(y2, selective_scan(u2, delta2, A2, B2, C2, None, None, False), rtol=0, atol=0)
