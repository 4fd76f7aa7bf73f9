"""The TensorRT plugin libremamber_trt_plugin.so in TensorRT-RTX, on CPU (no GPU needed to build).

What runs here: the library loads into TensorRT-RTX's plugin registry; ONNX graphs holding one
remamber::SelectiveScan node (every optional-input combination, fp32 and fp16 activations, dynamic
batch and L through an optimization profile) parse and build into serialized engines; malformed
nodes are refused at build time and the captured TensorRT log carries the plugin's own message;
`nm -D --defined-only` shows only getCreators and setLoggerFinder.
Engines are never deserialized or run: that needs a GPU.

TensorRT-RTX work runs in a subprocess (tests/_plugin_helpers.py run as a script, the harness shared
with tests/test_ss2d_trt_plugin.py), because a broken TRT-RTX setup aborts the whole process (see
scripts/fix_trt_rtx.sh) and must not take pytest down with it.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest
from _plugin_helpers import assert_built, assert_refused_with_message, build_each
from _plugin_helpers import plugin_runner, write_model
from _plugin_helpers import plugin_path, workdir  # noqa: F401  (pytest fixtures, used by name)

pytestmark = pytest.mark.native

ERROR_PREFIX = "remamber::SelectiveScan node 'scan0': "
CREATORS = ["SelectiveScan"]
# Dynamic axes: batch 1..4 (opt 2), L 1..65,536 (opt 4,096).
PROFILE = {"batch": [1, 2, 4], "last": [1, 4096, 65536], "other": [1, 4096, 65536]}


# ---- graph construction ---------------------------------------------------------------------------

def make_model(dtype="fp32", has_d=True, has_bias=True, *, channels=8, groups=4, nstate=1, a_type=None,
               u_rank=3, attrs=None, explicit_flags=True, empty_names=False, static=False):
    from onnx import TensorProto, helper

    elem = {"fp32": TensorProto.FLOAT, "fp16": TensorProto.FLOAT16}[dtype]
    a_type = TensorProto.FLOAT if a_type is None else a_type
    batch, length = (2, 64) if static else ("batch", "L")
    u_shape = [batch, channels, length] if u_rank == 3 else [channels, length]
    inputs = [
        helper.make_tensor_value_info("u", elem, u_shape),
        helper.make_tensor_value_info("delta", elem, u_shape),
        helper.make_tensor_value_info("A", a_type, [channels, nstate]),
        helper.make_tensor_value_info("B", elem, [batch, groups, nstate, length]),
        helper.make_tensor_value_info("C", elem, [batch, groups, nstate, length]),
    ]
    names = ["u", "delta", "A", "B", "C"]
    if empty_names:
        names += ["D" if has_d else "", "delta_bias" if has_bias else ""]
    else:
        names += (["D"] if has_d else []) + (["delta_bias"] if has_bias else [])
    if has_d:
        inputs.append(helper.make_tensor_value_info("D", TensorProto.FLOAT, [channels]))
    if has_bias:
        inputs.append(helper.make_tensor_value_info("delta_bias", TensorProto.FLOAT, [channels]))
    node_attrs = {"delta_softplus": 1}
    if explicit_flags:
        node_attrs.update(has_D=int(has_d), has_delta_bias=int(has_bias))
    node_attrs.update(attrs or {})
    node = helper.make_node("SelectiveScan", names, ["y"], domain="remamber", name="scan0", **node_attrs)
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, u_shape)
    graph = helper.make_graph([node], "scan", inputs, [out])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("remamber", 1)])
    return model.SerializeToString()


# ---- pytest side ----------------------------------------------------------------------------------

_run = plugin_runner("SelectiveScan", "scan0", CREATORS, PROFILE)


VALID = {
    f"{dtype}-D{int(d)}-bias{int(b)}": dict(dtype=dtype, has_d=d, has_bias=b)
    for dtype in ("fp32", "fp16") for d in (True, False) for b in (True, False)
}
VALID["fp32-N16-G2"] = dict(nstate=16, groups=2)
VALID["fp16-N3-G8"] = dict(dtype="fp16", nstate=3, groups=8)
VALID["fp32-positional-no-flags"] = dict(explicit_flags=False)  # 7 inputs, no has_* attributes
VALID["fp32-D-only-no-flags"] = dict(has_bias=False, explicit_flags=False)  # 6th input = D by position
# the exporter's form: plugin_namespace / plugin_version, which TensorRT < 10.10 needs to find the plugin
VALID["fp16-plugin-lookup-attrs"] = dict(dtype="fp16", attrs={"plugin_namespace": "remamber", "plugin_version": "1"})


@pytest.fixture(scope="module")
def valid_results(plugin_path, workdir):
    paths = [write_model(workdir, name, make_model(**kw)) for name, kw in VALID.items()]
    results, _ = _run("build", plugin_path, paths)
    return dict(zip(VALID, results))


@pytest.mark.parametrize("name", list(VALID))
def test_valid_graph_parses_and_builds(valid_results, name):
    r = valid_results[name]
    assert r["creators"] == {"SelectiveScan": True}, "load_library registered no SelectiveScan creator"
    assert_built(r)


MALFORMED = {
    "wrong-rank": (dict(u_rank=2), "input u must have rank 3"),
    "G-not-dividing": (dict(groups=3), "group count G = 3 (B.shape[1]) must divide the channel count 8"),
    "N-17": (dict(nstate=17), "state size N = 17"),
    "A-not-float32": (dict(a_type=10), "input A must be float32, got float16"),  # 10 = TensorProto.FLOAT16
    "flags-contradict-inputs": (dict(has_bias=False, attrs={"has_delta_bias": 1}), "do not match the node's 6 inputs"),
    "bad-delta-softplus": (dict(attrs={"delta_softplus": 5}), "delta_softplus must be 0 or 1, got 5"),
}


@pytest.fixture(scope="module")
def malformed_results(plugin_path, workdir):
    paths = {name: write_model(workdir, "bad-" + name, make_model(**kw)) for name, (kw, _) in MALFORMED.items()}
    return build_each(plugin_path, paths, CREATORS, PROFILE)


@pytest.mark.parametrize("name", list(MALFORMED))
def test_malformed_node_refused_with_plugin_message(malformed_results, name):
    assert_refused_with_message(malformed_results[name], name, ERROR_PREFIX, MALFORMED[name][1])


def test_empty_name_optional_input_is_rejected_by_the_parser(plugin_path, workdir):
    """Documents why the node convention is 'compacted + has_* flags': TRT cannot take "" inputs."""
    path = write_model(workdir, "empty-name", make_model(has_d=False, has_bias=True, empty_names=True))
    (r,), _ = _run("build", plugin_path, [path])
    assert not r["parsed"]


def test_unknown_field_refused_by_create_plugin(plugin_path):
    r, stderr = _run("create", plugin_path, {"delta_softplus": 1, "foo": 1})
    assert r["found_creator"] and not r["created"]
    assert any("unknown attribute 'foo'" in line for line in r["log"] + [stderr]), (r["log"], stderr)
    ok, _ = _run("create", plugin_path, {"delta_softplus": 1, "has_D": 1, "has_delta_bias": 1})
    assert ok["created"], ok["log"]


def test_parser_reads_plugin_version_attribute(plugin_path, workdir):
    """The ONNX parser itself consumes plugin_version: a node asking for version "2" finds no creator.

    (TensorRT-RTX, like TensorRT >= 10.10, falls back to the node's domain for the namespace, so a
    wrong plugin_namespace is not observable here; TensorRT 10.0-10.9 needs it to be right.)
    """
    path = write_model(workdir, "version-2", make_model(attrs={"plugin_namespace": "remamber", "plugin_version": "2"}))
    (r,), _ = _run("build", plugin_path, [path])
    assert not r["parsed"]
    assert any("Plugin not found" in e for e in r["parser_errors"]), r["parser_errors"]


def test_create_plugin_accepts_lookup_attributes_naming_it(plugin_path):
    """A caller that forwards every node attribute (not the ONNX parser) may pass the lookup strings."""
    ok, _ = _run("create", plugin_path, {"delta_softplus": 1, "plugin_namespace": "remamber", "plugin_version": "1"})
    assert ok["created"], ok["log"]
    bad, stderr = _run("create", plugin_path, {"delta_softplus": 1, "plugin_namespace": "other"})
    assert bad["found_creator"] and not bad["created"]
    assert any("'plugin_namespace' must be the string \"remamber\"" in line for line in bad["log"] + [stderr])


def test_exports_only_entry_points(plugin_path):
    nm = shutil.which("nm")
    if nm is None:
        pytest.skip("nm (binutils) is not installed")
    out = subprocess.run([nm, "-D", "--defined-only", plugin_path], capture_output=True, text=True, check=True).stdout
    symbols = sorted(line.split()[-1] for line in out.splitlines() if line.strip())
    assert symbols == ["getCreators", "setLoggerFinder"], symbols


def test_native_library_exports():
    """The ORT and CUDA libraries export only their C entry points (checked when built)."""
    from remamber import native
    from remamber.errors import NativeLibraryError

    nm = shutil.which("nm")
    if nm is None:
        pytest.skip("nm (binutils) is not installed")
    expected = {
        "ort": ["RegisterCustomOps"],
        "cuda": sorted(["remamberSS2DScanForward", "remamberSS2DScanLastError", "remamberSS2DScanVersion",
                       "remamberSelectiveScanForward", "remamberSelectiveScanLastError", "remamberSelectiveScanVersion"]),
    }
    checked = 0
    for kind, names in expected.items():
        try:
            path = native.library_path(kind)
        except NativeLibraryError:
            continue
        out = subprocess.run([nm, "-D", "--defined-only", str(path)], capture_output=True, text=True, check=True).stdout
        assert sorted(line.split()[-1] for line in out.splitlines() if line.strip()) == names
        checked += 1
    if not checked:
        pytest.skip("neither libremamber_ort_ops.so nor libremamber_scan_cuda.so is built")
