"""The e2e step: ReMamber_Conv at 480 and 1024, fp32 and fp16 autocast, the reference scan backend
against the cuda one: latency (CUDA events), peak memory, and logits parity between the two.
"""

from __future__ import annotations

import contextlib
import time

from .common import Run, stats, time_calls

# Logits parity of the cuda backend against the reference backend, same weights and inputs. The
# only difference is the scan (errors ~1e-6 relative), amplified through 37 scans, norms and the
# decoder; fp16 autocast re-rounds activations to 2^-11 after every scan.
E2E_PARITY_BOUND = {"fp32": 1e-3, "fp16": 1e-2}


def e2e_inputs(resolution, device, seed):
    """A random image and a CLIP-like token row (BOS, 10 ids, EOS padding), as predict would pass them."""
    import torch

    g = torch.Generator().manual_seed(seed)
    image = torch.randn(1, 3, resolution, resolution, generator=g)
    ids = torch.full((1, 20), 49407, dtype=torch.int64)  # CLIP: BOS 49406 ... EOS 49407, EOS as padding
    ids[0, 0] = 49406
    ids[0, 1:11] = torch.randint(1, 49405, (10,), generator=g)
    mask = torch.zeros(1, 20, dtype=torch.int64)
    mask[0, :12] = 1
    return image.to(device), ids.to(device), mask.to(device)


def step_e2e(run: Run, seed: int, deadline_s: float, resolutions=(480, 1024), preset: str = "base") -> None:
    import torch

    import remamber
    from remamber.ops import cuda_backend, use_backend
    from remamber.parity import compare_logits

    with run.step("e2e") as e:
        kernel = "cuda" if run.device == "cuda" else "reference"  # a CPU rehearsal runs the logic only
        reason = cuda_backend.unavailable_reason() if run.device == "cuda" else None
        if reason:
            raise RuntimeError(f"cuda backend unavailable: {reason}")
        device = torch.device(run.device)
        t = time.monotonic()
        model = remamber.build_model("conv", preset, seed=0).to(device).eval()
        e["model_build_s"] = round(time.monotonic() - t, 1)
        e["params"] = sum(p.numel() for p in model.parameters())
        e["parity_bounds_rel_l2"] = E2E_PARITY_BOUND
        rows = []
        # Timed iterations after one warm-up: the reference backend is slow at 1024, keep it short.
        iters = lambda backend, res: (10 if backend == "cuda" else 3) if res < 1024 else (5 if backend == "cuda" else 2)  # noqa: E731
        for res in resolutions:
            image, ids, mask = e2e_inputs(res, device, seed)
            for prec in ("fp32", "fp16"):
                row = {"resolution": res, "precision": prec}
                logits = {}
                for backend in (kernel, "reference"):
                    if run.elapsed() > deadline_s:
                        row[backend] = {"status": "skipped: time budget"}
                        continue
                    if run.device == "cuda":
                        torch.cuda.synchronize()
                        torch.cuda.empty_cache()
                        torch.cuda.reset_peak_memory_stats()
                    ctx = torch.autocast(device.type, dtype=torch.float16) if prec == "fp16" else contextlib.nullcontext()
                    times = []
                    with use_backend(backend), torch.inference_mode(), ctx:
                        out = model(image, ids, mask)  # warm-up (and the logits compared below)
                        n = iters(backend, res) if run.device == "cuda" else 1
                        times = time_calls(lambda i: model(image, ids, mask), reps=n, warmup=0, device=run.device)
                    logits[backend] = out.float().cpu()
                    row[backend] = {**stats(times), "peak_mem_bytes": torch.cuda.max_memory_allocated() if run.device == "cuda" else 0}
                    run.log(f"e2e {res} {prec} {backend}: median {row[backend]['median_ms']:.1f} ms, "
                            f"peak {row[backend]['peak_mem_bytes'] / 2**30:.2f} GiB")
                if "median_ms" in row.get(kernel, {}) and "median_ms" in row.get("reference", {}):
                    row["speedup"] = row["reference"]["median_ms"] / row[kernel]["median_ms"]
                if len(logits) == 2 or kernel == "reference" and logits:
                    m = compare_logits(logits["reference"].numpy(), logits[kernel].numpy()).as_dict()
                    row["parity_cuda_vs_reference"] = m
                    ok = m["nan_count"] == 0 and m["rel_l2_error"] <= E2E_PARITY_BOUND[prec]
                    row["parity_pass"] = ok
                    if not ok:
                        run.fail(f"e2e parity {res} {prec}: rel_l2 {m['rel_l2_error']:.2e}, NaN {m['nan_count']}")
                rows.append(row)
        e["runs"] = rows
        if any(r.get("parity_pass") is False for r in rows):
            e["status"] = "failed"
        model = None  # free it before the next step
        if run.device == "cuda":
            torch.cuda.empty_cache()


# ---------------------------------------------------------------------------------------------
