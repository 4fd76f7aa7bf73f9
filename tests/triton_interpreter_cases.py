"""The "triton" scan backend's kernels (remamber/ops/triton_kernels.py) run on the CPU by Triton's interpreter,
against the float64 reference (remamber/ops/reference.py on float64 upcasts of the same rounded inputs).

Not collected by pytest's file pattern: tests/test_triton_backend.py runs this file in a subprocess with
TRITON_INTERPRET=1 set from the start. Triton decorates its own standard library (tl.zeros, tl.sum, ...) when
`triton` is first imported, in the mode the environment says then; in a full test session other modules
import triton first (through torch / transformers), so switching the variable inside that process gives
kernels that cannot call tl.zeros. A fresh process with the variable set is the only reliable way, and it
keeps the variable out of every other test. Run by hand:
    TRITON_INTERPRET=1 python -m pytest -q -p no:cacheprovider tests/triton_interpreter_cases.py

Covered: every input dtype, N in {1, 4, 16}, groups (also a channel count per group that is not a power of
two), D / delta_bias present and absent, softplus on and off, L = 1, L not a multiple of the chunk, many
chunks, both SS2D layouts with H != W, batch > 1, the GPU's tile sizes, short model shapes (the Twister's
bidirectional scan at L = 384), the public ops with REMAMBER_SCAN_BACKEND=triton, "auto" priorities,
torch.compile(fullgraph=True), a launch wrapper that never reads tensor values, mutated kernels (carry
dropped between chunks, column-major order transposed, merge losing a direction) that the checks catch, and
the GPU check's triton_correctness step driving these kernels.
Not covered here (no GPU): see the backend module's docstring; bench/gpu/triton_check.py runs those.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest
import torch
from torch.overrides import TorchFunctionMode

from remamber.ops import backends, selective_scan, selective_scan_reference, ss2d_scan, ss2d_scan_reference

BOUND = 1e-5  # ||out - ref|| / ||ref|| and max|out - ref| / max|ref|, as the GPU check's ERROR_BOUND
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}

if os.environ.get("TRITON_INTERPRET") != "1":
    raise RuntimeError("run this file with TRITON_INTERPRET=1 set before Python starts (tests/test_triton_backend.py does)")


@pytest.fixture(scope="module")
def tb():
    from remamber.ops import triton_backend

    triton_backend.kernels()
    assert triton_backend.interpreted(), "the kernels were not decorated in interpreter mode"
    return triton_backend


# ---- inputs and the check ---------------------------------------------------------------------------

def scan_inputs(gen, batch, channels, length, groups, nstate, dtype="float32", with_D=True, with_bias=True, softplus=True):
    dt = DTYPES[dtype]
    u = torch.randn(batch, channels, length, generator=gen).to(dt)
    if softplus:  # softplus(delta + bias) around 0.05..1, the model's range and some
        delta = (torch.randn(batch, channels, length, generator=gen) * 0.7 - 1.5).to(dt)
    else:  # dt used as given: positive
        delta = (torch.rand(batch, channels, length, generator=gen) * 0.3 + 1e-3).to(dt)
    A = -(torch.rand(channels, nstate, generator=gen) * 3 + 0.05)
    B = torch.randn(batch, groups, nstate, length, generator=gen).to(dt)
    C = torch.randn(batch, groups, nstate, length, generator=gen).to(dt)
    D = torch.randn(channels, generator=gen) if with_D else None
    bias = (torch.rand(channels, generator=gen) * 0.2) if with_bias else None
    return u, delta, A, B, C, D, bias


def ss2d_inputs(gen, batch, dim, height, width, nstate, dtype="float32", with_D=True, with_bias=True, softplus=True):
    u, delta, A, B, C, D, bias = scan_inputs(gen, batch, 4 * dim, height * width, 4, nstate, dtype, with_D, with_bias, softplus)
    return (u[:, :dim].reshape(batch, dim, height, width).contiguous(), delta.reshape(batch, 4 * dim, height, width), A,
            B.reshape(batch, 4, nstate, height, width), C.reshape(batch, 4, nstate, height, width), D, bias)


def _f64(args):
    return [None if t is None else t.double() for t in args]


def assert_close_to(out, ref, what=""):
    assert out.dtype == torch.float32 and out.shape == ref.shape
    assert bool(torch.isfinite(out).all()), f"{what}: non-finite or unwritten (NaN-poisoned) outputs"
    diff = out.double() - ref
    rel = float(diff.norm() / ref.norm())
    mx = float(diff.abs().max() / ref.abs().max())
    assert rel <= BOUND and mx <= BOUND, f"{what}: rel_l2 {rel:.2e}, max_abs/max_ref {mx:.2e} (bound {BOUND})"


def run_v1(tb, args, softplus, **blocks):
    out = torch.full(args[0].shape, float("nan"))
    return tb.triton_scan_into(out, *args, delta_softplus=softplus, **blocks)


def run_ss2d(tb, args, softplus, layout, **blocks):
    out = torch.full(args[0].shape, float("nan"))
    return tb.triton_ss2d_scan_into(out, *args, delta_softplus=softplus, layout=layout, **blocks)


def check_v1(tb, shape, dtype="float32", with_D=True, with_bias=True, softplus=True, seed=0, **blocks):
    gen = torch.Generator().manual_seed(seed)
    args = scan_inputs(gen, *shape, dtype, with_D, with_bias, softplus)
    out = run_v1(tb, args, softplus, **blocks)
    assert_close_to(out, selective_scan_reference(*_f64(args), softplus), f"v1 {shape} {dtype}")


def check_ss2d(tb, shape, layout, dtype="float32", with_D=True, with_bias=True, softplus=True, seed=0, **blocks):
    gen = torch.Generator().manual_seed(seed)
    args = ss2d_inputs(gen, *shape, dtype, with_D, with_bias, softplus)
    out = run_ss2d(tb, args, softplus, layout, **blocks)
    assert_close_to(out, ss2d_scan_reference(*_f64(args), softplus, layout), f"ss2d {shape} layout {layout} {dtype}")


# ---- selective scan v1 --------------------------------------------------------------------------------

# (batch, channels, L, groups, N): the interpreter's chunk is 32 steps, so L = 45 is two chunks with a
# tail and L = 100 four; channels per group 3 is not a power of two (masked channel lanes).
V1_CASES = [
    ((2, 8, 45, 2, 1), "float32", True, True, True),
    ((2, 8, 45, 2, 4), "float16", True, False, True),
    ((1, 6, 100, 2, 16), "bfloat16", False, True, True),
    ((2, 4, 37, 1, 16), "float32", False, False, False),
    ((1, 12, 33, 4, 4), "bfloat16", True, True, False),
    ((2, 6, 64, 3, 1), "float16", False, False, True),
    ((1, 4, 1, 4, 16), "float32", True, True, True),
    ((2, 4, 2, 2, 4), "float16", True, True, True),
    ((1, 9, 70, 3, 3), "float32", True, True, True),
]


@pytest.mark.parametrize("shape,dtype,with_D,with_bias,softplus", V1_CASES, ids=lambda v: str(v))
def test_selective_scan_matches_float64(tb, shape, dtype, with_D, with_bias, softplus):
    check_v1(tb, shape, dtype, with_D, with_bias, softplus)


def test_selective_scan_many_short_chunks(tb):
    # 16-step chunks over 203 steps: 13 carries, and every channel in its own program (block_d 1).
    check_v1(tb, (1, 4, 203, 2, 4), block_l=16, block_d=1)


def test_selective_scan_gpu_tile_sizes(tb):
    # The compiled kernel's default tiles (256-step chunks, channels per program from the tile budget)
    # on a model-like shape: the Twister's scan length 384 (two chunks, tail of 128), G = 4.
    _, bd, bl = tb.block_sizes(1, 384, 2, block_l=tb.GPU_BLOCK_L, block_d=2)
    check_v1(tb, (1, 8, 384, 4, 1), "float16", block_l=bl, block_d=bd)


# ---- SS2D scan --------------------------------------------------------------------------------------

SS2D_CASES = [
    ((1, 3, 5, 7, 1), 0, "float32"),  # H != W, L = 35: two chunks
    ((2, 2, 7, 5, 4), 0, "float16"),
    ((1, 2, 4, 9, 16), 0, "bfloat16"),
    ((1, 3, 1, 40, 4), 1, "float32"),  # the Twister's layout: H = 1
    ((2, 2, 3, 11, 1), 1, "bfloat16"),  # bidi walks the row-major order for any H
    ((1, 5, 6, 6, 16), 0, "float16"),
]


@pytest.mark.parametrize("shape,layout,dtype", SS2D_CASES, ids=lambda v: str(v))
def test_ss2d_scan_matches_float64(tb, shape, layout, dtype):
    check_ss2d(tb, shape, layout, dtype)


@pytest.mark.parametrize("with_D,with_bias,softplus", [(False, False, True), (True, False, False), (False, True, False)])
def test_ss2d_scan_options(tb, with_D, with_bias, softplus):
    check_ss2d(tb, (1, 2, 3, 8, 4), 0, "float32", with_D, with_bias, softplus)


def test_ss2d_scan_many_chunks_and_block_sizes(tb):
    check_ss2d(tb, (1, 3, 9, 13, 4), 0, block_l=16, block_d=2)  # 117 steps: 8 chunks, one masked channel lane


# ---- model shapes with short L ---------------------------------------------------------------------

def test_model_shape_twister_bidi_384(tb):
    # twister0 channel scan of the base model: (D = 512, 1 x 384, bidi, N = 1); 2 channels of it.
    check_ss2d(tb, (1, 2, 1, 384, 1), 1, "float16")


def test_model_shape_cross_15x15(tb):
    # backbone stage 3 at 480: (D = 2048, 15 x 15, cross, N = 1); 2 channels of it.
    check_ss2d(tb, (1, 2, 15, 15, 1), 0, "bfloat16")


def test_model_shape_v1_twister_scan(tb):
    # the unfused v1 scan of the same site: (1, 4D, 384), G = 4; 8 channels of it.
    check_v1(tb, (1, 8, 384, 4, 1), "float32")


# ---- the public ops, selection and compile ----------------------------------------------------------

def test_env_var_selects_triton_for_both_ops(tb, monkeypatch):
    gen = torch.Generator().manual_seed(5)
    v1 = scan_inputs(gen, 1, 4, 40, 2, 4)
    sp = ss2d_inputs(gen, 1, 2, 3, 5, 4)
    direct_v1 = run_v1(tb, v1, True)
    direct_ss2d = run_ss2d(tb, sp, True, 0)
    monkeypatch.setenv("REMAMBER_SCAN_BACKEND", "triton")
    assert backends.resolve_backend("cpu").name == "triton"
    assert backends.resolve_backend("cpu", backends.OP_SS2D_SCAN).name == "triton"
    # the op's output is the Triton kernel's, bit for bit (the fp32 reference rounds differently)
    assert torch.equal(selective_scan(*v1, True), direct_v1)
    assert torch.equal(ss2d_scan(*sp, True, "cross"), direct_ss2d)
    assert not torch.equal(selective_scan_reference(*v1, True), direct_v1)


def test_auto_priorities(tb, monkeypatch):
    monkeypatch.delenv("REMAMBER_SCAN_BACKEND", raising=False)
    for op in (backends.OP_SELECTIVE_SCAN, backends.OP_SS2D_SCAN):
        # CPU: never the interpreter by "auto"
        assert backends.resolve_backend("cpu", op).name == "reference"
        table = backends.registered_backends(op)
        # CUDA without our library (as here): triton; with it: cuda
        monkeypatch.setattr(table["cuda"], "unavailable_reason", lambda: "no library")
        assert backends.resolve_backend("cuda", op).name == "triton"
        monkeypatch.setattr(table["cuda"], "unavailable_reason", lambda: None)
        assert backends.resolve_backend("cuda", op).name == "cuda"
        assert table["triton"].priority < table["cuda"].priority
        if "mamba-ssm" in table:
            assert table["triton"].priority > table["mamba-ssm"].priority


def test_cpu_tensors_refused_without_interpreter(tb, monkeypatch):
    from remamber.errors import InputError

    monkeypatch.setattr(tb, "interpreted", lambda: False)
    gen = torch.Generator().manual_seed(1)
    with pytest.raises(InputError, match="TRITON_INTERPRET"):
        tb.triton_scan(*scan_inputs(gen, 1, 2, 4, 1, 1))


@pytest.mark.parametrize("which", ["selective_scan", "ss2d_scan"])
def test_compile_fullgraph_with_triton_backend(tb, monkeypatch, which):
    monkeypatch.setenv("REMAMBER_SCAN_BACKEND", "triton")
    gen = torch.Generator().manual_seed(2)
    if which == "selective_scan":
        args = scan_inputs(gen, 1, 4, 40, 2, 4)
        f = lambda *a: selective_scan(*a, True).sum(1)  # noqa: E731
    else:
        args = ss2d_inputs(gen, 1, 2, 3, 5, 1)
        f = lambda *a: ss2d_scan(*a, True, "cross") * 2  # noqa: E731
    eager = f(*args)
    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(*args), eager, rtol=0, atol=0)


def test_opcheck_with_triton_backend(tb, monkeypatch):
    # the ops' fake kernels agree with what the triton backend returns (shapes, dtypes, strides, devices)
    monkeypatch.setenv("REMAMBER_SCAN_BACKEND", "triton")
    gen = torch.Generator().manual_seed(4)
    torch.library.opcheck(torch.ops.remamber.selective_scan.default, (*scan_inputs(gen, 1, 4, 20, 2, 4, "float16"), True))
    torch.library.opcheck(torch.ops.remamber.ss2d_scan.default, (*ss2d_inputs(gen, 1, 2, 3, 4, 1), False, 1))


class HostReads(TorchFunctionMode):
    """Records calls that read tensor values on the host (what a CUDA-graph capture cannot contain)."""

    READS = {torch.Tensor.item, torch.Tensor.tolist, torch.Tensor.cpu, torch.Tensor.numpy, torch.Tensor.__bool__,
             torch.Tensor.__int__, torch.Tensor.__float__, torch.Tensor.__index__, torch.tensor, torch.as_tensor}

    def __init__(self):
        super().__init__()
        self.seen = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in self.READS:
            self.seen.append(getattr(func, "__name__", str(func)))
        return func(*args, **(kwargs or {}))


class _Recorder:
    def __init__(self):
        self.launches = []

    def __getitem__(self, grid):
        return lambda *a, **kw: self.launches.append((grid, a, kw))


@pytest.mark.parametrize("which", ["selective_scan", "ss2d_scan"])
def test_launch_wrapper_reads_no_values(tb, monkeypatch, which):
    # The wrappers on meta tensors (no values exist) with the kernel replaced by a recorder: grid and
    # arguments come from shapes alone, nothing is read back, only the output is allocated.
    fake = type("K", (), {"selective_scan_kernel": _Recorder(), "ss2d_scan_kernel": _Recorder()})()
    monkeypatch.setattr(tb, "kernels", lambda: fake)
    monkeypatch.setattr(tb, "_check_device", lambda op, u: None)
    gen = torch.Generator().manual_seed(0)
    if which == "selective_scan":
        args = [None if t is None else t.to("meta") for t in scan_inputs(gen, 2, 12, 50, 4, 16)]
        with HostReads() as mode:
            out = tb.triton_scan(*args)
        (grid, _, kw), = fake.selective_scan_kernel.launches
        assert grid[0] == 2 * 4 and grid[1] * kw["BLOCK_D"] >= 3
    else:
        args = [None if t is None else t.to("meta") for t in ss2d_inputs(gen, 2, 6, 3, 5, 4)]
        with HostReads() as mode:
            out = tb.triton_ss2d_scan(*args, True, 1)
        (grid, _, kw), = fake.ss2d_scan_kernel.launches
        assert grid[0] == 2 and grid[1] * kw["BLOCK_D"] >= 6 and kw["LAYOUT"] == 1
    assert mode.seen == []
    assert out.device.type == "meta" and out.dtype == torch.float32 and out.shape == args[0].shape


# ---- the checks can fail: mutated kernels ---------------------------------------------------------

MUTATIONS = {
    # the state entering a chunk is dropped (every chunk starts from zero)
    "carry": ("states = b_cum + a_cum * h[:, :, None]", "states = b_cum + a_cum * (h[:, :, None] * 0.0)"),
    # column-major order with H and W swapped (only H != W tells them apart)
    "column-major": ("p = (t % height) * width + t // height", "p = (t % width) * height + t // width"),
    # direction 1 overwrites direction 0 instead of adding to it
    "merge": ("if k > 0:  # the merge", "if k > 1:  # the merge"),
}


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_checks_catch_a_broken_kernel(tb, monkeypatch, tmp_path, name):
    old, new = MUTATIONS[name]
    source = Path(tb.__file__).with_name("triton_kernels.py").read_text(encoding="utf-8")
    assert source.count(old) == 1, f"mutation {name!r} no longer matches the kernel source"
    path = tmp_path / f"mutant_{name.replace('-', '_')}.py"
    path.write_text(source.replace(old, new), encoding="utf-8")
    spec = importlib.util.spec_from_file_location(path.stem, path)
    mutant = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = mutant  # triton.jit reads the functions' source through their module
    monkeypatch.setitem(sys.modules, path.stem, mutant)
    spec.loader.exec_module(mutant)
    monkeypatch.setattr(tb, "_kernels", mutant)
    with pytest.raises(AssertionError, match="rel_l2"):
        if name == "carry":
            check_v1(tb, (1, 4, 100, 2, 4))  # four chunks
        else:
            check_ss2d(tb, (1, 2, 5, 7, 4), 0)
    if name == "carry":  # a single chunk has nothing to carry: the mutant still passes there
        check_v1(tb, (1, 4, 30, 2, 4))


# ---- the GPU check's correctness step on these kernels ------------------------------------------------

def test_gpu_check_correctness_step_runs_the_kernels(tb, tmp_path, monkeypatch):
    from remamber.bench.gpu import cases, ss2d_cases, triton_check
    from remamber.bench.gpu.common import Run

    monkeypatch.setattr(triton_check, "triton_into", lambda run: (tb.triton_scan_into, tb.triton_ss2d_scan_into))
    monkeypatch.setattr(triton_check, "v1_plan", lambda run: [
        cases.ScanCase(1, 8, 45, 2, 4, "float16"), cases.ScanCase(2, 6, 33, 3, 1, with_D=False, softplus=False)])
    monkeypatch.setattr(triton_check, "fused_plan", lambda run, res: [
        ss2d_cases.SS2DCase(1, 3, 5, 7, "cross", nstate=4), ss2d_cases.SS2DCase(2, 2, 1, 40, "bidi", dtype="bfloat16")])
    run = Run(tmp_path, 100.0, [], device="cpu")
    triton_check.step_triton_correctness(run, 3, deadline_s=100.0, resolutions=(32,))
    entry = run.results["steps"]["triton_correctness"]
    assert entry["status"] == "ok" and run.failures == [], entry
    assert [c["status"] for c in entry["cases"]] == ["pass"] * 4
    assert entry["worst"]["rel_l2"] < 1e-6
