"""The e2e_modes step: the base model's forward as eager calls, as a CUDA-graph replay and through
torch.compile, at 480 and 1024, in fp32 (TF32 off), fp32 with TF32 on, and fp16 autocast.

Each row also has the summed kernel time of one eager forward (torch.profiler) and the launch
count; issue #9's target is graph replay within 1.15x of that kernel time. The replay's output is
compared with the eager output of the same precision (a capture that runs other work would differ).
"""

from __future__ import annotations

import contextlib
import time

from .common import Run, stats, time_calls
from .e2e import e2e_inputs

TARGET_REPLAY_OVER_KERNELS = 1.15
PRECISIONS = ("fp32", "tf32", "fp16")
COMPILE_PRECISIONS = ("fp16",)  # torch.compile costs about 85 s per (size, precision) on the H200
COMPILE_MIN_LEFT_S = 150  # do not start a compilation with less budget than this left


def _precision(torch, prec: str, device_type: str):
    torch.backends.cuda.matmul.allow_tf32 = prec == "tf32"
    torch.backends.cudnn.allow_tf32 = prec == "tf32"
    if prec == "fp16":  # no autocast weight cache: a captured graph must not hold cast copies made outside it
        return torch.autocast(device_type, dtype=torch.float16, cache_enabled=False)
    return contextlib.nullcontext()


def kernel_time(torch, fn, device: str) -> dict:
    """Summed device-kernel time and launch count of one call of fn (torch.profiler)."""
    from torch.profiler import ProfilerActivity, profile

    if device != "cuda":
        return {"kernel_ms": None, "kernel_launches": None, "note": "no device kernels on the CPU"}
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    device = [ev for ev in prof.events() if getattr(ev, "device_type", None) == torch.autograd.DeviceType.CUDA]
    kernels = [ev for ev in device if not ev.name.startswith(("Memcpy", "Memset"))]

    def us(ev) -> float:
        tr = getattr(ev, "time_range", None)
        return tr.elapsed_us() if tr is not None else float(getattr(ev, "device_time", 0.0))

    return {"kernel_ms": sum(us(ev) for ev in kernels) / 1e3, "kernel_launches": len(kernels),
            "memcpy_memset_ms": sum(us(ev) for ev in device if ev.name.startswith(("Memcpy", "Memset"))) / 1e3}


def _rel_l2(torch, a, b) -> float:
    a, b = a.double(), b.double()
    return ((a - b).norm() / b.norm().clamp_min(1e-30)).item()


def _graph_replay(torch, model, image, ids, mask, ctx, reps: int) -> tuple[dict, object]:
    """Capture one forward into a CUDA graph (after warm-up on a side stream) and time its replay."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side), ctx:
        for _ in range(3):
            model(image, ids, mask)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph), ctx:
        static_out = model(image, ids, mask)
    graph.replay()
    torch.cuda.synchronize()
    times = time_calls(lambda i: graph.replay(), reps=reps, warmup=2, device="cuda")
    return stats(times), (graph, static_out)


def step_e2e_modes(run: Run, seed: int, deadline_s: float, resolutions=(480, 1024), preset: str = "base",
                   compile_precisions=COMPILE_PRECISIONS) -> None:
    import torch

    import remamber

    with run.step("e2e_modes") as e:
        device = torch.device(run.device)
        cuda = run.device == "cuda"
        if cuda:
            from remamber.ops import cuda_backend

            reason = cuda_backend.unavailable_reason()
            if reason:
                raise RuntimeError(f"cuda backend unavailable: {reason}")
        saved_tf32 = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
        model = remamber.build_model("conv", preset, seed=0).to(device).eval()
        e["target"] = f"CUDA-graph replay <= {TARGET_REPLAY_OVER_KERNELS}x the summed kernel time of an eager forward"
        rows = []
        reps = (10 if cuda else 1)
        try:
            for res in resolutions:
                image, ids, mask = e2e_inputs(res, device, seed)
                for prec in PRECISIONS:
                    row = {"resolution": res, "precision": prec}
                    rows.append(row)
                    if run.elapsed() > deadline_s:
                        row["status"] = "skipped: time budget"
                        continue
                    ctx = _precision(torch, prec, device.type)
                    with torch.inference_mode():
                        with ctx:
                            eager_out = model(image, ids, mask).float()  # warm-up and the parity reference
                        with ctx:
                            row["eager"] = stats(time_calls(lambda i: model(image, ids, mask), reps=reps, warmup=1, device=run.device))
                            row.update(kernel_time(torch, lambda: model(image, ids, mask), run.device))
                        if cuda:
                            try:
                                replay, keep = _graph_replay(torch, model, image, ids, mask, ctx, reps=max(reps, 20))
                                row["cudagraph"] = {**replay, "rel_l2_vs_eager": _rel_l2(torch, keep[1].float(), eager_out)}
                                del keep
                            except Exception as exc:
                                row["cudagraph"] = {"error": f"{type(exc).__name__}: {str(exc)[:400]}"}
                                run.fail(f"e2e_modes {res} {prec}: CUDA-graph capture failed: {row['cudagraph']['error']}")
                        else:
                            row["cudagraph"] = {"status": "skipped: needs a CUDA device"}
                        if row.get("kernel_ms") and "median_ms" in row.get("cudagraph", {}):
                            row["replay_over_kernels"] = row["cudagraph"]["median_ms"] / row["kernel_ms"]
                            row["target_met"] = row["replay_over_kernels"] <= TARGET_REPLAY_OVER_KERNELS
                        if prec in compile_precisions and run.remaining() > COMPILE_MIN_LEFT_S and run.elapsed() < deadline_s:
                            try:
                                compiled = torch.compile(model, backend="inductor" if cuda else "eager")
                                t = time.monotonic()
                                with ctx:
                                    out = compiled(image, ids, mask).float()
                                compile_s = time.monotonic() - t
                                with ctx:
                                    times = time_calls(lambda i: compiled(image, ids, mask), reps=reps, warmup=1, device=run.device)
                                row["compile"] = {**stats(times), "compile_s": round(compile_s, 1), "rel_l2_vs_eager": _rel_l2(torch, out, eager_out)}
                            except Exception as exc:
                                row["compile"] = {"error": f"{type(exc).__name__}: {str(exc)[:400]}"}
                                run.fail(f"e2e_modes {res} {prec}: torch.compile failed: {row['compile']['error']}")
                        elif prec in compile_precisions:
                            row["compile"] = {"status": "skipped: time budget"}
                    row["status"] = "ok"
                    run.log(f"e2e_modes {res} {prec}: eager {row['eager']['median_ms']:.1f} ms, kernels {row.get('kernel_ms') or 0:.1f} ms "
                            f"({row.get('kernel_launches')} launches), graph {row['cudagraph'].get('median_ms', float('nan')):.1f} ms, "
                            f"compile {row.get('compile', {}).get('median_ms', float('nan')):.1f} ms")
                    if cuda:
                        torch.cuda.empty_cache()
        finally:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved_tf32
            e["runs"] = rows
            model = None  # free it before the next step
            if cuda:
                torch.cuda.empty_cache()
