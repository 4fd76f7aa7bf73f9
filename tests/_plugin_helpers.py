"""Shared harness of the TensorRT plugin tests (tests/test_trt_plugin.py: SelectiveScan,
tests/test_ss2d_trt_plugin.py: SS2DScan), both run in TensorRT-RTX on the CPU.

Why one module: both tests load libremamber_trt_plugin.so, parse hand-built ONNX graphs and build
serialized engines with an optimization profile, call a creator's createPlugin with PluginFields, and
read the plugin's messages from TensorRT's log or stderr; only the graphs, the profile ranges and the
expected messages differ.

TensorRT-RTX work runs in a subprocess (this file run as a script), because a broken TensorRT-RTX
setup aborts the whole process (see scripts/fix_trt_rtx.sh) and must not take pytest down with it:

    python tests/_plugin_helpers.py build  <plugin.so> '{"models": [...], "creators": [...], "profile": {...}}'
    python tests/_plugin_helpers.py create <plugin.so> '{"creator": "SS2DScan", "node": "ss2d0", "fields": {...}}'

Each prints one line `RESULT {json}`. Engines are never deserialized or run: that needs a GPU.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

import pytest

PLUGIN_NAMESPACE = "remamber"
PLUGIN_VERSION = "1"


# ---- subprocess side --------------------------------------------------------------------------------

def _recording_logger(trt):
    """A TensorRT-RTX logger that keeps every message, so results can carry the builder's log."""

    class Logger(trt.ILogger):
        def __init__(self):
            super().__init__()
            self.lines = []

        def log(self, severity, msg):
            self.lines.append(f"[{severity.name}] {msg}")

    return Logger()


def _profile_range(profile: dict, axis: int, rank: int) -> list[int]:
    """[min, opt, max] of a dynamic axis: "batch" for axis 0, "last" for the last, "other" otherwise."""
    if axis == 0:
        return profile["batch"]
    return profile["last"] if axis == rank - 1 else profile["other"]


def build_engines(plugin_path: str, model_paths: list[str], creators: list[str], profile: dict) -> list[dict]:
    """Parse each model and build a serialized engine with one optimization profile (subprocess side)."""
    import tensorrt_rtx as trt

    logger = _recording_logger(trt)
    os.environ["REMAMBER_TRT_PLUGIN_LIB"] = plugin_path
    from remamber.native import load_trt_plugin

    registry = load_trt_plugin(trt)  # raises NativeLibraryError if TensorRT refuses the library
    found = {name: registry.get_creator(name, PLUGIN_VERSION, PLUGIN_NAMESPACE) is not None for name in creators}
    results = []
    for path in model_paths:
        logger.lines = []
        record = {"model": path, "creators": found, "parsed": False, "engine_bytes": 0}
        builder = trt.Builder(logger)
        network = builder.create_network(0)
        parser = trt.OnnxParser(network, logger)
        with open(path, "rb") as f:
            record["parsed"] = bool(parser.parse(f.read()))
        record["parser_errors"] = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        if record["parsed"]:
            config = builder.create_builder_config()
            opt_profile = builder.create_optimization_profile()
            for i in range(network.num_inputs):
                tensor = network.get_input(i)
                shape = list(tensor.shape)
                ranges = [[d, d, d] if d != -1 else _profile_range(profile, axis, len(shape))
                          for axis, d in enumerate(shape)]
                opt_profile.set_shape(tensor.name, *([r[k] for r in ranges] for k in range(3)))
            config.add_optimization_profile(opt_profile)
            engine = builder.build_serialized_network(network, config)
            record["engine_bytes"] = 0 if engine is None else int(engine.nbytes)
            record["layers"] = [network.get_layer(i).type.name for i in range(network.num_layers)]
        record["log"] = logger.lines
        results.append(record)
    return results


def create_plugin(plugin_path: str, creator_name: str, node: str, fields: dict) -> dict:
    """createPlugin through the registry's creator, fields as TensorRT passes ONNX attributes (subprocess side):
    ints as INT32, strings as CHAR bytes."""
    import numpy as np
    import tensorrt_rtx as trt

    logger = _recording_logger(trt)
    trt.Builder(logger)  # makes `logger` the logger the plugin library finds
    registry = trt.get_plugin_registry()
    registry.load_library(plugin_path)
    creator = registry.get_creator(creator_name, PLUGIN_VERSION, PLUGIN_NAMESPACE)
    record = {"found_creator": creator is not None, "created": False, "log": []}
    if creator is not None:
        record["field_names"] = sorted(f.name for f in creator.field_names)

        def field(name, value):
            if isinstance(value, str):
                return trt.PluginField(name, np.frombuffer(value.encode(), dtype=np.int8), trt.PluginFieldType.CHAR)
            return trt.PluginField(name, np.array([value], dtype=np.int32), trt.PluginFieldType.INT32)

        fc = trt.PluginFieldCollection([field(k, v) for k, v in fields.items()])
        record["created"] = creator.create_plugin(node, fc, trt.TensorRTPhase.BUILD) is not None
    record["log"] = logger.lines
    return record


if __name__ == "__main__":  # subprocess entry: python _plugin_helpers.py <mode> <plugin> <json args>
    mode, plugin, arg = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    if mode == "build":
        out = build_engines(plugin, arg["models"], arg["creators"], arg["profile"])
    else:
        out = create_plugin(plugin, arg["creator"], arg["node"], arg["fields"])
    print("RESULT " + json.dumps(out))
    sys.exit(0)


# ---- pytest side ----------------------------------------------------------------------------------

def trt_rtx_plugin_path() -> str:
    """Plugin library path, or skip with the reason TensorRT-RTX cannot be exercised here."""
    import importlib.util

    spec = importlib.util.find_spec("tensorrt_rtx_libs")
    if spec is None or importlib.util.find_spec("tensorrt_rtx") is None:
        pytest.skip("tensorrt_rtx is not installed (pip install tensorrt-rtx-cu13==1.7.1.116)")
    libdir = pathlib.Path(list(spec.submodule_search_locations)[0])
    if not (libdir / "libtensorrt_rtx.so").exists():
        pytest.skip(
            f"{libdir}/libtensorrt_rtx.so is missing: TensorRT-RTX's ONNX parser would abort the process; "
            "run `bash scripts/fix_trt_rtx.sh`"
        )
    from remamber import native
    from remamber.errors import NativeLibraryError

    try:
        return str(native.library_path("trt"))
    except NativeLibraryError as exc:
        pytest.skip(f"TensorRT plugin library not built: {exc}")


def run_subprocess(mode: str, plugin: str, arg) -> tuple[object, str]:
    """Runs this file as a script; returns its RESULT and its stderr.

    The plugin logs through TensorRT's logger when the logger finder yields one; TensorRT-RTX 1.7's
    yields none, so its messages land on stderr. Both count as the captured log.
    """
    proc = subprocess.run(
        [sys.executable, __file__, mode, plugin, json.dumps(arg)],
        capture_output=True, text=True, timeout=300,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, (
        f"TensorRT-RTX subprocess failed (rc {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    )
    return json.loads(lines[-1][len("RESULT "):]), proc.stderr


@pytest.fixture(scope="module")
def plugin_path():
    """The plugin library under test (a test module imports this fixture)."""
    return trt_rtx_plugin_path()


@pytest.fixture(scope="module")
def workdir():
    """A temporary folder for the test graphs (a test module imports this fixture)."""
    d = tempfile.mkdtemp(prefix="remamber_trt_test_")
    yield pathlib.Path(d)
    shutil.rmtree(d, ignore_errors=True)


def plugin_runner(creator: str, node: str, creators: list[str], profile: dict):
    """run(mode, plugin, arg) for one plugin: "build" with arg = model paths (engines built with `profile`,
    `creators` looked up), "create" with arg = fields (createPlugin of `creator` for node `node`)."""

    def run(mode: str, plugin: str, arg):
        if mode == "build":
            return run_subprocess(mode, plugin, {"models": arg, "creators": creators, "profile": profile})
        return run_subprocess(mode, plugin, {"creator": creator, "node": node, "fields": arg})

    return run


def write_model(workdir: pathlib.Path, name: str, data: bytes) -> str:
    path = workdir / f"{name}.onnx"
    path.write_bytes(data)
    return str(path)


def build_each(plugin: str, paths: dict[str, str], creators: list[str], profile: dict) -> dict[str, dict]:
    """One subprocess per model, so each one's stderr is its own (malformed graphs)."""
    out = {}
    for name, path in paths.items():
        (result,), stderr = run_subprocess(
            "build", plugin, {"models": [path], "creators": creators, "profile": profile})
        result["stderr"] = stderr
        out[name] = result
    return out


def assert_built(r: dict) -> None:
    assert r["parsed"], f"parse failed: {r['parser_errors']}\n" + "\n".join(r["log"][-20:])
    assert r["layers"] == ["PLUGIN_V3"], r["layers"]
    assert r["engine_bytes"] > 0, "no serialized engine:\n" + "\n".join(r["log"][-20:])


def assert_refused_with_message(r: dict, name: str, prefix: str, expected: str) -> None:
    """No engine, and the captured log carries the plugin's own message (node prefix + problem)."""
    assert not (r["parsed"] and r["engine_bytes"] > 0), f"{name}: an engine was built from a malformed node"
    log = "\n".join(r["log"] + r["parser_errors"] + [r.get("stderr", "")])
    assert prefix in log and expected in log, f"{name}: plugin message missing from the log:\n{log[-3000:]}"
