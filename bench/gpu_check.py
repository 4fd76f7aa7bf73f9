#!/usr/bin/env python3
"""One-command GPU check of the CUDA selective-scan kernel: build, correctness, sanitizer, speed, end-to-end.

Run on a GPU machine from the repository root (the package need not be installed):

    PYTHONUNBUFFERED=1 PYTHONPATH=. python3 bench/gpu_check.py --out $OUT --budget-s 420

Steps (each timed and logged; a failing step is recorded and the run goes on):
  probe        GPU, driver, CUDA, torch, SM count, L2, nvcc, TensorRT importability
  shapes       the scan shapes of REMAMBER_SPEC 5.2 at 480 and 1024, their byte and FLOP floors
  reference_cpu  the PyTorch reference scan vs a float64 step loop on small shapes (CPU)
  build        CMake + nvcc for sm_90 only into a folder under /tmp; locates libremamber_scan_cuda.so
  native_tests ctest of that build tree (whatever CUDA tests CMake defines)
  sanitizer    a tiny C++ driver (exact-size cudaMalloc, float64 host reference) run plainly and
               under compute-sanitizer memcheck / racecheck / synccheck
  correctness  kernel vs float64 reference on the GPU, output NaN-poisoned before every run
  speed        copy bandwidth, then each scan shape's median time, GB/s and fraction of copy bandwidth
  e2e          ReMamber_Conv base at 480 and 1024: reference backend vs cuda backend, latency,
               peak memory, logits parity
Results: --out DIR/results.json (full), DIR/gpu_check.log, DIR/build.log; a short table printed last.
Exit status 1 when any correctness check fails or a step breaks; 0 otherwise.

Without a GPU (or with --dry-run) the GPU steps are skipped with an explicit reason and the CPU
parts still run and write the JSON. --compile-only configures and builds the CUDA targets for
sm_90 with the local nvcc (no GPU needed). --floors-table prints docs/PERF.md's floor tables.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

if __name__ == "__main__" or not __package__:
    # Run as a script: Python put bench/ first on sys.path, where sibling modules could shadow
    # real ones; drop it and make the repository root importable (the package is usually not
    # installed on the GPU machine, so only `remamber.*` modules from remamber/ are imported).
    _here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _here]
    if str(_here.parent) not in sys.path:
        sys.path.insert(0, str(_here.parent))

import argparse  # noqa: E402
import contextlib  # noqa: E402
import datetime as _dt  # noqa: E402
import importlib  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import random  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from dataclasses import asdict, dataclass  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS_NAME = "results.json"
LOG_NAME = "gpu_check.log"
BUILD_LOG_NAME = "build.log"
DEFAULT_BUILD_DIR = Path("/tmp/remamber-gpu-check-build")
CUDA_ARCH = "90"  # H100 / H200 only: a one-arch build is the fastest
LIBRARY_FILENAME = "libremamber_scan_cuda.so"
_DEVICE = "cuda"  # the GPU steps' device (a module global so a CPU rehearsal can redirect it)

# ---------------------------------------------------------------------------------------------
# The model's scan shapes (REMAMBER_SPEC 5.2), derived from the architecture
# ---------------------------------------------------------------------------------------------
STAGE_DIMS = (128, 256, 512, 1024)  # VMamba-B channels C_s of stages 0..3
BACKBONE_DEPTHS = (2, 2, 15, 2)  # VSS blocks per stage
TWISTER_BLOCKS = 2  # Twister blocks per stage; each does one spatial and one channel scan
DIRECTIONS = 4  # K: cross-scan directions (= the scan's groups G)
SSM_RATIO = 2  # d_inner = 2 * C
CHANNEL_SCAN_POSITIONS = 16 * 16  # the channel scan pools to 16x16 = 256 "channels" (d_model)
MAMBA_DECODER_DEPTHS = {3: 2, 2: 4, 1: 2, 0: 2}  # SS2D blocks of the MambaDecoder at stage-s scale
PATCH_STRIDE = 4  # stage s has spatial size S / 2^(s+2)


@dataclass(frozen=True)
class ScanSite:
    site: str
    calls: int
    channels: int  # K*D
    length: int  # L
    groups: int = DIRECTIONS
    nstate: int = 1


def scan_inventory(variant: str, resolution: int) -> list[ScanSite]:
    """Every scan call of one forward pass (batch 1): REMAMBER_SPEC 5.2's table for any S."""
    if variant not in ("conv", "mamba"):
        raise ValueError(f"variant must be 'conv' or 'mamba', got {variant!r}")
    if resolution % 32:
        raise ValueError(f"resolution must be a multiple of 32, got {resolution}")
    sites: list[ScanSite] = []
    for s, dim in enumerate(STAGE_DIMS):
        side = resolution // (PATCH_STRIDE * 2**s)
        spatial = DIRECTIONS * SSM_RATIO * dim
        channel = DIRECTIONS * SSM_RATIO * CHANNEL_SCAN_POSITIONS
        sites.append(ScanSite(f"backbone stage{s} VSS", BACKBONE_DEPTHS[s], spatial, side * side))
        sites.append(ScanSite(f"twister{s} spatial", TWISTER_BLOCKS, spatial, side * side))
        sites.append(ScanSite(f"twister{s} channel", TWISTER_BLOCKS, channel, 3 * dim))
    if variant == "mamba":
        for s in (3, 2, 1, 0):
            side = resolution // (PATCH_STRIDE * 2**s)
            sites.append(
                ScanSite(f"mamba decoder stage{s}", MAMBA_DECODER_DEPTHS[s], DIRECTIONS * SSM_RATIO * STAGE_DIMS[s], side * side)
            )
    return sites


def unique_scan_shapes(resolutions=(480, 1024)) -> list[tuple[int, int]]:
    """Deduplicated (K*D, L) over both variants and the given resolutions, sorted."""
    shapes = {(s.channels, s.length) for r in resolutions for v in ("conv", "mamba") for s in scan_inventory(v, r)}
    return sorted(shapes)


# ---------------------------------------------------------------------------------------------
# Byte and FLOP floors (REMAMBER_SPEC 5.3, L0: the op's own interface)
# ---------------------------------------------------------------------------------------------
DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}

# Ceilings used for floors before a run measures its own: KINDS.md's copy bandwidth measured on
# this workplace's machines (bytes read + written) and the datasheet's plain fp32 rate.
DEVICE_CEILINGS = {
    "H100": {"copy_GBps": 3000.0, "fp32_TFLOPs": 67.0},
    "H200": {"copy_GBps": 4300.0, "fp32_TFLOPs": 67.0},
}


def scan_bytes(batch, channels, length, groups=DIRECTIONS, nstate=1, in_dtype="float32", with_D=True, with_bias=True) -> dict:
    """Fewest bytes the op must move: u, delta, B, C read once at their dtype; A, D, delta_bias fp32;
    y written once in fp32."""
    e = DTYPE_BYTES[in_dtype]
    read = 2 * batch * channels * length * e  # u, delta
    read += 2 * batch * groups * nstate * length * e  # B, C
    read += channels * nstate * 4  # A
    read += channels * 4 * (int(with_D) + int(with_bias))
    write = batch * channels * length * 4
    return {"read": read, "write": write, "total": read + write}


def scan_flops(batch, channels, length, nstate=1) -> int:
    """VMamba's FLOP formula for the forward scan, 9*L*D*N + L*D (D = all channels), per batch item."""
    return batch * (9 * length * channels * nstate + length * channels)


def floors_for_shape(channels, length, batch=1, nstate=1, ceilings=None) -> dict:
    ceilings = ceilings or DEVICE_CEILINGS
    row = {"channels": channels, "length": length, "batch": batch, "nstate": nstate}
    flops = scan_flops(batch, channels, length, nstate)
    row["gflop"] = flops / 1e9
    for dtype, key in (("float32", "fp32"), ("float16", "fp16in")):
        row[f"bytes_{key}"] = scan_bytes(batch, channels, length, nstate=nstate, in_dtype=dtype)["total"]
    for dev, c in ceilings.items():
        for key in ("fp32", "fp16in"):
            row[f"floor_us_{dev}_{key}"] = row[f"bytes_{key}"] / (c["copy_GBps"] * 1e9) * 1e6
        row[f"flop_floor_us_{dev}"] = flops / (c["fp32_TFLOPs"] * 1e12) * 1e6
    return row


def model_totals(variant, resolution) -> dict:
    sites = scan_inventory(variant, resolution)
    tot = {"variant": variant, "resolution": resolution, "calls": sum(s.calls for s in sites)}
    tot["gflop"] = sum(s.calls * scan_flops(1, s.channels, s.length, s.nstate) for s in sites) / 1e9
    for dtype, key in (("float32", "fp32"), ("float16", "fp16in")):
        tot[f"bytes_{key}"] = sum(s.calls * scan_bytes(1, s.channels, s.length, s.groups, s.nstate, dtype)["total"] for s in sites)
    for dev, c in DEVICE_CEILINGS.items():
        for key in ("fp32", "fp16in"):
            tot[f"floor_ms_{dev}_{key}"] = tot[f"bytes_{key}"] / (c["copy_GBps"] * 1e9) * 1e3
    return tot


def _calls_by_shape(variant, resolution) -> dict:
    out: dict[tuple[int, int], int] = {}
    for s in scan_inventory(variant, resolution):
        out[(s.channels, s.length)] = out.get((s.channels, s.length), 0) + s.calls
    return out


def _markdown_table(headers, rows) -> str:
    try:
        from tabulate import tabulate

        return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)
    except ImportError:  # tabulate is on both machines; keep the script standalone anyway
        widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) for i, h in enumerate(headers)]
        line = lambda cells: "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
        return "\n".join([line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|"] + [line(r) for r in rows])


def floors_table() -> str:
    """docs/PERF.md's floor tables (Markdown), generated from the functions above."""
    calls = {(v, r): _calls_by_shape(v, r) for v in ("conv", "mamba") for r in (480, 1024)}
    headers = ["K*D", "L", "calls conv@480/1024", "MB fp32", "MB fp16-in", "GFLOP",
               "H100 µs fp32 / fp16-in", "H200 µs fp32 / fp16-in", "fp32-rate µs"]
    rows = []
    for ch, ln in unique_scan_shapes():
        f = floors_for_shape(ch, ln)
        c480, c1024 = calls[("conv", 480)].get((ch, ln), 0), calls[("conv", 1024)].get((ch, ln), 0)
        rows.append([
            ch, ln, f"{c480}/{c1024}", f"{f['bytes_fp32'] / 1e6:.1f}", f"{f['bytes_fp16in'] / 1e6:.1f}", f"{f['gflop']:.3f}",
            f"{f['floor_us_H100_fp32']:.1f} / {f['floor_us_H100_fp16in']:.1f}",
            f"{f['floor_us_H200_fp32']:.1f} / {f['floor_us_H200_fp16in']:.1f}",
            f"{f['flop_floor_us_H100']:.2f}",
        ])
    per_shape = _markdown_table(headers, rows)
    headers2 = ["model", "S", "scan calls", "GFLOP", "MB fp32", "MB fp16-in", "H100 ms fp32 / fp16-in", "H200 ms fp32 / fp16-in"]
    rows2 = []
    for v in ("conv", "mamba"):
        for r in (480, 1024):
            t = model_totals(v, r)
            rows2.append([
                f"ReMamber_{v.capitalize()}", r, t["calls"], f"{t['gflop']:.3f}", f"{t['bytes_fp32'] / 1e6:.0f}",
                f"{t['bytes_fp16in'] / 1e6:.0f}", f"{t['floor_ms_H100_fp32']:.3f} / {t['floor_ms_H100_fp16in']:.3f}",
                f"{t['floor_ms_H200_fp32']:.3f} / {t['floor_ms_H200_fp16in']:.3f}",
            ])
    totals = _markdown_table(headers2, rows2)
    ceil = ", ".join(f"{d} {c['copy_GBps'] / 1000:.1f} TB/s copy, {c['fp32_TFLOPs']:.0f} TFLOP/s fp32" for d, c in DEVICE_CEILINGS.items())
    return (
        f"Per scan shape (batch 1, G = 4, N = 1, with D and delta_bias; floors at {ceil}):\n\n{per_shape}\n\n"
        f"Per forward pass (all scan calls, batch 1):\n\n{totals}\n"
    )


# ---------------------------------------------------------------------------------------------
# Run bookkeeping: steps, budget, log, atomic JSON
# ---------------------------------------------------------------------------------------------
class Run:
    def __init__(self, out_dir: Path, budget_s: float, argv: list[str]):
        self.out_dir = out_dir
        out_dir.mkdir(parents=True, exist_ok=True)
        self.t0 = time.monotonic()
        self.budget_s = budget_s
        self.log_path = out_dir / LOG_NAME
        self._log = open(self.log_path, "a", encoding="utf-8")
        self.results: dict = {
            "tool": "bench/gpu_check.py",
            "started_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "argv": argv,
            "budget_s": budget_s,
            "steps": {},
        }
        self.failures: list[str] = []

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def remaining(self) -> float:
        return self.budget_s - self.elapsed()

    def log(self, msg: str) -> None:
        line = f"[{self.elapsed():7.1f}s] {msg}"
        print(line, file=sys.stderr, flush=True)
        self._log.write(line + "\n")
        self._log.flush()

    def fail(self, what: str) -> None:
        self.failures.append(what)
        self.log(f"FAIL: {what}")

    def skip(self, name: str, reason: str) -> None:
        self.results["steps"][name] = {"status": "skipped", "reason": reason, "seconds": 0.0}
        self.log(f"step {name}: skipped: {reason}")
        self.save()

    @contextlib.contextmanager
    def step(self, name: str):
        entry: dict = {"status": "running"}
        self.results["steps"][name] = entry
        self.log(f"step {name}: start ({self.remaining():.0f} s of budget left)")
        t = time.monotonic()
        try:
            yield entry
            if entry["status"] == "running":
                entry["status"] = "ok"
        except Exception as exc:  # record, go on with the next step
            entry["status"] = "error"
            entry["error"] = f"{type(exc).__name__}: {exc}"
            self.log(traceback.format_exc())
            self.fail(f"step {name} broke: {entry['error']}")
        finally:
            entry["seconds"] = round(time.monotonic() - t, 3)
            self.log(f"step {name}: {entry['status']} in {entry['seconds']:.1f} s")
            self.save()

    def save(self) -> None:
        self.results["elapsed_s"] = round(self.elapsed(), 2)
        self.results["failures"] = list(self.failures)
        tmp = self.out_dir / (RESULTS_NAME + ".tmp")
        tmp.write_text(json.dumps(self.results, indent=1, default=str), encoding="utf-8")
        os.replace(tmp, self.out_dir / RESULTS_NAME)


def _run_cmd(cmd, timeout, log_file=None, env=None, cwd=None) -> tuple[int, str, float]:
    """Run a command, return (exit code, combined output, seconds); 124 on timeout."""
    t = time.monotonic()
    try:
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout, env=env, cwd=cwd)
        rc, out = p.returncode, p.stdout
    except subprocess.TimeoutExpired as exc:
        rc, out = 124, (exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")) + f"\n[timeout after {timeout} s]"
    except FileNotFoundError as exc:
        rc, out = 127, str(exc)
    dt = time.monotonic() - t
    if log_file is not None:
        with open(log_file, "a", encoding="utf-8") as f:
            f.write(f"\n$ {' '.join(map(str, cmd))}\n{out}\n[exit {rc} after {dt:.1f} s]\n")
    return rc, out, dt


def _first_line(cmd) -> str | None:
    rc, out, _ = _run_cmd(cmd, timeout=30)
    return out.strip().splitlines()[-1] if rc == 0 and out.strip() else None


def _nvcc() -> str | None:
    return shutil.which("nvcc") or next((p for p in ("/usr/local/cuda/bin/nvcc",) if Path(p).is_file()), None)


def _tool(name) -> str | None:
    return shutil.which(name) or next((p for p in (f"/usr/local/cuda/bin/{name}",) if Path(p).is_file()), None)


# ---------------------------------------------------------------------------------------------
# Step: probe
# ---------------------------------------------------------------------------------------------
def step_probe(run: Run, use_gpu: bool) -> None:
    import torch

    with run.step("probe") as e:
        e["python"] = platform.python_version()
        e["platform"] = platform.platform()
        e["torch"] = torch.__version__
        e["torch_cuda"] = torch.version.cuda
        e["cuda_available"] = torch.cuda.is_available()
        e["gpu_mode"] = use_gpu
        rc, out, _ = _run_cmd(["git", "rev-parse", "HEAD"], timeout=10, cwd=REPO_ROOT)
        e["git_commit"] = out.strip() if rc == 0 else None
        rc, out, _ = _run_cmd(["git", "status", "--porcelain"], timeout=10, cwd=REPO_ROOT)
        e["git_dirty"] = bool(out.strip()) if rc == 0 else None
        if torch.cuda.is_available():
            p = torch.cuda.get_device_properties(0)
            e["gpu"] = {
                "name": p.name, "capability": f"{p.major}.{p.minor}", "sm_count": p.multi_processor_count,
                "l2_bytes": getattr(p, "L2_cache_size", None), "memory_bytes": p.total_memory,
            }
        smi = _tool("nvidia-smi")
        if smi:
            line = _first_line([smi, "--query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem,clocks.max.sm,power.limit", "--format=csv,noheader"])
            e["nvidia_smi"] = line
        nvcc = _nvcc()
        rc, out, _ = _run_cmd([nvcc, "--version"], timeout=30) if nvcc else (1, "", 0)
        e["nvcc"] = next((ln.strip() for ln in out.splitlines() if "release" in ln), None) if rc == 0 else None
        e["nvcc_path"] = nvcc
        rc, out, _ = _run_cmd(["cmake", "--version"], timeout=10)
        e["cmake"] = out.splitlines()[0].strip() if rc == 0 and out else None
        e["ninja"] = bool(shutil.which("ninja"))
        e["compute_sanitizer"] = _tool("compute-sanitizer")
        mods = {}
        from importlib import metadata

        for mod, dist in (("triton", "triton"), ("cupy", "cupy-cuda13x"), ("onnx", "onnx"), ("onnxruntime", "onnxruntime"),
                          ("mamba_ssm", "mamba-ssm"), ("tabulate", "tabulate"), ("tqdm", "tqdm"), ("transformers", "transformers")):
            try:
                mods[mod] = metadata.version(dist) if importlib.util.find_spec(mod) else None
            except metadata.PackageNotFoundError:
                mods[mod] = "present (version unknown)"
        for mod in ("tensorrt", "tensorrt_rtx"):  # imported for real, in a subprocess: a broken one can abort
            if importlib.util.find_spec(mod) is None:
                mods[mod] = None
                continue
            rc, out, _ = _run_cmd([sys.executable, "-c", f"import {mod}; print({mod}.__version__)"], timeout=60)
            mods[mod] = out.strip().splitlines()[-1] if rc == 0 and out.strip() else f"import failed (exit {rc})"
        e["modules"] = mods
        if use_gpu:
            e["tf32"] = {"matmul": torch.backends.cuda.matmul.allow_tf32, "cudnn": torch.backends.cudnn.allow_tf32}
        run.log(f"probe: {e.get('gpu') or 'no CUDA device'}; torch {e['torch']} (CUDA {e['torch_cuda']}); nvcc {e['nvcc']}")


# ---------------------------------------------------------------------------------------------
# Step: shapes and floors
# ---------------------------------------------------------------------------------------------
def step_shapes(run: Run) -> None:
    with run.step("shapes") as e:
        e["unique_shapes"] = [list(s) for s in unique_scan_shapes()]
        e["inventory"] = {f"{v}@{r}": [asdict(s) for s in scan_inventory(v, r)] for v in ("conv", "mamba") for r in (480, 1024)}
        e["floors_per_shape"] = [floors_for_shape(c, l) for c, l in unique_scan_shapes()]
        e["model_totals"] = [model_totals(v, r) for v in ("conv", "mamba") for r in (480, 1024)]
        e["ceilings_assumed"] = DEVICE_CEILINGS
        plan = correctness_plan()
        groups: dict[str, int] = {}
        for c in plan:
            groups[c.group] = groups.get(c.group, 0) + 1
        e["correctness_plan"] = {"cases": len(plan), "by_group": groups, "labels": [c.label() for c in plan]}
        run.log(f"shapes: {len(e['unique_shapes'])} unique (K*D, L) scan shapes")


# ---------------------------------------------------------------------------------------------
# Correctness helpers: inputs, reference, comparison
# ---------------------------------------------------------------------------------------------
# ||out-ref||/||ref|| and max|out-ref|/max|ref| bounds per input dtype. fp16/bf16 inputs are exact in
# fp32 and the reference gets the same rounded values (upcast), so a kernel that upcasts and keeps
# fp32 state has the fp32 error: the same bound. Rounding error of a fp32 recurrence grows with its
# memory length 1/(dt*|A|); the inputs below keep dt >= ~4e-4 (the model's dt init range
# 1e-3..0.1), for which a sequential fp32 loop lands near 5e-7 at L = 65,536.
ERROR_BOUND = {"float32": 1e-5, "float16": 1e-5, "bfloat16": 1e-5}
# Reference elements (batch * channels * N * L) above which the float64 reference runs on a channel
# sample (whole groups kept in order, first and last channel of each group always included).
REFERENCE_ELEMENT_BUDGET = 2**27


@dataclass
class ScanCase:
    batch: int
    channels: int
    length: int
    groups: int = DIRECTIONS
    nstate: int = 1
    dtype: str = "float32"
    with_D: bool = True
    with_bias: bool = True
    softplus: bool = True
    dist: str = "model"  # "model": dt in the model's init range; "wide": conftest-like wider range
    group: str = "model shapes"
    api: bool = False  # also run through remamber.ops.selective_scan and a non-contiguous view

    def label(self) -> str:
        opts = "".join(["D" if self.with_D else "-", "b" if self.with_bias else "-", "s" if self.softplus else "-"])
        return f"b{self.batch} c{self.channels} L{self.length} G{self.groups} N{self.nstate} {self.dtype} {opts} {self.dist}"


def correctness_plan() -> list[ScanCase]:
    """The GPU correctness matrix, in priority order (the budget may cut the tail)."""
    shapes = unique_scan_shapes()
    cases: list[ScanCase] = []
    # 1. every model shape, batch 1, both dtypes, N = 1: what the model runs.
    for ch, ln in shapes:
        for dt in ("float32", "float16"):
            cases.append(ScanCase(1, ch, ln, dtype=dt, group="model shapes b1 N1"))
    # 2. edge cases: tiny and odd lengths, chunk boundaries, channel counts per group, N, G, dtypes.
    edge = [
        (1, 8, 1, 4, 1), (2, 8, 2, 4, 16), (1, 8, 3, 1, 1), (2, 12, 31, 4, 3), (1, 8, 127, 2, 1),
        (1, 8, 2047, 4, 1), (1, 8, 2048, 4, 1), (2, 8, 2049, 4, 16), (1, 24, 4097, 4, 1), (3, 16, 4095, 8, 2),
        (1, 4, 65535, 4, 1), (1, 4, 65537, 4, 16), (1, 8, 131073, 4, 1), (2, 6, 1000, 3, 5), (1, 2050, 333, 2, 1),
    ]
    for i, (b, c, ln, g, n) in enumerate(edge):
        for dt in ("float32", "float16", "bfloat16"):
            cases.append(ScanCase(b, c, ln, g, n, dt, with_D=(i % 3 != 1), with_bias=(i % 3 != 2), softplus=(i % 4 != 3),
                                  dist="wide" if i % 2 else "model", group="edge cases", api=(i < 3)))
    # 3. options off: no D and no delta_bias on every model shape; no softplus on half of them.
    for j, (ch, ln) in enumerate(shapes):
        for dt in ("float32", "float16"):
            cases.append(ScanCase(1, ch, ln, dtype=dt, with_D=False, with_bias=False, softplus=(j % 2 == 0), group="options off"))
    # 4. batch 4, N = 1, every model shape.
    for ch, ln in shapes:
        for dt in ("float32", "float16"):
            cases.append(ScanCase(4, ch, ln, dtype=dt, group="model shapes b4 N1"))
    # 5. N = 16 on every model shape, batch 1 then 4 (reference on a channel sample when heavy).
    for b in (1, 4):
        for ch, ln in shapes:
            for dt in ("float32", "float16"):
                cases.append(ScanCase(b, ch, ln, nstate=16, dtype=dt, group=f"N16 b{b}"))
    return cases


def make_inputs(case: ScanCase, gen, device):
    """Fresh random inputs per the contract. Never zeros: zeros hide unwritten outputs."""
    import torch

    b, c, ln, g, n = case.batch, case.channels, case.length, case.groups, case.nstate
    dtype = getattr(torch, case.dtype)
    u = torch.randn(b, c, ln, generator=gen, device=device)
    if case.softplus:
        if case.dist == "wide":
            delta = torch.rand(b, c, ln, generator=gen, device=device) * 6.0 - 4.0
            bias = torch.rand(c, generator=gen, device=device) - 0.5
        else:  # dt_proj output ~ U(-1, 1) around the init bias softplus^-1(exp(U[ln 1e-3, ln 0.1]))
            delta = torch.rand(b, c, ln, generator=gen, device=device) * 2.0 - 1.0
            dt0 = torch.exp(torch.rand(c, generator=gen, device=device) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3))
            bias = torch.log(torch.expm1(dt0))
    else:  # without softplus dt = delta + bias is used as is: keep it positive
        delta = torch.rand(b, c, ln, generator=gen, device=device) * 0.1 + 1e-3
        bias = torch.rand(c, generator=gen, device=device) * 1e-2
    # S4D-real-like A: -(n+1) with a per-channel jitter of exp(U(-1, 1)).
    A = -torch.exp(torch.rand(c, n, generator=gen, device=device) * 2.0 - 1.0) * torch.arange(1, n + 1, device=device, dtype=torch.float32)
    B = torch.randn(b, g, n, ln, generator=gen, device=device)
    C = torch.randn(b, g, n, ln, generator=gen, device=device)
    D = torch.randn(c, generator=gen, device=device)
    u, delta, B, C = (t.to(dtype) for t in (u, delta, B, C))
    return {"u": u, "delta": delta, "A": A.contiguous(), "B": B, "C": C,
            "D": D if case.with_D else None, "delta_bias": bias.float() if case.with_bias else None}


def reference_channels(case: ScanCase, rng: random.Random) -> list[int] | None:
    """Channel sample for the float64 reference (None = all): same count per group, in order."""
    per_group = case.channels // case.groups
    cost_per_channel = case.batch * case.nstate * case.length
    if cost_per_channel * case.channels <= REFERENCE_ELEMENT_BUDGET:
        return None
    keep = max(2, min(per_group, REFERENCE_ELEMENT_BUDGET // (cost_per_channel * case.groups)))
    inner = sorted(rng.sample(range(1, per_group - 1), keep - 2)) if per_group > 2 else []
    offsets = sorted({0, per_group - 1, *inner})
    return [g * per_group + o for g in range(case.groups) for o in offsets]


def reference_scan(inp: dict, softplus: bool, channels: list[int] | None):
    """The float64 reference (remamber.ops.selective_scan_reference on float64 upcasts)."""
    import torch

    from remamber.ops import selective_scan_reference

    u, delta, A, B, C, D, bias = (inp[k] for k in ("u", "delta", "A", "B", "C", "D", "delta_bias"))
    if channels is not None:
        idx = torch.tensor(channels, device=u.device)
        u, delta, A = u[:, idx], delta[:, idx], A[idx]
        D = None if D is None else D[idx]
        bias = None if bias is None else bias[idx]
    dbl = lambda t: None if t is None else t.double()  # noqa: E731
    return selective_scan_reference(dbl(u), dbl(delta), dbl(A), dbl(B), dbl(C), dbl(D), dbl(bias), softplus)


def compare(out, ref, channels) -> dict:
    import torch

    if channels is not None:
        out = out[:, torch.tensor(channels, device=out.device)]
    diff = out.double() - ref
    ref_norm = ref.norm().item()
    ref_max = ref.abs().max().item()
    return {
        "rel_l2": diff.norm().item() / ref_norm if ref_norm else float("inf"),
        "max_abs_over_max_ref": diff.abs().max().item() / ref_max if ref_max else float("inf"),
        "max_abs": diff.abs().max().item(),
    }


# ---------------------------------------------------------------------------------------------
# Step: CPU check of the reference itself (runs everywhere, also in --dry-run)
# ---------------------------------------------------------------------------------------------
def sequential_scan_float64(u, delta, A, B, C, D, bias, softplus):
    """The contract, one time step at a time, float64 (independent of remamber.ops's chunking)."""
    import torch

    u, delta, A, B, C = (t.double() for t in (u, delta, A, B, C))
    b, c, ln = u.shape
    g = B.shape[1]
    grp = torch.arange(c) // (c // g)
    Bc, Cc = B[:, grp], C[:, grp]
    dt = delta + (bias.double()[None, :, None] if bias is not None else 0.0)
    if softplus:
        dt = torch.where(dt <= 20.0, torch.log1p(torch.exp(dt)), dt)
    h = torch.zeros(b, c, A.shape[1], dtype=torch.float64)
    y = torch.empty(b, c, ln, dtype=torch.float64)
    for t in range(ln):
        h = torch.exp(dt[:, :, t, None] * A[None]) * h + (dt[:, :, t] * u[:, :, t])[..., None] * Bc[..., t]
        y[:, :, t] = (h * Cc[..., t]).sum(-1) + (D.double()[None] * u[:, :, t] if D is not None else 0.0)
    return y


def step_reference_cpu(run: Run, seed: int) -> None:
    import torch

    from remamber.ops import selective_scan_reference

    with run.step("reference_cpu") as e:
        gen = torch.Generator().manual_seed(seed)
        rows = []
        for case in (ScanCase(2, 8, 1, 4, 1), ScanCase(1, 8, 37, 4, 16, with_D=False), ScanCase(2, 12, 300, 4, 3, dist="wide"),
                     ScanCase(1, 8, 257, 2, 1, with_bias=False, softplus=False), ScanCase(1, 4, 129, 4, 2, dtype="float16")):
            inp = make_inputs(case, gen, "cpu")
            args = [inp[k] for k in ("u", "delta", "A", "B", "C", "D", "delta_bias")]
            ref = sequential_scan_float64(*args, case.softplus)
            for precision in ("float32", "float64"):
                a = [None if t is None else (t.double() if precision == "float64" else t) for t in args]
                if precision == "float32":  # the reference computes in fp32 for fp16 inputs too
                    a[0:2] = [t.float() for t in a[0:2]]
                    a[3:5] = [t.float() for t in a[3:5]]
                out = selective_scan_reference(*a, case.softplus)
                m = compare(out, ref, None)
                bound = 1e-12 if precision == "float64" else ERROR_BOUND["float32"]
                ok = m["rel_l2"] <= bound and m["max_abs_over_max_ref"] <= bound and bool(torch.isfinite(out).all())
                rows.append({"case": case.label(), "precision": precision, **m, "bound": bound, "pass": ok})
                if not ok:
                    run.fail(f"reference_cpu {case.label()} {precision}: {m}")
        e["cases"] = rows
        e["passed"] = sum(r["pass"] for r in rows)
        e["total"] = len(rows)
        if e["passed"] != e["total"]:
            e["status"] = "failed"


# ---------------------------------------------------------------------------------------------
# Step: build (CMake + nvcc, sm_90) and the sanitizer driver
# ---------------------------------------------------------------------------------------------
DRIVER_SOURCE = r"""
// gpu_check's ABI driver for libremamber_scan_cuda.so: exact-size cudaMalloc per tensor (so
// compute-sanitizer sees any out-of-bounds access; a caching allocator would hide it), a float64
// host reference, NaN-poisoned output, and calls that must be rejected with a message.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <dlfcn.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

typedef int (*ForwardFn)(const void*, const void*, const float*, const void*, const void*, const float*, const float*,
                         float*, int, int, int, int, int, int, int, void*);
typedef const char* (*LastErrorFn)(void);
typedef int (*VersionFn)(void);

#define CUDA_OK(x)                                                                                   \
  do {                                                                                               \
    cudaError_t e_ = (x);                                                                            \
    if (e_ != cudaSuccess) {                                                                         \
      std::fprintf(stderr, "CUDA error %s at line %d: %s\n", #x, __LINE__, cudaGetErrorString(e_)); \
      std::exit(3);                                                                                  \
    }                                                                                                \
  } while (0)

struct Case { int batch, channels, length, groups, nstate, dtype, softplus, with_D, with_bias; };

static float stored(int dtype, float x) {
  if (dtype == 1) return __half2float(__float2half(x));
  if (dtype == 2) return __bfloat162float(__float2bfloat16(x));
  return x;
}

static void* upload(int dtype, const std::vector<float>& v) {
  void* d = nullptr;
  size_t n = v.size();
  if (dtype == 0) {
    CUDA_OK(cudaMalloc(&d, n * 4));
    CUDA_OK(cudaMemcpy(d, v.data(), n * 4, cudaMemcpyHostToDevice));
  } else if (dtype == 1) {
    std::vector<__half> h(n);
    for (size_t i = 0; i < n; ++i) h[i] = __float2half(v[i]);
    CUDA_OK(cudaMalloc(&d, n * 2));
    CUDA_OK(cudaMemcpy(d, h.data(), n * 2, cudaMemcpyHostToDevice));
  } else {
    std::vector<__nv_bfloat16> h(n);
    for (size_t i = 0; i < n; ++i) h[i] = __float2bfloat16(v[i]);
    CUDA_OK(cudaMalloc(&d, n * 2));
    CUDA_OK(cudaMemcpy(d, h.data(), n * 2, cudaMemcpyHostToDevice));
  }
  return d;
}

struct Inputs {
  std::vector<float> u, delta, A, B, C, D, bias;
};

static Inputs make(const Case& k, std::mt19937& rng) {
  std::normal_distribution<float> nrm(0.f, 1.f);
  std::uniform_real_distribution<float> uni(0.f, 1.f);
  size_t nx = (size_t)k.batch * k.channels * k.length, nbc = (size_t)k.batch * k.groups * k.nstate * k.length;
  Inputs in;
  in.u.resize(nx); in.delta.resize(nx); in.B.resize(nbc); in.C.resize(nbc);
  in.A.resize((size_t)k.channels * k.nstate); in.D.resize(k.channels); in.bias.resize(k.channels);
  for (auto& x : in.u) x = stored(k.dtype, nrm(rng));
  for (auto& x : in.delta) x = stored(k.dtype, k.softplus ? uni(rng) * 4.f - 3.f : uni(rng) * 0.2f + 1e-3f);
  for (auto& x : in.B) x = stored(k.dtype, nrm(rng));
  for (auto& x : in.C) x = stored(k.dtype, nrm(rng));
  for (size_t i = 0; i < in.A.size(); ++i) in.A[i] = -std::exp(uni(rng) * 2.f - 1.f) * (float)(i % k.nstate + 1);
  for (auto& x : in.D) x = nrm(rng);
  for (auto& x : in.bias) x = k.softplus ? uni(rng) * 1.5f - 1.f : uni(rng) * 0.01f;
  return in;
}

static std::vector<double> reference(const Case& k, const Inputs& in) {
  std::vector<double> y((size_t)k.batch * k.channels * k.length);
  std::vector<double> h(k.nstate);
  int per_group = k.channels / k.groups;
  for (int b = 0; b < k.batch; ++b)
    for (int c = 0; c < k.channels; ++c) {
      int g = c / per_group;
      for (auto& x : h) x = 0.0;
      for (int t = 0; t < k.length; ++t) {
        size_t i = ((size_t)b * k.channels + c) * k.length + t;
        double dt = (double)in.delta[i] + (k.with_bias ? (double)in.bias[c] : 0.0);
        if (k.softplus) dt = dt <= 20.0 ? std::log1p(std::exp(dt)) : dt;
        double acc = 0.0;
        for (int n = 0; n < k.nstate; ++n) {
          size_t j = (((size_t)b * k.groups + g) * k.nstate + n) * k.length + t;
          h[n] = std::exp(dt * in.A[(size_t)c * k.nstate + n]) * h[n] + dt * in.B[j] * in.u[i];
          acc += in.C[j] * h[n];
        }
        y[i] = acc + (k.with_D ? (double)in.D[c] * in.u[i] : 0.0);
      }
    }
  return y;
}

int main(int argc, char** argv) {
  if (argc < 2) { std::fprintf(stderr, "usage: %s LIBRARY [quick]\n", argv[0]); return 2; }
  bool quick = argc > 2;
  void* handle = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
  if (!handle) { std::fprintf(stderr, "dlopen failed: %s\n", dlerror()); return 2; }
  ForwardFn fwd = (ForwardFn)dlsym(handle, "remamberSelectiveScanForward");
  LastErrorFn last = (LastErrorFn)dlsym(handle, "remamberSelectiveScanLastError");
  VersionFn version = (VersionFn)dlsym(handle, "remamberSelectiveScanVersion");
  if (!fwd || !last || !version) { std::fprintf(stderr, "missing ABI symbol\n"); return 2; }
  int failures = 0;
  std::printf("VERSION %d %s\n", version(), version() == 1 ? "PASS" : "FAIL");
  if (version() != 1) ++failures;
  // batch, channels, length, groups, nstate, dtype, softplus, D, bias
  std::vector<Case> cases = {
      {1, 8, 1, 4, 1, 0, 1, 1, 1},     {2, 8, 37, 4, 1, 1, 1, 1, 1},    {1, 12, 2049, 4, 16, 0, 1, 1, 0},
      {2, 6, 513, 2, 3, 2, 1, 0, 1},   {1, 4, 2048, 1, 2, 0, 0, 0, 0},  {1, 8, 1000, 8, 16, 1, 1, 0, 1},
      {1, 8, 4097, 4, 1, 0, 1, 1, 1},  {3, 16, 16387, 4, 1, 1, 1, 1, 1},
  };
  if (quick) cases.resize(5);
  std::mt19937 rng(12345);
  for (const Case& k : cases) {
    Inputs in = make(k, rng);
    void* u = upload(k.dtype, in.u); void* delta = upload(k.dtype, in.delta);
    void* B = upload(k.dtype, in.B); void* C = upload(k.dtype, in.C);
    float* A = (float*)upload(0, in.A);
    float* D = k.with_D ? (float*)upload(0, in.D) : nullptr;
    float* bias = k.with_bias ? (float*)upload(0, in.bias) : nullptr;
    size_t ny = (size_t)k.batch * k.channels * k.length;
    float* y = nullptr;
    CUDA_OK(cudaMalloc(&y, ny * 4));
    CUDA_OK(cudaMemset(y, 0xFF, ny * 4));  // all-ones bits: NaN, so unwritten elements show
    int rc = fwd(u, delta, A, B, C, D, bias, y, k.batch, k.channels, k.length, k.groups, k.nstate, k.dtype, k.softplus, nullptr);
    cudaError_t sync = cudaDeviceSynchronize();
    std::vector<float> out(ny);
    CUDA_OK(cudaMemcpy(out.data(), y, ny * 4, cudaMemcpyDeviceToHost));
    std::vector<double> ref = reference(k, in);
    double num = 0, den = 0, maxdiff = 0, maxref = 0;
    long unwritten = 0;
    for (size_t i = 0; i < ny; ++i) {
      if (!std::isfinite(out[i])) { ++unwritten; continue; }
      double d = out[i] - ref[i];
      num += d * d; den += ref[i] * ref[i];
      maxdiff = std::fmax(maxdiff, std::fabs(d)); maxref = std::fmax(maxref, std::fabs(ref[i]));
    }
    double rel = std::sqrt(num / den), ratio = maxdiff / maxref;
    const char* msg = rc ? last() : "";
    if (!msg) msg = "(null)";
    bool ok = rc == 0 && sync == cudaSuccess && unwritten == 0 && rel <= 1e-5 && ratio <= 1e-5;
    std::printf("CASE b=%d c=%d L=%d G=%d N=%d dtype=%d softplus=%d D=%d bias=%d rc=%d sync=%s rel_l2=%.3e max_ratio=%.3e nonfinite=%ld %s%s%s\n",
                k.batch, k.channels, k.length, k.groups, k.nstate, k.dtype, k.softplus, k.with_D, k.with_bias, rc,
                cudaGetErrorName(sync), rel, ratio, unwritten, ok ? "PASS" : "FAIL", rc ? " msg=" : "", msg);
    if (!ok) ++failures;
    for (void* p : {u, delta, B, C, (void*)A, (void*)D, (void*)bias, (void*)y}) if (p) CUDA_OK(cudaFree(p));
  }
  // Calls the contract rejects: they must return nonzero with a message, and touch no memory.
  {
    Case k = {1, 8, 64, 4, 1, 0, 1, 1, 1};
    Inputs in = make(k, rng);
    void* u = upload(0, in.u); void* delta = upload(0, in.delta); void* B = upload(0, in.B); void* C = upload(0, in.C);
    float* A = (float*)upload(0, in.A); float* D = (float*)upload(0, in.D); float* bias = (float*)upload(0, in.bias);
    float* y = nullptr;
    CUDA_OK(cudaMalloc(&y, 8 * 64 * 4));
    struct Bad { const char* name; int batch, channels, length, groups, nstate, dtype; } bad[] = {
        {"nstate=0", 1, 8, 64, 4, 0, 0},   {"nstate=17", 1, 8, 64, 4, 17, 0}, {"groups=3 does not divide 8", 1, 8, 64, 3, 1, 0},
        {"dtype=7", 1, 8, 64, 4, 1, 7},    {"length=-1", 1, 8, -1, 4, 1, 0},  {"batch=-2", -2, 8, 64, 4, 1, 0},
    };
    for (const Bad& b : bad) {
      int rc = fwd(u, delta, A, B, C, D, bias, y, b.batch, b.channels, b.length, b.groups, b.nstate, b.dtype, 1, nullptr);
      const char* msg = rc ? last() : "";
      bool ok = rc != 0 && msg && msg[0];
      std::printf("REJECT %s rc=%d msg=\"%s\" %s\n", b.name, rc, msg ? msg : "(null)", ok ? "PASS" : "FAIL");
      if (!ok) ++failures;
    }
    CUDA_OK(cudaDeviceSynchronize());
    for (void* p : {u, delta, B, C, (void*)A, (void*)D, (void*)bias, (void*)y}) CUDA_OK(cudaFree(p));
  }
  std::printf("DRIVER %s (%d failures)\n", failures ? "FAIL" : "PASS", failures);
  return failures ? 1 : 0;
}
"""


def cmake_configure_args(build_dir: Path, nvcc: str | None) -> list[str]:
    args = [
        "cmake", "-S", str(REPO_ROOT), "-B", str(build_dir), "-DCMAKE_BUILD_TYPE=Release",
        f"-DCMAKE_CUDA_ARCHITECTURES={CUDA_ARCH}", "-DREMAMBER_WITH_CUDA=ON", "-DREMAMBER_WITH_TRT=OFF",
        "-DREMAMBER_WITH_ORT=OFF",
    ]
    if nvcc:
        args.append(f"-DCMAKE_CUDA_COMPILER={nvcc}")
    if shutil.which("ninja"):
        args += ["-G", "Ninja"]
    return args


def build_native(run: Run, e: dict, build_dir: Path, timeout_s: float) -> Path | None:
    """Configure + build the CMake tree for sm_90; return the launcher library's path."""
    log = run.out_dir / BUILD_LOG_NAME
    nvcc = _nvcc()
    if not nvcc:
        raise RuntimeError("nvcc not found (PATH, /usr/local/cuda/bin)")
    if not (REPO_ROOT / "CMakeLists.txt").is_file():
        raise RuntimeError(f"no CMakeLists.txt at {REPO_ROOT}: the native tree is missing")
    t_end = time.monotonic() + timeout_s
    cfg = cmake_configure_args(build_dir, nvcc)
    rc, out, dt = _run_cmd(cfg, timeout=max(30, t_end - time.monotonic()), log_file=log)
    e["configure"] = {"command": " ".join(cfg), "exit": rc, "seconds": round(dt, 1), "summary": _cmake_summary(out)}
    run.log(f"build: configure exit {rc} in {dt:.1f} s")
    if rc != 0:
        e["configure"]["tail"] = out[-3000:]
        raise RuntimeError(f"cmake configure failed (exit {rc}); see {BUILD_LOG_NAME}")
    jobs = str(os.cpu_count() or 4)
    cmd = ["cmake", "--build", str(build_dir), "-j", jobs]
    rc, out, dt = _run_cmd(cmd, timeout=max(30, t_end - time.monotonic()), log_file=log)
    e["compile"] = {"command": " ".join(cmd), "exit": rc, "seconds": round(dt, 1)}
    run.log(f"build: compile exit {rc} in {dt:.1f} s")
    if rc != 0:
        e["compile"]["tail"] = out[-4000:]
        raise RuntimeError(f"cmake --build failed (exit {rc}); see {BUILD_LOG_NAME}")
    found = sorted(build_dir.rglob(LIBRARY_FILENAME))
    if not found:  # maybe only installed: try the install step, then the package folder
        rc, out, dt = _run_cmd(["cmake", "--install", str(build_dir)], timeout=120, log_file=log)
        e["install"] = {"exit": rc, "seconds": round(dt, 1)}
        found = sorted((REPO_ROOT / "remamber" / "lib").glob(LIBRARY_FILENAME))
    if not found:
        raise RuntimeError(f"the build produced no {LIBRARY_FILENAME} (targets built: see {BUILD_LOG_NAME})")
    lib = found[0]
    e["library"] = str(lib)
    e["library_bytes"] = lib.stat().st_size
    cuobjdump = _tool("cuobjdump")
    if cuobjdump:  # which machine code is inside: sm_90 expected
        rc, out, _ = _run_cmd([cuobjdump, "--list-elf", str(lib)], timeout=60)
        e["embedded_elf"] = sorted({ln.split(".")[-2] for ln in out.splitlines() if ".sm_" in ln})[:8] if rc == 0 else None
    return lib


def _cmake_summary(out: str) -> list[str]:
    keys = ("remamber", "cuda", "tensorrt", "onnxruntime", "architectures")
    return [ln.strip() for ln in out.splitlines() if any(k in ln.lower() for k in keys)][:40]


def build_driver(run: Run, build_dir: Path) -> Path:
    nvcc = _nvcc()
    if not nvcc:
        raise RuntimeError("nvcc not found")
    src = build_dir / "gpu_check_driver.cu"
    exe = build_dir / "gpu_check_driver"
    build_dir.mkdir(parents=True, exist_ok=True)
    src.write_text(DRIVER_SOURCE, encoding="utf-8")
    cmd = [nvcc, "-O2", "-std=c++17", f"-arch=sm_{CUDA_ARCH}", "-o", str(exe), str(src), "-ldl"]
    rc, out, dt = _run_cmd(cmd, timeout=180, log_file=run.out_dir / BUILD_LOG_NAME)
    run.log(f"driver: nvcc exit {rc} in {dt:.1f} s")
    if rc != 0:
        raise RuntimeError(f"the sanitizer driver did not compile: {out[-2000:]}")
    return exe


def _library_from_env_or_install() -> Path | None:
    from remamber.ops import cuda_backend

    try:
        return cuda_backend.library_path()
    except Exception:
        return None


def step_build(run: Run, args) -> Path | None:
    lib = None
    with run.step("build") as e:
        if args.lib:
            lib = Path(args.lib).resolve()
            e["library"] = str(lib)
            e["note"] = "--lib given: no build"
            if not lib.is_file():
                raise RuntimeError(f"--lib {lib} does not exist")
        elif args.skip_build:
            lib = _library_from_env_or_install()
            e["note"] = "--skip-build: using an existing library"
            e["library"] = str(lib) if lib else None
            if lib is None:
                raise RuntimeError("--skip-build but no library found (REMAMBER_CUDA_LIB, remamber/lib)")
        else:
            budget = min(args.build_timeout_s, max(60.0, run.remaining() - 120))
            lib = build_native(run, e, Path(args.build_dir), budget)
        if lib is not None:
            # Everything after this (backend, sanitizer) uses exactly this library.
            os.environ["REMAMBER_CUDA_LIB"] = str(lib)
        try:
            e["driver"] = str(build_driver(run, Path(args.build_dir)))
        except Exception as exc:
            e["driver_error"] = str(exc)
            run.fail(f"sanitizer driver build: {exc}")
    return lib


def step_native_tests(run: Run, args) -> None:
    with run.step("native_tests") as e:
        build_dir = Path(args.build_dir)
        if not (build_dir / "CTestTestfile.cmake").is_file():
            e["status"] = "skipped"
            e["reason"] = "the build tree defines no ctest tests"
            return
        cmd = ["ctest", "--test-dir", str(build_dir), "--output-on-failure", "--timeout", "60"]
        rc, out, dt = _run_cmd(cmd, timeout=min(120, max(30, run.remaining() - 200)), log_file=run.out_dir / BUILD_LOG_NAME)
        e["exit"] = rc
        e["summary"] = [ln for ln in out.splitlines() if "tests passed" in ln or "Test #" in ln or "***" in ln][-30:]
        if rc != 0:
            e["status"] = "failed"
            e["tail"] = out[-3000:]
            run.fail(f"ctest exit {rc}")


# ---------------------------------------------------------------------------------------------
# Step: sanitizer
# ---------------------------------------------------------------------------------------------
def _parse_driver(out: str) -> dict:
    lines = [ln for ln in out.splitlines() if ln.startswith(("VERSION", "CASE", "REJECT", "DRIVER"))]
    return {"lines": lines, "passed": sum(ln.endswith("PASS") or " PASS" in ln for ln in lines if not ln.startswith("DRIVER")),
            "failed": [ln for ln in lines if "FAIL" in ln and not ln.startswith("DRIVER")]}


def step_sanitizer(run: Run, lib: Path | None, driver: Path | None) -> None:
    with run.step("sanitizer") as e:
        if lib is None or driver is None or not driver.is_file():
            raise RuntimeError("no library or driver to run (build step failed)")
        env = dict(os.environ)
        rc, out, dt = _run_cmd([str(driver), str(lib)], timeout=120)
        e["plain"] = {"exit": rc, "seconds": round(dt, 1), **_parse_driver(out)}
        run.log(f"sanitizer: plain driver exit {rc} in {dt:.1f} s")
        if rc != 0:
            e["plain"]["tail"] = out[-3000:]
            run.fail(f"ABI driver (no sanitizer) exit {rc}: {e['plain']['failed'][:4]}")
        cs = _tool("compute-sanitizer")
        if not cs:
            e["sanitizer"] = "compute-sanitizer not found"
            run.log("sanitizer: compute-sanitizer not found; memcheck not run")
            e["status"] = "failed"
            run.fail("compute-sanitizer not found: memcheck not run")
            return
        tools = [("memcheck", ["--leak-check", "full"], None), ("racecheck", [], "quick"), ("synccheck", [], "quick"), ("initcheck", [], "quick")]
        for tool, extra, quick in tools:
            if run.remaining() < 150 and tool != "memcheck":
                e[tool] = {"status": "skipped", "reason": "time budget"}
                continue
            cmd = [cs, "--tool", tool, *extra, "--error-exitcode", "86", str(driver), str(lib)] + ([quick] if quick else [])
            rc, out, dt = _run_cmd(cmd, timeout=150 if tool == "memcheck" else 90, env=env)
            summary = [ln for ln in out.splitlines() if "ERROR SUMMARY" in ln or "RACECHECK SUMMARY" in ln or "LEAK SUMMARY" in ln]
            e[tool] = {"exit": rc, "seconds": round(dt, 1), "summary": summary, **_parse_driver(out)}
            run.log(f"sanitizer: {tool} exit {rc} in {dt:.1f} s: {summary}")
            if rc != 0 and "Device not supported" in out:
                # KINDS.md: compute-sanitizer refuses the device on gVisor machines. Not checked, not failed.
                e[tool]["status"] = "not run: compute-sanitizer refused the device (gVisor runtime?)"
                e[tool]["tail"] = out[-1500:]
                run.log(f"sanitizer: {tool} could not run on this machine: {e[tool]['status']}")
                if e["status"] == "running":  # shown as such in the summary, never as plain "ok"
                    e["status"] = "partial: compute-sanitizer refused the device"
                continue
            if rc != 0:
                e[tool]["tail"] = out[-4000:]
                e["status"] = "failed"
                run.fail(f"compute-sanitizer {tool} exit {rc}: {summary}")


# ---------------------------------------------------------------------------------------------
# Step: correctness on the GPU
# ---------------------------------------------------------------------------------------------
def step_correctness(run: Run, seed: int, deadline_s: float) -> None:
    import torch

    from remamber.ops import cuda_backend, selective_scan, use_backend

    with run.step("correctness") as e:
        reason = cuda_backend.unavailable_reason()
        if reason:
            raise RuntimeError(f"cuda backend unavailable: {reason}")
        e["library"] = str(cuda_backend.loaded_library_path())
        e["seed"] = seed
        e["bounds"] = ERROR_BOUND
        e["reference_element_budget"] = REFERENCE_ELEMENT_BUDGET
        device = torch.device(_DEVICE)
        gen = torch.Generator(device=device).manual_seed(seed)
        rng = random.Random(seed)
        plan = correctness_plan()
        e["planned"] = len(plan)
        rows = []
        try:
            from tqdm import tqdm

            bar = tqdm(plan, desc="correctness", file=sys.stderr, mininterval=10)
        except ImportError:
            bar = plan
        for case in bar:
            if run.elapsed() > deadline_s:
                rows.append({"case": case.label(), "group": case.group, "status": "skipped: time budget"})
                continue
            row = {"case": case.label(), "group": case.group}
            try:
                inp = make_inputs(case, gen, device)
                chans = reference_channels(case, rng)
                out = torch.full(inp["u"].shape, float("nan"), dtype=torch.float32, device=device)
                cuda_backend.cuda_scan_into(out, **inp, delta_softplus=case.softplus)
                out2 = torch.full_like(out, float("nan"))
                cuda_backend.cuda_scan_into(out2, **inp, delta_softplus=case.softplus)
                torch.cuda.synchronize()
                row["unwritten_nan"] = int(torch.isnan(out).sum().item())
                row["nonfinite"] = int((~torch.isfinite(out)).sum().item())
                row["bitwise_repeatable"] = bool(torch.equal(out, out2))
                del out2
                ref = reference_scan(inp, case.softplus, chans)
                row.update(compare(out, ref, chans))
                row["reference_channels"] = "all" if chans is None else f"{len(chans)} of {case.channels}"
                if case.api:  # the public op path and a non-contiguous input give the same bits
                    with use_backend("cuda"):
                        via_op = selective_scan(inp["u"], inp["delta"], inp["A"], inp["B"], inp["C"], inp["D"], inp["delta_bias"], case.softplus)
                        u_nc = inp["u"].transpose(1, 2).contiguous().transpose(1, 2)
                        via_nc = selective_scan(u_nc, inp["delta"], inp["A"], inp["B"], inp["C"], inp["D"], inp["delta_bias"], case.softplus)
                    row["op_path_equal"] = bool(torch.equal(via_op, out))
                    row["noncontiguous_equal"] = bool(torch.equal(via_nc, out))
                bound = ERROR_BOUND[case.dtype]
                ok = (row["nonfinite"] == 0 and row["bitwise_repeatable"] and row["rel_l2"] <= bound
                      and row["max_abs_over_max_ref"] <= bound and row.get("op_path_equal", True) and row.get("noncontiguous_equal", True))
                row["status"] = "pass" if ok else "FAIL"
                if not ok:
                    run.fail(f"correctness {case.label()}: {row}")
                del inp, out, ref
            except Exception as exc:
                row["status"] = "FAIL"
                row["error"] = f"{type(exc).__name__}: {exc}"
                run.fail(f"correctness {case.label()} raised {row['error']}")
                torch.cuda.empty_cache()
            rows.append(row)
        e["cases"] = rows
        counts: dict[str, dict[str, int]] = {}
        for r in rows:
            g = counts.setdefault(r["group"], {"pass": 0, "FAIL": 0, "skipped": 0})
            g["skipped" if r["status"].startswith("skipped") else r["status"]] += 1
        e["by_group"] = counts
        measured = [r for r in rows if "rel_l2" in r]
        for dt in ERROR_BOUND:
            sub = [r for r in measured if f" {dt} " in r["case"]]
            if sub:
                e[f"worst_{dt}"] = {"rel_l2": max(r["rel_l2"] for r in sub), "max_abs_over_max_ref": max(r["max_abs_over_max_ref"] for r in sub)}
        if any(r["status"] == "FAIL" for r in rows):
            e["status"] = "failed"
        run.log(f"correctness: {json.dumps(counts)}")


# ---------------------------------------------------------------------------------------------
# Step: speed
# ---------------------------------------------------------------------------------------------
TARGET_FRACTION = 0.70
TARGET_SHAPES = [(1024, 14400), (1024, 65536)]
COPY_ELEMENTS = 2**28  # 1 GiB of fp32 per buffer: far beyond L2, long enough to time well
FLUSH_MIN_BYTES = 256 * 2**20  # written before each timed call (with 4x L2 if larger), as Triton does


def _time_events(fn, reps: int, warmup: int, flush=None) -> list[float]:
    """Per-call device times (ms) with CUDA events; an L2 flush before each call keeps the GPU busy
    while the next call is queued and the inputs out of L2."""
    import torch

    starts = [torch.cuda.Event(enable_timing=True) for _ in range(reps + warmup)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(reps + warmup)]
    for i in range(reps + warmup):
        if flush is not None:
            flush()
        starts[i].record()
        fn(i)
        ends[i].record()
    torch.cuda.synchronize()
    return [s.elapsed_time(t) for s, t in zip(starts[warmup:], ends[warmup:])]


def _stats(times: list[float]) -> dict:
    times = sorted(times)
    return {"median_ms": statistics.median(times), "min_ms": times[0], "max_ms": times[-1], "reps": len(times),
            "cv": (statistics.pstdev(times) / statistics.mean(times)) if len(times) > 1 else 0.0}


def step_speed(run: Run, seed: int, deadline_s: float) -> None:
    import torch

    from remamber.ops import backends, cuda_backend, selective_scan_reference

    with run.step("speed") as e:
        reason = cuda_backend.unavailable_reason()
        if reason:
            raise RuntimeError(f"cuda backend unavailable: {reason}")
        device = torch.device(_DEVICE)
        props = torch.cuda.get_device_properties(0)
        l2 = getattr(props, "L2_cache_size", 50 * 2**20) or 50 * 2**20
        gen = torch.Generator(device=device).manual_seed(seed + 1)
        # 1. copy bandwidth: 1 GiB device-to-device, bytes read + written.
        n = COPY_ELEMENTS
        src = torch.randn(n, generator=gen, device=device)
        dst = torch.empty_like(src)
        times = _time_events(lambda i: dst.copy_(src), reps=20, warmup=3)
        copy = _stats(times)
        copy["bytes"] = 2 * src.numel() * 4
        copy["GBps"] = copy["bytes"] / (copy["median_ms"] * 1e-3) / 1e9
        e["copy"] = copy
        del src, dst
        bw = copy["GBps"]
        run.log(f"speed: copy bandwidth {bw:.0f} GB/s (1 GiB, median of {copy['reps']})")
        flush_buf = torch.empty(max(FLUSH_MIN_BYTES, 4 * l2) // 4, device=device)
        flush = lambda: flush_buf.fill_(1.0)  # noqa: E731
        e["l2_flush_bytes"] = flush_buf.numel() * 4
        # 2. our kernel on every model shape, fp32 and fp16 inputs, batch 1, N = 1, G = 4.
        rows = []
        for ch, ln in unique_scan_shapes():
            for dt in ("float32", "float16"):
                if run.elapsed() > deadline_s:
                    rows.append({"shape": [1, ch, ln], "dtype": dt, "status": "skipped: time budget"})
                    continue
                case = ScanCase(1, ch, ln, dtype=dt)
                nbytes = scan_bytes(1, ch, ln, in_dtype=dt)
                sets = max(2, min(16, math.ceil(4 * l2 / nbytes["read"])))
                inputs = [make_inputs(case, gen, device) for _ in range(sets)]
                outs = [torch.empty(1, ch, ln, device=device) for _ in range(sets)]
                fn = lambda i: cuda_backend.cuda_scan_into(outs[i % sets], **inputs[i % sets])  # noqa: E731
                t = _stats(_time_events(fn, reps=30, warmup=5, flush=flush))
                gbps = nbytes["total"] / (t["median_ms"] * 1e-3) / 1e9
                flops = scan_flops(1, ch, ln)
                row = {"shape": [1, ch, ln], "dtype": dt, "input_sets": sets, **t, "bytes": nbytes["total"], "GBps": gbps,
                       "fraction_of_copy": gbps / bw, "floor_ms": nbytes["total"] / (bw * 1e9) * 1e3,
                       "TFLOPs": flops / (t["median_ms"] * 1e-3) / 1e12, "status": "ok"}
                if (ch, ln) in TARGET_SHAPES and dt == "float32":
                    row["target"] = f">= {TARGET_FRACTION:.0%} of copy bandwidth"
                    row["target_met"] = row["fraction_of_copy"] >= TARGET_FRACTION
                rows.append(row)
                del inputs, outs
        e["scan"] = rows
        e["targets"] = {f"1x{ch}x{ln} fp32": next((r.get("target_met") for r in rows if r["shape"] == [1, ch, ln] and r["dtype"] == "float32"), None)
                        for ch, ln in TARGET_SHAPES}
        run.log(f"speed: targets {e['targets']}")
        # 3. the PyTorch reference (fp32) and mamba-ssm when present, for comparison.
        comp = []
        mamba = backends.registered_backends().get("mamba-ssm")
        mamba_ok = mamba is not None and mamba.available()
        e["mamba_ssm"] = "available" if mamba_ok else (mamba.unavailable_reason() if mamba else "not registered")
        for ch, ln in unique_scan_shapes():
            if run.elapsed() > deadline_s:
                comp.append({"shape": [1, ch, ln], "status": "skipped: time budget"})
                continue
            inp = make_inputs(ScanCase(1, ch, ln), gen, device)
            row = {"shape": [1, ch, ln], "dtype": "float32"}
            ref_fn = lambda i: selective_scan_reference(**inp, delta_softplus=True)  # noqa: E731
            row["reference"] = _stats(_time_events(ref_fn, reps=3, warmup=1, flush=flush))
            if mamba_ok:
                row["mamba_ssm"] = _stats(_time_events(lambda i: mamba.fn(**inp, delta_softplus=True), reps=10, warmup=2, flush=flush))
            ours = next((r for r in rows if r["shape"] == [1, ch, ln] and r["dtype"] == "float32" and "median_ms" in r), None)
            if ours:
                row["cuda_median_ms"] = ours["median_ms"]
                row["speedup_vs_reference"] = row["reference"]["median_ms"] / ours["median_ms"]
            comp.append(row)
            del inp
        e["comparison"] = comp
        del flush_buf
        torch.cuda.empty_cache()


# ---------------------------------------------------------------------------------------------
# Step: end to end
# ---------------------------------------------------------------------------------------------
# Logits parity of the cuda backend against the reference backend, same weights and inputs. The
# only difference is the scan (errors ~1e-6 relative), amplified through 37 scans, norms and the
# decoder; fp16 autocast re-rounds activations to 2^-11 after every scan.
E2E_PARITY_BOUND = {"fp32": 1e-3, "fp16": 1e-2}


def _e2e_inputs(resolution, device, seed):
    import torch

    g = torch.Generator().manual_seed(seed)
    image = torch.randn(1, 3, resolution, resolution, generator=g)
    ids = torch.full((1, 20), 49407, dtype=torch.int64)  # CLIP: BOS 49406 ... EOS 49407, EOS as padding
    ids[0, 0] = 49406
    ids[0, 1:11] = torch.randint(1, 49405, (10,), generator=g)
    mask = torch.zeros(1, 20, dtype=torch.int64)
    mask[0, :12] = 1
    return image.to(device), ids.to(device), mask.to(device)


def step_e2e(run: Run, seed: int, deadline_s: float, resolutions=(480, 1024)) -> None:
    import torch

    import remamber
    from remamber.ops import cuda_backend, use_backend
    from remamber.parity import compare_logits

    with run.step("e2e") as e:
        reason = cuda_backend.unavailable_reason()
        if reason:
            raise RuntimeError(f"cuda backend unavailable: {reason}")
        device = torch.device(_DEVICE)
        t = time.monotonic()
        model = remamber.build_model("conv", "base", seed=0).to(device).eval()
        e["model_build_s"] = round(time.monotonic() - t, 1)
        e["params"] = sum(p.numel() for p in model.parameters())
        e["parity_bounds_rel_l2"] = E2E_PARITY_BOUND
        rows = []
        # Timed iterations after one warm-up: the reference backend is slow at 1024, keep it short.
        iters = lambda backend, res: (10 if backend == "cuda" else 3) if res < 1024 else (5 if backend == "cuda" else 2)  # noqa: E731
        for res in resolutions:
            image, ids, mask = _e2e_inputs(res, device, seed)
            for prec in ("fp32", "fp16"):
                row = {"resolution": res, "precision": prec}
                logits = {}
                for backend in ("cuda", "reference"):
                    if run.elapsed() > deadline_s:
                        row[backend] = {"status": "skipped: time budget"}
                        continue
                    torch.cuda.synchronize()
                    torch.cuda.empty_cache()
                    torch.cuda.reset_peak_memory_stats()
                    ctx = torch.autocast(device.type, dtype=torch.float16) if prec == "fp16" else contextlib.nullcontext()
                    times = []
                    with use_backend(backend), torch.inference_mode(), ctx:
                        out = model(image, ids, mask)  # warm-up (and the logits compared below)
                        for _ in range(iters(backend, res)):
                            s, f = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                            s.record()
                            model(image, ids, mask)
                            f.record()
                            torch.cuda.synchronize()
                            times.append(s.elapsed_time(f))
                    logits[backend] = out.float().cpu()
                    row[backend] = {**_stats(times), "peak_mem_bytes": torch.cuda.max_memory_allocated()}
                    run.log(f"e2e {res} {prec} {backend}: median {row[backend]['median_ms']:.1f} ms, "
                            f"peak {row[backend]['peak_mem_bytes'] / 2**30:.2f} GiB")
                if "median_ms" in row.get("cuda", {}) and "median_ms" in row.get("reference", {}):
                    row["speedup"] = row["reference"]["median_ms"] / row["cuda"]["median_ms"]
                if len(logits) == 2:
                    m = compare_logits(logits["reference"].numpy(), logits["cuda"].numpy()).as_dict()
                    row["parity_cuda_vs_reference"] = m
                    ok = m["nan_count"] == 0 and m["rel_l2_error"] <= E2E_PARITY_BOUND[prec]
                    row["parity_pass"] = ok
                    if not ok:
                        run.fail(f"e2e parity {res} {prec}: rel_l2 {m['rel_l2_error']:.2e}, NaN {m['nan_count']}")
                rows.append(row)
        e["runs"] = rows
        if any(r.get("parity_pass") is False for r in rows):
            e["status"] = "failed"
        del model
        torch.cuda.empty_cache()


# ---------------------------------------------------------------------------------------------
# Summary
# ---------------------------------------------------------------------------------------------
def summary_text(results: dict) -> str:
    steps = results["steps"]
    parts = []
    parts.append(_markdown_table(["step", "status", "s", "note"], [
        [n, s.get("status"), f"{s.get('seconds', 0):.1f}", (s.get("reason") or s.get("error") or "")[:70]] for n, s in steps.items()]))
    corr = steps.get("correctness", {})
    if corr.get("by_group"):
        parts.append(_markdown_table(["correctness group", "pass", "FAIL", "skipped"],
                                     [[g, c["pass"], c["FAIL"], c["skipped"]] for g, c in corr["by_group"].items()]))
        worst = [f"{k}: rel_l2 {v['rel_l2']:.2e}, max/max {v['max_abs_over_max_ref']:.2e}" for k, v in corr.items() if k.startswith("worst_")]
        parts.append("worst errors: " + "; ".join(worst) + f" (bound {ERROR_BOUND['float32']:.0e})")
    speed = steps.get("speed", {})
    if speed.get("scan"):
        copy = speed.get("copy", {})
        ref_ms = {tuple(c["shape"]): c["reference"]["median_ms"] for c in speed.get("comparison", []) if "reference" in c}
        rows = [["x".join(map(str, r["shape"])), r["dtype"], f"{r['median_ms'] * 1e3:.1f}", f"{r['floor_ms'] * 1e3:.1f}", f"{r['GBps']:.0f}",
                 f"{r['fraction_of_copy']:.0%}", {True: "met", False: "MISSED"}.get(r.get("target_met"), ""),
                 f"{ref_ms[tuple(r['shape'])] * 1e3:.0f}" if r["dtype"] == "float32" and tuple(r["shape"]) in ref_ms else ""]
                for r in speed["scan"] if "median_ms" in r]
        parts.append(f"copy bandwidth {copy.get('GBps', 0):.0f} GB/s\n" + _markdown_table(
            ["scan shape", "dtype", "median µs", "floor µs", "GB/s", "of copy", "70% target", "reference µs"], rows))
    e2e = steps.get("e2e", {})
    if e2e.get("runs"):
        rows = []
        for r in e2e["runs"]:
            c, ref = r.get("cuda", {}), r.get("reference", {})
            p = r.get("parity_cuda_vs_reference", {})
            rows.append([r["resolution"], r["precision"], f"{ref.get('median_ms', float('nan')):.1f}", f"{c.get('median_ms', float('nan')):.1f}",
                         f"{r.get('speedup', float('nan')):.2f}", f"{ref.get('peak_mem_bytes', 0) / 2**30:.2f} / {c.get('peak_mem_bytes', 0) / 2**30:.2f}",
                         f"{p.get('rel_l2_error', float('nan')):.2e}", {True: "pass", False: "FAIL"}.get(r.get("parity_pass"), "")])
        parts.append(_markdown_table(["S", "prec", "reference ms", "cuda ms", "speedup", "peak GiB ref / cuda", "logits rel_l2", "parity"], rows))
    verdict = "FAIL" if results.get("failures") else "PASS"
    parts.append(f"gpu_check: {verdict} ({len(results.get('failures', []))} failures) in {results.get('elapsed_s', 0):.0f} s; "
                 f"device: {(steps.get('probe', {}).get('gpu') or {}).get('name', 'none')}")
    return "\n\n".join(parts)


# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------
GPU_STEPS = ("build", "native_tests", "sanitizer", "correctness", "speed", "e2e")


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="gpu_check", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("gpu_check_out"), help="folder for results.json and logs")
    p.add_argument("--budget-s", type=float, default=420.0, help="wall-clock budget; late cases are skipped, never passed")
    p.add_argument("--dry-run", action="store_true", help="CPU parts only; GPU steps reported as skipped")
    p.add_argument("--compile-only", action="store_true", help="configure + build the CUDA targets for sm_90 here, then stop")
    p.add_argument("--floors-table", action="store_true", help="print docs/PERF.md's floor tables and exit")
    p.add_argument("--steps", default=",".join(GPU_STEPS), help=f"comma list of GPU steps to run (default all: {','.join(GPU_STEPS)})")
    p.add_argument("--build-dir", default=str(DEFAULT_BUILD_DIR))
    p.add_argument("--build-timeout-s", type=float, default=240.0)
    p.add_argument("--skip-build", action="store_true", help="use an existing library (REMAMBER_CUDA_LIB or remamber/lib)")
    p.add_argument("--lib", help="path of a built libremamber_scan_cuda.so (implies no build)")
    p.add_argument("--seed", type=int, default=None, help="input seed (default: fresh, recorded in the JSON)")
    p.add_argument("--resolutions", default="480,1024", help="e2e resolutions")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.floors_table:
        print(floors_table())
        return 0
    run = Run(args.out, args.budget_s, sys.argv if argv is None else list(argv))
    seed = args.seed if args.seed is not None else int.from_bytes(os.urandom(4), "little") & 0x7FFFFFFF
    run.results["seed"] = seed
    import torch

    have_gpu = torch.cuda.is_available()
    use_gpu = have_gpu and not args.dry_run and not args.compile_only
    run.results["mode"] = "compile-only" if args.compile_only else ("gpu" if use_gpu else "dry-run (CPU)")
    step_probe(run, use_gpu)
    step_shapes(run)
    if args.compile_only:
        with run.step("build") as e:
            lib = build_native(run, e, Path(args.build_dir), args.build_timeout_s)
            e["driver"] = str(build_driver(run, Path(args.build_dir)))
            e["note"] = "compile only: nothing was run on a GPU"
            e["library"] = str(lib)
    else:
        step_reference_cpu(run, seed)
        wanted = {s.strip() for s in args.steps.split(",") if s.strip()}
        unknown = wanted - set(GPU_STEPS)
        if unknown:
            raise SystemExit(f"gpu_check: unknown steps {sorted(unknown)}; choose from {GPU_STEPS}")
        if not use_gpu:
            why = "--dry-run" if have_gpu else "no CUDA device"
            for name in GPU_STEPS:
                run.skip(name, why)
        else:
            for name in GPU_STEPS:
                if name not in wanted:
                    run.skip(name, "not selected (--steps)")
            lib = None
            if "build" in wanted:
                lib = step_build(run, args)
            else:
                lib = _library_from_env_or_install()
            driver = Path(args.build_dir) / "gpu_check_driver"
            if "native_tests" in wanted:
                step_native_tests(run, args)
            if "sanitizer" in wanted:
                if not driver.is_file():
                    with contextlib.suppress(Exception):
                        driver = build_driver(run, Path(args.build_dir))
                step_sanitizer(run, lib, driver)
            # Deadlines (seconds since start) share what is left: correctness, speed, e2e.
            left = run.remaining()
            t_now = run.elapsed()
            if "correctness" in wanted:
                step_correctness(run, seed, deadline_s=t_now + 0.40 * left)
            if "speed" in wanted:
                step_speed(run, seed, deadline_s=max(run.elapsed() + 20, t_now + 0.62 * left))
            if "e2e" in wanted:
                res = tuple(int(r) for r in args.resolutions.split(",") if r)
                step_e2e(run, seed, deadline_s=run.budget_s, resolutions=res)
    run.save()
    text = summary_text(run.results)
    (args.out / "summary.md").write_text(text + "\n", encoding="utf-8")
    print(text, flush=True)
    return 1 if run.failures else 0


if __name__ == "__main__":
    sys.exit(main())
