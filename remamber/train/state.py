"""Resumable training state and the exported weights.

``checkpoint.pth`` (resumable): {"model", "optimizer", "scheduler", "step", "rng", "config"}; the
loader of remamber/checkpoint.py reads it too (its "model" entry), the rest is listed as extras.
``model_fp16.pth`` (export): {"model": state_dict with floating tensors in float16} plus "meta": the
official checkpoint layout, at half the size. Both are written atomically (remamber/atomic.py).
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..atomic import atomic_path
from ..errors import InputError

CHECKPOINT_NAME = "checkpoint.pth"
EXPORT_NAME = "model_fp16.pth"

# Options that change the trajectory: a resume must use the same values (steps included: the cosine
# schedule depends on the total).
TRAJECTORY_KEYS = ("preset", "variant", "resolution", "batch_size", "steps", "lr", "warmup", "weight_decay",
                   "seed", "min_lr_ratio", "text_encoder_lr_mult", "sentences_per_image",
                   "attribute_queries", "mask_resize", "object_shape_loss", "object_shape_loss_start",
                   "pixel_shape_loss", "object_colour_loss", "object_match_loss", "pixel_match_loss",
                   "fusion_match_loss", "object_loss_features")


def save_training_state(path: Path, model, optimizer, scheduler, step: int, config: dict,
                        heads: dict | None = None) -> Path:
    """``heads``: training-only modules by name (the object-shape head), kept under "heads"."""
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "step": int(step),
        "rng": {"torch": torch.get_rng_state()},
        "config": dict(config),
    }
    if heads:
        state["heads"] = {name: module.state_dict() for name, module in heads.items()}
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return Path(path)


def load_training_state(path: Path, model, optimizer, scheduler, config: dict, heads: dict | None = None) -> int:
    """Restore everything from ``path`` (and the training-only ``heads`` saved with it); returns the
    step to continue from. Refuses a checkpoint of another run (different trajectory options) with the
    differing options named."""
    if not Path(path).is_file():
        raise InputError(f"--resume {path}: no such checkpoint file; pass the {CHECKPOINT_NAME} a previous run wrote")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise InputError(f"--resume {path} is not a readable training checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(state, dict) or not {"model", "optimizer", "scheduler", "step", "config"} <= set(state):
        raise InputError(f"--resume {path} is not a training checkpoint written by remamber-deploy train "
                         f"(it lacks model/optimizer/scheduler/step/config)")
    saved = state["config"]
    diff = [f"{k}: checkpoint {saved.get(k)!r}, now {config.get(k)!r}" for k in TRAJECTORY_KEYS
            if saved.get(k) != config.get(k)]
    if diff:
        raise InputError(f"--resume {path} was written with other training options ({'; '.join(diff)}); "
                         "resume with the same options, or start a new run in another --out folder")
    model.load_state_dict(state["model"])
    for name, module in (heads or {}).items():
        if name not in state.get("heads", {}):
            raise InputError(f"--resume {path} has no {name} weights; it was written by a run without it")
        module.load_state_dict(state["heads"][name])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    if "rng" in state:
        torch.set_rng_state(state["rng"]["torch"])
    return int(state["step"])


def export_fp16(path: Path, model, meta: dict | None = None) -> Path:
    """The weights in the official layout {"model": state_dict}, floating tensors stored as float16."""
    weights = {k: (v.detach().to(torch.float16) if v.is_floating_point() else v.detach()).clone()
               for k, v in model.state_dict().items()}
    payload = {"model": weights}
    if meta is not None:
        payload["meta"] = dict(meta)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return Path(path)
