"""Shared pytest fixtures: fresh random inputs for the selective scan and an importer for
mamba-ssm's pure-PyTorch `selective_scan_ref` (an independent reference)."""

from __future__ import annotations

import importlib.util
import os
import random
import sys
import zlib
import types
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch



@dataclass
class ScanCase:
    batch: int
    channels: int
    groups: int
    nstate: int
    length: int
    with_D: bool = True
    with_bias: bool = True
    dtype: torch.dtype = torch.float32


def make_scan_inputs(case: ScanCase, generator: torch.Generator, delta_range=(-4.0, 2.0)):
    """Fresh random inputs shaped per the contract; A negative like S4D-real A = -exp(A_log)."""
    b, c, g, n, l = case.batch, case.channels, case.groups, case.nstate, case.length

    def rnd(*shape):
        return torch.randn(*shape, generator=generator)

    lo, hi = delta_range
    u = rnd(b, c, l).to(case.dtype)
    delta = (torch.rand(b, c, l, generator=generator) * (hi - lo) + lo).to(case.dtype)
    A = -torch.exp(torch.rand(c, n, generator=generator) * 2.0 - 1.0)
    B = rnd(b, g, n, l).to(case.dtype)
    C = rnd(b, g, n, l).to(case.dtype)
    D = rnd(c) if case.with_D else None
    bias = (torch.rand(c, generator=generator) - 0.5) if case.with_bias else None
    return u, delta, A, B, C, D, bias


# Fresh random inputs on every run; the run's seed is printed in pytest's header so a failure can
# be replayed with REMAMBER_TEST_SEED=<seed>.
RUN_SEED = int(os.environ.get("REMAMBER_TEST_SEED", random.SystemRandom().randrange(2**31)))


def pytest_report_header(config):
    return f"remamber test seed: REMAMBER_TEST_SEED={RUN_SEED}"


@pytest.fixture
def rng(request):
    """A generator seeded from the run seed and the test's id: fresh per run and per test."""
    seed = (RUN_SEED ^ zlib.crc32(request.node.nodeid.encode())) % (2**31)
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="session")
def mamba_selective_scan_ref():
    """mamba-ssm's `selective_scan_ref`, imported without its CUDA extension or Triton.

    mamba-ssm installs on CPU with MAMBA_SKIP_CUDA_BUILD=TRUE, but its module imports
    `selective_scan_cuda` and Triton kernels at top level (TOOLCHAIN.md). The reference function
    uses neither, so the module file is loaded with those two imports stubbed, then the stubs
    are removed again.
    """
    spec = importlib.util.find_spec("mamba_ssm")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("mamba-ssm is not installed (scripts/setup.sh installs it without CUDA)")
    pkg_dir = Path(list(spec.submodule_search_locations)[0])
    source = pkg_dir / "ops" / "selective_scan_interface.py"
    # Package stubs with the real __path__, so submodules load from the installed files while the
    # package __init__ files (which import Triton kernels) do not run.
    package_stubs = {
        "mamba_ssm": pkg_dir,
        "mamba_ssm.ops": pkg_dir / "ops",
        "mamba_ssm.ops.triton": pkg_dir / "ops" / "triton",
    }
    before = dict(sys.modules)
    try:
        for name, path in package_stubs.items():
            stub = types.ModuleType(name)
            stub.__path__ = [str(path)]
            sys.modules[name] = stub
        sys.modules["selective_scan_cuda"] = types.ModuleType("selective_scan_cuda")
        layer_norm = types.ModuleType("mamba_ssm.ops.triton.layer_norm")
        layer_norm._layer_norm_fwd = None
        sys.modules["mamba_ssm.ops.triton.layer_norm"] = layer_norm
        mod_spec = importlib.util.spec_from_file_location("_mamba_ssm_scan_interface", source)
        module = importlib.util.module_from_spec(mod_spec)
        mod_spec.loader.exec_module(module)
    except ImportError as exc:
        pytest.skip(f"mamba-ssm's selective_scan_interface could not be loaded: {exc}")
    finally:
        for name in list(sys.modules):
            if name not in before:
                del sys.modules[name]
            elif sys.modules[name] is not before[name]:
                sys.modules[name] = before[name]
    return module.selective_scan_ref
