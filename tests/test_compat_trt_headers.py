"""TensorRT header matrix: the plugins' host code compiles (-Werror, deprecated APIs as errors)
against every TensorRT header set a package registry gives us (scripts/trt_header_matrix.py).

Today that is one set, TensorRT 10.14.1, shipped identically by four kernel-lens releases on PyPI.
Set REMAMBER_TRT_HEADER_DIRS=DIR:DIR to add your own include/ folders (TensorRT installs, or the
NVIDIA/TensorRT release branches). Without PyPI the registry test skips, except when
REMAMBER_REQUIRE_COMPAT=1 (set by .ci/run), where that is a failure.
"""

from __future__ import annotations

import importlib.util
import json
import os
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "trt_header_matrix.py"


def _script():
    spec = importlib.util.spec_from_file_location("trt_header_matrix", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _missing(reason: str):
    if os.environ.get("REMAMBER_REQUIRE_COMPAT") == "1":
        pytest.fail(f"REMAMBER_REQUIRE_COMPAT=1 and a prerequisite is missing: {reason}")
    pytest.skip(reason)


def test_header_version_parsing(tmp_path):
    mod = _script()
    old = tmp_path / "old"; old.mkdir()
    (old / "NvInferVersion.h").write_text("#define NV_TENSORRT_MAJOR 10 //!< x\n#define NV_TENSORRT_MINOR 3\n"
                                          "#define NV_TENSORRT_PATCH 0\n")
    new = tmp_path / "new"; new.mkdir()
    (new / "NvInferVersion.h").write_text("#define TRT_MAJOR_ENTERPRISE 11\n#define TRT_MINOR_ENTERPRISE 1\n"
                                          "#define TRT_PATCH_ENTERPRISE 0\n#define NV_TENSORRT_MAJOR TRT_MAJOR_ENTERPRISE\n")
    assert mod.header_version(old) == "10.3.0"
    assert mod.header_version(new) == "11.1.0"


def test_plugins_compile_against_every_registry_header_set():
    proc = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=900)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert lines, f"no result (rc {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    result = json.loads(lines[-1][len("RESULT "):])
    if proc.returncode == 3:
        _missing("; ".join(result["problems"]))
    assert proc.returncode == 0 and result["passed"], proc.stdout[-6000:]
    assert not result["problems"], result["problems"]  # every kernel-lens release was fetched
    sources = {s for entry in result["sets"] for s in entry["sources"]}
    assert {f"PyPI kernel-lens {v}" for v in _script().KERNEL_LENS_WITH_HEADERS} <= sources
    assert any(entry["version"].startswith("10.") for entry in result["sets"])
    assert "plugins/selectiveScanPlugin/selectiveScanPlugin.cpp" in result["units"]


def test_deprecated_tensorrt_api_is_an_error(tmp_path):
    """Negative control: the matrix's flags turn a TensorRT-10-deprecated API (removed in 11) into an error."""
    mod = _script()
    include = REPO / "third_party" / "tensorrt" / "include"
    cuda = mod.cuda_include()
    if not (include / "NvInferRuntime.h").is_file() or cuda is None:
        _missing("TensorRT headers (scripts/fetch_native_deps.sh) or the CUDA include folder are missing")
    unit = tmp_path / "uses_deprecated.cpp"
    unit.write_text('#include <NvInferRuntime.h>\nint f() { return static_cast<int>(nvinfer1::PluginVersion::kV2); }\n')
    ok, err = mod.compile_unit("g++", unit, include, cuda)
    assert not ok and "deprecated" in err, err
    unit.write_text('#include <NvInferRuntime.h>\nint f() { return static_cast<int>(nvinfer1::PluginCapabilityType::kCORE); }\n')
    ok, err = mod.compile_unit("g++", unit, include, cuda)
    assert ok, err
