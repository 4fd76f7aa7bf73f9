"""gpu_check's command line and step order (bench/gpu_check.py is the entry point; see its docstring)."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path

from .build import build_driver, build_native, library_from_env_or_install, step_build, step_native_tests
from .cases import step_shapes
from .common import DEFAULT_BUILD_DIR, SUMMARY_NAME, Run
from .correctness import step_correctness, step_reference_cpu
from .e2e import step_e2e
from .e2e_modes import step_e2e_modes
from .forward_scans import step_forward_scans
from .peer import step_peer
from .plugin_harness import step_plugin_harness
from .probe import step_probe
from .report import summary_text
from .sanitizer import step_sanitizer
from .shapes import floors_table
from .speed import step_speed
from .ss2d import step_ss2d_correctness, step_ss2d_model, step_ss2d_speed
from .triton_check import step_triton_correctness, step_triton_e2e, step_triton_speed

# The fused SS2DScan steps (ss2d_*) run after the v1 kernel's, before e2e_modes' torch.compile.
GPU_STEPS = ("build", "native_tests", "sanitizer", "plugin_harness", "correctness", "speed", "forward_scans", "peer",
             "e2e", "ss2d_correctness", "ss2d_speed", "ss2d_model", "e2e_modes",
             "triton_correctness", "triton_speed", "triton_e2e")
# The Triton backend's steps (bench/gpu/triton_check.py) run last. When any is selected, e2e_modes stops
# starting new rows at E2E_MODES_SHARE_WITH_TRITON of the budget, and the triton steps share what is left
# when they start: correctness up to 45 % of it, speed up to 75 %, e2e the rest.
TRITON_STEPS = ("triton_correctness", "triton_speed", "triton_e2e")
E2E_MODES_SHARE_WITH_TRITON = 0.85
TRITON_SHARES = {"triton_correctness": 0.45, "triton_speed": 0.75, "triton_e2e": 1.0}
BUILD_STEPS = ("build", "native_tests", "sanitizer")  # nothing of theirs runs in a CPU rehearsal
# Share of the budget left after the build steps at which each timed step stops starting new cases
# (cumulative): correctness 25 %, speed 35 %, ... e2e_modes the rest.
DEADLINE_SHARES = {"correctness": 0.25, "speed": 0.33, "forward_scans": 0.39, "peer": 0.45, "e2e": 0.55,
                   "ss2d_correctness": 0.64, "ss2d_speed": 0.69, "ss2d_model": 0.76, "e2e_modes": 1.0}
REHEARSAL_RESOLUTION = 64  # a CPU rehearsal runs the scan inventory and the tiny model at this size


def parse_args(argv=None, description: str = "GPU check"):
    p = argparse.ArgumentParser(prog="gpu_check", description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("gpu_check_out"), help="folder for results.json and logs")
    p.add_argument("--budget-s", type=float, default=420.0, help="wall-clock budget; late cases are skipped, never passed")
    p.add_argument("--dry-run", action="store_true", help="CPU parts only; GPU steps reported as skipped")
    p.add_argument("--compile-only", action="store_true", help="configure + build the CUDA targets for sm_90 here, then stop")
    p.add_argument("--rehearse-cpu", action="store_true",
                   help="run the GPU steps' logic on the CPU (reference scan for the kernel, tiny model, 64x64; no builds): "
                        "checks the script, measures nothing")
    p.add_argument("--floors-table", action="store_true", help="print docs/PERF.md's floor tables and exit")
    p.add_argument("--steps", default=",".join(GPU_STEPS), help=f"comma list of GPU steps to run (default all: {','.join(GPU_STEPS)})")
    p.add_argument("--build-dir", default=str(DEFAULT_BUILD_DIR))
    p.add_argument("--build-timeout-s", type=float, default=240.0)
    p.add_argument("--skip-build", action="store_true", help="use an existing library (REMAMBER_CUDA_LIB or remamber/lib)")
    p.add_argument("--lib", help="path of a built libremamber_scan_cuda.so (implies no build)")
    p.add_argument("--seed", type=int, default=None, help="input seed (default: fresh, recorded in the JSON)")
    p.add_argument("--resolutions", default=None, help="resolutions of the scan inventory and the model (default 480,1024)")
    return p.parse_args(argv)


def _run_gpu_steps(run: Run, args, wanted: set[str], seed: int) -> None:
    rehearsal = run.device != "cuda"
    if rehearsal:
        import torch

        torch.set_num_threads(1)  # small CPU ops on a shared machine: more threads only spin
    default_res = f"{REHEARSAL_RESOLUTION}" if rehearsal else "480,1024"
    res = tuple(int(r) for r in (args.resolutions or default_res).split(",") if r)
    preset = "tiny" if rehearsal else "base"
    for name in GPU_STEPS:
        if name not in wanted:
            run.skip(name, "not selected (--steps)")
        elif rehearsal and name in BUILD_STEPS:
            run.skip(name, "CPU rehearsal: no GPU build or sanitizer run")
            wanted = wanted - {name}
    build_dir = Path(args.build_dir)
    lib = None
    if "build" in wanted:
        lib = step_build(run, args)
    elif not rehearsal:
        lib = library_from_env_or_install()
    if "native_tests" in wanted:
        step_native_tests(run, args)
    if "sanitizer" in wanted:
        driver = build_dir / "gpu_check_driver"
        if not driver.is_file():
            with contextlib.suppress(Exception):
                driver = build_driver(run, build_dir)
        step_sanitizer(run, lib, driver)
    if "plugin_harness" in wanted:
        step_plugin_harness(run, build_dir)
    # Deadlines (seconds since start): each timed step stops starting new cases at its share.
    left, t_now = run.remaining(), run.elapsed()
    deadline = {k: t_now + share * left for k, share in DEADLINE_SHARES.items()}
    if "correctness" in wanted:
        step_correctness(run, seed, deadline_s=deadline["correctness"])
    if "speed" in wanted:
        step_speed(run, seed, deadline_s=max(run.elapsed() + 20, deadline["speed"]), resolutions=res)
    if "forward_scans" in wanted:
        step_forward_scans(run, seed, deadline_s=max(run.elapsed() + 10, deadline["forward_scans"]), resolutions=res)
    if "peer" in wanted:
        step_peer(run, seed, deadline_s=max(run.elapsed() + 10, deadline["peer"]), resolutions=res)
    if "e2e" in wanted:
        step_e2e(run, seed, deadline_s=max(run.elapsed() + 20, deadline["e2e"]), resolutions=res, preset=preset)
    if "ss2d_correctness" in wanted:
        step_ss2d_correctness(run, seed, deadline_s=max(run.elapsed() + 15, deadline["ss2d_correctness"]), resolutions=res)
    if "ss2d_speed" in wanted:
        step_ss2d_speed(run, seed, deadline_s=max(run.elapsed() + 10, deadline["ss2d_speed"]), resolutions=res)
    if "ss2d_model" in wanted:
        step_ss2d_model(run, seed, deadline_s=max(run.elapsed() + 15, deadline["ss2d_model"]), resolutions=res, preset=preset)
    if "e2e_modes" in wanted:
        e2e_modes_end = run.budget_s
        if wanted & set(TRITON_STEPS):
            e2e_modes_end = max(run.elapsed() + 20, t_now + E2E_MODES_SHARE_WITH_TRITON * left)
        step_e2e_modes(run, seed, deadline_s=e2e_modes_end, resolutions=res, preset=preset,
                       compile_precisions=() if rehearsal else ("fp16",))
    t_tri, left_tri = run.elapsed(), run.remaining()
    tri_deadline = {k: t_tri + share * left_tri for k, share in TRITON_SHARES.items()}
    if "triton_correctness" in wanted:
        step_triton_correctness(run, seed, deadline_s=max(run.elapsed() + 15, tri_deadline["triton_correctness"]), resolutions=res)
    if "triton_speed" in wanted:
        step_triton_speed(run, seed, deadline_s=max(run.elapsed() + 10, tri_deadline["triton_speed"]), resolutions=res)
    if "triton_e2e" in wanted:
        step_triton_e2e(run, seed, deadline_s=max(run.elapsed() + 15, tri_deadline["triton_e2e"]), resolutions=res, preset=preset)


def main(argv=None, description: str = "GPU check") -> int:
    args = parse_args(argv, description)
    if args.floors_table:
        print(floors_table())
        return 0
    import torch

    have_gpu = torch.cuda.is_available()
    use_gpu = have_gpu and not args.dry_run and not args.compile_only and not args.rehearse_cpu
    run = Run(args.out, args.budget_s, sys.argv if argv is None else list(argv), device="cuda" if use_gpu else "cpu")
    seed = args.seed if args.seed is not None else int.from_bytes(os.urandom(4), "little") & 0x7FFFFFFF
    run.results["seed"] = seed
    run.results["mode"] = ("compile-only" if args.compile_only else "gpu" if use_gpu
                           else "CPU rehearsal (measures nothing)" if args.rehearse_cpu else "dry-run (CPU)")
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
        if use_gpu or args.rehearse_cpu:
            _run_gpu_steps(run, args, wanted, seed)
        else:
            why = "--dry-run" if have_gpu else "no CUDA device"
            for name in GPU_STEPS:
                run.skip(name, why)
    run.save()
    text = summary_text(run.results)
    tmp = args.out / (SUMMARY_NAME + ".tmp")
    tmp.write_text(text + "\n", encoding="utf-8")
    os.replace(tmp, args.out / SUMMARY_NAME)
    print(text, flush=True)
    return 1 if run.failures else 0
