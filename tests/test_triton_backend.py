"""Runs the Triton backend's interpreter tests (tests/triton_interpreter_cases.py) in a fresh Python with
TRITON_INTERPRET=1 set from the start.

Why a subprocess: Triton decides interpreter or compiler for every @triton.jit function when it is decorated,
its own standard library (tl.zeros, tl.sum, ...) included, at the first `import triton`. In a full test
session torch / transformers import triton before these tests run, so setting the variable in-process gives
interpreted kernels that cannot call tl.zeros; and the variable must not leak into the other tests. The
child's pytest output is shown when it fails; every case there must pass (none may be skipped).
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

CASES = Path(__file__).with_name("triton_interpreter_cases.py")
MIN_CASES = 36  # the cases file's test count (parametrised), so a collection mistake cannot pass quietly


def test_triton_kernels_under_the_interpreter():
    if importlib.util.find_spec("triton") is None:
        if os.environ.get("CI"):
            pytest.fail("triton is not installed: run scripts/setup.sh (it pins triton in scripts/constraints-cpu.txt)")
        pytest.skip("triton is not installed (scripts/setup.sh installs it)")
    env = dict(os.environ, TRITON_INTERPRET="1")
    env.pop("REMAMBER_SCAN_BACKEND", None)
    p = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rfEs", str(CASES)],
                       cwd=CASES.parents[1], env=env, capture_output=True, text=True, timeout=600)
    out = p.stdout[-8000:] + p.stderr[-3000:]
    assert p.returncode == 0, out
    summary = p.stdout.strip().splitlines()[-1]
    passed = re.search(r"(\d+) passed", summary)
    assert passed and int(passed.group(1)) >= MIN_CASES, out
    assert not re.search(r"skipped|failed|error", summary), out
