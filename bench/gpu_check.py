#!/usr/bin/env python3
"""One-command GPU check of the CUDA selective-scan kernel, the TensorRT plugin's runtime path and the
PyTorch forward: build, correctness, sanitizers, speed against the copy bandwidth, end to end.

Run on a GPU machine from the repository root (the package need not be installed):

    PYTHONUNBUFFERED=1 PYTHONPATH=. python3 bench/gpu_check.py --out $OUT --budget-s 450

Steps (each timed and logged; a failing step is recorded and the run goes on), one module each in
bench/gpu/:
  probe          GPU, driver, CUDA, torch, SM count, L2, nvcc, TensorRT headers, importable modules
  shapes         the scan shapes of REMAMBER_SPEC 5.2 at 480 and 1024, their byte and FLOP floors
  reference_cpu  the PyTorch reference scan vs a float64 step loop on small shapes (CPU)
  build          CMake + nvcc for sm_90 into /tmp; with TensorRT headers (carry third_party/tensorrt)
                 also the TensorRT plugin and remamber_plugin_harness
  native_tests   ctest of that build tree
  sanitizer      a C++ ABI driver (exact-size cudaMalloc, float64 host reference) plainly and under
                 compute-sanitizer memcheck / racecheck / synccheck / initcheck
  plugin_harness the plugin driven as TensorRT would, per case vs float64, plainly and under memcheck
  correctness    kernel vs float64 reference on the GPU (165 cases), output NaN-poisoned
  speed          copy bandwidth, each scan shape's median time, GB/s, fraction of copy, issue #9 targets
  forward_scans  the 37 scans of one base-conv forward at 480 and 1024, fp32/fp16, vs the byte floor
  peer           mamba-ssm's selective_scan_cuda and/or an oflex build (REMAMBER_PEER_OFLEX) vs ours
  e2e            ReMamber_Conv base at 480 and 1024: reference vs cuda backend, latency, memory, parity
  e2e_modes      the forward eager / CUDA-graph replay / torch.compile, fp32, TF32, fp16, kernel time
  triton_*       the triton backend (bench/gpu/triton_check.py): correctness over the CUDA kernel's matrices,
                 CUDA graph + torch.compile of one op call, speed next to the CUDA kernel (target <= 1.3x),
                 the base model end to end with the triton backend
Results: --out DIR/results.json (full), DIR/summary.md (the tables printed last), DIR/gpu_check.log,
DIR/build.log. Exit status 1 when any check fails or a step breaks; 0 otherwise.

Without a GPU (or with --dry-run) the GPU steps are skipped with an explicit reason and the CPU
parts still run and write the JSON. --compile-only configures and builds the CUDA targets for
sm_90 with the local nvcc (no GPU needed). --rehearse-cpu runs the GPU steps' logic on the CPU
(reference scan in place of the kernel, tiny model at 64x64; it measures nothing). --floors-table
prints docs/PERF.md's floor tables.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__" or not __package__:
    # Run as a script: Python put bench/ first on sys.path, where sibling modules could shadow
    # real ones; drop it and make the repository root importable (the package is usually not
    # installed on the GPU machine: bench.gpu and remamber.* are imported from the checkout).
    _here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _here]
    if str(_here.parent) not in sys.path:
        sys.path.insert(0, str(_here.parent))
    from bench.gpu import main as _main
else:  # imported as remamber.bench.gpu_check (installed) or bench.gpu_check
    from .gpu import main as _main

GPU_STEPS = _main.GPU_STEPS


def main(argv=None) -> int:
    return _main.main(argv, description=__doc__.split("\n\n")[0])


if __name__ == "__main__":
    sys.exit(main())
