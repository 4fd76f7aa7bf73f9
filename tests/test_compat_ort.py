"""ONNX Runtime floor: the custom-op library runs in onnxruntime 1.17.0 and is refused by 1.16.3.

scripts/check_ort_floor.py installs each wheel into a throwaway venv (cached under the temp dir) and
runs the op there against a float64 NumPy reference. Needs PyPI: without it the tests skip, except
when REMAMBER_REQUIRE_COMPAT=1 (set by .ci/run), where a missing prerequisite is a failure.
"""

from __future__ import annotations

import importlib.util
import json
import os
import pathlib
import re
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "check_ort_floor.py"


def _script():
    spec = importlib.util.spec_from_file_location("check_ort_floor", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _missing(reason: str):
    if os.environ.get("REMAMBER_REQUIRE_COMPAT") == "1":
        pytest.fail(f"REMAMBER_REQUIRE_COMPAT=1 and a prerequisite is missing: {reason}")
    pytest.skip(reason)


def _library() -> str:
    from remamber import native
    from remamber.errors import NativeLibraryError

    try:
        return str(native.library_path("ort"))
    except NativeLibraryError as exc:
        _missing(f"ONNX Runtime custom-op library not built: {exc}")


def _check(*args) -> dict:
    proc = subprocess.run([sys.executable, str(SCRIPT), "--lib", _library(), *args],
                          capture_output=True, text=True, timeout=900)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert lines, f"no result (rc {proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    result = json.loads(lines[-1][len("RESULT "):])
    if proc.returncode == 3:
        _missing(result.get("error", "prerequisite missing"))
    assert proc.returncode == 0 and result["passed"], json.dumps(result, indent=1)
    return result


def test_floor_constants_agree():
    """The script's floor, the header's kOrtApiFloor and the library's message name the same release."""
    mod = _script()
    header = (REPO / "plugins" / "ort" / "ort_api_floor.h").read_text()
    api = int(re.search(r"kOrtApiFloor = (\d+);", header).group(1))
    release = re.search(r'kOrtFloorRelease = "([\d.]+)";', header).group(1)
    assert mod.ORT_FLOOR.startswith(f"1.{api}.") and release == f"1.{api}"
    assert mod.REFUSAL_TEXT == f"needs ONNX Runtime {release} or newer"
    below = tuple(int(x) for x in mod.ORT_BELOW_FLOOR.split("."))
    assert below[:2] == (1, api - 1)


def test_reference_matches_hand_computed_values():
    """The float64 reference of the script, checked on one channel by hand (N = 1, L = 2)."""
    import numpy as np

    ref = _script().reference_scan
    u = np.array([[[1.0, 2.0]]]); delta = np.array([[[0.0, 30.0]]]); A = np.array([[-1.0]])
    B = np.array([[[[0.5, 1.0]]]]); C = np.array([[[[2.0, 3.0]]]]); D = np.array([0.25])
    # t0: dt = log 2, h = log2 * 0.5 * 1; y = 2h + 0.25
    h0 = np.log(2.0) * 0.5
    # t1: dt = 30 (above the softplus threshold), h = exp(-30) h0 + 30 * 1 * 2; y = 3h + 0.5
    h1 = np.exp(-30.0) * h0 + 60.0
    np.testing.assert_allclose(ref(u, delta, A, B, C, D), [[[2 * h0 + 0.25, 3 * h1 + 0.5]]], rtol=1e-12)


def test_op_runs_in_oldest_supported_onnxruntime():
    result = _check()  # default: the floor release, the op must run
    assert result["loaded_version"] == _script().ORT_FLOOR
    assert set(result["cases"]) == set(_script().CASES) | set(_script().SS2D_CASES)
    for name, case in result["cases"].items():
        assert case["ok"] and case["dtype"] == "float32", (name, case)


def test_older_onnxruntime_refuses_the_library_with_its_message():
    mod = _script()
    result = _check("--ort-version", mod.ORT_BELOW_FLOOR, "--expect", "refused")
    assert not result["registered"]
    assert f"the runtime is {mod.ORT_BELOW_FLOOR}" in result["register_error"]


@pytest.mark.parametrize("layout,height,width", [(0, 3, 4), (1, 1, 9)])
def test_ss2d_reference_matches_the_project_reference(layout, height, width):
    """The script's NumPy SS2DScan reference (written from the contract's direction table) agrees with
    the project's own float64 reference (remamber.ops.ss2d_scan_reference), written separately."""
    import numpy as np
    import torch

    from remamber.ops import ss2d_scan_reference

    rng = np.random.default_rng(7)
    batch, dim, nstate = 2, 3, 2
    u = rng.standard_normal((batch, dim, height, width))
    delta = 0.5 * rng.standard_normal((batch, 4 * dim, height, width))
    A = -np.exp(rng.standard_normal((4 * dim, nstate)))
    B = rng.standard_normal((batch, 4, nstate, height, width))
    C = rng.standard_normal((batch, 4, nstate, height, width))
    D = rng.standard_normal(4 * dim)
    bias = 0.1 * rng.standard_normal(4 * dim)
    ours = _script().reference_ss2d(u, delta, A, B, C, D, bias, layout=layout)
    t = [torch.from_numpy(x) for x in (u, delta, A, B, C, D, bias)]
    theirs = ss2d_scan_reference(*t, delta_softplus=True, layout=layout).numpy()
    np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-10)
