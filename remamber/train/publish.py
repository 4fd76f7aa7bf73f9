"""Publish a training run as the packaged demo checkpoint (remamber/demo/, issue 16):

    python -m remamber.train.publish --run OUT --command "<make-dataset && train commands>" \
        --data-images 1000 --data-seed 0 [--metrics-json extra.json] [--final]

writes demo_tiny_conv.pth (fp16 {"model": state_dict}), demo_tiny_conv.json (the metadata contract
remamber.demo reads), demo_tiny_conv_curve.png and demo_tiny_conv_metrics.csv. The weights come from
OUT/model_fp16.pth when the run finished, else from OUT/checkpoint.pth (a pilot: "final": false).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

DEMO_DIR = Path(__file__).resolve().parent.parent / "demo"
STEM = "demo_tiny_conv"


def publish(run: Path, command: str, data_images: int, data_seed: int, final: bool, extra_metrics: dict,
            dest: Path = DEMO_DIR, data_version: int | None = None) -> dict:
    """data_version: the make-dataset --generator-version of the training data (default: the default)."""
    import torch

    from ..atomic import atomic_path, write_text_atomic
    from ..data.synthetic import GENERATOR_VERSION
    from ..model import build_model
    from .curve import plot_curve
    from .state import export_fp16

    finished = (run / "model_fp16.json").is_file() and (run / "model_fp16.pth").is_file()
    if finished:
        meta = json.loads((run / "model_fp16.json").read_text())
        with atomic_path(dest / f"{STEM}.pth") as tmp:
            shutil.copyfile(run / "model_fp16.pth", tmp)
        steps = meta["training"]["steps"]
    else:
        state = torch.load(run / "checkpoint.pth", map_location="cpu", weights_only=True)
        cfg = state["config"]
        model = build_model(cfg["variant"], cfg["preset"])
        model.load_state_dict(state["model"])
        export_fp16(dest / f"{STEM}.pth", model)
        steps = state["step"]
        meta = {"preset": cfg["preset"], "variant": cfg["variant"], "resolution": cfg["resolution"],
                "storage_dtype": "float16",
                "description": "demo: tiny preset trained on synthetic shapes; not a RefCOCO model",
                "training": {"seed": cfg["seed"], "steps": steps, "batch_size": cfg["batch_size"], "lr": cfg["lr"]},
                "metrics": {}}
    meta["training"]["command"] = command
    meta["training"]["data"] = {"images": data_images, "seed": data_seed,
                                "generator_version": GENERATOR_VERSION if data_version is None else data_version}
    meta["training"]["steps_done"] = steps
    meta["metrics"] = {**meta.get("metrics", {}), **extra_metrics}
    meta["final"] = bool(final and finished)
    write_text_atomic(dest / f"{STEM}.json", json.dumps(meta, indent=2) + "\n")
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if x.strip()]
    if rows:
        plot_curve(rows, dest / f"{STEM}_curve.png",
                   title=f"ReMamber {meta['preset']}/{meta['variant']} @{meta['resolution']} (demo checkpoint)")
    with atomic_path(dest / f"{STEM}_metrics.csv") as tmp:
        shutil.copyfile(run / "metrics.csv", tmp)
    return meta


def main(argv: list[str] | None = None) -> int:
    from ..data.synthetic import SIZE_CLASSES_BY_VERSION

    parser = argparse.ArgumentParser(prog="python -m remamber.train.publish", description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="the --out folder of remamber-deploy train")
    parser.add_argument("--command", required=True, help="the exact commands that made the data and trained")
    parser.add_argument("--data-images", type=int, required=True)
    parser.add_argument("--data-seed", type=int, required=True)
    parser.add_argument("--data-generator-version", type=int, choices=tuple(SIZE_CLASSES_BY_VERSION), default=None,
                        help="make-dataset --generator-version of the training data (default: the default version)")
    parser.add_argument("--metrics-json", type=Path, help='more metrics, e.g. {"val@480": {"oIoU":..,"mIoU":..,"n":..}}')
    parser.add_argument("--final", action="store_true", help="mark it the final demo checkpoint")
    parser.add_argument("--dest", type=Path, default=DEMO_DIR)
    args = parser.parse_args(argv)
    extra = json.loads(args.metrics_json.read_text()) if args.metrics_json else {}
    meta = publish(args.run, args.command, args.data_images, args.data_seed, args.final, extra, args.dest,
                   args.data_generator_version)
    print(json.dumps(meta, indent=2))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
