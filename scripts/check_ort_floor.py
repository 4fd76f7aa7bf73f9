#!/usr/bin/env python3
"""ONNX Runtime floor check: load libremamber_ort_ops.so into an old onnxruntime wheel and run the op.

The library asks ONNX Runtime for C API 17 (plugins/ort/ort_api_floor.h), so it claims to work
with onnxruntime 1.17 and newer. This script proves both sides of that claim in a throwaway virtual
environment per onnxruntime version (python -m venv, then pip install --no-deps onnxruntime==X and
numpy<2; nothing of the project's own environment is used there):

    python scripts/check_ort_floor.py                       # 1.17.0: the op must run and match
    python scripts/check_ort_floor.py --ort-version 1.16.3 --expect refused

"runs": two remamber::SelectiveScan graphs (fp32 with D and delta_bias, large enough that the CPU
kernel splits its rows over ORT's thread pool; fp16 activations with N = 3 and only D) and two
remamber::SS2DScan graphs (cross layout with H != W, fp32; bidi layout, fp16, no delta_bias) are run
and compared with float64 NumPy implementations of the op contracts (DESIGN.md,
plugins/ss2dScanPlugin/README.md) written here, not with the library. "refused": registering the library must fail with the library's own message
naming the minimum version (no crash, no silent load).

The project environment (this script's parent process) writes the graphs with the onnx package;
the old onnxruntime runs them in the child process (`--child`), which imports only numpy and
onnxruntime. Exit status: 0 check passed, 1 check failed, 3 prerequisites missing (no library, or
the venv / wheel could not be installed, e.g. no access to PyPI). Output: one line `RESULT {json}`.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

ORT_FLOOR = "1.17.0"        # oldest onnxruntime the library supports (C API 17)
ORT_BELOW_FLOOR = "1.16.3"  # newest release below it: must refuse the library
REFUSAL_TEXT = "needs ONNX Runtime 1.17 or newer"
EXIT_PREREQ = 3

REPO = pathlib.Path(__file__).resolve().parent.parent
DEFAULT_LIB = REPO / "remamber" / "lib" / "libremamber_ort_ops.so"
DEFAULT_VENV_ROOT = pathlib.Path(tempfile.gettempdir()) / "remamber-ort-compat"

# SelectiveScan cases: name -> (activation dtype, batch, channels, groups, nstate, length, has_D, has_delta_bias)
CASES = {
    # 2 x 1024 rows of L = 64: the CPU kernel makes two tasks and calls KernelContext_ParallelFor.
    "fp32_D_bias_parallel": ("float32", 2, 1024, 4, 2, 64, True, True),
    "fp16_N3_D_only": ("float16", 1, 12, 3, 3, 40, True, False),
}
# SS2DScan cases: name -> (activation dtype, batch, dim, height, width, nstate, layout, has_D, has_delta_bias)
SS2D_CASES = {
    "ss2d_cross_fp32": ("float32", 2, 16, 5, 7, 1, 0, True, True),
    "ss2d_bidi_fp16_no_bias": ("float16", 1, 8, 1, 33, 2, 1, True, False),
}


# ---- parent side (project environment: onnx available) -------------------------------------------

def _write_case(workdir: pathlib.Path, name: str, spec, seed: int) -> None:
    import numpy as np

    dtype, batch, channels, groups, nstate, length, has_d, has_bias = spec
    rng = np.random.default_rng(seed)
    act = np.dtype(dtype)
    feeds = {
        "u": rng.standard_normal((batch, channels, length)).astype(act),
        "delta": (0.5 * rng.standard_normal((batch, channels, length))).astype(act),
        "A": -np.exp(rng.standard_normal((channels, nstate))).astype(np.float32),
        "B": rng.standard_normal((batch, groups, nstate, length)).astype(act),
        "C": rng.standard_normal((batch, groups, nstate, length)).astype(act),
    }
    _finish_case(workdir, name, "SelectiveScan", feeds, act, has_d, has_bias, channels, rng, (batch, channels, length), {})


def _write_ss2d_case(workdir: pathlib.Path, name: str, spec, seed: int) -> None:
    import numpy as np

    dtype, batch, dim, height, width, nstate, layout, has_d, has_bias = spec
    rng = np.random.default_rng(seed)
    act = np.dtype(dtype)
    feeds = {
        "u": rng.standard_normal((batch, dim, height, width)).astype(act),
        "delta": (0.5 * rng.standard_normal((batch, 4 * dim, height, width))).astype(act),
        "A": -np.exp(rng.standard_normal((4 * dim, nstate))).astype(np.float32),
        "B": rng.standard_normal((batch, 4, nstate, height, width)).astype(act),
        "C": rng.standard_normal((batch, 4, nstate, height, width)).astype(act),
    }
    _finish_case(workdir, name, "SS2DScan", feeds, act, has_d, has_bias, 4 * dim, rng, (batch, dim, height, width),
                 {"layout": layout})


def _finish_case(workdir, name, op_type, feeds, act, has_d, has_bias, param_rows, rng, y_shape, attrs) -> None:
    """Add the optional inputs, write the one-node graph (IR 8, what onnxruntime 1.17 reads) and its feeds."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper

    elem = {np.dtype("float32"): TensorProto.FLOAT, np.dtype("float16"): TensorProto.FLOAT16}[act]
    if has_d:
        feeds["D"] = rng.standard_normal(param_rows).astype(np.float32)
    if has_bias:
        feeds["delta_bias"] = (0.1 * rng.standard_normal(param_rows)).astype(np.float32)
    inputs = [helper.make_tensor_value_info(k, elem if v.dtype == act and k not in ("A", "D", "delta_bias")
                                            else TensorProto.FLOAT, list(v.shape)) for k, v in feeds.items()]
    node = helper.make_node(
        op_type, list(feeds), ["y"], domain="remamber", name=name, delta_softplus=1,
        has_D=int(has_d), has_delta_bias=int(has_bias), plugin_namespace="remamber", plugin_version="1", **attrs,
    )
    graph = helper.make_graph([node], name, inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(y_shape))])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("remamber", 1)])
    model.ir_version = 8  # what onnxruntime 1.17 reads (it refuses IR > 9)
    onnx.save(model, str(workdir / f"{name}.onnx"))
    np.savez(workdir / f"{name}.npz", **feeds)


def _venv_python(venv: pathlib.Path) -> pathlib.Path:
    return venv / "bin" / "python"


def ensure_venv(version: str, root: pathlib.Path) -> tuple[pathlib.Path | None, str]:
    """A venv holding onnxruntime==version and numpy<2 (reused when already complete)."""
    venv = root / f"onnxruntime-{version}"
    marker = venv / ".complete"
    if marker.is_file():
        return _venv_python(venv), "reused"
    root.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".onnxruntime-{version}-", dir=root))
    try:
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp)], check=True,
                       capture_output=True, text=True, timeout=120)
        # pip of the project environment installs into the throwaway interpreter (--python): no
        # ensurepip bootstrap, no dependency resolution beyond the two packages the check needs.
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "--python", str(_venv_python(tmp)), "install", "-q",
             "--disable-pip-version-check", "--no-deps", f"onnxruntime=={version}", "numpy<2"],
            capture_output=True, text=True, timeout=600,
        )
        if proc.returncode != 0:
            return None, f"pip install onnxruntime=={version} numpy<2 failed: {proc.stderr.strip()[-800:]}"
        (tmp / ".complete").write_text(version)
        if venv.exists():
            shutil.rmtree(venv, ignore_errors=True)
        os.replace(tmp, venv)  # complete venvs only appear under their final name
    except (subprocess.SubprocessError, OSError) as exc:
        return None, f"could not create the venv: {exc}"
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return _venv_python(venv), "created"


def run_check(version: str, expect: str, lib: pathlib.Path, root: pathlib.Path) -> tuple[int, dict]:
    result: dict = {"onnxruntime": version, "expect": expect, "library": str(lib)}
    if not lib.is_file():
        result["error"] = f"{lib} not found: build it with `bash scripts/build_native.sh`"
        return EXIT_PREREQ, result
    t0 = time.monotonic()
    python, how = ensure_venv(version, root)
    result["venv"] = how if python else None
    result["venv_seconds"] = round(time.monotonic() - t0, 1)
    if python is None:
        result["error"] = how
        return EXIT_PREREQ, result
    with tempfile.TemporaryDirectory(prefix="remamber-ort-floor-") as d:
        workdir = pathlib.Path(d)
        for i, (name, spec) in enumerate(CASES.items()):
            _write_case(workdir, name, spec, seed=100 + i)
        for i, (name, spec) in enumerate(SS2D_CASES.items()):
            _write_ss2d_case(workdir, name, spec, seed=200 + i)
        proc = subprocess.run([str(python), __file__, "--child", str(workdir), "--lib", str(lib)],
                              capture_output=True, text=True, timeout=300)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("CHILD ")]
    if proc.returncode != 0 or not lines:
        result["error"] = f"child exited {proc.returncode}: {proc.stdout[-1500:]} {proc.stderr[-1500:]}"
        return 1, result
    child = json.loads(lines[-1][len("CHILD "):])
    result.update(child)
    if expect == "runs":
        ok = child["registered"] and child["loaded_version"] == version and all(
            c["ok"] for c in child["cases"].values()) and len(child["cases"]) == len(CASES) + len(SS2D_CASES)
    else:
        ok = (not child["registered"]) and REFUSAL_TEXT in (child.get("register_error") or "")
    return (0 if ok else 1), result


# ---- child side (throwaway environment: numpy + old onnxruntime only) ------------------------------

def reference_scan(u, delta, A, B, C, D=None, delta_bias=None):
    """The op contract in float64 (DESIGN.md): dt = softplus(delta + bias) (threshold 20),
    h = exp(dt*A)*h + dt*B*u, y = C.h + D*u; channel c uses group c // (channels / G)."""
    import numpy as np

    u, delta, A, B, C = (np.asarray(x, dtype=np.float64) for x in (u, delta, A, B, C))
    batch, channels, length = u.shape
    groups, nstate = B.shape[1], A.shape[1]
    g_of_c = np.arange(channels) // (channels // groups)
    dt = delta + (0.0 if delta_bias is None else np.asarray(delta_bias, np.float64)[None, :, None])
    dt = np.where(dt > 20.0, dt, np.log1p(np.exp(np.minimum(dt, 20.0))))
    Bc, Cc = B[:, g_of_c], C[:, g_of_c]  # (batch, channels, nstate, length)
    h = np.zeros((batch, channels, nstate))
    y = np.empty((batch, channels, length))
    for t in range(length):
        h = np.exp(dt[:, :, t, None] * A[None]) * h + (dt[:, :, t] * u[:, :, t])[:, :, None] * Bc[:, :, :, t]
        y[:, :, t] = np.einsum("bcn,bcn->bc", h, Cc[:, :, :, t])
    if D is not None:
        y += np.asarray(D, np.float64)[None, :, None] * u
    return y


def reference_ss2d(u, delta, A, B, C, D=None, delta_bias=None, layout=0):
    """remamber::SS2DScan in float64 from the contract's direction table: direction k visits the
    row-major positions pos_k(t) (cross: row-major, column-major t = w*H + h, and both reversed;
    bidi: forward, forward, reversed, reversed), runs the SelectiveScan recurrence with direction k's
    parameters (rows k*D .. k*D+D-1) and B[:, k], C[:, k], and the four outputs are summed in place."""
    import numpy as np

    batch, dim, height, width = u.shape
    length = height * width
    t = np.arange(length)
    column_major = (t % height) * width + t // height
    forward = [t, column_major] if layout == 0 else [t, t]
    positions = forward + [p[::-1] for p in forward]
    u_seq = np.asarray(u, np.float64).reshape(batch, dim, length)
    delta_seq = np.asarray(delta, np.float64).reshape(batch, 4, dim, length)
    nstate = A.shape[1]
    B_seq = np.asarray(B, np.float64).reshape(batch, 4, nstate, length)
    C_seq = np.asarray(C, np.float64).reshape(batch, 4, nstate, length)
    y = np.zeros((batch, dim, length))
    for k, pos in enumerate(positions):
        rows = slice(k * dim, (k + 1) * dim)
        y[:, :, pos] += reference_scan(
            u_seq[:, :, pos], delta_seq[:, k][:, :, pos], A[rows],
            B_seq[:, k : k + 1][..., pos], C_seq[:, k : k + 1][..., pos],
            None if D is None else D[rows], None if delta_bias is None else delta_bias[rows])
    return y.reshape(batch, dim, height, width)


def child_main(workdir: pathlib.Path, lib: str) -> dict:
    import numpy as np
    import onnxruntime as ort

    out = {"loaded_version": ort.__version__, "registered": False, "cases": {}}
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2  # a pool to split the rows over (KernelContext_ParallelFor)
    try:
        so.register_custom_ops_library(lib)
        out["registered"] = True
    except Exception as exc:  # onnxruntime raises its own exception types
        out["register_error"] = str(exc)
        return out
    for name in [*CASES, *SS2D_CASES]:
        feeds = dict(np.load(workdir / f"{name}.npz"))
        sess = ort.InferenceSession(str(workdir / f"{name}.onnx"), so, providers=["CPUExecutionProvider"])
        (y,) = sess.run(["y"], feeds)
        ref = reference_scan(**feeds) if name in CASES else reference_ss2d(**feeds, layout=SS2D_CASES[name][6])
        err = float(np.max(np.abs(y.astype(np.float64) - ref)))
        scale = float(np.max(np.abs(ref)))
        tol = 2e-5 * max(1.0, scale)  # measured errors are ~5e-6 at scale 22 (fp32 state)
        out["cases"][name] = {"dtype": str(y.dtype), "shape": list(y.shape), "max_abs_err": err,
                              "ref_scale": scale, "tol": tol,
                              "ok": bool(y.dtype == np.float32 and y.shape == ref.shape and err <= tol)}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ort-version", default=ORT_FLOOR, help=f"onnxruntime release to load into (default {ORT_FLOOR})")
    ap.add_argument("--expect", choices=("runs", "refused"), default="runs")
    ap.add_argument("--lib", default=os.environ.get("REMAMBER_ORT_LIB") or str(DEFAULT_LIB))
    ap.add_argument("--venv-root", default=str(DEFAULT_VENV_ROOT), help="where the throwaway venvs are kept")
    ap.add_argument("--child", metavar="WORKDIR", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print("CHILD " + json.dumps(child_main(pathlib.Path(args.child), args.lib)))
        return 0
    status, result = run_check(args.ort_version, args.expect, pathlib.Path(args.lib), pathlib.Path(args.venv_root))
    result["passed"] = status == 0
    print("RESULT " + json.dumps(result))
    return status


if __name__ == "__main__":
    sys.exit(main())
