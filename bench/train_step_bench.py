"""Time one training step (forward, loss, backward, AdamW) per scan backend, interleaved in one run.

    python -m remamber.bench.train_step_bench [--resolution 96] [--batch 8] [--repeats 5] [--threads 1]
        [--backends reference,cpu] [--profile N]

Why: the demo checkpoint (issue 16) is trained on a 2-core CPU, where the scan's backward decides how
many steps an hour buys. The backends run alternately (reference, cpu, reference, cpu, ...) on the
same model, inputs and thread count, so machine load hits both alike; the table gives the median and
the spread per backend, and the ratio of medians. ``--profile N`` then runs N more steps of the last
backend under torch.profiler and prints where their time goes (operators by self CPU time), so the
step breakdown in docs/TRAINING.md can be measured again.
"""

from __future__ import annotations

import argparse
import statistics
import time


def main(argv=None) -> int:
    import torch
    from tabulate import tabulate

    from remamber import ops
    from remamber.model import build_model
    from remamber.train.loss import segmentation_loss

    parser = argparse.ArgumentParser(prog="python -m remamber.bench.train_step_bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--resolution", type=int, default=96)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5, help="timed steps per backend (after one warm-up each)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--variant", default="conv")
    parser.add_argument("--backends", default="reference,cpu")
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="after the timing, profile N steps of the last backend and print the top operators")
    parser.add_argument("--profile-rows", type=int, default=15, help="operators listed by --profile")
    args = parser.parse_args(argv)
    names = [b.strip() for b in args.backends.split(",") if b.strip()]
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    model = build_model(args.variant, args.preset, seed=0).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    images = torch.randn(args.batch, 3, args.resolution, args.resolution, generator=g)
    ids = torch.randint(0, 49407, (args.batch, model.config.num_tokens), generator=g)
    attention = torch.ones_like(ids)
    masks = (torch.rand(args.batch, 1, args.resolution, args.resolution, generator=g) > 0.5).float()

    def step() -> float:
        began = time.perf_counter()
        loss = segmentation_loss(model(images, ids, attention), masks)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return time.perf_counter() - began

    times: dict[str, list[float]] = {n: [] for n in names}
    for name in names:  # warm-up
        with ops.use_backend(name):
            step()
    for _ in range(args.repeats):
        for name in names:
            with ops.use_backend(name):
                times[name].append(step())
    medians = {n: statistics.median(t) for n, t in times.items()}
    rows = [[n, f"{medians[n]:.3f}", f"{min(t):.3f}", f"{max(t):.3f}", f"{medians[names[0]] / medians[n]:.2f}x"]
            for n, t in times.items()]
    print(f"{args.preset}/{args.variant} training step at {args.resolution}x{args.resolution}, batch {args.batch}, "
          f"{args.threads} thread(s), {args.repeats} steps per backend, interleaved")
    print(tabulate(rows, headers=["scan backend", "median s/step", "min", "max", f"speed-up vs {names[0]}"]))
    if args.profile > 0:
        print()
        print(profile_steps(step, names[-1], args.profile, args.profile_rows))
    return 0


def profile_steps(step, backend: str, steps: int, rows: int) -> str:
    """Run ``steps`` steps on ``backend`` under torch.profiler; a table of the operators with the most
    self CPU time (per step), and each one's share of the profiled wall time."""
    import torch
    from tabulate import tabulate

    from remamber import ops

    with ops.use_backend(backend), torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        wall = sum(step() for _ in range(steps))
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    table = [[e.key, e.count // steps, f"{e.self_cpu_time_total / 1e6 / steps:.3f}",
              f"{100 * e.self_cpu_time_total / 1e6 / wall:.1f} %"] for e in events[:rows]]
    head = (f"torch.profiler, {steps} step(s) on {backend}: {wall / steps:.3f} s/step under the profiler "
            f"(self CPU time: the operator's own time, its children excluded)")
    return head + "\n" + tabulate(table, headers=["operator", "calls/step", "self s/step", "share of step"])


if __name__ == "__main__":
    raise SystemExit(main())
