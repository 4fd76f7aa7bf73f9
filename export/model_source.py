"""Which PyTorch model a command uses: a checkpoint file, or a preset with seeded random weights.

Shared by ``export`` and ``compare`` so both build the model the same way; ``compare`` defaults to
the variant/preset/seed/checkpoint recorded in the ONNX metadata by ``export``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from remamber.errors import CheckpointError, InputError

VARIANTS = ("conv", "mamba")
PRESETS = ("base", "tiny")


def add_model_arguments(parser: argparse.ArgumentParser, defaults_from_graph: bool = False) -> None:
    g = parser.add_argument_group("model (checkpoint, or a preset with seeded random weights)")
    dflt = None if defaults_from_graph else "conv"
    note = " (default: as recorded in the ONNX file)" if defaults_from_graph else ""
    g.add_argument("--checkpoint", type=Path, default=None,
                   help="official ReMamber checkpoint (.pth) or a file saved by remamber.checkpoint" + note)
    g.add_argument("--variant", choices=VARIANTS, default=dflt,
                   help="conv = ReMamber_Conv (paper), mamba = ReMamber_Mamba (released)" + (note or " (default conv)"))
    g.add_argument("--preset", choices=PRESETS, default=None if defaults_from_graph else "base",
                   help="model size; checkpoints need 'base'" + (note or " (default base)"))
    g.add_argument("--seed", type=int, default=None if defaults_from_graph else 0,
                   help="seed of the random weights when no checkpoint is given" + (note or " (default 0)"))


def check_checkpoint_path(path: Path | None) -> None:
    if path is not None and not Path(path).is_file():
        raise CheckpointError(
            f"checkpoint {path} does not exist or is not a file; pass the path of ReMamber_Conv.pth / "
            f"ReMamber_Mamba.pth, or leave out --checkpoint to use seeded random weights"
        )
    if path is not None:
        from remamber.validate.checkpoints import check_checkpoint_file

        check_checkpoint_file(path, "--checkpoint")  # a zip / pickle at all, before any model is built


def load_model(variant: str, preset: str, seed: int = 0, checkpoint: Path | None = None):
    """Build the model (eval mode) and load ``checkpoint`` into it when given. Returns (model, text)."""
    import remamber
    from remamber.checkpoint import load_checkpoint

    if variant not in VARIANTS:
        raise InputError(f"unknown variant {variant!r}; use one of {', '.join(VARIANTS)}")
    check_checkpoint_path(checkpoint)
    model = remamber.build_model(variant=variant, preset=preset, seed=seed)
    if checkpoint is None:
        return model, f"ReMamber {variant}, {preset} preset, random weights (seed {seed})"
    report = load_checkpoint(model, checkpoint)
    return model.eval(), f"ReMamber {variant}, {preset} preset, weights from {checkpoint}\n{report}"


def model_metadata(variant: str, preset: str, seed: int, checkpoint: Path | None) -> dict[str, str]:
    meta = {"remamber.weights": str(Path(checkpoint).resolve()) if checkpoint else f"random (seed {seed})"}
    if checkpoint is None:
        meta["remamber.seed"] = str(seed)
    return meta
