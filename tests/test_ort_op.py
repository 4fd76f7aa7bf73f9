"""The ONNX Runtime op remamber::SelectiveScan (libremamber_ort_ops.so) against the PyTorch reference.

The reference is ``remamber.ops.selective_scan`` on its "reference" backend: independent maths
(chunked PyTorch recurrence), same contract. Inputs are fresh random tensors per case.

Coverage (kept fast by crossing everything only where it is cheap):
- small L in {1, 7, 2049}: the full cross product of D present/absent x delta_bias present/absent x
  fp32/fp16 inputs x N in {1, 4, 16} x G in {1, 2, 4} x batch in {1, 3};
- L = 14,400 (the model's stage-0 length at 480 px): a representative subset listed in LARGE_L_CASES
  (both optional inputs at N=1, G=4 as ReMamber uses them, plus N=4/16 and partial optional inputs);
- both ONNX conventions for optional inputs: positional with empty names, and compacted with the
  has_D / has_delta_bias attributes (the one TensorRT needs);
- malformed nodes give errors that carry the op's own message;
- bfloat16 inputs once (through in-graph Casts, as numpy has no bfloat16).

Tolerance (check_case): max |y - exact| <= 1e-5 * scale for fp32 AND fp16 inputs, where `exact` is the
reference scan in float64 and `scale` is the largest sum of absolute terms that makes up an output:
the same float64 scan run on |u|, |B|, |C|, |D| (every decay exp(delta*A) and every softplus(delta)
is positive, so each output becomes the sum of its terms' magnitudes). fp16 inputs are upcast to fp32
exactly, so the op runs an fp32 recurrence whose rounding error is a small multiple of 2^-24 times
that sum. Scaling by max |exact| instead is fragile: when the N products C_n x_n cancel (seen at
L = 1, N = 16: an output of 1e-4 made of terms summing to 3 in magnitude), plain fp32 rounding
exceeds 1e-5 of the output, in the PyTorch float32 reference as much as in the op. Each case draws
its inputs from a seed fixed by the case (zlib.crc32), so every run tests the same numbers.
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest

pytestmark = pytest.mark.native
import torch

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper  # noqa: E402

from remamber import native  # noqa: E402
from remamber.errors import NativeLibraryError  # noqa: E402
from remamber.ops import selective_scan, use_backend  # noqa: E402
from remamber.ops.reference import selective_scan_reference  # noqa: E402

REL_TOL = 1e-5
CHANNELS = 8  # divisible by every G tested (1, 2, 4)


def _library():
    try:
        return native.library_path("ort")
    except NativeLibraryError as exc:
        pytest.skip(f"ORT custom-op library not built: {exc}")


ELEM = {"fp32": (TensorProto.FLOAT, torch.float32), "fp16": (TensorProto.FLOAT16, torch.float16)}


def make_model(dtype: str, has_d: bool, has_bias: bool, form: str = "positional", *, shapes=None,
               a_type=TensorProto.FLOAT, attrs=None) -> bytes:
    """One SelectiveScan node. Dims are symbolic unless `shapes` gives static ones."""
    elem = ELEM[dtype][0]
    s = shapes or {
        "u": ["b", "c", "L"], "A": ["c", "n"], "B": ["b", "g", "n", "L"], "D": ["c"],
    }
    inputs = [
        helper.make_tensor_value_info("u", elem, s["u"]),
        helper.make_tensor_value_info("delta", elem, s["u"]),
        helper.make_tensor_value_info("A", a_type, s["A"]),
        helper.make_tensor_value_info("B", elem, s["B"]),
        helper.make_tensor_value_info("C", elem, s["B"]),
    ]
    names = ["u", "delta", "A", "B", "C"]
    node_attrs = {"delta_softplus": 1}
    if form == "positional":
        names += ["D" if has_d else "", "delta_bias" if has_bias else ""]
        while names[-1] == "":
            names.pop()
    else:  # compacted: only present inputs, attributes say which
        names += (["D"] if has_d else []) + (["delta_bias"] if has_bias else [])
        node_attrs.update(has_D=int(has_d), has_delta_bias=int(has_bias))
    if has_d:
        inputs.append(helper.make_tensor_value_info("D", TensorProto.FLOAT, s["D"]))
    if has_bias:
        inputs.append(helper.make_tensor_value_info("delta_bias", TensorProto.FLOAT, s["D"]))
    node_attrs.update(attrs or {})
    node = helper.make_node("SelectiveScan", names, ["y"], domain="remamber", name="scan0", **node_attrs)
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, s["u"])
    graph = helper.make_graph([node], "scan", inputs, [out])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("remamber", 1)])
    return model.SerializeToString()


_SESSIONS: dict = {}


def session(dtype, has_d, has_bias, form="positional", threads=2):
    _library()
    key = (dtype, has_d, has_bias, form, threads)
    if key not in _SESSIONS:
        _SESSIONS[key] = ort.InferenceSession(
            make_model(dtype, has_d, has_bias, form), native.ort_session_options(threads=threads),
            providers=["CPUExecutionProvider"],
        )
    return _SESSIONS[key]


def random_inputs(gen, batch, groups, nstate, length, dtype):
    tdt = ELEM[dtype][1]
    u = torch.randn(batch, CHANNELS, length, generator=gen)
    delta = torch.randn(batch, CHANNELS, length, generator=gen) * 0.5 - 1.0
    A = -torch.exp(torch.randn(CHANNELS, nstate, generator=gen) * 0.5)
    B = torch.randn(batch, groups, nstate, length, generator=gen)
    C = torch.randn(batch, groups, nstate, length, generator=gen)
    D = torch.randn(CHANNELS, generator=gen)
    bias = torch.randn(CHANNELS, generator=gen) * 0.5
    return u.to(tdt), delta.to(tdt), A, B.to(tdt), C.to(tdt), D, bias


def case_seed(*case) -> int:
    """A seed that depends on the case alone (Python's hash() of strings changes per process)."""
    return zlib.crc32(repr(case).encode())


def exact_and_scale(u, delta, A, B, C, D, bias, softplus=True):
    """The float64 reference scan, and the largest magnitude sum behind any one of its outputs."""
    f64 = [None if t is None else t.double() for t in (u, delta, A, B, C, D, bias)]
    u64, d64, a64, b64, c64, dd64, bias64 = f64
    exact = selective_scan_reference(u64, d64, a64, b64, c64, dd64, bias64, softplus).numpy()
    magnitude = selective_scan_reference(u64.abs(), d64, a64, b64.abs(), c64.abs(),
                                         None if dd64 is None else dd64.abs(), bias64, softplus).numpy()
    return exact, max(float(magnitude.max()), 1e-30)


def check_case(dtype, has_d, has_bias, nstate, groups, length, batch, form="positional", seed=0):
    gen = torch.Generator().manual_seed(case_seed(dtype, has_d, has_bias, nstate, groups, length, batch, seed))
    u, delta, A, B, C, D, bias = random_inputs(gen, batch, groups, nstate, length, dtype)
    feeds = {"u": u.numpy(), "delta": delta.numpy(), "A": A.numpy(), "B": B.numpy(), "C": C.numpy()}
    if has_d:
        feeds["D"] = D.numpy()
    if has_bias:
        feeds["delta_bias"] = bias.numpy()
    (y,) = session(dtype, has_d, has_bias, form).run(None, feeds)
    exact, scale = exact_and_scale(u, delta, A, B, C, D if has_d else None, bias if has_bias else None)
    assert y.dtype == np.float32 and y.shape == exact.shape
    err = float(np.abs(y.astype(np.float64) - exact).max())
    assert err <= REL_TOL * scale, (
        f"{dtype} D={has_d} bias={has_bias} N={nstate} G={groups} L={length} batch={batch} {form}: "
        f"max abs err {err:.3g} > {REL_TOL} x magnitude {scale:.3g}"
    )


@pytest.mark.parametrize("length", [1, 7, 2049])
@pytest.mark.parametrize("dtype", ["fp32", "fp16"])
@pytest.mark.parametrize("has_d,has_bias", [(False, False), (True, False), (False, True), (True, True)])
def test_small_lengths_full_cross_product(length, dtype, has_d, has_bias):
    for nstate in (1, 4, 16):
        for groups in (1, 2, 4):
            for batch in (1, 3):
                check_case(dtype, has_d, has_bias, nstate, groups, length, batch)


@pytest.mark.parametrize("dtype", ["fp32", "fp16"])
@pytest.mark.parametrize("has_d,has_bias", [(True, False), (False, True), (True, True), (False, False)])
def test_compacted_optional_inputs_with_attributes(dtype, has_d, has_bias):
    for nstate, groups, batch in ((1, 4, 1), (4, 2, 3)):
        check_case(dtype, has_d, has_bias, nstate, groups, 300, batch, form="compacted")


# (dtype, has_D, has_delta_bias, N, G, batch) at L = 14,400
LARGE_L_CASES = [
    ("fp32", True, True, 1, 4, 1),
    ("fp16", True, True, 1, 4, 3),
    ("fp32", False, False, 16, 2, 1),
    ("fp16", True, False, 4, 1, 1),
    ("fp32", False, True, 4, 2, 3),
]


@pytest.mark.parametrize("case", LARGE_L_CASES, ids=lambda c: "-".join(map(str, c)))
def test_large_length_subset(case):
    dtype, has_d, has_bias, nstate, groups, batch = case
    check_case(dtype, has_d, has_bias, nstate, groups, 14_400, batch)


def test_thread_count_does_not_change_results():
    gen = torch.Generator().manual_seed(7)
    u, delta, A, B, C, D, bias = random_inputs(gen, 3, 4, 4, 3000, "fp32")
    feeds = {"u": u.numpy(), "delta": delta.numpy(), "A": A.numpy(), "B": B.numpy(), "C": C.numpy(),
             "D": D.numpy(), "delta_bias": bias.numpy()}
    y1 = session("fp32", True, True, threads=1).run(None, feeds)[0]
    y2 = session("fp32", True, True, threads=2).run(None, feeds)[0]
    np.testing.assert_array_equal(y1, y2)  # rows are independent: the split cannot change the numbers


def test_delta_softplus_zero_uses_delta_directly():
    _library()
    gen = torch.Generator().manual_seed(3)
    u, delta, A, B, C, D, bias = random_inputs(gen, 1, 2, 4, 50, "fp32")
    delta = delta.abs() * 0.1  # positive steps without softplus
    m = make_model("fp32", True, True, attrs={"delta_softplus": 0})
    s = ort.InferenceSession(m, native.ort_session_options(), providers=["CPUExecutionProvider"])
    y = s.run(None, {"u": u.numpy(), "delta": delta.numpy(), "A": A.numpy(), "B": B.numpy(), "C": C.numpy(),
                     "D": D.numpy(), "delta_bias": bias.numpy()})[0]
    with use_backend("reference"):
        ref = selective_scan(u, delta, A, B, C, D, bias, False).numpy()
    assert np.abs(y - ref).max() <= REL_TOL * np.abs(ref).max()


# ---- malformed nodes ------------------------------------------------------------------------------

STATIC = {"u": [1, 8, 16], "A": [8, 1], "B": [1, 4, 1, 16], "D": [8]}


def _static(**changes):
    s = {k: list(v) for k, v in STATIC.items()}
    s.update(changes)
    return s


@pytest.mark.parametrize(
    "shapes,expected",
    [
        (_static(u=[8, 16]), "input u must have rank 3"),
        (_static(B=[1, 3, 1, 16]), "group count G = 3 (B.shape[1]) must divide the channel count 8"),
        (_static(A=[8, 17], B=[1, 4, 17, 16]), "state size N = 17"),
        (_static(A=[8, 0], B=[1, 4, 0, 16]), "state size N = 0"),
        (_static(D=[5]), "input D (5) must be (G*D,) = (8,)"),
    ],
    ids=["wrong-rank", "G-not-dividing", "N-17", "N-0", "D-length"],
)
def test_malformed_static_node_refused_at_session_creation(shapes, expected):
    _library()
    model = make_model("fp32", True, True, shapes=shapes)
    with pytest.raises(Exception) as info:
        ort.InferenceSession(model, native.ort_session_options(), providers=["CPUExecutionProvider"])
    msg = str(info.value)
    assert "remamber::SelectiveScan node 'scan0'" in msg and expected in msg, msg


def test_malformed_dynamic_node_refused_at_run():
    gen = torch.Generator().manual_seed(1)
    u, delta, A, B, C, D, bias = random_inputs(gen, 1, 3, 1, 10, "fp32")  # G = 3 does not divide 8
    feeds = {"u": u.numpy(), "delta": delta.numpy(), "A": A.numpy(), "B": B.numpy(), "C": C.numpy(),
             "D": D.numpy(), "delta_bias": bias.numpy()}
    with pytest.raises(Exception) as info:
        session("fp32", True, True).run(None, feeds)
    assert "must divide the channel count 8" in str(info.value)


def test_contradicting_attributes_are_refused():
    _library()
    # 6 inputs but the attributes declare both optional inputs present.
    model = make_model("fp32", True, False, form="compacted", attrs={"has_delta_bias": 1})
    with pytest.raises(Exception) as info:
        ort.InferenceSession(model, native.ort_session_options(), providers=["CPUExecutionProvider"])
    assert "do not match the node's 6 inputs" in str(info.value)


def test_bad_delta_softplus_value_is_refused():
    _library()
    with pytest.raises(Exception) as info:
        ort.InferenceSession(make_model("fp32", True, True, attrs={"delta_softplus": 2}),
                             native.ort_session_options(), providers=["CPUExecutionProvider"])
    assert "delta_softplus must be 0 or 1, got 2" in str(info.value)


def test_A_not_float32_is_refused():
    _library()
    with pytest.raises(Exception) as info:
        ort.InferenceSession(make_model("fp32", True, True, a_type=TensorProto.FLOAT16),
                             native.ort_session_options(), providers=["CPUExecutionProvider"])
    # ORT's own type check fires first (the op declares A as float32); it names the node's input.
    assert "float16" in str(info.value) or "tensor(float16)" in str(info.value)


def test_bfloat16_inputs_via_in_graph_casts():
    """bfloat16 u/delta/B/C: the graph casts float32 feeds to bfloat16 (numpy has no bfloat16); the
    reference gets the same bfloat16-rounded values, so the fp32 bound applies."""
    _library()
    elem = TensorProto.FLOAT
    shapes = {"u": ["b", "c", "L"], "B": ["b", "g", "n", "L"]}
    inputs = [helper.make_tensor_value_info(n, elem, shapes["B"] if n in ("B", "C") else shapes["u"])
              for n in ("u", "delta", "B", "C")]
    inputs += [helper.make_tensor_value_info("A", elem, ["c", "n"]),
               helper.make_tensor_value_info("D", elem, ["c"]),
               helper.make_tensor_value_info("delta_bias", elem, ["c"])]
    casts = [helper.make_node("Cast", [n], [n + "_bf16"], to=TensorProto.BFLOAT16) for n in ("u", "delta", "B", "C")]
    scan = helper.make_node("SelectiveScan", ["u_bf16", "delta_bf16", "A", "B_bf16", "C_bf16", "D", "delta_bias"],
                            ["y"], domain="remamber", name="scan0", delta_softplus=1, has_D=1, has_delta_bias=1)
    graph = helper.make_graph(casts + [scan], "bf16", inputs,
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, shapes["u"])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("remamber", 1)])
    s = ort.InferenceSession(model.SerializeToString(), native.ort_session_options(), providers=["CPUExecutionProvider"])
    gen = torch.Generator().manual_seed(11)
    u, delta, A, B, C, D, bias = random_inputs(gen, 2, 4, 4, 1500, "fp32")
    y = s.run(None, {"u": u.numpy(), "delta": delta.numpy(), "A": A.numpy(), "B": B.numpy(), "C": C.numpy(),
                     "D": D.numpy(), "delta_bias": bias.numpy()})[0]
    bf = [t.to(torch.bfloat16) for t in (u, delta, B, C)]
    with use_backend("reference"):
        ref = selective_scan(bf[0], bf[1], A, bf[2], bf[3], D, bias, True).numpy()
    assert np.abs(y.astype(np.float64) - ref).max() <= REL_TOL * np.abs(ref).max()
