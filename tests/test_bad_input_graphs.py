"""ONNX graphs that build-engine and compare must refuse before any work (remamber.validate.graphs):
misspelt or unknown scan attributes, unknown ops, the remamber domain at version 2, no scan node,
wrong plugin lookup values, empty / corrupt / truncated files, missing external data.

The graphs are built here by hand (one SelectiveScan node on a 32x32 image), so no model export is
needed; what is refused follows the op contract (plugins/selectiveScanPlugin/README.md), not the code.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from remamber.cli import main
from remamber.validate.graphs import GraphError, check_graph

SIDE = 32
LENGTH = SIDE * SIDE
GOOD_ATTRS = dict(delta_softplus=1, has_D=1, has_delta_bias=1, plugin_namespace="remamber", plugin_version="1")


def tiny_graph(path: Path, attrs=None, drop=(), domain_version=1, scan=True, op="SelectiveScan",
               external=False) -> Path:
    """image (1,3,32,32) -> Reshape -> remamber::SelectiveScan (3 channels, G=1, N=1) -> y."""
    inits = [numpy_helper.from_array(np.array([1, 3, LENGTH], np.int64), "shape_u"),
             numpy_helper.from_array(-np.ones((3, 1), np.float32), "A"),
             numpy_helper.from_array(np.full((1, 1, 1, LENGTH), 0.5, np.float32), "BC"),
             numpy_helper.from_array(np.ones(3, np.float32), "D"),
             numpy_helper.from_array(np.zeros(3, np.float32), "bias")]
    nodes = [helper.make_node("Reshape", ["image", "shape_u"], ["u"])]
    kwargs = {k: v for k, v in {**GOOD_ATTRS, **(attrs or {})}.items() if k not in drop}
    if scan:
        nodes.append(helper.make_node(op, ["u", "u", "A", "BC", "BC", "D", "bias"], ["y"], domain="remamber",
                                      name="scan0", **kwargs))
    else:
        nodes.append(helper.make_node("Relu", ["u"], ["y"]))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, SIDE, SIDE])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, LENGTH])], inits)
    opsets = [helper.make_opsetid("", 20)] + ([helper.make_opsetid("remamber", domain_version)] if scan else [])
    model = helper.make_model(graph, opset_imports=opsets)
    if external:
        onnx.save(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                  location=path.name + ".data", size_threshold=0)
    else:
        onnx.save(model, str(path))
    return path


BAD_GRAPHS = {
    # name: (tiny_graph kwargs, text the refusal must contain)
    "misspelt-attribute": (dict(attrs={"delta_softplsu": 0}, drop=("delta_softplus",)),
                           "'delta_softplsu', which the op does not declare (did you mean 'delta_softplus'?)"),
    "extra-attribute": (dict(attrs={"chunk_size": 64}), "'chunk_size', which the op does not declare"),
    "attribute-type": (dict(attrs={"delta_softplus": 1.0}), "delta_softplus is FLOAT, the op declares INT"),
    "plugin-version": (dict(attrs={"plugin_version": "2"}), "plugin_version is '2', the plugin's is '1'"),
    "plugin-namespace": (dict(attrs={"plugin_namespace": ""}), "plugin_namespace is '', the plugin's is 'remamber'"),
    "domain-v2": (dict(domain_version=2), "remamber domain at version 2"),
    "unknown-op": (dict(op="SelectiveScna"), "unknown op remamber::SelectiveScna (did you mean SelectiveScan?)"),
    "no-scan": (dict(scan=False), "has no remamber scan node"),
}


def test_good_graph_passes(tmp_path):
    model = check_graph(tiny_graph(tmp_path / "ok.onnx"))
    assert [n.op_type for n in model.graph.node] == ["Reshape", "SelectiveScan"]
    check_graph(tiny_graph(tmp_path / "ext.onnx", external=True))  # external data beside it


@pytest.mark.parametrize("name", sorted(BAD_GRAPHS))
def test_bad_graph_refused(tmp_path, name):
    kwargs, message = BAD_GRAPHS[name]
    path = tiny_graph(tmp_path / f"{name}.onnx", **kwargs)
    with pytest.raises(GraphError) as exc:
        check_graph(path)
    assert message in str(exc.value)
    assert "\n" not in str(exc.value)


def test_no_scan_allowed_when_asked(tmp_path):
    check_graph(tiny_graph(tmp_path / "plain.onnx", scan=False), allow_no_scan=True)


def test_allowed_attributes_come_from_the_registered_schema(tmp_path):
    """Every attribute the SelectiveScan OpSchema declares is accepted, so a schema change is picked up."""
    from remamber.export import scan_onnx

    scan_onnx.register_schema()
    declared = onnx.defs.get_schema(scan_onnx.OP_TYPE, scan_onnx.OP_VERSION, scan_onnx.DOMAIN).attributes
    assert {"delta_softplus", "has_D", "has_delta_bias", "plugin_namespace", "plugin_version"} <= set(declared)
    check_graph(tiny_graph(tmp_path / "all.onnx"))


def _files(tmp_path: Path, name: str) -> Path:
    good = tiny_graph(tmp_path / "good.onnx")
    path = tmp_path / name
    if name == "empty.onnx":
        path.write_bytes(b"")
    elif name == "random.onnx":
        path.write_bytes(np.random.default_rng(0).bytes(4096))
    elif name == "truncated.onnx":
        path.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    elif name == "text.onnx":
        path.write_text("not a model\n")
    elif name == "missing-data.onnx":
        tiny_graph(path, external=True)
        (tmp_path / "missing-data.onnx.data").unlink()
    return path


@pytest.mark.parametrize("name,message", [
    ("empty.onnx", "is empty (0 bytes)"),
    ("random.onnx", "is not a readable ONNX file"),
    ("truncated.onnx", "ONNX"),
    ("text.onnx", "ONNX"),
    ("missing-data.onnx", "external data file(s) ['missing-data.onnx.data'] are not beside it"),
    ("absent.onnx", "does not exist"),
])
@pytest.mark.parametrize("command", ["build-engine", "compare"])
def test_cli_refuses_unusable_files_before_work(tmp_path, capsys, command, name, message):
    path = _files(tmp_path, name)
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main([command, str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"remamber-deploy {command}: error:") and message in err, err
    assert "Traceback" not in err and err.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written


@pytest.mark.parametrize("name", ["misspelt-attribute", "domain-v2", "no-scan"])
@pytest.mark.parametrize("command", ["build-engine", "compare"])
def test_cli_runs_the_graph_checks(tmp_path, capsys, command, name):
    kwargs, message = BAD_GRAPHS[name]
    path = tiny_graph(tmp_path / f"{name}.onnx", **kwargs)
    assert main([command, str(path)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


@pytest.fixture(scope="module")
def rtx():
    """TensorRT-RTX with the plugin (CI installs both); engines are never faked."""
    from remamber import native
    from remamber.errors import NativeLibraryError
    from remamber.export import engine_builder

    if importlib.util.find_spec("tensorrt_rtx") is None:
        pytest.skip("tensorrt_rtx is not installed (pip install tensorrt-rtx-cu13==1.7.1.116)")
    try:
        native.library_path("trt")
    except NativeLibraryError as exc:
        pytest.skip(f"TensorRT plugin library missing: {exc}")
    fl = engine_builder.TrtFlavour("tensorrt_rtx")
    fl.preflight()
    return fl


def test_no_scan_graph_builds_only_when_allowed_and_claims_no_plugin(rtx, tmp_path, capsys):
    path = tiny_graph(tmp_path / "plain.onnx", scan=False)
    engine = tmp_path / "plain.engine"
    assert main(["build-engine", str(path), "-o", str(engine), "--quiet"]) == 2
    assert not engine.exists()
    capsys.readouterr()
    assert main(["build-engine", str(path), "-o", str(engine), "--quiet", "--allow-no-scan"]) == 0
    assert "plugin unused" in capsys.readouterr().out
    side = json.loads(Path(f"{engine}.json").read_text())
    assert side["plugin"] is None and side["scan_nodes"] == 0


def test_good_graph_builds_and_sidecar_names_the_plugin(rtx, tmp_path):
    from remamber.export import engine_builder

    result = engine_builder.build_engine(tiny_graph(tmp_path / "ok.onnx"), tmp_path / "ok.engine", flavour=rtx,
                                         progress=False)
    assert result.sidecar["plugin"]["name"] == "remamber::SelectiveScan" and result.sidecar["scan_nodes"] == 1
    assert (tmp_path / "ok.engine").read_bytes()[:4] in (b"vtrt", b"ftrt")


def test_wrong_plugin_library_says_why(rtx, tmp_path, monkeypatch):
    """The ONNX Runtime library (or any non-plugin file) as the TensorRT plugin: the reason, not
    "see the TensorRT log above" with nothing above."""
    from remamber import native
    from remamber.errors import NativeLibraryError
    from remamber.export import engine_builder

    text = tmp_path / "libfake.so"
    text.write_text("not a library")
    cases = [(text, "not a shared library")]
    try:
        cases.append((native.library_path("ort"), "exports none of getCreators"))
    except NativeLibraryError:
        pass  # the ORT library is not built: the text file case still runs
    for lib, reason in cases:
        monkeypatch.setenv("REMAMBER_TRT_PLUGIN_LIB", str(lib))
        with pytest.raises(NativeLibraryError) as exc:
            engine_builder.build_engine(tiny_graph(tmp_path / "ok.onnx"), tmp_path / "e.engine", flavour=rtx,
                                        progress=False)
        assert reason in str(exc.value) and "log above" not in str(exc.value)
