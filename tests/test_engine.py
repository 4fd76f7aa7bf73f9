"""``remamber-deploy build-engine``: TensorRT-RTX builds the exported graphs on CPU with the plugin,
fp32 and fp16; clear errors for corrupted scan nodes, missing libraries and version mismatches.

Skips (with the reason) when tensorrt_rtx or the plugin library is missing: engines are never faked.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import onnx
import pytest

from remamber.errors import InputError, NativeLibraryError
from remamber.export import engine_builder, scan_onnx
from remamber.export.engine_builder import BatchRange, EngineBuildError, PluginVersionError

from test_export import exported, is_dynamic


@pytest.fixture(scope="module")
def rtx():
    if importlib.util.find_spec("tensorrt_rtx") is None:
        pytest.skip("tensorrt_rtx is not installed (pip install tensorrt-rtx-cu13==1.7.1.116)")
    from remamber import native

    try:
        native.library_path("trt")
    except NativeLibraryError as exc:
        pytest.skip(f"TensorRT plugin library missing: {exc}")
    fl = engine_builder.TrtFlavour("tensorrt_rtx")
    fl.preflight()  # a missing libtensorrt_rtx.so link is a setup error, not a skip
    return fl


# both variants, both resolutions, both precisions, the dynamic-batch graph; four builds keep CI time down
@pytest.mark.parametrize("variant,resolution,precision", [
    ("conv", 480, "fp32"), ("mamba", 1024, "fp32"), ("conv", 480, "fp16"), ("mamba", 1024, "fp16"),
])
def test_rtx_builds_exported_graphs(rtx, tmp_path, variant, resolution, precision):
    onnx_path = exported(variant, resolution, precision).path
    engine = tmp_path / "model.engine"
    cache = tmp_path / "timing.cache"
    dynamic = is_dynamic(variant, resolution, precision)
    batch = BatchRange(1, 2, 4) if dynamic else BatchRange(1, 1, 1)
    result = engine_builder.build_engine(onnx_path, engine, batch=batch, timing_cache=cache, flavour=rtx, progress=False)
    data = engine.read_bytes()
    assert len(data) > 10_000
    side = json.loads(Path(result.sidecar_path).read_text())
    assert side["tensorrt_flavour"] == "tensorrt_rtx" and side["tensorrt_version"] == rtx.version
    assert side["plugin"]["version"] == "1" and side["plugin"]["name"] == "remamber::SelectiveScan"
    assert side["precision"] == precision and side["graph_precision"] == precision
    assert side["strongly_typed"] is True
    assert side["resolution"] == resolution and side["batch"] == {"min": 1, "opt": batch.opt, "max": batch.max}
    assert side["onnx_sha256"] == engine_builder.file_sha256(onnx_path)
    assert side["build_seconds"] > 0 and side["host"]["hostname"]
    assert cache.is_file() and cache.stat().st_size > 0
    cmd = result.trtexec
    assert cmd.startswith(f"trtexec --onnx={onnx_path} --saveEngine={engine} --dynamicPlugins=")
    if dynamic:
        assert f"--minShapes=image:1x3x{resolution}x{resolution},input_ids:1x20,attention_mask:1x20" in cmd
        assert f"--maxShapes=image:4x3x{resolution}x{resolution}" in cmd
    else:
        assert "Shapes=" not in cmd  # static shapes need no profile
        with pytest.raises(InputError, match="static batch of 1"):
            engine_builder.build_engine(onnx_path, tmp_path / "x.engine", batch=BatchRange(1, 2, 4), flavour=rtx,
                                        progress=False)
    # no temporary files left beside the outputs
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.engine", "model.engine.json", "timing.cache"]


def _corrupt(src: Path, dst: Path, how: str) -> Path:
    model = onnx.load(str(src))
    node = scan_onnx.scan_nodes(model)[0]
    if how == "attribute":
        for a in node.attribute:
            if a.name == "delta_softplus":
                a.i = 2
    elif how == "rank":
        unsq = onnx.helper.make_node("Unsqueeze", [node.input[0], "corrupt_axes"], ["corrupt_u"], name="corrupt")
        model.graph.initializer.append(onnx.numpy_helper.from_array(__import__("numpy").array([3], dtype="int64"), "corrupt_axes"))
        idx = list(model.graph.node).index(node)
        model.graph.node.insert(idx, unsq)
        node.input[0] = "corrupt_u"
    onnx.save(model, str(dst))
    return dst


@pytest.mark.parametrize("how,message", [
    ("attribute", "delta_softplus"),
    ("rank", "rank"),
])
def test_corrupted_scan_node_fails_with_plugin_message(rtx, tmp_path, capsys, how, message):
    from remamber.cli import main

    bad = _corrupt(exported("conv", 480).path, tmp_path / f"bad_{how}.onnx", how)
    with pytest.raises(EngineBuildError) as exc:
        engine_builder.build_engine(bad, tmp_path / "bad.engine", flavour=rtx, progress=False)
    text = str(exc.value)
    assert "remamber::SelectiveScan node" in text and message in text, text
    assert not (tmp_path / "bad.engine").exists()
    # the CLI turns it into a message and exit status 2, not a crash
    assert main(["build-engine", str(bad), "-o", str(tmp_path / "bad.engine"), "--flavour", "tensorrt_rtx", "--quiet"]) == 2
    assert "remamber::SelectiveScan node" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"bad_{how}.onnx"]


def test_weak_fp16_refused_on_rtx(rtx, tmp_path):
    with pytest.raises(InputError, match="export --precision fp16"):
        engine_builder.build_engine(exported("conv", 480).path, tmp_path / "e.engine", precision="fp16",
                                    flavour=rtx, progress=False)


def test_missing_plugin_library(rtx, tmp_path, monkeypatch):
    monkeypatch.setenv("REMAMBER_TRT_PLUGIN_LIB", str(tmp_path / "nope.so"))
    with pytest.raises(NativeLibraryError, match="REMAMBER_TRT_PLUGIN_LIB"):
        engine_builder.build_engine(exported("conv", 480).path, tmp_path / "e.engine", flavour=rtx, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_plugin_creator_version_mismatch(rtx):
    """find_creator refuses a registry whose SelectiveScan creator is not version 1."""
    class Creator:
        name, plugin_namespace = "SelectiveScan", "remamber"

        def __init__(self, version):
            self.plugin_version = version

    class Registry:
        def __init__(self, *versions):
            self.all_creators = [Creator(v) for v in versions]

    with pytest.raises(PluginVersionError, match=r"version\(s\) \['2'\] found"):
        rtx.find_creator(Registry("2"))
    assert rtx.find_creator(Registry("2", "1")).plugin_version == "1"
    # a library with only the SelectiveScan creator cannot serve a fused graph: refused before parsing
    with pytest.raises(NativeLibraryError, match="no remamber::SS2DScan creator"):
        rtx.find_creator(Registry("1"), "SS2DScan")
    # and the real registry, with our library loaded, has version 1 of both scan plugins
    _, creator = rtx.load_plugin()
    assert creator.plugin_version == "1"
    _, creator = rtx.load_plugin(("SS2DScan", "SelectiveScan"))
    assert creator.name == "SS2DScan" and creator.plugin_version == "1"


def test_sidecar_version_mismatch(rtx, tmp_path):
    from remamber.export.onnx_export import export_onnx
    from test_export import _OptionalInputs

    small = export_onnx(_OptionalInputs().eval(), tmp_path / "small.onnx", 32, progress=False).path
    result = engine_builder.build_engine(small, tmp_path / "e.engine", flavour=rtx, progress=False)
    assert engine_builder.check_engine_sidecar(result.engine_path, rtx)["plugin"]["version"] == "1"
    side = Path(result.sidecar_path)
    meta = json.loads(side.read_text())
    meta["plugin"]["version"] = "2"
    side.write_text(json.dumps(meta))
    with pytest.raises(PluginVersionError, match="plugin version '2'"):
        engine_builder.check_engine_sidecar(result.engine_path, rtx)


def test_missing_rtx_link_is_reported(monkeypatch, tmp_path):
    """Without libtensorrt_rtx.so the parser would abort the process; preflight says what to run."""
    if importlib.util.find_spec("tensorrt_rtx") is None:
        pytest.skip("tensorrt_rtx is not installed")
    import ctypes

    fl = engine_builder.TrtFlavour("tensorrt_rtx")
    real_find_spec = importlib.util.find_spec

    class Spec:
        submodule_search_locations = [str(tmp_path)]

    monkeypatch.setattr(engine_builder.importlib.util, "find_spec",
                        lambda name, *a: Spec() if name == "tensorrt_rtx_libs" else real_find_spec(name, *a))

    def no_lib(name, *a, **k):
        raise OSError("not found")

    monkeypatch.setattr(ctypes, "CDLL", no_lib)
    with pytest.raises(NativeLibraryError, match="scripts/fix_trt_rtx.sh"):
        fl.preflight()


def test_batch_range_parsing():
    assert BatchRange.parse("4") == BatchRange(4, 4, 4)
    assert BatchRange.parse("1,2,8") == BatchRange(1, 2, 8)
    for bad in ("0", "4,2,8", "a", "1,2"):
        with pytest.raises(InputError):
            BatchRange.parse(bad)
