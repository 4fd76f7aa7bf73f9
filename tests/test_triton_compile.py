"""The Triton scan kernels compile for the H100/H200 (sm_90) on this CPU machine: Triton's compiler runs
every stage (TTIR, TTGIR, LLVM IR, PTX, and a cubin through the ptxas that the triton wheel ships) without
a GPU or a driver. The interpreter tests (test_triton_backend.py) check the maths; this checks what the
interpreter skips: that the kernels are valid compiled Triton (constexpr globals, types, layouts of the
3-D associative scan, the SS2D kernel's static direction loop), with no spill to local memory, for the constexpr variants the
backend launches. It does not run them: speed and results on a GPU are the GPU check's (bench/gpu/triton_check.py).

Runs in a subprocess so that the kernels are decorated for the compiler (no TRITON_INTERPRET), with its
own Triton cache folder, so every variant is compiled here and nothing is written to the user's cache.
The pinned CPU Triton (3.8) compiles; the GPU machine's own Triton version is exercised only there.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap

import pytest

if importlib.util.find_spec("triton") is None:
    if os.environ.get("CI"):
        pytest.fail("triton is not installed: run scripts/setup.sh", pytrace=False)
    pytest.skip("triton is not installed (scripts/setup.sh installs it)", allow_module_level=True)

SCRIPT = textwrap.dedent(
    """
    import json, sys
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from remamber.ops import triton_backend, triton_kernels as k

    assert not k.INTERPRETED
    PTRS = ("u_ptr", "delta_ptr", "a_ptr", "b_ptr", "c_ptr", "d_ptr", "bias_ptr", "y_ptr")
    ACT = {"u_ptr", "delta_ptr", "b_ptr", "c_ptr"}
    TY = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16"}

    def build(fn, ints, dtype, cons):
        sig = {p: ("*" + TY[dtype]) if p in ACT else "*fp32" for p in PTRS}
        sig.update({n: "i32" for n in ints})
        sig.update({n: "constexpr" for n in cons})
        c = triton.compile(ASTSource(fn=fn, signature=sig, constexprs=cons), target=GPUTarget("cuda", 90, 32),
                           options={"num_warps": triton_backend.GPU_NUM_WARPS})
        ptx = c.asm["ptx"]
        return {"cubin_bytes": len(c.asm["cubin"]), "local_memory": ".local" in ptx}

    out = {}
    v1_ints = ("channels", "length", "groups", "per_group", "nstate")
    for name, dtype, n_pad, bd, bl, opts in json.loads(sys.argv[1]):
        cons = dict(HAS_D=opts, HAS_BIAS=opts, SOFTPLUS=True, N_PAD=n_pad, BLOCK_D=bd, BLOCK_L=bl)
        out[f"v1 {dtype} N{n_pad} D{bd} L{bl}"] = build(k.selective_scan_kernel, v1_ints, dtype, cons)
    for name, dtype, n_pad, bd, bl, layout in json.loads(sys.argv[2]):
        cons = dict(LAYOUT=layout, HAS_D=True, HAS_BIAS=True, SOFTPLUS=True, N_PAD=n_pad, BLOCK_D=bd, BLOCK_L=bl)
        out[f"ss2d {dtype} N{n_pad} D{bd} L{bl} layout{layout}"] = build(
            k.ss2d_scan_kernel, ("dim", "height", "width", "nstate"), dtype, cons)
    print("RESULT " + json.dumps(out))
    """
)

# The GPU defaults (256-step chunks; channels per program from the 2048-element tile budget) at N = 1 and 16.
V1 = [("v1", "float16", 1, 8, 256, True), ("v1", "bfloat16", 16, 1, 128, False), ("v1", "float32", 4, 2, 256, True)]
SS2D = [("ss2d", "float32", 1, 8, 256, 0), ("ss2d", "float16", 16, 1, 128, 1)]


def test_kernels_compile_for_sm90(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITON_CACHE_DIR"] = str(tmp_path / "triton-cache")
    p = subprocess.run([sys.executable, "-c", SCRIPT, __import__("json").dumps(V1), __import__("json").dumps(SS2D)],
                       capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    line = next(l for l in p.stdout.splitlines() if l.startswith("RESULT "))
    result = json.loads(line[len("RESULT "):])
    assert len(result) == len(V1) + len(SS2D)
    for name, r in result.items():
        assert r["cubin_bytes"] > 0, name
        assert not r["local_memory"], f"{name}: the compiled kernel spills to local memory"
