"""Shared plumbing of the GPU check: paths, the run record (steps, budget, log, atomic JSON),
subprocess and tool lookup, Markdown tables and per-call timing.

Every step module imports from here and nowhere else in bench/gpu, so a step can be read alone.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import traceback
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
RESULTS_NAME = "results.json"
LOG_NAME = "gpu_check.log"
BUILD_LOG_NAME = "build.log"
SUMMARY_NAME = "summary.md"
DEFAULT_BUILD_DIR = Path("/tmp/remamber-gpu-check-build")
CUDA_ARCH = "90"  # H100 / H200 only: a one-arch build is the fastest
LIBRARY_FILENAME = "libremamber_scan_cuda.so"
PLUGIN_FILENAME = "libremamber_trt_plugin.so"
HARNESS_NAME = "remamber_plugin_harness"


class Run:
    """One gpu_check run: its output folder, budget, log and results (rewritten after every step)."""

    def __init__(self, out_dir: Path, budget_s: float, argv: list[str], device: str = "cuda"):
        self.out_dir = out_dir
        out_dir.mkdir(parents=True, exist_ok=True)
        self.t0 = time.monotonic()
        self.budget_s = budget_s
        # The GPU steps' device: "cuda", or "cpu" for a rehearsal of their logic (measures nothing).
        self.device = device
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

    def step_result(self, name: str) -> dict:
        return self.results["steps"].get(name, {})

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


def run_cmd(cmd, timeout, log_file=None, env=None, cwd=None) -> tuple[int, str, float]:
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


def first_line(cmd) -> str | None:
    rc, out, _ = run_cmd(cmd, timeout=30)
    return out.strip().splitlines()[-1] if rc == 0 and out.strip() else None


def tool(name) -> str | None:
    """A CUDA tool on PATH or in /usr/local/cuda/bin (nvcc, compute-sanitizer, cuobjdump, nvidia-smi)."""
    return shutil.which(name) or next((p for p in (f"/usr/local/cuda/bin/{name}",) if Path(p).is_file()), None)


def nvcc() -> str | None:
    return tool("nvcc")


def markdown_table(headers, rows) -> str:
    try:
        from tabulate import tabulate

        return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)
    except ImportError:  # tabulate is on both machines; keep the script standalone anyway
        widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) for i, h in enumerate(headers)]
        line = lambda cells: "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
        return "\n".join([line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|"] + [line(r) for r in rows])


# ---- timing ----------------------------------------------------------------------------------
FLUSH_MIN_BYTES = 256 * 2**20  # written before each timed call (with 4x L2 if larger), as Triton does


def time_calls(fn, reps: int, warmup: int, flush=None, device: str = "cuda") -> list[float]:
    """Per-call times in ms. On CUDA: events, with an optional L2 flush before each call that keeps
    the GPU busy while the next call is queued and the inputs out of L2. On the CPU (rehearsal
    only): wall clock per call."""
    import torch

    if device != "cuda":
        times = []
        for i in range(reps + warmup):
            if flush is not None:
                flush()
            t = time.perf_counter()
            fn(i)
            times.append((time.perf_counter() - t) * 1e3)
        return times[warmup:]
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


def stats(times: list[float]) -> dict:
    times = sorted(times)
    return {"median_ms": statistics.median(times), "min_ms": times[0], "max_ms": times[-1], "reps": len(times),
            "cv": (statistics.pstdev(times) / statistics.mean(times)) if len(times) > 1 else 0.0}


def l2_flusher(device: str):
    """(flush function, bytes written): a buffer of max(256 MiB, 4 x L2) filled before timed calls."""
    import torch

    if device != "cuda":
        return None, 0
    props = torch.cuda.get_device_properties(0)
    l2 = getattr(props, "L2_cache_size", 50 * 2**20) or 50 * 2**20
    buf = torch.empty(max(FLUSH_MIN_BYTES, 4 * l2) // 4, device=device)
    return (lambda: buf.fill_(1.0)), buf.numel() * 4


def l2_bytes(device: str) -> int:
    import torch

    if device != "cuda":
        return 50 * 2**20
    props = torch.cuda.get_device_properties(0)
    return getattr(props, "L2_cache_size", 50 * 2**20) or 50 * 2**20


def synchronize(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()
